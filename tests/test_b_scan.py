"""Study 6 (B-independence) end to end: experiments/b_scan.py b_scan_quick trains one parametrised network per B
(real train.py processes, Pythia samples, a SQLite store of its own), collects the ratios to the reference B and
draws them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pythia
def test_the_quick_b_scan_tabulates_auc_ratios_to_the_reference_b(tmp_path, own_store):
    out = tmp_path / "results"
    process = own_store("experiments/b_scan.py", "--name", "b_scan_quick", "--reference-b", "2000", "--out", str(out))
    assert process.returncode == 0, process.stderr[-3000:]
    with open(out / "b_scan.csv") as table:
        rows = list(csv.DictReader(table))
    assert [(int(r["n_background"]), float(r["snr"])) for r in rows] == [(200, 0.447), (200, 1.118), (2000, 0.447),
                                                                         (2000, 1.118)]
    assert [int(r["n_signal"]) for r in rows] == [6, 16, 20, 50]  # round(snr sqrt(B))
    for r in rows:
        assert 0.5 < float(r["test/auc"]) <= 1 and 0.5 < float(r["test/auc_optimal"]) <= 1
        if r["n_background"] == "2000":
            assert float(r["ratio"]) == 1.0 and float(r["ratio_optimal"]) == 1.0
        # AUC a function of S/sqrt(B): B = 200 within 0.05 of B = 2000 (4000 test histograms: noise ~0.006)
        assert abs(float(r["ratio_optimal"]) - 1) < 0.05 and abs(float(r["ratio"]) - 1) < 0.07
    for size in ("200", "2000"):
        low, high = (float(r["test/auc"]) for r in rows if r["n_background"] == size)
        assert low < high
    assert (out / "b_scan.png").stat().st_size > 10_000
    assert "largest |AUC(B) / AUC(B = 2000) - 1|" in process.stdout
