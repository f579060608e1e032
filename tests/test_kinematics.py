"""Kinematic plots: PNGs and the table, from synthetic samples (no Pythia); study 1 (experiments/kinematics.py) on
small Pythia samples."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from conftest import synthetic_sample
from matplotlib.text import Text

from dmlhc.events.kinematics import (
    TABLE_COLUMNS,
    bin_edges,
    distances_to_sm,
    kinematics_figure,
    normalised_histograms,
    plot_kinematics,
)


@pytest.fixture
def samples():
    return {"sm": synthetic_sample(2000, 0, 80.0), "alp": synthetic_sample(2000, 1, 85.0),
            "spin2_onshell": synthetic_sample(2000, 2, 300.0)}


def test_plots_and_distances(samples, tmp_path):
    written = plot_kinematics(samples, tmp_path, title="test")
    assert {p.name for p in written} == {"kinematics_alp.png", "kinematics_spin2.png", "kinematics.csv"}
    assert all(p.stat().st_size > 10_000 for p in written if p.suffix == ".png")
    with open(tmp_path / "kinematics.csv") as file:
        rows = {r["sample"]: r for r in csv.DictReader(file)}
    assert list(rows) == ["sm", "alp", "spin2_onshell"] and list(rows["sm"]) == list(TABLE_COLUMNS)
    assert float(rows["sm"]["tv_pt"]) == 0
    assert float(rows["alp"]["tv_pt"]) < float(rows["spin2_onshell"]["tv_pt"])  # the harder spectrum: further away
    assert float(rows["alp"]["tv_pt"]) == distances_to_sm(samples)["alp"]["pt"]
    pt = samples["spin2_onshell"].leading_jet()["pt"]
    assert float(rows["spin2_onshell"]["mean_pt"]) == pytest.approx(pt.mean(), abs=1e-4)
    assert float(rows["spin2_onshell"]["pt_q10"]) < float(rows["spin2_onshell"]["pt_median"]) < float(
        rows["spin2_onshell"]["pt_q90"])
    assert math.isnan(float(rows["sm"]["invisible_mass_median"]))  # synthetic samples record none


def test_figure_ends_where_the_data_end_and_is_labelled(samples):
    edges = bin_edges(samples)
    hists = {name: normalised_histograms(s, edges) for name, s in samples.items()}
    assert all(h[var].sum() == pytest.approx(1) for h in hists.values() for var in edges)  # no event left out
    fig = kinematics_figure(hists, edges, ["spin2_onshell"], "spin2: test")
    jets = [s.leading_jet() for s in samples.values()]
    for ax, var in zip(fig.axes, ("pt", "eta", "phi")):
        low, high = ax.get_xlim()
        assert (low, high) == pytest.approx((min(j[var].min() for j in jets), max(j[var].max() for j in jets)))
    content = [t.get_text() for t in fig.findobj(Text)]
    assert content.count("Simulation") == 3 and content.count(r"$\sqrt{s}$ = 14 TeV") == 3
    assert fig.axes[0].get_yscale() == "log"


@pytest.mark.pythia
def test_study_1_writes_its_table_and_figures_and_logs_a_summary_run(tmp_path):
    store, out = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "results"
    run = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "experiments" / "kinematics.py"),
                          "--events", "3000", "--benchmarks", "spin1_onshell", "spin2_onshell", "--out", str(out)],
                         cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": store}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "kinematics.csv") as file:
        rows = {r["sample"]: r for r in csv.DictReader(file)}
    assert list(rows) == ["sm", "spin1_onshell", "spin2_onshell"]
    for name in ("spin1_onshell", "spin2_onshell"):  # harder than the SM, the mediator's mass where it was put
        assert float(rows[name]["mean_pt"]) > float(rows["sm"]["mean_pt"]) and float(rows[name]["tv_pt"]) > 0.1
        assert 800 < float(rows[name]["invisible_mass_median"]) < 1200  # 1 TeV mediators
    client = mlflow.MlflowClient(store)
    (summary,) = client.search_runs([client.get_experiment_by_name("kinematics").experiment_id])
    assert {a.path for a in client.list_artifacts(summary.info.run_id)} == {
        "kinematics.csv", "kinematics_spin1.png", "kinematics_spin2.png"}
    assert summary.data.metrics["tv_pt/spin2_onshell"] == float(rows["spin2_onshell"]["tv_pt"])
    assert "kinematics: 3 samples" in run.stdout
