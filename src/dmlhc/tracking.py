"""MLflow tracking: the store, flattened params, the paper's trimmed statistic and the plots.

Default store ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/``
(MLflow >= 3.13 refuses the old ``./mlruns`` file store, which is what Lightning's
MLFlowLogger would otherwise use); ``MLFLOW_TRACKING_URI`` overrides.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlruns"


def tracking_uri(configured: str | None = None) -> str:
    """``$MLFLOW_TRACKING_URI``, else the configured URI, else the SQLite store under mlruns/."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def artifact_location(experiment: str, root: str = DEFAULT_ARTIFACT_ROOT) -> str:
    """Where a new experiment keeps its artifacts (an absolute path under ``root``)."""
    return str((Path(root) / "artifacts" / experiment).resolve())


@contextmanager
def sqlite_creation_lock(uri: str):
    """Hold an exclusive file lock beside a SQLite database while it may be created or migrated.

    Processes that start together (Optuna workers, a job array) would otherwise run MLflow's or
    Optuna's schema creation at once, which can leave the database broken for good. Other URIs: no-op.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f".{database.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def retry_on_race(action, attempts: int = 6):
    """Run ``action()``, retrying when processes starting together race to create a store's tables or rows."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception:  # noqa: BLE001  sqlalchemy / MLflow errors of a concurrent creation
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + attempt)


def experiment_id_of(cfg) -> str:
    """The MLflow experiment of ``cfg.logger`` (created with its artifacts under mlruns/ if new); sets the URI."""
    import mlflow

    uri = tracking_uri(cfg.logger.tracking_uri)
    mlflow.set_tracking_uri(uri)
    name = cfg.logger.experiment_name
    # A tracking server stores (or proxies) artifacts itself: a path of this machine would mean nothing to it.
    location = None if uri.startswith(("http://", "https://")) else artifact_location(name, cfg.logger.artifact_root)

    def get_or_create() -> str:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return mlflow.create_experiment(name, artifact_location=location)

    with sqlite_creation_lock(uri):
        return retry_on_race(get_or_create)


def log_study_summary(cfg, summary: dict) -> str:
    """One MLflow run ``study_<name>`` with the study's best params and value; returns its id."""
    import mlflow

    experiment_id = experiment_id_of(cfg)
    tags = {"optuna.study": summary["study_name"], "optuna.summary": "true"}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"study_{summary['study_name']}", tags=tags) as run:
        mlflow.log_params({f"best.{k}": v for k, v in summary["best_params"].items()}
                          | {"best_trial": summary["best_trial"], "storage": summary["storage"]})
        mlflow.log_metrics({"best_value": summary["best_value"], "n_complete": summary["n_complete"],
                            "n_pruned": summary["n_pruned"]})
        return run.info.run_id


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {"a.b.c": value}, lists as strings (MLflow params are flat)."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value) if isinstance(value, (list, tuple)) else value
    return flat


MIN_TRIMMED_REPEATS = 5  # below this, dropping the extremes leaves too few values for a spread


def trimmed_statistic(values: list[float]) -> tuple[float, float]:
    """The paper's repeat statistic: drop the highest and lowest, mean and std of the rest.

    With fewer than ``MIN_TRIMMED_REPEATS`` values nothing is dropped (trimming 3 values keeps one,
    whose spread is a meaningless 0): the mean and std of all of them.
    """
    values = sorted(values)
    if len(values) >= MIN_TRIMMED_REPEATS:
        values = values[1:-1]
    return float(np.mean(values)), float(np.std(values))


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
        ax.hist(scores[labels == label], bins, histtype="step", lw=2, density=True, label=name)
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
