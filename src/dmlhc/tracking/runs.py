"""The MLflow runs of one ``python train.py`` (or ``eval.py``) job: one run, or for ``repeats > 1`` a parent run with
one child run per training seed and the paper's repeat statistic.

Every run gets the resolved config as flat params, each setting once (:func:`config_params`: no ``_target_``-like
keys, no key that only refers to another), the tracking URI it used, the derived quantities (S, binning,
architecture) and ``config.yaml``; after training the best checkpoint (artifact ``checkpoints/best.ckpt``, param
``checkpoint``), ``best_<metric>`` at it, ``best_epoch`` and ``epochs``. Run names say what differs
(:func:`run_name`); an Optuna trial is tagged and a child of its study's run. The job ends with a summary and
``result.json`` (:mod:`dmlhc.tracking.summary`).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import hydra
import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dmlhc.events.cache import atomic_target
from dmlhc.tracking.secrets import redact
from dmlhc.tracking.store import (
    MIN_TRIMMED_REPEATS,
    MLflowLogger,
    ensure_experiment,
    flatten,
    global_rank,
    resolve_tracking_uri,
    sqlite_creation_lock,
    study_run_id,
    trimmed_statistic,
)
from dmlhc.tracking.summary import job_summary, write_result

log = logging.getLogger(__name__)


class RunGroup:
    """Iterate over ``(seed, logger)``: one MLflow run per training seed, children of a parent when there are
    several. :meth:`record` takes each run's metrics, :meth:`finish` returns the objective (the repeat mean)."""

    def __init__(self, cfg: DictConfig, derived: Mapping[str, object], tags: Mapping[str, str] | None = None,
                 suffix: str = "", architecture: str | None = None, parent_run_id: str | None = None):
        """``tags`` go on every run; ``suffix`` ends the run name (``_eval``); ``architecture``: the network's short
        name (default: :func:`architecture_name`); ``parent_run_id``: the run these runs are children of (a grid's;
        an Optuna trial's is its study run)."""
        self.cfg, self.repeats = cfg, int(cfg.repeats)
        self.uri = resolve_tracking_uri(cfg.logger.mlflow.tracking_uri)
        self.derived = dict(derived)
        # no URL password (tracking URI, Optuna storage) reaches the store: secrets.py
        self.params = redact(config_params(cfg) | self.derived | {"logger.mlflow.tracking_uri": self.uri})
        self.config_yaml = redact(OmegaConf.to_yaml(cfg, resolve=True))
        self.architecture = architecture or architecture_name(cfg)
        self.tags = {"dmlhc.task": str(derived.get("task", "")), "dmlhc.architecture": self.architecture,
                     **(tags or {})}
        self.study_run_id: str | None = parent_run_id
        template = run_name(cfg, derived, self.architecture, seed="{seed}") + suffix  # a child's seed, or seeds
        if cfg.get("optuna_trial"):
            self.tags |= {"optuna.study": cfg.optuna_trial.study_name, "optuna.trial": str(cfg.optuna_trial.number)}
            template += f"_trial{cfg.optuna_trial.number}"
            if global_rank() == 0:
                self.study_run_id = study_run(self.uri, cfg.logger.mlflow, cfg.optuna_trial)
        seeds = str(cfg.seed) if self.repeats == 1 else f"s{cfg.seed}-{cfg.seed + self.repeats - 1}"
        name = template.replace("{seed}", seeds)
        self.run_name = cfg.logger.mlflow.run_name or (
            unique_run_name(self.uri, cfg.logger.mlflow, name) if global_rank() == 0 else name)
        taken = self.run_name.removeprefix(name) if self.run_name.startswith(name) else ""  # " (2)", or ""
        self.child_name = lambda seed: template.replace("{seed}", str(seed)) + taken
        self.results: list[dict[str, Any]] = []
        self.loggers: list[MLflowLogger] = []
        self.parent: MLflowLogger | None = None
        if self.repeats > 1:
            self.statistic = ("trimmed: highest and lowest dropped" if self.repeats >= MIN_TRIMMED_REPEATS
                              else "mean and std of all repeats")
            if self.repeats < MIN_TRIMMED_REPEATS:
                log.warning("repeats=%d: the paper's trimmed statistic (drop the highest and lowest AUC) needs at "
                            "least %d repeats to leave a spread; reporting the plain mean and std of all %d instead",
                            self.repeats, MIN_TRIMMED_REPEATS, self.repeats)
            self.parent = self._logger(cfg.seed, self.run_name, {"dmlhc.repeat_statistic": self.statistic,
                                                                 "dmlhc.repeat": "parent"},
                                       parent_run_id=self.study_run_id)

    def _logger(self, seed: int, name: str, tags: Mapping[str, str] | None = None,
                parent_run_id: str | None = None) -> MLflowLogger:
        logger = hydra.utils.instantiate(self.cfg.logger.mlflow, run_name=name,
                                         tags={**self.tags, **(tags or {})}, parent_run_id=parent_run_id)
        if global_rank() == 0:
            logger.log_hyperparams({k: v for k, v in self.params.items() if k != "seed"} | {"seed": seed})
            logger.experiment.log_text(logger.run_id, self.config_yaml, "config.yaml")
        return logger

    def __iter__(self) -> Iterator[tuple[int, MLflowLogger]]:
        if self.parent is None:
            self.loggers.append(self._logger(self.cfg.seed, self.run_name, parent_run_id=self.study_run_id))
            yield self.cfg.seed, self.loggers[-1]
            return
        for r in range(self.repeats):
            seed = self.cfg.seed + r
            self.loggers.append(self._logger(seed, self.child_name(seed), {"dmlhc.repeat": "child"},
                                             parent_run_id=self.parent.run_id))
            yield seed, self.loggers[-1]

    def record(self, metrics: Mapping[str, float], trainer: Any = None) -> None:
        """The metrics of the run just finished; with its ``trainer``: the best checkpoint (an artifact), its
        epoch and ``best_*`` metrics and the epoch count are logged too, and its plots are listed."""
        logger = self.loggers[-1]
        result: dict[str, Any] = dict(metrics)
        if trainer is not None:
            result["plots"] = [str(p) for c in trainer.callbacks for p in getattr(c, "plot_paths", ())]
            checkpoint = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if checkpoint and global_rank() == 0:
                saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
                result["best_epoch"] = 1 + int(saved["epoch"])  # counted from 1, as epochs
                log_checkpoint(logger, checkpoint)
            if global_rank() == 0:
                logged = {k: float(v) for k, v in result.items()
                          if (k.startswith("best_") or k == "epochs") and isinstance(v, (int, float))}
                for key, value in logged.items():
                    logger.experiment.log_metric(logger.run_id, key, value)
        self.results.append(result)
        log.info("test/auc = %.4f, optimum %.4f", metrics["test/auc"], metrics.get("test/auc_optimal", math.nan))

    @property
    def top_run_id(self) -> str:
        """The run that stands for the group: the parent of the repeats, or the one run."""
        return str((self.parent or self.loggers[-1]).run_id)

    def finish(self, objective: str, report: bool = True) -> float:
        """Close the parent run with the repeat statistic and (``report``) print the job's summary and write its
        ``result.json``; returns the mean of ``best_<objective>``."""
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
        if global_rank() == 0 and report:
            result = self.result(summary)
            write_result(self.cfg.paths.output_dir, result)
            print(job_summary(result), flush=True)
        return summary.get(f"best_{objective}_mean", math.nan)

    def result(self, summary: Mapping[str, float]) -> dict[str, Any]:
        """What the job's summary and ``result.json`` hold: where the run is, what it was, its AUCs and files."""
        run = self.parent or self.loggers[-1]
        last = self.results[-1] if self.results else {}
        cfg = self.cfg
        return {"run_id": run.run_id, "run_name": self.run_name, "experiment": cfg.logger.mlflow.experiment_name,
                "tracking_uri": redact(self.uri), "task": self.derived.get("task"),
                "signal": self.derived.get("signal"), "snr": self.derived.get("snr"),
                "architecture": self.architecture, "seed": int(cfg.seed), "repeats": self.repeats,
                **({"trial": int(cfg.optuna_trial.number)} if cfg.get("optuna_trial") else {}),
                "source_run": self.tags.get("dmlhc.source_run"),
                "test/auc": summary.get("test/auc_mean", math.nan), "test/auc_std": summary.get("test/auc_std"),
                "test/auc_optimal": summary.get("test/auc_optimal_mean", math.nan),
                "test/auc_optimal_std": last.get("test/auc_optimal_std"),
                "epochs": last.get("epochs"), "best_epoch": last.get("best_epoch"),
                "output_dir": str(Path(cfg.paths.output_dir).resolve()), "plots": last.get("plots", []),
                "status": "done"}


def derived_params(cfg: DictConfig, datamodule: Any) -> dict[str, object]:
    """What a run records beside its config: the DataModule's (benchmarks, S, binning, task) and the network."""
    return datamodule.tracking_params() | {"architecture": cfg.model.net._target_.rsplit(".")[-1]}


_REFERENCE = re.compile(r"\$\{(oc\.select:)?[A-Za-z_][\w.]*(,[^}]*)?\}")


def config_params(cfg: DictConfig) -> dict[str, object]:
    """The resolved config as flat params, each setting once: no ``_target_``/``_partial_``-like keys, and no key
    whose value only refers to another (``data.snr: ${snr}`` is recorded as ``snr``, ``model.net`` as
    ``architecture``, ``model.lr`` once)."""
    references: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, str) and _REFERENCE.fullmatch(value):
                references.append(f"{prefix}{key}")
            elif isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    flat = flatten(cast(dict, OmegaConf.to_container(cfg, resolve=True)))
    return {key: value for key, value in flat.items()
            if not any(part.startswith("_") and part.endswith("_") for part in key.split("."))
            and not any(key == ref or key.startswith(f"{ref}.") for ref in references)}


def architecture_name(cfg: DictConfig, hydra_choice: bool = True) -> str:
    """The network's short name: the ``architecture`` choice of a Hydra job (``paper_dnn``), else from its class
    (``HistogramDNN`` -> ``dnn``)."""
    from hydra.core.hydra_config import HydraConfig

    if hydra_choice and HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("architecture")
        if choice:
            return str(choice)
    target = str(cfg.model.net._target_).rsplit(".")[-1]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", target.removeprefix("Histogram")).lower()


def run_name(cfg: DictConfig, derived: Mapping[str, Any], architecture: str, seed: str | None = None) -> str:
    """``<task>_<benchmark, or A_vs_B, or the benchmarks>_snr<S/sqrt(B)>_<architecture>_seed<seed>`` (``seed``:
    default ``cfg.seed``)."""
    task = str(derived.get("task", cfg.data.task))
    if task == "model_vs_model":
        subject = f"{derived['signal']}_vs_{cfg.data.other}"
    elif task in ("multiclass", "multimodel"):
        names = list(cfg.data.benchmarks or [])
        subject = "+".join(names) if len(names) <= 2 else f"{len(names)}benchmarks"
    else:
        subject = str(derived["signal"])
    return f"{task}_{subject}_snr{float(derived['snr']):g}_{architecture}_seed{cfg.seed if seed is None else seed}"


def unique_run_name(uri: str, logger_cfg: DictConfig, name: str) -> str:
    """``name``, or ``name (k)`` when the experiment already has runs of that name (the same settings again)."""
    from mlflow import MlflowClient

    experiment_id = ensure_experiment(uri, logger_cfg.experiment_name, logger_cfg.artifact_root)
    quoted = name.replace("'", "\\'")
    with sqlite_creation_lock(uri):
        taken = {r.info.run_name for r in MlflowClient(uri).search_runs(
            [experiment_id], f"attributes.run_name LIKE '{quoted}%'", max_results=10000)}
    if name not in taken:
        return name
    return next(f"{name} ({k})" for k in range(2, len(taken) + 3) if f"{name} ({k})" not in taken)


def study_run(uri: str, logger_cfg: DictConfig, trial: DictConfig) -> str:
    """The id of the run of the trial's Optuna study (``study_<name>``, tagged ``optuna.summary``, which the
    sweeper's summary fills at the end), created if this is the study's first trial; trials are its children."""
    from mlflow import MlflowClient

    experiment_id = ensure_experiment(uri, logger_cfg.experiment_name, logger_cfg.artifact_root)
    tags = {"optuna.summary": "true", "optuna.study": str(trial.study_name)}
    storage = OmegaConf.select(trial, "storage", default=None, throw_on_resolution_failure=False)
    if storage:
        tags["optuna.storage"] = str(redact(storage))
    return study_run_id(uri, MlflowClient(uri), experiment_id, tags)


def save_checkpoint(logger: MLflowLogger, classifier: Any, checkpoint: Path, best_epoch: int, steps: int) -> None:
    """``classifier``'s weights, kept at its best epoch ``best_epoch`` (from 1) of ``steps`` steps each, as a
    checkpoint that Lightning and ``eval.py`` load, written atomically to ``checkpoint`` and logged
    (:func:`log_checkpoint`): what the grid trainer and the parametrised trainer keep of a network."""
    with atomic_target(checkpoint) as partial:
        torch.save({"state_dict": classifier.state_dict(), "hyper_parameters": dict(classifier.hparams),
                    "epoch": best_epoch - 1, "global_step": best_epoch * steps,
                    "pytorch-lightning_version": pl.__version__}, partial)
    log_checkpoint(logger, str(checkpoint))


def log_checkpoint(logger: MLflowLogger, checkpoint: str) -> None:
    """The checkpoint file as the run's artifact ``checkpoints/best.ckpt``, its local path as param ``checkpoint``."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "best.ckpt"
        shutil.copyfile(checkpoint, copy)
        logger.experiment.log_artifact(logger.run_id, str(copy), "checkpoints")
    logger.experiment.log_param(logger.run_id, "checkpoint", str(Path(checkpoint).resolve()))
