"""Significance: turning scores into p-values and Z.

Conventions: one-sided, Z = Phi^-1(1 - p) (p = 0.5 is Z = 0, p = 2.87e-7 is Z = 5).

Expected counts per bin are b_i = B p_i (background) and s_i = S q_i (signal), with p and q
the bin probabilities of :func:`dmlhc.optimal.bin_probabilities` (pseudo-count per bin). For
Poisson-fluctuating data (a real dataset: the totals fluctuate too) the likelihood ratio of
"SM + signal" against "SM only" is, up to a constant, linear in the counts h:

    log L(b + s) / L(b) = sum_i h_i w_i - S,    w_i = log(1 + s_i / b_i).

The optimum of :mod:`dmlhc.optimal` is the same statistic for histograms whose total is fixed
at B + S: its weights log((B p_i + S q_i) / ((B + S) p_i)) differ from w_i by a constant, so
both rank histograms of one total alike.

Two closed forms, both for Poisson data: :func:`asimov_significance`, the median discovery Z
of Cowan, Cranmer, Gross, Vitells (Eur. Phys. J. C 71, 1554 (2011)), and :func:`expected_auc`,
the AUC of the linear statistic in the Gaussian limit. For s_i << b_i both are functions of
sum_i s_i^2 / b_i = (S^2 / B) sum_i q_i^2 / p_i alone: Z_A -> (S / sqrt(B)) sqrt(sum q^2 / p),
which is why results are a function of S / sqrt(B) once B is large.

Pseudo-experiments (:func:`pseudo_experiments`) give the same for any scoring function, a
network's included: the SM-only score distribution turns a score into an empirical p-value
(k + 1) / (n + 1), k of the n SM-only scores being at least as large, and the median Z over
SM + signal pseudo-experiments is the expected discovery significance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import overload

import torch

from dmlhc.data.ensembles import Mode, draw_counts
from dmlhc.data.pools import EventPool
from dmlhc.optimal import DEFAULT_PSEUDO_COUNT, bin_probabilities

Scorer = Callable[[torch.Tensor], torch.Tensor]  # counts (H, n_bins) -> scores (H,), larger = more signal-like
Source = EventPool | torch.Tensor  # a held-out event pool, or bin probabilities (n_bins,)
SCORING_CHUNK = 4096  # pseudo-experiments drawn and scored at once


def p_from_z(z: float) -> float:
    """One-sided p-value of a significance ``z``: 1 - Phi(z) (accurate far in the tail)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@overload
def z_from_p(p: float) -> float: ...


@overload
def z_from_p(p: torch.Tensor) -> torch.Tensor: ...


def z_from_p(p: float | torch.Tensor) -> float | torch.Tensor:
    """One-sided significance Phi^-1(1 - p) of p-values in (0, 1] (p = 1 gives -inf); a tensor gives a tensor."""
    values = torch.as_tensor(p, dtype=torch.float64)
    if bool(((values <= 0) | (values > 1) | values.isnan()).any()):
        raise ValueError(f"p-values must be in (0, 1], got {p}")
    z = 0.0 - torch.special.ndtri(values)  # ndtri(p), not ndtri(1 - p): no rounding of 1 - p; 0.0 - : no -0.0
    return z if isinstance(p, torch.Tensor) else float(z)


def expected_counts(background_counts: torch.Tensor, signal_counts: torch.Tensor, n_background: float,
                    n_signal: float, pseudo_count: float = DEFAULT_PSEUDO_COUNT) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected counts b = B p and s = S q (float64) from the bin counts of a background and a signal sample."""
    return (n_background * bin_probabilities(background_counts, pseudo_count),
            n_signal * bin_probabilities(signal_counts, pseudo_count))


def _checked(b: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, s = torch.as_tensor(b, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    if b.shape != s.shape:
        raise ValueError(f"background and signal counts have shapes {tuple(b.shape)} and {tuple(s.shape)}")
    if not bool((b > 0).all()) or bool((s < 0).any()):
        raise ValueError("expected counts need b > 0 and s >= 0 in every bin (a pseudo-count makes b > 0)")
    return b, s


class PoissonLikelihoodRatio:
    """The likelihood-ratio score sum_i h_i log(1 + s_i / b_i) of count histograms (H, n_bins) (the constant -S
    left out): the most powerful test of SM + signal (b + s) against SM only (b) for Poisson data."""

    def __init__(self, b: torch.Tensor, s: torch.Tensor):
        b, s = _checked(b, s)
        self.weights = torch.log1p(s / b)

    def __call__(self, counts: torch.Tensor) -> torch.Tensor:
        return counts.double() @ self.weights.to(counts.device)


def asimov_significance(b: torch.Tensor, s: torch.Tensor) -> float:
    """Median discovery significance Z_A = sqrt(2 sum_i ((b_i + s_i) ln(1 + s_i / b_i) - s_i)) (Cowan et al.).

    It scales as sqrt(luminosity) when b and s both do, so Z reaches z at luminosity L (z / Z_A(L))^2
    (:func:`luminosity_for_significance`)."""
    b, s = _checked(b, s)
    terms = (b + s) * torch.log1p(s / b) - s
    return math.sqrt(max(2.0 * float(terms.sum()), 0.0))  # each term >= 0; max() only absorbs rounding


def luminosity_for_significance(z: float, b: torch.Tensor, s: torch.Tensor, luminosity: float) -> float:
    """The luminosity at which the Asimov Z reaches ``z``, given expected counts ``b``, ``s`` at ``luminosity``."""
    z_asimov = asimov_significance(b, s)
    if z_asimov == 0:
        raise ValueError("no signal (s = 0 in every bin): no luminosity reaches a significance")
    return luminosity * (z / z_asimov) ** 2


def expected_auc(b: torch.Tensor, s: torch.Tensor) -> float:
    """AUC of the likelihood-ratio score t = sum_i h_i w_i between SM-only (h ~ Poisson(b)) and SM + signal
    (h ~ Poisson(b + s)) histograms in the Gaussian limit: Phi((mu_1 - mu_0) / sqrt(var_0 + var_1))."""
    b, s = _checked(b, s)
    w = torch.log1p(s / b)
    separation = float((s * w).sum())  # mu_1 - mu_0
    spread = math.sqrt(float((b * w**2).sum() + ((b + s) * w**2).sum()))  # var_0 + var_1 (Poisson: var = mean)
    return 0.5 if spread == 0 else 1.0 - p_from_z(separation / spread)


# ----------------------------------------------------------------------------- pseudo-experiments


def _draw(source: Source, expected: float, n: int, mode: Mode, generator: torch.Generator | None) -> torch.Tensor:
    if isinstance(source, EventPool):
        return draw_counts(source, int(round(expected)), n, mode=mode, generator=generator).double()
    if mode != "poisson":
        raise ValueError(f"mode={mode!r} draws events from event pools; bin probabilities give only mode='poisson'")
    rates = (expected * source.double() / source.double().sum()).expand(n, -1).contiguous()
    return torch.poisson(rates, generator=generator)


def draw_pseudo_data(background: Source, signal: Source | None, n_background: float, n_signal: float,
                     n_experiments: int, *, mode: Mode = "poisson",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Counts (n_experiments, n_bins) float64 of pseudo-datasets: ``n_background`` background events plus, unless
    ``signal`` is None, ``n_signal`` signal events. Sources are held-out event pools (drawn with
    :func:`~dmlhc.data.ensembles.draw_counts`; event numbers rounded) or bin probabilities (``poisson`` only).
    ``poisson`` (default): every bin Poisson-distributed, so the totals fluctuate as in real data."""
    counts = _draw(background, n_background, n_experiments, mode, generator)
    if signal is not None and n_signal > 0:
        counts += _draw(signal, n_signal, n_experiments, mode, generator)
    return counts


def _scores(score: Scorer, background: Source, signal: Source | None, n_background: float, n_signal: float,
            n_experiments: int, mode: Mode, generator: torch.Generator | None) -> torch.Tensor:
    chunks = []
    for start in range(0, n_experiments, SCORING_CHUNK):
        counts = draw_pseudo_data(background, signal, n_background, n_signal,
                                  min(SCORING_CHUNK, n_experiments - start), mode=mode, generator=generator)
        chunks.append(score(counts).double().flatten())
    return torch.cat(chunks)


def _exceeding(sorted_null: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """How many of the sorted SM-only scores (last axis) are >= each score."""
    return sorted_null.shape[-1] - torch.searchsorted(sorted_null, scores, side="left")


@dataclass(frozen=True)
class PseudoExperiments:
    """SM-only scores (sorted), SM + signal scores, and the median Z over the SM + signal pseudo-experiments.

    ``median_z_std``: its bootstrap spread (both score sets resampled; nan without bootstrap).
    ``median_beyond_tail``: the median SM + signal score is above every SM-only score, so its p-value is only
    known to be below 1 / (n + 1), ``median_z`` is a lower bound and ``median_z_std`` is nan (run more
    pseudo-experiments)."""

    null_scores: torch.Tensor = field(repr=False)
    signal_scores: torch.Tensor = field(repr=False)
    median_z: float
    median_z_std: float
    median_beyond_tail: bool

    @property
    def n_experiments(self) -> int:
        """SM-only pseudo-experiments (the p-values' resolution is 1 / (n + 1))."""
        return len(self.null_scores)

    @property
    def smallest_p(self) -> float:
        """The smallest p-value they can give, 1 / (n + 1): a score beyond every SM-only one has p < about that."""
        return 1.0 / (self.n_experiments + 1)

    def p_values(self, scores: torch.Tensor) -> torch.Tensor:
        """Empirical p-values (k + 1) / (n + 1) of ``scores``; where :meth:`beyond_tail` is true, an upper bound."""
        k = _exceeding(self.null_scores, scores.double().to(self.null_scores.device))
        return (k + 1).double() / (self.n_experiments + 1)

    def beyond_tail(self, scores: torch.Tensor) -> torch.Tensor:
        """Whether each score is above every SM-only score (p < 1 / (n + 1): its p-value and Z are bounds)."""
        return _exceeding(self.null_scores, scores.double().to(self.null_scores.device)) == 0

    def z_values(self, scores: torch.Tensor) -> torch.Tensor:
        """Z of ``scores`` (lower bounds where :meth:`beyond_tail` is true)."""
        return z_from_p(self.p_values(scores))

    def describe(self) -> str:
        """The median Z as a sentence, saying when it is only a bound."""
        counts = f"{self.n_experiments} SM-only and {len(self.signal_scores)} SM + signal pseudo-experiments"
        if self.median_beyond_tail:
            return (f"median Z > {self.median_z:.2f}: the median SM + signal score is above all "
                    f"{self.n_experiments} SM-only scores (p < {self.smallest_p:.2g}; {counts}); run more "
                    "SM-only pseudo-experiments for a value")
        return f"median Z = {self.median_z:.3f} +- {self.median_z_std:.3f} ({counts})"


def pseudo_experiments(score: Scorer, background: Source, signal: Source, n_background: float, n_signal: float,
                       n_experiments: int, *, n_signal_experiments: int | None = None, mode: Mode = "poisson",
                       n_bootstrap: int = 200, generator: torch.Generator | None = None) -> PseudoExperiments:
    """Score ``n_experiments`` SM-only pseudo-datasets (B background events) and ``n_signal_experiments``
    (default: as many) SM + signal ones (B + S), drawn by :func:`draw_pseudo_data` from held-out pools or bin
    probabilities, and give the SM-only distribution and the median Z of SM + signal. SM-only data hold B
    expected events, as real data without a signal would (the training's SM-only histograms hold B + S)."""
    n_signal_experiments = n_experiments if n_signal_experiments is None else n_signal_experiments
    if n_experiments < 1 or n_signal_experiments < 1:
        raise ValueError(f"need at least one pseudo-experiment of each kind, got {n_experiments} SM-only and "
                         f"{n_signal_experiments} SM + signal")
    null = torch.sort(_scores(score, background, None, n_background, 0.0, n_experiments, mode, generator)).values
    with_signal = _scores(score, background, signal, n_background, n_signal, n_signal_experiments, mode, generator)

    def median_z(sorted_null: torch.Tensor, signal_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        median = signal_scores.median(dim=-1, keepdim=True).values  # p falls with the score: p(median) = median p
        k = _exceeding(sorted_null, median).squeeze(-1)
        return z_from_p((k + 1).double() / (sorted_null.shape[-1] + 1)), k == 0

    central, beyond = median_z(null, with_signal)
    spread = math.nan
    if n_bootstrap > 1 and not beyond:
        null_replicas = torch.sort(null[torch.randint(len(null), (n_bootstrap, len(null)), generator=generator,
                                                      device=null.device)]).values
        signal_replicas = with_signal[torch.randint(len(with_signal), (n_bootstrap, len(with_signal)),
                                                    generator=generator, device=with_signal.device)]
        spread = float(median_z(null_replicas, signal_replicas)[0].std())
    return PseudoExperiments(null, with_signal, float(central), spread, bool(beyond))
