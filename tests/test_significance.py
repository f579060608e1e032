"""Significance: p-values and Z, the Asimov formula and the expected AUC against hand computations and Poisson
pseudo-experiments, uniform SM-only p-values, Z growing like S/sqrt(B)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from synthetic import synthetic_leading_jets

from dmlhc.data.ensembles import make_task
from dmlhc.data.pools import build_pools
from dmlhc.optimal import LikelihoodRatio, auc, bin_probabilities, class_probabilities
from dmlhc.significance import (
    PoissonLikelihoodRatio,
    asimov_significance,
    draw_pseudo_data,
    expected_auc,
    expected_counts,
    luminosity_for_significance,
    p_from_z,
    pseudo_experiments,
    z_from_p,
)

# A toy of four bins with s << b (s/b <= 3%) and Z near 2: there the Asimov Z, the Gaussian limit of the linear
# statistic and the pseudo-experiments agree to O(s/b) ~ 1%, below the pseudo-experiments' noise.
TOY_B = torch.tensor([16000.0, 10000.0, 6000.0, 3200.0])
TOY_S = torch.tensor([40.0, 60.0, 80.0, 90.0])
N_EXPERIMENTS = 20_000


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _toy_experiments(b: torch.Tensor, s: torch.Tensor, n: int = N_EXPERIMENTS, seed: int = 0, **options):
    return pseudo_experiments(PoissonLikelihoodRatio(b, s), b, s, float(b.sum()), float(s.sum()), n,
                              generator=_generator(seed), **options)


def test_z_and_p_are_one_sided_normal_quantiles():
    for z in (-2.0, 0.0, 1.0, 3.0, 5.0, 8.0, 30.0):
        assert p_from_z(z) == pytest.approx(stats.norm.sf(z), rel=1e-12)
        assert z_from_p(p_from_z(z)) == pytest.approx(z, rel=1e-9, abs=1e-12)
    assert z_from_p(0.5) == 0.0
    assert z_from_p(2.866515718791939e-07) == pytest.approx(5.0, rel=1e-9)  # the 5 sigma convention
    assert z_from_p(1e-300) == pytest.approx(stats.norm.isf(1e-300), rel=1e-9)  # no rounding of 1 - p
    assert z_from_p(1.0) == -math.inf
    values = torch.tensor([0.5, 0.0013498980316301, 1e-12], dtype=torch.float64)
    assert torch.allclose(z_from_p(values), torch.tensor(stats.norm.isf(values.numpy())), rtol=1e-9)
    for bad in (0.0, -0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            z_from_p(bad)


def test_asimov_significance_and_luminosity_against_a_hand_computation():
    # Bins (b, s) = (100, 10), (25, 5), (50, 0) at L = 300 fb^-1:
    #   (110) ln 1.1 - 10 = 110 x 0.0953101798 - 10 = 0.4841197784
    #   (30) ln 1.2 - 5 = 30 x 0.1823215568 - 5 = 0.4696467040
    #   (50) ln 1 - 0 = 0
    #   Z_A^2 = 2 x 0.9537664824 = 1.9075329648, Z_A = 1.3811346656
    #   L(Z = 3) = 300 x 3^2 / 1.9075329648 = 1415.4408 fb^-1, L(Z = 5) = 300 x 5^2 / 1.9075329648 = 3931.7800 fb^-1
    b, s = torch.tensor([100.0, 25.0, 50.0], dtype=torch.float64), torch.tensor([10.0, 5.0, 0.0], dtype=torch.float64)
    assert asimov_significance(b, s) == pytest.approx(1.3811346656, rel=1e-9)
    assert luminosity_for_significance(3.0, b, s, 300.0) == pytest.approx(1415.4408, rel=1e-7)
    assert luminosity_for_significance(5.0, b, s, 300.0) == pytest.approx(3931.7800, rel=1e-7)
    # exactly sqrt(L) when b and s both grow with L: at L(Z = 3) the Z is 3
    scale = 1415.4408076 / 300.0
    assert asimov_significance(scale * b, scale * s) == pytest.approx(3.0, rel=1e-9)
    assert asimov_significance(4 * b, 4 * s) == pytest.approx(2 * 1.3811346656, rel=1e-9)
    with pytest.raises(ValueError, match="no signal"):
        luminosity_for_significance(3.0, b, torch.zeros(3), 300.0)


def test_expected_auc_against_a_hand_computation():
    # t = h1 ln 1.1 + h2 ln 1.2; mean difference 10 ln 1.1 + 5 ln 1.2 = 1.8647102; var_0 = 100 ln^2 1.1 + 25 ln^2 1.2
    # = 1.7394313, var_1 = 110 ln^2 1.1 + 30 ln^2 1.2 = 1.9964772; AUC = Phi(1.8647102 / sqrt(3.7359085)) = 0.8326640
    b, s = torch.tensor([100.0, 25.0]), torch.tensor([10.0, 5.0])
    assert expected_auc(b, s) == pytest.approx(0.8326640, abs=1e-7)
    assert expected_auc(b, torch.zeros(2)) == 0.5


def test_expected_counts_use_the_optimums_bin_probabilities():
    background, signal = torch.tensor([30, 0, 10]), torch.tensor([0, 5, 5])
    b, s = expected_counts(background, signal, 400.0, 20.0, pseudo_count=0.5)
    assert torch.allclose(b, 400.0 * bin_probabilities(background, 0.5))
    assert torch.allclose(s, 20.0 * bin_probabilities(signal, 0.5))
    assert float(b.sum()) == pytest.approx(400.0) and float(s.sum()) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="b > 0"):
        asimov_significance(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))  # a bin without pseudo-count


def test_the_poisson_statistic_ranks_fixed_total_histograms_as_the_optimum_does():
    """optimal.LikelihoodRatio is the fixed-total form: for histograms of N events it is the Poisson score minus
    N log(1 + S/B)."""
    p, q = bin_probabilities(torch.tensor([50, 30, 15, 5])), bin_probabilities(torch.tensor([10, 20, 30, 40]))
    n_background, n_signal = 1000, 60
    counts = torch.poisson(torch.full((7, 4), 265.0), generator=_generator())
    optimum = LikelihoodRatio(class_probabilities(make_task("binary", ["x"]), p, {"x": q}, n_background, n_signal))
    poisson = PoissonLikelihoodRatio(n_background * p, n_signal * q)
    shift = counts.sum(dim=1).double() * math.log1p(n_signal / n_background)
    assert torch.allclose(optimum.scores(counts), poisson(counts) - shift, rtol=1e-12, atol=1e-9)


def test_pseudo_experiments_agree_with_the_asimov_z_and_the_expected_auc():
    result = _toy_experiments(TOY_B, TOY_S)
    assert result.n_experiments == N_EXPERIMENTS and not result.median_beyond_tail
    assert 0.01 < result.median_z_std < 0.05
    assert abs(result.median_z - asimov_significance(TOY_B, TOY_S)) < 3 * result.median_z_std
    labels = torch.cat([torch.zeros(N_EXPERIMENTS), torch.ones(N_EXPERIMENTS)])
    empirical = auc(torch.cat([result.null_scores, result.signal_scores]), labels)
    assert empirical == pytest.approx(expected_auc(TOY_B, TOY_S), abs=0.008)  # AUC noise ~0.0027 at 20k + 20k


def test_sm_only_p_values_are_uniform():
    result = _toy_experiments(TOY_B, TOY_S)
    fresh = draw_pseudo_data(TOY_B, None, float(TOY_B.sum()), 0.0, 2000, generator=_generator(1))
    p_values = result.p_values(PoissonLikelihoodRatio(TOY_B, TOY_S)(fresh))
    assert stats.kstest(p_values.numpy(), "uniform").pvalue > 0.01
    # SM + signal p-values are not: the signal is seen
    fresh_signal = draw_pseudo_data(TOY_B, TOY_S, float(TOY_B.sum()), float(TOY_S.sum()), 2000, generator=_generator(2))
    assert stats.kstest(result.p_values(PoissonLikelihoodRatio(TOY_B, TOY_S)(fresh_signal)).numpy(),
                        "uniform").pvalue < 1e-6


@pytest.mark.parametrize("mode", ["poisson", "exact"])
def test_sm_only_p_values_from_held_out_pools_are_uniform(mode):
    """Pseudo-experiments drawn from event pools (draw_counts), scored with weights from the train pools."""
    background = build_pools(**synthetic_leading_jets(40_000, seed=1), name="background")
    signal = build_pools(**synthetic_leading_jets(20_000, pt_slope=250.0, eta_width=1.0, seed=2), name="signal")
    n_background, n_signal = 500, 30  # K < 2 x occupied bins: exact draws take the (fast) events path
    b, s = expected_counts(background.train.bin_counts, signal.train.bin_counts, n_background, n_signal)
    score = PoissonLikelihoodRatio(b, s)
    result = pseudo_experiments(score, background.test, signal.test, n_background, n_signal, 4000, mode=mode,
                                generator=_generator(3))
    fresh = draw_pseudo_data(background.test, None, n_background, 0, 1000, mode=mode, generator=_generator(4))
    if mode == "exact":
        assert bool((fresh.sum(dim=1) == n_background).all())
    else:
        assert float(fresh.sum(dim=1).std()) == pytest.approx(math.sqrt(n_background), rel=0.1)  # Poisson totals
    assert stats.kstest(result.p_values(score(fresh)).numpy(), "uniform").pvalue > 0.01
    assert result.median_z > 1.0


def test_z_grows_like_s_over_sqrt_b():
    p, q = TOY_B / TOY_B.sum(), TOY_S / TOY_S.sum()
    asymptote = math.sqrt(float((q**2 / p).sum()))  # Z_A / (S / sqrt(B)) for S << B
    n_background = 1e6
    for n_signal in (100.0, 1000.0):  # S/B = 1e-4, 1e-3
        ratio = asimov_significance(n_background * p, n_signal * q) / (n_signal / math.sqrt(n_background))
        assert ratio == pytest.approx(asymptote, rel=2 * n_signal / n_background)
    # doubling S doubles the pseudo-experiments' median Z (B fixed)
    single, double = (_toy_experiments(TOY_B, k * TOY_S / 2, seed=5) for k in (1, 2))
    assert single.median_z == pytest.approx(1.0, rel=0.05)
    assert double.median_z / single.median_z == pytest.approx(2.0, rel=0.04)


def test_bootstrap_spread_matches_the_spread_over_seeds():
    runs = [_toy_experiments(TOY_B, TOY_S, n=2000, seed=10 + k, n_bootstrap=100) for k in range(12)]
    spread = torch.tensor([r.median_z for r in runs]).std().item()
    claimed = sum(r.median_z_std for r in runs) / len(runs)
    assert 0.5 < spread / claimed < 2.0


def test_beyond_the_tail_is_a_bound_not_zero_or_infinity():
    result = _toy_experiments(TOY_B, 30 * TOY_S, n=500)  # Z ~ 60: no SM-only score comes near
    assert result.median_beyond_tail
    assert result.median_z == pytest.approx(z_from_p(1 / 501))
    assert math.isfinite(result.median_z) and math.isnan(result.median_z_std)  # a bound has no spread
    assert "median Z >" in result.describe() and "run more SM-only pseudo-experiments" in result.describe()
    assert bool(result.beyond_tail(result.signal_scores).all())
    assert torch.allclose(result.p_values(result.signal_scores), torch.full((500,), 1 / 501, dtype=torch.float64))
    ordinary = _toy_experiments(TOY_B, TOY_S, n=500)
    assert not ordinary.median_beyond_tail and "+-" in ordinary.describe()


def test_bad_inputs():
    with pytest.raises(ValueError, match="only mode='poisson'"):
        draw_pseudo_data(TOY_B, TOY_S, 100.0, 10.0, 5, mode="exact")
    with pytest.raises(ValueError, match="at least one"):
        _toy_experiments(TOY_B, TOY_S, n=0)
    with pytest.raises(ValueError, match="shapes"):
        asimov_significance(TOY_B, TOY_S[:2])
