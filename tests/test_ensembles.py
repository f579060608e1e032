"""Histogram ensembles: totals, no repeated events, disjoint splits, exact laws, seeds, tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from synthetic import bin_frequencies, synthetic_leading_jets

from dmlhc.data.ensembles import (
    _stable_sort_rows,
    draw_counts,
    draw_event_indices,
    draw_histograms,
    draw_mixture,
    draw_nested_counts,
    make_task,
    n_signal_events,
    normalise,
    sample_counts,
)
from dmlhc.data.pools import build_pools

P_MIN = 1e-4  # statistical tests fail only if the law is wrong (or once in 10^4 seeds)


@pytest.fixture(scope="module")
def background():
    return build_pools(**synthetic_leading_jets(20_000, seed=1))


@pytest.fixture(scope="module")
def signal():
    return build_pools(**synthetic_leading_jets(20_000, pt_slope=300.0, eta_width=1.0, seed=2), name="signal")


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n_draws, via", [(10, "events"), (5000, "counts")])
def test_auto_picks_events_for_small_and_counts_for_large_histograms(background, n_draws, via):
    auto = draw_counts(background.train, n_draws, 3, generator=generator())
    assert torch.equal(auto, draw_counts(background.train, n_draws, 3, generator=generator(), via=via))


def test_signal_events_per_histogram():
    assert n_signal_events(50_000, 0.447) == round(0.447 * np.sqrt(50_000)) == 100
    assert n_signal_events(1000, 0.0) == 0
    with pytest.raises(ValueError, match="snr"):
        n_signal_events(1000, -0.1)


@pytest.mark.parametrize("via", ["counts", "events"])
@pytest.mark.parametrize("mode", ["exact", "multinomial"])
def test_every_histogram_holds_exactly_its_events(background, signal, mode, via):
    counts = draw_mixture(background.train, signal.train, 1000, 95, 300, mode=mode, generator=generator(), via=via)
    assert counts.shape == (300, 900) and counts.dtype == torch.float32
    assert torch.all(counts.sum(dim=1) == 1095)
    sm_only = draw_mixture(background.train, None, 1000, 95, 300, mode=mode, generator=generator(), via=via)
    assert torch.all(sm_only.sum(dim=1) == 1095)


def test_poisson_totals_fluctuate_around_the_mean(background):
    totals = draw_counts(background.train, 1000, 2000, mode="poisson", generator=generator()).sum(dim=1).double()
    assert totals.std() > 10  # not fixed
    assert abs(totals.mean() - 1000) < 5 * np.sqrt(1000 / 2000)
    assert abs(totals.var() / 1000 - 1) < 0.15  # Poisson: variance = mean


def test_exact_histograms_never_repeat_an_event(background):
    pool = background.train
    rows = draw_event_indices(len(pool), 5000, 7, mode="exact", generator=generator())  # 2 per permutation
    ids = pool.event_id[rows]
    assert all(len(set(row.tolist())) == 5000 for row in ids)
    counts = draw_counts(pool, 5000, 7, mode="exact", generator=generator(), via="events")
    by_hand = torch.stack([torch.bincount(pool.bin_index[r].long(), minlength=900) for r in rows])
    assert torch.equal(counts, by_hand.float())


def test_multinomial_rows_do_repeat_events(background):
    rows = draw_event_indices(len(background.train), 5000, 4, mode="multinomial", generator=generator())
    assert any(len(set(row.tolist())) < 5000 for row in rows)


def test_train_val_and_test_histograms_share_no_event(background):
    ids = {}
    for split in ("train", "val", "test"):
        pool = background[split]
        rows = draw_event_indices(len(pool), 1000, 20, mode="exact", generator=generator())
        ids[split] = set(pool.event_id[rows].flatten().tolist())
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]


def test_more_events_than_the_pool_holds_is_refused(background):
    size = len(background.test)
    refused = r"distinct events .*; lower n_background or snr, or give a larger sample$"  # never another mode
    for draw in (lambda: draw_event_indices(size, size + 1, 1), lambda: draw_counts(background.test, size + 1, 1)):
        with pytest.raises(ValueError, match=refused):
            draw()
    assert torch.all(draw_counts(background.test, size, 3).sum(dim=1) == size)  # the whole pool: allowed


def _chi_square_of_mean(counts, frequencies, n_draws):
    """p-value of the summed histograms against n_draws * frequencies per histogram (sparse bins lumped)."""
    return _chi_square(counts.double().sum(dim=0).numpy(), (frequencies.double() * n_draws * len(counts)).numpy())


def _chi_square(observed, expected, minimum=20):
    """Pearson chi-square p-value, bins expecting fewer than ``minimum`` lumped together (dropped if empty)."""
    keep = expected >= minimum
    lump_observed, lump_expected = observed[~keep].sum(), expected[~keep].sum()
    assert lump_expected > 0 or lump_observed == 0  # nothing where nothing is expected
    if lump_expected > 0:
        observed, expected = np.append(observed[keep], lump_observed), np.append(expected[keep], lump_expected)
    else:
        observed, expected = observed[keep], expected[keep]
    return stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue


@pytest.mark.parametrize("via", ["counts", "events"])
@pytest.mark.parametrize("mode", ["exact", "multinomial", "poisson"])
def test_mean_histogram_matches_the_pool(background, mode, via):
    if via == "events" and mode == "poisson":
        with pytest.raises(ValueError, match="poisson"):
            draw_counts(background.train, 500, 1, mode=mode, via=via)
        return
    pool = background.train
    counts = draw_counts(pool, 500, 4000, mode=mode, generator=generator(5), via=via)
    assert _chi_square_of_mean(counts, bin_frequencies(pool), 500) > P_MIN


def test_mixture_mean_is_background_plus_signal(background, signal):
    counts = draw_mixture(background.train, signal.train, 800, 200, 3000, generator=generator(6))
    frequencies = (800 * bin_frequencies(background.train) + 200 * bin_frequencies(signal.train)) / 1000
    assert _chi_square_of_mean(counts, frequencies, 1000) > P_MIN


@pytest.mark.parametrize("via", ["counts", "events"])
@pytest.mark.parametrize("mode, finite_pool", [("exact", True), ("multinomial", False)])
def test_bin_variance_has_the_finite_pool_factor(mode, finite_pool, via):
    """Drawing K of N without replacement: var = K f (1 - f) (N - K) / (N - 1); with replacement: no factor."""
    pool = build_pools(**synthetic_leading_jets(4000, seed=3), fractions=(0.5, 0.25, 0.25)).train
    n_draws, n_histograms = len(pool) // 2, 3000
    counts = draw_counts(pool, n_draws, n_histograms, mode=mode, generator=generator(7), via=via).double()
    f = bin_frequencies(pool)
    for b in torch.argsort(f, descending=True)[:3]:  # the fullest bins
        factor = (len(pool) - n_draws) / (len(pool) - 1) if finite_pool else 1.0
        variance = n_draws * f[b] * (1 - f[b]) * factor
        statistic = (n_histograms - 1) * counts[:, b].var() / variance  # ~ chi2(n - 1) if the law is right
        p = stats.chi2.cdf(statistic.item(), n_histograms - 1)
        assert P_MIN < p < 1 - P_MIN, (mode, via, int(b), p)


def test_exact_count_sampler_matches_the_hypergeometric_law():
    """One split of the tree against scipy's pmf, at several sizes (chi-square)."""
    for good, bad, draws in [(5, 7, 4), (3, 100, 10), (400, 300, 350), (2000, 50_000, 5000)]:
        counts = sample_counts(torch.tensor([good, bad]), draws, 40_000, generator=generator(good))[:, 0].long()
        support = np.arange(max(0, draws - bad), min(good, draws) + 1)
        expected = stats.hypergeom(good + bad, good, draws).pmf(support) * len(counts)
        observed = np.bincount(counts.numpy() - support[0], minlength=len(support))
        assert _chi_square(observed, expected, minimum=10) > P_MIN, (good, bad, draws)


@pytest.mark.parametrize("mode", ["exact", "multinomial", "poisson"])
@pytest.mark.parametrize("sizes, n_histograms, pool_events", [
    ([300, 10, 1500, 0], 3000, 4000),  # events from chunks of permutations; 1500 of 2000: a strong finite-pool factor
    ([8, 2, 5], 2000, 200_000),        # few events from a large pool: redrawn picks
])
def test_nested_counts_give_every_size_its_own_law(mode, sizes, n_histograms, pool_events):
    """The grid trainer's additions: the counts of each size have the mean and bin variance of draws of that size
    alone (the first events of a row are a uniform subset), and the sizes nest."""
    pool = build_pools(**synthetic_leading_jets(pool_events, seed=3), fractions=(0.5, 0.25, 0.25)).train
    nested = draw_nested_counts(pool, sizes, n_histograms, mode=mode, generator=generator(11)).double()
    f = bin_frequencies(pool)
    for counts, size in zip(nested, sizes):
        if mode != "poisson":
            assert torch.all(counts.sum(dim=1) == size)
        if size == 0:
            assert not counts.any()
            continue
        assert _chi_square_of_mean(counts, f, size) > P_MIN, (mode, size)
        if size >= 300:
            factor = (len(pool) - size) / (len(pool) - 1) if mode == "exact" else 1.0
            for b in torch.argsort(f, descending=True)[:3]:
                variance = size * f[b] * ((1 - f[b]) * factor if mode != "poisson" else 1.0)
                p = stats.chi2.cdf(((n_histograms - 1) * counts[:, b].var() / variance).item(), n_histograms - 1)
                assert P_MIN < p < 1 - P_MIN, (mode, size, int(b), p)
    by_size = nested[torch.argsort(torch.tensor(sizes))]
    assert torch.all(by_size[1:] >= by_size[:-1])  # a larger size holds the smaller ones' events


@pytest.mark.parametrize("mode", ["exact", "multinomial"])
def test_degenerate_pools(mode):
    one_bin = sample_counts(torch.tensor([0, 5, 0]), 3, 4, mode=mode)
    assert torch.equal(one_bin, torch.tensor([[0.0, 3.0, 0.0]] * 4))
    whole = sample_counts(torch.tensor([2, 0, 7, 1]), 10, 3, mode="exact")
    assert torch.equal(whole, torch.tensor([[2.0, 0.0, 7.0, 1.0]] * 3))  # every event of the pool
    assert torch.equal(sample_counts(torch.tensor([2, 3]), 0, 2, mode=mode), torch.zeros(2, 2))


@pytest.mark.parametrize("mode", ["exact", "multinomial", "poisson"])
def test_same_seed_same_histograms(background, mode):
    first, again, other = (draw_counts(background.train, 1000, 50, mode=mode, generator=generator(seed))
                           for seed in (1, 1, 2))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_same_seed_same_events(background):
    first, again, other = (draw_event_indices(len(background.train), 100, 5, generator=generator(seed))
                           for seed in (1, 1, 2))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_normalisations():
    counts = torch.tensor([[0.0, 2.0, 6.0], [0.0, 0.0, 0.0]])
    assert torch.equal(normalise(counts, "max"), torch.tensor([[0.0, 1 / 3, 1.0], [0.0, 0.0, 0.0]]))
    assert torch.allclose(normalise(counts, "sum")[0], torch.tensor([0.0, 0.25, 0.75]))
    assert torch.equal(normalise(counts, "none"), counts)
    with pytest.raises(ValueError, match="normalisation"):
        normalise(counts, "l2")


@pytest.mark.parametrize("task, signals, labels", [
    ("binary", ["a"], {0: 60, 1: 60}),
    ("multimodel", ["a", "b", "c"], {0: 30, 1: 90}),
    ("multiclass", ["a", "b", "c"], {0: 30, 1: 30, 2: 30, 3: 30}),
    ("model_vs_model", ["a", "b"], {0: 60, 1: 60}),
])
def test_task_batches(background, signal, task, signals, labels):
    spec = make_task(task, signals)
    counts, y = draw_histograms(spec, background.train, {s: signal.train for s in signals}, 1000, 50, 120,
                                generator=generator())
    assert counts.shape == (120, 900) and torch.all(counts.sum(dim=1) == 1050)
    assert y.dtype == (torch.int64 if task == "multiclass" else torch.float32)
    assert {int(k): int(v) for k, v in zip(*torch.unique(y, return_counts=True))} == labels


def test_model_vs_model_labels_the_first_signal_one(background):
    hard = build_pools(**synthetic_leading_jets(20_000, pt_slope=600.0, seed=4), name="hard")
    soft = build_pools(**synthetic_leading_jets(20_000, pt_slope=121.0, seed=5), name="soft")
    counts, y = draw_histograms(make_task("model_vs_model", ["hard", "soft"]), background.train,
                                {"hard": hard.train, "soft": soft.train}, 100, 400, 200, generator=generator())
    mean_pt_bin = (counts * torch.arange(900).div(30, rounding_mode="floor")).sum(1) / counts.sum(1)
    assert mean_pt_bin[y == 1].mean() > mean_pt_bin[y == 0].mean() + 1


@pytest.mark.parametrize("task, signals, match", [
    ("binary", ["a", "b"], "exactly 1"), ("model_vs_model", ["a"], "exactly 2"),
    ("multiclass", ["a"], "at least 2"), ("regression", ["a"], "task"), ("binary", ["a", "a"], "differ"),
])
def test_task_checks(task, signals, match):
    with pytest.raises(ValueError, match=match):
        make_task(task, signals)


def test_stable_sort_of_rows_is_torchs_stable_sort():
    """The redraw sampler's sort (numpy on unique keys) gives torch's stable sort: values and where each came from,
    equal values in their original order (many repeats here)."""
    rows = torch.randint(50, (64, 300), generator=generator(3))
    ordered, where = _stable_sort_rows(rows)
    expected = torch.sort(rows, dim=1, stable=True)
    assert torch.equal(ordered, expected.values) and torch.equal(where, expected.indices)
