"""Plots of a run (files, then MLflow artifacts) and of event samples, in one HEP style.

Every figure is drawn under :func:`hep_style` (mplhep's ROOT style) and labelled by
:func:`hep_label` ("dmlhc Simulation", "sqrt(s) = 14 TeV"). The ``*_figure`` functions
return the Figure (to inspect it); :func:`save` writes a PNG and closes it. Figures:
ROC curves with the optimum beside the network, output distributions, example
histograms (log colour scale, mean differences between classes), and the prediction
frequencies of multiclass tasks (with the share of no confident prediction).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import LogNorm, SymLogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ENERGY_LABEL = r"$\sqrt{s}$ = 14 TeV"
SNR_LABEL = r"$S/\sqrt{B}$"
# mplhep's ROOT style; STIX sans maths because the style's TeX Gyre Heros has no radical sign
STYLE = [hep.style.ROOT, {"mathtext.fontset": "stixsans"}]
NO_PREDICTION = "no confident prediction"


@contextmanager
def hep_style() -> Iterator[None]:
    """The matplotlib settings of every dmlhc figure; a context manager or a decorator."""
    with plt.style.context(STYLE):
        yield


def hep_label(ax: Axes, *, left: bool = True, right: bool = True) -> None:
    """'dmlhc Simulation' (``left``) and 'sqrt(s) = 14 TeV' (``right``) above ``ax``."""
    hep.label.exp_label(exp="dmlhc" if left else "", llabel="Simulation" if left else "",
                        rlabel=ENERGY_LABEL if right else "", ax=ax)


FEW_TICKS = 8  # up to this many S/sqrt(B) values: each one a tick with its value


def snr_axis(ax: Axes, snrs: Sequence[float], label: str | None = SNR_LABEL) -> None:
    """A logarithmic S/sqrt(B) x axis; a few points (``FEW_TICKS``) get their own values as the ticks."""
    ax.set_xscale("log")
    points = sorted(set(snrs))
    if len(points) <= FEW_TICKS:
        ax.set_xticks(points, [f"{snr:g}" for snr in points])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if label:
        ax.set_xlabel(label)


MAX_NAMED = 3  # benchmarks named one by one in a figure's labels


def describe_run(task: str, signals: Sequence[str], snr: float, n_background: int) -> str:
    """What a run's figures show: the signals and, for histograms, S/sqrt(B) and B (single events have neither)."""
    if task == "event":
        return f"{', '.join(signals)}: single events"
    what = " vs ".join(signals) if task == "model_vs_model" else _signals(signals)
    return f"{what}, {SNR_LABEL} = {snr:g}, B = {n_background}"


def _signals(signals: Sequence[str | None]) -> str:
    """Up to three benchmarks by name, more as 'N benchmarks' (a title or panel label has to fit a figure)."""
    return ", ".join(str(s) for s in signals) if len(signals) <= MAX_NAMED else f"{len(signals)} benchmarks"


def class_names(task: str, classes: Sequence[Sequence[str | None]]) -> list[str]:
    """A name per class of a task's ``classes`` (components; None = SM only): 'SM only', 'SM + alp', ...;
    'SM events' and 'alp events' for single events."""
    if task == "event":
        return ["SM events", *(f"{' or '.join(str(c) for c in parts)} events" for parts in classes[1:])]
    return ["SM only" if parts == (None,) else "SM + " + (" or ".join(str(c) for c in parts) if len(parts) <= MAX_NAMED
                                                          else f"any of {len(parts)} benchmarks") for parts in classes]


@hep_style()
def roc_figure(labels: np.ndarray, curves: Mapping[str, tuple[np.ndarray, float]], classes: Sequence[str],
               description: str = "") -> Figure:
    """ROC curves of several scores of the same test labels (1 = ``classes[1]``, the positive class);
    ``curves[name] = (scores, auc)``, the AUC goes into the legend."""
    import torch
    from torchmetrics.functional.classification import binary_roc

    fig, ax = plt.subplots()
    target = torch.as_tensor(labels).long()
    for name, (scores, auc) in curves.items():
        fpr, tpr, _ = binary_roc(torch.as_tensor(_ranks(scores)), target)
        ax.plot(fpr.numpy(), tpr.numpy(), lw=2.5, label=f"{name} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=2, label="random guess (AUC = 0.5)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"false-positive rate ({classes[0]})",
           ylabel=f"true-positive rate ({classes[1]})")
    # below the diagonal, where no curve of an AUC above 0.5 goes
    ax.legend(loc="lower right", fontsize="x-small", title_fontsize="x-small", alignment="left",
              title=_lines(description, f"positive class: {classes[1]}"))
    hep_label(ax)
    return fig


@hep_style()
def output_figure(labels: np.ndarray, scores: np.ndarray, classes: Sequence[str], description: str = "") -> Figure:
    """Distribution of the network output (probability of ``classes[1]``) for each true class."""
    fig, ax = plt.subplots()
    edges = np.linspace(0, 1, 51)
    for label, name in enumerate(classes):
        counts, _ = np.histogram(scores[labels == label], edges)
        hep.histplot(counts / max(counts.sum(), 1), edges, ax=ax, lw=2.5, label=name)
    ax.set(xlim=(0, 1), xlabel=f"network output (probability of {classes[1]})", ylabel="fraction of the class per 0.02")
    ax.set_ylim(0, 1.45 * ax.get_ylim()[1])  # headroom for the legend
    ax.legend(loc="upper center", title=_lines(description, "true class:"), alignment="left")
    hep_label(ax)
    return fig


@hep_style()
def example_histograms_figure(counts: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                              edges: tuple[np.ndarray, np.ndarray], description: str = "") -> Figure:
    """Top row: one test histogram ``counts`` (H, n_pt, n_eta) of each class, log colour scale. Bottom row: the
    mean over the test set of the first class, and of each other class minus it (symmetric log scale)."""
    present = [k for k in range(len(classes)) if (labels == k).any()]
    examples = [counts[np.flatnonzero(labels == k)[0]] for k in present]
    means = {k: counts[labels == k].mean(axis=0) for k in present}
    reference = present[0]
    differences = [means[k] - means[reference] for k in present[1:]]

    fig, axes = plt.subplots(2, len(present), figsize=(9.5 * len(present), 16), squeeze=False)
    example_norm = _log_norm(*examples)
    for ax, k, image in zip(axes[0], present, examples):
        _image(fig, ax, edges, image, example_norm, "viridis", "events per bin", f"{classes[k]}, one histogram")
    _image(fig, axes[1][0], edges, means[reference], _log_norm(means[reference]), "viridis", "mean events per bin",
           f"{classes[reference]}, mean")
    largest = max((np.abs(d).max() for d in differences), default=1.0) or 1.0
    difference_norm = SymLogNorm(linthresh=max(largest / 100, 1e-3), vmin=-largest, vmax=largest)
    for ax, k, difference in zip(axes[1][1:], present[1:], differences):
        _image(fig, ax, edges, difference, difference_norm, "RdBu_r", "mean difference [events per bin]",
               f"({classes[k]}) $-$ ({classes[reference]})")
    hep_label(axes[0][0], right=False)
    hep_label(axes[0][-1], left=False)
    fig.suptitle(description)
    return fig


@hep_style()
def prediction_frequency_figure(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                                description: str = "") -> Figure:
    """For each true class, the share of test histograms given to each class (the top probability, if above
    2/n_classes) and the share with no confident prediction."""
    n = probabilities.shape[1]
    frequency = prediction_frequency(labels, probabilities)
    fig, ax = plt.subplots(figsize=(max(12, 3.2 * n), 10))
    width = 0.8 / (n + 1)
    for j, name in enumerate([*classes, f"{NO_PREDICTION} (top probability $\\leq$ 2/{n})"]):
        grey = j == n
        ax.bar(np.arange(n) + (j - n / 2) * width, frequency[:, j], width, label=name,
               color="lightgrey" if grey else None, hatch="//" if grey else None, edgecolor="grey" if grey else None)
    ax.set_xticks(range(n), classes)
    ax.tick_params(axis="x", which="minor", bottom=False, top=False)
    ax.set(ylim=(0, 1.6), xlabel="true class", ylabel="fraction of test histograms")
    ax.legend(loc="upper left", ncols=2, title=_lines(description, "predicted class:"), alignment="left")
    hep_label(ax)
    return fig


def prediction_frequency(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """(n, n + 1): per true class, the fraction predicted as each class, then the fraction with no confident
    prediction (top probability <= 2/n)."""
    n = probabilities.shape[1]
    predicted = np.where(probabilities.max(1) > 2 / n, probabilities.argmax(1), n)
    frequency = np.zeros((n, n + 1))
    for true in range(n):
        rows = labels == true
        if rows.any():
            frequency[true] = np.bincount(predicted[rows], minlength=n + 1) / rows.sum()
    return frequency


@hep_style()
def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _image(fig: Figure, ax: Axes, edges: tuple[np.ndarray, np.ndarray], image: np.ndarray, norm, cmap: str,
           bar_label: str, name: str) -> None:
    """A (pT, eta) histogram on ``ax`` with a labelled colour bar and its name in the corner."""
    shown = ax.pcolormesh(edges[0], edges[1], image.T, norm=norm, cmap=cmap)
    fig.colorbar(shown, ax=ax, label=bar_label, pad=0.02)
    ax.set(xlabel=r"$p_T$ [GeV]", ylabel=r"$\eta$")
    ax.text(0.97, 0.96, name, transform=ax.transAxes, ha="right", va="top", fontsize="small",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})


def _log_norm(*images: np.ndarray) -> LogNorm:
    """A log colour scale from the smallest positive to the largest value of ``images`` (empty bins stay blank)."""
    values = np.concatenate([image.ravel() for image in images])
    positive = values[values > 0]
    low = positive.min() if positive.size else 1.0
    return LogNorm(low, max(values.max(), 10 * low))


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Scores mapped monotonically into [0, 1] with ties kept: torchmetrics would squash scores outside [0, 1]
    with a sigmoid, turning distinct large likelihood ratios into ties."""
    values, inverse = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    return (inverse / max(len(values) - 1, 1)).astype(np.float32)


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)
