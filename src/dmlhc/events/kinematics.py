"""Leading-jet kinematic distributions of each benchmark against the SM (the paper's Fig. 1).

One PNG per framework (ALP, spin 0, spin 1, spin 2) with normalised pT, eta and phi
distributions of the leading jet, SM in black, and a table (``kinematics.csv``) of each
sample's distances to the SM (total variation of the normalised histograms, 0 = identical,
1 = disjoint), leading-jet pT mean and quantiles, mean |eta| and invisible-mass quantiles, to
check the paper's statements with numbers, not only by eye. The bins span the values of all
samples together, so the plots end where the data end.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import mplhep as hep
import numpy as np
from matplotlib.figure import Figure

from dmlhc.events.benchmarks import get_benchmark
from dmlhc.events.cache import write_csv
from dmlhc.events.delphes import EventSample
from dmlhc.tracking.plots import hep_label, hep_style, save

# variable: (number of bins, log-spaced, axis label, density label)
AXES = {
    "pt": (30, True, r"leading-jet $p_T$ [GeV]", r"1/N dN/d$p_T$ [1/GeV]"),
    "eta": (40, False, r"leading-jet $\eta$", r"1/N dN/d$\eta$"),
    "phi": (32, False, r"leading-jet $\phi$ [rad]", r"1/N dN/d$\phi$ [1/rad]"),
}
REGIME_STYLE = {None: "-", "offshell": "-", "onshell": "--", "offshell_ps": ":"}


def bin_edges(samples: dict[str, EventSample]) -> dict[str, np.ndarray]:
    """Edges of each variable from its smallest to its largest value over all ``samples`` (pT log-spaced: wider
    bins in the sparse tail)."""
    jets = [s.leading_jet() for s in samples.values()]
    edges = {}
    for var, (n, log, _, _) in AXES.items():
        low, high = min(j[var].min() for j in jets), max(j[var].max() for j in jets)
        edges[var] = (np.geomspace if log else np.linspace)(low, max(high, low * (1 + 1e-9) + 1e-9), n + 1)
    return edges


def normalised_histograms(sample: EventSample, edges: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Unit-area histograms (fraction of events per bin) of the leading jet's pT, eta and phi."""
    jet = sample.leading_jet()
    out = {}
    for var, var_edges in edges.items():
        counts, _ = np.histogram(jet[var], var_edges)
        out[var] = counts / max(counts.sum(), 1)
    return out


TABLE_COLUMNS = ("sample", "tv_pt", "tv_eta", "tv_phi", "mean_pt", "pt_q10", "pt_median", "pt_q90", "mean_abs_eta",
                 "invisible_mass_q10", "invisible_mass_median", "invisible_mass_q90")


def histograms_of(samples: dict[str, EventSample]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """The common bin edges of the samples and each sample's unit-area pT, eta and phi histograms on them."""
    edges = bin_edges(samples)
    return edges, {name: normalised_histograms(s, edges) for name, s in samples.items()}


def distances_to_sm(samples: dict[str, EventSample],
                    hists: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, dict[str, float]]:
    """Total-variation distance of each sample's pT, eta and phi histograms to the SM's (``hists``: those
    histograms, if :func:`histograms_of` made them already)."""
    hists = hists if hists is not None else histograms_of(samples)[1]
    return {name: {var: round(0.5 * float(np.abs(h[var] - hists["sm"][var]).sum()), 4) for var in AXES}
            for name, h in hists.items()}


def kinematics_table(samples: dict[str, EventSample],
                     hists: dict[str, dict[str, np.ndarray]] | None = None) -> list[dict]:
    """One row per sample (:data:`TABLE_COLUMNS`): distances to the SM, leading-jet pT (GeV) mean and 10/50/90%
    quantiles, mean |eta|, and the invisible-mass quantiles (GeV) the generator recorded (nan for the SM)."""
    rows = []
    for name, distances in distances_to_sm(samples, hists).items():
        jet = samples[name].leading_jet()
        q10, median, q90 = np.quantile(jet["pt"], [0.1, 0.5, 0.9])
        invisible = samples[name].metadata.get("invisible_mass_quantiles_gev") or {}
        rows.append({"sample": name, **{f"tv_{var}": distances[var] for var in AXES},
                     "mean_pt": float(jet["pt"].mean()), "pt_q10": float(q10), "pt_median": float(median),
                     "pt_q90": float(q90), "mean_abs_eta": float(np.abs(jet["eta"]).mean()),
                     **{f"invisible_mass_{q}": float(invisible.get(q, math.nan)) for q in ("q10", "median", "q90")}})
    return rows


@hep_style()
def kinematics_figure(hists: dict[str, dict[str, np.ndarray]], edges: dict[str, np.ndarray], names: list[str],
                      title: str = "") -> Figure:
    """pT, eta and phi densities of the SM (``hists['sm']``) and of the benchmarks ``names``, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(30, 10))
    for ax, (var, (_, log, label, density)) in zip(axes, AXES.items()):
        widths = np.diff(edges[var])
        hep.histplot(hists["sm"][var] / widths, edges[var], ax=ax, color="black", lw=3, label=r"SM Z($\nu\nu$)+jet")
        for name in names:
            hep.histplot(hists[name][var] / widths, edges[var], ax=ax, lw=2.5,
                         ls=REGIME_STYLE[get_benchmark(name).regime], label=name)
        ax.set(xlim=(edges[var][0], edges[var][-1]), xlabel=label, ylabel=density)
        highest = max((hists[n][var] / widths).max() for n in ["sm", *names])
        if log:  # room for the legend above the curves
            ax.set(yscale="log", ylim=(None, 20 * highest))
        else:
            ax.set_ylim(0, 1.6 * highest)
        ax.legend(loc="upper right", title=title, fontsize="x-small", title_fontsize="x-small")
        hep_label(ax)
    return fig


def plot_kinematics(samples: dict[str, EventSample], out_dir: str | Path, title: str = "") -> list[Path]:
    """Write one PNG per framework and ``kinematics.csv`` (:func:`kinematics_table`); returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    edges, hists = histograms_of(samples)
    groups: dict[str, list[str]] = {}
    for name in samples:
        if name != "sm":
            groups.setdefault(get_benchmark(name).framework, []).append(name)
    written = [save(kinematics_figure(hists, edges, names, f"{framework}: {title}" if title else framework),
                    out_dir / f"kinematics_{framework}.png")
               for framework, names in groups.items()]
    written.append(write_csv(kinematics_table(samples, hists), TABLE_COLUMNS, out_dir / "kinematics.csv", exact=()))
    return written
