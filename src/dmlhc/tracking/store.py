"""The MLflow store: its URI, experiments created safely by processes starting together, the logger of a run,
flattened params and the paper's trimmed statistic.

Default store ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/``
(MLflow >= 3.13 refuses the old ``./mlruns`` file store, which is what Lightning's
MLFlowLogger would otherwise use). In a run the ``logger`` config names the URI
(``paths.tracking_uri``: ``$MLFLOW_TRACKING_URI`` if set, else the default; a command-line
``logger.mlflow.tracking_uri=...`` beats both) and the run records the URI it used.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlruns"


def resolve_tracking_uri(configured: str | None = None) -> str:
    """The configured URI, else ``$MLFLOW_TRACKING_URI``, else the SQLite store under mlruns/ (its folder made)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
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


def global_rank() -> int:
    """This process's rank under DDP (Lightning reads it from the environment at import); 0 otherwise."""
    return int(getattr(rank_zero_only, "rank", 0))


def ensure_experiment(uri: str, name: str, artifact_root: str = DEFAULT_ARTIFACT_ROOT) -> str:
    """The id of MLflow experiment ``name`` at ``uri``, created (artifacts under ``artifact_root``) if new."""
    from mlflow import MlflowClient

    # A tracking server stores (or proxies) artifacts itself: a path of this machine would mean nothing to it.
    location = None if uri.startswith(("http://", "https://")) else artifact_location(name, artifact_root)

    def get_or_create() -> str:
        client = MlflowClient(uri)  # inside the lock: its first use of a new SQLite file creates the tables
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(name, artifact_location=location)

    with sqlite_creation_lock(uri):
        return retry_on_race(get_or_create)


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger on the project's store (``logger/mlflow.yaml``): the experiment is created
    safely when processes start together, with its artifacts under ``artifact_root``; ``parent_run_id`` makes
    the run a child (repeats). Only rank 0 touches the store."""

    def __init__(self, experiment_name: str = "dmlhc", tracking_uri: str | None = None,
                 artifact_root: str = DEFAULT_ARTIFACT_ROOT, run_name: str | None = None,
                 tags: dict[str, str] | None = None, parent_run_id: str | None = None, run_id: str | None = None):
        uri = resolve_tracking_uri(tracking_uri)
        tags = {**(tags or {}), **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}
        # The store's tables are made (under the creation lock) before Lightning's client touches it: workers
        # starting together would otherwise race to migrate a new SQLite file.
        experiment_id = ensure_experiment(uri, experiment_name, artifact_root) if global_rank() == 0 else None
        with sqlite_creation_lock(uri):
            super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=uri,
                             tags=tags or None, run_id=run_id)
        self.artifact_root = artifact_root
        if run_id is None:
            self._experiment_id = experiment_id


def log_study_summary(logger_cfg, summary: dict) -> str:
    """One MLflow run ``study_<name>`` with the study's best params and value; returns its id."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(logger_cfg.tracking_uri)
    experiment_id = ensure_experiment(uri, logger_cfg.experiment_name, logger_cfg.artifact_root)
    client = MlflowClient(uri)
    tags = {"optuna.study": summary["study_name"], "optuna.summary": "true"}
    run = client.create_run(experiment_id, run_name=f"study_{summary['study_name']}", tags=tags)
    params = {f"best.{k}": v for k, v in summary["best_params"].items()} | {"best_trial": summary["best_trial"],
                                                                             "storage": summary["storage"]}
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    for key in ("best_value", "n_complete", "n_pruned"):
        client.log_metric(run.info.run_id, key, summary[key])
    client.set_terminated(run.info.run_id)
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
