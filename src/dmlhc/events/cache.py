"""The sample cache: files named by a key of everything that determines them.

A hit never regenerates; any changed setting (process, masses, level, detector,
count, seed, generator or Pythia version) gives a new key and so a new file.
Files appear only complete: writers use a temporary name and an atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

DEFAULT_CACHE = Path("data") / "samples"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$DMLHC_CACHE``, else ``./data/samples``."""
    return Path(override or os.environ.get("DMLHC_CACHE") or DEFAULT_CACHE)


def key_of(spec: dict) -> str:
    """A stable hash of a JSON-serialisable description."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_json(path: Path) -> dict | None:
    """A cached JSON document, or None when absent."""
    return json.loads(path.read_text()) if path.is_file() else None


@contextmanager
def atomic_target(path: str | os.PathLike):
    """A temporary path beside ``path`` to write to; renamed onto ``path`` if the block succeeds, removed if not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, document: dict) -> None:
    """Write a JSON document atomically."""
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(document, indent=1, sort_keys=True))


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` so that ``target`` is either absent or complete."""
    with atomic_target(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)
