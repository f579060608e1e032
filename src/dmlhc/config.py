"""From Hydra config to objects: instantiation that turns a constructor's ValueError into a
:class:`~dmlhc.errors.ConfigError` naming the config key, and the callbacks of the ``callbacks`` group."""

from __future__ import annotations

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from dmlhc.errors import ConfigError


def instantiate(key: str, node: DictConfig, **kwargs):
    """``hydra.utils.instantiate(node, **kwargs)``; a ValueError of the constructor (bad values) becomes a
    ConfigError that starts with ``key``."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, ValueError):
            raise ConfigError(f"{key}: {cause}") from None
        raise


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
