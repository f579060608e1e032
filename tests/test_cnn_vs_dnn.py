"""Study 4 end to end: experiments/cnn_vs_dnn.py cnn_vs_dnn_quick trains one CNN per point (real train.py jobs,
Pythia samples) beside the quick grid's DNNs (its SQLite store) and tabulates the CNN / DNN ratio."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pythia
def test_the_quick_cnn_study_sets_each_cnn_beside_the_dnn_of_its_point(quick_grid):
    assert quick_grid.process.returncode == 0, quick_grid.process.stderr[-3000:]
    out = quick_grid.folder / "cnn_vs_dnn"
    process = quick_grid.run("cnn_vs_dnn", "experiments/cnn_vs_dnn.py", "--name", "cnn_vs_dnn_quick", "--reference",
                             "fig7_quick", "--out", str(out))
    assert process.returncode == 0, process.stderr[-3000:]
    with open(out / "cnn_vs_dnn.csv") as table:
        rows = list(csv.DictReader(table))
    assert [(r["signal"], float(r["snr"])) for r in rows] == [("spin2_onshell", 0.447), ("spin2_onshell", 1.118)]
    for r in rows:
        cnn, dnn, optimum = (float(r[k]) for k in ("cnn", "dnn", "optimum"))
        # the table rounds every value to 4 decimals: cnn / dnn from the rounded values is off by at most this
        rounding = 0.5e-4 * (1 + cnn / dnn * (1 / cnn + 1 / dnn))
        assert float(r["ratio"]) == pytest.approx(cnn / dnn, abs=rounding)
        assert 0.5 < cnn <= 1 and 0.5 < dnn <= 1
        # the same test histograms and optimum as the DNN's point; the plug-in optimum of these small pools is
        # ~0.03 low (README), which the CNN's smoothing can pass
        assert cnn <= optimum + 0.05 and abs(cnn - dnn) < 0.06
    assert float(rows[0]["cnn"]) < float(rows[1]["cnn"])
    assert (out / "cnn_vs_dnn.png").stat().st_size > 10_000
