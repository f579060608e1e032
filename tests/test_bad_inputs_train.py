"""Bad inputs to ``python train.py``, run as a user would (a real subprocess in a fresh folder, ``debug=smoke``):
each ends in one ``dmlhc:`` line naming the input, the problem and the fix, with its exit code (config 2, input
data 3, store 4; Hydra's own errors: its message and exit 1), no traceback, and nothing left behind: no sample
generated, no MLflow run opened, the store's file unchanged and still an MLflow store. Hydra writes its record of
the job (``outputs/.../.hydra/*.yaml``, ``train.log``) before train() runs; that, and nothing else, may appear.

Errors that a config alone shows come before any sample exists (the sample cache stays empty). Samples come from
small synthetic Delphes files where a case needs events, so only the case marked ``pythia`` generates.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import synthetic_sample
from mlflow import MlflowClient
from user_errors import ROOT, assert_user_error, run_entry_point, tree_state

from dmlhc.data.datamodule import MIN_POOL_EVENTS
from dmlhc.errors import CONFIG_ERROR_EXIT, INPUT_DATA_ERROR_EXIT, STORE_ERROR_EXIT
from dmlhc.events.delphes import write_delphes

HYDRA_RECORD = {"config.yaml", "hydra.yaml", "overrides.yaml", "train.log"}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store (``mlruns/``) with its tables and no run, made once, copied into every case."""
    folder = tmp_path_factory.mktemp("store") / "mlruns"
    folder.mkdir()
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # creates the tables
    return folder


@pytest.fixture(scope="module")
def event_files(tmp_path_factory) -> dict[str, Path]:
    """Synthetic Delphes files: a background, a signal and a 10-event signal."""
    folder = tmp_path_factory.mktemp("events")
    return {"background": write_delphes(folder / "sm.root", synthetic_sample(30_000, 2, 100.0)),
            "signal": write_delphes(folder / "sig.root", synthetic_sample(8_000, 1, 250.0)),
            "ten": write_delphes(folder / "ten.root", synthetic_sample(10, 3, 250.0))}


@pytest.fixture
def job(tmp_path, empty_store) -> Path:
    """The folder train.py starts in: a store without runs, an empty sample cache."""
    shutil.copytree(empty_store, tmp_path / "mlruns")
    (tmp_path / "cache").mkdir()
    return tmp_path


def job_env(job: Path, **extra: str) -> dict[str, str]:
    return {"DMLHC_CACHE": str(job / "cache"), "MLFLOW_TRACKING_URI": "sqlite:///mlruns/mlflow.db", **extra}


def train_py(job: Path, *overrides: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return run_entry_point(["train.py", "debug=smoke", *overrides], job, env=job_env(job, **env), timeout=timeout)


def assert_nothing_left(job: Path, before: dict[str, str]) -> None:
    """Nothing changed but Hydra's record of the job; the store still opens, with no run in it."""
    after = tree_state(job)
    record = {path for path in after if path.startswith("outputs/")}
    assert {path: digest for path, digest in after.items() if path not in record} == before
    assert all(Path(path).name in HYDRA_RECORD for path in record), sorted(record)  # no checkpoint, plot, sample
    client = MlflowClient(f"sqlite:///{job / 'mlruns' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []


CONFIG_ERRORS = [
    (["snr=nan"], ["snr=nan", "finite number >= 0"]),
    (["snr=inf"], ["snr=inf", "finite number"]),
    (["snr=abc"], ["snr='abc'", "e.g. snr=1.0"]),
    (["snr=-1"], ["snr=-1", ">= 0"]),
    (["snr=0.01"], ["snr=0.01", "= 0 signal events", "set snr=0 for a deliberate null run"]),
    (["background.n_background=0"], ["n_background=0", ">= 1"]),
    (["background.n_background=2.5"], ["n_background=2.5", "integer"]),
    (["data.batch_size=0"], ["batch_size=0"]),
    (["data.steps_per_epoch=0"], ["steps_per_epoch=0", ">= 1"]),
    (["data.n_val=0"], ["n_val=0"]),
    (["data.n_test=-5"], ["n_test=-5"]),
    (["binning.n_pt=0"], ["binning.n_pt=0", "positive integer"]),
    (["data.cuts.pt_min=2000"], ["cuts.pt_min=2000", "pt_min < pt_max"]),
    (["data.fractions=[0.5,0.5]"], ["fractions=[0.5, 0.5]", "three positive"]),
    (["data.mode=bogus"], ["mode='bogus'", "exact, multinomial, poisson"]),
    (["repeats=0"], ["repeats=0", ">= 1"]),
    (["seed=abc"], ["seed='abc'", "integer"]),
    (["signal.benchmark=spin3"], ["unknown benchmark 'spin3'"]),
    (["model=multiclass", "data.benchmarks=[spin1_onshell]"], ["task='multiclass'", "at least 2", "model=binary"]),
    (["model=model_vs_model", "data.other=spin1_onshell"], ["compare two different benchmarks"]),
    (["model.lr=0"], ["model.lr=0", "> 0"]),
    (["model.lr=-1"], ["model.lr=-1"]),
    (["model.optimizer=sgd"], ["model.optimizer='sgd'", "adamw, adam"]),
    (["model.optimizer=sgd", "grid.snr=[0.5,1.0]"], ["model.optimizer='sgd'", "adamw, adam"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs=0", "at least one epoch"]),
    (["trainer.devices=0"], ["trainer:", "devices=0"]),
    # Pools checked before any sample is generated: 400 events leave a val pool of at most 81 < 100, in any mode,
    # and the fix offered is a larger sample (never another sampling mode).
    (["signal.events=400"], ["val pool holds at most 81", f"{MIN_POOL_EVENTS}) distinct", "raise signal.events"]),
    (["signal.events=400", "data.mode=multinomial"], ["val pool holds at most 81", "raise signal.events"]),
    (["snr=100"], ["4472 events of signal", "lower snr or n_background, or raise signal.events"]),
]


@pytest.mark.parametrize("overrides, fragments", CONFIG_ERRORS, ids=[" ".join(o) for o, _ in CONFIG_ERRORS])
def test_a_bad_configuration_fails_before_any_sample_or_run(job, overrides, fragments):
    before = tree_state(job)
    result = train_py(job, *overrides)
    assert_user_error(result, CONFIG_ERROR_EXIT, *fragments)
    assert "multinomial'" not in result.stderr  # no error suggests a sampling mode as a way around a small pool
    assert_nothing_left(job, before)
    assert tree_state(job / "cache") == {}  # nothing generated


HYDRA_ERRORS = [
    (["signal=bogus"], ["Could not find 'signal/bogus'", "spin2_onshell"]),  # lists the benchmarks
    (["architecture=bogus"], ["Could not find 'architecture/bogus'", "dnn"]),
    (["data.nonexistent=1"], ["Could not override 'data.nonexistent'", "+data.nonexistent=1"]),
]


@pytest.mark.parametrize("overrides, fragments", HYDRA_ERRORS, ids=[" ".join(o) for o, _ in HYDRA_ERRORS])
def test_hydra_reports_unknown_names_and_keys_itself(job, overrides, fragments):
    """Hydra composes the config before train.py's code runs: its own message (naming the choices, or the '+' that
    adds a key) and exit code 1, no traceback, and no job folder at all."""
    before = tree_state(job)
    result = train_py(job, *overrides)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    assert all(fragment in result.stderr for fragment in fragments), result.stderr[-2000:]
    assert tree_state(job) == before


def test_a_missing_event_file_is_an_input_data_error(job):
    before = tree_state(job)
    result = train_py(job, "signal=delphes", "signal.files=[no_such_file.root]")
    assert_user_error(result, INPUT_DATA_ERROR_EXIT, "signal my_model.files", "no_such_file.root")
    assert_nothing_left(job, before)


def test_a_ten_event_signal_file_is_refused_in_multinomial_mode_too(job, event_files):
    """The issue's case: 10 signal events gave a test pool of 2 and an AUC above the optimum. Refused after the
    files are read, before any run, naming the rule; the fix is a larger sample, not a sampling mode."""
    before = tree_state(job)
    result = train_py(job, "signal=delphes", f"signal.files=[{event_files['ten']}]",
                      f"background.files=[{event_files['background']}]", "background.n_background=100", "snr=0.2",
                      "data.mode=multinomial")
    assert_user_error(result, INPUT_DATA_ERROR_EXIT, "S = round(snr * sqrt(B)) = 2 events of signal 'my_model'",
                      "train pool holds only", f"max(events per histogram, {MIN_POOL_EVENTS})",
                      "give a larger signal sample")
    assert "multinomial'" not in result.stderr
    assert_nothing_left(job, before)


def test_snr_zero_runs_as_a_declared_null_run(job, event_files):
    result = train_py(job, "signal=delphes", f"signal.files=[{event_files['signal']}]",
                      f"background.files=[{event_files['background']}]", "background.n_background=500", "snr=0",
                      "trainer.max_epochs=1", "data.steps_per_epoch=4", "callbacks.results.plots=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "snr=0: S = 0 signal events per histogram" in result.stderr + result.stdout
    assert "NULL RUN" in result.stderr + result.stdout


# ------------------------------------------------------------------ stores


def test_an_unreachable_tracking_server_fails_in_seconds_without_its_password(job):
    """One probe with a short timeout instead of MLflow's retries inside the project's: the subprocess timeout
    (60 s) is the bound; the URI is named with its password masked."""
    before = tree_state(job)
    result = train_py(job, timeout=60, MLFLOW_TRACKING_URI="http://alice:s3cret@127.0.0.1:9")
    assert_user_error(result, STORE_ERROR_EXIT, "MLflow tracking URI http://alice:***@127.0.0.1:9", "no answer",
                      "start the tracking server")
    assert "s3cret" not in result.stderr + result.stdout
    assert_nothing_left(job, before)
    assert tree_state(job / "cache") == {}  # checked before any sample is generated


@pytest.mark.parametrize("content, fragments", [
    (b"this is not a database\n" * 200, ["mlflow.db is not a usable SQLite database", "mv "]),
    ("other program", ["without MLflow's tables", "mv "]),
], ids=["garbage", "foreign-sqlite"])
def test_a_corrupt_store_is_named_with_the_fix_and_left_as_it_was(job, content, fragments):
    database = job / "mlruns" / "mlflow.db"
    database.unlink()
    if isinstance(content, bytes):
        database.write_bytes(content)
    else:
        with sqlite3.connect(database) as connection:
            connection.execute("CREATE TABLE notes (text TEXT)")
        connection.close()
    before = tree_state(job)
    result = train_py(job)
    assert_user_error(result, STORE_ERROR_EXIT, "MLflow tracking URI sqlite:///mlruns/mlflow.db", *fragments)
    after = tree_state(job)
    assert {k: v for k, v in after.items() if not k.startswith("outputs/")} == before  # the file kept for the user
    assert tree_state(job / "cache") == {}


def _read_only_command(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` is read-only: a read-only bind mount in a private mount namespace
    when running as root (root writes through file modes), else the folder's mode (set by the caller)."""
    if os.geteuid() != 0:
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"root without mount namespaces: cannot make a read-only folder ({probe.stderr.decode()[-200:]})")
    return ["unshare", "-m", "sh", "-c", script, str(folder)]


def test_a_read_only_store_folder_is_named_with_the_fix(job):
    folder = job / "mlruns"
    prefix = _read_only_command(folder)
    if not prefix:
        folder.chmod(0o555)
    before = tree_state(job)
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "DMLHC_DEBUG")} | job_env(job)
        result = subprocess.run([*prefix, sys.executable, str(ROOT / "train.py"), "debug=smoke"], cwd=job, env=env,
                                capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert_user_error(result, STORE_ERROR_EXIT, "MLflow tracking URI sqlite:///mlruns/mlflow.db",
                      f"{folder} is not a writable folder", "make it writable")
    assert_nothing_left(job, before)


# ------------------------------------------------------------------ generated samples


@pytest.mark.pythia
def test_a_val_pool_short_after_the_cuts_fails_before_any_run(job, test_cache):
    """A selection at pT > 300 GeV keeps ~4.5% of the smoke background: its 100k events could fill every pool if all
    passed, so the check before generation lets it through; the real val pool (~900 events for B + S = 2045) is
    refused after the samples are made (the shared test cache keeps them), before a run is opened."""
    before = tree_state(job)
    result = run_entry_point(["train.py", "debug=smoke", "data.cuts.pt_min=300"], job,
                             env=job_env(job, DMLHC_CACHE=str(test_cache)), timeout=600)
    assert_user_error(result, CONFIG_ERROR_EXIT, "2045 background events", "val pool holds only", "after the cuts",
                      "lower n_background or snr, or raise background.events")
    assert_nothing_left(job, before)
