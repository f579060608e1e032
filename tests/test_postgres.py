"""The PostgreSQL path: an Optuna study shared by two worker processes, MLflow on PostgreSQL, train.py into it, and
a sweep on URLs with a password that leaves the password nowhere.

Needs a server at ``DMLHC_TEST_POSTGRES_URL`` (``.ci/run`` starts one); skipped without it. Every test
session works in fresh databases (dropped at the end) and names its studies and experiments uniquely.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from test_sweep import sweep_args, write_samples
from user_errors import run_entry_point

from dmlhc.tracking.secrets import redact

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def new_database():
    """A factory of fresh databases on the server of DMLHC_TEST_POSTGRES_URL (its role needs CREATEDB); all
    dropped at the end of the session. Optuna and MLflow each need their own: both keep their schema version
    in an Alembic ``alembic_version`` table, and MLflow fails on a database holding Optuna's."""
    given = os.environ.get("DMLHC_TEST_POSTGRES_URL")
    if not given:
        pytest.skip("DMLHC_TEST_POSTGRES_URL is not set (e.g. postgresql://user:pw@localhost:5432/db; .ci/run sets it)")
    admin = sa.create_engine(given, isolation_level="AUTOCOMMIT")  # CREATE DATABASE cannot run in a transaction
    names = []

    def create(purpose: str) -> str:
        names.append(f"dmlhc_test_{purpose}_{uuid.uuid4().hex[:8]}")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{names[-1]}"'))
        return sa.make_url(given).set(database=names[-1]).render_as_string(hide_password=False)

    yield create
    with admin.connect() as connection:  # FORCE: engines of this process may still hold connections
        for name in names:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def optuna_url(new_database) -> str:
    return new_database("optuna")


@pytest.fixture(scope="session")
def mlflow_url(new_database) -> str:
    return new_database("mlflow")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# One Optuna worker: joins the study, waits until both workers are in, then trials until the shared budget is spent.
WORKER = """
import sys, time, optuna
url, name, worker, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
study = optuna.create_study(storage=url, study_name=name, load_if_exists=True)
study.set_user_attr(f"ready{worker}", True)
while len(study.user_attrs) < 2:  # a barrier through the storage: neither worker can take the whole budget
    time.sleep(0.05)

def objective(trial):
    trial.set_user_attr("worker", worker)
    time.sleep(0.1)
    return (trial.suggest_float("x", -10, 10) - 2) ** 2

# MaxTrialsCallback counts every trial in the storage (states=None: running ones too): the budget is shared.
study.optimize(objective, n_trials=budget, callbacks=[optuna.study.MaxTrialsCallback(budget, states=None)])
"""


def test_optuna_study_on_postgres_shared_by_two_worker_processes(optuna_url):
    name, budget = _unique("study"), 12
    study = optuna.create_study(storage=optuna_url, study_name=name, load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=1))
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 2) ** 2, n_trials=3)  # a small study first

    workers = [subprocess.Popen([sys.executable, "-c", WORKER, optuna_url, name, str(i), str(budget)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    for worker in workers:
        out, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, out[-3000:]

    loaded = optuna.load_study(study_name=name, storage=optuna_url)  # a third study object on the same rows
    trials = loaded.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == len(trials)
    # Each worker stops once the storage holds the budget; two finishing at once may each start one more.
    assert budget <= len(complete) <= budget + 1
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    by_worker = [sum(t.user_attrs.get("worker") == w for t in trials) for w in (0, 1)]
    assert min(by_worker) >= 2, by_worker  # both processes really worked on the one study
    assert loaded.best_value == min(t.value for t in complete)
    assert optuna.create_study(storage=optuna_url, study_name=name, load_if_exists=True).best_trial.number == \
        loaded.best_trial.number  # load_if_exists resumes the same study


def test_mlflow_tracking_store_on_postgres(mlflow_url, tmp_path):
    client = mlflow.MlflowClient(tracking_uri=mlflow_url)
    name = _unique("mlflow")
    experiment_id = client.create_experiment(name, artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment_id, run_name="pg", tags={"optuna.study": "s"})
    run_id = run.info.run_id
    client.log_param(run_id, "snr", 0.5)
    client.log_param(run_id, "binning", "30x30 linear")
    for step, (loss, auc) in enumerate([(0.69, 0.6), (0.5, 0.8), (0.4, 0.85)]):
        client.log_metric(run_id, "val/loss", loss, step=step)
        client.log_metric(run_id, "val/auc", auc, step=step)
    client.log_metric(run_id, "test/auc", 0.84)
    client.log_text(run_id, "snr: 0.5\n", "config.yaml")
    client.set_terminated(run_id)

    # Read back through a new client: everything came from PostgreSQL.
    reader = mlflow.MlflowClient(tracking_uri=mlflow_url)
    got = reader.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "pg"
    assert got.data.params == {"snr": "0.5", "binning": "30x30 linear"}
    assert got.data.metrics == {"val/loss": 0.4, "val/auc": 0.85, "test/auc": 0.84}  # the latest of each
    assert [m.value for m in reader.get_metric_history(run_id, "val/auc")] == [0.6, 0.8, 0.85]
    assert got.data.tags["optuna.study"] == "s"
    (found,) = reader.search_runs([experiment_id], "metrics.`test/auc` > 0.8 and params.snr = '0.5'")
    assert found.info.run_id == run_id
    assert [a.path for a in reader.list_artifacts(run_id)] == ["config.yaml"]


def test_train_py_logs_its_run_to_postgres(mlflow_url, tmp_path):
    from conftest import synthetic_sample

    from dmlhc.events.delphes import write_delphes

    sig = write_delphes(tmp_path / "sig.root", synthetic_sample(8000, 1, 250.0))
    bkg = write_delphes(tmp_path / "bkg.root", synthetic_sample(30000, 2, 100.0))
    experiment = _unique("dmlhc")
    command = [sys.executable, str(ROOT / "train.py"), "signal=delphes", f"signal.files=[{sig}]",
               f"background.files=[{bkg}]", "trainer=cpu", "snr=3", "background.n_background=500",
               "trainer.max_epochs=3", "data.steps_per_epoch=20", "data.batch_size=64", "data.n_val=200",
               "data.n_test=200", "trainer.enable_progress_bar=false", f"logger.mlflow.experiment_name={experiment}",
               "callbacks.ema.decay=0.9"]  # 60 steps: an average over ~10 (the default spans ~1000)
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env=os.environ | {"MLFLOW_TRACKING_URI": mlflow_url})
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing went to the default SQLite store

    client = mlflow.MlflowClient(tracking_uri=mlflow_url)
    (r,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert r.info.status == "FINISHED"
    assert r.data.params["signal"] == "my_model" and r.data.params["snr"] == "3.0"
    assert r.data.params["n_background"] == "500" and r.data.params["architecture"] == "HistogramDNN"
    assert {"val/loss", "val/auc", "test/auc", "test/auc_optimal"} <= set(r.data.metrics)
    assert 0.7 < r.data.metrics["test/auc"] <= r.data.metrics["test/auc_optimal"] + 0.02  # it learned
    assert "plots/roc.png" in {a.path for a in client.list_artifacts(r.info.run_id, "plots")}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["literally", "from the environment"])
def test_no_password_reaches_files_runs_logs_or_output(optuna_url, mlflow_url, tmp_path, how):
    """Issue 10, item 1 (with test_bad_inputs_sweep.py): a sweep whose Optuna storage and MLflow store are
    PostgreSQL URLs with a password leaves the password in no file under the working folder (outputs, .hydra,
    optimization_results.yaml, artifacts), no MLflow param or tag, no Optuna attribute, not on stdout / stderr."""
    workdir = write_samples(tmp_path)
    password = sa.make_url(optuna_url).password
    assert password
    # "dmlhc" (.ci/run's password) is also the project's name: look for it where a URL would carry it
    needles = [password] if len(password) >= 8 else [f":{password}@", f"password={password}"]
    storage = optuna_url if how == "literally" else "${oc.env:OPTUNA_STORAGE}"
    experiment = study = _unique("secrets")  # the databases are the session's: names of this test
    result = run_entry_point(sweep_args(workdir, 2, f"hydra.sweeper.storage='{storage}'",
                                        f"logger.mlflow.experiment_name={experiment}", study=study), workdir,
                             env={"OPTUNA_STORAGE": optuna_url, "MLFLOW_TRACKING_URI": mlflow_url}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Best of study '{study}'" in result.stdout

    leaks = [f"{p}" for p in workdir.rglob("*") if p.is_file() and any(n.encode() in p.read_bytes() for n in needles)]
    for needle in needles:
        assert needle not in result.stdout + result.stderr
    client = mlflow.MlflowClient(mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 3  # the study's run and its two trials
    for run in runs:
        text = repr(run.data.params) + repr(run.data.tags)
        leaks += [f"run {run.info.run_name}: {n}" for n in needles if n in text]
        if "optuna.trial" in run.data.tags:
            assert run.data.params["optuna_trial.storage"] == redact(optuna_url)  # what the run used, redacted
    rdb = optuna.storages.RDBStorage(optuna_url)
    trials = optuna.load_study(study_name=study, storage=rdb)
    attrs = repr(trials.user_attrs) + repr([(t.user_attrs, t.system_attrs) for t in trials.trials])
    rdb.engine.dispose()  # its connections closed now, not by the garbage collector during another test
    leaks += [f"optuna attrs: {n}" for n in needles if n in attrs]
    assert not leaks
    hydra_yaml = next((workdir / "multirun").glob("*/0/.hydra/hydra.yaml")).read_text()
    assert ("***@" in hydra_yaml) == (how == "literally")  # as given (redacted), or the interpolation, unresolved
