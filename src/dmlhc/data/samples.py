"""Sample specs: what the ``signal`` and ``background`` config groups describe, turned into events.

A spec is a mapping with ``name``, ``benchmark`` (a name from ``dmlhc.events.benchmarks``
for the embedded generator), ``files`` (Delphes ROOT files to use instead, read when the
spec is checked: an unusable file fails at start-up with an ``InputDataError``) and
``events`` (how many to generate). :func:`ensure_generated` writes a missing sample into
the cache (the DataModule's ``prepare_data``, rank 0 only); :func:`load` reads it (every
rank, in ``setup``). Generated samples stay in memory for the rest of the process, so the
jobs of a multirun read the 1.5M-event background once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from dmlhc.errors import ConfigError
from dmlhc.events.benchmarks import get_benchmark
from dmlhc.events.delphes import EventFileError, EventSample, concatenate, read_delphes
from dmlhc.events.detector import JetResponse
from dmlhc.events.generate import GenerationSpec, generate

DEFAULT_GENERATION = {"level": "parton", "seed": 1, "workers": None, "detector": True}


def is_spec(source: object) -> bool:
    """Whether ``source`` is a sample spec (a config mapping), not events."""
    return isinstance(source, Mapping) and "benchmark" in source and "files" in source


def files_of(spec: Mapping) -> tuple[str, ...]:
    """The spec's event files (``files: a.root`` or ``files: [a.root, b.root]``); empty for a benchmark."""
    files = spec.get("files") or ()
    return (str(files),) if isinstance(files, str | Path) else tuple(str(f) for f in files)


def check_spec(key: str, spec: Mapping) -> None:
    """Fail on a spec that names neither files nor a known benchmark, and on files that cannot be read as events
    (:class:`~dmlhc.events.delphes.EventFileError`, naming ``key``), before anything is generated or trained."""
    if files_of(spec):
        for path in files_of(spec):
            try:
                read_file(path)
            except EventFileError as err:
                raise EventFileError(f"{key}.files: {err}") from None
        return
    if not spec.get("benchmark"):
        raise ConfigError(f"{key}: give files (Delphes ROOT files) or a benchmark to generate")
    try:
        get_benchmark(spec["benchmark"])
    except ValueError as err:
        raise ConfigError(f"{key}.benchmark: {err}") from None
    if not spec.get("events") or int(spec["events"]) < 1:
        raise ConfigError(f"{key}.events={spec.get('events')}: give the number of events to generate (>= 1)")


def generation_spec(spec: Mapping, generation: Mapping | None = None) -> GenerationSpec:
    """The generator's description of a benchmark spec (its cache key)."""
    settings = {**DEFAULT_GENERATION, **(generation or {})}
    return GenerationSpec(get_benchmark(spec["benchmark"]), int(spec["events"]), settings["level"],
                          int(settings["seed"]), JetResponse(enabled=bool(settings["detector"])))


def ensure_generated(spec: Mapping, generation: Mapping | None = None, cache_dir: str | None = None) -> None:
    """Generate a benchmark spec's sample into the cache unless it is there (files: nothing to do)."""
    if not files_of(spec):
        settings = {**DEFAULT_GENERATION, **(generation or {})}
        generate(generation_spec(spec, generation), workers=settings["workers"], cache=cache_dir)


def load(spec: Mapping, generation: Mapping | None = None, cache_dir: str | None = None) -> EventSample:
    """The events of a spec: its Delphes files (concatenated), or its generated sample (made on a cache miss)."""
    if files_of(spec):
        return _read_files(files_of(spec))
    settings = {**DEFAULT_GENERATION, **(generation or {})}
    return _generated(generation_spec(spec, generation), settings["workers"], cache_dir)


@functools.lru_cache(maxsize=16)
def _generated(spec: GenerationSpec, workers: int | None, cache_dir: str | None) -> EventSample:
    return read_delphes(generate(spec, workers=workers, cache=cache_dir))


def read_file(path: str) -> EventSample:
    """:func:`read_delphes`, remembered for the process while the file is unchanged: a spec's files are read when
    it is checked (start-up) and used when it is loaded (``setup``)."""
    try:
        stat = os.stat(path)
    except OSError:
        return read_delphes(path)  # the reader's message for a missing file
    return _read_unchanged(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_unchanged(path: str, mtime_ns: int, size: int) -> EventSample:
    return read_delphes(path)


def _read_files(files: Sequence[str]) -> EventSample:
    parts = [read_file(path) for path in files]
    if len(parts) == 1:
        return parts[0]
    return concatenate(parts, {"files": list(files), "dropped": {str(p.path): p.metadata["dropped"] for p in parts}})
