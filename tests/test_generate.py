"""The embedded Pythia 8 generator: every level, the cuts, reproducibility, the cache, the CLI.

Real Pythia runs with a few hundred to a few thousand events each (marked ``pythia``).
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import uproot

from dmlhc.events import generate as gen
from dmlhc.events.benchmarks import get_benchmark
from dmlhc.events.delphes import read_delphes
from dmlhc.events.detector import JetResponse
from dmlhc.events.generate import (
    LEADING_JET_ETA_MAX,
    LEADING_JET_PT_MIN,
    GenerationSpec,
    base_settings,
    cell_cross_section,
    generate,
    generate_sample,
    process_settings,
)
from dmlhc.events.lineshape import M_MAX, density

pytestmark = pytest.mark.pythia


def _leading_jets_pass_the_cut(sample) -> bool:
    lead = sample.leading_jet()
    return bool(np.all(lead["pt"] >= LEADING_JET_PT_MIN) and np.all(np.abs(lead["eta"]) <= LEADING_JET_ETA_MAX))


@pytest.mark.parametrize("name,level,n", [("sm", "parton", 400), ("sm", "shower", 200), ("sm", "hadron", 60),
                                          ("spin2_onshell", "parton", 400), ("spin2_onshell", "shower", 200),
                                          ("spin1_offshell", "hadron", 40)])
def test_every_level_gives_events_that_pass_the_generation_cut(name, level, n):
    sample = generate_sample(GenerationSpec(get_benchmark(name), n, level, seed=3), show_progress=False)
    assert len(sample) == n
    assert _leading_jets_pass_the_cut(sample)
    assert ak.all(ak.num(sample.jet_pt) >= 1)
    assert np.all(ak.to_numpy(ak.flatten(sample.jet_pt[:, :-1] - sample.jet_pt[:, 1:])) >= 0)  # pT-ordered
    meta = sample.metadata
    assert meta["level"] == level and meta["n_accepted"] <= meta["n_tried"]
    assert meta["sigma_after_cuts_pb"] > 0 and meta["sigma_after_cuts_err_pb"] > 0
    assert meta["generator"]["pythia8mc"] == "8.317.2"
    if level == "parton":
        assert ak.all(ak.num(sample.jet_pt) == 1)  # the recoiling parton


def test_sm_cross_section_is_near_the_papers():
    """Pythia LO gives ~59.6 pb at 14 TeV after pTHat > 130 GeV; the paper's MadGraph 53.6 pb."""
    sample = generate_sample(GenerationSpec(get_benchmark("sm"), 2000, "parton"), show_progress=False)
    assert 50 < sample.metadata["sigma_after_cuts_pb"] < 70


def test_same_seed_same_events_whatever_the_worker_count():
    spec = GenerationSpec(get_benchmark("spin1_onshell"), 300, "parton", seed=11)
    one = generate_sample(spec, workers=1, show_progress=False)
    two = generate_sample(spec, workers=2, show_progress=False)
    np.testing.assert_array_equal(one.leading_jet()["pt"], two.leading_jet()["pt"])
    np.testing.assert_array_equal(one.met, two.met)


def test_another_seed_gives_other_events():
    sm = get_benchmark("sm")
    first, again, other = (generate_sample(GenerationSpec(sm, 300, "parton", seed=s), show_progress=False)
                           for s in (21, 21, 22))
    np.testing.assert_array_equal(first.leading_jet()["eta"], again.leading_jet()["eta"])
    assert not np.array_equal(first.leading_jet()["eta"], other.leading_jet()["eta"])


def test_offshell_invisible_mass_starts_at_twice_the_dm_mass():
    benchmark = get_benchmark("spin1_offshell")
    meta = generate_sample(GenerationSpec(benchmark, 300, "parton"), show_progress=False).metadata
    q = meta["invisible_mass_quantiles_gev"]
    assert 2 * benchmark.dm_mass <= q["min"] < 2 * benchmark.dm_mass * 1.2  # from threshold, not at M_Y = 91 GeV
    assert q["median"] > q["min"]  # a continuum, not a line


def _pythia(settings, n_events: int):
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in [*base_settings("parton"), *settings, "Random:seed = 4242"]:
        assert pythia.readString(line), line
    assert pythia.init()
    for _ in range(n_events):
        pythia.next()
    return pythia


@functools.cache
def _breit_wigner_cross_section(framework: str, mass: float, half_window: float = 3.0, n_events: int = 5000) -> float:
    """Production cross section (mb) at ``mass``, independently of the generator's fixed-mass normalisation.

    Pythia integrates its matrix element over a Breit-Wigner (its own width at this mass) in
    mass +- half_window widths; a Breit-Wigner of full width Gamma has the fraction
    2/pi atan(2 half_window) of its area there.
    """
    benchmark = get_benchmark(f"{framework}_onshell")
    pid = gen.INVISIBLE_ID[framework]
    settings = [*(s for s in process_settings(benchmark, mass) if not s.startswith("PhaseSpace:useBreitWigners")),
                "PhaseSpace:minWidthBreitWigners = 1e-6"]  # the default 0.01 GeV would fix narrower G* masses
    width = _pythia(settings, 0).particleData.mWidth(pid)
    window = [f"{pid}:mMin = {mass - half_window * width:.8g}", f"{pid}:mMax = {mass + half_window * width:.8g}"]
    sigma = _pythia([*settings, *window], n_events).infoPython().sigmaGen()
    return sigma / (2 / math.pi * math.atan(2 * half_window))


@pytest.mark.parametrize("framework,mass", [("spin0", 150.0), ("spin0", 300.0), ("spin1", 91.19), ("spin1", 300.0),
                                            ("spin1", 1000.0), ("spin2", 300.0), ("spin2", 1000.0), ("spin2", 3000.0)])
def test_cell_cross_section_is_the_breit_wigner_integrated_one(framework, mass):
    """What a cell's line weight multiplies is the production cross section at its mass, for every spin.

    Pythia's fixed-mass gamma*/Z + jet gives sigma / (pi m Gamma): without the generator's
    conversion the spin-1 ratio would be 1/711 at 91 GeV and 1/8.9e4 at 1 TeV. (Spin 0 is
    checked where the SM-like width is narrow: forcing a width rescales its g g H coupling.)
    """
    sigma_cell, _ = cell_cross_section(get_benchmark(f"{framework}_onshell"), mass)
    assert sigma_cell == pytest.approx(_breit_wigner_cross_section(framework, mass), rel=0.04)


def _expected_quantiles(name: str, masses: tuple[float, ...]) -> np.ndarray:
    """q10, median, q90 of sigma(m) rho(m) on a fine grid, sigma interpolated (log-log) between Breit-Wigner runs."""
    b = get_benchmark(name)
    sigma = [_breit_wigner_cross_section(b.framework, m) for m in masses]
    m = np.geomspace(2 * b.dm_mass, M_MAX, 20001)
    pdf = np.exp(np.interp(np.log(m), np.log(masses), np.log(sigma))) * density(m, b.spin, b.mediator_mass, b.dm_mass)
    cdf = np.concatenate([[0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(m))])
    return np.interp([0.1, 0.5, 0.9], cdf / cdf[-1], m)


@pytest.mark.parametrize("name", ["spin1_onshell", "spin1_offshell_ps"])
def test_invisible_mass_quantiles_follow_the_line_shape(name):
    """Sample quantiles against sigma(m) x rho(m) (cells are generated at one mass each: 10% tolerance).

    Weighted by Pythia's raw fixed-mass spin-1 cross sections, spin1_onshell had q10 = 331 GeV
    and spin1_offshell_ps a median of 267 GeV.
    """
    masses = (20.0, 50.0, 120.0, 300.0, 600.0, 1000.0, 1500.0, 2200.0, 3200.0, 4500.0, 6500.0, 8500.0, 10000.0, 12000.0)
    q = generate_sample(GenerationSpec(get_benchmark(name), 2000, "parton"), show_progress=False
                        ).metadata["invisible_mass_quantiles_gev"]
    np.testing.assert_allclose([q["q10"], q["median"], q["q90"]], _expected_quantiles(name, masses), rtol=0.1)


def test_cache_hit_never_regenerates_and_a_changed_setting_never_reuses(monkeypatch, tmp_path):
    monkeypatch.setenv("DMLHC_CACHE", str(tmp_path))
    spec = GenerationSpec(get_benchmark("sm"), 200, "parton", seed=5)
    first = generate(spec, show_progress=False)
    calls = []
    original = gen.generate_sample
    monkeypatch.setattr(gen, "generate_sample", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert generate(spec, show_progress=False) == first and calls == []
    changed = [GenerationSpec(spec.benchmark, 201, "parton", seed=5), GenerationSpec(spec.benchmark, 200, "parton", 6),
               GenerationSpec(spec.benchmark, 200, "shower", 5),
               GenerationSpec(spec.benchmark, 200, "shower", 5, JetResponse(enabled=False))]
    paths = {generate(s, show_progress=False) for s in changed}
    assert len(calls) == 4 and len(paths) == 4 and first not in paths


def test_cli_generates_a_custom_point_that_plain_uproot_reads(tmp_path):
    out = tmp_path / "x.root"
    run = subprocess.run([sys.executable, "-m", "dmlhc.cli", "generate", "--spin", "1", "--mediator-mass", "1500",
                          "--dm-mass", "10", "--events", "300", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == str(out)
    with uproot.open(out) as f:
        arrays = f["Delphes"].arrays(["Jet.PT", "Jet.Eta", "Jet.Phi", "MissingET.MET", "Event.Weight"])
    assert len(arrays) == 300 and ak.all(arrays["Jet.PT"][:, 0] >= 130)
    meta = read_delphes(out).metadata
    assert meta["benchmark"]["mediator_mass"] == 1500.0
    assert abs(meta["invisible_mass_quantiles_gev"]["median"] - 1500) < 150


def test_cli_sm_prints_the_cross_section_against_the_paper(tmp_path):
    run = subprocess.run([sys.executable, "-m", "dmlhc.cli", "generate", "--benchmark", "sm", "--events", "300",
                          "--quiet", "--cache", str(tmp_path)], capture_output=True, text=True, check=True)
    assert "SM cross section after the generation cuts" in run.stderr and "53.6 pb" in run.stderr


@pytest.mark.parametrize("argv,message", [
    (["--benchmark", "spin3_onshell"], "unknown benchmark 'spin3_onshell'; choose one of sm, alp"),
    (["--spin", "1", "--mediator-mass", "1000"], "give --benchmark NAME, or all of"),
    (["--benchmark", "sm", "--events", "0"], "the number of events must be positive"),
])
def test_cli_bad_arguments_fail_with_a_clear_message(argv, message):
    run = subprocess.run([sys.executable, "-m", "dmlhc.cli", "generate", *argv], capture_output=True, text=True)
    assert run.returncode == 2 and message in run.stderr
