"""The MLflow store: its URI, experiments created safely by processes starting together, the logger of a run,
flattened params and the paper's trimmed statistic.

Default store ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/``
(MLflow >= 3.13 refuses the old ``./mlruns`` file store, which is what Lightning's
MLFlowLogger would otherwise use). In a run the ``logger`` config names the URI
(``paths.tracking_uri``: ``$MLFLOW_TRACKING_URI`` if set, else the default; a command-line
``logger.mlflow.tracking_uri=...`` beats both) and the run records the URI it used.
:func:`check_tracking_store` refuses, in seconds and before any sample is made, a store a run could not use
(a server that does not answer, a damaged or foreign SQLite file, a read-only folder).
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from dmlhc.errors import StoreError
from dmlhc.tracking.owners import close_dead_runs, kill_run, owner
from dmlhc.tracking.secrets import redact_url

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlruns"


STORE_PROBE_TIMEOUT_S = 10  # a tracking server that does not answer the up-front probe in this time is down
USE_ANOTHER_STORE = "or set MLFLOW_TRACKING_URI (or logger.mlflow.tracking_uri=...) to another store"


def configured_tracking_uri(configured: str | None = None) -> str:
    """The configured URI, else ``$MLFLOW_TRACKING_URI``, else the SQLite store under mlruns/ (nothing made)."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def resolve_tracking_uri(configured: str | None = None) -> str:
    """:func:`configured_tracking_uri`, with the folder of a relative SQLite store made."""
    uri = configured_tracking_uri(configured)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def check_tracking_store(uri: str, artifact_root: str | None = DEFAULT_ARTIFACT_ROOT) -> None:
    """Fail at once, before any sample or run is made, on a store a run could not use: a tracking server that does
    not answer within ``STORE_PROBE_TIMEOUT_S`` (one try, not MLflow's minutes of retries), a SQLite file that is
    not an MLflow database, or a database, its folder or the artifact root that cannot be written. A
    :class:`~dmlhc.errors.StoreError` names the URI (password redacted) and the fix; nothing is created."""
    if uri.startswith(("http://", "https://")):
        _probe_server(uri)
        return
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        _check_writable(uri, database.parent)
        if database.exists():
            _check_mlflow_database(uri, database)
    if artifact_root and "://" not in artifact_root:
        _check_writable(uri, Path(artifact_root), what="artifact root")


def _probe_server(uri: str) -> None:
    import requests

    try:
        requests.get(uri, timeout=STORE_PROBE_TIMEOUT_S)  # any answer (even 401 or 404) means a server is there
    except requests.RequestException as err:
        raise StoreError(f"MLflow tracking URI {redact_url(uri)}: no answer ({type(err).__name__}, tried once with "
                         f"a {STORE_PROBE_TIMEOUT_S} s timeout); start the tracking server or fix the address, "
                         f"{USE_ANOTHER_STORE}") from None


def _check_writable(uri: str, folder: Path, what: str = "store folder") -> None:
    """``folder``, or the nearest existing folder above it (where it would be made), must be writable."""
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(f"MLflow tracking URI {redact_url(uri)}: the {what} {existing} is not a writable folder "
                         f"(read-only?); make it writable, {USE_ANOTHER_STORE}")


def _check_mlflow_database(uri: str, database: Path) -> None:
    """An existing SQLite file must be a writable SQLite database with MLflow's tables (an empty file is new)."""
    import sqlite3

    fix = f"move it away (mv {database} {database}.broken) to start a new store, {USE_ANOTHER_STORE}"
    if not os.access(database, os.R_OK | os.W_OK):
        raise StoreError(f"MLflow tracking URI {redact_url(uri)}: {database} is read-only; make it writable, "
                         f"{USE_ANOTHER_STORE}")
    if database.stat().st_size == 0:
        return
    try:
        with sqlite3.connect(f"{database.absolute().as_uri()}?mode=ro", uri=True) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        connection.close()
    except sqlite3.DatabaseError as err:
        raise StoreError(f"MLflow tracking URI {redact_url(uri)}: {database} is not a usable SQLite database "
                         f"({err}: damaged, or another kind of file); {fix}") from None
    if not {"experiments", "runs"} <= tables:
        raise StoreError(f"MLflow tracking URI {redact_url(uri)}: {database} is an SQLite database without "
                         f"MLflow's tables (another program's database?); {fix}")


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
    from mlflow.exceptions import MlflowException

    # A tracking server stores (or proxies) artifacts itself: a path of this machine would mean nothing to it.
    location = None if uri.startswith(("http://", "https://")) else artifact_location(name, artifact_root)

    def get_or_create() -> str:
        client = MlflowClient(uri)  # inside the lock: its first use of a new SQLite file creates the tables
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as err:  # a server: another process created it first
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id  # type: ignore[union-attr]  # it exists now

    with sqlite_creation_lock(uri):
        # A local store's creation races are retried; a server's network errors are not (MLflow retries them itself).
        return get_or_create() if uri.startswith(("http://", "https://")) else retry_on_race(get_or_create)


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger on the project's store (``logger/mlflow.yaml``): the experiment is created
    safely when processes start together, with its artifacts under ``artifact_root``; ``parent_run_id`` makes
    the run a child (repeats). Only rank 0 touches the store."""

    def __init__(self, experiment_name: str = "dmlhc", tracking_uri: str | None = None,
                 artifact_root: str = DEFAULT_ARTIFACT_ROOT, run_name: str | None = None,
                 tags: dict[str, str] | None = None, parent_run_id: str | None = None, run_id: str | None = None):
        uri = resolve_tracking_uri(tracking_uri)
        tags = {**(tags or {}), **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {}), **owner()}
        # The store's tables are made (under the creation lock) before Lightning's client touches it: workers
        # starting together would otherwise race to migrate a new SQLite file.
        experiment_id = ensure_experiment(uri, experiment_name, artifact_root) if global_rank() == 0 else None
        if experiment_id is not None and _due_for_dead_run_check(uri, experiment_id):
            from mlflow import MlflowClient

            close_dead_runs(MlflowClient(uri), experiment_id)  # runs of killed processes of this host: KILLED
        with sqlite_creation_lock(uri):
            super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=uri,
                             tags=tags or None, run_id=run_id)
        self.artifact_root = artifact_root
        if run_id is None:
            self._experiment_id = experiment_id


_DEAD_RUN_CHECKS: dict[tuple[str, str], float] = {}
DEAD_RUN_CHECK_INTERVAL_S = 60.0  # a grid job opens hundreds of runs in a minute: one search for dead runs serves


def _due_for_dead_run_check(uri: str, experiment_id: str) -> bool:
    """Whether this process last looked for dead runs of the experiment more than a minute ago (and now will)."""
    now = time.monotonic()
    if now - _DEAD_RUN_CHECKS.get((uri, experiment_id), -math.inf) < DEAD_RUN_CHECK_INTERVAL_S:
        return False
    _DEAD_RUN_CHECKS[(uri, experiment_id)] = now
    return True


def _store(logger_cfg):
    """The URI of the store of a ``logger.mlflow`` config, a client on it and its experiment's id (created if new)."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(logger_cfg.tracking_uri)
    return uri, MlflowClient(uri), ensure_experiment(uri, logger_cfg.experiment_name, logger_cfg.artifact_root)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def study_run_id(uri: str, client, experiment_id: str, tags: dict[str, str]) -> str:
    """The id of the one summary run with ``tags`` (study, storage; the trials' parent), created (and closed: the
    summary brings it up to date) if there is none. Workers or trials creating it at once on a server store each
    keep the oldest and delete the others, so one remains."""
    query = " and ".join(f"tags.`{key}` = {_quoted(value)}" for key, value in tags.items())

    def found():
        return client.search_runs([experiment_id], query, order_by=["attributes.start_time ASC"], max_results=100)

    with sqlite_creation_lock(uri):
        runs = found()
        if not runs:
            client.set_terminated(client.create_run(experiment_id, run_name=f"study_{tags['optuna.study']}",
                                                    tags=tags).info.run_id)
            runs = found()
    for duplicate in runs[1:]:
        client.delete_run(duplicate.info.run_id)
    return runs[0].info.run_id


def log_study_summary(logger_cfg, summary: dict) -> str:
    """The study's one MLflow run ``study_<name>`` (per storage), created or brought up to date; returns its id.

    Metrics ``best_value``, ``n_complete``, ``n_pruned``, ``n_finished`` are logged at step ``n_finished``, so the
    run shows the report that saw the most finished trials, whichever worker wrote last; the best trial and its
    params are tags (``best_trial``, ``best.<param>``: they change as the study improves); params: ``storage``
    (no password), ``direction`` and the study's fixed settings (``fixed.<key>``).
    """
    uri, client, experiment_id = _store(logger_cfg)
    tags = {"optuna.summary": "true", "optuna.study": summary["study_name"], "optuna.storage": summary["storage"]}
    run_id = study_run_id(uri, client, experiment_id, tags)
    step = int(summary["n_finished"])
    newest = client.get_run(run_id).data.metrics.get("n_finished", -1)
    for key in ("best_value", "n_complete", "n_pruned", "n_finished"):
        client.log_metric(run_id, key, summary[key], step=step)
    if step >= newest:
        for key, value in {"best_trial": summary["best_trial"],
                           **{f"best.{k}": v for k, v in summary["best_params"].items()}}.items():
            client.set_tag(run_id, key, str(value))
    params = {"storage": summary["storage"], "direction": summary["direction"],
              **{f"fixed.{k}": v for k, v in summary.get("fixed", {}).items()}}
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:6000])
    client.set_terminated(run_id)
    return run_id


def close_trial_runs(logger_cfg, study_name: str, numbers: list[int], why: str) -> list[str]:
    """Mark KILLED the RUNNING MLflow runs of trials ``numbers`` of study ``study_name``; returns their ids."""
    if not numbers:
        return []
    _, client, experiment_id = _store(logger_cfg)
    runs = client.search_runs([experiment_id], f"attributes.status = 'RUNNING' and tags.`optuna.study` = "
                                               f"{_quoted(study_name)}", max_results=1000)
    closed = [r.info.run_id for r in runs if r.data.tags.get("optuna.trial") in {str(n) for n in numbers}]
    for run_id in closed:
        kill_run(client, run_id, why)
    return closed


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
