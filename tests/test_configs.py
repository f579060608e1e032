"""Every option of every config group, and every experiment, composes and instantiates (as the
lightning-hydra-template's test_configs does): the DataModule (validated, nothing loaded), the Classifier with
its network, the callbacks, the logger (on a throw-away SQLite store) and the trainer."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning.pytorch as pl
import pytest
from hydra import compose, initialize_config_dir

from dmlhc.config import instantiate_callbacks
from dmlhc.data.datamodule import EnsembleDataModule
from dmlhc.models.classifier import Classifier
from dmlhc.tracking.progress import without_disabled_progress

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["signal", "background", "binning", "data", "architecture", "model", "callbacks", "logger", "trainer",
          "paths", "debug", "experiment", "hparams_search"]
SKIP = {("signal", "delphes"): "needs files of your own (tested with real files in test_train)",
        ("trainer", "gpu"): "needs a CUDA device", ("trainer", "ddp"): "tested as a real 2-process run in test_ddp"}
COMPATIBLE = {("architecture", "event_dnn"): ["model=event"], ("model", "event"): ["architecture=event_dnn"]}


def _options():
    for group in GROUPS:
        for path in sorted((CONF / group).glob("*.yaml")):
            option = path.stem
            marks = [pytest.mark.skip(reason=SKIP[group, option])] if (group, option) in SKIP else []
            yield pytest.param(group, option, id=f"{group}={option}", marks=marks)


def _compose(overrides: list[str]):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=job", *overrides], return_hydra_config=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.mark.parametrize("group,option", list(_options()))
def test_every_group_option_composes_and_instantiates(group, option, store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    cfg = _compose([f"{group}={option}", *COMPATIBLE.get((group, option), [])])
    datamodule = hydra.utils.instantiate(cfg.data)
    assert isinstance(datamodule, EnsembleDataModule) and datamodule.snr == cfg.snr
    assert datamodule.n_signal == round(cfg.snr * datamodule.n_background ** 0.5)
    model = hydra.utils.instantiate(cfg.model, input_shape=datamodule.input_shape, n_classes=datamodule.n_classes)
    assert isinstance(model, Classifier) and model.hparams.net["_target_"] == cfg.architecture._target_
    callbacks = instantiate_callbacks(cfg.callbacks)
    if group != "callbacks":
        averaged = set() if (group, option) == ("experiment", "paper_table2") else {"AveragedWeights"}
        assert {type(c).__name__ for c in callbacks} == {"ModelCheckpoint", "HistogramEarlyStopping", "OptunaPruning",
                                                         "ResultsReporter", "EpochProgressBar"} | averaged
    else:
        assert len(callbacks) == len(cfg.callbacks) >= 1
    logger = hydra.utils.instantiate(cfg.logger.mlflow)
    assert logger._tracking_uri == cfg.logger.mlflow.tracking_uri
    callbacks = without_disabled_progress(callbacks, cfg.trainer.get("enable_progress_bar", True))
    trainer = hydra.utils.instantiate(cfg.trainer, logger=logger, callbacks=callbacks, default_root_dir=str(tmp_path))
    assert isinstance(trainer, pl.Trainer)
    assert cfg.hydra.run.dir.startswith(cfg.paths.outputs)


def test_job_folders_are_unique_to_the_microsecond():
    cfg = _compose([])
    assert cfg.hydra.run.dir.endswith(cfg.hydra.run.dir.rsplit("/", 1)[1]) and "-" in cfg.hydra.run.dir[-7:]
    assert len(cfg.hydra.run.dir.rsplit("/", 1)[1]) == len("HH-MM-SS-ffffff")


@pytest.mark.parametrize("overrides, penalty", [
    ([], 0.03),                                                   # B = 50k: the value the Fig. 7 grid was made with
    (["background.n_background=2000"], 0.0012),                   # in proportion to B (fig7_quick's B)
    (["background.n_background=2000", "model.weight_decay=0.1"], 0.1),  # a value given is taken as it is
    (["experiment=paper_table2"], 0.0),                           # the paper's plain Adam
])
def test_the_default_l2_penalty_is_set_at_50k_and_scales_with_b(overrides, penalty):
    cfg = _compose(overrides)
    assert cfg.model.optimizer == "adam" and cfg.model.weight_decay == pytest.approx(penalty)


@pytest.mark.parametrize("overrides, min_epochs", [
    ([], 60),                          # early stopping cannot end a run while its val/auc is at noise level
    (["experiment=fig7"], 60),         # the grid the committed Fig. 7 table was made with
    (["experiment=paper_table2"], 1),  # the paper's rule: early stopping alone
])
def test_early_stopping_waits_for_min_epochs_except_in_the_papers_settings(overrides, min_epochs):
    assert _compose(overrides).trainer.min_epochs == min_epochs


def test_a_job_flushes_denormal_floats_to_zero():
    """prepare_process (every train/eval job) flushes denormals: Adam's moments of weights no histogram reaches decay
    into them and would slow every step ~20x (dmlhc.config.prepare_process)."""
    import torch
    from omegaconf import OmegaConf

    from dmlhc.config import prepare_process

    denormal = torch.tensor([1e-39])
    try:
        torch.set_flush_denormal(False)
        assert float(denormal * 1.0) != 0.0  # kept without the flush
        prepare_process(OmegaConf.create({"torch_threads": None}))
        assert float(denormal * 1.0) == 0.0
    finally:
        torch.set_flush_denormal(True)
