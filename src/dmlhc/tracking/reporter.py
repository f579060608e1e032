"""The results reporter (``callbacks/results.yaml``): at the end of testing, the likelihood-ratio optimum on the
same test histograms, the pool sizes, and the plots, into the run.

Metrics: ``test/auc_optimal`` (with ``_std``, its spread over bootstrap replicas of the
train pools, and ``_pseudo_count``; multiclass: ``test/auc_optimal_class<k>``), logged at
the step of the network's ``test/auc`` so MLflow's charts put them side by side, and
added to ``trainer.callback_metrics``. Params: pool sizes, N/B and selection efficiencies
(``data.*``; a one-signal task's sample named by its role, ``signal``, ``other``).
Artifacts: ``plots/roc.png`` (network and optimum), ``plots/outputs.png``,
``plots/example_histograms.png``, or ``plots/prediction_frequency.png`` for multiclass;
the files stay under ``<trainer.default_root_dir>/plots/<run id>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from dmlhc.tracking.plots import (
    class_names,
    describe_run,
    example_histograms_figure,
    output_figure,
    prediction_frequency_figure,
    roc_figure,
    save,
)
from dmlhc.tracking.store import flatten


class ResultsReporter(pl.Callback):
    """Scores the test set with the optimum and writes the run's results (module docstring)."""

    def __init__(self, n_bootstrap: int = 20, plots: bool = True):
        self.n_bootstrap, self.plots = int(n_bootstrap), bool(plots)
        self.plot_paths: list[Path] = []  # of the last test, for the job's summary

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule: Any = getattr(trainer, "datamodule", None)
        if not trainer.is_global_zero or not hasattr(datamodule, "optimal_auc"):
            return
        binary = datamodule.n_classes == 2
        optimum = datamodule.optimal_auc(n_bootstrap=self.n_bootstrap if binary else 0)
        metrics = {"test/auc_optimal": optimum.auc, "test/auc_optimal_pseudo_count": datamodule.optimum_pseudo_count()}
        if binary:
            metrics["test/auc_optimal_std"] = optimum.std or 0.0
        metrics |= {f"test/auc_optimal_class{k}": v for k, v in enumerate(optimum.per_class or ())}
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})

        client, run_id = _mlflow_run(trainer.logger)
        if client is not None:
            step = max((m.step for m in client.get_metric_history(run_id, "test/auc")), default=0)
            for key, value in metrics.items():
                client.log_metric(run_id, key, value, step=step)
            for key, value in pool_params(datamodule).items():
                client.log_param(run_id, key, value)
        if self.plots:
            folder = Path(trainer.default_root_dir) / "plots" / (run_id or "run")
            network_auc = float(trainer.callback_metrics["test/auc"])
            self.plot_paths = self._plots(datamodule, pl_module, optimum, network_auc, folder)
            for path in self.plot_paths:
                if client is not None:
                    client.log_artifact(run_id, str(path), "plots")

    def _plots(self, datamodule, pl_module, optimum, network_auc: float, folder: Path) -> list[Path]:
        labels = datamodule.sets["test"].y.cpu().numpy().astype(int)
        scores = torch.cat(pl_module.test_scores).numpy()
        task = datamodule.task
        names = class_names(task.name, task.classes)
        description = describe_run(task.name, list(datamodule.signal_sources), datamodule.snr,
                                   datamodule.n_background)
        figures = {}
        if datamodule.n_classes == 2:
            optimum_name = f"{'per-event ' if task.name == 'event' else ''}likelihood ratio (optimum)"
            curves = {type(pl_module.net).__name__: (scores, network_auc),
                      optimum_name: (optimum.scores.cpu().numpy(), optimum.auc)}
            figures["roc"] = roc_figure(labels, curves, names, description)
            figures["outputs"] = output_figure(labels, scores, names, description)
        else:
            figures["prediction_frequency"] = prediction_frequency_figure(labels, scores, names, description)
        if task.name != "event":
            counts = datamodule.test_counts.cpu().numpy().reshape(-1, *datamodule.binning.shape)
            figures["example_histograms"] = example_histograms_figure(counts, labels, names, datamodule.binning.edges(),
                                                                      description)
        return [save(figure, folder / f"{name}.png") for name, figure in figures.items()]


def pool_params(datamodule) -> dict[str, object]:
    """The pool sizes, N/B ratios and selection efficiencies a run records (``data.pool*``,
    ``data.selection_efficiency*``), samples named by role."""
    return {key: value for key, value in flatten({"data": by_role(datamodule.summary(), datamodule)}).items()
            if key.startswith(("data.pool", "data.selection_efficiency"))}


def by_role(summary: dict, datamodule) -> dict:
    """The DataModule's summary with the one-signal tasks' sample names replaced by their role (``signal``, and
    ``other`` for model_vs_model), so the pool keys of runs of different benchmarks line up; multi-benchmark
    tasks keep the benchmark names (the same in every run of the task)."""
    names = list(datamodule.signal_sources)
    if datamodule.task.name in ("multiclass", "multimodel"):
        return summary
    roles = dict(zip(names, ("signal", "other")))
    return {"/".join(roles.get(part, part) for part in key.split("/")): value for key, value in summary.items()}


def _mlflow_run(logger) -> tuple[Any, str | None]:
    """(MlflowClient, run id) of an MLflow logger; (None, None) for other loggers or none."""
    if logger is None or not hasattr(logger, "run_id") or not type(logger).__name__.lower().startswith("mlflow"):
        return None, None
    return logger.experiment, logger.run_id
