"""Structured config of the sweeper, registered as ``hydra/sweeper=dmlhc_optuna``."""

from dataclasses import dataclass, field
from typing import Any  # real types: Hydra loads this module without sys.modules

from hydra.core.config_store import ConfigStore


@dataclass
class PrunerConf:
    """Optuna's MedianPruner: prune a trial whose per-epoch value is worse than the median of earlier trials."""

    enabled: bool = True
    n_startup_trials: int = 3  # trials run to the end before any pruning
    n_warmup_steps: int = 3  # epochs of a trial before it may be pruned


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.dmlhc_optuna_sweeper.sweeper.OptunaSweeper"
    study_name: str | None = None  # None: named by the search and its fixed settings (signal, snr, B, task)
    # any SQLAlchemy URL; None: sqlite:///mlruns/optuna.db. A password: '${oc.env:OPTUNA_STORAGE}', not literally
    storage: str | None = None
    direction: str = "maximize"
    n_trials: int = 20  # the study's budget, shared by every worker on the storage
    n_jobs: int = 1  # trials launched together (a batch for the launcher)
    seed: int | None = 1  # TPE sampler seed
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # key: choice(...) | range(...) | interval(...) | tag(log, ...)
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="dmlhc_optuna", node=OptunaSweeperConf, provider="dmlhc")
