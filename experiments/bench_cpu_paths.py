"""Torch's slow CPU paths at a grid step's sizes, against what the grid trainer uses instead, same run.

    python experiments/bench_cpu_paths.py [--seconds 0.5] [--threads 1]

Each line times one operation both ways at the sizes of a Fig. 7 grid job (B = 50k, 900k background train
events), checks that both give the same numbers, and prints milliseconds per call (best of three windows) and
the ratio:

- validation AUCs of a point's 10 networks on 20k histograms: torch's sort (the rank sums in float64, as
  ``row_aucs`` did before, ties included) against ``dmlhc.optimal.row_aucs`` (numpy's vectorised sort);
- the redraw sampler's stable sort of 128 histograms x 1000 picks: torch's stable sort against numpy's sort of
  unique keys (``dmlhc.data.ensembles._stable_sort_rows``);
- the bins of 128 x 9995 events (S/sqrt(B) = 44.7): advanced indexing against ``index_select``;
- a permutation of the 900k events: int64 against int32 (the same permutation).

The last line is the ratios' geometric mean, for a glance; the grid's own gain is the wall time
of its jobs (README, "The grid trainer").
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
from bench_ensembles import rate

from dmlhc.data.ensembles import _stable_sort_rows, _take
from dmlhc.optimal import row_aucs


def torch_row_aucs(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """row_aucs as it was: torch's sort of the float64 scores, average ranks over ties, rank sums as products."""
    scores, positive = scores.double(), labels > 0.5
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ordered, order = scores.sort(dim=1)
    index = torch.arange(scores.shape[1]).expand_as(order)
    starts = torch.ones_like(order, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    if bool(starts.all()):
        rank_sum = ((index + 1).double() * positive[order]).sum(dim=1)
        return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, index, 0).cummax(dim=1).values
    last = torch.where(ends, index, scores.shape[1]).flip(1).cummin(dim=1).values.flip(1)
    rank_sum = (((first + last).double() / 2 + 1) * positive[order]).sum(dim=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def compare(name: str, before: Callable[[], torch.Tensor], now: Callable[[], torch.Tensor], seconds: float) -> float:
    """Milliseconds per call of both (the same result checked) and their ratio, printed; returns the ratio."""
    if not all(torch.equal(a, b) for a, b in zip(_as_tuple(before()), _as_tuple(now()))):
        raise SystemExit(f"bench_cpu_paths: {name}: the two ways give different numbers")
    before_ms, now_ms = (1000 / rate(lambda f=f: (f(), 1)[1], seconds) for f in (before, now))
    print(f"{name:48s} {before_ms:8.2f} ms -> {now_ms:7.2f} ms  {before_ms / now_ms:5.2f}x", flush=True)
    return before_ms / now_ms


def _as_tuple(result) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per window (best of 3 windows)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a grid job's: torch_threads=1)")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every size by this factor (tests)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)

    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(1)

    def size(n: int) -> int:
        return max(2, round(n * args.scale))

    pool, largest, histograms = size(899_893), size(9995), size(128)
    scores = torch.sigmoid(torch.randn(10, size(20_000), generator=generator))
    labels = (torch.arange(scores.shape[1]) % 2).float()
    picks = torch.randint(pool, (histograms, size(1000)), generator=generator)
    bin_index = torch.randint(434, (pool,), dtype=torch.int32, generator=generator)
    permutations = math.ceil(histograms * largest / pool)
    events = torch.cat([torch.randperm(pool, generator=generator) for _ in range(permutations)])
    events = events[: histograms * largest].view(histograms, largest)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); before -> now, per call")
    ratios = [
        compare("validation AUCs (10 x 20k scores)", lambda: torch_row_aucs(scores, labels),
                lambda: row_aucs(scores, labels), args.seconds),
        compare("stable sort of picks (128 x 1000)", lambda: torch.sort(picks, dim=1, stable=True),
                lambda: _stable_sort_rows(picks), args.seconds),
        compare("bins of events (128 x 9995)", lambda: bin_index[events], lambda: _take(bin_index, events),
                args.seconds),
        compare("permutation of the pool (900k)", lambda: torch.randperm(pool, generator=seeded()),
                lambda: torch.randperm(pool, generator=seeded(), dtype=torch.int32).long(), args.seconds),
    ]
    print(f"geometric mean of the ratios: {math.prod(ratios) ** (1 / len(ratios)):.2f}x")


if __name__ == "__main__":
    main()
