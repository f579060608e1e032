"""Histogram ensembles drawn on the device: B background + S signal events per histogram.

A histogram mixes ``n_background`` = B background events and ``n_signal`` = S =
round(snr * sqrt(B)) signal events; its SM-only counterpart has B + S background
events. Events come from one split's pools (:mod:`dmlhc.data.pools`), so train, val and
test histograms never share an event.

Sampling modes (what a histogram of K events from a pool of N events is):

``exact``
    K distinct events, a uniformly random K-subset of the pool (the paper's): no
    event twice inside one histogram, an event may appear in several histograms.
    Bin counts follow the multivariate hypergeometric law, whose variances are the
    multinomial ones times the finite-pool factor (N - K) / (N - 1): a pool only a
    few times K makes histograms look less noisy than real data and inflates AUCs,
    so keep N/K large (docs/method.md).
``multinomial``
    K events drawn with replacement: bin counts are multinomial(K, pool frequencies),
    the law of K independent events from a distribution equal to the pool's.
``poisson``
    Each bin is Poisson(K * pool frequency), independently: the total fluctuates
    around K as in an observed dataset (B and S Poisson-distributed).

Two samplers give the same laws. ``via="counts"`` draws the bin counts directly,
splitting the K draws down a binary tree over the occupied bins with exact
hypergeometric (exact) or binomial (multinomial) variates: O(n_bins) per histogram
whatever K, vectorised over histograms. ``via="events"`` draws the events
themselves (:func:`draw_event_indices`: disjoint chunks of fresh random
permutations for ``exact``) and histograms them with one ``index_add_``: O(K) per
histogram; it is the reference the tests compare against, and what event-level
tasks use. ``via="auto"`` (default) takes events when K is below
``EVENTS_BELOW_DRAWS_PER_BIN`` times the occupied bins, counts otherwise (the
crossover measured on a CPU by experiments/bench_ensembles.py).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from dmlhc.data.pools import EventPool

Mode = Literal["exact", "multinomial", "poisson"]
MODES = ("exact", "multinomial", "poisson")
NORMALISATIONS = ("max", "sum", "none")
TASKS = ("binary", "multimodel", "multiclass", "model_vs_model", "event")
EVENTS_BELOW_DRAWS_PER_BIN = 2


def n_signal_events(n_background: int, snr: float) -> int:
    """S = round(snr * sqrt(B)) signal events per histogram."""
    if snr < 0:
        raise ValueError(f"snr={snr}: S/sqrt(B) must be >= 0; set snr to a non-negative value")
    return int(round(snr * math.sqrt(n_background)))


# ----------------------------------------------------------------------------- events


def draw_event_indices(pool_size: int, n_draws: int, n_histograms: int, *, mode: Mode = "exact",
                       generator: torch.Generator | None = None,
                       device: str | torch.device | None = None, subsets: str = "permutation") -> torch.Tensor:
    """Pool rows of the events of ``n_histograms`` ensembles of ``n_draws`` events: (H, K) int64.

    ``exact``: each row is a uniformly random K-subset (no repeats). ``subsets="permutation"``:
    rows are disjoint chunks of fresh random permutations of the pool (rows cut from one
    permutation share no event); ``"redraw"``: K uniform picks per row, repeated picks drawn
    again until the row is distinct, O(K log K) per row instead of O(pool) per permutation,
    for K much smaller than the pool. Both are exactly uniform K-subsets (the procedures treat
    every event alike, so every K-subset is equally likely); they differ in speed and in
    whether rows may share events. ``multinomial``: rows drawn with replacement. ``poisson``
    has no fixed number of events; draw counts with :func:`draw_counts` instead.
    """
    _check_mode(mode)
    device = device if device is not None else (generator.device if generator is not None else "cpu")
    if mode == "poisson":
        raise ValueError("mode='poisson' has no fixed number of events per histogram; "
                         "use draw_counts(..., via='counts')")
    if mode == "multinomial":
        return torch.randint(pool_size, (n_histograms, n_draws), generator=generator, device=device)
    _check_pool_holds(pool_size, n_draws)
    if n_draws == 0:
        return torch.empty((n_histograms, 0), dtype=torch.int64, device=device)
    if subsets == "redraw":
        return _distinct_picks(pool_size, n_draws, n_histograms, generator, device)
    if subsets != "permutation":
        raise ValueError(f"subsets={subsets!r}: choose 'permutation' or 'redraw'")
    per_permutation = pool_size // n_draws
    chunks, remaining = [], n_histograms
    while remaining > 0:
        take = min(per_permutation, remaining)
        # int32 (pools < 2**31 events): the same permutation as int64, drawn ~1.6x faster on a CPU
        permutation = torch.randperm(pool_size, generator=generator, device=device,
                                     dtype=torch.int32 if pool_size < 2**31 else torch.int64)
        chunks.append(permutation[: take * n_draws].view(take, n_draws))
        remaining -= take
    return torch.cat(chunks).long() if chunks else torch.empty((0, n_draws), dtype=torch.int64, device=device)


def _distinct_picks(pool_size: int, n_draws: int, n_histograms: int, generator, device) -> torch.Tensor:
    """Uniform K-subsets of range(pool_size) as rows (H, K), in uniformly random order: uniform picks, every
    repeat of an earlier pick drawn again, then every redrawn pick that equals another of its row drawn again
    until none does (one sort, then K comparisons per redrawn pick). The procedure commutes with relabelling the
    pool and ends with K distinct events, so a row is a uniformly random sequence of K distinct events and any
    first K' of its columns are a uniform K'-subset."""
    rows = torch.randint(pool_size, (n_histograms, n_draws), generator=generator, device=device)
    ordered, where = _stable_sort_rows(rows)  # stable: the first of equal picks comes first
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    row, column = torch.nonzero(repeated)[:, 0], where[repeated]
    while len(row):
        rows[row, column] = torch.randint(pool_size, (len(row),), generator=generator, device=device)
        clashes = (rows[row] == rows[row, column].unsqueeze(1)).sum(1) > 1  # equal to another pick of the row
        row, column = row[clashes], column[clashes]
    return rows


def _take(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``values[indices]`` for a 1-d ``values``, as index_select (~4x advanced indexing on a CPU for a grid step's
    ~1M event indices)."""
    return values.index_select(0, indices.reshape(-1)).view(indices.shape)


def _stable_sort_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of integers >= 0 sorted, equal values in their original order, and where each came from; on a CPU as
    numpy's vectorised sort of the unique keys value * K + position (~10x torch's stable sort), elsewhere by torch."""
    if rows.device.type != "cpu":
        return torch.sort(rows, dim=1, stable=True)
    width = rows.shape[1]
    keys = torch.from_numpy(np.sort((rows * width + torch.arange(width)).numpy(), axis=1))
    return keys // width, keys % width


def histogram_events(bin_index: torch.Tensor, indices: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin counts (H, n_bins) float32 of the events ``indices`` (H, K) of a pool with ``bin_index``."""
    n_histograms = indices.shape[0]
    offsets = torch.arange(n_histograms, device=indices.device).unsqueeze(1) * n_bins
    flat = (_take(bin_index, indices).long() + offsets).reshape(-1)
    counts = torch.zeros(n_histograms * n_bins, dtype=torch.float32, device=indices.device)
    counts.index_add_(0, flat, torch.ones(1, dtype=torch.float32, device=indices.device).expand(flat.numel()))
    return counts.view(n_histograms, n_bins)


# ----------------------------------------------------------------------------- counts


def sample_counts(bin_counts: torch.Tensor, n_draws: int, n_histograms: int, *, mode: Mode = "exact",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Bin counts (H, n_bins) float32 of ensembles of ``n_draws`` events from a pool with ``bin_counts`` per bin.

    Exactly the law of histogramming :func:`draw_event_indices` rows (module docstring),
    at O(n_bins) cost per histogram: the draws are split down a binary tree over the
    occupied bins, each split an exact hypergeometric (``exact``) or binomial
    (``multinomial``) variate; ``poisson`` bins are independent Poisson variates.
    """
    _check_mode(mode)
    device, n_bins = bin_counts.device, len(bin_counts)
    pool_size = int(bin_counts.sum())
    out = torch.zeros((n_histograms, n_bins), dtype=torch.float32, device=device)
    if n_draws == 0 or n_histograms == 0:
        return out
    if pool_size == 0:
        raise ValueError("cannot draw events from an empty pool; loosen the cuts or give a larger sample")
    if mode == "poisson":
        rates = (bin_counts.double() * (n_draws / pool_size)).expand(n_histograms, n_bins).contiguous()
        return torch.poisson(rates, generator=generator).float()
    if mode == "exact":
        _check_pool_holds(pool_size, n_draws)
    occupied = torch.nonzero(bin_counts).squeeze(1)
    levels = _split_levels(bin_counts[occupied].double())
    split = _hypergeometric if mode == "exact" else _binomial
    log_factorial = _log_factorial_table(pool_size, device) if mode == "exact" else None
    # Chunks of histograms: cache-sized on a CPU, large (bounded memory) on an accelerator.
    chunk = max(1, (1 << (19 if device.type == "cpu" else 24)) // len(occupied))
    for start in range(0, n_histograms, chunk):
        draws = torch.full((min(chunk, n_histograms - start), 1), float(n_draws), dtype=torch.float64, device=device)
        for level in levels:
            draws = level.children(draws, split(level, draws[:, : level.n_splits], generator, log_factorial))
        out[start : start + len(draws), occupied] = draws.float()
    return out


@dataclass(frozen=True)
class _SplitLevel:
    """One level of the split tree: node j < n_splits splits into children (2j, 2j+1) of sizes
    (good[j], bad[j]); a last unpaired node passes its draws down unchanged. Float64 per-node constants."""

    good: torch.Tensor
    bad: torch.Tensor
    n_nodes: int

    @property
    def n_splits(self) -> int:
        return len(self.good)

    @property
    def total(self) -> torch.Tensor:
        return self.good + self.bad

    def children(self, draws: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
        """Draws of the next level's nodes, given the parents' ``draws`` and their left children's share."""
        n = self.n_splits
        out = draws.new_empty((len(draws), self.n_nodes))
        out[:, 0 : 2 * n : 2] = left
        out[:, 1 : 2 * n : 2] = draws[:, :n] - left
        out[:, 2 * n :] = draws[:, n:]
        return out


def _split_levels(leaves: torch.Tensor) -> list[_SplitLevel]:
    """Levels of a balanced binary tree over non-empty ``leaves`` (root first): every split has two non-empty sides."""
    levels, nodes = [], leaves
    while len(nodes) > 1:
        paired = len(nodes) // 2 * 2
        good, bad = nodes[0:paired:2], nodes[1:paired:2]
        levels.append(_SplitLevel(good, bad, len(nodes)))
        nodes = torch.cat([good + bad, nodes[paired:]])
    return levels[::-1]


def _binomial(level: _SplitLevel, draws: torch.Tensor, generator, log_factorial=None) -> torch.Tensor:
    """Draws of the left child when ``draws`` are taken with replacement: binomial(draws, good / (good + bad))."""
    p = (level.good / level.total).expand_as(draws).contiguous()
    return torch.binomial(draws.contiguous(), p, generator=generator)


def _hypergeometric(level: _SplitLevel, draws: torch.Tensor, generator,
                    log_factorial: torch.Tensor | None) -> torch.Tensor:
    """Draws of the left child when ``draws`` are taken without replacement: exact hypergeometric variates.

    Rejection sampling with a binomial proposal. On the symmetric problem (``few`` =
    min(draws, total - draws) draws from ``small`` = min(good, bad) marked among
    ``total``), x ~ binomial(few, small / total) is accepted with probability
    r(x) / max r, r = hypergeometric pmf / binomial pmf. log r is concave and
    r(x + 1) / r(x) >= 1 exactly for x <= small (few - 1) / total, so its maximum is
    at the next integer (computed exactly in float64). The acceptance rate is about
    sqrt(1 - few / total): >= 0.7, and ~1 when pools are much larger than histograms.
    Splits with few = 0 need no special case (x = 0 is always accepted).
    """
    assert log_factorial is not None  # sample_counts builds the table whenever it uses this split (mode "exact")
    total, good = level.total, level.good
    small, large = torch.minimum(good, level.bad), torch.maximum(good, level.bad)
    p, log_odds = small / total, torch.log(large / small)
    few = torch.minimum(draws, total - draws)
    peak = torch.minimum((torch.floor(small * (few - 1) / total) + 1).clamp(min=0), torch.minimum(few, small))
    log_max = _log_ratio(peak, few, small, large, log_odds, log_factorial)

    # First round on every split at once (per-node constants broadcast); then only on the rejected ones.
    x, accepted = _propose(few, p.expand_as(few), small, large, log_odds, log_max, generator, log_factorial)
    result = x
    pending = torch.nonzero(~accepted.view(-1)).squeeze(1)
    if len(pending):
        node = pending % level.n_splits
        state = torch.stack([few.reshape(-1)[pending], p[node], small[node], large[node], log_odds[node],
                             log_max.reshape(-1)[pending]])
        while len(pending):
            x, accepted = _propose(state[0], state[1], state[2], state[3], state[4], state[5], generator, log_factorial)
            result.view(-1)[pending[accepted]] = x[accepted]
            pending, state = pending[~accepted], state[:, ~accepted]

    result = torch.where(good > level.bad, few - result, result)  # back from small = min(good, bad)
    return torch.where(few < draws, good - result, result)  # back from few = min(draws, total - draws)


def _log_ratio(x, few, small, large, log_odds, log_factorial):
    """log(hypergeometric pmf / binomial pmf) at x <= small, up to a constant."""
    return x * log_odds - log_factorial[(small - x).clamp(min=0).long()] - log_factorial[(large - few + x).long()]


def _propose(few, p, small, large, log_odds, log_max, generator, log_factorial):
    """One binomial proposal per variate and whether the rejection step accepts it."""
    x = torch.binomial(few, p, generator=generator)
    u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    log_r = _log_ratio(x, few, small, large, log_odds, log_factorial)
    return x, (x <= small) & (torch.log(u) <= log_r - log_max)


_LOG_FACTORIALS: dict[torch.device, torch.Tensor] = {}


def _log_factorial_table(n: int, device: torch.device) -> torch.Tensor:
    """log(k!) for k = 0 ... >= n (float64), kept per device and grown as needed."""
    table = _LOG_FACTORIALS.get(device)
    if table is None or len(table) <= n:
        size = 1 << max(n, 1023).bit_length()
        table = torch.lgamma(torch.arange(1, size + 1, dtype=torch.float64, device=device))
        _LOG_FACTORIALS[device] = table
    return table


# ----------------------------------------------------------------------------- pools -> histograms


def draw_counts(pool: EventPool, n_draws: int, n_histograms: int, *, mode: Mode = "exact",
                generator: torch.Generator | None = None,
                via: Literal["auto", "counts", "events"] = "auto", subsets: str = "permutation") -> torch.Tensor:
    """Bin counts (H, n_bins) float32 of ``n_histograms`` ensembles of ``n_draws`` events of ``pool``
    (``subsets``: how exact events are drawn, :func:`draw_event_indices`)."""
    if via == "auto":
        few_draws = n_draws < EVENTS_BELOW_DRAWS_PER_BIN * pool.n_occupied_bins
        via = "events" if few_draws and mode != "poisson" else "counts"
    if via == "counts":
        return sample_counts(pool.bin_counts, n_draws, n_histograms, mode=mode, generator=generator)
    if via == "events":
        indices = draw_event_indices(len(pool), n_draws, n_histograms, mode=mode, generator=generator,
                                     device=pool.device, subsets=subsets)
        return histogram_events(pool.bin_index, indices, pool.n_bins)
    raise ValueError(f"via={via!r}: choose 'auto', 'counts' or 'events'")


def draw_nested_counts(pool: EventPool, sizes: Sequence[int], n_histograms: int, *, mode: Mode = "exact",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Bin counts (len(sizes), H, n_bins) float32 of nested ensembles: histogram h of every size holds the first
    ``sizes[i]`` events of one draw of max(sizes) events in random order (``poisson``: independent increments).

    Each size alone has exactly the law of ``draw_counts(pool, sizes[i], H, mode=mode)``; the sizes share events,
    so all of them cost one draw of the largest (the grid trainer's additions of S events at every point).
    """
    _check_mode(mode)
    device, n_bins, n_sizes = pool.device, pool.n_bins, len(sizes)
    order = sorted(range(n_sizes), key=lambda i: sizes[i])
    ascending = [int(sizes[i]) for i in order]
    if mode == "poisson":
        steps = [b - a for a, b in zip([0, *ascending], ascending)]
        increments = torch.stack([sample_counts(pool.bin_counts, k, n_histograms, mode=mode, generator=generator)
                                  for k in steps]) if steps else torch.zeros((0, n_histograms, n_bins), device=device)
        nested = increments.cumsum(0)
    else:
        largest = ascending[-1] if ascending else 0
        # both give rows in random order; chunks of permutations cost the pool's size, redraws a sort per round
        subsets = "permutation" if 4 * largest * n_histograms >= len(pool) else "redraw"
        events = draw_event_indices(len(pool), largest, n_histograms, mode=mode, generator=generator, device=device,
                                    subsets=subsets)
        offsets = _nested_offsets(tuple(ascending), n_histograms, n_bins, device)
        flat = (_take(pool.bin_index, events).to(offsets.dtype) + offsets).view(-1)
        counts = torch.zeros(n_sizes * n_histograms * n_bins, dtype=torch.float32, device=device)
        counts.index_add_(0, flat, torch.ones(1, dtype=torch.float32, device=device).expand(flat.numel()))
        nested = counts.view(n_sizes, n_histograms, n_bins).cumsum(0)
    if order == sorted(order):  # sizes given in ascending order (a grid's S/sqrt(B) usually are)
        return nested
    result = torch.empty_like(nested)
    result[torch.tensor(order, device=device)] = nested
    return result


@functools.lru_cache(maxsize=8)
def _nested_offsets(ascending: tuple[int, ...], n_histograms: int, n_bins: int, device: torch.device) -> torch.Tensor:
    """Where event column k of histogram h counts in :func:`draw_nested_counts`'s (sizes, H, n_bins) increments: at
    ((the first size > k) * H + h) * n_bins, (H, largest); int32 where it fits (half the traffic of int64). Kept:
    a grid asks for the same sizes at every step."""
    segment = torch.searchsorted(torch.tensor(ascending, device=device), torch.arange(ascending[-1] if ascending else 0,
                                 device=device), right=True)
    rows = torch.arange(n_histograms, device=device).unsqueeze(1)
    dtype = torch.int32 if len(ascending) * n_histograms * n_bins < 2**31 else torch.int64
    return ((segment.unsqueeze(0) * n_histograms + rows) * n_bins).to(dtype)


def draw_mixture(background: EventPool, signal: EventPool | None, n_background: int, n_signal: int,
                 n_histograms: int, **draw_options) -> torch.Tensor:
    """Counts of B background + S signal events per histogram, or B + S background events if ``signal`` is None."""
    if signal is None:
        return draw_counts(background, n_background + n_signal, n_histograms, **draw_options)
    counts = draw_counts(background, n_background, n_histograms, **draw_options)
    return counts.add_(draw_counts(signal, n_signal, n_histograms, **draw_options))  # in place: sets are ~100 MB


def normalise(counts: torch.Tensor, how: str = "max", in_place: bool = False) -> torch.Tensor:
    """Each histogram (the last axis) divided by its maximum bin (paper), by its sum, or left as counts ('none');
    ``in_place``: ``counts`` itself is divided."""
    if how in ("max", "sum"):
        scale = (counts.amax(dim=-1, keepdim=True) if how == "max" else counts.sum(dim=-1, keepdim=True)).clamp_min(1)
        return counts.div_(scale) if in_place else counts / scale
    if how == "none":
        return counts
    raise ValueError(f"normalisation={how!r}: choose one of {', '.join(NORMALISATIONS)}")


def composed_scales(bank: torch.Tensor, orders: torch.Tensor, additions: torch.Tensor,
                    groups: Sequence[tuple[int, slice]], how: str = "max") -> torch.Tensor:
    """1 / the normaliser of every composed histogram ``bank[orders[i, h]] + additions[p, h]`` (p: the point of the
    group holding i), (n, H), exactly as :func:`normalise` divides it, without building the histograms.

    ``max``: a bin can raise a row's maximum above the bank row's own only if the most any row adds to it exceeds
    the least any bank row falls short of its maximum there; the maximum is taken over those bins alone (a few:
    the bank's peak, at small additions), all others are left out exactly."""
    if how == "none":
        return torch.ones(orders.shape, device=bank.device)
    if how not in ("max", "sum"):
        raise ValueError(f"normalisation={how!r}: choose one of {', '.join(NORMALISATIONS)}")
    own = bank.amax(dim=1) if how == "max" else bank.sum(dim=1)  # (H,)
    # (C,) <= 0: the least any bank row falls short of its maximum in each bin
    headroom = (bank - own.unsqueeze(1)).amax(0) if how == "max" else None
    scales = torch.empty(orders.shape, device=bank.device)
    for p, part in groups:
        added, rows = additions[p], orders[part]
        if headroom is None:
            total = own[rows] + added.sum(-1)
        else:
            total = own[rows]
            bins = torch.nonzero(added.amax(0) + headroom > 0).squeeze(1)
            if len(bins):
                on_bins = bank.index_select(1, bins).index_select(0, rows.reshape(-1)).view(*rows.shape, len(bins))
                total = torch.maximum(total, (on_bins + added[:, bins]).amax(-1))
        scales[part] = total.clamp_min(1).reciprocal()
    return scales


# ----------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """What is classified: class ``c`` is drawn from the components ``classes[c]`` (signal names; None = SM-only).

    binary: SM-only (0) vs SM + model (1). multimodel: SM-only (0) vs SM + any model (1).
    multiclass: SM-only (0) vs SM + model m (m = 1, 2, ...). model_vs_model: SM + B (0) vs
    SM + A (1) for signals [A, B]. event: single events, background (0) vs signal (1).
    """

    name: str
    classes: tuple[tuple[str | None, ...], ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def integer_labels(self) -> bool:
        """Multiclass labels are int64 class indices; the others float32 0/1 targets."""
        return self.name == "multiclass"

    def components(self) -> list[tuple[int, str | None]]:
        """(label, component) of every component, in order."""
        return [(label, part) for label, parts in enumerate(self.classes) for part in parts]


def make_task(name: str, signals: Sequence[str]) -> Task:
    """The :class:`Task` ``name`` for the given signal names (checked against what the task needs)."""
    signals = tuple(signals)
    if name not in TASKS:
        raise ValueError(f"task={name!r}: choose one of {', '.join(TASKS)}")
    if len(set(signals)) != len(signals):
        raise ValueError(f"signal names must differ, got {list(signals)}; give each signal its own name")
    # multimodel and multiclass with one model would be the binary task under another name
    low, high = {"binary": (1, 1), "model_vs_model": (2, 2), "event": (1, None)}.get(name, (2, None))
    if len(signals) < low or (high is not None and len(signals) > high):
        wanted = f"exactly {low}" if low == high else f"at least {low}"
        fix = ("set signal to one sample" if wanted == "exactly 1" else
               "give two or more benchmarks (data.benchmarks=[a,b]), or use task 'binary' (model=binary) for one")
        raise ValueError(f"task={name!r} needs {wanted} signal samples, got {len(signals)}; {fix}")
    if name == "multiclass":
        return Task(name, ((None,), *((s,) for s in signals)))
    if name == "model_vs_model":
        return Task(name, ((signals[1],), (signals[0],)))
    return Task(name, ((None,), signals))


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` items shared among ``parts``, the first ones getting the remainder."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def draw_histograms(task: Task, background: EventPool, signals: Mapping[str, EventPool], n_background: int,
                    n_signal: int, n_histograms: int, *, generator: torch.Generator | None = None,
                    shuffle: bool = True, **draw_options) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw counts (H, n_bins) float32 and labels (H,) of ``n_histograms`` histograms shared evenly among the
    task's components (the paper's equal number per model and SM-only), optionally shuffled."""
    parts = task.components()
    counts, labels = [], []
    for (label, component), n in zip(parts, split_evenly(n_histograms, len(parts))):
        signal = None if component is None else signals[component]
        counts.append(draw_mixture(background, signal, n_background, n_signal, n, generator=generator, **draw_options))
        labels.append(torch.full((n,), label, device=background.device))
    return _labelled(torch.cat(counts), torch.cat(labels), task, generator, shuffle)


def draw_events(task: Task, background: EventPool, signals: Mapping[str, EventPool], n_events: int, *,
                mode: Mode = "multinomial", generator: torch.Generator | None = None,
                shuffle: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Single events for event-level tasks: features (n, 3) float32 (pT, eta, phi), labels (n,) and bin index (n,).

    Shared evenly among the task's components; ``exact`` draws distinct events of each pool.
    """
    parts = task.components()
    features, labels, bins = [], [], []
    for (label, component), n in zip(parts, split_evenly(n_events, len(parts))):
        pool = background if component is None else signals[component]
        rows = draw_event_indices(len(pool), n, 1, mode=mode, generator=generator, device=pool.device)[0]
        features.append(pool.features[rows])
        bins.append(pool.bin_index[rows].long())
        labels.append(torch.full((n,), label, device=pool.device))
    x, y = torch.cat(features), torch.cat(labels)
    order = _order(len(y), generator, shuffle, y.device)
    return x[order], _label_dtype(y[order], task), torch.cat(bins)[order]


def _labelled(x, y, task, generator, shuffle):
    order = _order(len(y), generator, shuffle, y.device)
    return x[order], _label_dtype(y[order], task)


def _order(n, generator, shuffle, device):
    return torch.randperm(n, generator=generator, device=device) if shuffle else torch.arange(n, device=device)


def _label_dtype(labels, task):
    return labels.long() if task.integer_labels else labels.float()


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {', '.join(MODES)}")


def _check_pool_holds(pool_size, n_draws):
    if n_draws > pool_size:
        raise ValueError(f"cannot draw {n_draws} distinct events from a pool of {pool_size} (mode='exact'); "
                         "lower n_background or snr, or give a larger sample")
