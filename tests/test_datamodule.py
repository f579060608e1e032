"""The DataModule: batches per task on the device, seeds, paper split, checks, files, a Lightning fit."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
from conftest import synthetic_sample
from synthetic import synthetic_leading_jets

from dmlhc.data.datamodule import MIN_POOL_EVENTS, EnsembleDataModule
from dmlhc.errors import ConfigError, InputDataError
from dmlhc.events.delphes import write_delphes

N_EVENTS = 20_000


@pytest.fixture(scope="module")
def samples():
    return {
        "background": synthetic_leading_jets(N_EVENTS, seed=1),
        "hard": synthetic_leading_jets(N_EVENTS, pt_slope=250.0, eta_width=1.0, seed=2),
        "wide": synthetic_leading_jets(N_EVENTS, pt_slope=160.0, eta_width=2.0, seed=3),
    }


def make(samples, signals=("hard",), **options):
    defaults = dict(n_background=1000, snr=2.0, batch_size=64, steps_per_epoch=3, n_val=128, n_test=256, device="cpu")
    signal = {name: samples[name] for name in signals}
    dm = EnsembleDataModule(signal, samples["background"], **{**defaults, **options})
    dm.setup("fit")
    return dm


def first_batch(loader):
    return next(iter(loader))


@pytest.mark.parametrize("task, signals, classes, dtype", [
    ("binary", ["hard"], {0, 1}, torch.float32),
    ("multimodel", ["hard", "wide"], {0, 1}, torch.float32),
    ("multiclass", ["hard", "wide"], {0, 1, 2}, torch.int64),
    ("model_vs_model", ["hard", "wide"], {0, 1}, torch.float32),
])
def test_histogram_batches(samples, task, signals, classes, dtype):
    dm = make(samples, signals, task=task)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = first_batch(loader)
        assert x.shape == (64, 30, 30) and x.dtype == torch.float32 and x.device == torch.device("cpu")
        assert y.shape == (64,) and y.dtype == dtype and set(y.tolist()) == classes
        assert torch.allclose(x.amax(dim=(1, 2)), torch.ones(64))  # normalised by the maximum
    assert len(dm.train_dataloader()) == 3 and len(list(dm.train_dataloader())) == 3
    assert torch.all(dm.test_counts.sum(dim=1) == 1000 + dm.n_signal)  # raw counts kept for the optimum
    assert dm.test_histograms.shape == (256, 30, 30) and dm.sets["test"].y.shape == (256,)


def test_event_batches(samples):
    dm = make(samples, task="event", batch_size=100, n_val=500, n_test=1000)
    x, y = first_batch(dm.train_dataloader())
    assert x.shape == (100, 3) and x.dtype == torch.float32 and y.dtype == torch.float32
    assert set(y.tolist()) == {0.0, 1.0}
    assert abs(dm.test_histograms.mean()) < 0.3 and abs(dm.test_histograms.std() - 1) < 0.3  # standardised
    assert 0.55 < dm.optimal_auc().auc < 0.95  # single events separate weakly


@pytest.mark.parametrize("draw_ahead", [1, 2])
def test_batches_are_fresh_every_step_and_reproducible(samples, draw_ahead):
    first, again = make(samples, seed=1, draw_ahead=draw_ahead), make(samples, seed=1, draw_ahead=draw_ahead)
    loader = first.train_dataloader()
    batches = [x for _ in range(2) for x, _ in loader]  # two epochs of 3 steps
    assert len(batches) == 6 and len({x.sum().item() for x in batches}) == 6
    again_loader = again.train_dataloader()
    assert all(torch.equal(a, b) for a, (b, _) in zip(batches, [*again_loader, *again_loader]))
    assert not torch.equal(batches[0], first_batch(make(samples, seed=2).train_dataloader())[0])


def test_val_and_test_sets_are_fixed_by_the_data_seed(samples):
    reference = make(samples, seed=1, data_seed=0)
    assert torch.equal(reference.test_counts, make(samples, seed=2, data_seed=0).test_counts)
    assert not torch.equal(reference.test_counts, make(samples, seed=1, data_seed=1).test_counts)
    assert not torch.equal(reference.sets["val"].raw, reference.sets["test"].raw)


def test_paper_mode_splits_fixed_histograms_64_16_20(samples):
    dm = make(samples, dataset="paper", paper_histograms=500)
    assert {split: len(s) for split, s in dm.sets.items()} == {"train": 640, "val": 160, "test": 200}
    epoch = torch.cat([y for _, y in dm.train_dataloader()])
    assert len(epoch) == 640 and epoch.sum() == 320
    loader = dm.train_dataloader()  # Lightning makes it once per fit and iterates it once per epoch
    x1, x2 = first_batch(loader)[0], first_batch(loader)[0]
    assert not torch.equal(x1, x2)  # reshuffled every epoch
    assert torch.equal(first_batch(dm.train_dataloader())[0], x1)  # a new fit with the same seed starts the same


def test_optimal_auc_and_summary(samples):
    dm = make(samples, snr=1.0)
    result = dm.optimal_auc(n_bootstrap=4)
    assert 0.6 < result.auc < 1.0 and result.std > 0
    larger = dm.optimal_auc(estimate_from=("train", "val"))
    assert abs(larger.auc - result.auc) < 0.05
    with pytest.raises(ValueError, match="estimate_from"):
        dm.optimal_auc(estimate_from=("train", "test"))
    summary = dm.summary()
    assert summary["n_signal"] == 32 and summary["pool_ratio/background/train"] > 5
    assert 0.5 < summary["selection_efficiency/background"] <= 1.0  # some toy jets fall outside the cuts
    assert summary["selection_efficiency/background"] < 1.0
    assert result.scores.shape == (len(dm.sets["test"]),)  # the statistic itself, for the ROC curve


def test_poisson_test_sets(samples):
    dm = make(samples, eval_mode="poisson")
    totals = dm.test_counts.sum(dim=1)
    assert totals.std() > 5 and abs(totals.mean() - 1000 - dm.n_signal) < 10


@pytest.mark.parametrize("options, keys", [
    (dict(snr=-1.0), ["snr"]),
    (dict(snr=float("nan")), ["snr=nan", "finite number"]),
    (dict(snr="abc"), ["snr='abc'"]),
    (dict(n_background=2.5), ["n_background=2.5", "integer"]),
    (dict(steps_per_epoch=0), ["steps_per_epoch=0"]),
    (dict(task="regression"), ["task"]),
    (dict(mode="bootstrap"), ["mode"]),
    (dict(normalisation="l1"), ["normalisation"]),
    (dict(batch_size=1), ["batch_size"]),
    (dict(task="multiclass"), ["task='multiclass'", "at least 2", "model=binary"]),
    (dict(binning={"eta_range": (-5.0, 5.0)}), ["binning.eta_range", "cuts.abs_eta_max"]),
    (dict(task="event", mode="poisson"), ["mode"]),
])
def test_bad_arguments_fail_at_once_naming_the_key(samples, options, keys):
    with pytest.raises(ValueError) as error:
        EnsembleDataModule(samples["hard"], samples["background"], device="cpu", **options)
    assert all(key in str(error.value) for key in keys), str(error.value)


@pytest.mark.parametrize("mode", ["exact", "multinomial", "poisson"])
def test_more_signal_events_than_the_pool_holds_is_refused_in_every_mode(samples, mode):
    """Multinomial or Poisson draws from a pool smaller than one histogram's events would repeat the same events in
    every histogram: refused as exact draws are, and the fix offered is never another sampling mode."""
    small = {"pt": samples["hard"]["pt"][:2000], "eta": samples["hard"]["eta"][:2000]}  # train pool ~1200 events
    dm = EnsembleDataModule(small, samples["background"], n_background=1000, snr=50.0, mode=mode, device="cpu")
    with pytest.raises(InputDataError, match=r"snr=50, n_background=1000 .* 1581 events of signal 'signal0'.* train "
                                             r"pool holds only 1199 .*lower snr or n_background") as error:
        dm.setup()
    assert "multinomial" not in str(error.value)
    dm = EnsembleDataModule(small, samples["background"], n_background=1000, snr=10.0, mode=mode, device="cpu")
    dm.setup()  # S = 316: the fix offered (a lower snr) gives pools that follow the rule
    assert dm.n_signal == 316 and 1 < dm.summary()["pool_ratio/signal0/test"] < 2  # thin: kept, with a warning


def test_a_pool_of_a_few_signal_events_is_refused_whatever_s(samples):
    """The issue's case: a 10-event signal file with multinomial draws gave a test pool of 2 events and an AUC above
    the optimum. A pool needs at least MIN_POOL_EVENTS distinct events even when S is smaller."""
    tiny = {"pt": samples["hard"]["pt"][:10], "eta": samples["hard"]["eta"][:10]}
    dm = EnsembleDataModule(tiny, samples["background"], n_background=100, snr=0.2, mode="multinomial", device="cpu")
    assert dm.n_signal == 2
    with pytest.raises(InputDataError, match=rf"train pool holds only \d after the cuts; .*{MIN_POOL_EVENTS}\) "
                                             r"distinct events.*; give a larger signal sample$"):
        dm.setup()


def test_snr_zero_is_a_null_run_and_a_positive_snr_rounding_to_no_signal_is_refused(samples, caplog):
    with pytest.raises(ConfigError, match=r"snr=0.01, n_background=1000: .* = 0 signal events .*set snr=0"):
        EnsembleDataModule(samples["hard"], samples["background"], n_background=1000, snr=0.01, device="cpu")
    with caplog.at_level(logging.WARNING, logger="dmlhc.data.datamodule"):
        dm = make(samples, snr=0.0)
    assert dm.n_signal == 0 and "NULL RUN" in caplog.text


def test_more_background_than_the_pool_holds(samples):
    with pytest.raises(ValueError, match="n_background=20000.*background sample"):
        make(samples, n_background=20_000)


def test_samples_from_delphes_files(tmp_path):
    background = write_delphes(tmp_path / "sm.root", synthetic_sample(3000, seed=5))
    signal = write_delphes(tmp_path / "spin2_onshell.root", synthetic_sample(3000, seed=6, hardness=300.0))
    dm = EnsembleDataModule([signal], background, n_background=200, snr=2.0, batch_size=16, n_val=16, n_test=32,
                            device="cpu")
    dm.setup()
    assert list(dm.pools) == ["background", "spin2_onshell"]
    assert first_batch(dm.train_dataloader())[0].shape == (16, 30, 30)


class _TinyClassifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(900, 1))

    def training_step(self, batch, _):
        x, y = batch
        assert x.device == self.device
        return torch.nn.functional.binary_cross_entropy_with_logits(self.net(x).squeeze(1), y)

    def validation_step(self, batch, _):
        self.log("val/loss", self.training_step(batch, _))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def test_a_lightning_trainer_fits_on_the_stream(samples):
    dm = EnsembleDataModule(samples["hard"], samples["background"], n_background=1000, snr=2.0, batch_size=32,
                            steps_per_epoch=4, n_val=64, n_test=64, device="auto")
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_TinyClassifier(), datamodule=dm)
    assert trainer.global_step == 8 and dm.device == torch.device("cpu")
    assert "val/loss" in trainer.callback_metrics


def test_input_statistics_are_fixed_by_the_data_seed_and_floored_at_one_count(samples):
    dm = make(samples)
    mean, std = dm.input_statistics(n=2048)
    assert mean.shape == std.shape == (900,) and torch.all(std > 0)
    again_mean, _ = make(samples, seed=7).input_statistics(n=2048)  # another training seed: the same statistics
    assert torch.equal(mean, again_mean)
    one_count = 1.0 / dm.test_counts.amax(dim=1).mean()  # max normalisation: one count is 1/max
    assert float(std.min()) == pytest.approx(float(one_count), rel=0.1)
    z = (dm.sets["val"].x.flatten(1) - mean) / std  # held-out histograms come out standardised
    assert abs(float(z.mean())) < 0.1 and 0.3 < float(z.std()) < 1.3  # floored and empty bins: below 1
    assert make(samples, task="event", batch_size=100, n_val=500, n_test=500).input_statistics() is None


def test_a_fit_sets_the_networks_standardisation_from_the_datamodule(samples):
    from dmlhc.models.architectures import HistogramDNN
    from dmlhc.models.classifier import Classifier

    dm = make(samples)
    module = Classifier(HistogramDNN((30, 30), 1))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    mean, std = dm.input_statistics()
    assert torch.allclose(module.net.standardise.mean, mean) and torch.allclose(module.net.standardise.std, std)
