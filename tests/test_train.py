"""The training job end to end on CPU: real generator, real Lightning, a real SQLite MLflow store."""

from __future__ import annotations

import json
import os
import re
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


@pytest.fixture(scope="module")
def multirun(tmp_path_factory, session_cache):
    """``python train.py snr=3,2 -m`` (smoke preset, progress on, stdout not a terminal) in a fresh directory:
    (directory, finished process, MLflow client, runs by snr). Run once for the tests below."""
    cwd = tmp_path_factory.mktemp("multirun")
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), "signal=spin1_onshell", "snr=3,2", "debug=smoke",
                          "trainer.enable_progress_bar=true", "-m"], cwd=cwd, capture_output=True, text=True,
                         env=os.environ | {"DMLHC_CACHE": str(session_cache)})
    assert run.returncode == 0, run.stderr[-3000:]
    client, runs = _runs(cwd / "mlruns" / "mlflow.db")
    return cwd, run, client, {r.data.params["snr"]: r for r in runs}


@pytest.mark.pythia
def test_train_py_multirun_end_to_end_writes_complete_mlflow_runs(multirun):
    tmp_path, run, client, runs = multirun
    assert "litlogger" not in run.stderr + run.stdout and "LeafSpec" not in run.stderr  # the known noise is gone
    assert sorted(runs) == ["2.0", "3.0"]  # one run per job, one experiment
    r = runs["3.0"]
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
    assert 0.5 < float(params["data.selection_efficiency/background"]) <= 1.0
    assert params["logger.mlflow.tracking_uri"] == "sqlite:///mlruns/mlflow.db"  # what it used
    jobs = sorted(p.name for p in (tmp_path / "outputs" / "multiruns").glob("*/*"))
    assert len(jobs) == 1  # one sweep folder, one sub-folder per job
    assert len(list((tmp_path / "outputs" / "multiruns").glob("*/*/[01]"))) == 2


@pytest.mark.pythia
def test_every_job_ends_with_a_summary_of_its_run(multirun):
    cwd, run, _, runs = multirun
    summaries = run.stdout.split("dmlhc: run ")[1:]
    assert len(summaries) == 2
    for text in summaries:
        run_id = re.search(r"experiment 'debug', run (\w+)", text).group(1)
        r = next(r for r in runs.values() if r.info.run_id == run_id)  # the id printed is the store's
        assert text.startswith(f"'{r.info.run_name}' finished (4 epochs, best checkpoint at epoch ")
        assert f"test/auc          {r.data.metrics['test/auc']:.4f}" in text
        assert f"test/auc_optimal  {r.data.metrics['test/auc_optimal']:.4f} +- " in text
        output_dir = Path(re.search(r"outputs +(\S+)", text).group(1))
        assert json.loads((output_dir / "result.json").read_text())["run_id"] == run_id
        plots = re.search(r"plots +(\S+)/ (.+)", text)
        assert plots.group(2).split() == ["roc.png", "outputs.png", "example_histograms.png"]
        assert all((output_dir / plots.group(1) / name).is_file() for name in plots.group(2).split())
        assert "browse            mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db" in text


@pytest.mark.pythia
def test_a_multirun_ends_with_one_table_of_its_jobs(multirun):
    cwd, run, _, runs = multirun
    table = run.stdout[run.stdout.index("dmlhc: 2 jobs in "):].splitlines()
    assert table[1].split() == ["job", "task", "signal", "snr", "architecture", "seed", "test/auc",
                                "test/auc_optimal", "run_id"]
    rows = [line.split() for line in table[2:]]
    assert [row[:6] for row in rows] == [["0", "binary", "spin1_onshell", "3", "dnn", "1"],
                                         ["1", "binary", "spin1_onshell", "2", "dnn", "1"]]
    for row, snr in zip(rows, ("3.0", "2.0")):
        assert row[6] == f"{runs[snr].data.metrics['test/auc']:.4f}" and runs[snr].info.run_id.startswith(row[8])
    (sweep,) = (cwd / "outputs" / "multiruns").glob("*/*")
    assert len((sweep / "results.csv").read_text().splitlines()) == 3  # header and one line per job


@pytest.mark.pythia
def test_without_a_terminal_progress_is_one_line_per_epoch(multirun):
    _, run, _, _ = multirun
    epoch_lines = [line for line in run.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == [f"epoch {k}/4" for k in (1, 2, 3, 4)] * 2
    assert all("val/auc" in line and "train/loss" in line for line in epoch_lines)
    # No redrawn bars: the whole output of two jobs is a few KB (bars wrote ~20 KB per smoke job, 666 KB per
    # real one).
    assert len(run.stdout) + len(run.stderr) < 12_000 and "\r" not in run.stdout and "it/s" not in run.stdout


@pytest.mark.pythia
def test_run_names_say_what_differs(multirun):
    _, _, _, runs = multirun
    names = {snr: r.info.run_name for snr, r in runs.items()}
    assert names == {"3.0": "binary_spin1_onshell_snr3_dnn_seed1", "2.0": "binary_spin1_onshell_snr2_dnn_seed1"}


@pytest.mark.pythia
def test_params_record_each_setting_once_and_pool_keys_by_role(multirun):
    _, _, _, runs = multirun
    params = runs["3.0"].data.params
    assert not [k for k in params if "_partial_" in k or "_target_" in k or "_recursive_" in k]
    assert [k for k in params if k.endswith("lr")] == ["model.lr"]  # not again as model.net.* or data.*
    assert not [k for k in params if k.startswith(("model.net.", "data.signal.", "data.snr", "data.seed"))]
    assert params["architecture.width"] == "20" and params["background.n_background"] == "2000"
    # The signal's pools are "signal" whatever the benchmark, so the keys of runs of different benchmarks line up.
    assert {"data.pool/signal/test", "data.pool_ratio/signal/test", "data.selection_efficiency/signal",
            "data.pool_ratio/background/test"} <= set(params)
    assert not [k for k in params if "spin1_onshell" in k]


@pytest.mark.pythia
def test_the_best_checkpoint_is_an_artifact_with_its_epoch_and_objective(multirun):
    _, _, client, runs = multirun
    r = runs["3.0"]
    assert [a.path for a in client.list_artifacts(r.info.run_id, "checkpoints")] == ["checkpoints/best.ckpt"]
    assert Path(r.data.params["checkpoint"]).is_file() and r.data.params["checkpoint"].endswith(".ckpt")
    metrics = r.data.metrics
    history = [m.value for m in client.get_metric_history(r.info.run_id, "val/auc")][:4]  # then the re-validation
    assert metrics["epochs"] == 4 and "best_val/loss" in metrics
    # The checkpoint monitors val/auc (max): its epoch is the best one, and re-validating it gives that value.
    assert metrics["best_epoch"] == 1 + int(np.argmax(history))
    assert metrics["best_val/auc"] == pytest.approx(max(history), abs=1e-6)


def test_experiments_are_named_by_task_or_experiment_config():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        def experiment(*overrides: str) -> str:
            return compose("train", overrides=list(overrides)).logger.mlflow.experiment_name

        assert experiment() == "binary" and experiment("model=multiclass") == "multiclass"
        assert experiment("model=model_vs_model") == "model_vs_model" and experiment("model=event") == "event"
        assert experiment("experiment=paper_table2") == "paper_table2" and experiment("experiment=fig7") == "fig7"
        assert experiment("debug=smoke") == "debug"


@pytest.mark.parametrize("overrides,derived,name", [
    ([], {"task": "binary", "signal": "alp", "snr": 0.5}, "binary_alp_snr0.5_dnn_seed1"),
    (["model=model_vs_model", "signal=spin2_onshell", "data.other=spin1_onshell", "architecture=cnn", "seed=4"],
     {"task": "model_vs_model", "signal": "spin2_onshell", "snr": 1.0},
     "model_vs_model_spin2_onshell_vs_spin1_onshell_snr1_cnn_seed4"),
    (["model=multiclass"], {"task": "multiclass", "signal": "multiclass", "snr": 2.0},
     "multiclass_7benchmarks_snr2_dnn_seed1"),
    (["model=multimodel", "data.benchmarks=[alp,spin0_onshell]"], {"task": "multimodel", "signal": "multimodel",
                                                                  "snr": 1.0},
     "multimodel_alp+spin0_onshell_snr1_dnn_seed1"),
])
def test_run_names_from_task_benchmarks_snr_architecture_and_seed(overrides, derived, name):
    from dmlhc.tracking.runs import architecture_name, run_name

    cfg = _config(*overrides)
    assert run_name(cfg, derived, architecture_name(cfg, hydra_choice=False)) == name


def test_a_taken_run_name_gets_a_number_and_trials_share_their_study_run(tmp_path):
    from omegaconf import OmegaConf

    from dmlhc.tracking.runs import study_run, unique_run_name

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    logger = OmegaConf.create({"experiment_name": "e", "artifact_root": str(tmp_path / "artifacts")})
    client = mlflow.MlflowClient(uri)
    assert unique_run_name(uri, logger, "binary_alp_snr1_dnn_seed1") == "binary_alp_snr1_dnn_seed1"
    experiment_id = client.get_experiment_by_name("e").experiment_id
    for name in ("binary_alp_snr1_dnn_seed1", "binary_alp_snr1_dnn_seed1 (2)"):
        client.create_run(experiment_id, run_name=name)
    assert unique_run_name(uri, logger, "binary_alp_snr1_dnn_seed1") == "binary_alp_snr1_dnn_seed1 (3)"
    trial = OmegaConf.create({"study_name": "s", "number": 0, "storage": "postgresql://u:secret@host/db"})
    first, second = study_run(uri, logger, trial), study_run(uri, logger, trial)
    assert first == second  # one study run, the parent of every trial's run
    tags = client.get_run(first).data.tags
    assert tags["optuna.study"] == "s" and tags["optuna.summary"] == "true" and "secret" not in tags["optuna.storage"]


def test_train_py_help_shows_the_projects_usage(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode == 0
    assert "python train.py signal=spin2_onshell snr=1.0" in run.stdout and "python eval.py run_id=" in run.stdout
    assert "== Configuration groups ==" in run.stdout and "architecture: cnn, dnn" in run.stdout  # Hydra's listing


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
    assert parents[0].info.run_name == "binary_spin1_onshell_snr3_dnn_seeds1-3"
    assert {c.info.run_name for c in children} == {f"binary_spin1_onshell_snr3_dnn_seed{k}" for k in (1, 2, 3)}
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
    ("snr=500", "pool holds at most"),  # B + S and S exceed what the spec could hold, before generation
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
    train(_config(*overrides, "snr=3", "trainer.max_epochs=2", "callbacks.ema=null"))  # 30 steps: too few to average
    _, (r,) = _runs(store)
    assert r.data.params["task"] == overrides[0].split("=")[1]
    assert 0.55 < r.data.metrics["test/auc"] <= r.data.metrics["test/auc_optimal"] + 0.02


def test_the_summary_shows_no_password_and_the_table_a_job_without_result(tmp_path):
    from omegaconf import OmegaConf

    from dmlhc.tracking.summary import MultirunTable, job_summary, write_result

    result = {"run_id": "abc", "run_name": "binary_alp_snr1_dnn_seed1", "experiment": "binary", "task": "binary",
              "signal": "alp", "snr": 1.0, "architecture": "dnn", "seed": 1, "test/auc": 0.75,
              "test/auc_optimal": 0.8, "output_dir": str(tmp_path / "0"), "plots": [],
              "tracking_uri": "postgresql://dmlhc:s3cret@db:5432/mlflow"}
    text = job_summary(result)
    assert "s3cret" not in text and "postgresql://dmlhc:***@db:5432/mlflow" in text and "0.7500" in text
    write_result(tmp_path / "0", result)
    (tmp_path / "1" / ".hydra").mkdir(parents=True)  # a job that failed before writing its result
    MultirunTable().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("0,binary,alp,1.0,dnn,1,0.75,0.8,abc")
    assert rows[2].startswith("1,") and "no result" in rows[2]
