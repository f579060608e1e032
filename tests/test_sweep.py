"""Optuna studies through Hydra multirun: search space, budget, resume after Ctrl-C, pruning (what goes wrong:
test_bad_inputs_sweep.py, which uses the helpers here).

Real subprocesses of ``python train.py hparams_search=... -m``, a real SQLite Optuna storage and a
real SQLite MLflow store; samples are synthetic Delphes files (no Pythia), so each trial takes seconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState
from user_errors import default_sigint

from dmlhc.tracking.store import sqlite_creation_lock
from hydra_plugins.dmlhc_optuna_sweeper.sweeper import distribution_of, search_space

ROOT = Path(__file__).resolve().parents[1]


def write_samples(folder: Path) -> Path:
    """Synthetic signal and background Delphes files, ``sig.root`` and ``bkg.root`` in ``folder``; returns it."""
    from conftest import synthetic_sample

    from dmlhc.events.delphes import write_delphes

    write_delphes(folder / "sig.root", synthetic_sample(8000, 1, 250.0))
    write_delphes(folder / "bkg.root", synthetic_sample(30000, 2, 100.0))
    return folder


@pytest.fixture
def workdir(tmp_path):
    return write_samples(tmp_path)


def sample_args(workdir: Path, snr: float = 3) -> list[str]:
    """Overrides of a tiny CPU job on the synthetic samples of ``workdir`` (2 epochs of 4 steps)."""
    return ["signal=delphes", f"signal.files=[{workdir / 'sig.root'}]", f"background.files=[{workdir / 'bkg.root'}]",
            "background.n_background=500", f"snr={snr:g}", "trainer=cpu", "trainer.max_epochs=2",
            "data.steps_per_epoch=4", "data.batch_size=64", "data.n_val=200", "data.n_test=200",
            "trainer.enable_progress_bar=false"]


def sweep_args(workdir: Path, n_trials: int, *extra: str, study: str | None = "s", snr: float = 3) -> list[str]:
    """``train.py hparams_search=binning ... -m`` of ``n_trials`` tiny trials; ``study=None`` leaves the study's
    name to the sweeper."""
    return ["train.py", "hparams_search=binning", *sample_args(workdir, snr), f"hydra.sweeper.n_trials={n_trials}",
            *([f"hydra.sweeper.study_name={study}"] if study else []),
            f"hydra.sweep.dir={workdir / 'multirun' / str(time.monotonic_ns())}", *extra, "-m"]


def _sweep(workdir: Path, n_trials: int, *extra: str, study: str | None = "s", snr: float = 3) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "train.py"), *sweep_args(workdir, n_trials, *extra, study=study, snr=snr)[1:]]
    return subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_sigint)  # the interrupt test sends Ctrl-C


def _finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-4000:]
    return out


def _study(workdir: Path, name: str = "s") -> optuna.Study:
    """The study, loaded under the store's creation lock: a reader polling a sweep that is creating the storage's
    tables would otherwise create them too (both insert alembic_version: an IntegrityError)."""
    storage = f"sqlite:///{workdir / 'mlruns' / 'optuna.db'}"
    with sqlite_creation_lock(storage):
        return optuna.load_study(study_name=name, storage=storage)


def _runs(workdir: Path) -> list:
    """Every MLflow run of the store under ``workdir`` (all experiments)."""
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _trial_runs(workdir: Path) -> list:
    return [r for r in _runs(workdir) if "optuna.trial" in r.data.tags]


def test_search_space_from_hydra_sweep_syntax():
    space, fixed = search_space({"binning.n_pt": "range(5, 61)", "architecture": "choice(dnn, cnn)",
                                 "model.lr": "tag(log, interval(1e-4, 1e-2))"}, ["snr=0.5", "seed=2"])
    assert (space["binning.n_pt"].low, space["binning.n_pt"].high) == (5, 60)
    assert space["architecture"].choices == ("dnn", "cnn")
    assert space["model.lr"].log and space["model.lr"].low == pytest.approx(1e-4)
    assert fixed == ["snr=0.5", "seed=2"]


def test_search_space_rejects_a_plain_value():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with pytest.raises(ValueError, match="choice"):
        distribution_of(OverridesParser.create().parse_overrides(["a=3"])[0])


def test_four_trial_study_gives_four_trials_and_four_tagged_mlflow_runs(workdir):
    out = _finish(_sweep(workdir, 4))
    trials = _study(workdir).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    runs = _trial_runs(workdir)
    assert sorted(r.data.tags["optuna.trial"] for r in runs) == ["0", "1", "2", "3"]
    assert all(r.data.tags["optuna.study"] == "s" for r in runs)
    assert "Best of study 's'" in out
    assert list((workdir / "multirun").glob("*/optimization_results.yaml"))


def test_interrupted_study_resumes_without_losing_or_repeating_trials(workdir):
    process = _sweep(workdir, 6)
    assert process.stdout is not None
    told = 0
    for line in process.stdout:  # interrupt once the sweeper has told two trials complete (its own log lines)
        told += ": COMPLETE" in line
        if told == 2:
            break
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "interrupted" in out, out[-3000:]
    before = {t.number: t.params for t in _study(workdir).get_trials() if t.state == TrialState.COMPLETE}
    assert 2 <= len(before) < 6, out[-3000:]

    _finish(_sweep(workdir, 6))
    trials = _study(workdir).get_trials()
    complete = {t.number: t.params for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == 6, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert all(complete[n] == p for n, p in before.items())  # kept, not re-run
    assert all(t.state == TrialState.COMPLETE or t.user_attrs.get("interrupted") for t in _study(workdir).get_trials())


def test_pruning_stops_a_trial_below_the_median_of_earlier_ones(tmp_path):
    """The job's OptunaPruning callback with a real Lightning fit and a real SQLite Optuna storage: an earlier
    trial reached val/auc 0.9 at every epoch, this one stays at 0.5, so the median pruner stops it after warm-up."""
    import lightning.pytorch as pl
    import torch

    from dmlhc.callbacks import OptunaPruning

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
    study.set_user_attr("pruner", {"enabled": True, "n_startup_trials": 1, "n_warmup_steps": 2})
    done = study.ask()
    for step in range(10):
        done.report(0.9, step)
    study.tell(done, 0.9)
    trial = study.ask()

    class Flat(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.w - 1).pow(2).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val/auc", 0.5)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=2)
    callback = OptunaPruning({"storage": storage, "study_name": "p", "number": trial.number}, monitor="val/auc")
    trainer = pl.Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[callback], accelerator="cpu")
    trainer.fit(Flat(), loader, loader)
    assert trainer.current_epoch == 3  # epochs 0-2 are warm-up; pruned after the first report past it
    assert optuna.load_study(study_name="p", storage=storage).trials[1].user_attrs["pruned"] is True
