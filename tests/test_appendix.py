"""Study 13 (the paper's appendix scans) end to end: experiments/appendix.py appendix_quick trains one parametrised
network per setting (real train.py processes, Pythia samples at parton and shower level, a SQLite store of its
own), shares the default job among the scans, scales B and S with the pT cut, and resumes instead of retraining."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pythia
def test_the_quick_appendix_scans_tabulate_each_setting_beside_the_optimum(tmp_path, own_store):
    def appendix() -> subprocess.CompletedProcess:
        return own_store("experiments/appendix.py", "--name", "appendix_quick", "--out", str(tmp_path / "results"))

    process = appendix()
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.count("appendix: job ") == 6  # 8 settings, the default shared by three scans
    with open(tmp_path / "results" / "appendix.csv") as table:
        rows = list(csv.DictReader(table))
    settings = {(r["scan"], r["variant"]) for r in rows}
    assert settings == {("level", "parton"), ("level", "detector"), ("pt_scale", "linear"), ("pt_scale", "log"),
                        ("bins", "10"), ("bins", "30"), ("pt_min", "130"), ("pt_min", "250")}
    assert len(rows) == 16 and {r["snr"] for r in rows} == {"0.447", "1.118"}
    run = {(r["scan"], r["variant"], r["snr"]): r for r in rows}
    for snr in ("0.447", "1.118"):
        default = run["pt_scale", "linear", snr]
        assert run["bins", "30", snr]["run_id"] == run["pt_min", "130", snr]["run_id"] == default["run_id"]
        assert default["n_background"] == "2000" and default["snr_job"] == snr
        assert run["level", "detector", snr]["n_background"] == "500"
        cut = run["pt_min", "250", snr]  # fixed luminosity: B and S fall with the samples' efficiencies above 250 GeV
        assert 100 < int(cut["n_background"]) < 2000 and int(cut["n_signal"]) < int(default["n_signal"])
        assert float(cut["snr_job"]) > float(snr)  # the mediator's spectrum is harder than the SM's
    for r in rows:
        # 4000 test histograms (noise ~0.006); the small pools' plug-in optimum is biased low, the short training
        # may stop a little below it
        assert 0.5 < float(r["test/auc"]) <= 1 and 0.5 < float(r["test/auc_optimal"]) <= 1
        assert abs(float(r["gap"])) < 0.04
    for scan, variant in settings:
        assert float(run[scan, variant, "0.447"]["test/auc"]) < float(run[scan, variant, "1.118"]["test/auc"])
    assert (tmp_path / "results" / "appendix.png").stat().st_size > 10_000

    again = appendix()  # every job in MLflow: nothing trained, the same table
    assert again.returncode == 0, again.stderr[-3000:]
    assert "appendix: job " not in again.stdout
    with open(tmp_path / "results" / "appendix.csv") as table:
        assert list(csv.DictReader(table)) == rows
