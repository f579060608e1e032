"""Study 5 end to end on the quick grid's networks (real checkpoints from its SQLite store, Pythia samples):
experiments/output_distributions.py scores every point's test histograms, and the AUC of those scores is the run's."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pythia
def test_output_distributions_of_the_quick_grid(quick_grid):
    assert quick_grid.process.returncode == 0, quick_grid.process.stderr[-3000:]
    out = quick_grid.folder / "output_distributions"
    process = quick_grid.run("output_distributions", "experiments/output_distributions.py", "--source", "fig7_quick",
                             "--signals", "spin2_onshell", "--bins", "10", "--out", str(out))
    assert process.returncode == 0, process.stderr[-3000:]
    with open(out / "fig7_quick_points.csv") as table:
        points = list(csv.DictReader(table))
    with open(out / "fig7_quick.csv") as table:
        rows = list(csv.DictReader(table))
    assert [float(p["snr"]) for p in points] == [0.447, 1.118]
    for p in points:
        assert float(p["test/auc"]) == pytest.approx(float(p["test/auc_run"]), abs=1e-4)  # the run's own test set
        assert float(p["median_sm+signal"]) > float(p["median_sm"])
        assert int(p["histograms"]) == 4000
    assert len(rows) == 2 * 2 * 10  # points x classes x bins
    for snr in ("0.447", "1.118"):
        for name in ("sm", "sm+signal"):
            assert sum(float(r["fraction"]) for r in rows if r["snr"] == snr and r["class"] == name) == \
                pytest.approx(1.0, abs=1e-6)
    # the larger signal separates the classes further: the medians move apart
    low, high = points
    assert float(high["median_sm+signal"]) - float(high["median_sm"]) > \
        float(low["median_sm+signal"]) - float(low["median_sm"])
    assert (out / "fig7_quick.png").stat().st_size > 10_000
