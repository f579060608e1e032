"""Studies 7 and 8 (experiments/transfer.py) on the networks of the quick Fig. 7 grid (the session's ``quick_grid``,
B = 2000): every network re-tested by eval.py at another S/sqrt(B) or on another model, collected into a table, a
figure and a summary run. A network tested at its own training point must give exactly what its run reported (same
test set), and no network may beat the likelihood-ratio optimum by more than its spread."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = ("spin0_onshell", "spin2_onshell")


def transfer(quick_grid, cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``python experiments/transfer.py ARGS --source fig7_quick`` on the quick grid's store; its table's rows."""
    out = cwd / "results"
    run = subprocess.run([sys.executable, str(ROOT / "experiments" / "transfer.py"), *args, "--source", "fig7_quick",
                          "--out", str(out)], cwd=cwd, env={**os.environ, "MLFLOW_TRACKING_URI": quick_grid.store},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "fig7_quick.csv") as table:
        rows = [{k: v if k.endswith(("signal", "run")) or k == "run_id" else float(v) for k, v in r.items()}
                for r in csv.DictReader(table)]
    return run, rows


def check_common(quick_grid, study: str, rows: list[dict], cwd: Path) -> mlflow.MlflowClient:
    """Sane AUCs, no network above the optimum by more than 0.02 + its spread, and the runs in MLflow: one test
    run per row tagged with its source (the seed-1 network of its point), and the summary run with the files."""
    for r in rows:
        assert 0.5 <= r["test/auc"] <= 1 and 0.5 <= r["test/auc_optimal"] <= 1, r
        assert r["test/auc"] <= r["test/auc_optimal"] + 0.02 + r["test/auc_optimal_std"], r
    client = mlflow.MlflowClient(quick_grid.store)
    for r in rows:
        test, source = client.get_run(r["run_id"]), client.get_run(r["source_run"])
        assert test.data.tags["dmlhc.source_run"] == source.info.run_id
        assert (test.data.params["signal"], float(test.data.params["snr"])) == (r["test_signal"], r["test_snr"])
        assert source.data.params["seed"] == "1" and source.data.tags["dmlhc.repeat"] == "child"
        assert (source.data.params["signal"], float(source.data.params["snr"])) == (r["train_signal"], r["train_snr"])
        if (r["train_signal"], r["train_snr"]) == (r["test_signal"], r["test_snr"]):  # the same test set: same AUC
            assert test.data.metrics["test/auc"] == pytest.approx(source.data.metrics["test/auc"], abs=1e-6)
    experiment = client.get_experiment_by_name(study)
    (summary,) = client.search_runs([experiment.experiment_id], f"tags.`dmlhc.summary` = '{study}'")
    assert {a.path for a in client.list_artifacts(summary.info.run_id)} == {"fig7_quick.csv", "fig7_quick.png"}
    assert (cwd / "results" / "fig7_quick.png").stat().st_size > 10_000
    return client


@pytest.mark.pythia
def test_wrong_snr_tests_every_network_at_one_snr_and_a_rerun_only_collects(quick_grid, tmp_path):
    run, rows = transfer(quick_grid, tmp_path, "wrong_snr", "--test-snr", "0.447")
    assert [(r["train_signal"], r["train_snr"], r["test_signal"], r["test_snr"]) for r in rows] == [
        (signal, train, signal, 0.447) for signal in SIGNALS for train in (0.447, 1.118)]
    check_common(quick_grid, "wrong_snr", rows, tmp_path)
    for r in rows:
        matched = next(m for m in rows if m["train_snr"] == 0.447 and m["train_signal"] == r["test_signal"])
        assert r["test/auc_matched"] == matched["test/auc"]
        assert r["test/auc_optimal"] == matched["test/auc_optimal"]  # one test set per benchmark
        if r["train_snr"] == 1.118:  # trained where the classes differ more: no better than the optimum here
            assert r["test/auc"] <= r["test/auc_optimal"] + r["test/auc_optimal_std"], r
            assert r["source/auc"] > r["test/auc"] + 0.1  # its own, easier, test set
    assert "4 tests, 0 already in 'wrong_snr', 4 to run" in run.stdout

    again, same = transfer(quick_grid, tmp_path, "wrong_snr", "--test-snr", "0.447")
    assert "4 tests, 4 already in 'wrong_snr', 0 to run" in again.stdout and "eval.py" not in again.stdout
    assert [r["run_id"] for r in same] == [r["run_id"] for r in rows]


@pytest.mark.pythia
def test_wrong_model_tests_every_network_on_every_model(quick_grid, tmp_path):
    _, rows = transfer(quick_grid, tmp_path, "wrong_model", "--snr", "1.118", "--signals", ",".join(SIGNALS))
    assert [(r["train_signal"], r["test_signal"]) for r in rows] == [(a, b) for b in SIGNALS for a in SIGNALS]
    assert all(r["train_snr"] == r["test_snr"] == 1.118 for r in rows)
    client = check_common(quick_grid, "wrong_model", rows, tmp_path)
    for r in rows:
        own = next(m for m in rows if m["train_signal"] == m["test_signal"] == r["test_signal"])
        assert r["test/auc_matched"] == own["test/auc"]
        assert r["test/auc_optimal"] == own["test/auc_optimal"]  # the test model's test set, whoever is tested
        assert client.get_run(r["run_id"]).info.run_name == (f"{r['train_signal']}_snr1.118_seed1_on_"
                                                               f"{r['test_signal']}_snr1.118")
    optima = {r["test_signal"]: r["test/auc_optimal"] for r in rows}
    assert optima[SIGNALS[0]] != optima[SIGNALS[1]]


def test_wrong_snr_can_test_only_the_networks_of_some_training_points():
    sys.path.insert(0, str(ROOT / "experiments"))
    from transfer import Network, planned_tests

    networks = [Network(signal, snr, 1, f"{signal}{snr}", 0.6, 0.6) for signal in SIGNALS for snr in (0.447, 1.118)]
    every = planned_tests("wrong_snr", networks, None, [0.224])
    assert [(t.network.signal, t.network.snr, t.snr) for t in every] == [
        (signal, snr, 0.224) for signal in SIGNALS for snr in (0.447, 1.118)]
    some = planned_tests("wrong_snr", networks, ["spin2_onshell"], [0.224, 2.236], train_snrs=[1.118])
    assert [(t.network.signal, t.network.snr, t.snr) for t in some] == [("spin2_onshell", 1.118, 0.224),
                                                                        ("spin2_onshell", 1.118, 2.236)]
