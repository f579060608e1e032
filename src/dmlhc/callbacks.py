"""Training callbacks of the ``callbacks`` config group: early stopping with its patience counted in training
histograms, Optuna pruning for the jobs of a sweep, and averaged weights (``callbacks.ema``, in the defaults)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging

from dmlhc.errors import ConfigError

log = logging.getLogger(__name__)
MONITORS = {"val/auc": "max", "val/loss": "min"}


class HistogramEarlyStopping(EarlyStopping):
    """Early stopping whose patience is ``patience_histograms`` training histograms, whatever the batch size or
    epoch length (the DataModule's ``histograms_per_epoch``); a run also ends at once when val/auc reaches 1,
    without waiting for ``trainer.min_epochs``: no later epoch can improve on it strictly, so the best checkpoint
    and every test metric are those of that epoch whenever the run ends (large S/sqrt(B) points end early)."""

    def __init__(self, monitor: str = "val/auc", mode: str | None = None, patience_histograms: int = 200_000,
                 **kwargs):
        if monitor not in MONITORS:
            raise ConfigError(f"monitor={monitor!r}: choose val/auc (mode max) or val/loss (mode min)")
        if mode not in (None, MONITORS[monitor]):
            raise ConfigError(f"monitor={monitor} with mode={mode}: {monitor} needs mode {MONITORS[monitor]}")
        if patience_histograms < 1:
            raise ConfigError(f"patience_histograms={patience_histograms}: must be >= 1")
        super().__init__(monitor=monitor, mode=MONITORS[monitor], **kwargs)
        self.patience_histograms = int(patience_histograms)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        per_epoch = getattr(getattr(trainer, "datamodule", None), "histograms_per_epoch", None)
        if per_epoch:
            self.patience = math.ceil(self.patience_histograms / per_epoch)

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        super()._run_early_stopping_check(trainer)
        current = trainer.callback_metrics.get(self.monitor)
        if self.monitor == "val/auc" and current is not None and float(current) >= 1.0 \
                and not getattr(trainer, "fast_dev_run", False):
            # (Lightning's stopping_threshold compares strictly, so a threshold of 1 would never stop)
            trainer.should_stop = True
            trainer.fit_loop.min_epochs = 0  # the Trainer's min_epochs would add epochs that change nothing
            self.stopped_epoch = trainer.current_epoch
            if self.verbose:
                self._log_info(trainer, "val/auc = 1: nothing left to learn; stopping", self.log_rank_zero_only)


class OptunaPruning(pl.Callback):
    """Report ``monitor`` after every validation to the job's Optuna trial and stop the run when the pruner says so.

    ``trial``: what the sweeper puts into the job's config (``optuna_trial``: storage, study name, trial number and
    its pruner settings); None (a plain run) does nothing.
    """

    def __init__(self, trial: Mapping | None = None, monitor: str = "val/auc"):
        self.monitor, self.trial = monitor, None
        if not trial:
            return
        import optuna

        storage = optuna.storages.RDBStorage(str(trial["storage"]))
        study = optuna.load_study(study_name=trial["study_name"], storage=storage)
        pruner = study.user_attrs.get("pruner", {"enabled": False})
        study.pruner = (optuna.pruners.MedianPruner(n_startup_trials=pruner["n_startup_trials"],
                                                    n_warmup_steps=pruner["n_warmup_steps"])
                        if pruner["enabled"] else optuna.pruners.NopPruner())
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, int(trial["number"]))
        self.trial = optuna.trial.Trial(study, trial_id)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is None or trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            log.info("Optuna pruned trial %d at epoch %d", self.trial.number, trainer.current_epoch)
            self.trial.set_user_attr("pruned", True)
            trainer.should_stop = True


def averaging_decay(decay: float) -> float:
    """``callbacks.ema.decay``, checked: in [0, 1) (the average spans about 1 / (1 - decay) steps)."""
    if not 0 <= decay < 1:
        raise ConfigError(f"callbacks.ema.decay={decay}: must be in [0, 1) (0.999: ~1000 steps averaged)")
    return float(decay)


class AveragedWeights(EMAWeightAveraging):
    """Lightning's EMA weight averaging (``callbacks.ema``) whose averaged weights are the ones tested.

    A checkpoint holds the averaged weights as its ``state_dict`` (and the raw ones beside them);
    Lightning's callback, once fitted, restores the raw weights whenever a checkpoint is loaded, so
    ``trainer.test(ckpt_path="best")`` would test weights that were never validated. Outside fitting this
    one leaves the loaded (averaged) weights in place, as ``eval.py`` and ``load_from_checkpoint`` load them.
    """

    def __init__(self, decay: float = 0.999, **kwargs):
        self.decay = averaging_decay(decay)
        super().__init__(decay=self.decay, **kwargs)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        window = round(1 / (1 - self.decay))
        if trainer.global_step < window:
            log.warning("averaged weights: training took %d steps, fewer than the %d the average spans "
                        "(callbacks.ema.decay=%g): the tested network still holds much of its initial weights; "
                        "train longer, or set callbacks.ema.decay=%g (about %d steps) or callbacks.ema=null",
                        trainer.global_step, window, self.decay, 1 - 10 / max(trainer.global_step, 20),
                        max(trainer.global_step // 10, 2))
