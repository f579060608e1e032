"""Study 11 end to end: experiments/multiclass.py multiclass_quick trains one 8-class network per S/sqrt(B) (real
train.py jobs, Pythia samples, a SQLite store of its own), scores each run's own test histograms again and tabulates
the one-vs-rest AUCs and prediction frequencies."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pythia
def test_the_quick_multiclass_study_tabulates_aucs_and_prediction_frequencies(tmp_path, own_store):
    out = tmp_path / "results"
    process = own_store("experiments/multiclass.py", "--name", "multiclass_quick", "--out", str(out))
    assert process.returncode == 0, process.stderr[-3000:]
    with open(out / "multiclass.csv") as table:
        rows = list(csv.DictReader(table))
    assert sorted({float(r["snr"]) for r in rows}) == [1.118, 2.236] and len(rows) == 2 * 8
    for r in rows:
        assert float(r["auc"]) == pytest.approx(float(r["auc_run"]), abs=1e-4)  # the run's own test histograms
        shares = [float(v) for k, v in r.items() if k.startswith("predicted ")]
        assert len(shares) == 9 and sum(shares) == pytest.approx(1.0, abs=1e-6)
    for snr in ("1.118", "2.236"):
        mine = [r for r in rows if r["snr"] == snr]
        assert sum(float(r["auc"]) for r in mine) / 8 > 0.55
    # a stronger signal is easier to tell apart: the classes are more often given to themselves
    right = {snr: sum(float(r[f"predicted {r['class']}"]) for r in rows if r["snr"] == snr)
             for snr in ("1.118", "2.236")}
    assert right["2.236"] > right["1.118"]
    assert (out / "auc_vs_snr.png").stat().st_size > 10_000
    assert (out / "prediction_frequency.png").stat().st_size > 10_000
