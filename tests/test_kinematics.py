"""Kinematic plots: PNGs and the distance table, from synthetic samples (no Pythia)."""

from __future__ import annotations

import json

from conftest import synthetic_sample

from dmlhc.events.kinematics import distances_to_sm, plot_kinematics


def test_plots_and_distances(tmp_path):
    samples = {"sm": synthetic_sample(2000, 0, 80.0), "alp": synthetic_sample(2000, 1, 85.0),
               "spin2_onshell": synthetic_sample(2000, 2, 300.0)}
    written = plot_kinematics(samples, tmp_path, title="test")
    assert {p.name for p in written} == {"kinematics_alp.png", "kinematics_spin2.png", "distances_to_sm.json"}
    assert all(p.stat().st_size > 10_000 for p in written if p.suffix == ".png")
    table = json.loads((tmp_path / "distances_to_sm.json").read_text())
    assert table["sm"]["pt"] == 0
    assert table["alp"]["pt"] < table["spin2_onshell"]["pt"]  # the harder spectrum is further from the SM
    assert distances_to_sm(samples)["spin2_onshell"]["mean_pt"] > table["alp"]["mean_pt"]
