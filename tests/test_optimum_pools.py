"""experiments/optimum_pools.py: the optimum's plug-in estimate from a point's train pools against the likelihood
ratio of larger, independently generated samples, on the point's test set."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "experiments" / "optimum_pools.py")
POINT = ["signal=spin2_onshell", "snr=3", "background.n_background=200", "background.events=20000",
         "signal.events=4000", "data.n_val=200", "data.n_test=400"]


def test_a_reference_of_the_points_own_seed_is_refused_with_the_fix():
    run = subprocess.run([sys.executable, SCRIPT, *POINT], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "both generated with seed 1" in run.stderr and "generation.seed=2" in run.stderr


@pytest.mark.parametrize("override, message", [
    ("foo=1", "Could not override 'foo'"),                      # Hydra cannot compose it
    ("signal=nosuch", "Could not find 'signal/nosuch'"),
    ("snr=-1", "snr=-1: must be a finite number >= 0"),         # the DataModule's own check
])
def test_a_bad_override_is_one_line_and_the_configuration_exit_code(override, message):
    run = subprocess.run([sys.executable, SCRIPT, override, "generation.seed=2"], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("dmlhc: configuration error: ") and message in run.stderr


@pytest.mark.pythia
def test_the_plug_in_from_larger_independent_pools_scores_the_same_test_set():
    run = subprocess.run([sys.executable, SCRIPT, *POINT, "generation.seed=2", "--reference-events", "100000,20000"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test set: 400 histograms, B = 200, S = 42" in run.stdout
    own, reference = (line for line in run.stdout.splitlines() if "train events: test AUC" in line)
    sm_events = [int(re.search(r"(\d+) SM \+", line).group(1)) for line in (own, reference)]
    assert sm_events == [pytest.approx(12000, rel=0.01), pytest.approx(60000, rel=0.01)]  # 0.6 of each sample
    for line in (own, reference):
        aucs = [float(a) for a in re.findall(r"(0\.\d{4}) \(pseudo-count", line)]
        assert len(aucs) == 3 and all(0.5 <= a <= 1 for a in aucs), line
