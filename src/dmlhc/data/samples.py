"""Sample specs: what the ``signal`` and ``background`` config groups describe, turned into events.

A spec is a mapping with ``name``, ``benchmark`` (a name from ``dmlhc.events.benchmarks``
for the embedded generator), ``files`` (Delphes ROOT files to use instead) and
``events`` (how many to generate). :func:`ensure_generated` writes a missing sample into
the cache (the DataModule's ``prepare_data``, rank 0 only); :func:`load` reads it (every
rank, in ``setup``). Generated samples stay in memory for the rest of the process, so the
jobs of a multirun read the 1.5M-event background once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import awkward as ak
import numpy as np

from dmlhc.errors import ConfigError
from dmlhc.events.benchmarks import get_benchmark
from dmlhc.events.delphes import EventSample, read_delphes
from dmlhc.events.detector import JetResponse
from dmlhc.events.generate import GenerationSpec, generate

DEFAULT_GENERATION = {"level": "parton", "seed": 1, "workers": None, "detector": True}


def is_spec(source: object) -> bool:
    """Whether ``source`` is a sample spec (a config mapping), not events."""
    return isinstance(source, Mapping) and "benchmark" in source and "files" in source


def check_spec(key: str, spec: Mapping) -> None:
    """Fail on a spec that names neither files nor a known benchmark."""
    if spec.get("files"):
        missing = [str(f) for f in spec["files"] if not Path(f).is_file()]
        if missing:
            raise ConfigError(f"{key}.files: no such file {missing[0]!r}; give existing Delphes ROOT files")
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
    if not spec.get("files"):
        settings = {**DEFAULT_GENERATION, **(generation or {})}
        generate(generation_spec(spec, generation), workers=settings["workers"], cache=cache_dir)


def load(spec: Mapping, generation: Mapping | None = None, cache_dir: str | None = None) -> EventSample:
    """The events of a spec: its Delphes files (concatenated), or its generated sample (made on a cache miss)."""
    if spec.get("files"):
        return _read_files(tuple(str(f) for f in spec["files"]))
    settings = {**DEFAULT_GENERATION, **(generation or {})}
    return _generated(generation_spec(spec, generation), settings["workers"], cache_dir)


@functools.lru_cache(maxsize=16)
def _generated(spec: GenerationSpec, workers: int | None, cache_dir: str | None) -> EventSample:
    return read_delphes(generate(spec, workers=workers, cache=cache_dir))


def _read_files(files: Sequence[str]) -> EventSample:
    parts = [read_delphes(path) for path in files]
    if len(parts) == 1:
        return parts[0]
    jets = {f: ak.concatenate([getattr(p, f) for p in parts]) for f in ("jet_pt", "jet_eta", "jet_phi")}
    return EventSample(**jets, met=np.concatenate([p.met for p in parts]),
                       weight=np.concatenate([p.weight for p in parts]), metadata={"files": list(files)})
