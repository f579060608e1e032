"""Structured config of the sweeper, registered as ``hydra/sweeper=dmlhc_optuna``."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional  # real types: Hydra loads this module without sys.modules

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
    study_name: str = "dmlhc"
    storage: Optional[str] = None  # any SQLAlchemy URL; None: sqlite:///mlruns/optuna.db
    direction: str = "maximize"
    n_trials: int = 20  # the study's budget, shared by every worker on the storage
    n_jobs: int = 1  # trials launched together (a batch for the launcher)
    seed: Optional[int] = 1  # TPE sampler seed
    pruner: PrunerConf = field(default_factory=PrunerConf)
    params: Dict[str, Any] = field(default_factory=dict)  # key: choice(...) | range(...) | interval(...) | tag(log, ...)


ConfigStore.instance().store(group="hydra/sweeper", name="dmlhc_optuna", node=OptunaSweeperConf, provider="dmlhc")
