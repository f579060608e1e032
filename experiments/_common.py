"""What the study scripts under experiments/ share: their summary runs (their tables: dmlhc.events.cache.write_csv)
and trained runs loaded with the data they were tested on.

Scripts import it as ``from _common import ...`` (Python puts the script's folder first on ``sys.path``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from omegaconf import OmegaConf

from dmlhc.config import instantiate, prepare_process
from dmlhc.data.datamodule import EnsembleDataModule
from dmlhc.eval import load_model
from dmlhc.predict import trained_config
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


def trained_run(run_id: str) -> tuple[EnsembleDataModule, Any]:
    """The DataModule of an MLflow training run as it was (its own validation and test sets, from its data settings;
    on the CPU, samples from the current cache, generated again if missing), set up for testing, and the run's network
    from its checkpoint artifact, in eval mode."""
    with tempfile.TemporaryDirectory() as folder:
        cfg, checkpoint, _ = trained_config(run_id, Path(folder))
        prepare_process(cfg)
        data = OmegaConf.to_container(cfg.data, resolve=True)
        assert isinstance(data, dict)  # a config node
        datamodule = instantiate("data", OmegaConf.create(data | {"cache_dir": None, "device": "cpu"}))
        datamodule.prepare_data()
        datamodule.setup("test")
        return datamodule, load_model(cfg, checkpoint, datamodule).eval()
