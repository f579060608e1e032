"""LightningModules: binary (signal + SM vs SM-only, model vs model) and multiclass.

The network is injected (``architectures``); the module owns the loss, the
optimiser and the metrics. Before fitting, a network with a fixed input
standardisation gets its per-bin mean and std from the DataModule
(``input_statistics``); they are buffers, so checkpoints carry them. Metrics:
``val/loss``, ``val/auc`` and ``test/auc`` (tie-aware
torchmetrics AUROC; one-vs-rest per class and macro average for multiclass). Test
scores and labels are kept for the plots of ``tracking``.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import BinaryAUROC, MulticlassAUROC

from dmlhc.models.architectures import Standardise


class Classifier(pl.LightningModule):
    """Trains ``net`` with Adam(W); binary (``n_classes == 2``, one logit) or multiclass (softmax)."""

    def __init__(self, net: nn.Module, n_classes: int = 2, lr: float = 1e-4, weight_decay: float = 0.0):
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.binary = n_classes == 2
        make_auc = (lambda: BinaryAUROC()) if self.binary else (lambda: MulticlassAUROC(n_classes, average=None))
        self.val_auc, self.test_auc = make_auc(), make_auc()
        self.test_scores: list[torch.Tensor] = []
        self.test_labels: list[torch.Tensor] = []

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
        self.test_labels.append(y.detach().cpu())

    def on_test_epoch_start(self):
        self.test_scores, self.test_labels = [], []

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
        """Adam with decoupled weight decay (AdamW; ``weight_decay=0`` is plain Adam, the paper's)."""
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
