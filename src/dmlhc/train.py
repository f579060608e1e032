"""The training job behind ``python train.py``: instantiate, fit, test, report.

The ``data`` config instantiates the :class:`~dmlhc.data.datamodule.EnsembleDataModule` (it validates
everything, generates missing samples, owns B, S and the pools), the ``model`` config the
:class:`~dmlhc.models.classifier.Classifier` with its network, the ``callbacks`` group checkpointing,
early stopping, pruning and the results reporter (the optimum, plots and artifacts), the ``logger``
group the MLflow run of every training (:class:`~dmlhc.tracking.runs.RunGroup`: repeats are child
runs). Returns ``best_<optimized_metric>`` of the best checkpoints (their mean over repeats), for sweepers.
"""

from __future__ import annotations

import functools
import logging

import lightning.pytorch as pl
from omegaconf import DictConfig

from dmlhc.config import instantiate, instantiate_callbacks, integer, prepare_process
from dmlhc.errors import ConfigError
from dmlhc.models.architectures import ParametrisedDNN
from dmlhc.rendezvous import bind_rendezvous_to_localhost
from dmlhc.tracking.progress import without_disabled_progress
from dmlhc.tracking.runs import RunGroup, derived_params
from dmlhc.tracking.store import check_tracking_store, configured_tracking_uri


def train(cfg: DictConfig) -> float:
    """Run the job of ``cfg`` (one run, or a parent with ``repeats`` children; with ``grid.snr`` every point of the
    grid at once, :mod:`dmlhc.grid`); returns the optimised metric."""
    if (cfg.get("grid") or {}).get("snr") is not None:
        from dmlhc.grid import train_grid

        return train_grid(cfg)
    integer("repeats", cfg.repeats, minimum=1, fix="train at least once (repeats > 1: the paper's repeat statistic)")
    prepare_process(cfg)
    datamodule = instantiate("data", cfg.data)  # validates the data settings, derives S and the input shape
    new_model = functools.partial(instantiate, "model", cfg.model, input_shape=datamodule.input_shape,
                                  n_classes=datamodule.n_classes)
    new_callbacks = functools.partial(instantiate_callbacks, cfg.callbacks)
    if isinstance(new_model().net, ParametrisedDNN):  # a network that cannot work fails here, before any sample
        raise ConfigError("architecture=parametrised_dnn is told S/sqrt(B) and learns every point of a grid at once: "
                          "give the points, e.g. grid.snr=[0.112,0.447,1.118] (experiment=parametrised: Fig. 7's)")
    check_trainer(cfg, new_callbacks())
    if cfg.get("logger") and cfg.logger.get("mlflow"):  # an unusable store fails in seconds, before any sample
        check_tracking_store(configured_tracking_uri(cfg.logger.mlflow.tracking_uri), cfg.logger.mlflow.artifact_root)
    datamodule.prepare_data()  # samples and pools are ready (and checked) before any run is opened
    datamodule.setup("fit")
    bind_rendezvous_to_localhost(cfg.trainer)  # single-node DDP: no port open beyond this machine
    runs = RunGroup(cfg, derived_params(cfg, datamodule))
    for seed, logger in runs:
        pl.seed_everything(seed, workers=True)
        datamodule.seed = seed
        model = new_model()
        trainer = new_trainer(cfg, logger, new_callbacks())
        trainer.fit(model, datamodule=datamodule)
        best = "best" if trainer.checkpoint_callback else None
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics = scalar_metrics(trainer) | {"epochs": trainer.current_epoch}
        validation = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
        runs.record(metrics | {f"best_{k}": float(v) for k, v in validation.items()}, trainer)
    return runs.finish(cfg.optimized_metric)


def check_trainer(cfg: DictConfig, callbacks: list) -> None:
    """A trainer config that cannot train fails before any sample is made: ``max_epochs`` below 1 (-1: until early
    stopping), or anything Lightning's Trainer refuses (built once, quietly, and dropped)."""
    if cfg.trainer.get("max_epochs") not in (None, -1):
        integer("trainer.max_epochs", cfg.trainer.max_epochs, minimum=1,
                fix="train at least one epoch (-1: until early stopping stops it)")
    lightning_info = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = lightning_info.level
    lightning_info.setLevel(logging.WARNING)  # its "GPU available" lines come with the real Trainer
    try:
        new_trainer(cfg, False, callbacks)
    finally:
        lightning_info.setLevel(level)


def new_trainer(cfg: DictConfig, logger, callbacks: list, **kwargs) -> pl.Trainer:
    """The ``trainer`` config's Trainer (``kwargs`` beat it), writing into the job's folder (train and eval)."""
    return instantiate("trainer", cfg.trainer, logger=logger, default_root_dir=cfg.paths.output_dir,
                       callbacks=without_disabled_progress(callbacks, cfg.trainer.get("enable_progress_bar", True)),
                       **kwargs)


def scalar_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The trainer's metrics as floats."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
