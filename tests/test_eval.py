"""``python eval.py``: re-testing a trained run from MLflow (its config and checkpoint artifacts) or from a checkpoint
file, as a new run; real train.py / eval.py subprocesses, a real SQLite store, the real generator."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dmlhc.errors import ConfigError
from dmlhc.eval import command_line_keys, evaluate, restore

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ["signal=spin1_onshell", "snr=3", "debug=smoke"]


def _python(script: str, *args: str, cwd: Path, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = os.environ | ({"DMLHC_CACHE": str(cache)} if cache else {})
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, session_cache):
    """A smoke training in a fresh directory: (directory, its result.json)."""
    cwd = tmp_path_factory.mktemp("eval")
    run = _python("train.py", *TRAINING, cwd=cwd, cache=session_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    (result,) = (cwd / "outputs" / "runs").glob("*/*/result.json")
    return cwd, json.loads(result.read_text())


def _run(cwd: Path, run_id: str):
    client = mlflow.MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    return client, client.get_run(run_id)


def _eval_result(cwd: Path, run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stderr[-3000:]
    (result,) = (cwd / "outputs" / "evals").glob("*/*/result.json")
    data = json.loads(result.read_text())
    shutil.rmtree(cwd / "outputs" / "evals")  # the next test's eval finds only its own
    return data


@pytest.mark.pythia
def test_eval_by_run_id_reproduces_the_test_auc_after_the_outputs_are_deleted(trained, session_cache):
    cwd, training = trained
    shutil.rmtree(cwd / "outputs")  # config and checkpoint come from the MLflow run's artifacts
    run = _python("eval.py", f"run_id={training['run_id']}", cwd=cwd, cache=session_cache)
    result = _eval_result(cwd, run)
    client, evaluation = _run(cwd, result["run_id"])
    _, source = _run(cwd, training["run_id"])
    assert evaluation.data.tags["dmlhc.source_run"] == training["run_id"]
    assert evaluation.info.experiment_id == source.info.experiment_id  # beside the run it tests
    assert evaluation.info.run_name == "binary_spin1_onshell_snr3_dnn_seed1_eval"
    # Same checkpoint, same test histograms (data_seed): the same scores, so the same AUC up to float rounding.
    assert evaluation.data.metrics["test/auc"] == pytest.approx(source.data.metrics["test/auc"], abs=1e-6)
    assert evaluation.data.metrics["test/auc_optimal"] == pytest.approx(source.data.metrics["test/auc_optimal"],
                                                                        abs=1e-6)
    assert evaluation.data.params["n_signal"] == "134" and evaluation.data.params["data.n_test"] == "1000"
    assert "plots/roc.png" in {a.path for a in client.list_artifacts(result["run_id"], "plots")}
    assert f"run {result['run_id']} (tested the checkpoint of run {training['run_id']})" in run.stdout
    assert f"test/auc          {result['test/auc']:.4f}" in run.stdout


@pytest.mark.pythia
def test_eval_with_another_data_seed_tests_on_other_ensembles(trained, session_cache):
    cwd, training = trained
    run = _python("eval.py", f"run_id={training['run_id']}", "data.data_seed=5", cwd=cwd, cache=session_cache)
    result = _eval_result(cwd, run)
    _, evaluation = _run(cwd, result["run_id"])
    assert evaluation.data.params["data.data_seed"] == "5" and evaluation.data.params["snr"] == "3.0"
    # Other 1000 test histograms: another AUC, within their noise (~0.01 at AUC 0.88) of the training's.
    assert result["test/auc"] != training["test/auc"] and abs(result["test/auc"] - training["test/auc"]) < 0.05


@pytest.mark.pythia
def test_eval_of_a_checkpoint_file_with_the_same_data_settings(trained, session_cache):
    cwd, training = trained
    client, _ = _run(cwd, training["run_id"])
    checkpoint = client.download_artifacts(training["run_id"], "checkpoints/best.ckpt", str(cwd))
    run = _python("eval.py", f"ckpt_path={checkpoint}", *TRAINING, cwd=cwd, cache=session_cache)
    result = _eval_result(cwd, run)
    assert result["test/auc"] == pytest.approx(training["test/auc"], abs=1e-6)
    assert result["architecture"] == "dnn" and result["experiment"] == "debug"


def test_eval_py_without_a_checkpoint_is_a_configuration_error(tmp_path):
    run = _python("eval.py", cwd=tmp_path)
    assert run.returncode == 2 and "dmlhc: configuration error: give run_id=<MLflow run id>" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("args,message", [
    (["run_id=abc", "ckpt_path=x.ckpt"], "give run_id=<MLflow run id>"),
    (["ckpt_path=missing.ckpt"], "ckpt_path=missing.ckpt: no such file"),
    (["run_id=0123456789abcdef"], "run_id=0123456789abcdef: no such run in sqlite:///"),
])
def test_eval_needs_one_checkpoint_that_exists(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("eval", overrides=[*args, "paths.output_dir=job"])
    with pytest.raises(ConfigError, match=re.escape(message)):
        evaluate(cfg, args)


def test_restore_keeps_the_training_settings_but_those_on_the_command_line():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        training = compose("train", overrides=["debug=smoke", "snr=3", "signal=spin2_onshell", "binning.n_pt=12",
                                               "architecture=cnn", "paths.output_dir=job"])
        given = ["run_id=abc", "data.data_seed=7", "signal.files=[a.root]"]
        cfg = compose("eval", overrides=[*given, "paths.output_dir=job"])
    trained = OmegaConf.create(OmegaConf.to_yaml(training, resolve=True))  # as config.yaml stores it
    restored = restore(cfg, trained, command_line_keys(given))
    assert restored.snr == restored.data.snr == 3 and restored.seed == restored.data.seed == 1
    assert restored.binning.n_pt == restored.data.binning.n_pt == 12  # references follow the restored values
    assert restored.model.net._target_.endswith("HistogramCNN") and restored.data.n_test == 1000
    assert restored.signal.benchmark == "spin2_onshell" and restored.data.signal.files == ["a.root"]
    assert restored.data.data_seed == 7 and restored.run_id == "abc"
    assert restored.logger.mlflow.experiment_name == "binary"  # not a data setting: eval's own


def test_eval_py_help_shows_its_usage(tmp_path):
    run = _python("eval.py", "--help", cwd=tmp_path)
    assert run.returncode == 0 and "python eval.py run_id=<id> data.data_seed=7" in run.stdout
    assert "== Configuration groups ==" in run.stdout and "signal: alp" in run.stdout


@pytest.mark.pythia
def test_a_checkpoint_holds_the_averaged_weights_that_the_run_tested(trained):
    """Weight averaging is in the default callbacks: the checkpoint's state_dict is the averaged network (the raw
    weights beside it), the one the run validated and tested, which eval.py loads (the test above: same AUC)."""
    cwd, training = trained
    client, _ = _run(cwd, training["run_id"])
    checkpoint = client.download_artifacts(training["run_id"], "checkpoints/best.ckpt", str(cwd))
    saved = torch.load(checkpoint, weights_only=False)
    raw = saved["current_model_state"]
    assert set(raw) == set(saved["state_dict"])
    assert any(not torch.equal(raw[k], saved["state_dict"][k]) for k in raw)  # averaged != last weights


def test_averaged_weights_warn_when_training_is_shorter_than_the_average(caplog):
    """A run shorter than the average's span (1 / (1 - decay) steps) tests weights still mostly initial: a warning
    names a decay that fits, and a decay outside [0, 1) is a configuration error."""
    import lightning.pytorch as pl

    from dmlhc.callbacks import AveragedWeights
    from dmlhc.errors import ConfigError

    class Line(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.w - 1).pow(2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(decay: float) -> float:
        model = Line()
        loader = torch.utils.data.DataLoader(torch.zeros(40, 1), batch_size=1)
        pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, callbacks=[AveragedWeights(decay=decay)],
                   accelerator="cpu").fit(model, loader)
        return float(model.w.detach())

    with caplog.at_level("WARNING", logger="dmlhc.callbacks"):
        assert fit(0.999) < 0.3  # 40 steps of a 1000-step average: near the first step's 0.2, far from 1
    assert "training took 40 steps, fewer than the 1000" in caplog.text and "callbacks.ema.decay=0.75" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="dmlhc.callbacks"):
        assert fit(0.75) > 0.9  # the suggested decay: the averaged network is the trained one
    assert "averaged weights" not in caplog.text
    with pytest.raises(ConfigError, match="callbacks.ema.decay=1.0"):
        AveragedWeights(decay=1.0)
