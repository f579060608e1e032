"""Event pools: cuts, disjoint seeded splits, bin indices, binning checks, file input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import synthetic_leading_jets

from dmlhc.data.pools import Binning, Cuts, build_pools, make_pools
from dmlhc.events.delphes import write_delphes


@pytest.fixture(scope="module")
def jets():
    return synthetic_leading_jets(20_000, pt_slope=300.0, eta_width=2.0, seed=1)


def test_only_events_passing_the_cuts_enter_the_pools(jets):
    pools = build_pools(**jets)
    passing = Cuts().mask(jets["pt"], jets["eta"])
    assert 0 < passing.sum() < len(passing)  # the toy sample has events on both sides of the cuts
    assert pools.n_selected == passing.sum() and pools.n_read == len(passing)
    ids = torch.cat([pools[s].event_id for s in ("train", "val", "test")]).numpy()
    assert set(ids) == set(np.flatnonzero(passing))
    for split in ("train", "val", "test"):
        pt, eta, _ = pools[split].features.double().T.numpy()
        assert pt.min() >= 130 and pt.max() <= 2000 and np.abs(eta).max() <= 4


def test_splits_are_disjoint_and_sized_by_the_fractions(jets):
    pools = build_pools(**jets, fractions=(0.5, 0.3, 0.2))
    ids = {s: set(pools[s].event_id.tolist()) for s in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    sizes = pools.sizes()
    assert sum(sizes.values()) == pools.n_selected
    assert abs(sizes["train"] - 0.5 * pools.n_selected) <= 1 and abs(sizes["val"] - 0.3 * pools.n_selected) <= 1


def test_the_split_is_fixed_by_the_seed(jets):
    first, again, other = build_pools(**jets, seed=3), build_pools(**jets, seed=3), build_pools(**jets, seed=4)
    assert torch.equal(first.test.event_id, again.test.event_id)
    assert not torch.equal(first.test.event_id, other.test.event_id)


@pytest.mark.parametrize("binning", [Binning(), Binning(n_pt=7, n_eta=5, pt_scale="log")])
def test_bin_index_matches_histogram2d(jets, binning):
    pools = build_pools(**jets, binning=binning)
    pt, eta, _ = pools.train.features.double().T.numpy()
    pt_edges, eta_edges = binning.edges()
    expected, _, _ = np.histogram2d(pt, eta, bins=(pt_edges, eta_edges))
    assert np.array_equal(pools.train.bin_counts.view(binning.shape).numpy(), expected)


def test_upper_edges_belong_to_the_last_bins():
    index = Binning().bin_index(np.array([2000.0, 130.0]), np.array([4.0, -4.0]))
    assert index.tolist() == [Binning().n_bins - 1, 0]


@pytest.mark.parametrize("binning, key", [
    (dict(pt_range=(100.0, 2000.0)), "binning.pt_range"),
    (dict(pt_range=(130.0, 1500.0)), "binning.pt_range"),
    (dict(eta_range=(-5.0, 5.0)), "binning.eta_range"),
])
def test_bins_must_match_the_cuts(jets, binning, key):
    with pytest.raises(ValueError, match=key) as error:
        build_pools(**jets, binning=binning)
    assert "cuts." in str(error.value)


def test_bins_follow_changed_cuts(jets):
    pools = build_pools(**jets, cuts={"pt_min": 200.0}, binning={"pt_range": (200.0, 2000.0)})
    assert pools.train.features[:, 0].min() >= 200


@pytest.mark.parametrize("fields, key", [(dict(n_pt=0), "binning.n_pt"), (dict(pt_scale="sqrt"), "binning.pt_scale"),
                                         (dict(pt_range=(0.0, 2000.0), pt_scale="log"), "binning.pt_range")])
def test_bad_binning_names_the_key(fields, key):
    with pytest.raises(ValueError, match=key):
        Binning(**fields)


def test_fractions_are_checked(jets):
    with pytest.raises(ValueError, match="fractions"):
        build_pools(**jets, fractions=(0.7, 0.2, 0.2))


def test_arrays_without_eta_are_refused():
    with pytest.raises(ValueError, match="lack eta"):
        make_pools({"pt": np.ones(3)}, name="mine")


def test_pools_from_a_delphes_file(tmp_path, sample):
    path = write_delphes(tmp_path / "spin1_test.root", sample)
    pools = make_pools(path, fractions=(0.6, 0.2, 0.2), seed=0)
    lead = sample.leading_jet()
    assert pools.name == "spin1_test" and pools.n_read == len(sample)
    assert pools.n_selected == Cuts().mask(lead["pt"], lead["eta"]).sum()
    rows = pools.train.event_id.numpy()
    np.testing.assert_allclose(pools.train.features[:, 0].numpy(), lead["pt"][rows], rtol=1e-6)
    np.testing.assert_allclose(pools.train.features[:, 2].numpy(), lead["phi"][rows], rtol=1e-6)


def test_ready_pools_must_match_the_binning_asked_for(jets):
    pools = build_pools(**jets)
    assert make_pools(pools, binning=Binning(), device="cpu").train.bin_counts.sum() == len(pools.train)
    with pytest.raises(ValueError, match="binning"):
        make_pools(pools, binning=Binning(n_pt=10))


def test_a_pool_on_its_occupied_bins_draws_the_same_histograms_on_those_columns():
    from dmlhc.data.ensembles import draw_counts, draw_nested_counts
    from dmlhc.data.pools import EventPool

    bin_index = torch.tensor([3, 3, 7, 0, 7, 7, 9, 3, 0, 9] * 30, dtype=torch.int32)
    pool = EventPool("sm", "train", bin_index, torch.zeros(300, 3), torch.arange(300), n_bins=12)
    bins = torch.tensor([0, 3, 5, 7, 9])  # every occupied bin, and one empty one
    compact = pool.on_bins(bins)
    assert compact.n_bins == 5 and torch.equal(compact.bin_counts, pool.bin_counts[bins])
    for draw in (lambda p, g: draw_counts(p, 40, 6, generator=g, via="events"),
                 lambda p, g: draw_counts(p, 40, 6, generator=g, via="counts"),
                 lambda p, g: draw_nested_counts(p, [5, 40], 6, generator=g)):
        full = draw(pool, torch.Generator().manual_seed(1))
        assert torch.equal(draw(compact, torch.Generator().manual_seed(1)), full[..., bins])
        assert full.sum() == full[..., bins].sum()  # nothing outside the bins
    with pytest.raises(ValueError, match="outside the given bins"):
        pool.on_bins(torch.tensor([0, 3, 7]))
