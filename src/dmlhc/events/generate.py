"""Embedded Pythia 8 generator for the SM background and the dark-matter benchmarks.

Physics (sqrt(s) = 14 TeV; leading-jet generation cut pT >= 130 GeV, |eta| <= 5):

- ``sm``: pp -> Z j with Z -> nu nubar (``WeakBosonAndParton:qqbar2gmZg``,
  ``qg2gmZq``, pure Z, decays closed except to neutrinos).
- spin 1 (vector mediator coupled to light quarks): q qbar -> Y g and q g -> Y q,
  realised with the same Z + jet matrix elements for a stable Z of mass m (so the
  quark couplings keep the SM Z's up/down ratio: |v|^2 + |a|^2 of d-type quarks is
  1.29 times that of u-type, instead of 1 for a universal vector).
- spin 0 (scalar coupled to quarks through Yukawas): gluon fusion through the top
  loop with a jet, ``HiggsSM:gg2Hg(l:t)``, ``qg2Hq(l:t)``, ``qqbar2Hg(l:t)`` for a stable
  Higgs-like scalar of mass m (heavy-top-limit kinematics, Pythia's approximation).
- spin 2 (universal couplings, Randall-Sundrum-like): ``ExtraDimensionsG*:gg2G*g``,
  ``qg2G*q``, ``qqbar2G*g`` for a stable G* (id 5100039) of mass m. Pythia's G* couples
  with kappa = kappaMG / m; every cell sets kappaMG = SPIN2_KAPPA * m, so the coupling
  (1/Lambda of a universal spin-2 mediator) is the same at every mass.
- ``alp`` (a G Gdual): gg -> a g, q g -> a q, q qbar -> a g, which have the same
  2 -> 2 matrix elements as the effective g g H vertex, so the Higgs gluon-fusion
  processes with a stable 0.1 GeV scalar (see ``benchmarks.ALP_GENERATED_MASS``).

Mediators never decay in Pythia: they stand for the invisible chi chibar pair, whose
mass m follows the line shape of ``lineshape`` (from 2 m_chi, through the
propagator). The line shape is generated as a mixture of fixed-mass cells, each
weighted by the production cross section at its mass (``production_cross_section``)
times its share of the line shape; the cross sections come from a short parton-level
pilot run per cell (cached).

Levels: ``parton`` (hard process only; the jet is the recoiling parton),
``shower`` (ISR/FSR, anti-kT R = 0.4 jets of visible final-state partons, no MPI,
no hadronisation) and ``hadron`` (plus MPI and hadronisation). At shower and hadron
level the hard process is generated from pTHat >= 100 GeV, so that jets that lose
pT to radiation are not cut before the leading-jet cut; the ATLAS-like jet response
of ``detector`` is applied there unless disabled. MissingET.MET is the pT of the
invisible system (Z or mediator) after showering.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import awkward as ak
import numpy as np
from tqdm.auto import tqdm

from dmlhc import __version__
from dmlhc.errors import ConfigError, StoreError
from dmlhc.events.benchmarks import ALP_GENERATED_MASS, Benchmark
from dmlhc.events.cache import (
    NO_RECORD,
    cache_dir,
    cache_origin,
    check_writable,
    copy_atomic,
    damage,
    discard,
    key_of,
    read_json,
    write_json,
    write_record,
)
from dmlhc.events.delphes import EventFileError, EventSample, read_delphes, write_delphes
from dmlhc.events.detector import JetResponse
from dmlhc.events.lineshape import mass_cells

LEVELS = ("parton", "shower", "hadron")
SQRT_S = 14000.0  # GeV
LEADING_JET_PT_MIN = 130.0  # GeV, generation cut
LEADING_JET_ETA_MAX = 5.0
JET_R = 0.4
JET_PT_MIN = 20.0  # GeV, jets stored per event
PTHAT_MIN = {"parton": LEADING_JET_PT_MIN, "shower": 100.0, "hadron": 100.0}
CHUNK_TRIED = {"parton": 20000, "shower": 2000, "hadron": 250}  # events per job
PILOT_EVENTS = 2000
MIN_CELL_FRACTION = 1e-5  # cells below this share of the cross section are dropped
PYTHIA_SEED_MAX = 900_000_000
PILOT_SEED = 20220063
#: Revision of the line shape and its cell weights, part of every cache key. 2: physical
#: production cross sections (spin 1 times pi m Gamma(m), spin 2 at a fixed coupling),
#: cells up to 13 TeV; 1: Pythia's raw fixed-mass cross sections, cells up to 8 TeV.
LINE_SHAPE_REVISION = 2
#: Spin-2 coupling kappa = kappaMG / m (1/GeV), held fixed over the line shape: Pythia's
#: default kappaMG = 0.054 at m = 1 TeV. It sets the normalisation only, not the kinematics.
SPIN2_KAPPA = 0.054 / 1000.0

log = logging.getLogger(__name__)

INVISIBLE_ID = {"sm": 23, "spin1": 23, "spin0": 25, "alp": 25, "spin2": 5100039}

_COMMON = ["Beams:eCM = 14000", "Next:numberCount = 0", "Print:quiet = on", "Random:setSeed = on"]
_LEVEL = {
    "parton": ["PartonLevel:all = off", "HadronLevel:all = off"],
    "shower": ["PartonLevel:MPI = off", "HadronLevel:all = off"],
    "hadron": [],
}


def base_settings(level: str) -> list[str]:
    """Pythia settings shared by every process at ``level`` (beams, level switches, pTHat cut)."""
    return [*_COMMON, *_LEVEL[level], f"PhaseSpace:pTHatMin = {PTHAT_MIN[level]}"]


def pythia_version() -> str:
    from importlib.metadata import version

    return version("pythia8mc")


def process_settings(benchmark: Benchmark, mass: float | None = None) -> list[str]:
    """Pythia settings of the hard process; ``mass`` is the fixed invisible mass of a cell."""
    fw = benchmark.framework
    if fw == "sm":
        return ["WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                "WeakZ0:gmZmode = 2", "23:onMode = off", "23:onIfAny = 12 14 16"]
    fixed_mass = ["PhaseSpace:useBreitWigners = off"]
    if fw == "alp":
        mass = ALP_GENERATED_MASS
    pid = INVISIBLE_ID[fw]
    stable = [f"{pid}:mayDecay = off", f"{pid}:m0 = {mass:.6g}"]
    if fw == "spin1":
        return ["WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                "WeakZ0:gmZmode = 2", *stable, *fixed_mass]
    if fw in ("spin0", "alp"):
        return ["HiggsSM:gg2Hg(l:t) = on", "HiggsSM:qg2Hq(l:t) = on", "HiggsSM:qqbar2Hg(l:t) = on",
                *stable, *fixed_mass]
    if fw == "spin2":
        assert mass is not None  # a mediator cell always has a mass (formatting it above fails on None)
        return ["ExtraDimensionsG*:gg2G*g = on", "ExtraDimensionsG*:qg2G*q = on",
                "ExtraDimensionsG*:qqbar2G*g = on", f"ExtraDimensionsG*:kappaMG = {SPIN2_KAPPA * mass:.6g}",
                *stable, *fixed_mass]
    raise ValueError(f"unknown framework {fw!r}")


def production_cross_section(framework: str, pythia) -> tuple[float, float]:
    """Cross section and its error (mb) of an initialised, run ``pythia``, as the production cross section.

    For the mediators: the production cross section of the invisible state (with a jet) at
    its fixed mass m, the factor of the cell's line weight. Pythia's fixed-mass H + jet and
    G* + jet matrix elements give it as they are. Its gamma*/Z + jet ones keep the Z
    propagator and decay, and so give sigma(m) / (pi m Gamma(m)), with Gamma(m) the width
    Pythia recomputed for a Z of mass m (no branching ratio enters: Pythia's Z has no top
    channel and all its channels stay on). The tests check each against a
    Breit-Wigner-integrated Pythia run.
    """
    info = pythia.infoPython()
    factor = 1.0
    if framework == "spin1":
        factor = math.pi * pythia.particleData.m0(23) * pythia.particleData.mWidth(23)
    return info.sigmaGen() * factor, info.sigmaErr() * factor


@dataclass(frozen=True)
class GenerationSpec:
    """Everything that determines a sample (and so its cache key)."""

    benchmark: Benchmark
    n_events: int
    level: str = "parton"
    seed: int = 1
    detector: JetResponse = field(default_factory=JetResponse)

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.n_events < 1:
            raise ConfigError(f"the number of events must be positive, got {self.n_events}")
        if not 0 <= self.seed < PYTHIA_SEED_MAX:
            raise ConfigError(f"seed must be in [0, {PYTHIA_SEED_MAX}), got {self.seed}")

    @property
    def detector_applied(self) -> bool:
        return self.detector.enabled and self.level != "parton"

    def describe(self) -> dict:
        """The JSON description the cache key is made from."""
        return {
            "benchmark": asdict(self.benchmark),
            "n_events": self.n_events,
            "level": self.level,
            "seed": self.seed,
            "detector": asdict(self.detector) if self.detector_applied else None,
            "cuts": {"pt_min": LEADING_JET_PT_MIN, "eta_max": LEADING_JET_ETA_MAX, "pthat_min": PTHAT_MIN[self.level],
                     "jet_r": JET_R, "jet_pt_min": JET_PT_MIN, "sqrt_s": SQRT_S},
            "generator": {"dmlhc": __version__, "pythia8mc": pythia_version(), "line_shape": LINE_SHAPE_REVISION,
                          "chunk": CHUNK_TRIED[self.level], "pilot_events": PILOT_EVENTS},
        }

    def file_name(self) -> str:
        return f"{self.benchmark.name}_{self.level}_{self.n_events}_seed{self.seed}_{key_of(self.describe())[:12]}.root"


# ----------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class _Job:
    settings: tuple[str, ...]
    level: str
    n_tried: int
    seed: int
    invisible_id: int
    detector: JetResponse
    framework: str
    pilot: bool = False


@dataclass
class _JobResult:
    sigma_mb: float = 0.0
    sigma_err_mb: float = 0.0
    n_tried: int = 0
    jet_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    jets: np.ndarray = field(default_factory=lambda: np.zeros((3, 0)))  # pt, eta, phi (flat)
    met: np.ndarray = field(default_factory=lambda: np.zeros(0))
    invisible_mass: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failed: str = ""

    @property
    def n_accepted(self) -> int:
        return len(self.met)


def _job_seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0]) % (PYTHIA_SEED_MAX - 1) + 1


@contextmanager
def _stdout_to_stderr():
    """Send C++ output (Pythia's messages, the FastJet banner) to stderr: stdout carries results only."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


STOPPED = "stopped on request"


def _run_job(job: _Job) -> _JobResult:
    """Generate ``job.n_tried`` events in a fresh Pythia and keep those passing the cut."""
    if _stopped():
        return _JobResult(failed=STOPPED)
    with _stdout_to_stderr():
        return _generate_events(job)


def _generate_events(job: _Job) -> _JobResult:
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    level = "parton" if job.pilot else job.level
    for line in [*base_settings(level), *job.settings, f"Random:seed = {job.seed}"]:
        if not pythia.readString(line):
            return _JobResult(failed=f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        return _JobResult(failed="Pythia failed to initialise (zero cross section at this mass?)")

    rows, jet_counts, met, inv_mass = [], [], [], []
    slowjet = None if level == "parton" else pythia8mc.SlowJet(-1, JET_R, JET_PT_MIN, LEADING_JET_ETA_MAX + 0.5, 2, 2)
    for i in range(job.n_tried):
        if i % STOP_CHECK_EVERY == 0 and _stopped():
            return _JobResult(failed=STOPPED)
        if not pythia.next() or job.pilot:
            continue
        if slowjet is None:
            invisible, jet = _hard_outgoing(pythia.process, job.invisible_id)
            rows.append((jet.pT(), jet.eta(), jet.phi()))
            jet_counts.append(1)
        else:
            event = pythia.event
            invisible = event[_hard_outgoing(event, job.invisible_id)[0].iBotCopyId()]
            if invisible.isFinal():
                invisible.statusNeg()  # a stable mediator is invisible: keep it out of the jets
            slowjet.analyze(event)
            for j in range(slowjet.sizeJet()):
                rows.append((slowjet.pT(j), slowjet.p(j).eta(), slowjet.phi(j)))
            jet_counts.append(slowjet.sizeJet())
        met.append(invisible.pT())
        inv_mass.append(invisible.m())

    sigma, sigma_err = production_cross_section(job.framework, pythia)
    result = _JobResult(sigma_mb=sigma, sigma_err_mb=sigma_err, n_tried=job.n_tried)
    if job.pilot:
        return result
    jets = np.asarray(rows, dtype=np.float64).reshape(-1, 3).T
    counts = np.asarray(jet_counts, dtype=np.int64)
    rng = np.random.default_rng(job.seed)
    if level != "parton":
        jets, counts = _reconstruct(jets, counts, job.detector, rng)
    keep = _passes_generation_cut(jets, counts)
    jet_keep = np.repeat(keep, counts)
    result.jet_counts = counts[keep]
    result.jets = jets[:, jet_keep]
    result.met = np.asarray(met)[keep]
    result.invisible_mass = np.asarray(inv_mass)[keep]
    return result


def _hard_outgoing(record, invisible_id: int):
    """(invisible, recoiling parton) among the two outgoing entries of the hard process."""
    first, second = record[5], record[6]
    return (first, second) if first.id() == invisible_id else (second, first)


def _reconstruct(jets: np.ndarray, counts: np.ndarray, response: JetResponse, rng: np.random.Generator):
    """Apply the detector response, drop unreconstructed and soft jets, re-sort by pT."""
    jet_pt, jet_eta, jet_phi = jets  # rows pt, eta, phi
    pt, eta, phi, ok = response.apply(jet_pt, jet_eta, jet_phi, rng)
    event_of_jet = np.repeat(np.arange(len(counts)), counts)
    ok &= pt >= JET_PT_MIN
    pt, eta, phi, event_of_jet = pt[ok], eta[ok], phi[ok], event_of_jet[ok]
    order = np.lexsort((-pt, event_of_jet))
    return np.stack([pt[order], eta[order], phi[order]]), np.bincount(event_of_jet, minlength=len(counts))


def _passes_generation_cut(jets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    has_jet = counts > 0
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])[has_jet]
    keep = np.zeros(len(counts), dtype=bool)
    keep[has_jet] = (jets[0, first] >= LEADING_JET_PT_MIN) & (np.abs(jets[1, first]) <= LEADING_JET_ETA_MAX)
    return keep


# ------------------------------------------------------------------------ the driver
@dataclass(frozen=True)
class _Cell:
    settings: tuple[str, ...]
    mass: float | None
    line_weight: float


def _cells(benchmark: Benchmark) -> list[_Cell]:
    if benchmark.spin is None:  # SM or ALP: one process, no line shape
        return [_Cell(tuple(process_settings(benchmark)), None, 1.0)]
    # every spin-mediator benchmark has both masses (benchmarks.BENCHMARKS, custom_point)
    assert benchmark.mediator_mass is not None and benchmark.dm_mass is not None
    return [_Cell(tuple(process_settings(benchmark, c.mass)), c.mass, c.line_weight)
            for c in mass_cells(benchmark.spin, benchmark.mediator_mass, benchmark.dm_mass)]


def _run_all(jobs: list[_Job], workers: int, progress: tqdm | None, count) -> list[_JobResult]:
    """Run jobs on ``workers`` processes, in order of submission; ``count(result)`` feeds the bar.

    Workers ignore Ctrl-C and die with this process (even on SIGKILL). On Ctrl-C or an error,
    queued jobs are cancelled and running ones return at their next stop check (every
    :data:`STOP_CHECK_EVERY` events); a second Ctrl-C while waiting for them kills the workers.
    """
    if workers <= 1 or len(jobs) == 1:
        results = []
        for job in jobs:
            results.append(_run_job(job))
            if progress is not None:
                progress.update(count(results[-1]))
        return results
    context = get_context("fork")
    stop = context.Event()
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context, initializer=_init_worker,
                               initargs=(os.getpid(), stop))
    try:
        with _sigint_held():  # the first submit forks the workers: a Ctrl-C inside fork() would be lost
            futures = [pool.submit(_run_job, job) for job in jobs]
        for future in futures:
            result = future.result()
            if progress is not None:
                progress.update(count(result))
        results = [f.result() for f in futures]
    except BaseException:
        _stop_pool(pool, stop)
        raise
    pool.shutdown()
    return results


@contextmanager
def _sigint_held():
    """Hold Ctrl-C back until the block ends, then raise KeyboardInterrupt as usual (main thread only: Python
    runs signal handlers there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def _stop_pool(pool: ProcessPoolExecutor, stop) -> None:
    """Cancel queued jobs, tell running ones to stop, wait for them; on a second Ctrl-C, kill the workers."""
    stop.set()
    processes = list((pool._processes or {}).values())  # no public handle on an executor's processes
    try:
        pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for process in processes:  # after a second Ctrl-C, or any the executor did not get to stop
            if process.is_alive():
                process.kill()


#: Set in each worker process: the parent's stop request (Ctrl-C or an error elsewhere).
_STOP = None
#: Events between two looks at the stop request (about 0.1 s at hadron level, far less at parton level).
STOP_CHECK_EVERY = 16
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_worker(parent: int, stop) -> None:
    """In a worker: leave Ctrl-C to the parent, see its stop request, die with it."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):  # the kernel kills the worker when the parent dies, even by SIGKILL
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()  # elsewhere than Linux


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _stopped() -> bool:
    return _STOP is not None and _STOP.is_set()


def _pilot_job(benchmark: Benchmark, settings, seed: int, n_events: int = PILOT_EVENTS) -> _Job:
    return _Job(tuple(settings), "parton", n_events, seed, INVISIBLE_ID[benchmark.framework], JetResponse(),
                benchmark.framework, pilot=True)


def cell_cross_section(benchmark: Benchmark, mass: float, n_events: int = PILOT_EVENTS,
                       seed: int = PILOT_SEED) -> tuple[float, float]:
    """Production cross section (mb) and its error at the fixed invisible mass ``mass``, as a cell's pilot gets it."""
    result = _run_job(_pilot_job(benchmark, process_settings(benchmark, mass), seed, n_events))
    if result.failed:
        raise RuntimeError(f"{benchmark.name} at m = {mass:g} GeV: {result.failed}")
    return result.sigma_mb, result.sigma_err_mb


def _pilot_cross_sections(cells: list[_Cell], spec: GenerationSpec, workers: int, cache: Path,
                          show: bool) -> np.ndarray:
    """Production cross section (mb) of every cell, from short parton-level runs (cached)."""
    # The pilot seed is fixed, so every seed of a benchmark shares one (cached) set of cell weights.
    jobs = [_pilot_job(spec.benchmark, c.settings, _job_seed(PILOT_SEED, i)) for i, c in enumerate(cells)]
    key = key_of({"pilot": [asdict(j) for j in jobs], "pythia8mc": pythia_version(),
                  "line_shape": LINE_SHAPE_REVISION, "returns": "production cross section (mb)"})
    path = cache / "pilot" / f"{spec.benchmark.name}_{key[:16]}.json"
    stored = read_json(path)
    if stored is not None:
        return np.array(stored["sigma_mb"])
    with tqdm(total=len(jobs), desc=f"cross sections of {len(cells)} mass cells", unit="cell",
              disable=not show) as bar:
        results = _run_all(jobs, workers, bar, lambda r: 1)
    sigma = np.array([0.0 if r.failed else r.sigma_mb for r in results])
    write_json(path, {"sigma_mb": sigma.tolist(), "masses": [c.mass for c in cells],
                      "quantity": "production cross section at the cell mass (mb)"})
    return sigma


def generate_sample(spec: GenerationSpec, workers: int | None = None, cache: Path | None = None,
                    show_progress: bool = True) -> EventSample:
    """Generate the events of ``spec`` (in memory); results depend on the seed only, not on ``workers``."""
    workers = workers or os.cpu_count() or 1
    cache = cache_dir(cache)
    start = time.time()
    cells = _cells(spec.benchmark)
    if len(cells) > 1:
        sigma_pilot = _pilot_cross_sections(cells, spec, workers, cache, show_progress)
        weights = sigma_pilot * np.array([c.line_weight for c in cells])
        if not weights.sum() > 0:
            raise RuntimeError(f"{spec.benchmark.name}: every mass cell has zero cross section")
        alive = weights / weights.sum() >= MIN_CELL_FRACTION
        cells = [c for c, a in zip(cells, alive) if a]
        weights = weights[alive] / weights[alive].sum()
    else:
        weights = np.ones(1)

    invisible_id = INVISIBLE_ID[spec.benchmark.framework]
    chunk = CHUNK_TRIED[spec.level]
    results: list[list[_JobResult]] = [[] for _ in cells]
    efficiency = 1.0 if spec.level == "parton" else 0.4
    n_accepted, round_ = 0, 0
    with tqdm(total=spec.n_events, desc=f"generate {spec.benchmark.name} ({spec.level})", unit="ev",
              disable=not show_progress) as bar:
        while n_accepted < spec.n_events:
            round_ += 1
            to_try = math.ceil((spec.n_events - n_accepted) / max(efficiency, 0.02) * 1.1) + 10
            per_cell = _largest_remainder(weights * to_try)
            jobs, owners = [], []
            for i, (cell, n) in enumerate(zip(cells, per_cell)):
                for k in range(math.ceil(n / chunk)):
                    jobs.append(_Job(cell.settings, spec.level, min(chunk, n - k * chunk),
                                     _job_seed(spec.seed, round_, i, k), invisible_id, spec.detector,
                                     spec.benchmark.framework))
                    owners.append(i)
            room = [spec.n_events - n_accepted]  # the bar counts accepted events up to the target

            def count(result: _JobResult, room: list[int] = room) -> int:
                step = min(result.n_accepted, room[0])
                room[0] -= step
                return step

            done = _run_all(jobs, workers, bar, count)
            for owner, result in zip(owners, done):
                if result.failed:
                    raise RuntimeError(f"{spec.benchmark.name}: {result.failed}")
                results[owner].append(result)
            n_accepted += sum(r.n_accepted for r in done)
            tried = sum(r.n_tried for rs in results for r in rs)
            efficiency = n_accepted / tried
            if round_ >= 20 and n_accepted < spec.n_events:
                raise RuntimeError(f"{spec.benchmark.name}: generation cut efficiency {efficiency:.2g} too low")

    return _assemble(spec, cells, weights, results, workers, time.time() - start)


def _largest_remainder(x: np.ndarray) -> np.ndarray:
    """Round non-negative ``x`` to integers with the same (rounded) total, deterministically."""
    base = np.floor(x).astype(np.int64)
    short = int(round(x.sum())) - base.sum()
    if short > 0:
        base[np.argsort(-(x - base), kind="stable")[:short]] += 1
    return base


def _assemble(spec, cells, weights, results, workers, seconds) -> EventSample:
    """Merge the jobs' events, keep a uniform random subset of n_events, attach metadata."""
    sampled = [i for i, rs in enumerate(results) if rs]  # cells too light to get a single event drop out
    cells, weights, results = [cells[i] for i in sampled], weights[sampled], [results[i] for i in sampled]
    flat = [r for rs in results for r in rs]
    counts = np.concatenate([r.jet_counts for r in flat])
    jets = np.concatenate([r.jets for r in flat], axis=1)
    met = np.concatenate([r.met for r in flat])
    inv_mass = np.concatenate([r.invisible_mass for r in flat])
    rng = np.random.default_rng(_job_seed(spec.seed, 999_999))
    chosen = rng.choice(len(met), size=spec.n_events, replace=False)  # random order too

    jet_pt, jet_eta, jet_phi = (ak.unflatten(row, counts)[chosen] for row in jets)

    # sigma after cuts: sum over cells of sigma_cell * line weight * cut efficiency
    tried = np.array([sum(r.n_tried for r in rs) for rs in results])
    accepted = np.array([sum(r.n_accepted for r in rs) for rs in results])
    sigma_cell = np.array([np.average([r.sigma_mb for r in rs], weights=[r.n_tried for r in rs]) for rs in results])
    sigma_err_cell = np.array([math.sqrt(sum((r.sigma_err_mb * r.n_tried) ** 2 for r in rs)) / t
                               for rs, t in zip(results, tried)])
    line = np.array([c.line_weight for c in cells])
    line = line / line.sum()  # renormalised over the cells that were sampled
    eff = accepted / tried
    sigma_cut = float(np.sum(sigma_cell * line * eff)) * 1e9  # mb -> pb
    sigma_gen = float(np.sum(sigma_cell * line)) * 1e9
    rel_err = math.sqrt(float(np.sum((sigma_err_cell * line * eff) ** 2)) * 1e18 / sigma_cut**2
                        + _binomial_rel_var(accepted, tried))
    quantiles = np.quantile(inv_mass, [0.0, 0.1, 0.5, 0.9, 1.0]).round(3).tolist()
    metadata = {
        **spec.describe(),
        "benchmark_description": spec.benchmark.describe(),
        "sigma_generated_pb": sigma_gen,
        "sigma_after_cuts_pb": sigma_cut,
        "sigma_after_cuts_err_pb": sigma_cut * rel_err,
        "cross_section_note": ("physical (pb)" if spec.benchmark.framework == "sm" else
                               "arbitrary normalisation: Pythia's couplings, not the model's; S is set by S/sqrt(B)"),
        "n_tried": int(tried.sum()),
        "n_accepted": int(accepted.sum()),
        "n_events": spec.n_events,
        "workers": workers,
        "seconds": round(seconds, 2),
        "invisible_mass_quantiles_gev": dict(zip(["min", "q10", "median", "q90", "max"], quantiles)),
        "mass_cells": [{"mass": c.mass, "weight": float(w), "tried": int(t), "accepted": int(a)}
                       for c, w, t, a in zip(cells, weights, tried, accepted)],
        "pythia_settings": {"common": base_settings(spec.level), "process": list(cells[0].settings)},
    }
    return EventSample(jet_pt, jet_eta, jet_phi, met[chosen], np.ones(spec.n_events), metadata)


def _binomial_rel_var(accepted: np.ndarray, tried: np.ndarray) -> float:
    a, t = accepted.sum(), tried.sum()
    return float((t - a) / (a * t)) if a else 0.0


def generate(spec: GenerationSpec, out: str | os.PathLike | None = None, workers: int | None = None,
             cache: str | os.PathLike | None = None, show_progress: bool = True) -> Path:
    """Generate ``spec`` into the cache (a hit returns at once) and copy it to ``out`` if given.

    A cached file that does not match its size and SHA-256 record is regenerated, with a
    warning. The output path and a cache that must be written are checked before generating.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"workers={workers}: give at least 1 (or leave it unset for all cores)")
    folder = cache_dir(cache)
    cached = folder / spec.file_name()
    if out is not None:
        check_output_path(Path(out))
    if not _usable(cached):
        check_writable(folder, "sample cache", f"point {cache_origin(cache)} at a writable folder")
        sample = generate_sample(spec, workers=workers, cache=folder, show_progress=show_progress)
        write_delphes(cached, sample)
        write_record(cached)
    return copy_atomic(cached, Path(out)) if out else cached


def check_output_path(out: Path) -> None:
    """Raise :class:`StoreError` unless ``out`` can be written: a file path in an existing, writable folder."""
    if out.is_dir():
        raise StoreError(f"output path {out}: is a folder; give a file path in it, such as {out / 'sample.root'}")
    if not out.parent.is_dir():
        raise StoreError(f"output path {out}: the folder {out.parent} does not exist; create it or give another path")
    check_writable(out.parent, f"output path {out}: folder", "give a path in a folder you can write")


def _usable(cached: Path) -> bool:
    """Whether the cached sample is there and undamaged; a damaged one is removed, saying so."""
    if not cached.is_file():
        return False
    problem = damage(cached)
    if problem == NO_RECORD:  # written before records existed, or killed between the file and its record
        try:
            read_delphes(cached)
        except EventFileError as err:
            problem = f"cannot be read ({err})"
        else:
            with suppress(OSError):  # a read-only cache: it is checked by reading again next time
                write_record(cached)
            return True
    if problem is None:
        return True
    log.warning("cached sample %s %s; regenerating it", cached, problem)
    with suppress(OSError):  # a read-only cache fails its write check next, naming the folder
        discard(cached)
    return False


def load_or_generate(spec: GenerationSpec, **kwargs) -> EventSample:
    """The sample of ``spec``, generated on first use."""
    return read_delphes(generate(spec, **kwargs))
