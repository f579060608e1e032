"""The training job end to end on CPU: real generator, real Lightning, a real SQLite MLflow store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from dmlhc.errors import ConfigError
from dmlhc.train import train

ROOT = Path(__file__).resolve().parents[1]


def _config(*overrides: str):
    """The smoke preset (conf/debug/smoke.yaml) with the job folder in the current (temporary) directory."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["debug=smoke", "paths.output_dir=job", *overrides])


def _runs(store: Path, experiment: str = "debug"):
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


@pytest.mark.pythia
def test_train_py_multirun_end_to_end_writes_complete_mlflow_runs(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), "signal=spin1_onshell", "snr=3,2", "debug=smoke",
                          "-m"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "litlogger" not in run.stderr + run.stdout and "LeafSpec" not in run.stderr  # the known noise is gone
    client, runs = _runs(tmp_path / "mlruns" / "mlflow.db")
    assert sorted(r.data.params["snr"] for r in runs) == ["2.0", "3.0"]  # one run per job, one experiment
    r = next(r for r in runs if r.data.params["snr"] == "3.0")
    params, metrics = r.data.params, r.data.metrics
    assert params["signal"] == "spin1_onshell" and float(params["snr"]) == 3.0
    assert params["n_background"] == "2000" and params["n_signal"] == "134"
    assert params["architecture"] == "HistogramDNN" and params["seed"] == "1" and "30x30 linear" in params["binning"]
    assert {"val/loss", "val/auc", "test/auc", "test/auc_optimal"} <= set(metrics)
    assert 0.6 < metrics["test/auc"] <= metrics["test/auc_optimal"] + 0.02  # learned something, not above the optimum
    assert 0.9 < metrics["test/auc_optimal"] <= 1.0  # S = 134 of B = 2000 spin-1 events: well separable
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "plots")}
    assert artifacts == {"plots/roc.png", "plots/outputs.png", "plots/example_histograms.png"}
    assert "config.yaml" in {a.path for a in client.list_artifacts(r.info.run_id)}
    assert any(k.startswith("data.pool_ratio/background/test") for k in params)  # N/B recorded
    assert 0.5 < float(params["data.selection_efficiency/background"]) <= 1.0
    assert params["logger.mlflow.tracking_uri"] == "sqlite:///mlruns/mlflow.db"  # what it used
    jobs = sorted(p.name for p in (tmp_path / "outputs" / "multiruns").glob("*/*"))
    assert len(jobs) == 1  # one sweep folder, one sub-folder per job
    assert len(list((tmp_path / "outputs" / "multiruns").glob("*/*/[01]"))) == 2


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    return tmp_path / "store.db"


@pytest.mark.pythia
def test_multiclass_run_logs_per_class_aucs_and_the_prediction_frequency(store):
    train(_config("model=multiclass", "data.benchmarks=[spin1_onshell,spin2_onshell]", "snr=3"))
    client, (r,) = _runs(store)
    assert {"test/auc_class0", "test/auc_class1", "test/auc_class2", "test/auc_optimal"} <= set(r.data.metrics)
    assert "plots/prediction_frequency.png" in {a.path for a in client.list_artifacts(r.info.run_id, "plots")}


@pytest.mark.pythia
def test_cnn_run(store):
    train(_config("architecture=cnn", "snr=3"))
    _, (r,) = _runs(store)
    assert r.data.params["architecture"] == "HistogramCNN"
    assert 0.6 < r.data.metrics["test/auc"] <= r.data.metrics["test/auc_optimal"] + 0.02


@pytest.mark.pythia
def test_event_level_run(store):
    train(_config("model=event", "architecture=event_dnn", "data.n_test=4000"))
    client, (r,) = _runs(store)
    # One event says little (paper: 0.57-0.78), but a harder spin-1 jet spectrum is visible event by event.
    assert 0.53 < r.data.metrics["test/auc"] <= r.data.metrics["test/auc_optimal"] + 0.02 < 0.9
    assert "plots/roc.png" in {a.path for a in client.list_artifacts(r.info.run_id, "plots")}


@pytest.mark.pythia
def test_repeats_make_a_parent_with_children_and_a_spread(store, caplog):
    """Fewer than 5 repeats: the trimmed statistic would keep one value (spread 0), so all are averaged, with a
    warning."""
    train(_config("repeats=3", "trainer.max_epochs=2", "snr=3"))
    _, runs = _runs(store)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.params["seed"] for c in children} == {"1", "2", "3"}
    aucs = [c.data.metrics["test/auc"] for c in children]
    assert parents[0].data.metrics["test/auc_mean"] == pytest.approx(np.mean(aucs))
    assert parents[0].data.metrics["test/auc_std"] == pytest.approx(np.std(aucs)) and np.std(aucs) > 0
    assert parents[0].data.tags["dmlhc.repeat_statistic"] == "mean and std of all repeats"
    assert "needs at least 5 repeats" in caplog.text


def test_same_seed_same_auc_on_cpu(store):
    """Reproducibility without Pythia: synthetic samples written as Delphes files."""
    from conftest import synthetic_sample

    from dmlhc.events.delphes import write_delphes

    sig = write_delphes(store.parent / "sig.root", synthetic_sample(20000, 1, 250.0))
    bkg = write_delphes(store.parent / "bkg.root", synthetic_sample(60000, 2, 100.0))
    overrides = ["signal=delphes", f"signal.files=[{sig}]", f"background.files=[{bkg}]", "trainer=cpu",
                 "trainer.max_epochs=2", "snr=2", "background.n_background=1000"]
    train(_config(*overrides))
    train(_config(*overrides))
    _, runs = _runs(store)
    assert len(runs) == 2 and runs[0].data.metrics["test/auc"] == runs[1].data.metrics["test/auc"]


@pytest.mark.parametrize("override,message", [
    ("snr=-1", "snr=-1"),
    ("signal.benchmark=spin3", "signal spin1_onshell.benchmark: unknown benchmark 'spin3'"),
    ("+binning.pt_range=[100,2000]", "binning.pt_range"),
    ("architecture=event_dnn", "use architecture=dnn or cnn with histogram tasks"),
    ("snr=500", "raise signal.events"),
    ("callbacks.early_stopping.monitor=val/acc", "monitor='val/acc'"),
    ("repeats=0", "repeats=0"),
])
def test_invalid_configuration_fails_before_any_work(override, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DMLHC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        train(_config(override))
    assert not (tmp_path / "cache").exists() and not (tmp_path / "mlruns").exists()  # nothing generated or opened


def test_model_vs_model_needs_two_different_benchmarks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="compare two different benchmarks"):
        train(_config("model=model_vs_model", "signal=spin1_onshell", "data.other=spin1_onshell"))


def test_train_py_reports_a_configuration_error_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), "snr=-0.5"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode == 2 and "configuration error: snr=-0.5" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "mlruns").exists()


def test_a_command_line_tracking_uri_beats_the_environment_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from_env.db")
    assert _config().logger.mlflow.tracking_uri == "sqlite:///from_env.db"
    assert _config("logger.mlflow.tracking_uri=sqlite:///cli.db").logger.mlflow.tracking_uri == "sqlite:///cli.db"


@pytest.mark.pythia
@pytest.mark.parametrize("overrides", [
    ["model=model_vs_model", "signal=spin2_onshell", "data.other=spin1_onshell"],
    ["model=multimodel", "data.benchmarks=[spin1_onshell,spin2_onshell]"],
])
def test_two_model_tasks(store, overrides):
    train(_config(*overrides, "snr=3", "trainer.max_epochs=2"))
    _, (r,) = _runs(store)
    assert r.data.params["task"] == overrides[0].split("=")[1]
    assert 0.55 < r.data.metrics["test/auc"] <= r.data.metrics["test/auc_optimal"] + 0.02
