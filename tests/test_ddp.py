"""Scaling out: Lightning DDP through ``python train.py trainer=ddp`` (two CPU processes, gloo, one MLflow
run, listening on the loopback interface only) and the SLURM launcher's config (composed and instantiated; no
SLURM here to submit to).

The DDP run is a real subprocess (Lightning relaunches the Hydra command for rank 1) on synthetic Delphes
files, so no Pythia, with a real SQLite MLflow store under the job's folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
               "data.n_val=200", "data.n_test=200", "trainer.enable_progress_bar=false",
               "callbacks.ema.decay=0.9"]  # 60 steps: an average over ~10 (the default spans ~1000)
    # The store under the job's folder, and no distributed settings inherited from the caller.
    skip = {"MLFLOW_TRACKING_URI", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in skip}
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as run:
        listening = set()
        while run.poll() is None:  # the listening sockets of the run's processes (their folder is tmp_path)
            listening |= _listening_addresses(_socket_inodes(tmp_path))
            time.sleep(0.1)
        output = run.stdout.read() if run.stdout else ""
    assert run.returncode == 0, output[-3000:]
    assert "distributed_backend=gloo" in output and "Starting with 2 processes" in output  # really 2 ranks
    # Single node: the rendezvous store (and gloo) listen on the loopback interface only, never on *:<port>.
    assert listening and all(address in LOOPBACK for address in listening), listening

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [r.info.run_name for r in runs]  # rank 1 trains but creates no run of its own
    (r,) = runs
    assert r.info.status == "FINISHED"
    assert 0.7 < r.data.metrics["test/auc"] <= r.data.metrics["test/auc_optimal"] + 0.02  # both ranks trained it


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net/tcp{,6} write them


def _socket_inodes(cwd: Path) -> set[str]:
    """Inodes of the sockets open in processes whose working folder is ``cwd``."""
    inodes = set()
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "cwd").resolve() != cwd.resolve():
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
        except OSError:  # a process that ended meanwhile, or not ours to read
            continue
    return inodes


def _listening_addresses(inodes: set[str]) -> set[str]:
    """Local addresses (hex, as /proc/net writes them) of the TCP sockets among ``inodes`` that listen."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state 0A: LISTEN
                addresses.add(fields[1].split(":")[0])
    return addresses


def test_a_single_node_rendezvous_is_hosted_on_localhost_only(monkeypatch):
    """What the DDP run above relies on: the store hosted on 127.0.0.1 and every rank sent to it; nothing done for
    several nodes or where the user set MASTER_ADDR."""
    from dmlhc import rendezvous

    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "TORCHELASTIC_USE_AGENT_STORE",
                "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        monkeypatch.setenv(key, "")  # recorded, so the test's settings are undone after it
        monkeypatch.delenv(key)
    monkeypatch.setattr(rendezvous, "_hosted", [])
    assert not rendezvous.bind_rendezvous_to_localhost({"strategy": "ddp", "devices": 2, "num_nodes": 2})
    assert not rendezvous.bind_rendezvous_to_localhost({"devices": 1})  # one process: nothing to meet
    assert rendezvous.bind_rendezvous_to_localhost({"strategy": "ddp", "devices": 2, "num_nodes": 1})
    listener, store = rendezvous._hosted
    assert listener.getsockname() == ("127.0.0.1", int(os.environ["MASTER_PORT"]))
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and os.environ["TORCHELASTIC_USE_AGENT_STORE"] == "True"
    store.set("ping", "pong")  # the store works through that socket
    import torch.distributed as dist

    assert dist.TCPStore("127.0.0.1", int(os.environ["MASTER_PORT"]), is_master=False).get("ping") == b"pong"
    listener.close()


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
