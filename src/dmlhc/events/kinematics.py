"""Leading-jet kinematic distributions of each benchmark against the SM (the paper's Fig. 1).

One PNG per framework (ALP, spin 0, spin 1, spin 2) with normalised pT, eta and phi
distributions of the leading jet, SM in black, and a table of distances to the SM
(total variation of the normalised histograms, 0 = identical, 1 = disjoint) to
check the paper's statements with numbers, not only by eye.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

from dmlhc.events.benchmarks import get_benchmark  # noqa: E402
from dmlhc.events.delphes import EventSample  # noqa: E402

BINS = {
    "pt": (np.linspace(130, 1530, 36), r"leading-jet $p_T$ [GeV]"),
    "eta": (np.linspace(-5, 5, 41), r"leading-jet $\eta$"),
    "phi": (np.linspace(-np.pi, np.pi, 33), r"leading-jet $\phi$"),
}
REGIME_STYLE = {None: "-", "offshell": "-", "onshell": "--", "offshell_ps": ":"}


def normalised_histograms(sample: EventSample) -> dict[str, np.ndarray]:
    """Unit-area histograms of the leading jet's pT (overflow in the last bin), eta and phi."""
    jet = sample.leading_jet()
    out = {}
    for var, (edges, _) in BINS.items():
        values = np.clip(jet[var], edges[0], edges[-1] - 1e-9) if var == "pt" else jet[var]
        counts, _ = np.histogram(values, edges)
        out[var] = counts / max(counts.sum(), 1)
    return out


def distances_to_sm(samples: dict[str, EventSample]) -> dict[str, dict[str, float]]:
    """Total-variation distance of each sample's pT, eta and phi histograms to the SM's."""
    hists = {name: normalised_histograms(s) for name, s in samples.items()}
    return {name: {var: round(0.5 * float(np.abs(h[var] - hists["sm"][var]).sum()), 4) for var in BINS}
            | {"mean_pt": round(float(samples[name].leading_jet()["pt"].mean()), 1)}
            for name, h in hists.items()}


def plot_kinematics(samples: dict[str, EventSample], out_dir: str | Path, title: str = "") -> list[Path]:
    """Write one PNG per framework and ``distances_to_sm.json``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hep.style.use("ATLAS")
    hists = {name: normalised_histograms(s) for name, s in samples.items()}
    groups: dict[str, list[str]] = {}
    for name in samples:
        if name != "sm":
            groups.setdefault(get_benchmark(name).framework, []).append(name)

    written = []
    for framework, names in groups.items():
        fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
        for ax, (var, (edges, label)) in zip(axes, BINS.items()):
            hep.histplot(hists["sm"][var], edges, ax=ax, color="black", lw=2, label="SM Z($\\nu\\nu$)+j")
            for name in names:
                hep.histplot(hists[name][var], edges, ax=ax, lw=1.8, ls=REGIME_STYLE[get_benchmark(name).regime],
                             label=name)
            ax.set_xlabel(label)
            ax.set_ylabel("normalised")
            if var == "pt":
                ax.set_yscale("log")
            else:  # room for the legend above the curves
                ax.set_ylim(0, 1.6 * max(hists[n][var].max() for n in ["sm", *names]))
            ax.legend(fontsize=11, loc="upper right")
        fig.suptitle(f"{framework}: {title}", fontsize=14)
        fig.tight_layout()
        path = out_dir / f"kinematics_{framework}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    table = out_dir / "distances_to_sm.json"
    table.write_text(json.dumps(distances_to_sm(samples), indent=1))
    written.append(table)
    return written
