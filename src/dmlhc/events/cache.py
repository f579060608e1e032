"""The sample cache: files named by a key of everything that determines them.

A hit never regenerates; any changed setting (process, masses, level, detector,
count, seed, generator or Pythia version) gives a new key and so a new file.
Files appear only complete: writers use a temporary name and an atomic rename. Each
sample has a record of its size and SHA-256 beside it (``<name>.check.json``): a file
that no longer matches its record is damaged, and is regenerated rather than used.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from dmlhc.errors import StoreError

DEFAULT_CACHE = Path("data") / "samples"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$DMLHC_CACHE``, else ``./data/samples``."""
    return Path(override or os.environ.get("DMLHC_CACHE") or DEFAULT_CACHE)


def cache_origin(override: str | os.PathLike | None = None) -> str:
    """Where the cache folder of :func:`cache_dir` comes from, for messages."""
    if override:
        return "--cache / data.cache_dir"
    return "$DMLHC_CACHE" if os.environ.get("DMLHC_CACHE") else "the default ./data/samples ($DMLHC_CACHE unset)"


def check_writable(folder: Path, what: str, fix: str) -> None:
    """Raise :class:`StoreError` unless a file can be created in ``folder`` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dmlhc-write-test-", suffix=".partial"):
            pass
    except OSError as err:
        raise StoreError(f"{what} {folder}: cannot write there ({err.strerror or err}); {fix}") from None


def key_of(spec: dict) -> str:
    """A stable hash of a JSON-serialisable description."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_json(path: Path) -> dict | None:
    """A cached JSON document, or None when absent or unreadable (a damaged entry is made again)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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


def write_csv(rows: Iterable[Mapping[str, object]], columns: Sequence[str], path: Path,
              exact: Sequence[str] = ("snr",)) -> Path:
    """``rows`` as a CSV table at ``path`` (folders made), replacing any old one only once it is complete: floats to
    4 decimals, except the ``exact`` columns (S/sqrt(B) values, written as given)."""
    with atomic_target(path) as partial, open(partial, "w", newline="") as out:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) and k not in exact else v) for k, v in row.items()})
    return path


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` so that ``target`` is either absent or complete."""
    with atomic_target(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)


def record_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.check.json")


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def write_record(path: Path) -> None:
    """Record the size and SHA-256 of the complete cached file ``path``."""
    write_json(record_path(path), {"size": path.stat().st_size, "sha256": _digest(path)})


#: What :func:`damage` says of a file without a record (written before records existed, or by a process killed
#: between the file and its record).
NO_RECORD = "has no size and SHA-256 record"


def damage(path: Path) -> str | None:
    """Why the cached file ``path`` does not match its record (None: it does; :data:`NO_RECORD`: it has none)."""
    record = read_json(record_path(path))
    if record is None:
        return NO_RECORD
    size = path.stat().st_size
    if size != record["size"]:
        return f"is {size} bytes, not the {record['size']} it was written with (truncated or overwritten)"
    if _digest(path) != record["sha256"]:
        return "does not match the SHA-256 it was written with (damaged)"
    return None


def discard(path: Path) -> None:
    """Remove a cached file and its record."""
    path.unlink(missing_ok=True)
    record_path(path).unlink(missing_ok=True)
