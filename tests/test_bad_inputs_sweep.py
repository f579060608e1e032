"""What goes wrong around Optuna sweeps and what the user gets (issue 10, items 1-3): no URL password in anything
written or printed; trials and runs of killed processes found, closed and redone; a study that refuses to answer
another question, and one summary run per study however many workers.

Real parts: ``python train.py hparams_search=binning ... -m`` subprocesses on synthetic Delphes files (the helpers
of test_sweep.py), a real SQLite Optuna storage and MLflow store (PostgreSQL for the end-to-end secret test, marked
``postgres``), real SIGKILLs. Every error case checks the exit code, the one-line message and that nothing was
written (``tree_state``); every kill case that no trial or run is left RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import mlflow
import optuna
import pytest
import sqlalchemy as sa
import yaml
from omegaconf import OmegaConf
from optuna.trial import TrialState
from test_sweep import ROOT, _finish, _runs, _study, _sweep, _trial_runs, sample_args, sweep_args, write_samples
from user_errors import assert_user_error, run_entry_point, tree_state

from dmlhc.errors import CONFIG_ERROR_EXIT, STORE_ERROR_EXIT
from dmlhc.tracking.owners import HOST_TAG, PID_TAG, PROCESS_TAG, fingerprint, is_dead
from dmlhc.tracking.secrets import RedactSecrets, redact

PASSWORD = "Pw_n0t-for-logs"  # distinctive: any occurrence is a leak


@pytest.fixture
def workdir(tmp_path):
    return write_samples(tmp_path)


def _wait_for(condition, timeout: float = 300, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except (KeyError, sa.exc.OperationalError, sqlite3.OperationalError,
                mlflow.exceptions.MlflowException):  # store not made yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------ 1. secrets
@pytest.mark.parametrize("text, expected", [
    (f"postgresql://user:{PASSWORD}@host:5432/db", "postgresql://user:***@host:5432/db"),
    (f"postgresql+psycopg2://u:{PASSWORD}%40x/y@h/d", "postgresql+psycopg2://u:***@h/d"),
    (f"http://alice:{PASSWORD}@mlflow:5000", "http://alice:***@mlflow:5000"),
    (f"storage: 'mysql://root:{PASSWORD}@db/o?password={PASSWORD}&ssl=1'", "storage: 'mysql://root:***@db/o?password=***&ssl=1'"),
    ({"a": [f"x postgresql://u:{PASSWORD}@h/d"], "b": 3}, {"a": ["x postgresql://u:***@h/d"], "b": 3}),
    ("sqlite:///mlruns/optuna.db", "sqlite:///mlruns/optuna.db"),
    ("http://localhost:5000", "http://localhost:5000"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
])
def test_redact_removes_url_passwords_and_nothing_else(text, expected):
    assert redact(text) == expected


def test_redact_secrets_callback_rewrites_only_hydra_files_holding_a_secret(tmp_path):
    """The Hydra callback as Hydra calls it at a job's start (end to end: test_postgres.py, a sweep on PostgreSQL
    URLs with a password, given literally and from the environment)."""
    saved = tmp_path / ".hydra"
    saved.mkdir()
    (saved / "hydra.yaml").write_text(f"sweeper:\n  storage: postgresql://u:{PASSWORD}@h/optuna\n")
    (saved / "config.yaml").write_text("snr: 1.0\n")
    before = tree_state(tmp_path)
    RedactSecrets().on_job_start(OmegaConf.create({"hydra": {"output_subdir": ".hydra",
                                                             "runtime": {"output_dir": str(tmp_path)}}}))
    after = tree_state(tmp_path)
    assert (saved / "hydra.yaml").read_text() == "sweeper:\n  storage: postgresql://u:***@h/optuna\n"
    assert after[".hydra/config.yaml"] == before[".hydra/config.yaml"] and set(after) == set(before)


@pytest.mark.parametrize("storage, fragment", [
    (f"postgresql://dmlhc:{PASSWORD}@127.0.0.1:1/optuna", "cannot open the optuna storage"),  # no server there
    (f"nosuchdb://dmlhc:{PASSWORD}@host/optuna", "cannot open the optuna storage"),  # no such SQLAlchemy dialect
    (f"mysql://dmlhc:{PASSWORD}@host/optuna", "no driver"),  # the mysqlclient driver is not installed
], ids=["no server", "no dialect", "no driver"])
def test_unusable_storage_is_a_store_error_without_its_password(workdir, storage, fragment):
    before = tree_state(workdir)
    result = run_entry_point(sweep_args(workdir, 1, f"hydra.sweeper.storage={storage}"), workdir)
    assert_user_error(result, STORE_ERROR_EXIT, "hydra.sweeper.storage=", fragment, storage.replace(PASSWORD, "***"))
    assert PASSWORD not in result.stdout + result.stderr
    assert tree_state(workdir) == before  # no study, no run, no output folder


def test_unknown_direction_is_a_config_error(workdir):
    before = tree_state(workdir)
    result = run_entry_point(sweep_args(workdir, 1, "hydra.sweeper.direction=up"), workdir)
    assert_user_error(result, CONFIG_ERROR_EXIT, "hydra.sweeper.direction=up", "maximize")
    assert tree_state(workdir) == before


def test_compose_trainer_gives_the_storage_through_the_environment(monkeypatch):
    """docker/compose.yaml's trainer command, as its shell splits it: the storage is Hydra's ${oc.env:...}, which
    resolves to $OPTUNA_STORAGE in memory and stays an interpolation in the config Hydra saves."""
    from hydra import compose, initialize_config_dir

    trainer = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["x-trainer"]
    argv = shlex.split(trainer["command"][-1].replace("$$", "$"))
    (storage,) = [a for a in argv if a.startswith("hydra.sweeper.storage=")]
    assert storage == "hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}"
    monkeypatch.setenv("OPTUNA_STORAGE", f"postgresql://dmlhc:{PASSWORD}@postgres:5432/optuna")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", ["hparams_search=binning", storage], return_hydra_config=True)
    assert cfg.hydra.sweeper.storage == f"postgresql://dmlhc:{PASSWORD}@postgres:5432/optuna"
    assert PASSWORD not in OmegaConf.to_yaml(cfg)  # what Hydra saves: unresolved


# ------------------------------------------------------------------ 2. killed processes
def test_owner_is_dead_once_its_process_is_gone():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    recorded = {HOST_TAG: socket.gethostname(), PID_TAG: str(process.pid), PROCESS_TAG: fingerprint(process.pid)}
    try:
        assert not is_dead(recorded)
        assert is_dead(recorded | {PROCESS_TAG: "another-boot:1"})  # the pid now belongs to another process
        assert not is_dead(recorded | {HOST_TAG: "another-host"})  # cannot tell from here: heartbeats will
    finally:
        process.kill()
        process.wait()
    assert is_dead(recorded)


def _running_runs_read_only(workdir) -> int:
    """RUNNING runs in the job's MLflow store, read without creating anything (a poller must not race the job's
    creation of a new store's tables)."""
    database = workdir / "mlruns" / "mlflow.db"
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as connection:
        return connection.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0]


def _kill_when(process: subprocess.Popen, condition, what: str) -> None:
    try:
        _wait_for(condition, what=what)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)


@pytest.mark.slow
def test_sweep_killed_mid_trial_resumes_at_once_and_completes_its_budget(workdir):
    """SIGKILL while trial 1 of 3 trains; the same command at once: trial 1 is failed as stale, asked again with the
    same params, its MLflow run is KILLED, and the study ends with 3 complete trials, nothing left RUNNING."""
    def trial_1_training():
        trials = _study(workdir).get_trials()
        if not (len(trials) == 2 and trials[1].state == TrialState.RUNNING):
            return False  # the MLflow store is read only once trial 0 made it: a reader must not race its creation
        return [r for r in _trial_runs(workdir) if r.data.tags["optuna.trial"] == "1"]

    _kill_when(_sweep(workdir, 3), trial_1_training, "trial 1 to train")
    (killed,) = [r for r in _trial_runs(workdir) if r.data.tags["optuna.trial"] == "1"]
    assert killed.info.status == "RUNNING"

    out = _finish(_sweep(workdir, 3))
    trials = _study(workdir).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3, [(t.number, t.state.name) for t in trials]
    assert trials[1].state == TrialState.FAIL and "stale trials [1]" in out
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[1].params
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    runs = {r.info.run_id: r for r in _runs(workdir)}
    assert runs[killed.info.run_id].info.status == "KILLED"
    assert "died" in runs[killed.info.run_id].data.tags["dmlhc.end"]
    assert not [r.info.run_name for r in runs.values() if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_killed_train_py_run_is_marked_killed_by_the_next_job(workdir):
    train = [sys.executable, str(ROOT / "train.py"), *sample_args(workdir)]
    process = subprocess.Popen([*train, "trainer.max_epochs=500"], cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _kill_when(process, lambda: _running_runs_read_only(workdir) > 0, "the run to start")
    (killed,) = _runs(workdir)
    assert killed.info.status == "RUNNING"

    subprocess.run(train, cwd=workdir, check=True, capture_output=True, timeout=600)
    statuses = {r.info.run_id: r.info.status for r in _runs(workdir)}
    assert statuses.pop(killed.info.run_id) == "KILLED"
    assert list(statuses.values()) == ["FINISHED"]


# ------------------------------------------------------------------ 3. one study, one question
def test_study_refuses_a_command_with_other_fixed_settings(workdir):
    """A study named on the command line, made at S/sqrt(B) 3 (no trial yet: fast), and a command at 4 naming it."""
    _finish(_sweep(workdir, 0, study="q"))
    before = tree_state(workdir)
    result = run_entry_point(sweep_args(workdir, 2, study="q", snr=4), workdir)
    assert_user_error(result, CONFIG_ERROR_EXIT, "hydra.sweeper.study_name=q", "snr=3.0", "snr=4.0")
    assert tree_state(workdir) == before  # no trial, no run, no attribute, no output folder
    assert _study(workdir, "q").get_trials() == []


@pytest.mark.slow
def test_default_study_name_follows_the_fixed_settings(workdir):
    """The issue's example: a search at another S/sqrt(B) after a first one trains its own study and reports its own
    best, and re-running the first command resumes the first study."""
    first, second = (_finish(_sweep(workdir, 1, study=None, snr=snr)) for snr in (3, 4))
    names = optuna.get_all_study_names(f"sqlite:///{workdir / 'mlruns' / 'optuna.db'}")
    assert len(names) == 2 and all(n.startswith("binning_my_model_snr") and "_B500_binary_" in n for n in names)
    for name, out, snr in zip(sorted(names), (first, second), (3.0, 4.0)):
        study = _study(workdir, name)
        assert study.user_attrs["dmlhc.fixed"]["snr"] == snr
        assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]
        assert f"Best of study '{name}': trial 0, value {study.best_value:.5f}" in out
    again = _finish(_sweep(workdir, 1, study=None, snr=3))
    assert f"Best of study '{sorted(names)[0]}'" in again and len(_study(workdir, sorted(names)[0]).trials) == 1


@pytest.mark.slow
def test_concurrent_workers_share_the_budget_and_keep_one_up_to_date_summary_run(workdir):
    first, second = _sweep(workdir, 4), _sweep(workdir, 4)
    _finish(first), _finish(second)
    study = _study(workdir)
    trials = study.get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4, [(t.state.name, t.user_attrs) for t in trials]
    assert len({r.data.tags["optuna.trial"] for r in _trial_runs(workdir)}) == 4
    (summary,) = [r for r in _runs(workdir) if r.data.tags.get("optuna.summary") == "true"]
    assert summary.info.run_name == "study_s" and summary.info.status == "FINISHED"
    assert summary.data.metrics["n_complete"] == 4 and summary.data.metrics["best_value"] == study.best_value
    assert summary.data.tags["best_trial"] == str(study.best_trial.number)
    assert summary.data.params["fixed.snr"] == "3.0"
    assert not [r for r in _runs(workdir) if r.info.status == "RUNNING"]
