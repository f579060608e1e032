"""Expected discovery significance (experiments/expected_z.py) of the networks of the quick Fig. 7 grid (the
session's ``quick_grid``, B = 2000): pseudo-experiments of every network and of its optimum, against the closed
forms for the same expected counts, into a table, a figure and a summary run."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[1]


def expected_z(quick_grid, out: Path) -> tuple[subprocess.CompletedProcess, str, list[dict]]:
    """``python experiments/expected_z.py --source fig7_quick`` for spin2_onshell on the quick grid's store: the run,
    its table's text and rows."""
    run = subprocess.run([sys.executable, str(ROOT / "experiments" / "expected_z.py"), "--source", "fig7_quick",
                          "--signals", "spin2_onshell", "--pseudo-experiments", "400", "--out", str(out)],
                         cwd=out.parent, env={**os.environ, "MLFLOW_TRACKING_URI": quick_grid.store},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    text = (out / "fig7_quick.csv").read_text()
    rows = [{k: v if k in ("signal", "run_id") else float(v) for k, v in r.items()}
            for r in csv.DictReader(text.splitlines())]
    return run, text, rows


@pytest.mark.pythia
def test_expected_z_of_every_network_beside_its_optimum_and_the_closed_forms(quick_grid, tmp_path):
    out = tmp_path / "results"
    run, text, rows = expected_z(quick_grid, out)
    assert [(r["signal"], r["snr"], r["n_background"], r["n_signal"]) for r in rows] == [
        ("spin2_onshell", 0.447, 2000, 20), ("spin2_onshell", 1.118, 2000, 50)]
    for r in rows:
        assert not r["z_network_bound"] and not r["z_optimum_bound"]  # Z ~ 1-2: resolved by 400 pseudo-datasets
        assert r["z_counting"] == pytest.approx(r["n_signal"] / math.sqrt(r["n_background"]), rel=0.01)  # ~ S/sqrt(B)
        assert r["z_binned"] > r["z_counting"]  # count and shape together: more than the count alone
        spread = 3 * math.hypot(r["z_network_std"], r["z_optimum_std"])
        assert r["z_network"] <= r["z_optimum"] + spread, r  # no network beats its optimum
        # a shape test of Gaussian-like scores: median Z ~ sqrt(2) Phi^-1(AUC), the separation its test AUC implies
        assert r["z_optimum"] == pytest.approx(math.sqrt(2) * norm.ppf(r["test/auc_optimal"]), abs=0.3), r
    assert rows[1]["z_optimum"] > rows[0]["z_optimum"] + 0.5  # growing with S/sqrt(B)
    assert (out / "fig7_quick.png").stat().st_size > 10_000
    client = mlflow.MlflowClient(quick_grid.store)
    experiment = client.get_experiment_by_name("expected_z")
    (summary,) = client.search_runs([experiment.experiment_id], "tags.`dmlhc.summary` = 'expected_z'")
    assert {a.path for a in client.list_artifacts(summary.info.run_id)} == {"fig7_quick.csv", "fig7_quick.png"}
    assert summary.data.params["pseudo_experiments"] == "400" and summary.data.metrics["points"] == 2
    assert "expected_z: 2 points, 0 already in 'expected_z', 2 to compute" in run.stdout

    again, same_text, _ = expected_z(quick_grid, out)  # every point tracked: a rerun only collects, the same table
    assert "expected_z: 2 points, 2 already in 'expected_z', 0 to compute" in again.stdout
    assert same_text == text
    points = client.search_runs([experiment.experiment_id], "tags.`dmlhc.expected_z` = 'point'")
    assert sorted(p.data.tags["dmlhc.source_run"] for p in points) == sorted(r["run_id"] for r in rows)
