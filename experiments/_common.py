"""What the study scripts under experiments/ share: their summary runs (their tables: dmlhc.events.cache.write_csv).

Scripts import it as ``from _common import ...`` (Python puts the script's folder first on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow

from dmlhc.tracking.store import ensure_experiment, resolve_tracking_uri


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
