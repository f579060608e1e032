"""``dmlhc reach``: B and S from cross sections, efficiencies and luminosity on small generated samples, checked
against the sample files; the CSV; bad input; the default samples being training's."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from user_errors import assert_user_error, run_entry_point

from dmlhc.cli import main
from dmlhc.data.pools import make_pools
from dmlhc.events.benchmarks import get_benchmark
from dmlhc.events.delphes import EventSample, read_delphes
from dmlhc.events.generate import GenerationSpec, generate
from dmlhc.reach import DEFAULT_BACKGROUND_EVENTS, DEFAULT_SIGNAL_EVENTS, PAPER_BACKGROUND_SCALE, select
from dmlhc.significance import asimov_significance, expected_counts

ROOT = Path(__file__).resolve().parents[1]
SIGNAL = "spin1_onshell"
EVENTS = {"sm": 2000, SIGNAL: 1000}  # parton level, seed 1
REACH = ["reach", "--signal", SIGNAL, "--events", str(EVENTS[SIGNAL]), "--background-events", str(EVENTS["sm"]),
         "--workers", "1", "--quiet"]
XSECS, LUMIS = (0.01, 0.05), (30.0, 3000.0)


@pytest.fixture(scope="module")
def samples(session_cache) -> dict[str, EventSample]:
    """The small samples ``dmlhc reach`` finds in the (test) cache."""
    return {name: read_delphes(generate(GenerationSpec(get_benchmark(name), n, "parton", 1), workers=1,
                                        cache=session_cache, show_progress=False))
            for name, n in EVENTS.items()}


def _selected(sample: EventSample) -> np.ndarray:
    """Selection cuts by hand: 130 <= pT <= 2000 GeV, |eta| <= 4 on the leading jet."""
    jet = sample.leading_jet()
    return (jet["pt"] >= 130) & (jet["pt"] <= 2000) & (np.abs(jet["eta"]) <= 4)


def _histogram(sample: EventSample) -> torch.Tensor:
    """The selected events on the paper's 30 x 30 grid, by numpy (flat index pT bin x 30 + eta bin)."""
    jet, keep = sample.leading_jet(), _selected(sample)
    counts, _, _ = np.histogram2d(jet["pt"][keep], jet["eta"][keep],
                                  bins=[np.linspace(130, 2000, 31), np.linspace(-4, 4, 31)])
    return torch.as_tensor(counts.reshape(-1))


def _run(argv: list[str], capsys) -> tuple[list[str], list[list[str]]]:
    """Run ``dmlhc`` in-process: (header lines, table rows split into cells, header row first)."""
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [line for line in lines if line.startswith("#")]
    return header, [line.split() for line in lines if not line.startswith("#")]


@pytest.mark.pythia
def test_reach_counts_match_sigma_times_efficiency_times_luminosity(samples, capsys, tmp_path):
    table_csv = tmp_path / "reach.csv"
    header, table = _run([*REACH, "--xsec-pb", ",".join(map(str, XSECS)), "--lumi-ifb", "30,3e3",
                          "--csv", str(table_csv)], capsys)
    sigma_sm = samples["sm"].metadata["sigma_after_cuts_pb"]
    efficiency = {name: float(_selected(sample).mean()) for name, sample in samples.items()}
    expected = [(x, lumi, sigma_sm * 1000 * efficiency["sm"] * lumi, x * 1000 * efficiency[SIGNAL] * lumi)
                for x in XSECS for lumi in LUMIS]

    assert table[0] == ["xsec_pb", "lumi_ifb", "B", "S", "S/sqrt(B)", "AUC", "Z", "L(Z=3)_ifb", "L(Z=5)_ifb"]
    assert len(table) == 1 + len(expected)
    for cells, (x, lumi, b, s) in zip(table[1:], expected):
        printed = [float(c) for c in cells]
        assert printed[:2] == [x, lumi]
        assert printed[2] == pytest.approx(b, rel=1e-6) and printed[3] == pytest.approx(s, rel=1e-3)
        assert printed[4] == pytest.approx(s / math.sqrt(b), rel=1e-3)

    with open(table_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert not list(tmp_path.glob("*.partial")) and len(rows) == len(expected)
    histograms = {name: _histogram(sample) for name, sample in samples.items()}
    for row, (x, lumi, b, s) in zip(rows, expected):
        values = {key: float(value) for key, value in row.items()}
        assert (values["xsec_pb"], values["lumi_ifb"]) == (x, lumi)
        assert values["background_events"] == pytest.approx(b, rel=1e-12)
        assert values["signal_events"] == pytest.approx(s, rel=1e-12)
        z = asimov_significance(*expected_counts(histograms["sm"], histograms[SIGNAL], b, s, pseudo_count=0.5))
        assert values["z_asimov"] == pytest.approx(z, rel=1e-9)
        assert values["lumi_for_z3_ifb"] == pytest.approx(lumi * (3 / z) ** 2, rel=1e-9)
        assert values["lumi_for_z5_ifb"] == pytest.approx(lumi * (5 / z) ** 2, rel=1e-9)
        assert 0.5 < values["expected_auc"] <= 1.0
    # Z grows as sqrt(L): from 30 to 3000 fb^-1 it grows tenfold
    assert float(rows[1]["z_asimov"]) / float(rows[0]["z_asimov"]) == pytest.approx(10.0, rel=1e-9)

    text = "\n".join(header)  # what the numbers rest on
    for sample in samples.values():
        assert sample.path is not None and sample.path.name in text
    for fragment in ("parton level", "2000 events", "1000 events", "130 <= pT <= 2000 GeV, |eta| <= 4",
                     "30x30 linear", "pseudo-count 0.5", "after the generation cuts", "Asimov"):
        assert fragment in text


@pytest.mark.pythia
def test_paper_background_scales_b_only(samples, capsys):
    _, plain = _run([*REACH, "--xsec-pb", "0.05", "--lumi-ifb", "300"], capsys)
    header, paper = _run([*REACH, "--xsec-pb", "0.05", "--lumi-ifb", "300", "--paper-background"], capsys)
    assert float(paper[1][2]) == pytest.approx(PAPER_BACKGROUND_SCALE * float(plain[1][2]), abs=1)
    assert paper[1][3] == plain[1][3]  # S
    assert float(paper[1][6]) < float(plain[1][6])  # Z
    text = "\n".join(header)
    assert "1.3 (--paper-background" in text and "0.78 is not applied" in text


@pytest.mark.pythia
def test_select_bins_as_the_training_pools_do(samples):
    for name, sample in samples.items():
        selected, pools = select(sample, name), make_pools(sample, name=name)
        assert selected.n_selected == pools.n_selected and selected.n_events == pools.n_read
        assert torch.equal(selected.bin_counts, sum(pools[split].bin_counts for split in ("train", "val", "test")))
        assert torch.equal(selected.bin_counts, _histogram(sample).long())


@pytest.mark.parametrize("bad, message", [
    (["--xsec-pb", "-0.1"], "--xsec-pb '-0.1': '-0.1' is not a positive finite number"),
    (["--xsec-pb", "0.01,0"], "'0' is not a positive"),
    (["--xsec-pb", ","], "give one or more positive numbers"),
    (["--xsec-pb", ""], "give one or more positive numbers"),
    (["--lumi-ifb", "300,abc"], "--lumi-ifb '300,abc': 'abc' is not a positive finite number"),
    (["--lumi-ifb", "inf"], "'inf' is not a positive finite number"),
    (["--signal", "spin9_onshell"], "unknown benchmark 'spin9_onshell'"),
    (["--signal", "sm"], "give a dark-matter benchmark"),
    (["--background-scale", "0"], "--background-scale 0.0: give a positive factor"),
    (["--pseudo-count", "-1"], "--pseudo-count -1.0: give a finite number >= 0"),
])
def test_bad_input_is_one_configuration_error_line(bad, message, capsys, monkeypatch, tmp_path):
    for variable in ("HYDRA_FULL_ERROR", "DMLHC_DEBUG"):
        monkeypatch.delenv(variable, raising=False)
    cache = tmp_path / "cache"
    argv = [*REACH, "--xsec-pb", "0.05", "--lumi-ifb", "300", "--cache", str(cache), *bad]  # the last value counts
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [captured.err.strip()]  # one line
    assert captured.err.startswith("dmlhc: configuration error: ") and message in captured.err
    assert not cache.exists()  # checked before anything is generated


def test_bad_input_from_the_shell(tmp_path):
    result = run_entry_point(["dmlhc", "reach", "--signal", SIGNAL, "--xsec-pb", "0,0.05", "--lumi-ifb", "300"],
                             cwd=tmp_path)
    assert_user_error(result, 2, "configuration error", "--xsec-pb", "not a positive finite number")
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""


def test_default_samples_are_trainings():
    """Without --events the reach finds the samples training generated (same sizes, hence cache keys)."""
    assert OmegaConf.load(ROOT / "conf" / "background" / "sm.yaml").events == DEFAULT_BACKGROUND_EVENTS
    signals = [OmegaConf.load(path) for path in sorted((ROOT / "conf" / "signal").glob("*.yaml"))]
    assert {s.events for s in signals if s.benchmark} == {DEFAULT_SIGNAL_EVENTS}
