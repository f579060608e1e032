"""Invisible-mass line shape of a dark-matter mediator, and its discretisation.

The invisible pair chi chibar is produced through an s-channel mediator Y of mass M
and total width Gamma. Factorising production and decay (the DM angles do not
change the jet kinematics), the cross section is

    dsigma/dm = sigma_{Y+j}(m) * rho(m),
    rho(m)    = (2 m / pi) * m Gamma_chichi(m) / ((m^2 - M^2)^2 + M^2 Gamma^2),

with sigma_{Y+j}(m) the production cross section of a mediator of mass m with a
jet, at couplings that do not change with m (Pythia's matrix elements, turned into
that cross section by ``generate.production_cross_section``), and Gamma_chichi(m) the
partial width of a mediator of mass m into a Dirac pair, which vanishes at the
threshold m = 2 m_chi. So the
invisible mass starts at 2 m_chi and follows the propagator: around M for on-shell
mediators, falling from threshold for off-shell ones (M < 2 m_chi), and rising
with the phase space until the parton luminosity cuts it off for the
kinematically out-of-reach "off-shell-PS" ones (M = 10 TeV).

Pythia cannot sample this shape itself for every mediator (it fixes the Higgs-like
mass window, and recomputes widths), so the generator discretises m into cells:
log-spaced from 2 m_chi to M_MAX, refined across a resonance. M_MAX is close to the
kinematic limit: the spin-2 rho grows like m^5 below M, and 13% of the 10 TeV
spin-2 line shape (its resonance included) lies above 8 TeV. Each cell is
generated at a fixed mass (its rho-weighted mean) with Pythia's exact fixed-mass
matrix element, and gets the weight sigma_{Y+j}(m_cell) * integral of rho over the cell.

Couplings here set the total width, which shapes the on-shell peak (the off-shell
shapes do not depend on it): LHC DM Working Group benchmarks, Dirac DM.
- spin 1 (vector): g_q = 0.25 to all quarks, g_chi = 1.
- spin 0 (scalar): Yukawa-like g_q = y_q = sqrt(2) m_q / v, g_chi = 1.
- spin 2 (universal couplings 1/Lambda): Gamma / M = 0.05 (Gamma depends on the
  cut-off scale; any width well below M gives the same jet kinematics). The partial
  width into DM, Gamma_chichi(m) ~ m^3, makes rho grow like m far above M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VEV = 246.22  # GeV
QUARK_MASSES = {"d": 0.0047, "u": 0.0022, "s": 0.095, "c": 1.27, "b": 4.18, "t": 172.5}
SPIN2_WIDTH_FRACTION = 0.05
M_MAX = 13000.0  # GeV; a Y + jet pair with pT >= 130 GeV needs m < 13.7 TeV at 14 TeV
N_CONTINUUM_CELLS = 36
RESONANCE_STEPS = (0.25, 0.75, 1.5, 3.0, 6.0, 12.0)  # cell edges at M +- k Gamma


def _beta(m: np.ndarray | float, m_f: float) -> np.ndarray:
    x = 1.0 - 4.0 * m_f**2 / np.square(m)
    return np.sqrt(np.clip(x, 0.0, None))


def width_to_pair(spin: int, m: np.ndarray | float, m_f: float, coupling: float = 1.0) -> np.ndarray:
    """Partial width (GeV) of a spin-0/1/2 mediator of mass ``m`` into one Dirac fermion pair."""
    m = np.asarray(m, dtype=float)
    beta, z = _beta(m, m_f), m_f**2 / np.square(m)
    if spin == 0:
        return coupling**2 * m / (8 * np.pi) * beta**3
    if spin == 1:
        return coupling**2 * m / (12 * np.pi) * (1 + 2 * z) * beta
    if spin == 2:  # shape only: massive spin-2 to fermions, ~ m^3 beta^3 (1 + 8z/3)
        return coupling**2 * m**3 / (80 * np.pi * 1000.0**2) * beta**3 * (1 + 8 * z / 3)
    raise ValueError(f"spin must be 0, 1 or 2, got {spin}")


def total_width(spin: int, mediator_mass: float, dm_mass: float) -> float:
    """Total mediator width (GeV) with the couplings documented in this module."""
    if spin == 2:
        return SPIN2_WIDTH_FRACTION * mediator_mass
    width = float(width_to_pair(spin, mediator_mass, dm_mass, 1.0))
    for m_q in QUARK_MASSES.values():
        g_q = 0.25 if spin == 1 else np.sqrt(2) * m_q / VEV
        width += 3 * float(width_to_pair(spin, mediator_mass, m_q, g_q))
    return width


def density(m: np.ndarray, spin: int, mediator_mass: float, dm_mass: float) -> np.ndarray:
    """Unnormalised invisible-mass density rho(m) (propagator x decay phase space)."""
    m = np.asarray(m, dtype=float)
    gamma = total_width(spin, mediator_mass, dm_mass)
    numerator = 2 * m / np.pi * m * width_to_pair(spin, m, dm_mass)
    return numerator / ((m**2 - mediator_mass**2) ** 2 + (mediator_mass * gamma) ** 2)


@dataclass(frozen=True)
class MassCell:
    """One cell of the discretised line shape, generated at the fixed mass ``mass``."""

    low: float
    high: float
    mass: float
    line_weight: float  # integral of the normalised rho over the cell


def mass_cells(spin: int, mediator_mass: float, dm_mass: float) -> list[MassCell]:
    """Cells covering [2 m_chi, M_MAX], each with its share of the normalised line shape."""
    low = 2 * dm_mass
    edge_set = set(np.geomspace(low, M_MAX, N_CONTINUUM_CELLS + 1))
    gamma = total_width(spin, mediator_mass, dm_mass)
    if low < mediator_mass < M_MAX:  # resonance: resolve the peak
        for k in RESONANCE_STEPS:
            edge_set.update(mediator_mass + sign * k * gamma for sign in (-1, 1))
    edges = np.array(sorted(e for e in edge_set if low <= e <= M_MAX))
    edges = edges[np.concatenate([[True], np.diff(edges) > 1e-6 * edges[1:]])]

    cells, weights = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = np.geomspace(lo, hi, 201)
        rho = density(m, spin, mediator_mass, dm_mass)
        weight = np.trapezoid(rho, m)
        mean = np.trapezoid(rho * m, m) / weight if weight > 0 else np.sqrt(lo * hi)
        cells.append((lo, hi, mean))
        weights.append(weight)
    weights = np.array(weights) / np.sum(weights)
    return [MassCell(lo, hi, float(mean), float(w)) for (lo, hi, mean), w in zip(cells, weights) if w > 0]
