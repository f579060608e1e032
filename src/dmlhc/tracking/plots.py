"""Plots of a run (files, then MLflow artifacts): ROC curves with the optimum beside the network, output
distributions, example histograms, and the prediction frequencies of multiclass tasks."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_roc(labels: np.ndarray, curves: dict[str, tuple[np.ndarray, float]], path: Path, title: str = "") -> Path:
    """ROC curves of several scores on the same test labels; ``curves[name] = (scores, auc)``."""
    import torch
    from torchmetrics.functional.classification import binary_roc

    fig, ax = plt.subplots(figsize=(5.5, 5))
    target = torch.as_tensor(labels).long()
    for name, (scores, auc) in curves.items():
        fpr, tpr, _ = binary_roc(torch.as_tensor(scores).float(), target)
        ax.plot(fpr, tpr, label=f"{name} (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(xlabel="false-positive rate (SM-only called signal)", ylabel="true-positive rate", title=title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_output_distributions(labels: np.ndarray, scores: np.ndarray, path: Path, title: str = "") -> Path:
    """Network output for SM-only (label 0) and SM + signal (label 1) test histograms."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    bins = np.linspace(0, 1, 51)
    for label, name in ((0, "SM only"), (1, "SM + signal")):
        # matplotlib's stubs omit arrays from ``bins``, which takes any sequence of edges
        ax.hist(scores[labels == label], bins,  # type: ignore[arg-type]
                histtype="step", lw=2, density=True, label=name)
    ax.set(xlabel="network output", ylabel="density", title=title)
    ax.legend()
    return _save(fig, path)


def plot_example_histograms(histograms: np.ndarray, labels: np.ndarray, names: list[str], extent: list[float],
                            path: Path) -> Path:
    """One example (pT, eta) histogram per class, as images."""
    classes = sorted(set(labels.tolist()))
    fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 3.8), squeeze=False)
    for ax, k in zip(axes[0], classes):
        image = histograms[np.flatnonzero(labels == k)[0]]
        shown = ax.imshow(image.T, origin="lower", aspect="auto", extent=extent, cmap="viridis")
        ax.set(xlabel=r"$p_T$ [GeV]", ylabel=r"$\eta$", title=names[k])
        fig.colorbar(shown, ax=ax)
    return _save(fig, path)


def plot_prediction_frequency(labels: np.ndarray, probabilities: np.ndarray, names: list[str], path: Path) -> Path:
    """For each true class, how often each class is predicted: the top probability, if above 2/n_classes."""
    n = probabilities.shape[1]
    top = probabilities.argmax(1)
    confident = probabilities.max(1) > 2 / n
    frequency = np.zeros((n, n))
    for true in range(n):
        rows = labels == true
        if rows.any():
            frequency[true] = np.bincount(top[rows & confident], minlength=n) / rows.sum()
    fig, ax = plt.subplots(figsize=(1.0 * n + 3, 0.8 * n + 2))
    shown = ax.imshow(frequency, vmin=0, vmax=1, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{frequency[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set(xlabel=f"predicted (top probability > 2/{n})", ylabel="true class")
    fig.colorbar(shown, ax=ax)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
