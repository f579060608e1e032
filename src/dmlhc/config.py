"""From Hydra config to objects: instantiation that turns a constructor's ValueError into a
:class:`~dmlhc.errors.ConfigError` naming the config key, numbers checked as such, and the callbacks of the
``callbacks`` group."""

from __future__ import annotations

import math

import hydra
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from dmlhc.errors import ConfigError, UserError


def instantiate(key: str, node: DictConfig, **kwargs):
    """``hydra.utils.instantiate(node, **kwargs)``; a ValueError or Lightning MisconfigurationException of the
    constructor (bad values) becomes a ConfigError that starts with ``key``."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UserError):  # already says what to fix, with its own kind and exit code
            raise cause from None
        if isinstance(cause, (ValueError, MisconfigurationException)):
            raise ConfigError(f"{key}: {cause}") from None
        raise


def number(key: str, value, *, minimum: float | None = None, above: float | None = None, fix: str = "") -> float:
    """``value`` (a number or its text) as a finite float of at least ``minimum`` (or more than ``above``); anything
    else (``abc``, ``nan``, ``inf``, too small) is a ConfigError naming ``key``."""
    parsed = _checked(key, value, False, minimum, fix)
    if above is not None and not parsed > above:
        raise ConfigError(f"{key}={value!r}: must be > {above:g}" + (f"; {fix}" if fix else ""))
    return parsed


def integer(key: str, value, *, minimum: int | None = None, fix: str = "") -> int:
    """``value`` as an int of at least ``minimum`` (``2.5`` or ``abc`` is a ConfigError naming ``key``)."""
    return int(_checked(key, value, True, minimum, fix))


def _checked(key: str, value, whole: bool, minimum: float | None, fix: str) -> float:
    try:
        parsed = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        parsed = math.nan
    if not (math.isfinite(parsed) and (not whole or parsed == int(parsed)) and (minimum is None or parsed >= minimum)):
        what = ("an integer" if whole else "a finite number") + (f" >= {minimum:g}" if minimum is not None else "")
        raise ConfigError(f"{key}={value!r}: must be {what}" + (f"; {fix}" if fix else ""))
    return parsed


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """A script's command line as (its own arguments, the ``python train.py`` overrides after ``--``)."""
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def instantiate_callbacks(callbacks: DictConfig | None) -> list:
    """Every entry of the ``callbacks`` group that has a ``_target_`` (``callbacks.NAME: null`` drops one)."""
    return [instantiate(f"callbacks.{name!s}", node) for name, node in (callbacks or {}).items()
            if node is not None and "_target_" in node]


def silence_known_noise() -> None:
    """Drop what Lightning prints on every run that says nothing about this one: the litlogger tip, a torch
    pytree deprecation inside Lightning, and the IterableDataset ``__len__`` warning (our loaders run in the
    training process, num_workers=0, where the length is exact)."""
    import logging
    import warnings

    class _NoTip(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "litlogger" not in record.getMessage()

    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTip())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")


def prepare_process(cfg: DictConfig) -> None:
    """What every job (train, eval) sets up in its process first: Lightning's known noise silenced, torch's
    intra-op threads (``torch_threads``; null: torch's default), and denormal floats flushed to zero on the CPU.

    The flush matters: with the L2 penalty, Adam's first moment of a weight no histogram reaches (a bin no train
    event fills) decays geometrically into denormal floats after ~2500 steps (~60 epochs), which a CPU handles
    ~20x slower (measured: a fused Adam step of 18 stacked networks went from 0.6 to 13.9 ms; a grid epoch of ~100
    networks from ~8 to 17 s). Below 1.2e-38 nothing a network computes changes."""
    import torch

    silence_known_noise()
    torch.set_flush_denormal(True)
    if cfg.get("torch_threads"):
        torch.set_num_threads(integer("torch_threads", cfg.torch_threads, minimum=1))
