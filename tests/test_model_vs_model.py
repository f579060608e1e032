"""Study 9 end to end: experiments/model_vs_model.py model_vs_model_quick trains one network per S/sqrt(B) for a pair
of benchmarks (real train.py processes, Pythia samples, a SQLite store of its own), collects them beside the
optimum, and a rerun trains nothing."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pythia
def test_the_quick_model_vs_model_study_tabulates_a_pair_over_s_over_sqrt_b(tmp_path, own_store):
    def model_vs_model() -> subprocess.CompletedProcess:
        return own_store("experiments/model_vs_model.py", "--name", "model_vs_model_quick", "--out",
                         str(tmp_path / "results"))

    process = model_vs_model()
    assert process.returncode == 0, process.stderr[-3000:]
    with open(tmp_path / "results" / "model_vs_model.csv") as table:
        rows = list(csv.DictReader(table))
    assert [(r["signal"], r["other"], r["snr"]) for r in rows] == [("spin2_onshell", "spin0_onshell", "1.118"),
                                                                   ("spin2_onshell", "spin0_onshell", "4.47")]
    for r in rows:
        # 4000 test histograms: noise ~0.01 near 0.6; the small pools' plug-in optimum is biased low
        assert 0.5 < float(r["test/auc"]) <= 1 and 0.5 < float(r["test/auc_optimal"]) <= 1
        assert float(r["test/auc"]) <= float(r["test/auc_optimal"]) + 0.03
    assert float(rows[0]["test/auc"]) < float(rows[1]["test/auc"])
    assert (tmp_path / "results" / "model_vs_model.png").stat().st_size > 10_000

    again = model_vs_model()  # every point in MLflow: nothing trained, the same table
    assert again.returncode == 0, again.stderr[-3000:]
    assert "model_vs_model: pair" not in again.stdout
    with open(tmp_path / "results" / "model_vs_model.csv") as table:
        assert list(csv.DictReader(table)) == rows
