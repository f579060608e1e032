"""Scaling out: Lightning DDP through ``python train.py trainer=ddp`` (two CPU processes, gloo, one MLflow
run) and the SLURM launcher's config (composed and instantiated; no SLURM here to submit to).

The DDP run is a real subprocess (Lightning relaunches the Hydra command for rank 1) on synthetic Delphes
files, so no Pythia, with a real SQLite MLflow store under the job's folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hydra
import mlflow
import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]


def test_ddp_on_two_cpu_processes_makes_exactly_one_mlflow_run(tmp_path):
    from conftest import synthetic_sample

    from dmlhc.events.delphes import write_delphes

    sig = write_delphes(tmp_path / "sig.root", synthetic_sample(8000, 1, 250.0))
    bkg = write_delphes(tmp_path / "bkg.root", synthetic_sample(30000, 2, 100.0))
    command = [sys.executable, str(ROOT / "train.py"), "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
               "signal=delphes", f"signal.files=[{sig}]", f"background.files=[{bkg}]", "snr=3",
               "background.n_background=500", "trainer.max_epochs=3", "data.steps_per_epoch=20", "data.batch_size=64",
               "data.n_val=200", "data.n_test=200", "trainer.enable_progress_bar=false"]
    # The store under the job's folder, and no distributed settings inherited from the caller.
    skip = {"MLFLOW_TRACKING_URI", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in skip}
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert "distributed_backend=gloo" in output and "Starting with 2 processes" in output  # really 2 ranks

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dmlhc")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]  # rank 1 trains but creates no run of its own
    (r,) = runs
    assert r.info.status == "FINISHED"
    assert 0.7 < r.data.metrics["test/auc"] <= r.data.metrics["test/auc_optimal"] + 0.02  # both ranks trained it


def test_slurm_launcher_config_composes_into_a_submitit_launcher():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1
    assert launcher.submitit_folder.endswith("/.submitit/%j")
    instance = hydra.utils.instantiate(launcher)
    assert type(instance).__name__ == "SlurmLauncher" and instance.params["timeout_min"] == 120
