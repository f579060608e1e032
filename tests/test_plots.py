"""Run plots from small synthetic inputs: what each figure carries, then the PNG it writes (no Pythia)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.colors import LogNorm, SymLogNorm
from matplotlib.text import Text
from synthetic import synthetic_leading_jets

from dmlhc.data.datamodule import EnsembleDataModule
from dmlhc.data.ensembles import make_task
from dmlhc.data.pools import Binning
from dmlhc.optimal import optimal_auc
from dmlhc.tracking.plots import (
    NO_PREDICTION,
    class_names,
    describe_run,
    example_histograms_figure,
    output_figure,
    prediction_frequency,
    prediction_frequency_figure,
    roc_figure,
    save,
)
from dmlhc.tracking.reporter import ResultsReporter


def texts(fig) -> str:
    """All text of a figure (titles, labels, legends, colour bars, annotations), one line each."""
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def assert_hep_labelled(fig) -> None:
    content = texts(fig)
    assert "Simulation" in content and r"$\sqrt{s}$ = 14 TeV" in content
    assert "CMS" not in content and "ATLAS" not in content


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


@pytest.fixture
def binary():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 300)
    return labels, 1 / (1 + np.exp(-rng.normal(labels - 0.5, 1.0)))


def test_class_names_and_descriptions():
    assert class_names("binary", ((None,), ("alp",))) == ["SM only", "SM + alp"]
    assert class_names("multimodel", ((None,), ("alp", "spin0"))) == ["SM only", "SM + alp or spin0"]
    seven = tuple(f"b{k}" for k in range(7))
    assert class_names("multimodel", ((None,), seven)) == ["SM only", "SM + any of 7 benchmarks"]  # fits a panel
    assert describe_run("multimodel", list(seven), 1.0, 50000).startswith("7 benchmarks, ")
    # model_vs_model: label 1 (positive) is the first signal
    assert class_names("model_vs_model", make_task("model_vs_model", ["alp", "spin0"]).classes) == \
        ["SM + spin0", "SM + alp"]
    assert class_names("event", ((None,), ("alp",))) == ["SM events", "alp events"]
    assert describe_run("binary", ["alp"], 2.236, 50000) == r"alp, $S/\sqrt{B}$ = 2.236, B = 50000"
    assert describe_run("event", ["alp"], 2.236, 50000) == "alp: single events"


def test_model_vs_model_roc_names_the_positive_model(binary, tmp_path):
    labels, scores = binary
    names = class_names("model_vs_model", make_task("model_vs_model", ["alp", "spin0"]).classes)
    fig = roc_figure(labels, {"CNN": (scores, 0.7), "likelihood ratio (optimum)": (2 * scores, 0.7)}, names,
                     describe_run("model_vs_model", ["alp", "spin0"], 3, 1000))
    legend = fig.axes[0].get_legend()
    assert "positive class: SM + alp" in legend.get_title().get_text()
    assert [t.get_text() for t in legend.get_texts()] == \
        ["CNN (AUC = 0.700)", "likelihood ratio (optimum) (AUC = 0.700)", "random guess (AUC = 0.5)"]
    assert "SM + alp" in fig.axes[0].get_ylabel() and "SM + spin0" in fig.axes[0].get_xlabel()
    assert_hep_labelled(fig)
    assert_png(save(fig, tmp_path / "roc.png"))


def test_event_roc_draws_the_per_event_optimum_without_snr(tmp_path):
    """The event task's optimum: the likelihood ratio of the binned (pT, eta) densities, one event at a time."""
    binning = Binning()
    background, signal = synthetic_leading_jets(6000, seed=0), synthetic_leading_jets(6000, pt_slope=300, seed=1)
    index = [torch.as_tensor(binning.bin_index(j["pt"], j["eta"])) for j in (background, signal)]
    index = [i[i >= 0] for i in index]
    train = [torch.bincount(i[:2000], minlength=binning.n_bins) for i in index]
    test = torch.cat([index[0][2000:3000], index[1][2000:3000]])
    labels = torch.repeat_interleave(torch.tensor([0, 1]), 1000)
    optimum = optimal_auc(test, labels, make_task("event", ["alp"]), train[0], {"alp": train[1]}, 0, 1)
    assert optimum.scores is not None and 0.6 < optimum.auc < 0.9

    fig = roc_figure(labels.numpy(), {"EventDNN": (np.random.default_rng(0).random(2000), 0.5),
                                      "per-event likelihood ratio (optimum)": (optimum.scores.numpy(), optimum.auc)},
                     class_names("event", ((None,), ("alp",))), describe_run("event", ["alp"], 2.0, 50000))
    curve = next(line for line in fig.axes[0].get_lines() if line.get_label().startswith("per-event likelihood"))
    fpr, tpr = curve.get_data()
    # the drawn curve is the optimum's: its area is the tie-aware AUC (log-ratios are not squashed into ties)
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(optimum.auc, abs=1e-6)
    assert "sqrt{B}" not in texts(fig) and "alp: single events" in texts(fig)
    assert_hep_labelled(fig)
    assert_png(save(fig, tmp_path / "roc_event.png"))


def test_output_distributions_name_the_classes(binary, tmp_path):
    labels, scores = binary
    fig = output_figure(labels, scores, ["SM only", "SM + alp"], "alp")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["SM only", "SM + alp"]
    assert ax.get_xlabel() == "network output (probability of SM + alp)"
    assert_hep_labelled(fig)
    assert_png(save(fig, tmp_path / "outputs.png"))


def test_example_histograms_log_scale_and_difference(tmp_path):
    rng = np.random.default_rng(0)
    background = np.outer(np.geomspace(1, 1e-3, 6), np.ones(5))
    signal = np.outer(np.geomspace(1, 1e-1, 6), np.ones(5))
    counts = np.concatenate([rng.poisson(500 * background / background.sum(), (20, 6, 5)),
                             rng.poisson(500 * signal / signal.sum(), (20, 6, 5))]).astype(float)
    labels = np.repeat([0, 1], 20)
    edges = (np.linspace(130, 2000, 7), np.linspace(-4, 4, 6))
    fig = example_histograms_figure(counts, labels, ["SM only", "SM + alp"], edges, "alp")

    images = [ax.collections[0] for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(images) == 4  # two examples above; the SM-only mean and the mean difference below
    assert all(isinstance(image.norm, LogNorm) for image in images[:3]) and isinstance(images[3].norm, SymLogNorm)
    assert [image.colorbar.ax.get_ylabel() for image in images] == \
        ["events per bin", "events per bin", "mean events per bin", "mean difference [events per bin]"]
    assert "(SM + alp) $-$ (SM only)" in texts(fig)
    # the difference panel is the difference of the class means
    drawn = images[3].get_array().reshape(5, 6).T
    assert np.allclose(drawn, counts[20:].mean(0) - counts[:20].mean(0))
    assert_hep_labelled(fig)
    assert_png(save(fig, tmp_path / "example_histograms.png"))


def test_prediction_frequency_counts_unconfident_predictions(tmp_path):
    labels = np.array([0, 0, 1, 2])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.7, 0.1, 0.2]])
    # top probability above 2/3: confident; 0.5 is not
    assert np.array_equal(prediction_frequency(labels, probabilities),
                          [[0.5, 0, 0, 0.5], [0, 1, 0, 0], [1, 0, 0, 0]])

    fig = prediction_frequency_figure(labels, probabilities, ["SM only", "SM + alp", "SM + spin0"],
                                      describe_run("multiclass", ["alp", "spin0"], 3, 1000))
    legend = fig.axes[0].get_legend()
    entries = [t.get_text() for t in legend.get_texts()]
    assert entries[:3] == ["SM only", "SM + alp", "SM + spin0"] and entries[3].startswith(NO_PREDICTION)
    assert r"$S/\sqrt{B}$ = 3" in legend.get_title().get_text()
    unconfident = fig.axes[0].containers[3]  # the fourth bar group: no confident prediction, per true class
    assert [bar.get_height() for bar in unconfident] == [0.5, 0, 0]
    assert_hep_labelled(fig)
    assert_png(save(fig, tmp_path / "prediction_frequency.png"))


@pytest.mark.parametrize("task, signals, files", [
    ("binary", ["hard"], {"roc.png", "outputs.png", "example_histograms.png"}),
    ("model_vs_model", ["hard", "wide"], {"roc.png", "outputs.png", "example_histograms.png"}),
    ("multiclass", ["hard", "wide"], {"prediction_frequency.png", "example_histograms.png"}),
    ("event", ["hard"], {"roc.png", "outputs.png"}),
])
def test_the_reporter_draws_each_task(task, signals, files, tmp_path):
    """The reporter's figures from a DataModule of toy jets, its optimum, and random network scores."""
    jets = {"hard": synthetic_leading_jets(8000, pt_slope=250.0, eta_width=1.0, seed=2),
            "wide": synthetic_leading_jets(8000, pt_slope=160.0, eta_width=2.0, seed=3)}
    dm = EnsembleDataModule({s: jets[s] for s in signals}, synthetic_leading_jets(8000, seed=1), task=task,
                            n_background=500, snr=2.0, batch_size=50, n_val=100, n_test=200, device="cpu")
    dm.setup("test")
    n_test = len(dm.sets["test"].y)
    scores = torch.rand(n_test) if dm.n_classes == 2 else torch.softmax(torch.randn(n_test, dm.n_classes), dim=1)
    module = SimpleNamespace(net=torch.nn.Linear(1, 1), test_scores=[scores])
    paths = ResultsReporter()._plots(dm, module, dm.optimal_auc(), 0.5, tmp_path)
    assert {p.name for p in paths} == files
    for path in paths:
        assert_png(path)
