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

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from dmlhc.config import instantiate, instantiate_callbacks, silence_known_noise
from dmlhc.errors import ConfigError
from dmlhc.tracking.runs import RunGroup


def train(cfg: DictConfig) -> float:
    """Run the job of ``cfg`` (one run, or a parent with ``repeats`` children); returns the optimised metric."""
    if cfg.repeats < 1:
        raise ConfigError(f"repeats={cfg.repeats}: must be >= 1")
    silence_known_noise()
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    datamodule = instantiate("data", cfg.data)  # validates the data settings, derives S and the input shape
    new_model = functools.partial(instantiate, "model", cfg.model, input_shape=datamodule.input_shape,
                                  n_classes=datamodule.n_classes)
    new_callbacks = functools.partial(instantiate_callbacks, cfg.callbacks)
    new_model(), new_callbacks()  # a network or callback that cannot work fails here, before any sample is made
    datamodule.prepare_data()  # samples and pools are ready (and checked) before any run is opened
    datamodule.setup("fit")
    runs = RunGroup(cfg, datamodule.tracking_params() | {"architecture": cfg.model.net._target_.rsplit(".")[-1]})
    for seed, logger in runs:
        pl.seed_everything(seed, workers=True)
        datamodule.seed = seed
        model = new_model()
        trainer = instantiate("trainer", cfg.trainer, logger=logger, callbacks=new_callbacks(),
                              default_root_dir=cfg.paths.output_dir)
        trainer.fit(model, datamodule=datamodule)
        best = "best" if trainer.checkpoint_callback else None
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()} | {"epochs": trainer.current_epoch}
        validation = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
        runs.record(metrics | {f"best_{k}": float(v) for k, v in validation.items()})
    return runs.finish(cfg.optimized_metric)
