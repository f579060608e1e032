"""The training job behind ``python train.py``: config -> samples -> DataModule -> network -> MLflow.

``train(cfg)`` validates the configuration before any work, loads or generates the
samples (embedded Pythia on first use), builds the :class:`EnsembleDataModule`,
trains the injected network with early stopping on ``model.monitor`` (``val/auc`` by default; patience
in training histograms), tests the best checkpoint, scores the same test histograms with the
likelihood-ratio optimum and
records everything in one MLflow run (a parent run with child runs for
``repeats > 1``). It returns ``cfg.optimized_metric`` of the best checkpoint, for
sweepers.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import awkward as ak
import hydra
import lightning.pytorch as pl
import mlflow
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .benchmarks import get_benchmark
from .datamodule import EnsembleDataModule
from .detector import JetResponse
from .ensembles import n_signal_events
from .events import EventSample, read_delphes
from .generate import GenerationSpec, load_or_generate
from .models.classifier import Classifier
from .optimal import LikelihoodRatio, auc, class_probabilities
from .pools import Binning, Cuts
from .tracking import (experiment_id_of, flatten, plot_example_histograms, plot_output_distributions,
                       plot_prediction_frequency, plot_roc, tracking_uri, trimmed_statistic,
                       MIN_TRIMMED_REPEATS)

log = logging.getLogger(__name__)
OPTIMAL_BOOTSTRAP = 20


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and the fix."""


# ------------------------------------------------------------------------- validation
def signal_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """The signal samples of the task by name: the signal group, or model.signals (benchmark names)."""
    names = cfg.model.get("signals")
    if names:
        return {name: OmegaConf.create({"name": name, "benchmark": name, "files": None, "events": cfg.signal.events})
                for name in names}
    signals = {cfg.signal.name: cfg.signal}
    if cfg.model.task == "model_vs_model":
        other = cfg.model.other
        if other == cfg.signal.name:
            raise ConfigError(f"model.other={other!r} equals signal={other!r}: compare two different models")
        signals[other] = OmegaConf.create({"name": other, "benchmark": other, "files": None,
                                           "events": cfg.signal.events})
    return signals


def validate(cfg: DictConfig) -> None:
    """Fail before any work on a configuration that cannot run, naming the key and the fix."""
    if cfg.snr < 0:
        raise ConfigError(f"snr={cfg.snr}: S/sqrt(B) must be >= 0")
    if cfg.repeats < 1:
        raise ConfigError(f"repeats={cfg.repeats}: must be >= 1")
    if cfg.model.monitor not in ("val/auc", "val/loss"):
        raise ConfigError(f"model.monitor={cfg.model.monitor!r}: choose val/auc or val/loss")
    if cfg.model.patience_histograms < 1:
        raise ConfigError(f"model.patience_histograms={cfg.model.patience_histograms}: must be >= 1")
    if cfg.background.n_background < 1:
        raise ConfigError(f"background.n_background={cfg.background.n_background}: must be >= 1")
    try:
        Binning.coerce(OmegaConf.to_container(cfg.binning)).check_fits(Cuts(**cfg.data.cuts))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    is_event_net = str(cfg.architecture._target_).endswith("EventDNN")
    if is_event_net != (cfg.model.task == "event"):
        raise ConfigError(f"architecture={cfg.architecture._target_.rsplit('.', 1)[-1]} with model={cfg.model.task}: "
                          "use architecture=event_dnn with model=event, and dnn or cnn with histogram tasks")
    n_signal = n_signal_events(cfg.background.n_background, cfg.snr)
    train_fraction = cfg.data.fractions[0]
    for key, sample in [("background", cfg.background), *((f"signal {n}", s) for n, s in signal_configs(cfg).items())]:
        if not sample.files:
            if not sample.benchmark:
                raise ConfigError(f"{key}: give files (Delphes ROOT files) or a benchmark to generate")
            try:
                get_benchmark(sample.benchmark)
            except ValueError as err:
                raise ConfigError(f"{key}.benchmark: {err}") from None
            needed = n_signal if key != "background" else cfg.background.n_background + n_signal
            available = int(sample.events * train_fraction)
            if cfg.model.task != "event" and cfg.data.mode == "exact" and needed > available:
                raise ConfigError(
                    f"{key}: each histogram needs {needed} distinct events but at most {available} of its "
                    f"{sample.events} events reach the train pool; raise {key.split()[0]}.events, lower snr or "
                    "background.n_background, or set data.mode=multinomial")


# ------------------------------------------------------------------------------ data
def load_sample(sample: DictConfig, generation: DictConfig) -> EventSample:
    """A sample from its Delphes files (concatenated), or from the embedded generator (cached).

    Samples read from the generator's cache are kept in memory for the rest of the process, so the jobs of a
    multirun (one process) read the 1.5M-event background once, not once per job.
    """
    if sample.files:
        return _read_files(tuple(str(f) for f in sample.files))
    spec = GenerationSpec(get_benchmark(sample.benchmark), int(sample.events), generation.level, int(generation.seed),
                          JetResponse(enabled=bool(generation.detector)))
    return _generated_sample(spec, generation.workers)


@functools.lru_cache(maxsize=16)
def _generated_sample(spec: GenerationSpec, workers: int | None) -> EventSample:
    return load_or_generate(spec, workers=workers)


def _read_files(files: tuple[str, ...]) -> EventSample:
    parts = [read_delphes(path) for path in files]
    if len(parts) == 1:
        return parts[0]
    return EventSample(*(ak.concatenate([getattr(p, f) for p in parts]) for f in ("jet_pt", "jet_eta", "jet_phi")),
                       np.concatenate([p.met for p in parts]), np.concatenate([p.weight for p in parts]),
                       {"files": list(files)})


def build_datamodule(cfg: DictConfig, seed: int) -> EnsembleDataModule:
    """The DataModule of the config, with its samples loaded (or generated on first use)."""
    signals = {name: load_sample(s, cfg.generation) for name, s in signal_configs(cfg).items()}
    data = cfg.data
    return EnsembleDataModule(
        signal=signals, background=load_sample(cfg.background, cfg.generation),
        n_background=cfg.background.n_background, snr=cfg.snr, task=cfg.model.task, mode=data.mode,
        eval_mode=data.eval_mode, normalisation=data.normalisation, binning=OmegaConf.to_container(cfg.binning),
        cuts=OmegaConf.to_container(data.cuts), fractions=list(data.fractions), dataset=data.dataset,
        batch_size=data.batch_size, steps_per_epoch=data.steps_per_epoch, n_val=data.n_val, n_test=data.n_test,
        paper_histograms=data.paper_histograms, seed=seed, data_seed=data.data_seed, device=data.device)


def build_network(cfg: DictConfig, datamodule: EnsembleDataModule) -> torch.nn.Module:
    """The architecture of the config, sized for the binning and the task."""
    n_classes = datamodule.task.n_classes
    n_outputs = 1 if n_classes == 2 else n_classes
    partial = hydra.utils.instantiate(cfg.architecture)
    if cfg.model.task == "event":
        return partial(n_outputs=n_outputs)
    return partial(n_pt=cfg.binning.n_pt, n_eta=cfg.binning.n_eta, n_outputs=n_outputs)


# -------------------------------------------------------------------------- training
def fit_and_test(cfg: DictConfig, seed: int, run_id: str | None, workdir: Path) -> dict[str, float]:
    """One training run into the MLflow run ``run_id`` (None on DDP ranks > 0); returns its metrics."""
    pl.seed_everything(seed, workers=True)
    datamodule = build_datamodule(cfg, seed)
    module = Classifier(build_network(cfg, datamodule), n_classes=datamodule.task.n_classes, lr=cfg.model.lr,
                        weight_decay=cfg.model.weight_decay)
    monitor, mode = cfg.model.monitor, "min" if cfg.model.monitor.endswith("loss") else "max"
    checkpoint = ModelCheckpoint(dirpath=workdir / "checkpoints", monitor=monitor, mode=mode, save_top_k=1)
    logger = MLFlowLogger(experiment_name=cfg.logger.experiment_name, tracking_uri=tracking_uri(cfg.logger.tracking_uri),
                          run_id=run_id)
    patience = math.ceil(cfg.model.patience_histograms / datamodule.histograms_per_epoch)
    # A perfect val/auc leaves nothing to learn: stop there (large S/sqrt(B) points end after an epoch).
    callbacks = [checkpoint, EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                           stopping_threshold=1.0 if mode == "max" else None)]
    if cfg.get("optuna_trial"):
        callbacks.append(OptunaPruning(cfg.optuna_trial, cfg.optimized_metric))
    trainer = hydra.utils.instantiate(cfg.trainer, logger=logger, default_root_dir=str(workdir), callbacks=callbacks)
    trainer.fit(module, datamodule=datamodule)
    best = checkpoint.best_model_path or None
    metrics = {k: float(v) for k, v in trainer.test(module, datamodule=datamodule, ckpt_path=best)[0].items()}
    validation = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    metrics |= {f"best_{k}": float(v) for k, v in validation.items()}
    metrics["epochs"] = trainer.current_epoch
    if trainer.is_global_zero:
        metrics |= _log_results(cfg, datamodule, module, run_id, workdir)
    return metrics


class OptunaPruning(pl.Callback):
    """Report the monitored metric of every epoch to the Optuna trial of this job; stop if the pruner says so."""

    def __init__(self, trial_cfg: DictConfig, monitor: str):
        import optuna

        storage = optuna.storages.RDBStorage(str(trial_cfg.storage))
        study = optuna.load_study(study_name=trial_cfg.study_name, storage=storage)
        pruner = study.user_attrs.get("pruner", {"enabled": False})
        study.pruner = (optuna.pruners.MedianPruner(n_startup_trials=pruner["n_startup_trials"],
                                                    n_warmup_steps=pruner["n_warmup_steps"])
                        if pruner["enabled"] else optuna.pruners.NopPruner())
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, int(trial_cfg.number))
        self.trial, self.monitor = optuna.trial.Trial(study, trial_id), monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            log.info("Optuna pruned trial %d at epoch %d", self.trial.number, trainer.current_epoch)
            self.trial.set_user_attr("pruned", True)
            trainer.should_stop = True


def _log_results(cfg, datamodule: EnsembleDataModule, module: Classifier, run_id: str, workdir: Path) -> dict:
    """The optimum, the pool sizes, the plots and the resolved config, into the run."""
    client = mlflow.MlflowClient(tracking_uri(cfg.logger.tracking_uri))
    summary = datamodule.summary()
    for key, value in flatten({"data": summary}).items():
        if key.startswith("data.pool"):
            client.log_param(run_id, key, value)
    labels = datamodule.test_labels.cpu().numpy()
    scores = torch.cat(module.test_scores).numpy()
    names = ["SM only", *(f"SM + {s}" for s in datamodule.signal_sources)]
    plots = workdir / "plots"
    metrics: dict[str, float] = {}
    if datamodule.task.n_classes == 2:
        optimum = datamodule.optimal_auc(n_bootstrap=OPTIMAL_BOOTSTRAP)
        metrics = {"test/auc_optimal": optimum.auc, "test/auc_optimal_std": optimum.std or 0.0,
                   "test/auc_optimal_pseudo_count": datamodule.optimum_pseudo_count()}
        network_auc = auc(torch.as_tensor(scores), torch.as_tensor(labels) > 0.5)
        curves = {cfg.architecture._target_.rsplit(".", 1)[-1]: (scores, network_auc)}
        if datamodule.task.name != "event":
            curves["likelihood ratio (optimum)"] = (_optimal_scores(datamodule), optimum.auc)
        title = f"{', '.join(datamodule.signal_sources)}, S/sqrt(B) = {cfg.snr:g}, B = {datamodule.n_background}"
        client.log_artifact(run_id, str(plot_roc(labels, curves, plots / "roc.png", title)), "plots")
        client.log_artifact(run_id, str(plot_output_distributions(labels, scores, plots / "outputs.png", title)), "plots")
        if datamodule.task.name == "model_vs_model":
            names = [f"SM + {s}" for s in reversed(list(datamodule.signal_sources))]
    else:
        optimum = datamodule.optimal_auc()
        metrics = {"test/auc_optimal": optimum.auc,
                   "test/auc_optimal_pseudo_count": datamodule.optimum_pseudo_count(),
                   **{f"test/auc_optimal_class{k}": v for k, v in enumerate(optimum.per_class or ())}}
        path = plot_prediction_frequency(labels, scores, names, plots / "prediction_frequency.png")
        client.log_artifact(run_id, str(path), "plots")
    if datamodule.task.name != "event":
        histograms = datamodule.test_histograms.cpu().numpy()
        b = datamodule.binning
        extent = [*b.pt_range, *b.eta_range]
        path = plot_example_histograms(histograms, labels.astype(int), names, extent, plots / "example_histograms.png")
        client.log_artifact(run_id, str(path), "plots")
    history = client.get_metric_history(run_id, "test/auc")
    step = history[-1].step if history else 0  # beside the network's test/auc in MLflow's charts
    for key, value in metrics.items():
        client.log_metric(run_id, key, value, step=step)
    return metrics


def _optimal_scores(datamodule: EnsembleDataModule) -> np.ndarray:
    probabilities = datamodule.bin_probabilities()
    background = probabilities.pop("background")
    scorer = LikelihoodRatio(class_probabilities(datamodule.task, background, probabilities,
                                                 datamodule.n_background, datamodule.n_signal))
    return scorer.scores(datamodule.test_counts).cpu().numpy()


def _global_rank() -> int:
    """This process's rank in a distributed (DDP) run; 0 otherwise. RANK / LOCAL_RANK: torchrun and Lightning's
    own relaunch; SLURM_PROCID: one srun task per device (DDP under SLURM, e.g. hydra/launcher=slurm)."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


@contextmanager
def _work_directory():
    """Checkpoints and plots: the Hydra job's output folder (shared by DDP processes), else a temporary one."""
    if HydraConfig.initialized():
        yield Path(HydraConfig.get().runtime.output_dir)
        return
    with tempfile.TemporaryDirectory(prefix="dmlhc_") as tmp:
        yield Path(tmp)


def train(cfg: DictConfig) -> float:
    """Run the job of ``cfg`` (one run, or a parent with ``repeats`` children); returns the optimised metric."""
    validate(cfg)
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    run_name = cfg.logger.run_name or f"{cfg.signal.name if not cfg.model.get('signals') else cfg.model.task}" \
                                      f"_snr{cfg.snr:g}_{cfg.architecture._target_.rsplit('.', 1)[-1]}"
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    params |= {"signal": cfg.signal.name, "snr": float(cfg.snr), "n_background": cfg.background.n_background,
               "n_signal": n_signal_events(cfg.background.n_background, cfg.snr),
               "binning": Binning.coerce(OmegaConf.to_container(cfg.binning)).describe(),
               "architecture": cfg.architecture._target_.rsplit(".", 1)[-1], "task": cfg.model.task}
    resolved = OmegaConf.to_yaml(cfg, resolve=True)

    tags = {}
    if cfg.get("optuna_trial"):
        tags = {"optuna.study": cfg.optuna_trial.study_name, "optuna.trial": str(cfg.optuna_trial.number)}
        run_name += f"_trial{cfg.optuna_trial.number}"

    def start(parent: str | None, seed: int, suffix: str = ""):
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name + suffix, nested=parent is not None,
                               tags=tags)
        mlflow.log_params({k: v for k, v in params.items() if k != "seed"} | {"seed": seed})
        mlflow.log_text(resolved, "config.yaml")
        return run

    with _work_directory() as workdir:
        if _global_rank() > 0:  # a DDP worker process: it trains, rank 0 tracks
            for r in range(cfg.repeats):
                fit_and_test(cfg, cfg.seed + r, None, workdir / f"r{r}")
            return math.nan
        # Rank 0 alone touches the store: ranks started together (srun) would race to create its tables.
        experiment_id = experiment_id_of(cfg)
        if cfg.repeats == 1:
            with start(None, cfg.seed) as run:
                metrics = fit_and_test(cfg, cfg.seed, run.info.run_id, workdir)
            log.info("test/auc = %.4f, optimum %.4f", metrics["test/auc"], metrics.get("test/auc_optimal", math.nan))
            return metrics.get(f"best_{cfg.optimized_metric}", metrics.get(cfg.optimized_metric, math.nan))
        statistic = ("trimmed: highest and lowest dropped" if cfg.repeats >= MIN_TRIMMED_REPEATS
                     else "mean and std of all repeats")
        if cfg.repeats < MIN_TRIMMED_REPEATS:
            log.warning("repeats=%d: the paper's trimmed statistic (drop the highest and lowest AUC) needs at least %d "
                        "repeats to leave a spread; reporting the plain mean and std of all %d instead",
                        cfg.repeats, MIN_TRIMMED_REPEATS, cfg.repeats)
        with start(None, cfg.seed, "_repeats") as parent:
            mlflow.set_tag("dmlhc.repeat_statistic", statistic)
            results = []
            for r in range(cfg.repeats):
                with start(parent.info.run_id, cfg.seed + r, f"_seed{cfg.seed + r}") as child:
                    results.append(fit_and_test(cfg, cfg.seed + r, child.info.run_id, workdir / f"r{r}"))
            summary = {}
            for key in ("test/auc", f"best_{cfg.optimized_metric}"):
                mean, std = trimmed_statistic([m[key] for m in results])
                summary |= {f"{key}_mean": mean, f"{key}_std": std}
            if "test/auc_optimal" in results[0]:
                summary["test/auc_optimal"] = float(np.mean([m["test/auc_optimal"] for m in results]))
            mlflow.log_metrics(summary)
        log.info("test/auc over %d repeats (%s): %.4f +- %.4f", cfg.repeats, statistic, summary["test/auc_mean"],
                 summary["test/auc_std"])
        return summary[f"best_{cfg.optimized_metric}_mean"]
