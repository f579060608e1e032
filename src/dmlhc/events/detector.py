"""Parametrised ATLAS-like jet response, applied at shower and hadron level.

The jet energy resolution follows the hadronic-calorimeter resolution of the
Delphes ATLAS card, sigma_E = sqrt((C E)^2 + S^2 E + N^2) in GeV, per region:

    |eta| <= 1.7        C = 0.0302, S = 0.5205, N = 1.59
    1.7 < |eta| <= 3.2  C = 0.0500, S = 0.706,  N = 0
    3.2 < |eta| <= 4.9  C = 0.0942, S = 1.00,   N = 0

Jets beyond |eta| = 4.9 are not reconstructed. The direction is smeared by a
Gaussian of width 0.02 in eta and in phi (calorimeter cells of 0.1 x 0.1 and
better with tracks). The energy is smeared at fixed direction, so pT scales with E.
It is a parametrisation, not a simulation: no pile-up, no jet energy scale offset,
no efficiency below 20 GeV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: (|eta| upper edge, C, S [sqrt(GeV)], N [GeV]) per calorimeter region.
ATLAS_JET_RESOLUTION = ((1.7, 0.0302, 0.5205, 1.59), (3.2, 0.0500, 0.706, 0.0), (4.9, 0.0942, 1.00, 0.0))


@dataclass(frozen=True)
class JetResponse:
    """Jet energy and direction resolution; ``enabled=False`` leaves jets untouched."""

    enabled: bool = True
    regions: tuple = ATLAS_JET_RESOLUTION
    eta_resolution: float = 0.02
    phi_resolution: float = 0.02

    @property
    def eta_acceptance(self) -> float:
        return self.regions[-1][0]

    def energy_resolution(self, energy: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Absolute energy resolution sigma_E (GeV) for jets of ``energy`` at ``eta``."""
        sigma = np.full(np.shape(energy), np.nan)
        lower = 0.0
        for upper, c, s, n in self.regions:
            inside = (np.abs(eta) > lower) & (np.abs(eta) <= upper) if lower else np.abs(eta) <= upper
            sigma[inside] = np.sqrt((c * energy[inside]) ** 2 + s**2 * energy[inside] + n**2)
            lower = upper
        return sigma

    def apply(self, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, rng: np.random.Generator):
        """Smear flat arrays of jets; returns (pt, eta, phi, reconstructed mask)."""
        if not self.enabled:
            return pt, eta, phi, np.ones(len(pt), dtype=bool)
        reconstructed = np.abs(eta) <= self.eta_acceptance
        energy = pt * np.cosh(eta)
        sigma = self.energy_resolution(energy, eta)
        gauss = rng.standard_normal((3, len(pt)))
        scale = np.clip(1.0 + np.nan_to_num(sigma / energy) * gauss[0], 0.0, None)
        new_eta = eta + self.eta_resolution * gauss[1]
        new_phi = np.mod(phi + self.phi_resolution * gauss[2] + np.pi, 2 * np.pi) - np.pi
        return pt * scale, new_eta, new_phi, reconstructed
