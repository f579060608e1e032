"""The LightningModule: binary (signal + SM vs SM-only, model vs model) and multiclass.

Instantiated from the ``model`` config with the network nested as a config (``net:``,
the ``architecture`` group): the module builds it for the DataModule's ``input_shape``
and ``n_classes`` and records all of it as hyper-parameters, so
``Classifier.load_from_checkpoint(path)`` rebuilds the trained network on its own. A
ready ``nn.Module`` may be passed instead (then loading needs ``net=``). The module
owns the loss, the optimiser and the metrics. Before fitting, a network with a fixed input
standardisation gets its per-bin mean and std from the DataModule
(``input_statistics``); they are buffers, so checkpoints carry them. Metrics:
``val/loss``, ``val/auc`` and ``test/auc`` (tie-aware
torchmetrics AUROC; one-vs-rest per class and macro average for multiclass). Test
scores are kept for the results reporter (``dmlhc.tracking.reporter``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import cast

import hydra
import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import BinaryAUROC, MulticlassAUROC

from dmlhc.config import number
from dmlhc.errors import ConfigError
from dmlhc.models.architectures import Standardise


class Classifier(pl.LightningModule):
    """Trains ``net`` with Adam(W); binary (``n_classes == 2``, one logit) or multiclass (softmax).

    ``net``: an architecture config (``_target_`` and its arguments but the input shape and outputs) or a
    module. ``task``: the DataModule's task, recorded so a checkpoint says what it classifies.
    """

    def __init__(self, net: Mapping | nn.Module, input_shape: Sequence[int] | None = None, n_classes: int = 2,
                 task: str = "binary", lr: float = 1e-4, weight_decay: float = 0.0, optimizer: str = "adamw"):
        super().__init__()
        number("model.lr", lr, above=0, fix="give the optimiser's learning rate, e.g. model.lr=3e-4")
        number("model.weight_decay", weight_decay, minimum=0, fix="give a weight decay >= 0 (0: none)")
        optimiser_class(optimizer)
        if isinstance(net, nn.Module):
            self.save_hyperparameters(ignore=["net"], logger=False)
            self.net = net
        else:
            if input_shape is None:
                raise ValueError("a network given as a config needs input_shape (the DataModule's input_shape)")
            net = _plain(net)
            self.save_hyperparameters(logger=False)
            self.hparams["net"], self.hparams["input_shape"] = net, list(input_shape)
            build = hydra.utils.instantiate({**net, "_partial_": True})
            self.net = build(input_shape=tuple(input_shape), n_outputs=1 if n_classes == 2 else n_classes)
        self.binary = n_classes == 2
        make_auc = (lambda: BinaryAUROC()) if self.binary else (lambda: MulticlassAUROC(n_classes, average=None))
        self.val_auc, self.test_auc = make_auc(), make_auc()
        self.test_scores: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        standardisers = [m for m in self.net.modules() if isinstance(m, Standardise)]
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if not standardisers or datamodule is None or not hasattr(datamodule, "input_statistics"):
            return
        statistics = datamodule.input_statistics()
        if statistics is not None:
            for module in standardisers:
                module.set_statistics(*(t.to(module.mean) for t in statistics))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities: of the signal class (binary, shape (n,)) or of each class (n, k)."""
        return torch.sigmoid(logits.squeeze(-1)) if self.binary else torch.softmax(logits, dim=-1)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.float())
        return F.cross_entropy(logits, y.long())

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self._loss(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", self._loss(logits, y), on_epoch=True, prog_bar=True, batch_size=len(y))
        self.val_auc.update(self.scores(logits), y.long())

    def on_validation_epoch_end(self):
        self._log_auc("val", self.val_auc)

    def test_step(self, batch, batch_idx):
        x, y = batch
        scores = self.scores(self(x))
        self.test_auc.update(scores, y.long())
        self.test_scores.append(scores.detach().cpu())

    def on_test_epoch_start(self):
        self.test_scores = []

    def on_test_epoch_end(self):
        self._log_auc("test", self.test_auc)

    def _log_auc(self, stage: str, metric) -> None:
        auc = metric.compute()
        metric.reset()
        if self.binary:
            self.log(f"{stage}/auc", auc, prog_bar=True)
            return
        for k, value in enumerate(auc):
            self.log(f"{stage}/auc_class{k}", value)
        self.log(f"{stage}/auc", auc.mean(), prog_bar=True)

    def configure_optimizers(self):
        """``model.optimizer`` (:func:`make_optimiser`; checkpoints from before the option load as adamw)."""
        return make_optimiser(self.hparams.optimizer, self.parameters(), lr=self.hparams.lr,
                              weight_decay=self.hparams.weight_decay)


OPTIMISERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


def optimiser_class(name: str) -> Callable[..., torch.optim.Optimizer]:
    """The optimiser ``model.optimizer`` names, or a ConfigError naming the choices."""
    if name not in OPTIMISERS:
        raise ConfigError(f"model.optimizer={name!r} is not an optimiser of dmlhc: choose one of "
                         f"{', '.join(OPTIMISERS)} (e.g. model.optimizer=adamw)")
    return OPTIMISERS[name]


def make_optimiser(name: str, parameters, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``adamw``: Adam with decoupled weight decay (each weight shrinks by lr * weight_decay per step, so
    with Adam's normalised steps no weight exceeds ~1 / weight_decay). ``adam``: Adam with the weight decay
    as an L2 penalty (weight_decay / 2 * |w|^2 added to the loss), whose weights settle where the loss's
    gradient balances the penalty. ``weight_decay=0``: plain Adam either way, the paper's. The update is torch's
    fused one where the parameters' device has it (a kernel per tensor: on a CPU a step of the grid's 180 stacked
    networks takes 4.4 instead of 29 ms; the same update to float rounding)."""
    parameters = list(parameters)
    fused = all(isinstance(p, torch.Tensor) and p.device.type in ("cpu", "cuda") for p in parameters)
    return optimiser_class(name)(parameters, lr=lr, weight_decay=weight_decay, fused=fused)


def _plain(config) -> dict:
    """A config (DictConfig or mapping) as plain, resolved data."""
    from omegaconf import DictConfig, OmegaConf

    return cast(dict, OmegaConf.to_container(config, resolve=True)) if isinstance(config, DictConfig) else dict(config)
