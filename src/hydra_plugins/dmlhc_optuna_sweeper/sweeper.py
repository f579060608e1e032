"""An Optuna study run by Hydra's launcher: ask a batch of trials, launch them as jobs, tell the results.

Resuming: the study lives in an RDB storage (SQLite by default, PostgreSQL for many
workers); re-running the same command loads it and runs only what is missing of
the budget. Trials count towards ``n_trials`` when complete, pruned, failed by their
job, or running with a live owner. A trial whose worker died is stale: on this host
at once (its process is gone, ``dmlhc.tracking.owners``), elsewhere when its heartbeat
stops for ``GRACE_SECONDS``. Every ask first fails stale trials, asks them again with
the same params (once) and marks their MLflow runs KILLED. Ctrl-C fails the running
trials at once. Several workers on one storage share the budget: a trial asked beyond
it is discarded (failed with ``over_budget``) before it runs.

A study answers one question: its fixed settings (:data:`FIXED_KEYS`, less the searched
ones) are stored with it, and a command whose settings differ is refused. The default
study name is made of them (``<search>_<signal>_snr<snr>_B<B>_<task>_<hash>``), so a
changed setting starts a new study. The storage URL goes to the jobs through an
environment variable, never into their saved configs; what is logged has no password.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
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

from dmlhc.errors import ConfigError, StoreError, reported_as_exit_codes
from dmlhc.tracking.owners import is_dead, owner
from dmlhc.tracking.secrets import redact, redact_url
from dmlhc.tracking.store import close_trial_runs, flatten, log_study_summary, retry_on_race, sqlite_creation_lock

if TYPE_CHECKING:
    from optuna.storages._heartbeat import BaseHeartbeat

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
STORAGE_ENV = "DMLHC_OPTUNA_STORAGE"  # the storage URL, for the jobs (their configs hold only ${oc.env:...})
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60  # a trial of a worker on another host is stale this long after its last heartbeat
OWNER_ATTR = "dmlhc.owner"  # trial user attr: the worker process (owners.owner())
FIXED_ATTR = "dmlhc.fixed"  # study user attr: its fixed settings
# What a study's question is made of: a command that changes one of these asks another question.
FIXED_KEYS = ("signal", "background", "snr", "data.task", "data.benchmarks", "data.other", "optimized_metric")


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
    raise ConfigError(f"{override.input_line}: not a search space; give choice(...), range(...) or interval(...)")


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


def fixed_settings(config: DictConfig, space: dict[str, BaseDistribution], direction: str) -> dict[str, Any]:
    """The settings that make a study's question (:data:`FIXED_KEYS`, flat, searched keys left out; numbers as
    floats, so ``snr=2`` and ``snr=2.0`` are one question) and the direction."""
    values = {key: OmegaConf.select(config, key, default=None) for key in FIXED_KEYS}
    values = {key: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
              for key, v in values.items()}
    flat = flatten(values) | {"direction": direction}

    def searched(key: str) -> bool:
        return any(key == s or key.startswith(f"{s}.") or s.startswith(f"{key}.") for s in space)

    return {key: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for key, v in flat.items() if not searched(key)}


def default_study_name(config: DictConfig, fixed: dict[str, Any]) -> str:
    """``<search>_<signal>_snr<snr>_B<B>_<task>_<hash of the fixed settings>``."""
    search = OmegaConf.select(config, "hydra.runtime.choices.hparams_search", default=None) or "study"
    digest = hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode()).hexdigest()[:6]
    parts = [search, fixed.get("signal.name"), f"snr{fixed['snr']:g}" if "snr" in fixed else None,
             f"B{fixed['background.n_background']:g}" if "background.n_background" in fixed else None,
             fixed.get("data.task"), digest]
    return "_".join(str(part) for part in parts if part is not None)


class OptunaSweeper(Sweeper):
    """``python train.py hparams_search=<name> -m``: an Optuna study over Hydra overrides."""

    def __init__(self, study_name: str | None, storage: str | None, direction: str, n_trials: int, n_jobs: int,
                 seed: int | None, pruner: DictConfig, params: DictConfig | None, **_: Any):
        self.study_name, self.direction = study_name, direction
        self.storage_url = storage or DEFAULT_STORAGE
        self.n_trials, self.n_jobs, self.seed = int(n_trials), max(1, int(n_jobs)), seed
        self.pruner_conf = pruner
        # a DictConfig's container is a dict
        self.params = cast(dict[str, Any], OmegaConf.to_container(params, resolve=True)) if params is not None else {}
        self.job_idx = 0
        self.stale: list[int] = []  # numbers of the trials this worker found stale

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    # ------------------------------------------------------------------ the study
    def _storage(self) -> optuna.storages.RDBStorage:
        """The RDB storage with heartbeats; a URL that cannot be opened is a StoreError (without its password)."""
        import sqlalchemy

        engine = {"connect_args": {"timeout": 60}} if self.storage_url.startswith("sqlite") else {}
        shown = f"hydra.sweeper.storage={redact_url(self.storage_url)}"
        try:  # one plain connection first: an unreachable or malformed URL fails now, not after retries
            probe = sqlalchemy.create_engine(self.storage_url, **engine)
            with sqlite_creation_lock(self.storage_url), probe.connect():
                pass
            probe.dispose()
        except ImportError as err:
            raise StoreError(f"{shown}: no driver for this database ({err}); install it (PostgreSQL: "
                             "pip install -e '.[postgres]')") from None
        except Exception as err:  # noqa: BLE001  sqlalchemy: a malformed URL, an unknown dialect, no server
            problem = redact(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
            raise StoreError(f"{shown}: cannot open the Optuna storage ({problem}); give a reachable SQLAlchemy "
                             "URL (default sqlite:///mlruns/optuna.db), a password through "
                             "hydra.sweeper.storage='${oc.env:OPTUNA_STORAGE}'") from None
        with sqlite_creation_lock(self.storage_url), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental
            return retry_on_race(lambda: optuna.storages.RDBStorage(
                self.storage_url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=self._retry_stale))

    def _pruner(self) -> optuna.pruners.BasePruner:
        if not self.pruner_conf.enabled:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=self.pruner_conf.n_startup_trials,
                                           n_warmup_steps=self.pruner_conf.n_warmup_steps)

    def _study(self, space: dict[str, BaseDistribution]) -> optuna.Study:
        """The study of this question, created or loaded; refused (ConfigError) if stored with other settings."""
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(f"hydra.sweeper.direction={self.direction}: choose maximize or minimize")
        assert self.config is not None  # set by setup(), which Hydra calls before sweep()
        fixed = fixed_settings(self.config, space, self.direction)
        self.study_name = self.study_name or default_study_name(self.config, fixed)
        self.storage = storage = self._storage()
        study = retry_on_race(lambda: optuna.create_study(
            study_name=self.study_name, storage=storage, pruner=self._pruner(), load_if_exists=True,
            direction=cast(Literal["minimize", "maximize"], self.direction)))
        stored = study.user_attrs.get(FIXED_ATTR)
        if stored is None:
            study.set_user_attr(FIXED_ATTR, fixed)
        elif stored != fixed:
            differ = sorted(k for k in {*stored, *fixed} if stored.get(k) != fixed.get(k))
            then = ", ".join(f"{k}={stored.get(k)}" for k in differ)
            now = ", ".join(f"{k}={fixed.get(k)}" for k in differ)
            raise ConfigError(f"hydra.sweeper.study_name={self.study_name}: this study in "
                              f"{redact_url(self.storage_url)} searched with {then}, this command has {now}; give "
                              "another hydra.sweeper.study_name (or none: the default name follows the settings), "
                              "or the study's settings to resume it")
        study.set_user_attr("pruner", OmegaConf.to_container(self.pruner_conf))  # read by the trials' jobs
        return study

    def sweep(self, arguments: list[str]) -> list[Any]:
        with reported_as_exit_codes("unfinished trials were marked failed; re-run the command to resume the study"):
            return self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> list[Any]:
        space, fixed = search_space(self.params, arguments)
        if not space:
            raise ConfigError("hparams_search: no search space; give hydra.sweeper.params or sweep overrides")
        study = self._study(space)
        # Seeded TPE; a worker joining (or resuming) a study offsets the seed by the trials already there,
        # so two workers started together do not propose the same points.
        existing = len(study.get_trials(deepcopy=False))
        study.sampler = optuna.samplers.TPESampler(seed=None if self.seed is None else self.seed + existing)
        self._fail_stale(study)
        done = sum(counts_towards_budget(t) for t in study.get_trials(deepcopy=False))
        log.info("study %r on %s: %d of %d trials done or running%s", self.study_name,
                 redact_url(self.storage_url), done, self.n_trials,
                 f" (stale trials {self.stale} failed, asked again)" if self.stale else "")
        os.environ[STORAGE_ENV] = self.storage_url  # the jobs' optuna_trial.storage; in no saved config
        returns: list[Any] = []
        untold: list[optuna.Trial] = []  # asked, not yet told: freed if the sweep is interrupted
        try:
            while True:
                untold = trials = self._ask(study, space)
                if not trials:
                    break
                overrides = [[*fixed, *(f"{key}={value}" for key, value in trial.params.items()),
                              f"+optuna_trial.study_name={self.study_name}",
                              f"+optuna_trial.storage=${{oc.env:{STORAGE_ENV}}}",
                              f"+optuna_trial.number={trial.number}", f"+optuna_trial.direction={self.direction}"]
                             for trial in trials]
                self.validate_batch_is_legal(overrides)
                with _Heartbeat(self.storage, [t._trial_id for t in trials]):
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

    # ------------------------------------------------------------------ stale trials
    def _retry_stale(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """A trial just failed as stale: ask it again with the same params (once), remember it."""
        self.stale.append(trial.number)
        retry = copy.deepcopy(trial)
        retry.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != OWNER_ATTR}  # the dead worker's
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, retry)

    def _fail_stale(self, study: optuna.Study) -> None:
        """Fail the running trials whose worker is dead (this host: its process is gone; elsewhere: no heartbeat
        for GRACE_SECONDS), ask them again, and close their MLflow runs as KILLED."""
        found = len(self.stale)
        storage = study._storage
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if is_dead(trial.user_attrs.get(OWNER_ATTR) or {}):
                try:
                    failed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
                    continue
                if failed:
                    self._retry_stale(study, storage.get_trial(trial._trial_id))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # heartbeats; calls _retry_stale for each
        if len(self.stale) > found:
            assert self.config is not None  # set by setup(), which Hydra calls before sweep()
            close_trial_runs(self.config.logger.mlflow, str(self.study_name), self.stale[found:],
                             "the worker of this Optuna trial died (the trial failed as stale and is asked again)")

    # ------------------------------------------------------------------ ask and tell
    def _ask(self, study: optuna.Study, space: dict[str, BaseDistribution]) -> list[optuna.Trial]:
        """Up to n_jobs new trials within the budget shared by every worker on the storage."""
        self._fail_stale(study)  # a dead worker's places are free again
        trials = []
        for _ in range(self.n_jobs):
            counted = sum(counts_towards_budget(t) for t in study.get_trials(deepcopy=False))
            if counted >= self.n_trials:
                break
            with warnings.catch_warnings():  # "heartbeat is supposed to be used with Study.optimize": we beat
                warnings.simplefilter("ignore", UserWarning)
                trial = study.ask(space)
            # the study's storage is built on the RDBStorage of _storage(), a heartbeat storage
            heartbeat = cast("BaseHeartbeat", study._storage)
            heartbeat.record_heartbeat(trial._trial_id)  # from now on a dead worker's trial goes stale
            trial.set_user_attr(OWNER_ATTR, owner())
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
        if frozen.state != TrialState.RUNNING:  # failed as stale by another worker while this one was stalled
            log.warning("trial %d was failed as stale by another worker; its result is not told", trial.number)
            return
        try:
            value = result.return_value  # re-raises the job's exception
        except Exception as err:  # noqa: BLE001  the job failed: record it, go on with the study
            log.error("trial %d failed: %s", trial.number, redact(str(err)))
            trial.set_user_attr("job_error", redact(f"{type(err).__name__}: {err}")[:500])
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
        trials = study.get_trials(deepcopy=False)
        states = [t.state.name for t in trials]
        summary = {"study_name": self.study_name, "storage": redact_url(self.storage_url),
                   "direction": self.direction, "best_value": best.value, "best_params": best.params,
                   "best_trial": best.number, "n_complete": states.count("COMPLETE"),
                   "n_pruned": states.count("PRUNED"), "n_finished": sum(t.state.is_finished() for t in trials),
                   "fixed": study.user_attrs.get(FIXED_ATTR, {})}
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
