"""Kinematic plots: PNGs and the distance table, from synthetic samples (no Pythia)."""

from __future__ import annotations

import json

import pytest
from conftest import synthetic_sample
from matplotlib.text import Text

from dmlhc.events.kinematics import (
    bin_edges,
    distances_to_sm,
    kinematics_figure,
    normalised_histograms,
    plot_kinematics,
)


@pytest.fixture
def samples():
    return {"sm": synthetic_sample(2000, 0, 80.0), "alp": synthetic_sample(2000, 1, 85.0),
            "spin2_onshell": synthetic_sample(2000, 2, 300.0)}


def test_plots_and_distances(samples, tmp_path):
    written = plot_kinematics(samples, tmp_path, title="test")
    assert {p.name for p in written} == {"kinematics_alp.png", "kinematics_spin2.png", "distances_to_sm.json"}
    assert all(p.stat().st_size > 10_000 for p in written if p.suffix == ".png")
    table = json.loads((tmp_path / "distances_to_sm.json").read_text())
    assert table["sm"]["pt"] == 0
    assert table["alp"]["pt"] < table["spin2_onshell"]["pt"]  # the harder spectrum is further from the SM
    assert distances_to_sm(samples)["spin2_onshell"]["mean_pt"] > table["alp"]["mean_pt"]


def test_figure_ends_where_the_data_end_and_is_labelled(samples):
    edges = bin_edges(samples)
    hists = {name: normalised_histograms(s, edges) for name, s in samples.items()}
    assert all(h[var].sum() == pytest.approx(1) for h in hists.values() for var in edges)  # no event left out
    fig = kinematics_figure(hists, edges, ["spin2_onshell"], "spin2: test")
    jets = [s.leading_jet() for s in samples.values()]
    for ax, var in zip(fig.axes, ("pt", "eta", "phi")):
        low, high = ax.get_xlim()
        assert (low, high) == pytest.approx((min(j[var].min() for j in jets), max(j[var].max() for j in jets)))
    content = [t.get_text() for t in fig.findobj(Text)]
    assert content.count("Simulation") == 3 and content.count(r"$\sqrt{s}$ = 14 TeV") == 3
    assert fig.axes[0].get_yscale() == "log"
