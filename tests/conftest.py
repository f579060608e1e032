"""Shared fixtures: tiny synthetic event samples, an isolated sample cache, the quick Fig. 7 grid."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from dmlhc.events.delphes import EventSample


def synthetic_sample(n: int = 500, seed: int = 0, hardness: float = 100.0, max_jets: int = 3) -> EventSample:
    """Events with 0..max_jets jets, pT-ordered, leading pT = 130 + exponential(hardness)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_jets + 1, n)
    pt = []
    for k in counts:
        lead = 130 + rng.exponential(hardness)
        pt.append(sorted([lead, *rng.uniform(20, lead, k - 1)], reverse=True))
    flat = np.concatenate(pt)
    return EventSample(
        jet_pt=ak.unflatten(flat, counts),
        jet_eta=ak.unflatten(rng.normal(0, 1.5, len(flat)), counts),
        jet_phi=ak.unflatten(rng.uniform(-np.pi, np.pi, len(flat)), counts),
        met=rng.exponential(200, n) + 100,
        weight=np.ones(n),
        metadata={"source": "synthetic", "seed": seed},
    )


@pytest.fixture
def sample() -> EventSample:
    return synthetic_sample()


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """A fresh cache per test session; ``DMLHC_TEST_CACHE=DIR`` keeps one across sessions (development only)."""
    kept = os.environ.get("DMLHC_TEST_CACHE")
    return Path(kept) if kept else tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def test_cache(session_cache, monkeypatch):
    """All tests share one throw-away sample cache (never the user's); tests of the cache pass their own."""
    monkeypatch.setenv("DMLHC_CACHE", str(session_cache))
    return session_cache


ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *arguments: str, cwd: Path, store: str, cache: Path | None = None
               ) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGUMENTS`` (a path below the repository: ``experiments/b_scan.py``, ``train.py``) in ``cwd``,
    against the MLflow store ``store`` and the sample cache ``cache``; its output captured."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store} | ({"DMLHC_CACHE": str(cache)} if cache else {})
    return subprocess.run([sys.executable, str(ROOT / script), *arguments], cwd=cwd, env=env, capture_output=True,
                          text=True)


@pytest.fixture
def own_store(tmp_path, session_cache):
    """Runs a script (:func:`run_script`) in ``tmp_path`` with a SQLite store there and the session's cache."""
    def run(script: str, *arguments: str) -> subprocess.CompletedProcess:
        return run_script(script, *arguments, cwd=tmp_path, store=f"sqlite:///{tmp_path / 'mlflow.db'}",
                          cache=session_cache)

    return run


@dataclass(frozen=True)
class TrainedGrid:
    """A grid trained by ``experiments/grid.py``: the folder it ran in, its MLflow store, its results folder and
    the finished process (its return code and output)."""

    folder: Path
    store: str
    out: Path
    process: subprocess.CompletedProcess
    cache: Path

    def job_folder(self, study: str) -> Path:
        """A folder of ``study``'s own beside the grid's (made), to run its jobs in: a study's multirun there
        leaves the grid's outputs (its one multirun table) alone."""
        path = self.folder / f"{study}_job"
        path.mkdir(exist_ok=True)
        return path

    def run(self, study: str, script: str, *arguments: str) -> subprocess.CompletedProcess:
        """``python SCRIPT ARGUMENTS`` (:func:`run_script`) in ``study``'s job folder, on the grid's store."""
        return run_script(script, *arguments, cwd=self.job_folder(study), store=self.store, cache=self.cache)


@pytest.fixture(scope="session")
def quick_grid(tmp_path_factory, session_cache) -> TrainedGrid:
    """``python experiments/grid.py fig7_quick --jobs 2`` (minutes: Pythia samples, 20 networks; its two benchmarks
    side by side), once per session in a store of its own; the tests of the grid and of the studies on its networks
    share it."""
    folder = tmp_path_factory.mktemp("fig7_quick")
    store, out = f"sqlite:///{folder / 'mlflow.db'}", folder / "results"
    process = run_script("experiments/grid.py", "fig7_quick", "--jobs", "2", "--out", str(out), cwd=folder, store=store,
                         cache=session_cache)
    return TrainedGrid(folder, store, out, process, session_cache)
