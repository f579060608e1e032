"""Study 12 end to end: an event network of event_level_quick (a real train.py run on the quick grid's samples, in
the grid's store) summed over the events of ensembles drawn from the test pools, beside the quick grid's histogram
network and the optimum on the same ensembles; and the refusal to pair networks trained on different samples."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from event_combination import SAME_SAMPLES, check_same_samples  # noqa: E402


def _run(params: dict[str, str]) -> SimpleNamespace:
    """A stand-in for an MLflow run: only its params are read (no training needed to test the comparison)."""
    return SimpleNamespace(data=SimpleNamespace(params=params))


def test_networks_of_different_samples_are_not_paired():
    same = {key: "1" for key in SAME_SAMPLES}
    check_same_samples(_run(same), _run(dict(same)))
    with pytest.raises(SystemExit, match="background.events: 1 against 150000.*event_level_quick with fig7_quick"):
        check_same_samples(_run(same), _run(same | {"background.events": "150000"}))


@pytest.mark.pythia
def test_the_event_network_summed_over_ensembles_beside_the_histogram_network(quick_grid):
    assert quick_grid.process.returncode == 0, quick_grid.process.stderr[-3000:]
    trained = quick_grid.run("event_combination", "train.py", "experiment=event_level_quick", "signal=spin2_onshell")
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = quick_grid.job_folder("event_combination") / "results"
    process = quick_grid.run("event_combination", "experiments/event_combination.py", "--events", "event_level_quick",
                             "--histograms", "fig7_quick", "--snr", "0.447,1.118", "--ensembles", "1500", "--out",
                             str(out))
    assert process.returncode == 0, process.stderr[-3000:]
    with open(out / "event_combination.csv") as table:
        rows = list(csv.DictReader(table))
    assert [(r["signal"], r["snr"], r["n_background"], r["n_signal"]) for r in rows] == [
        ("spin2_onshell", "0.447", "2000", "20"), ("spin2_onshell", "1.118", "2000", "50")]
    columns = ("event_sum", "event_sum_calibrated", "histogram", "optimum")
    for r in rows:
        assert all(0.5 < float(r[c]) <= 1 for c in columns)
        assert int(r["ensembles"]) == 3000
        # the histogram network on the new ensembles as on its own test set, near the optimum on the same ensembles
        # (3000 ensembles: AUC noise ~0.01)
        assert float(r["histogram"]) == pytest.approx(float(r["histogram_own_test"]), abs=0.04)
        assert float(r["histogram"]) <= float(r["optimum"]) + 0.03
    for c in columns:
        assert float(rows[0][c]) < float(rows[1][c])
    assert (out / "event_combination.png").stat().st_size > 10_000
