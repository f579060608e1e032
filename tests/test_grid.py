"""The Fig. 7 grid as an experiment: trainings through train.py -m, collection from MLflow, table and figure.

CI's guard of the headline result: in the quick grid (two benchmarks, a small and a medium S/sqrt(B),
B = 2000) every network must end within 0.02 of the likelihood-ratio optimum where that exceeds 0.6.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pythia
def test_quick_grid_reaches_the_optimum_and_is_collected(quick_grid):
    run, store, out = quick_grid.process, quick_grid.store, quick_grid.out  # python experiments/grid.py fig7_quick
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "auc_vs_snr.csv") as table:
        rows = list(csv.DictReader(table))
    assert [(r["signal"], float(r["snr"])) for r in rows] == [
        ("spin0_onshell", 0.447), ("spin0_onshell", 1.118), ("spin2_onshell", 0.447), ("spin2_onshell", 1.118)]
    for r in rows:
        network, optimum = float(r["test/auc"]), float(r["test/auc_optimal"])
        assert 0.5 <= network <= 1 and 0.5 <= optimum <= 1
        if optimum > 0.6:
            assert optimum - network <= 0.02, f"{r['signal']} snr={r['snr']}: network {network} vs optimum {optimum}"
    for signal in ("spin0_onshell", "spin2_onshell"):  # rising with S/sqrt(B)
        small, medium = (float(r["test/auc_optimal"]) for r in rows if r["signal"] == signal)
        assert medium > small
    assert (out / "auc_vs_snr.png").stat().st_size > 10_000
    assert "largest gap" in run.stdout
    # --jobs 2: one multirun per benchmark, side by side, each with its table; the samples made before them
    commands = [line for line in run.stdout.splitlines() if line.startswith("+ ")]
    assert [c.split()[-2:] for c in commands] == [["signal=spin0_onshell", "-m"], ["signal=spin2_onshell", "-m"]]
    jobs = sorted((quick_grid.folder / "outputs" / "multiruns").glob("*/*/results.csv"))
    statuses = []
    for path in jobs:
        with open(path) as table:
            statuses += [r["status"].split(", largest gap")[0] for r in csv.DictReader(table)]
    assert statuses == ["grid: 10 networks"] * 2

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("fig7_quick")
    summary = client.search_runs([experiment.experiment_id], "tags.`dmlhc.summary` = 'grid'")
    assert len(summary) == 1
    assert {a.path for a in client.list_artifacts(summary[0].info.run_id)} == {"auc_vs_snr.csv", "auc_vs_snr.png"}
    assert all(int(r["repeats"]) == 5 and float(r["test/auc_std"]) >= 0 for r in rows)  # trimmed mean +- std
    (seed,) = client.search_runs([experiment.experiment_id],
                                 f"tags.`mlflow.parentRunId` = '{rows[0]['run_id']}' and params.seed = '1'")
    steps = {key: client.get_metric_history(seed.info.run_id, key)[-1].step for key in ("test/auc", "test/auc_optimal")}
    assert steps["test/auc"] == steps["test/auc_optimal"]  # side by side in MLflow's charts


def test_grid_collect_only_without_runs_says_what_to_do(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "experiments" / "grid.py"), "fig7_quick", "--collect-only"],
                         cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"},
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "no MLflow experiment 'fig7_quick'" in run.stderr and "python experiments/grid.py fig7_quick" in run.stderr
    assert "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, str(ROOT / "experiments" / "cnn_vs_dnn.py"), "--collect-only"],
                         cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"},
                         capture_output=True, text=True)  # a study collected through grid.collect names its own script
    assert run.returncode == 1 and "python experiments/cnn_vs_dnn.py cnn_vs_dnn" in run.stderr, run.stderr


def test_experiment_configs_hold_the_papers_grid_and_its_exact_settings():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        grid = compose("train", overrides=["experiment=fig7"], return_hydra_config=True)
        paper = compose("train", overrides=["experiment=paper_table2"])
    params = grid.hydra.sweeper.params
    assert len(params.signal.split(",")) == 10 and len(grid.grid.snr) == 18 and grid.repeats == 10
    assert grid.background.n_background == 50_000 and grid.logger.mlflow.experiment_name == "fig7"
    assert not paper.architecture.standardise and not paper.architecture.skip
    assert (paper.model.lr, paper.model.weight_decay) == (1e-4, 0.0)
    callbacks = paper.callbacks
    assert (callbacks.early_stopping.monitor, callbacks.model_checkpoint.monitor) == ("val/loss", "val/loss")
    assert callbacks.ema is None and grid.callbacks.ema.decay == 0.999  # the paper's trains without averaging
    assert paper.data.dataset == "paper" and paper.data.batch_size == 128


def test_jobs_side_by_side_compose_every_job_of_a_swept_override(monkeypatch):
    # grid.py / cnn_vs_dnn.py --jobs 2 -- snr=1.118,2.236 made each benchmark's samples from a config composed with
    # the sweep itself, which Hydra refuses ("Ambiguous value for argument"); each job is composed instead
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    from _common import composed, sweep_jobs, swept_signals

    jobs = sweep_jobs(["snr=1.118,2.236", "signal=spin1_onshell", "seed=range(1,3)", "trainer=cpu"])
    assert jobs == [[f"snr={snr}", "signal=spin1_onshell", f"seed={seed}", "trainer=cpu"]
                    for snr in ("1.118", "2.236") for seed in (1, 2)]  # Hydra's basic sweeper's order
    configs = [composed("cnn_vs_dnn", job) for job in jobs[::3]]
    assert [(cfg.snr, cfg.seed) for cfg in configs] == [(1.118, 1), (2.236, 2)]
    assert sweep_jobs([]) == [[]] and sweep_jobs(["+x=choice(a,b)"]) == [["+x=a"], ["+x=b"]]
    assert swept_signals("fig7_quick", ["signal=choice(alp,spin0_onshell)"]) == ["alp", "spin0_onshell"]
    assert swept_signals("fig7_quick", ["signal=alp,spin1_onshell"]) == ["alp", "spin1_onshell"]


@pytest.mark.parametrize(("script", "override", "code", "says"), [
    (["grid.py", "fig7_quick"], "nonsense_key=3", 1,
     "train.py experiment=fig7_quick nonsense_key=3 -m failed (exit code 1"),  # Hydra's own message above it
    (["grid.py", "fig7_quick", "--jobs", "2"], "snr=[1,", 2,
     "dmlhc: configuration error: train.py overrides 'snr=[1, signal=spin0_onshell': no viable"),
    (["grid.py", "fig7_quick", "--jobs", "2"], "nonsense_key=1,2", 2, "Could not override 'nonsense_key'"),
    (["appendix.py", "--name", "appendix_quick"], "nonsense_key=1", 2,  # composed in the script: was a traceback
     "dmlhc: configuration error: train.py overrides"),
    (["model_vs_model.py", "--name", "model_vs_model_quick"], "nonsense_key=1", 1,
     "failed (exit code 1; its message above); a rerun trains the pairs still missing"),
])
def test_a_study_whose_training_cannot_run_ends_in_one_line(tmp_path, script, override, code, says):
    run = subprocess.run([sys.executable, str(ROOT / "experiments" / script[0]), *script[1:], "--out",
                          str(tmp_path / "out"), "--", override],
                         cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == code and says in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    store = tmp_path / "m.db"  # model_vs_model reads the store for pairs done before it trains
    assert not store.exists() or sqlite3.connect(store).execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
