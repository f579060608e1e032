"""The MLflow runs of one ``python train.py`` job: one run, or for ``repeats > 1`` a parent run with one child run
per training seed and the paper's repeat statistic.

Every run gets the resolved config as flat params (what the run used, the tracking URI included), the
derived quantities (S, binning, architecture) and ``config.yaml``; a sweep's trial is tagged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from typing import cast

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from dmlhc.tracking.store import MIN_TRIMMED_REPEATS, MLflowLogger, flatten, global_rank, trimmed_statistic

log = logging.getLogger(__name__)


class RunGroup:
    """Iterate over ``(seed, logger)``: one MLflow run per training seed, children of a parent when there are
    several. :meth:`record` takes each run's metrics, :meth:`finish` returns the objective (the repeat mean)."""

    def __init__(self, cfg: DictConfig, derived: Mapping[str, object]):
        self.cfg, self.repeats = cfg, int(cfg.repeats)
        self.params = flatten(cast(dict, OmegaConf.to_container(cfg, resolve=True))) | dict(derived)
        self.config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
        self.tags = {}
        self.run_name = cfg.logger.mlflow.run_name or (
            f"{derived['benchmarks']}_snr{derived['snr']:g}_{derived['architecture']}")
        if cfg.get("optuna_trial"):
            self.tags = {"optuna.study": cfg.optuna_trial.study_name, "optuna.trial": str(cfg.optuna_trial.number)}
            self.run_name += f"_trial{cfg.optuna_trial.number}"
        self.results: list[dict[str, float]] = []
        self.parent: MLflowLogger | None = None
        if self.repeats > 1:
            self.statistic = ("trimmed: highest and lowest dropped" if self.repeats >= MIN_TRIMMED_REPEATS
                              else "mean and std of all repeats")
            if self.repeats < MIN_TRIMMED_REPEATS:
                log.warning("repeats=%d: the paper's trimmed statistic (drop the highest and lowest AUC) needs at "
                            "least %d repeats to leave a spread; reporting the plain mean and std of all %d instead",
                            self.repeats, MIN_TRIMMED_REPEATS, self.repeats)
            self.parent = self._logger(cfg.seed, "_repeats", {"dmlhc.repeat_statistic": self.statistic})

    def _logger(self, seed: int, suffix: str, tags: Mapping[str, str] | None = None,
                parent: MLflowLogger | None = None) -> MLflowLogger:
        logger = hydra.utils.instantiate(self.cfg.logger.mlflow, run_name=self.run_name + suffix,
                                         tags={**self.tags, **(tags or {})},
                                         parent_run_id=parent.run_id if parent is not None else None)
        if global_rank() == 0:
            logger.log_hyperparams({k: v for k, v in self.params.items() if k != "seed"} | {"seed": seed})
            logger.experiment.log_text(logger.run_id, self.config_yaml, "config.yaml")
        return logger

    def __iter__(self) -> Iterator[tuple[int, MLflowLogger]]:
        if self.parent is None:
            yield self.cfg.seed, self._logger(self.cfg.seed, "")
            return
        for r in range(self.repeats):
            seed = self.cfg.seed + r
            yield seed, self._logger(seed, f"_seed{seed}", parent=self.parent)

    def record(self, metrics: Mapping[str, float]) -> None:
        """The metrics of the run just finished."""
        self.results.append(dict(metrics))
        log.info("test/auc = %.4f, optimum %.4f", metrics["test/auc"], metrics.get("test/auc_optimal", math.nan))

    def finish(self, objective: str) -> float:
        """Close the parent run with the repeat statistic; returns the mean of ``best_<objective>``."""
        summary: dict[str, float] = {}
        for key in ("test/auc", f"best_{objective}", "test/auc_optimal"):
            values = [m[key] for m in self.results if key in m]
            if values:
                summary[f"{key}_mean"], summary[f"{key}_std"] = trimmed_statistic(values)
        if self.parent is not None and global_rank() == 0:
            self.parent.log_metrics({k: v for k, v in summary.items() if np.isfinite(v)})
            self.parent.finalize("success")
            log.info("test/auc over %d repeats (%s): %.4f +- %.4f", self.repeats, self.statistic,
                     summary["test/auc_mean"], summary["test/auc_std"])
        return summary.get(f"best_{objective}_mean", math.nan)
