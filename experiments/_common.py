"""What the study scripts under experiments/ share: their command line (``--name/--collect-only/--out`` and
train.py overrides after ``--``), their trainings (``python train.py experiment=NAME -m``), the newest finished run
of every key in an MLflow experiment, their summary runs (their tables: dmlhc.events.cache.write_csv) and trained
runs loaded with the data they were tested on.

Scripts import it as ``from _common import ...`` (Python puts the script's folder first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf

from dmlhc.config import instantiate, prepare_process, split_overrides
from dmlhc.data.datamodule import EnsembleDataModule
from dmlhc.errors import ConfigError, reported_as_exit_codes
from dmlhc.eval import load_model
from dmlhc.predict import trained_config
from dmlhc.tracking.store import ensure_experiment, resolve_tracking_uri

ROOT = Path(__file__).resolve().parents[1]


def study_arguments(doc: str, default_name: str | None, argv: list[str] | None = None,
                    more: Callable[[argparse.ArgumentParser], None] | None = None, *, jobs: bool = False,
                    ) -> tuple[argparse.Namespace, list[str]]:
    """A study script's arguments and the train.py overrides after ``--``: the experiment config
    conf/experiment/NAME.yaml (``--name``, default ``default_name``; with none, a positional argument; checked),
    ``--collect-only``, ``--out`` (default experiments/results/NAME, filled in), with ``jobs`` ``--jobs N`` (for
    :func:`train`) and whatever ``more`` adds; the description is the first paragraph of ``doc``."""
    own, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if default_name is None:
        parser.add_argument("name", help="an experiment config: conf/experiment/NAME.yaml")
    else:
        parser.add_argument("--name", default=default_name, help="experiment config conf/experiment/NAME.yaml")
    parser.add_argument("--collect-only", action="store_true", help="do not train; collect what MLflow holds")
    parser.add_argument("--out", type=Path, help="output folder (default experiments/results/NAME)")
    if jobs:
        parser.add_argument("--jobs", type=int, default=1, help="benchmarks trained side by side, one process each "
                            "(one per CPU core: a job trains on one thread)")
    if more is not None:
        more(parser)
    args = parser.parse_args(own)
    if not (ROOT / "conf" / "experiment" / f"{args.name}.yaml").is_file():
        parser.error(f"no experiment config conf/experiment/{args.name}.yaml")
    args.out = args.out or ROOT / "experiments" / "results" / args.name
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return args, overrides


def composed(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """train.py's config of experiment ``name`` with ``overrides`` (its ``study`` key: a study script's settings);
    overrides Hydra cannot compose are a :class:`ConfigError`."""
    try:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[f"experiment={name}", *overrides])
    except HydraException as err:
        raise _override_error(overrides, err) from None


def _override_error(overrides: Sequence[str], err: HydraException) -> ConfigError:
    return ConfigError(f"train.py overrides {' '.join(overrides)!r}: {' '.join(str(err).split())}; mend the overrides "
                       "after --")


def run_study(main: Callable[[], int]) -> None:
    """A study script's entry point: ``main()``'s exit code; a user error (a bad override, a missing run) one line
    and its own exit code, no traceback."""
    with reported_as_exit_codes():
        sys.exit(main())


def train(name: str, overrides: Sequence[str], jobs: int = 1) -> None:
    """Every job of conf/experiment/NAME.yaml: one ``python train.py experiment=NAME <overrides> -m`` process; with
    ``jobs`` > 1, one such process per benchmark of its sweep (``signal=a,b`` in ``overrides`` or the config's
    ``hydra.sweeper.params.signal``), ``jobs`` of them side by side in that order, after their samples were made
    one at a time (two processes never generate one sample)."""
    signals = swept_signals(name, overrides) if jobs > 1 else []
    if len(signals) < 2:
        command = [sys.executable, str(ROOT / "train.py"), f"experiment={name}", *overrides, "-m"]
        print("+", " ".join(command), flush=True)
        stop_if_failed(command, subprocess.run(command).returncode)
        return
    rest = [o for o in overrides if not o.startswith("signal=")]
    for signal in signals:
        for job in sweep_jobs([*rest, f"signal={signal}"]):  # a malformed override: ConfigError (run_study: exit 2)
            generate_samples(composed(name, job))
    commands = [[sys.executable, str(ROOT / "train.py"), f"experiment={name}", *rest, f"signal={signal}", "-m"]
                for signal in signals]
    running: list[subprocess.Popen] = []
    failed = []
    for command in commands:
        while len(running) >= jobs:
            running, failed = _wait_for_one(running, failed)
        print("+", " ".join(command), flush=True)
        running.append(subprocess.Popen(command))
    while running:
        running, failed = _wait_for_one(running, failed)
    if failed:
        stop_if_failed(failed[0].args, failed[0].returncode)


def stop_if_failed(command: Sequence[str], exit_code: int, resume: str = "") -> None:
    """End the study script with a training's (or test's) exit code where it failed (its own message is above): one
    line, no traceback, and ``resume``: what a rerun does."""
    if exit_code != 0:
        print(f"{Path(sys.argv[0]).name}: {' '.join(command)} failed (exit code {exit_code}; its message above)"
              + (f"; {resume}" if resume else ""), file=sys.stderr)
        raise SystemExit(exit_code)


def swept_signals(name: str, overrides: Sequence[str]) -> list[str]:
    """The benchmarks a multirun of experiment ``name`` sweeps: ``signal=a,b`` of ``overrides``, else the config's."""
    given = [o for o in overrides if o.startswith("signal=")]
    if not given:
        swept = OmegaConf.select(OmegaConf.load(ROOT / "conf" / "experiment" / f"{name}.yaml"),
                                 "hydra.sweeper.params.signal")
        given = [f"signal={swept}"] if swept else []
    return [job[0].split("=", 1)[1] for job in sweep_jobs(given[-1:])] if given else []


def sweep_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """The overrides of each job of a Hydra multirun given ``overrides``, as Hydra's basic sweeper makes them:
    every combination of the swept values (``snr=0.2,1``, ``range(...)``, ``choice(...)``); no sweep, one job."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise _override_error(overrides, err) from None
    choices = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(job) for job in itertools.product(*choices)]


def generate_samples(cfg: DictConfig) -> None:
    """The generated samples a job of ``cfg`` trains on (background and signal), made now if the cache lacks them."""
    from dmlhc.data.samples import ensure_generated, is_spec

    generation = OmegaConf.to_container(cfg.generation, resolve=True)
    for spec in (cfg.data.background, cfg.data.signal):
        source = OmegaConf.to_container(spec, resolve=True)
        if is_spec(source):
            ensure_generated(source, generation, str(cfg.paths.samples))


def _wait_for_one(running: list[subprocess.Popen], failed: list[subprocess.Popen]
                  ) -> tuple[list[subprocess.Popen], list[subprocess.Popen]]:
    """Wait until one of ``running`` ends; the ones still running and the failed ones so far."""
    while all(p.poll() is None for p in running):
        time.sleep(1)
    ended = [p for p in running if p.returncode is not None]
    return [p for p in running if p.returncode is None], failed + [p for p in ended if p.returncode != 0]


def newest_runs(experiment: str, by: Sequence[str], where: str = "", needs: str = "test/auc") -> list[Run]:
    """The newest finished run of every value of the params ``by`` in MLflow experiment ``experiment``, in the
    order of their values: runs that also match the MLflow filter ``where`` and have the metric (or the
    ``test/auc/...`` family, for a prefix ending in '/') ``needs``; runs lacking a param of ``by`` are skipped."""
    client = mlflow.MlflowClient(resolve_tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"no MLflow experiment {experiment!r} at {resolve_tracking_uri()}; train it first "
                         f"(python train.py experiment={experiment} -m, or the study's script)")
    query = "attributes.status = 'FINISHED'" + (f" and {where}" if where else "")
    newest: dict[tuple[str, ...], Run] = {}
    for run in client.search_runs([found.experiment_id], query, order_by=["attributes.start_time DESC"],
                                  max_results=50000):
        params, metrics = run.data.params, run.data.metrics
        has_metric = any(k.startswith(needs) for k in metrics) if needs.endswith("/") else needs in metrics
        if has_metric and all(k in params for k in by):
            newest.setdefault(tuple(params[k] for k in by), run)  # the first seen is the newest
    return [newest[key] for key in sorted(newest, key=lambda values: tuple(map(_in_order, values)))]


def source_tests(experiment: str) -> dict[tuple[str, str, float], Run]:
    """The newest finished eval.py test (a run tagged ``dmlhc.source_run``, with ``test/auc``) of every (tested
    run, test signal, test S/sqrt(B) rounded to 1e-9) in MLflow experiment ``experiment``; empty if it does not
    exist yet."""
    client = mlflow.MlflowClient(resolve_tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    tests: dict[tuple[str, str, float], Run] = {}
    for run in client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=50000):
        source, params = run.data.tags.get("dmlhc.source_run"), run.data.params
        if source and "test/auc" in run.data.metrics and "signal" in params and "snr" in params:
            tests.setdefault((source, params["signal"], round(float(params["snr"]), 9)), run)
    return tests


def _in_order(value: str) -> tuple[int, float, str]:
    """Numbers by value (before other strings), other strings alphabetically."""
    try:
        return 0, float(value), ""
    except ValueError:
        return 1, 0.0, value


def log_summary_run(experiment: str, name: str, artifacts: Sequence[Path], metrics: Mapping[str, float],
                    tags: Mapping[str, str], params: Mapping[str, object] | None = None) -> str:
    """A run ``name`` in MLflow experiment ``experiment`` (created if new, artifacts where the project keeps them)
    with ``artifacts`` (files), ``metrics``, ``tags`` and ``params``; returns its id."""
    uri = resolve_tracking_uri()
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=ensure_experiment(uri, experiment), run_name=name, tags=dict(tags)) as run:
        mlflow.log_metrics(dict(metrics))
        if params:
            mlflow.log_params(dict(params))
        for path in artifacts:
            mlflow.log_artifact(str(path))
        return run.info.run_id


def trained_run(run_id: str) -> tuple[EnsembleDataModule, Any]:
    """The DataModule of an MLflow training run as it was (its own validation and test sets, from its data settings;
    on the CPU, samples from the current cache, generated again if missing), set up for testing, and the run's network
    from its checkpoint artifact, in eval mode."""
    with tempfile.TemporaryDirectory() as folder:
        cfg, checkpoint, _ = trained_config(run_id, Path(folder))
        prepare_process(cfg)
        data = OmegaConf.to_container(cfg.data, resolve=True)
        assert isinstance(data, dict)  # a config node
        datamodule = instantiate("data", OmegaConf.create(data | {"cache_dir": None, "device": "cpu"}))
        datamodule.prepare_data()
        datamodule.setup("test")
        return datamodule, load_model(cfg, checkpoint, datamodule).eval()


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> None:
    """Print ``rows`` as a text table, one ``(header, key, format)`` per column (``"7.4f"``, ``"18s"``, ``">8s"``;
    flags print as text): each header aligned as its cells, text left and numbers right unless the format says."""
    def header(title: str, spec: str) -> str:
        align = spec[0] if spec[0] in "<>^" else ("<" if spec.endswith("s") else ">")
        return format(title, align + re.sub(r"\D*(\d*).*", r"\1", spec))

    print(" ".join(header(title, spec) for title, _, spec in columns))
    for row in rows:
        print(" ".join(format(str(row[key]) if isinstance(row[key], bool) else row[key], spec)
                       for _, key, spec in columns))
