"""An Optuna study run by Hydra's launcher: ask a batch of trials, launch them as jobs, tell the results.

Resuming: the study lives in an RDB storage (SQLite by default, PostgreSQL for many
workers); re-running the same command loads it and runs only what is missing of
the budget. Trials count towards ``n_trials`` when complete, pruned, failed by their
job, or running with a live heartbeat; a trial whose worker died (Ctrl-C, node
lost) stops beating and is marked failed at the next start, so it is asked again.
Several workers on one storage share the budget: a trial asked beyond it is
discarded (failed with ``over_budget``) before it runs.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from dmlhc.tracking.store import log_study_summary, retry_on_race, sqlite_creation_lock

if TYPE_CHECKING:
    from optuna.storages._heartbeat import BaseHeartbeat

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


def distribution_of(override: Override) -> BaseDistribution:
    """The Optuna distribution of a Hydra sweep override: choice, range (ints, stop excluded), interval (log tag)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([str(v) if not isinstance(v, (int, float, bool)) else v for v in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        assert start is not None and stop is not None  # hydra's range() sets both (range(n) is range(0, n))
        if all(float(x).is_integer() for x in (start, stop, step)):
            return IntDistribution(int(start), int(stop) - int(step), step=int(step))
        return FloatDistribution(start, stop - step, step=step)
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        assert value.start is not None and value.end is not None  # hydra's interval(start, end) sets both
        if all(isinstance(x, int) for x in (value.start, value.end)):
            return IntDistribution(int(value.start), int(value.end), log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line}: give the search space as choice(...), range(...) or interval(...)")


def search_space(params: dict[str, Any], arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Distributions of the configured params and of sweep overrides on the command line; fixed overrides."""
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    configured = parser.parse_overrides([f"{key}={value}" for key, value in (params or {}).items()
                                         if value is not None])  # null removes a key inherited from a parent config
    for override in [*configured, *parser.parse_overrides(arguments)]:
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution_of(override)
        else:
            space.pop(key, None)
            assert override.input_line is not None  # parse_overrides records the line of every override
            fixed.append(override.input_line)
    return space, fixed


def counts_towards_budget(trial: optuna.trial.FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        return True
    return trial.state == TrialState.FAIL and "job_error" in trial.user_attrs


class OptunaSweeper(Sweeper):
    """``python train.py hparams_search=<name> -m``: an Optuna study over Hydra overrides."""

    def __init__(self, study_name: str, storage: str | None, direction: str, n_trials: int, n_jobs: int,
                 seed: int | None, pruner: DictConfig, params: DictConfig | None, **_: Any):
        self.study_name, self.direction = study_name, direction
        self.storage_url = storage or DEFAULT_STORAGE
        self.n_trials, self.n_jobs, self.seed = int(n_trials), max(1, int(n_jobs)), seed
        self.pruner_conf = pruner
        # a DictConfig's container is a dict
        self.params = cast(dict[str, Any], OmegaConf.to_container(params, resolve=True)) if params is not None else {}
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    # ------------------------------------------------------------------ the study
    def _storage(self) -> optuna.storages.RDBStorage:
        engine = {"connect_args": {"timeout": 60}} if self.storage_url.startswith("sqlite") else {}
        with sqlite_creation_lock(self.storage_url):
            return retry_on_race(lambda: optuna.storages.RDBStorage(
                self.storage_url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS))

    def _pruner(self) -> optuna.pruners.BasePruner:
        if not self.pruner_conf.enabled:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=self.pruner_conf.n_startup_trials,
                                           n_warmup_steps=self.pruner_conf.n_warmup_steps)

    def sweep(self, arguments: list[str]) -> list[Any]:
        space, fixed = search_space(self.params, arguments)
        if not space:
            raise ValueError("hparams_search: no search space; give hydra.sweeper.params or sweep overrides")
        storage = self._storage()
        study = retry_on_race(lambda: optuna.create_study(
            study_name=self.study_name, storage=storage, pruner=self._pruner(), load_if_exists=True,
            direction=cast(Literal["minimize", "maximize"], self.direction)))  # any other string: optuna raises
        # Seeded TPE; a worker joining (or resuming) a study offsets the seed by the trials already there,
        # so two workers started together do not propose the same points.
        existing = len(study.get_trials(deepcopy=False))
        study.sampler = optuna.samplers.TPESampler(seed=None if self.seed is None else self.seed + existing)
        study.set_user_attr("pruner", OmegaConf.to_container(self.pruner_conf))  # read by the trials' jobs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            stale = optuna.storages.fail_stale_trials(study)
        done = sum(counts_towards_budget(t) for t in study.get_trials(deepcopy=False))
        log.info("study %r on %s: %d of %d trials done or running%s", self.study_name, self.storage_url, done,
                 self.n_trials, f" ({len(stale)} stale marked failed)" if stale else "")
        returns: list[Any] = []
        untold: list[optuna.Trial] = []  # asked, not yet told: freed if the sweep is interrupted
        try:
            while True:
                untold = trials = self._ask(study, space)
                if not trials:
                    break
                overrides = [[*fixed, *(f"{key}={value}" for key, value in trial.params.items()),
                              f"+optuna_trial.study_name={self.study_name}",
                              f"+optuna_trial.storage='{self.storage_url}'",
                              f"+optuna_trial.number={trial.number}", f"+optuna_trial.direction={self.direction}"]
                             for trial in trials]
                self.validate_batch_is_legal(overrides)
                with _Heartbeat(storage, [t._trial_id for t in trials]):
                    assert self.launcher is not None  # set by setup(), which Hydra calls before sweep()
                    results = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
                self.job_idx += len(trials)
                for index, (trial, result) in enumerate(zip(trials, results)):
                    self._tell(study, trial, result)
                    untold = trials[index + 1:]
                returns.extend(results)
        except BaseException:  # Ctrl-C or a crash: free the places of the unfinished trials, then stop
            for trial in untold:
                if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                    trial.set_user_attr("interrupted", True)
                    study.tell(trial, state=TrialState.FAIL)
            log.warning("interrupted: trials %s marked failed; re-run the command to resume the study",
                        [t.number for t in untold])
            raise
        self._report(study)
        return returns

    def _ask(self, study: optuna.Study, space: dict[str, BaseDistribution]) -> list[optuna.Trial]:
        """Up to n_jobs new trials within the budget shared by every worker on the storage."""
        trials = []
        for _ in range(self.n_jobs):
            counted = sum(counts_towards_budget(t) for t in study.get_trials(deepcopy=False))
            if counted >= self.n_trials:
                break
            trial = study.ask(space)
            # the study's storage is built on the RDBStorage of _storage(), a heartbeat storage
            heartbeat = cast("BaseHeartbeat", study._storage)
            heartbeat.record_heartbeat(trial._trial_id)  # from now on a dead worker's trial goes stale
            earlier = [t for t in study.get_trials(deepcopy=False)
                       if t.number < trial.number and counts_towards_budget(t)]
            if len(earlier) >= self.n_trials:  # another worker took the last places meanwhile
                trial.set_user_attr("over_budget", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            trials.append(trial)
        return trials

    def _tell(self, study: optuna.Study, trial: optuna.Trial, result) -> None:
        frozen = study._storage.get_trial(trial._trial_id)
        try:
            value = result.return_value  # re-raises the job's exception
        except Exception as err:  # noqa: BLE001  the job failed: record it, go on with the study
            log.error("trial %d failed: %s", trial.number, err)
            trial.set_user_attr("job_error", f"{type(err).__name__}: {err}"[:500])
            study.tell(trial, state=TrialState.FAIL)
            return
        if frozen.user_attrs.get("pruned"):
            study.tell(trial, state=TrialState.PRUNED)
        elif value is None or value != value:  # None or NaN
            trial.set_user_attr("job_error", "the job returned no value")
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, float(value))
        log.info("trial %d: %s %s", trial.number, study._storage.get_trial(trial._trial_id).state.name, value)

    def _report(self, study: optuna.Study) -> None:
        """Print the best trial and log it to MLflow and to optimization_results.yaml in the sweep folder."""
        try:
            best = study.best_trial
        except ValueError:
            log.warning("study %r has no complete trial", self.study_name)
            return
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        summary = {"study_name": self.study_name, "storage": self.storage_url, "direction": self.direction,
                   "best_value": best.value, "best_params": best.params, "best_trial": best.number,
                   "n_complete": states.count("COMPLETE"), "n_pruned": states.count("PRUNED")}
        log.info("best trial %d: value %.5f, params %s", best.number, best.value, best.params)
        print(f"Best of study {self.study_name!r}: trial {best.number}, value {best.value:.5f}, params {best.params}")
        assert self.config is not None  # set by setup(), which Hydra calls before sweep()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(summary), sweep_dir / "optimization_results.yaml")
        log_study_summary(self.config.logger.mlflow, summary)


class _Heartbeat:
    """Record heartbeats of running trials while their jobs run (so dead workers' trials can be detected)."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_ids: list[int]):
        self.storage, self.trial_ids = storage, trial_ids
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(HEARTBEAT_SECONDS):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
