"""How much luminosity until the LHC sees a model: expected counts, AUC and discovery significance (``dmlhc reach``).

At an integrated luminosity L (fb^-1) a dataset holds, after the selection cuts,

    B = sigma_SM x eff_SM x L x scale    background events (sigma_SM: the SM sample's cross section
                                         after the generation cuts; scale: other backgrounds),
    S = sigma_model x eff_model x L      signal events (sigma_model: the user's cross section after the
                                         generation cuts; Pythia's signal cross sections are not the model's),

with eff the fraction of a sample's events that pass the selection cuts. The bin probabilities of the
selected events give b = B p and s = S q per bin, and :mod:`dmlhc.significance` the expected AUC and the
Asimov median Z of the binned likelihood ratio, and the luminosity at which Z reaches 3 and 5.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from dmlhc.data.pools import Binning, Cuts
from dmlhc.errors import ConfigError
from dmlhc.events.cache import atomic_target
from dmlhc.events.delphes import EventSample
from dmlhc.optimal import DEFAULT_PSEUDO_COUNT
from dmlhc.significance import asimov_significance, expected_auc, expected_counts, luminosity_for_significance

DEFAULT_BACKGROUND_EVENTS = 1_500_000  # conf/background/sm.yaml events: the training's cached SM sample
DEFAULT_SIGNAL_EVENTS = 500_000  # conf/signal/*.yaml events
PAPER_BACKGROUND_SCALE = 1.3  # W(tau nu) j, W(l nu) j, ttbar, dibosons: ~30% more events, same jet kinematics
DISCOVERY_Z = (3.0, 5.0)
FB_PER_PB = 1000.0


@dataclass(frozen=True)
class SelectedSample:
    """The events of a sample that pass the selection cuts, binned; ``sigma_pb`` its cross section after the
    generation cuts (the file's ``sigma_after_cuts_pb``)."""

    name: str
    path: Path | None
    n_events: int
    sigma_pb: float
    sigma_err_pb: float
    bin_counts: torch.Tensor

    @property
    def n_selected(self) -> int:
        return int(self.bin_counts.sum())

    @property
    def efficiency(self) -> float:
        """Fraction of the sample's events that pass the selection cuts."""
        return self.n_selected / self.n_events


def select(sample: EventSample, name: str, cuts: Cuts | None = None, binning: Binning | None = None) -> SelectedSample:
    """Bin the leading jets of ``sample`` that pass ``cuts`` (default: the paper's) on ``binning`` (the paper's
    30 x 30 grid over the selection window), as the training's event pools do."""
    cuts, binning = cuts or Cuts(), binning or Binning()
    binning.check_fits(cuts)
    jet = sample.leading_jet()
    bins = binning.bin_index(jet["pt"], jet["eta"])[cuts.mask(jet["pt"], jet["eta"])]
    counts = torch.bincount(torch.as_tensor(bins.astype(np.int64)), minlength=binning.n_bins)
    meta = sample.metadata
    return SelectedSample(name, sample.path, len(sample), float(meta.get("sigma_after_cuts_pb", math.nan)),
                          float(meta.get("sigma_after_cuts_err_pb", math.nan)), counts)


@dataclass(frozen=True)
class ReachRow:
    """One (cross section, luminosity) point; the luminosities for Z = 3 and 5 depend on the cross section only."""

    xsec_pb: float
    lumi_ifb: float
    background_events: float
    signal_events: float
    s_over_sqrt_b: float
    expected_auc: float
    z_asimov: float
    lumi_for_z3_ifb: float
    lumi_for_z5_ifb: float


def reach_rows(background: SelectedSample, signal: SelectedSample, xsecs_pb: Sequence[float],
               lumis_ifb: Sequence[float], *, background_scale: float = 1.0,
               pseudo_count: float = DEFAULT_PSEUDO_COUNT) -> list[ReachRow]:
    """B, S, S/sqrt(B), expected AUC and Asimov Z for every cross section x luminosity, cross section first."""
    rows = []
    for xsec in xsecs_pb:
        for lumi in lumis_ifb:
            n_background = background.sigma_pb * FB_PER_PB * background.efficiency * lumi * background_scale
            n_signal = xsec * FB_PER_PB * signal.efficiency * lumi
            b, s = expected_counts(background.bin_counts, signal.bin_counts, n_background, n_signal, pseudo_count)
            z3, z5 = (luminosity_for_significance(z, b, s, lumi) for z in DISCOVERY_Z)
            rows.append(ReachRow(xsec, lumi, n_background, n_signal, n_signal / math.sqrt(n_background),
                                 expected_auc(b, s), asimov_significance(b, s), z3, z5))
    return rows


def parse_positive_list(text: str, option: str) -> list[float]:
    """Comma-separated positive finite numbers (``0.01,0.05,0.2``); anything else is a :class:`ConfigError`."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{option} {text!r}: give one or more positive numbers separated by commas, e.g. 0.01,0.05")
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{option} {text!r}: {item!r} is not a positive finite number; "
                              "give positive numbers separated by commas, e.g. 0.01,0.05")
        values.append(value)
    return values


def check_scale(scale: float) -> float:
    """A positive finite background scale (else a :class:`ConfigError`)."""
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"--background-scale {scale}: give a positive factor (1 = the SM Z(nu nu) + jet sample "
                          f"alone, {PAPER_BACKGROUND_SCALE} = --paper-background)")
    return scale


def describe_inputs(background: SelectedSample, signal: SelectedSample, *, level: str, seed: int,
                    background_scale: float, cuts: Cuts | None = None, binning: Binning | None = None,
                    pseudo_count: float = DEFAULT_PSEUDO_COUNT) -> list[str]:
    """What a reach table rests on: samples, level, event counts, cross sections, cuts, binning, conventions."""
    cuts, binning = cuts or Cuts(), binning or Binning()
    scale_note = {1.0: "1 (the SM Z(nu nu) + jet sample alone)",
                  PAPER_BACKGROUND_SCALE: f"{PAPER_BACKGROUND_SCALE} (--paper-background: W, ttbar and dibosons add "
                                          "~30% events with the same jet kinematics)"}.get(background_scale,
                                                                                          f"{background_scale:g}")
    return [
        f"dmlhc reach: {signal.name} against the SM, {level} level, generator seed {seed}",
        f"background: {background.path}: {background.n_events} events, sigma = {background.sigma_pb:.4g} +- "
        f"{background.sigma_err_pb:.2g} pb after the generation cuts (pT >= 130 GeV, |eta| <= 5), "
        f"selection efficiency {background.efficiency:.4f}; B = sigma x efficiency x L x {scale_note}; the "
        "paper's detector-level efficiency 0.78 is not applied (the efficiency is measured on the sample)",
        f"signal: {signal.path}: {signal.n_events} events, selection efficiency {signal.efficiency:.4f}; "
        "S = xsec x efficiency x L, xsec the model's cross section after the generation cuts (the sample's own "
        f"{signal.sigma_pb:.4g} pb is Pythia's normalisation, not used)",
        f"selection: {cuts.pt_min:g} <= pT <= {cuts.pt_max:g} GeV, |eta| <= {cuts.abs_eta_max:g}; binning: "
        f"{binning.describe()}; bin probabilities with pseudo-count {pseudo_count:g} per bin",
        "Z: Asimov median discovery significance of the binned Poisson likelihood ratio (Cowan et al. 2011), "
        "statistical only (no systematic uncertainties; bin probabilities estimated from the samples); AUC: "
        "SM-only vs SM + signal datasets of luminosity L (Gaussian limit); L(Z=3), L(Z=5): the luminosity at which "
        "Z reaches 3 and 5 (Z grows as sqrt(L))",
    ]


_COLUMNS = (  # (table header, ReachRow field)
    ("xsec_pb", "xsec_pb"), ("lumi_ifb", "lumi_ifb"), ("B", "background_events"), ("S", "signal_events"),
    ("S/sqrt(B)", "s_over_sqrt_b"), ("AUC", "expected_auc"), ("Z", "z_asimov"), ("L(Z=3)_ifb", "lumi_for_z3_ifb"),
    ("L(Z=5)_ifb", "lumi_for_z5_ifb"),
)


def _cell(key: str, value: float) -> str:
    if key == "expected_auc":
        return f"{value:.4f}"
    return f"{value:.0f}" if 1e3 <= abs(value) < 1e10 else f"{value:.4g}"  # event counts in full, no 1.5e+04


def format_table(rows: Sequence[ReachRow]) -> str:
    """The rows as a right-aligned text table."""
    cells = [[header for header, _ in _COLUMNS]]
    cells += [[_cell(key, getattr(row, key)) for _, key in _COLUMNS] for row in rows]
    widths = [max(len(line[c]) for line in cells) for c in range(len(_COLUMNS))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells)


def write_csv(rows: Sequence[ReachRow], path: str | Path) -> Path:
    """Write the rows (full precision, one column per :class:`ReachRow` field) to ``path`` atomically."""
    with atomic_target(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(ReachRow)])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return Path(path)
