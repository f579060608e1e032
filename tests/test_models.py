"""Networks, the LightningModule and the tracking helpers, on synthetic tensors (no Pythia)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dmlhc.models.architectures import EventDNN, HistogramCNN, HistogramDNN, Standardise
from dmlhc.models.classifier import Classifier
from dmlhc.tracking.store import flatten, trimmed_statistic


@pytest.mark.parametrize("make,shape,n_outputs", [
    (lambda: HistogramDNN((30, 30), 1), (4, 30, 30), 1), (lambda: HistogramCNN((30, 30), 8), (4, 30, 30), 8),
    (lambda: HistogramCNN((5, 5), 1), (4, 5, 5), 1), (lambda: EventDNN((3,), 2), (4, 3), 2)])
def test_networks_give_one_logit_per_output(make, shape, n_outputs):
    assert make()(torch.rand(shape)).shape == (4, n_outputs)


@pytest.mark.parametrize("make", [lambda: HistogramDNN((3,)), lambda: HistogramCNN((3,)), lambda: EventDNN((30, 30))])
def test_a_network_refuses_inputs_of_the_other_task(make):
    with pytest.raises(ValueError, match="use architecture="):
        make()


def test_paper_dnn_has_the_table_2_shape():
    net = HistogramDNN((30, 30), 1, standardise=False, skip=False)
    linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(900, 20), (20, 20), (20, 20), (20, 1)]
    assert sum(isinstance(m, torch.nn.Dropout) and m.p == 0.2 for m in net.modules()) == 3
    assert not any(isinstance(m, Standardise) for m in net.modules())


@pytest.mark.parametrize("make", [lambda: HistogramDNN((4, 5), 1), lambda: HistogramCNN((4, 5), 1)])
def test_default_networks_add_a_fixed_standardisation_and_a_linear_skip_path(make):
    net = make().eval()
    mean, std = torch.rand(20), torch.rand(20) + 0.5
    net.standardise.set_statistics(mean, std)
    x = torch.rand(3, 4, 5)
    assert torch.allclose(net.standardise(x.flatten(1)), (x.flatten(1) - mean) / std)
    body_only = net(x) - net.skip(net.standardise(x.flatten(1)))  # the skip path is linear in the inputs
    assert net.skip.in_features == 20 and torch.isfinite(body_only).all()
    restored = make()
    restored.load_state_dict(net.state_dict())  # the statistics are buffers: checkpoints carry them
    assert torch.equal(restored.standardise.mean, mean) and torch.equal(restored.standardise.std, std)
    with pytest.raises(ValueError, match="binning"):
        net.standardise.set_statistics(torch.zeros(21), torch.ones(21))


def test_cnn_pools_only_while_the_map_allows():
    assert HistogramCNN((3, 3), 1, depth=4)(torch.rand(2, 3, 3)).shape == (2, 1)


def _separable(n=512, classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.rand(n, 6, 6, generator=g)
    x[:, 0, 0] += 2.0 * y  # the class is written in one bin
    return x, y


@pytest.mark.parametrize("classes", [2, 3])
def test_classifier_learns_a_separable_problem(classes):
    pl.seed_everything(0)
    x, y = _separable(classes=classes)
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    module = Classifier(HistogramDNN((6, 6), 1 if classes == 2 else classes, dropout=0.0), n_classes=classes, lr=1e-2)
    trainer = pl.Trainer(max_epochs=15, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader, loader)
    result = trainer.test(module, loader, verbose=False)[0]
    assert result["test/auc"] > 0.95
    assert torch.cat(module.test_scores).shape[0] == len(y)
    if classes > 2:
        assert {f"test/auc_class{k}" for k in range(classes)} <= set(result)


def test_a_classifier_from_config_loads_from_its_checkpoint_alone(tmp_path):
    """The network is a config (the model group's net:), so the checkpoint rebuilds it without being given it."""
    pl.seed_everything(0)
    x, y = _separable()
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    net = {"_target_": "dmlhc.models.architectures.HistogramDNN", "_partial_": True, "depth": 2, "width": 8}
    module = Classifier(net, input_shape=(6, 6), n_classes=2, task="binary", lr=1e-2)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader, loader)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = Classifier.load_from_checkpoint(tmp_path / "model.ckpt").eval()
    assert loaded.hparams.task == "binary" and list(loaded.hparams.input_shape) == [6, 6]
    assert torch.equal(loaded(x[:16]), module.eval()(x[:16]))


def test_constant_scores_give_auc_one_half():
    """docs/method.md: a position-tie-breaking AUC called a constant network perfect."""
    from torchmetrics.classification import BinaryAUROC

    assert BinaryAUROC()(torch.full((100,), 0.3), torch.arange(100) % 2).item() == pytest.approx(0.5)


def test_trimmed_statistic_drops_extremes():
    assert trimmed_statistic([0.1, 0.5, 0.6, 0.7, 0.99]) == pytest.approx((0.6, np.std([0.5, 0.6, 0.7])))
    assert trimmed_statistic([0.7]) == (0.7, 0.0)
    assert trimmed_statistic([0.5, 0.6, 0.7]) == pytest.approx((0.6, np.std([0.5, 0.6, 0.7])))  # too few to trim


def test_flatten_nested_config():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x"}) == {"a.b": 1, "a.c": "[1, 2]", "d": "x"}
