"""A LightningDataModule that streams histogram ensembles drawn on the training device.

Instantiated from the ``data`` config (``_target_``) with sample specs (the ``signal``
and ``background`` groups), B, S/sqrt(B), binning, cuts, task, sampling mode,
normalisation, sizes, seeds and device, or from plain arguments and events. It owns
the ensemble: ``__init__`` validates everything once, derives S (``n_signal``) and the
input shape; ``prepare_data`` generates missing benchmark samples (rank 0);
``setup`` loads the samples, makes the disjoint train / val / test event pools on the
device, checks that they can hold the histograms asked for, and draws the fixed
validation and test sets.

Pools too small to mean anything are refused, in every sampling mode: each train, val and
test pool of each sample must hold at least max(K, ``MIN_POOL_EVENTS`` = 100) distinct
events after the cuts, K being the events one histogram takes from that sample (B + S
background events for SM-only histograms, S of a signal; for the event task, the val/test
events asked of it). Below K an exact histogram cannot be drawn and a multinomial or
Poisson one repeats events, so every histogram is made of the same few events; below 100
events a pool cannot represent its sample's (pT, eta) distribution (its own relative noise
exceeds 10%), and both the network's AUC and the optimum's describe the pool, not the
model. ``__init__`` checks the bound that the spec's event count allows before anything is
generated (every event selected), ``setup`` the real pools. A pool with fewer than
``THIN_POOL_RATIO`` = 2 K events is kept with a warning: exact draws shrink every bin's
variance by (N - K) / (N - 1) < 1/2, so AUCs come out higher than real data would give.
``snr`` = 0 (S = 0) is a null run, logged as such (its AUC should be ~0.5); a positive
``snr`` that rounds to S = 0 is refused. The training stream draws fresh histograms every step (or, with
``dataset="paper"``, iterates over fixed train histograms as the paper did); every
batch is already on the device, so no histogram crosses from host to device.

A batch is ``(x, y)``. Histogram tasks: x (batch, n_pt, n_eta) float32, normalised
histograms. Event task: x (batch, 3) float32, (pT, eta, phi) standardised with the
train pools' mean and std (raw with ``normalisation="none"``). y: float32 0/1 for
two-class tasks (1 = SM + signal; for model_vs_model 1 = the first signal), int64
class index for multiclass (0 = SM-only, m = the m-th signal).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from dmlhc.config import integer, number
from dmlhc.data.ensembles import (
    MODES,
    NORMALISATIONS,
    Mode,
    Task,
    draw_events,
    draw_histograms,
    make_task,
    n_signal_events,
    normalise,
    split_evenly,
)
from dmlhc.data.pools import (
    DEFAULT_FRACTIONS,
    SPLITS,
    Binning,
    Cuts,
    SamplePools,
    check_fractions,
    make_pools,
    split_sizes,
)
from dmlhc.data.samples import check_spec, ensure_generated, is_spec, load
from dmlhc.errors import ConfigError, InputDataError
from dmlhc.events.delphes import EventSample
from dmlhc.optimal import OptimalAUC, choose_pseudo_count, optimal_auc

PAPER_SPLIT = (0.64, 0.16, 0.20)
DATASETS = ("stream", "paper")
STATISTICS_HISTOGRAMS = 8192  # training histograms drawn once to measure the per-bin input mean and std
MIN_POOL_EVENTS = 100  # distinct events every train / val / test pool of every sample must hold (module docstring)
THIN_POOL_RATIO = 2  # a pool of fewer than this many histograms' events is kept, with a warning

log = logging.getLogger(__name__)


@dataclass
class LabelledSet:
    """A fixed set on the device: network inputs ``x``, labels ``y``, and what the optimum needs
    (raw counts (H, n_bins) for histograms, bin index (H,) for events)."""

    x: torch.Tensor
    y: torch.Tensor
    raw: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


class EnsembleDataModule(pl.LightningDataModule):
    """Histogram (or event) classification data drawn on the device from disjoint event pools.

    ``signal``: one sample or a list of samples (or a mapping name -> sample); a sample
    is a path to an event file, an EventSample, a mapping of 'pt'/'eta'/'phi' arrays
    or ready SamplePools. ``background``: one sample. ``task``: binary, multimodel,
    multiclass, model_vs_model or event (:class:`dmlhc.data.ensembles.Task`). ``mode``:
    exact, multinomial or poisson for the training stream; ``eval_mode`` for val/test
    (default: ``mode``). ``n_val`` and ``n_test`` count histograms (or events) per set,
    shared evenly among the task's components (e.g. SM-only and SM + model);
    ``paper_histograms`` is the paper's number per component, split 0.64 / 0.16 / 0.20.
    Training batches of ``batch_size`` are cut from shuffled blocks of ``draw_ahead``
    batches drawn at once (balanced per block, so a batch's class mix varies as in
    the paper's shuffled datasets); ``steps_per_epoch`` batches make an epoch.
    ``seed`` drives the training stream; ``data_seed`` the event split and the
    val/test sets, so runs with different ``seed`` are scored on the same test
    histograms. ``device``: "auto" (the trainer's device, else CUDA when present,
    else CPU), "cpu", "cuda", ...
    """

    def __init__(
        self,
        signal,
        background,
        n_background: int = 50_000,
        snr: float = 1.0,
        task: str = "binary",
        benchmarks: Sequence[str] | None = None,
        other: str | None = None,
        mode: str = "exact",
        eval_mode: str | None = None,
        normalisation: str = "max",
        binning: Binning | Mapping | None = None,
        cuts: Cuts | Mapping | None = None,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        dataset: str = "stream",
        batch_size: int = 128,
        steps_per_epoch: int = 100,
        draw_ahead: int = 32,
        n_val: int = 4_000,
        n_test: int = 10_000,
        paper_histograms: int = 20_000,
        seed: int = 0,
        data_seed: int = 0,
        device: str = "auto",
        pseudo_count: float | None = None,
        generation: Mapping | None = None,
        cache_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["signal", "background"], logger=False)
        self.generation, self.cache_dir = dict(generation or {}), cache_dir
        self.signal_sources = _signal_sources(signal, task, benchmarks, other)
        if "background" in self.signal_sources:
            raise ConfigError("a signal may not be named 'background'; rename it")
        self.background_source = background
        self.n_background = integer("n_background", n_background, minimum=1,
                                    fix="set background.n_background, the SM events per histogram (B)")
        self.snr = number("snr", snr, minimum=0, fix="set snr to S/sqrt(B) >= 0, e.g. snr=1.0 (snr=0 is a null run)")
        self.task: Task = make_task(task, list(self.signal_sources))
        self.mode, self.eval_mode = cast(Mode, mode), cast(Mode, eval_mode or mode)  # checked below
        self.normalisation = normalisation
        self.cuts = cuts if isinstance(cuts, Cuts) else Cuts(**dict(cuts or {}))
        self.binning = _binning_of(binning, self.cuts)
        self.fractions = check_fractions(fractions)
        self.dataset = dataset
        self.batch_size, self.steps_per_epoch, self.draw_ahead = (
            integer(key, value, minimum=1) for key, value in
            (("batch_size", batch_size), ("steps_per_epoch", steps_per_epoch), ("draw_ahead", draw_ahead)))
        self.n_val, self.n_test, self.paper_histograms = (
            integer(key, value) for key, value in (("n_val", n_val), ("n_test", n_test),
                                                   ("paper_histograms", paper_histograms)))
        self.seed, self.data_seed = integer("seed", seed), integer("data_seed", data_seed)
        self.requested_device = device
        self.pseudo_count = None if pseudo_count is None else number("pseudo_count", pseudo_count, minimum=0)
        self._check_arguments()
        self.n_signal = n_signal_events(self.n_background, self.snr)
        self._check_signal_size()
        self.hparams["samples"] = {name: dict(source) for name, source in self._sources().items() if is_spec(source)}
        self._check_sample_specs()
        self.pools: dict[str, SamplePools] = {}
        self.sets: dict[str, LabelledSet] = {}
        self.device: torch.device | None = None
        self._feature_scale: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one network input: (n_pt, n_eta) histograms, or (3,) event features."""
        return (3,) if self.task.name == "event" else self.binning.shape

    @property
    def n_classes(self) -> int:
        return self.task.n_classes

    def _sources(self) -> dict:
        return {"background": self.background_source, **self.signal_sources}

    # ------------------------------------------------------------------ checks

    def _check_arguments(self) -> None:
        choices = {"mode": (self.mode, MODES), "eval_mode": (self.eval_mode, MODES),
                   "normalisation": (self.normalisation, NORMALISATIONS), "dataset": (self.dataset, DATASETS)}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key}={value!r}: choose one of {', '.join(allowed)}")
        n_parts = len(self.task.components())
        for key in ("batch_size", "n_val", "n_test", "paper_histograms"):
            minimum = n_parts if key != "paper_histograms" else 5
            if getattr(self, key) < minimum:
                raise ConfigError(f"{key}={getattr(self, key)}: need at least {minimum} "
                                 f"(one per component of task {self.task.name!r})")
        if self.task.name == "event" and "poisson" in (self.mode, self.eval_mode):
            raise ConfigError("task='event' draws single events: set mode/eval_mode to 'exact' or 'multinomial'")
        self.binning.check_fits(self.cuts)

    def _check_signal_size(self) -> None:
        """S = 0 is a null run: said so when asked for (snr=0), refused when a positive snr rounds to it."""
        if self.n_signal > 0:
            return
        if self.snr > 0:
            raise ConfigError(f"snr={self.snr:g}, n_background={self.n_background}: S = round(snr * sqrt(B)) = "
                              f"round({self.snr * math.sqrt(self.n_background):.3g}) = 0 signal events per histogram, "
                              "so every histogram is SM-only (a null run); raise snr or n_background so that S >= 1, "
                              "or set snr=0 for a deliberate null run")
        log.warning("snr=0: S = 0 signal events per histogram, so both classes are SM-only: a NULL RUN (a control; "
                    "its AUC measures only noise and should be ~0.5, it says nothing about any signal)")

    def _per_histogram(self) -> dict[str, int]:
        """Events of each sample in one histogram (SM-only histograms hold B + S background events)."""
        sm_only = any(component is None for _, component in self.task.components())
        return {"background": self.n_background + (self.n_signal if sm_only else 0),
                **{name: self.n_signal for name in self.signal_sources}}

    def _check_sample_specs(self) -> None:
        """Specs name files or a known benchmark; before anything is generated, a benchmark sample's pools must be
        able to hold what the pool rule asks (module docstring) even if every event passed the cuts (fewer do,
        which :meth:`setup` checks on the real pools)."""
        for name, source in self._sources().items():
            if not is_spec(source):
                continue
            check_spec("background" if name == "background" else f"signal {name}", source)
            if source.get("files"):
                continue  # its events are counted when setup reads them, before any run is opened
            bound = split_sizes(int(source["events"]), self.fractions)
            # Rounding may give a split one event more when fewer events are selected: allow it here.
            self._check_pool_sizes(name, {split: n + (split != "train") for split, n in bound.items()}, bound=True)

    # ------------------------------------------------------------------ samples

    def prepare_data(self) -> None:
        """Generate the benchmark samples missing from the cache (rank 0 only under DDP; a hit costs nothing)."""
        for source in self._sources().values():
            if is_spec(source):
                ensure_generated(source, self.generation, self.cache_dir)

    def _check_pools(self) -> None:
        """The pool rule (module docstring) on the real pools; a warning for pools of fewer than
        ``THIN_POOL_RATIO`` histograms' events."""
        for name, pools in self.pools.items():
            self._check_pool_sizes(name, pools.sizes())
        if self.task.name == "event":
            return
        per_histogram = self._per_histogram()
        for name, pools in self.pools.items():
            for split, size in pools.sizes().items():
                k = per_histogram[name]
                if size < THIN_POOL_RATIO * k:
                    log.warning("%s %s pool: %d events for %d per histogram (N/K = %.2g < %d): exact draws shrink "
                                "every bin's variance by (N - K)/(N - 1) = %.2f and multinomial ones repeat events, so "
                                "AUCs come out higher than real data would give; give a larger sample or lower "
                                "n_background or snr", name, split, size, k, size / k, THIN_POOL_RATIO,
                                (size - k) / max(size - 1, 1))

    def _pool_need(self, name: str, split: str) -> int:
        """Distinct events the ``split`` pool of sample ``name`` must hold: what one histogram (event task: the
        split's set, when drawn exactly) takes from it, and at least ``MIN_POOL_EVENTS``."""
        if self.task.name != "event":
            return max(self._per_histogram()[name], MIN_POOL_EVENTS)
        wanted = {"val": self.n_val, "test": self.n_test}.get(split, 0)
        if getattr(self, self._mode_key(split)) != "exact":
            wanted = 0  # drawn with replacement
        parts = self.task.components()
        asked = [n for (_, component), n in zip(parts, split_evenly(wanted, len(parts)))
                 if (component or "background") == name]
        return max([MIN_POOL_EVENTS, *asked])

    def _check_pool_sizes(self, name: str, sizes: Mapping[str, int], bound: bool = False) -> None:
        """Raise unless every pool of sample ``name`` (``sizes`` per split; ``bound``: upper bounds before
        generation) holds what :meth:`_pool_need` asks."""
        for split in SPLITS:
            if sizes[split] < self._pool_need(name, split):
                raise self._too_few_error(name, split, sizes[split], bound)

    def _mode_key(self, split: str) -> str:
        return "mode" if split == "train" else "eval_mode"

    def _too_few_error(self, name: str, split: str, size: int, bound: bool) -> ConfigError | InputDataError:
        """The pool rule broken: a ConfigError for a generated sample (raise its events), an InputDataError for
        events given as files or arrays. Its fixes all lead to pools that follow the rule."""
        source = self._sources()[name]
        generated = is_spec(source) and not source.get("files")
        key = "background" if name == "background" else "signal"
        larger = f"raise {key}.events" if generated else f"give a larger {key} sample"
        need = self._pool_need(name, split)
        if self.task.name == "event":
            wanted = f"n_{split}={getattr(self, f'n_{split}')} asks for {need} distinct events of {name!r}"
            lower = f"lower n_{split}, or "
        elif name == "background":
            wanted = (f"snr={self.snr:g}, n_background={self.n_background} put {self._per_histogram()[name]} "
                      f"background events (B plus, in SM-only histograms, S = {self.n_signal}) in each histogram")
            lower = "lower n_background or snr, or "
        else:
            wanted = (f"snr={self.snr:g}, n_background={self.n_background} put S = round(snr * sqrt(B)) = "
                      f"{self.n_signal} events of signal {name!r} in each histogram")
            lower = "lower snr or n_background, or "
        if need == MIN_POOL_EVENTS:
            lower = ""  # the floor, not the histogram, is what the pool misses
        holds = f"at most {size} (before the cuts)" if bound else f"only {size} after the cuts"
        message = (f"{wanted}, but its {split} pool holds {holds}; every train/val/test pool must hold at least "
                   f"max(events per histogram, {MIN_POOL_EVENTS}) distinct events in any sampling mode, or its "
                   f"histograms repeat the same few events and the AUC means nothing; {lower}{larger}")
        return ConfigError(message) if generated else InputDataError(message)

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Build the pools on the device, check them, draw the fixed sets (once)."""
        if self.sets:
            return
        self.device = self._resolve_device()
        options = dict(binning=self.binning, cuts=self.cuts, fractions=self.fractions, device=self.device)
        for index, (name, source) in enumerate(self._sources().items()):
            if name in self.pools:  # shared by another DataModule of the same samples (share_pools)
                continue
            seed = _derive_seed(self.data_seed, "split", index)
            events = load(source, self.generation, self.cache_dir) if is_spec(source) else source
            self.pools[name] = make_pools(events, name=name, seed=seed, **options)
        self._check_pools()
        if self.task.name == "event" and self.normalisation != "none":
            train = torch.cat([p.train.features for p in self.pools.values()])
            self._feature_scale = (train.mean(dim=0), train.std(dim=0).clamp_min(1e-12))
        sizes = self._set_sizes()
        for split in SPLITS:
            if split == "train" and self.dataset == "stream":
                continue
            mode = getattr(self, self._mode_key(split))
            generator = self._generator(_derive_seed(self.data_seed, split))
            self.sets[split] = self._draw_set(split, sizes[split], mode, generator)

    def share_pools(self, other: EnsembleDataModule) -> None:
        """Use the event pools of ``other`` (set up, same samples, cuts, binning and split) instead of building
        them again in :meth:`setup`: the points of a grid differ only in S/sqrt(B)."""
        if other.binning != self.binning or other.cuts != self.cuts or other.fractions != self.fractions \
                or other.data_seed != self.data_seed or set(other.pools) != set(self._sources()):
            raise ValueError("share_pools: the other DataModule has different samples, cuts, binning or split")
        self.pools = dict(other.pools)

    def _new_train_generator(self) -> torch.Generator:
        """The training stream's generator, from ``seed`` (set it between fits for repeats) and the DDP rank."""
        rank = self.trainer.global_rank if self.trainer is not None else 0
        return self._generator(_derive_seed(self.seed, "train", rank))

    def _resolve_device(self) -> torch.device:
        if self.requested_device != "auto":
            return torch.device(self.requested_device)
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def _set_sizes(self) -> dict[str, int]:
        """Histograms (or events) of the fixed sets; paper mode: 0.64 / 0.16 / 0.20 of paper_histograms per
        component."""
        if self.dataset == "stream":
            return {"val": self.n_val, "test": self.n_test}
        n_train, n_val = (round(f * self.paper_histograms) for f in PAPER_SPLIT[:2])
        per_part = {"train": n_train, "val": n_val, "test": self.paper_histograms - n_train - n_val}
        return {split: n * len(self.task.components()) for split, n in per_part.items()}

    def _draw_set(self, split: str, n: int, mode: Mode, generator: torch.Generator) -> LabelledSet:
        raw, y, for_optimum = self._draw(split, n, mode, generator)
        return LabelledSet(self.network_inputs(raw), y, for_optimum)

    def _draw(self, split: str, n: int, mode: Mode, generator: torch.Generator):
        """One batch or set of ``split``: raw counts (n, n_bins) or event features (n, 3), labels, and what the
        optimum scores (the counts, or the events' bin index)."""
        background = self.pools["background"][split]
        signals = {name: self.pools[name][split] for name in self.signal_sources}
        if self.task.name == "event":
            return draw_events(self.task, background, signals, n, mode=mode, generator=generator)
        counts, y = draw_histograms(self.task, background, signals, self.n_background, self.n_signal, n,
                                    mode=mode, generator=generator)
        return counts, y, counts

    def network_inputs(self, raw: torch.Tensor) -> torch.Tensor:
        """Network inputs of raw counts (n, n_bins), as training gives them: normalised histograms (n, n_pt, n_eta);
        or, for the event task, standardised event features (n, 3)."""
        if self.task.name != "event":
            return normalise(raw, self.normalisation).view(-1, *self.binning.shape)
        if self._feature_scale is None:
            return raw
        mean, std = self._feature_scale
        return (raw - mean) / std

    def training_inputs(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fresh training inputs and labels (shuffled; balanced over components in total)."""
        mode = "multinomial" if self.task.name == "event" else self.mode  # fresh single events: with replacement
        raw, y, _ = self._draw("train", n, mode, generator)
        return self.network_inputs(raw), y

    @property
    def histograms_per_epoch(self) -> int:
        """Training histograms (or events) one epoch shows the network."""
        if self.dataset == "stream":
            return self.batch_size * self.steps_per_epoch
        return round(PAPER_SPLIT[0] * self.paper_histograms) * len(self.task.components())

    # ------------------------------------------------------------------ loaders

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        generator = self._new_train_generator()
        if self.dataset == "paper":
            return _loader(_FixedBatches(self.sets["train"], self.batch_size, generator))
        return _loader(_BatchStream(lambda n: self.training_inputs(n, generator), self.batch_size, self.steps_per_epoch,
                                    self.draw_ahead))

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        return _loader(_FixedBatches(self.sets["val"], self.batch_size))

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        return _loader(_FixedBatches(self.sets["test"], self.batch_size))

    def _require_setup(self) -> None:
        if not self.sets:
            raise RuntimeError("call setup() first (a Trainer does it for you)")

    def input_statistics(self, n: int = STATISTICS_HISTOGRAMS) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-input mean and standard deviation (n_bins,) of the network inputs, for a fixed standardisation.

        Measured once on ``n`` training histograms (balanced over the task's components) drawn with a seed of
        their own from ``data_seed``: the same for every training seed, and no val/test histogram is involved.
        A bin's standard deviation is floored at the normalised value of one count, so bins that are almost
        always empty are not blown up (a single event there would otherwise weigh like tens of sigma and the
        network would learn which rare bins happen to be empty in the finite train pool). None for the event
        task (its features are standardised already).
        """
        self._require_setup()
        if self.task.name == "event":
            return None
        generator = self._generator(_derive_seed(self.data_seed, "statistics"))
        raw, _, _ = self._draw("train", max(n, len(self.task.components())), self.mode, generator)
        x = self.network_inputs(raw).flatten(1)
        one_count = (x.sum(dim=1) / raw.sum(dim=1).clamp_min(1)).mean()
        return x.mean(dim=0), x.std(dim=0).clamp_min(float(one_count))

    # ------------------------------------------------------------------ results

    @property
    def test_histograms(self) -> torch.Tensor:
        """Network inputs of the test set, as batches give them."""
        self._require_setup()
        return self.sets["test"].x

    @property
    def test_counts(self) -> torch.Tensor:
        """Raw counts (H, n_bins) float32 of the test histograms (bin index (H,) for events)."""
        self._require_setup()
        return self.sets["test"].raw

    def optimum_pseudo_count(self) -> float:
        """The pseudo-count of the optimum's bin probabilities: as given, else chosen on the validation set
        (:func:`dmlhc.optimal.choose_pseudo_count`, from the train pools; cached)."""
        self._require_setup()
        if self.pseudo_count is None:
            background, signals = self.pool_counts(("train",))
            val = self.sets["val"]
            self.pseudo_count = choose_pseudo_count(val.raw, val.y, self.task, background, signals,
                                                    *self._optimum_sizes())
        return self.pseudo_count

    def _optimum_sizes(self) -> tuple[int, int]:
        """(B, S) of the scored sets; single events (task 'event') are scored as (0, 1)."""
        return (0, 1) if self.task.name == "event" else (self.n_background, self.n_signal)

    def pool_counts(self, splits: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the background's bin counts, {signal source: its bin counts}) summed over the ``splits`` pools."""
        counts = {name: torch.stack([pools[s].bin_counts for s in splits]).sum(dim=0)
                  for name, pools in self.pools.items()}
        return counts.pop("background"), counts

    def optimal_auc(self, split: str = "test", n_bootstrap: int = 0,
                    estimate_from: Sequence[str] = ("train",)) -> OptimalAUC:
        """AUC of the likelihood-ratio statistic on the ``split`` set, with bin probabilities estimated from the
        ``estimate_from`` pools (never the scored split) and :meth:`optimum_pseudo_count`; ``n_bootstrap`` > 0
        adds its spread over bootstrap replicas of those pools."""
        self._require_setup()
        if split in estimate_from:
            raise ValueError(f"estimate_from={list(estimate_from)} includes the scored split {split!r}; "
                             "estimate the probabilities from other pools")
        background, counts = self.pool_counts(estimate_from)
        labelled = self.sets[split]
        return optimal_auc(labelled.raw, labelled.y, self.task, background, counts, *self._optimum_sizes(),
                           pseudo_count=self.optimum_pseudo_count(), n_bootstrap=n_bootstrap,
                           generator=self._generator(_derive_seed(self.data_seed, "bootstrap")))

    def tracking_params(self) -> dict:
        """What a run records beside its config: the benchmarks, S/sqrt(B), B, S, the binning and the task."""
        names = list(self.signal_sources)
        label = names[0] if len(names) == 1 or self.task.name == "model_vs_model" else self.task.name
        return {"signal": label, "benchmarks": label, "snr": self.snr, "n_background": self.n_background,
                "n_signal": self.n_signal, "binning": self.binning.describe(), "task": self.task.name}

    def summary(self) -> dict:
        """Plain-data description for logging: B, S, pool sizes and N/B per split."""
        self._require_setup()
        info = {"task": self.task.name, "signals": list(self.signal_sources), "snr": self.snr,
                "n_background": self.n_background, "n_signal": self.n_signal, "mode": self.mode,
                "eval_mode": self.eval_mode, "normalisation": self.normalisation, "dataset": self.dataset,
                "binning": self.binning.describe(), "seed": self.seed, "data_seed": self.data_seed,
                "device": str(self.device)}
        for name, pools in self.pools.items():
            info[f"selection_efficiency/{name}"] = pools.n_selected / pools.n_read if pools.n_read else math.nan
            for split, size in pools.sizes().items():
                info[f"pool/{name}/{split}"] = size
                if self.task.name != "event":
                    per_histogram = self.n_signal if name in self.signal_sources else self.n_background + self.n_signal
                    info[f"pool_ratio/{name}/{split}"] = size / per_histogram if per_histogram else math.inf
        return info


def _signal_sources(signal, task: str, benchmarks: Sequence[str] | None, other: str | None) -> dict:
    """Signal samples by name.

    A spec (the ``signal`` config group): itself, or with ``benchmarks`` one generated spec per benchmark name (same
    number of events), or for ``task="model_vs_model"`` itself and the benchmark ``other``. Events: a mapping of
    name -> sample keeps its names; one sample or a list gets file stems or signal0, signal1, ...
    """
    if is_spec(signal):
        if benchmarks:
            return {name: _benchmark_spec(name, signal) for name in benchmarks}
        sources = {signal["name"]: signal}
        if task == "model_vs_model":
            if not other:
                raise ConfigError("task model_vs_model: give the second benchmark as other (model=model_vs_model "
                                  "sets data.other=spin2_onshell)")
            if other == signal["name"]:
                raise ConfigError(f"data.other={other!r} equals signal={other!r}: compare two different benchmarks")
            sources[other] = _benchmark_spec(other, signal)
        return sources
    if benchmarks or other:
        raise ConfigError("benchmarks and other name benchmarks to generate: give the signal as a spec (the signal "
                          "config group), or pass the samples themselves as a mapping name -> sample")
    if isinstance(signal, Mapping) and not {"pt", "eta"} <= set(signal):
        return dict(signal)
    single = isinstance(signal, (str, os.PathLike, EventSample, SamplePools, Mapping))
    listed = [signal] if single else list(signal)
    return {_default_name(s, i): s for i, s in enumerate(listed)}


def _benchmark_spec(name: str, like: Mapping) -> dict:
    return {"name": name, "benchmark": name, "files": None, "events": like.get("events")}


def _binning_of(binning: Binning | Mapping | None, cuts: Cuts) -> Binning:
    """The binning; ranges not given follow from the cuts (the paper's grid spans the selection window)."""
    if binning is None or isinstance(binning, Binning):
        return binning or Binning(pt_range=(cuts.pt_min, cuts.pt_max), eta_range=(-cuts.abs_eta_max, cuts.abs_eta_max))
    fields = {"pt_range": (cuts.pt_min, cuts.pt_max), "eta_range": (-cuts.abs_eta_max, cuts.abs_eta_max),
              **{k: v for k, v in dict(binning).items() if v is not None}}
    return Binning(**fields)


def _default_name(source, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.path.splitext(os.path.basename(source))[0]
    if isinstance(source, SamplePools):
        return source.name
    if isinstance(source, EventSample) and source.path is not None:
        return source.path.stem
    return f"signal{index}"


def _derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """An independent seed per purpose ('split', 'val', ...), reproducible from ``seed``."""
    key = [seed, index, *purpose.encode()]
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> 1)


def _loader(dataset: IterableDataset) -> DataLoader:
    return DataLoader(dataset, batch_size=None, num_workers=0)


class _BatchStream(IterableDataset):
    """``n_batches`` fresh batches per pass, cut from blocks of ``per_block`` batches that ``draw(n)`` makes on
    the device (one sampler call per block amortises its fixed cost; the leftovers carry over to the next pass)."""

    def __init__(self, draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]], batch_size: int, n_batches: int,
                 per_block: int):
        self.draw, self.batch_size, self.n_batches, self.per_block = draw, batch_size, n_batches, per_block
        self._ready: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        for _ in range(self.n_batches):
            if not self._ready:
                x, y = self.draw(self.batch_size * self.per_block)
                self._ready = list(zip(x.split(self.batch_size), y.split(self.batch_size)))[::-1]
            yield self._ready.pop()


class _FixedBatches(IterableDataset):
    """Batches of a fixed set, in order, or reshuffled every pass when given a generator."""

    def __init__(self, labelled: LabelledSet, batch_size: int, generator: torch.Generator | None = None):
        self.labelled, self.batch_size, self.generator = labelled, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(len(self.labelled) / self.batch_size)

    def __iter__(self):
        n = len(self.labelled)
        device = self.labelled.y.device
        order = (torch.randperm(n, generator=self.generator, device=device) if self.generator is not None
                 else torch.arange(n, device=device))
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield self.labelled.x[rows], self.labelled.y[rows]
