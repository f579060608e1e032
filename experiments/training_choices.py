"""What makes a histogram network reach the likelihood-ratio optimum: each training choice, same pools and seeds.

    python experiments/training_choices.py --signal alp --snr 0.447
    python experiments/training_choices.py --signal spin2_onshell --snr 0.447 --steps 2000

Builds the DataModule of the embedded samples (generated on first use: 1.5M SM and 500k
signal events at parton level, B = 50k), then trains the same 3 x 20 DNN with a plain
loop (batches of 256 fresh histograms) under each variant, validating every 100 steps and
keeping the step with the best val AUC (what early stopping on val/auc restores):

- ``paper``: Table 2's network on max-normalised histograms, Adam lr 1e-3, no weight decay;
- ``+standardise``: with the fixed per-bin input standardisation;
- ``+skip``: and the linear skip path;
- ``+adamw``: and lr 3e-4 with a decoupled weight decay of 10 (AdamW), the default until it
  was measured against an L2 penalty;
- ``default``: lr 3e-4 with an L2 penalty of 0.03 (Adam), the optimiser of conf/ (without
  conf/'s averaged weights: this loop shows the optimiser's part alone).

Prints, per variant, the test AUC at the best validation step, that step, and val AUC at
the end (how far the network falls after its peak), against the optimum's test AUC.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from dmlhc.data.datamodule import EnsembleDataModule
from dmlhc.events.benchmarks import get_benchmark
from dmlhc.events.generate import GenerationSpec, load_or_generate
from dmlhc.models.architectures import HistogramDNN
from dmlhc.models.classifier import make_optimiser
from dmlhc.optimal import auc

VARIANTS = {  # name: (standardise, skip, lr, optimiser, weight decay)
    "paper": (False, False, 1e-3, "adam", 0.0),
    "+standardise": (True, False, 1e-3, "adam", 0.0),
    "+skip": (True, True, 1e-3, "adam", 0.0),
    "+adamw": (True, True, 3e-4, "adamw", 10.0),
    "default": (True, True, 3e-4, "adam", 0.03),
}


def evaluate(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        scores = torch.cat([net(x[i : i + 4096]).squeeze(-1) for i in range(0, len(x), 4096)])
    net.train()
    return auc(scores, y)


def train_variant(dm: EnsembleDataModule, standardise: bool, skip: bool, lr: float, optimiser_name: str,
                  weight_decay: float, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    net = HistogramDNN(dm.input_shape, standardise=standardise, skip=skip)
    if standardise:
        net.standardise.set_statistics(*dm.input_statistics())
    optimiser = make_optimiser(optimiser_name, net.parameters(), lr=lr, weight_decay=weight_decay)
    val, test = dm.sets["val"], dm.sets["test"]
    best = {"val": 0.0, "test": 0.0, "step": 0}
    val_auc = 0.5
    generator = torch.Generator().manual_seed(seed)  # the same training stream for every variant
    for step in range(1, steps + 1):
        x, y = dm.training_inputs(256, generator)
        loss = F.binary_cross_entropy_with_logits(net(x).squeeze(-1), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0:
            val_auc = evaluate(net, val.x, val.y)
            if val_auc > best["val"]:
                best = {"val": val_auc, "test": evaluate(net, test.x, test.y), "step": step}
    return best | {"val_end": val_auc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signal", default="alp")
    parser.add_argument("--snr", type=float, default=0.447)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    samples = {name: load_or_generate(GenerationSpec(get_benchmark(name), n, "parton"))
               for name, n in ((args.signal, 500_000), ("sm", 1_500_000))}
    dm = EnsembleDataModule({args.signal: samples[args.signal]}, samples["sm"], n_background=50_000, snr=args.snr,
                            n_val=4000, n_test=10000, device="cpu", seed=args.seed)
    dm.setup("fit")
    optimum = dm.optimal_auc(n_bootstrap=10)
    print(f"{args.signal} S/sqrt(B) = {args.snr:g} (S = {dm.n_signal}, B = 50k): optimum {optimum.auc:.4f} "
          f"+- {optimum.std:.4f} (pseudo-count {dm.optimum_pseudo_count():g}); {args.steps} steps of 256")
    print(f"{'variant':14s} {'test AUC':>9s} {'optimum-net':>11s} {'best step':>9s} {'val end':>8s} {'s':>5s}")
    for name in args.variants.split(","):
        start = time.time()
        result = train_variant(dm, *VARIANTS[name], steps=args.steps, seed=args.seed)
        print(f"{name:14s} {result['test']:9.4f} {optimum.auc - result['test']:11.4f} {result['step']:9d} "
              f"{result['val_end']:8.4f} {time.time() - start:5.0f}", flush=True)


if __name__ == "__main__":
    main()
