"""Line shape and Pythia couplings of the mediators, benchmark table, detector response (no Pythia runs)."""

from __future__ import annotations

import numpy as np
import pytest

from dmlhc.events.benchmarks import BENCHMARKS, custom_point, get_benchmark
from dmlhc.events.detector import JetResponse
from dmlhc.events.generate import SPIN2_KAPPA, process_settings
from dmlhc.events.lineshape import M_MAX, density, mass_cells, total_width


def test_table_one_benchmarks_and_regimes():
    assert len(BENCHMARKS) == 11
    assert get_benchmark("spin0_offshell").regime == "offshell"
    assert get_benchmark("spin1_onshell").regime == "onshell"
    assert get_benchmark("spin2_offshell_ps").regime == "offshell_ps"
    assert get_benchmark("alp").regime is None and get_benchmark("sm").spin is None


@pytest.mark.parametrize("bad", [(3, 1000, 10), (1, -5, 10), (1, 1000, 0)])
def test_custom_points_are_validated(bad):
    with pytest.raises(ValueError):
        custom_point(*bad)


@pytest.mark.parametrize("spin", [0, 1, 2])
def test_density_vanishes_below_threshold_and_rises_from_it(spin):
    m = np.array([100.0, 599.0, 600.0, 601.0, 650.0])
    rho = density(m, spin, 91.19, 300.0)
    assert np.all(rho[:3] == 0) and 0 < rho[3] < rho[4]


@pytest.mark.parametrize("spin", [0, 1, 2])
def test_onshell_density_peaks_at_the_mediator_mass(spin):
    m = np.linspace(500, 1500, 1001)
    assert abs(m[np.argmax(density(m, spin, 1000.0, 10.0))] - 1000) < 0.1 * total_width(spin, 1000.0, 10.0) + 2


def test_vector_width_matches_the_lhc_dm_benchmark():
    """g_q = 0.25, g_chi = 1, M = 1 TeV, m_chi = 10 GeV: Gamma ~ 5.6% of M (DM WG numbers)."""
    assert total_width(1, 1000.0, 10.0) == pytest.approx(56.3, abs=0.5)


@pytest.mark.parametrize("name", [n for n, b in BENCHMARKS.items() if b.spin is not None])
def test_cells_tile_the_line_shape(name):
    b = get_benchmark(name)
    cells = mass_cells(b.spin, b.mediator_mass, b.dm_mass)
    assert cells[0].low == pytest.approx(2 * b.dm_mass) and cells[-1].high == pytest.approx(M_MAX)
    assert all(a.high == pytest.approx(c.low) for a, c in zip(cells, cells[1:]))
    assert all(c.low <= c.mass <= c.high for c in cells)
    assert sum(c.line_weight for c in cells) == pytest.approx(1.0)


@pytest.mark.parametrize("mass", [300.0, 1000.0, 5000.0])
def test_spin2_cells_share_one_coupling(mass):
    """Pythia's G* couples with kappaMG / m: every cell sets kappaMG = SPIN2_KAPPA m (a universal 1/Lambda)."""
    settings = process_settings(get_benchmark("spin2_offshell"), mass)
    kappa_mg = [float(s.split("=")[1]) for s in settings if s.startswith("ExtraDimensionsG*:kappaMG")]
    assert kappa_mg == [pytest.approx(SPIN2_KAPPA * mass, rel=1e-5)]


def test_detector_resolution_regions_and_acceptance():
    response = JetResponse()
    sigma = response.energy_resolution(np.array([100.0, 100.0, 100.0]), np.array([0.0, 2.0, 4.0]))
    expected = [np.hypot(np.hypot(3.02, 5.205), 1.59), np.hypot(5.0, 7.06), np.hypot(9.42, 10.0)]
    np.testing.assert_allclose(sigma, expected)
    pt, eta, phi = np.full(4, 200.0), np.array([0.0, 1.0, 4.0, 4.95]), np.zeros(4)
    _, _, _, ok = response.apply(pt, eta, phi, np.random.default_rng(0))
    assert ok.tolist() == [True, True, True, False]


def test_detector_smearing_has_the_stated_width_and_no_bias():
    rng = np.random.default_rng(1)
    n = 200_000
    pt = np.full(n, 500.0)
    new_pt, new_eta, new_phi, _ = JetResponse().apply(pt, np.zeros(n), np.full(n, 3.1), rng)
    expected = np.sqrt((0.0302 * 500) ** 2 + 0.5205**2 * 500 + 1.59**2)
    assert new_pt.mean() == pytest.approx(500, abs=0.2)
    assert new_pt.std() == pytest.approx(expected, rel=0.01)
    assert new_eta.std() == pytest.approx(0.02, rel=0.02)
    assert np.all(np.abs(new_phi) <= np.pi)  # wrapped


def test_disabled_detector_changes_nothing():
    pt, eta, phi = np.array([150.0]), np.array([0.3]), np.array([1.0])
    assert JetResponse(enabled=False).apply(pt, eta, phi, np.random.default_rng(0))[0] is pt
