"""What the study scripts under experiments/ share: their tables (CSV, written atomically) and their summary runs.

Scripts import it as ``from _common import ...`` (Python puts the script's folder first on ``sys.path``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import mlflow

from dmlhc.events.cache import atomic_target
from dmlhc.tracking.store import ensure_experiment, resolve_tracking_uri


def write_csv(rows: Iterable[Mapping[str, object]], columns: Sequence[str], path: Path,
              exact: Sequence[str] = ("snr",)) -> Path:
    """``rows`` as a CSV table at ``path`` (folders made), replacing any old one only once it is complete: floats to
    4 decimals, except the ``exact`` columns (S/sqrt(B) values, written as given)."""
    with atomic_target(path) as partial, open(partial, "w", newline="") as out:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) and k not in exact else v) for k, v in row.items()})
    return path


def log_summary_run(experiment: str, name: str, artifacts: Sequence[Path], metrics: Mapping[str, float],
                    tags: Mapping[str, str], params: Mapping[str, object] | None = None) -> str:
    """A run ``name`` in MLflow experiment ``experiment`` (created if new, artifacts where the project keeps them)
    with ``artifacts`` (files), ``metrics``, ``tags`` and ``params``; returns its id."""
    uri = resolve_tracking_uri()
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=ensure_experiment(uri, experiment), run_name=name, tags=dict(tags)) as run:
        mlflow.log_metrics(dict(metrics))
        if params:
            mlflow.log_params(dict(params))
        for path in artifacts:
            mlflow.log_artifact(str(path))
        return run.info.run_id
