"""Study 10 end to end: experiments/multimodel.py multimodel_quick trains a multimodel network (a real train.py run
on the quick grid's samples, in the grid's store), tests it with eval.py on a benchmark it was trained on and one
held out, and sets each beside that benchmark's own network of the quick grid."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pythia
def test_the_quick_multimodel_study_sets_held_out_benchmarks_beside_their_own_networks(quick_grid):
    assert quick_grid.process.returncode == 0, quick_grid.process.stderr[-3000:]
    out = quick_grid.folder / "multimodel"
    process = quick_grid.run("multimodel", "experiments/multimodel.py", "--name", "multimodel_quick", "--reference",
                             "fig7_quick", "--out", str(out))
    assert process.returncode == 0, process.stderr[-3000:]
    with open(out / "multimodel.csv") as table:
        rows = {r["signal"]: r for r in csv.DictReader(table)}
    assert set(rows) == {"spin0_onshell", "spin2_onshell"}
    assert rows["spin0_onshell"]["held_out"] == "True" and rows["spin2_onshell"]["held_out"] == "False"
    for r in rows.values():
        assert r["snr"] == "1.118" and r["run_id"] != r["network_run"]
        assert 0.5 < float(r["test/auc"]) <= float(r["test/auc_optimal"]) + 0.03
        assert float(r["ratio"]) == pytest.approx(float(r["test/auc"]) / float(r["individual"]), abs=1e-3)
        # one network for any of several benchmarks cannot beat each one's own by much (4000 test histograms)
        assert 0.8 < float(r["ratio"]) < 1.05
    assert (out / "multimodel.png").stat().st_size > 10_000
