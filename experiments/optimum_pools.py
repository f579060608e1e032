"""How far the optimum's estimate is from the likelihood ratio of larger samples, on the same test histograms.

    python experiments/optimum_pools.py signal=spin2_onshell snr=0.447 background.n_background=2000 \\
        background.events=150000 signal.events=30000 data.n_val=2000 data.n_test=4000 generation.seed=2

``test/auc_optimal`` is a plug-in estimate: the likelihood ratio with bin probabilities from the point's train
pools. Where the pools are small against the 900 bins, noisy weights in sparse bins pull its AUC down, and a
network with a smoother estimate (a CNN's local filters) can score above it. This script builds the point's
DataModule from the train.py overrides given, and a reference one with the same settings but ``--reference-events``
(default the defaults' 1.5M SM and 500k signal events) generated with ``--reference-seed`` (default 1, the default
samples), and prints the test AUC of the likelihood ratio on the point's test set with probabilities from each's
train pools, at a few pseudo-counts. The two must be generated with different seeds: a sample's first events are
the same for any size (generation runs in chunks seeded by the seed), so a reference of the same seed holds the
point's test events.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig

from dmlhc.config import instantiate
from dmlhc.data.datamodule import EnsembleDataModule
from dmlhc.errors import ConfigError, reported_as_exit_codes
from dmlhc.optimal import optimal_auc

ROOT = Path(__file__).resolve().parents[1]
PSEUDO_COUNTS = (0.05, 0.5, 2.0)


def compose_point(overrides: list[str]) -> DictConfig:
    """train.py's config with ``overrides``; one that Hydra cannot compose is a :class:`ConfigError`."""
    try:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=["data.device=cpu", *overrides])
    except HydraException as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"{' '.join(overrides)}: {first}; give train.py overrides of the point, e.g. "
                          "signal=spin2_onshell snr=0.447 generation.seed=2") from None


def datamodule(cfg: DictConfig) -> EnsembleDataModule:
    """The DataModule train.py would build from ``cfg``, its pools and sets made."""
    module = instantiate("data", cfg.data)
    module.prepare_data()
    module.setup("fit")
    module.setup("test")
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="+", help="train.py overrides of the point (signal=..., snr=..., ...)")
    parser.add_argument("--reference-events", default="1500000,500000",
                        help="SM,signal events of the reference samples (default 1500000,500000)")
    parser.add_argument("--reference-seed", type=int, default=1,
                        help="generation seed of the reference samples (default 1, the default samples')")
    args = parser.parse_args(argv)
    sm, signal = (int(n) for n in args.reference_events.split(","))
    cfg = compose_point(args.overrides)
    if cfg.generation.seed == args.reference_seed:
        parser.error(f"the point and the reference are both generated with seed {args.reference_seed}: the "
                     "reference's first events are the point's, its train pools hold the point's test events; "
                     f"give the point generation.seed={args.reference_seed + 1}")
    point = datamodule(cfg)
    reference = datamodule(compose_point([*args.overrides, f"background.events={sm}", f"signal.events={signal}",
                                          f"generation.seed={args.reference_seed}", "data.n_val=100",
                                          "data.n_test=100"]))  # only its train pools are used
    test = point.sets["test"]
    print(f"test set: {len(test.y)} histograms, B = {point.n_background}, S = {point.n_signal}; the point's "
          f"pseudo-count (chosen on its validation set): {point.optimum_pseudo_count():g}")
    for name, source in (("the point's train pools", point), (f"reference ({sm} SM, {signal} signal)", reference)):
        background, signals = source.pool_counts(("train",))
        events = int(background.sum()), int(sum(c.sum() for c in signals.values()))
        aucs = [float(optimal_auc(test.raw, test.y, point.task, background, signals, point.n_background,
                                  point.n_signal, pseudo_count=c).auc) for c in PSEUDO_COUNTS]
        print(f"{name}, {events[0]} SM + {events[1]} signal train events: test AUC "
              + ", ".join(f"{auc:.4f} (pseudo-count {c:g})" for c, auc in zip(PSEUDO_COUNTS, aucs)))
    return 0


if __name__ == "__main__":
    with reported_as_exit_codes():  # a bad override or setting: one line and its exit code
        sys.exit(main())
