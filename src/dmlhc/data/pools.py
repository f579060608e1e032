"""Event pools: selected events of one sample, split into disjoint train / val / test sets.

The selection cuts are applied and every sample's events are split into disjoint
train / val / test pools *before* any histogram is built, so no event of a test
histogram was ever seen in training. Pools live on the training device as compact
tensors: each event's (pT, eta) bin index is precomputed for the configured
:class:`Binning`, its features (pT, eta, phi) are kept for event-level tasks and its
row in the source sample (``event_id``) is kept so disjointness can be checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch

from dmlhc.events.delphes import EventSample, read_delphes

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


@dataclass(frozen=True)
class Cuts:
    """Selection cuts on the leading jet: ``pt_min <= pT <= pt_max`` (GeV), ``|eta| <= abs_eta_max``."""

    pt_min: float = 130.0
    pt_max: float = 2000.0
    abs_eta_max: float = 4.0

    def __post_init__(self):
        if not 0 <= self.pt_min < self.pt_max:
            raise ValueError(f"cuts.pt_min={self.pt_min} and cuts.pt_max={self.pt_max}: need 0 <= pt_min < pt_max")
        if not self.abs_eta_max > 0:
            raise ValueError(f"cuts.abs_eta_max={self.abs_eta_max}: must be positive")

    def mask(self, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Boolean mask of the events that pass."""
        return (pt >= self.pt_min) & (pt <= self.pt_max) & (np.abs(eta) <= self.abs_eta_max)


@dataclass(frozen=True)
class Binning:
    """The (pT, eta) grid of the histograms; bin ``i * n_eta + j`` is pT bin i, eta bin j.

    The default is the paper's 30 x 30 linear grid over the selection window. Both
    ranges must equal the selection window (:meth:`check_fits`): bins outside the
    cuts would stay empty and selected events outside the bins would be lost.
    """

    n_pt: int = 30
    n_eta: int = 30
    pt_range: tuple[float, float] = (130.0, 2000.0)
    eta_range: tuple[float, float] = (-4.0, 4.0)
    pt_scale: Literal["linear", "log"] = "linear"

    def __post_init__(self):
        object.__setattr__(self, "pt_range", tuple(float(x) for x in self.pt_range))
        object.__setattr__(self, "eta_range", tuple(float(x) for x in self.eta_range))
        for key in ("n_pt", "n_eta"):
            if int(getattr(self, key)) != getattr(self, key) or getattr(self, key) < 1:
                raise ValueError(f"binning.{key}={getattr(self, key)!r}: must be a positive integer")
        for key in ("pt_range", "eta_range"):
            lo, hi = getattr(self, key)
            if len(getattr(self, key)) != 2 or not lo < hi:
                raise ValueError(f"binning.{key}={getattr(self, key)}: give [low, high] with low < high")
        if self.pt_scale not in ("linear", "log"):
            raise ValueError(f"binning.pt_scale={self.pt_scale!r}: choose 'linear' or 'log'")
        if self.pt_scale == "log" and self.pt_range[0] <= 0:
            raise ValueError(f"binning.pt_range={self.pt_range}: log pT bins need a positive lower edge")

    @classmethod
    def coerce(cls, value: Binning | Mapping | None) -> Binning:
        """A Binning from itself, a mapping of its fields (e.g. a Hydra config) or None (default)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(**dict(cast(Mapping, value)))  # neither None nor a Binning: a mapping

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_pt, self.n_eta)

    @property
    def n_bins(self) -> int:
        return self.n_pt * self.n_eta

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin edges (pT, eta)."""
        spacing = np.geomspace if self.pt_scale == "log" else np.linspace
        return spacing(*self.pt_range, self.n_pt + 1), np.linspace(*self.eta_range, self.n_eta + 1)

    def bin_index(self, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Flat bin index of each event (upper edges inclusive); -1 outside the grid."""
        pt_edges, eta_edges = self.edges()
        i = _axis_index(pt_edges, pt)
        j = _axis_index(eta_edges, eta)
        return np.where((i >= 0) & (j >= 0), i * self.n_eta + j, -1)

    def check_fits(self, cuts: Cuts) -> None:
        """Raise unless both bin ranges equal the selection window of ``cuts``."""
        windows = {
            "pt_range": ((cuts.pt_min, cuts.pt_max), "cuts.pt_min / cuts.pt_max"),
            "eta_range": ((-cuts.abs_eta_max, cuts.abs_eta_max), "cuts.abs_eta_max"),
        }
        for key, (window, cut_keys) in windows.items():
            if not np.allclose(getattr(self, key), window, rtol=1e-9, atol=1e-9):
                raise ValueError(
                    f"binning.{key}={list(getattr(self, key))} does not match the selection window {list(window)} "
                    f"set by {cut_keys}: bins outside the cuts stay empty and selected events outside the bins "
                    f"are lost; set binning.{key}: {list(window)} or change {cut_keys}"
                )

    def describe(self) -> str:
        return (f"{self.n_pt}x{self.n_eta} {self.pt_scale} pT [{self.pt_range[0]:g}, {self.pt_range[1]:g}] GeV, "
                f"eta [{self.eta_range[0]:g}, {self.eta_range[1]:g}]")


def _axis_index(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    index = np.searchsorted(edges, x, side="right") - 1
    index = np.where(x == edges[-1], len(edges) - 2, index)  # upper edge belongs to the last bin
    return np.where((x >= edges[0]) & (x <= edges[-1]), index, -1)


@dataclass
class EventPool:
    """The events of one split of one sample, on the device.

    ``bin_index`` (N,) int32 flat bin of each event; ``features`` (N, 3) float32
    (pT, eta, phi); ``event_id`` (N,) int64 row in the source sample;
    ``bin_counts`` (n_bins,) int64 events per bin; ``n_occupied_bins`` how many are non-empty.
    """

    name: str
    split: str
    bin_index: torch.Tensor
    features: torch.Tensor
    event_id: torch.Tensor
    n_bins: int
    bin_counts: torch.Tensor = field(init=False)
    n_occupied_bins: int = field(init=False)

    def __post_init__(self):
        self.bin_counts = torch.bincount(self.bin_index.long(), minlength=self.n_bins)
        self.n_occupied_bins = int((self.bin_counts > 0).sum())

    def __len__(self) -> int:
        return len(self.bin_index)

    @property
    def device(self) -> torch.device:
        return self.bin_index.device

    def to(self, device: str | torch.device) -> EventPool:
        return EventPool(self.name, self.split, self.bin_index.to(device), self.features.to(device),
                         self.event_id.to(device), self.n_bins)

    def on_bins(self, bins: torch.Tensor) -> EventPool:
        """The same events, each bin renumbered as its position in ``bins`` (which must hold every bin an event
        is in): a histogram drawn from it is the columns ``bins`` of the same histogram drawn from this pool."""
        position = torch.full((self.n_bins,), -1, dtype=torch.int64, device=self.device)
        position[bins] = torch.arange(len(bins), device=self.device)
        index = position[self.bin_index.long()]
        if bool((index < 0).any()):
            raise ValueError(f"on_bins: events of pool {self.name}/{self.split} lie outside the given bins")
        return EventPool(self.name, self.split, index.to(self.bin_index.dtype), self.features, self.event_id,
                         len(bins))


@dataclass
class SamplePools:
    """Disjoint train / val / test pools of one sample, and how they were made."""

    name: str
    train: EventPool
    val: EventPool
    test: EventPool
    binning: Binning
    cuts: Cuts
    n_read: int  # events in the source
    n_selected: int  # events passing the cuts

    def __getitem__(self, split: str) -> EventPool:
        if split not in SPLITS:
            raise KeyError(f"no split {split!r}; the splits are {', '.join(SPLITS)}")
        return getattr(self, split)

    def sizes(self) -> dict[str, int]:
        return {split: len(self[split]) for split in SPLITS}

    def to(self, device: str | torch.device) -> SamplePools:
        moved = {split: self[split].to(device) for split in SPLITS}
        return SamplePools(self.name, **moved, binning=self.binning, cuts=self.cuts,
                           n_read=self.n_read, n_selected=self.n_selected)


PoolSource = SamplePools | EventSample | Mapping | str | os.PathLike


def build_pools(
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray | None = None,
    *,
    name: str = "sample",
    binning: Binning | Mapping | None = None,
    cuts: Cuts | Mapping | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> SamplePools:
    """Pools from per-event leading-jet arrays: cut, split at random (seeded), bin, move to ``device``.

    ``event_id`` of an event is its position in the given arrays.
    """
    binning = Binning.coerce(binning)
    cuts = cuts if isinstance(cuts, Cuts) else Cuts(**dict(cuts or {}))
    binning.check_fits(cuts)
    fractions = check_fractions(fractions)
    pt, eta = np.asarray(pt, dtype=np.float64), np.asarray(eta, dtype=np.float64)
    phi = np.zeros_like(pt) if phi is None else np.asarray(phi, dtype=np.float64)
    if not pt.shape == eta.shape == phi.shape or pt.ndim != 1:
        raise ValueError(f"{name}: pt, eta and phi must be 1-D arrays of one length, "
                         f"got {pt.shape}, {eta.shape}, {phi.shape}")

    selected = np.flatnonzero(cuts.mask(pt, eta))
    order = selected[np.random.default_rng(seed).permutation(len(selected))]
    bounds = np.cumsum(list(split_sizes(len(order), fractions).values()))[:2]
    bins = binning.bin_index(pt, eta)
    pools = {}
    for split, ids in zip(SPLITS, np.split(order, bounds)):
        ids = np.sort(ids)  # keep source order inside a pool
        pools[split] = EventPool(
            name=name,
            split=split,
            bin_index=torch.as_tensor(bins[ids].astype(np.int32), device=device),
            features=torch.as_tensor(np.stack([pt[ids], eta[ids], phi[ids]], axis=1), dtype=torch.float32,
                                     device=device),
            event_id=torch.as_tensor(ids, dtype=torch.int64, device=device),
            n_bins=binning.n_bins,
        )
    return SamplePools(name, **pools, binning=binning, cuts=cuts, n_read=len(pt), n_selected=len(selected))


def split_sizes(n_events: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> dict[str, int]:
    """Events of each split when ``n_events`` selected events are split by ``fractions`` (as :func:`build_pools`)."""
    bounds = [0, *np.round(np.cumsum(fractions)[:2] * n_events).astype(int).tolist(), n_events]
    return {split: bounds[i + 1] - bounds[i] for i, split in enumerate(SPLITS)}


def make_pools(source: PoolSource, *, name: str | None = None, **options) -> SamplePools:
    """Pools from a path to an event file, an :class:`EventSample`, a mapping of arrays
    (``pt``, ``eta`` and optionally ``phi``) or ready pools (moved to ``options['device']``).

    ``options`` are those of :func:`build_pools`; ``name`` defaults to the file's stem.
    """
    if isinstance(source, SamplePools):
        _check_ready_pools(source, options)
        return source.to(options.get("device", source.train.device))
    if isinstance(source, (str, os.PathLike)):
        return make_pools(read_delphes(source), name=name or Path(source).stem, **options)
    if isinstance(source, EventSample):
        jet = source.leading_jet()
        default_name = Path(source.path).stem if source.path else "sample"
        return build_pools(jet["pt"], jet["eta"], jet["phi"], name=name or default_name, **options)
    if isinstance(source, Mapping):
        missing = [key for key in ("pt", "eta") if key not in source]
        if missing:
            raise ValueError(f"{name or 'sample'}: the arrays lack {', '.join(missing)}; give a mapping with "
                             f"'pt', 'eta' and optionally 'phi' (it has {', '.join(map(str, source)) or 'nothing'})")
        return build_pools(source["pt"], source["eta"], source.get("phi"), name=name or "sample", **options)
    raise TypeError(f"cannot make event pools from {type(source).__name__}; give a path to an event file, "
                    "an EventSample, a mapping of 'pt'/'eta'/'phi' arrays or SamplePools")


def _check_ready_pools(pools: SamplePools, options: dict) -> None:
    """Ready pools must have been made with the binning and cuts asked for."""
    cuts = options.get("cuts")
    wanted = {"binning": Binning.coerce(options.get("binning")),
              "cuts": cuts if isinstance(cuts, Cuts) else Cuts(**dict(cuts or {}))}
    for key, value in wanted.items():
        if key in options and getattr(pools, key) != value:
            raise ValueError(f"pools {pools.name!r} were made with {key} {getattr(pools, key)}, not the {key} "
                             f"asked for ({value}); rebuild them with make_pools or drop the {key} setting")


def check_fractions(fractions) -> tuple[float, float, float]:
    """Three positive train / val / test fractions that sum to 1, as floats (else a ValueError naming them)."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions={list(fractions)}: give three positive train/val/test fractions that sum to 1, "
                         f"e.g. {list(DEFAULT_FRACTIONS)}")
    return fractions
