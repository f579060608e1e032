"""Histogram-ensemble speed: dmlhc's sampler against a numpy one-histogram-at-a-time baseline, same run.

    python experiments/bench_ensembles.py [--pool-events 1500000] [--seconds 0.7] [--batch 4096]

Both build 30 x 30 (pT, eta) histograms of B events drawn without replacement from
the same background train pool (a toy sample of --pool-events events split
0.6/0.2/0.2, as the paper's 1.5M background). The baseline does what the paper's
tooling would: per histogram, ``rng.choice(N, B, replace=False)`` then
``np.histogram2d``. dmlhc draws a batch of histograms at once on the device with
``draw_counts`` (exact, multinomial and poisson modes; ``via`` auto = the default,
and the count-level and event-level samplers it chooses between). On CUDA (when
present) it prints histograms/s with larger batches. The ratio of the default
exact sampler to the baseline at each B is printed last.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dmlhc.data.ensembles import draw_counts
from dmlhc.data.pools import build_pools

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import synthetic_leading_jets  # noqa: E402  the tests' toy leading jets

BACKGROUNDS = (1_000, 50_000)
SAMPLERS = (("exact", "auto"), ("exact", "counts"), ("exact", "events"), ("multinomial", "auto"), ("poisson", "auto"))


def rate(draw: Callable[[], int], seconds: float, synchronize: Callable[[], None] = lambda: None,
         repeats: int = 3) -> float:
    """Histograms per second of repeated ``draw()`` calls (each returns how many it made): the best of
    ``repeats`` windows of ``seconds`` after one warm-up call, as timeit does, so that other work on the
    machine slows neither side of a ratio."""
    draw()
    synchronize()
    best = 0.0
    for _ in range(repeats):
        made, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            made += draw()
        synchronize()
        best = max(best, made / (time.perf_counter() - start))
    return best


def numpy_baseline(pt: np.ndarray, eta: np.ndarray, edges, n_background: int, seed: int = 0) -> Callable[[], int]:
    rng = np.random.default_rng(seed)

    def one_histogram() -> int:
        rows = rng.choice(len(pt), n_background, replace=False)
        np.histogram2d(pt[rows], eta[rows], bins=edges)
        return 1

    return one_histogram


def dmlhc_sampler(pool, n_background: int, batch: int, mode: str, via: str, generator) -> Callable[[], int]:
    if via == "events":  # one permutation of the pool per N // B histograms: keep a call to a few permutations
        batch = max(1, min(batch, 4 * len(pool) // n_background))

    def batch_of_histograms() -> int:
        draw_counts(pool, n_background, batch, mode=mode, via=via, generator=generator)
        return batch

    return batch_of_histograms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool-events", type=int, default=1_500_000, help="toy background events before cuts/split")
    parser.add_argument("--seconds", type=float, default=0.7, help="time per window (best of 3 windows)")
    parser.add_argument("--batch", type=int, default=4096, help="histograms per call on the CPU")
    parser.add_argument("--gpu-batch", type=int, default=65536, help="histograms per call on CUDA")
    args = parser.parse_args()

    pools = build_pools(**synthetic_leading_jets(args.pool_events, seed=1))
    pool = pools.train
    pt, eta = (pool.features[:, i].double().numpy() for i in (0, 1))
    edges = pools.binning.edges()
    print(f"background train pool N = {len(pool)}, binning {pools.binning.describe()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    baseline = {b: rate(numpy_baseline(pt, eta, edges, b), args.seconds) for b in BACKGROUNDS}
    generator = torch.Generator().manual_seed(0)
    results = {}
    print(f"{'device':>6} {'B':>6} {'N/B':>6} {'sampler':>22} {'histograms/s':>13}")
    for b in BACKGROUNDS:
        print(f"{'cpu':>6} {b:>6} {len(pool) / b:>6.0f} {'numpy baseline':>22} {baseline[b]:>13,.0f}")
        for mode, via in SAMPLERS:
            results[b, mode, via] = rate(dmlhc_sampler(pool, b, args.batch, mode, via, generator), args.seconds)
            speed = results[b, mode, via]
            print(f"{'cpu':>6} {b:>6} {len(pool) / b:>6.0f} {f'dmlhc {mode}/{via}':>22} {speed:>13,.0f}")

    if torch.cuda.is_available():
        gpu_pool = pool.to("cuda")
        gpu_generator = torch.Generator(device="cuda").manual_seed(0)
        for b in BACKGROUNDS:
            for mode, via in SAMPLERS:
                speed = rate(dmlhc_sampler(gpu_pool, b, args.gpu_batch, mode, via, gpu_generator), args.seconds,
                             torch.cuda.synchronize)
                print(f"{'cuda':>6} {b:>6} {len(pool) / b:>6.0f} {f'dmlhc {mode}/{via}':>22} {speed:>13,.0f}")
        print(f"GPU: {torch.cuda.get_device_name()}; target >= 250,000 exact histograms/s at B = 50,000")

    for b in BACKGROUNDS:
        print(f"ratio dmlhc exact / numpy baseline at B = {b}: {results[b, 'exact', 'auto'] / baseline[b]:.1f}x "
              f"(multinomial {results[b, 'multinomial', 'auto'] / baseline[b]:.1f}x, "
              f"poisson {results[b, 'poisson', 'auto'] / baseline[b]:.1f}x)")


if __name__ == "__main__":
    main()
