"""A grid training step's first layer: inputs composed from their parts against inputs built, same run.

    python experiments/bench_composed.py [--points 18] [--seeds 10] [--bins 453] [--seconds 1.0] [--threads 1]

One step of the grid trainer at Fig. 7's sizes (18 S/sqrt(B) points x 10 seeds = 180 networks of
architecture=dnn, 256 histograms of B = 50k background events plus each point's S events, on the 453 bins
an event of spin1_onshell's train pools is in), forward and backward through the stacked networks, dropout
off. Built: every network's inputs made (the background batch in its seed's row order plus its point's
additions), normalised by each histogram's maximum and multiplied in 180 thin batched products, as the grid
trainer did before. Composed (:class:`dmlhc.models.stacked.ComposedInputs`, what it does now): the
normalisers from the parts, one product of the background batch with every network's weights, one per point
for its additions. Toy Poisson counts of a falling spectrum stand in for the draws.
Prints milliseconds per step of each (best of three windows) and, last, their ratio.
"""

from __future__ import annotations

import argparse

import torch
from bench_ensembles import rate
from torch.nn import functional as F

from dmlhc.data.ensembles import composed_scales, normalise
from dmlhc.models.architectures import HistogramDNN
from dmlhc.models.stacked import ComposedInputs, StackedDNN

FIG7_SNR = (0.013, 0.022, 0.045, 0.067, 0.112, 0.168, 0.224, 0.447, 0.671, 1.118, 1.677, 2.236, 4.47, 6.71, 11.2,
            16.8, 22.4, 44.7)


def step_inputs(points: int, seeds: int, bins: int, batch: int = 256, n_background: int = 50_000):
    """Toy counts of one step: the background batch (batch, bins), each point's additions (points, batch, bins)
    with S = S/sqrt(B) sqrt(B) events of Fig. 7's grid, each network's row order, the groups of networks."""
    generator = torch.Generator().manual_seed(0)
    falling = torch.exp(-torch.arange(bins) / 60.0)  # a falling pT spectrum: one clear peak bin, as the data's
    bank = torch.poisson((n_background * falling / falling.sum()).expand(batch, bins).contiguous(), generator=generator)
    sizes = [round(FIG7_SNR[p % len(FIG7_SNR)] * n_background**0.5) for p in range(points)]
    harder = torch.exp(-torch.arange(bins) / 150.0)
    additions = torch.stack([torch.poisson((s * harder / harder.sum()).expand(batch, bins).contiguous(),
                                           generator=generator) for s in sizes])
    orders = torch.stack([torch.randperm(batch, generator=generator) for _ in range(points * seeds)])
    groups = tuple((p, slice(p * seeds, (p + 1) * seeds)) for p in range(points))
    return bank, additions, orders, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=18)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--bins", type=int, default=453, help="occupied bins (of the paper's 30 x 30)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per window (best of 3 windows)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a grid job's: torch_threads=1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bank, additions, orders, groups = step_inputs(args.points, args.seeds, args.bins)
    columns = torch.arange(args.bins)
    n = args.points * args.seeds
    torch.manual_seed(0)
    model = StackedDNN([HistogramDNN((30, 30), dropout=0.0) for _ in range(n)])
    labels = torch.cat([torch.ones(len(bank) // 2), torch.zeros(len(bank) - len(bank) // 2)]).expand(n, -1)
    built = torch.empty(n, *bank.shape)

    def train_step(x) -> int:
        loss = F.binary_cross_entropy_with_logits(model(x, columns=columns), labels, reduction="none").mean(1).sum()
        model.zero_grad(set_to_none=True)
        loss.backward()
        return 1

    def built_step() -> int:
        for p, part in groups:
            torch.add(bank[orders[part]], additions[p], out=built[part])
        return train_step(normalise(built, "max", in_place=True))

    def composed_step() -> int:
        scales = composed_scales(bank, orders, additions, groups, "max")
        return train_step(ComposedInputs(bank, orders, additions, groups, scales))

    print(f"{n} networks ({args.points} points x {args.seeds} seeds), {len(bank)} histograms of {args.bins} bins, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    built_ms = 1000 / rate(built_step, args.seconds)
    print(f"built inputs:    {built_ms:8.2f} ms per step", flush=True)
    composed_ms = 1000 / rate(composed_step, args.seconds)
    print(f"composed inputs: {composed_ms:8.2f} ms per step", flush=True)
    print(f"ratio built / composed: {built_ms / composed_ms:.2f}x")


if __name__ == "__main__":
    main()
