"""The optimum: the likelihood-ratio statistic, tie-aware AUC, null control, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from synthetic import synthetic_leading_jets

from dmlhc.data.ensembles import draw_histograms, make_task, sample_counts
from dmlhc.data.pools import build_pools
from dmlhc.optimal import LikelihoodRatio, auc, bin_probabilities, class_probabilities, optimal_auc, row_aucs

B = 1000


@pytest.fixture(scope="module")
def pools():
    return {
        "background": build_pools(**synthetic_leading_jets(20_000, seed=1), name="background"),
        "signal": build_pools(**synthetic_leading_jets(20_000, pt_slope=250.0, eta_width=1.0, seed=2), name="signal"),
        # a "signal" that is more background, from the same law as the background pools
        "null": build_pools(**synthetic_leading_jets(20_000, seed=3), name="null"),
    }


def test_tie_aware_auc():
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    assert auc(torch.full((6,), 3.0), labels) == 0.5  # a constant score, exactly
    assert auc(torch.tensor([0.1, 0.9, 0.2, 0.8, 0.7, 0.3]), labels) == 1.0
    assert auc(-torch.tensor([0.1, 0.9, 0.2, 0.8, 0.7, 0.3]), labels) == 0.0
    # positives 1.0, 0.5, 1.0 against negatives 0.0, 0.5, 0.0: 3 + (2 + one tie) + 3 = 8.5 of 9 pairs
    assert auc(torch.tensor([0.0, 1.0, 0.5, 0.5, 1.0, 0.0]), labels) == pytest.approx(8.5 / 9, abs=1e-15)


def test_row_aucs_give_every_rows_auc_as_torchmetrics_does():
    from torchmetrics.functional.classification import binary_auroc

    generator = torch.Generator().manual_seed(0)
    labels = (torch.rand(3000, generator=generator) > 0.4).float()
    scores = torch.sigmoid(3 * torch.randn(4, 3000, generator=generator) + labels)
    scores[1] = torch.round(scores[1] * 10) / 10  # many ties
    scores[2] = torch.where(labels > 0, 0.9, 0.2)  # separated: exactly 1
    scores[3] = 0.5  # constant: exactly 0.5
    rows = row_aucs(scores, labels)
    assert [float(rows[k]) for k in range(4)] == [auc(scores[k], labels) for k in range(4)]
    assert rows[2] == 1.0 and rows[3] == 0.5
    assert float(row_aucs(scores[:1], labels)[0]) == auc(scores[0], labels)  # no ties: ranks are positions
    for k in range(4):
        assert float(rows[k]) == pytest.approx(float(binary_auroc(scores[k], labels.long())), abs=1e-6)


def test_auc_is_the_mann_whitney_statistic_with_ties():
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 500), rng.integers(0, 2, 500)
    u = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    expected = u / ((labels == 1).sum() * (labels == 0).sum())
    assert auc(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(expected, abs=1e-12)


def test_large_scores_are_not_squashed_into_ties():
    """Log-likelihood ratios of hundreds would all be 1.0 after a sigmoid; ranks keep them apart."""
    labels = torch.tensor([0, 0, 1, 1])
    assert auc(torch.tensor([500.0, 501.0, 502.0, 503.0]), labels) == 1.0


def test_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        auc(torch.rand(5), torch.ones(5))


def test_binary_score_is_the_likelihood_ratio_formula(pools):
    p = bin_probabilities(pools["background"].train.bin_counts)
    q = bin_probabilities(pools["signal"].train.bin_counts)
    n_signal = 60
    counts = torch.poisson(torch.full((5, 900), 2.0), generator=torch.Generator().manual_seed(0))
    scorer = LikelihoodRatio(class_probabilities(make_task("binary", ["s"]), p, {"s": q}, B, n_signal))
    h, p_, q_ = counts.double().numpy(), p.numpy(), q.numpy()
    expected = (h * np.log((B * p_ + n_signal * q_) / ((B + n_signal) * p_))).sum(axis=1)
    np.testing.assert_allclose(scorer.scores(counts).numpy(), expected, rtol=1e-10)


def test_empty_bins_keep_the_statistic_finite():
    p = bin_probabilities(torch.tensor([10, 0, 0, 5]))  # bin 1: p = 0 < q; bin 2: empty in both
    q = bin_probabilities(torch.tensor([3, 4, 0, 1]))
    assert torch.all(p > 0)
    scorer = LikelihoodRatio([p[None], ((B * p + 10 * q) / (B + 10))[None]])
    assert torch.isfinite(scorer.scores(torch.tensor([[3.0, 2.0, 0.0, 1.0]]))).all()
    with pytest.raises(ValueError, match="pseudo_count"):
        bin_probabilities(torch.tensor([1, 2]), -1.0)


def _test_set(pools, signal, snr, n=600, seed=0):
    task = make_task("binary", [signal])
    n_signal = int(round(snr * np.sqrt(B)))
    counts, labels = draw_histograms(task, pools["background"].test, {signal: pools[signal].test}, B, n_signal, n,
                                     generator=torch.Generator().manual_seed(seed))
    return counts, labels, task, n_signal


def _optimal(pools, signal, snr, **options):
    counts, labels, task, n_signal = _test_set(pools, signal, snr)
    return optimal_auc(counts, labels, task, pools["background"].train.bin_counts,
                       {signal: pools[signal].train.bin_counts}, B, n_signal, **options)


def test_optimal_auc_rises_with_snr_and_is_a_coin_flip_without_signal(pools):
    aucs = [_optimal(pools, "signal", snr).auc for snr in (0.0, 0.5, 1.5, 4.0)]
    assert aucs == sorted(aucs)
    assert abs(aucs[0] - 0.5) < 0.06  # ~2.5 sigma for 300 + 300 histograms
    assert aucs[-1] > 0.95


def test_null_control_held_out_background_as_signal(pools):
    """'Signal' events from the background's law: nothing to find, even at a large S/sqrt(B)."""
    assert abs(_optimal(pools, "null", 4.0).auc - 0.5) < 0.06
    assert _optimal(pools, "signal", 4.0).auc > 0.95


def test_mixture_of_identical_models_equals_the_single_model(pools):
    p = bin_probabilities(pools["background"].train.bin_counts)
    q = bin_probabilities(pools["signal"].train.bin_counts)
    counts = _test_set(pools, "signal", 1.0)[0]
    single = LikelihoodRatio(class_probabilities(make_task("binary", ["a"]), p, {"a": q}, B, 30)).scores(counts)
    mixture = LikelihoodRatio(class_probabilities(make_task("multimodel", ["a", "b"]), p, {"a": q, "b": q}, B, 30))
    torch.testing.assert_close(mixture.scores(counts), single, rtol=1e-12, atol=1e-9)


def test_multiclass_gives_one_vs_rest_aucs(pools):
    task = make_task("multiclass", ["signal", "null"])
    signals = {name: pools[name].test for name in ("signal", "null")}
    counts, labels = draw_histograms(task, pools["background"].test, signals, B, 120, 900,
                                     generator=torch.Generator().manual_seed(1))
    result = optimal_auc(counts, labels, task, pools["background"].train.bin_counts,
                         {name: pools[name].train.bin_counts for name in signals}, B, 120)
    sm_only, signal, null = result.per_class
    assert signal > 0.95
    # SM-only and SM + null look alike: each tells the other apart at 0.5 and SM + signal at ~1
    assert abs(sm_only - 0.75) < 0.05 and abs(null - 0.75) < 0.05
    assert result.auc == pytest.approx((sm_only + signal + null) / 3)


def test_many_ratios_in_one_product_score_as_each_alone(pools):
    """scores_of_many (the pseudo-count scan and the bootstrap replicas in one matrix product, on the occupied bins)
    gives every ratio's own scores, binary and multiclass; the bootstrap spread is the replicas' AUCs' std."""
    from dmlhc.optimal import plug_in_likelihood_ratio, scores_of_many

    background = pools["background"].train.bin_counts
    for task, signals in ((make_task("binary", ["signal"]), ["signal"]),
                          (make_task("multiclass", ["signal", "null"]), ["signal", "null"])):
        counts, labels = draw_histograms(task, pools["background"].test, {n: pools[n].test for n in signals}, B, 60,
                                         300, generator=torch.Generator().manual_seed(5))
        ratios = [plug_in_likelihood_ratio(task, background, {n: pools[n].train.bin_counts for n in signals}, B, 60,
                                           alpha) for alpha in (0.1, 2.0, 50.0)]
        for together, ratio in zip(scores_of_many(ratios, counts), ratios):
            torch.testing.assert_close(together, ratio.scores(counts), rtol=1e-12, atol=1e-9)
    counts, labels, task, n_signal = _test_set(pools, "signal", 0.5)
    result = _optimal(pools, "signal", 0.5, n_bootstrap=5, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)  # the replicas optimal_auc draws: background's, then signal's
    signal = pools["signal"].train.bin_counts
    replicas = [sample_counts(c, int(c.sum()), 5, mode="multinomial", generator=generator)
                for c in (background, signal)]
    alone = [optimal_auc(counts, labels, task, replicas[0][b], {"signal": replicas[1][b]}, B, n_signal).auc
             for b in range(5)]
    assert result.std == pytest.approx(float(torch.tensor(alone).std()), rel=1e-9) and result.std > 0


def test_bootstrap_over_pools_gives_a_small_reproducible_spread(pools):
    options = dict(n_bootstrap=8)
    first = _optimal(pools, "signal", 0.5, generator=torch.Generator().manual_seed(0), **options)
    again = _optimal(pools, "signal", 0.5, generator=torch.Generator().manual_seed(0), **options)
    assert first == again and first.n_bootstrap == 8
    assert 0 < first.std < 0.05


def test_the_pseudo_count_is_chosen_on_the_validation_set():
    """choose_pseudo_count returns the candidate with the best AUC on the data it is given."""
    from dmlhc.optimal import choose_pseudo_count, optimal_auc

    task = make_task("binary", ["s"])
    generator = torch.Generator().manual_seed(3)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.1, 0.2, 0.3, 0.4])
    background, signal = (torch.multinomial(r, 400, replacement=True, generator=generator).bincount(minlength=4)
                          for r in (p, q))
    counts = torch.cat([torch.multinomial(p, 200, True, generator=generator).bincount(minlength=4)[None]
                        for _ in range(200)]).float()
    labels = torch.zeros(200)
    extra = [torch.multinomial(p if k < 100 else q, 20, True, generator=generator).bincount(minlength=4)
             for k in range(200)]  # SM-only: B + S events of the background; SM + signal: B + S
    counts += torch.stack(extra).float()
    labels[100:] = 1
    candidates = (0.1, 1.0, 100.0)
    chosen = choose_pseudo_count(counts, labels, task, background, {"s": signal}, 200, 20, candidates)
    aucs = {a: optimal_auc(counts, labels, task, background, {"s": signal}, 200, 20, pseudo_count=a).auc
            for a in candidates}
    assert aucs[chosen] == max(aucs.values())
