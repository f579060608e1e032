"""Test helpers: toy leading jets and pool frequencies (not part of the package)."""

from __future__ import annotations

import numpy as np
import torch


def synthetic_leading_jets(n: int, *, pt_slope: float = 120.0, eta_width: float = 1.5,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """Toy leading jets: pT = 130 GeV + exponential(``pt_slope``) (harder for larger slopes),
    eta ~ normal(0, ``eta_width``), phi flat; some fall outside the selection cuts."""
    rng = np.random.default_rng(seed)
    return {"pt": 130.0 + rng.exponential(pt_slope, n), "eta": rng.normal(0.0, eta_width, n),
            "phi": rng.uniform(-np.pi, np.pi, n)}


def bin_frequencies(pool) -> torch.Tensor:
    """Fraction of an EventPool's events in each bin (float64)."""
    return pool.bin_counts.double() / max(len(pool), 1)
