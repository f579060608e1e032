"""Work left behind by processes that died (SIGKILL, OOM killer, a lost node): who owns an MLflow run or an
Optuna trial, whether that owner still lives, and closing the MLflow runs of dead owners.

An owner is this machine's host name, the process id and a fingerprint of the process (Linux: boot id and the
process's start time, so a pid reused by a later process, e.g. in a restarted container, is not taken for the
owner). Only owners on this host can be checked; elsewhere Optuna's heartbeats tell (the sweeper).
"""

from __future__ import annotations

import os
import socket
import time
from functools import cache
from pathlib import Path
from typing import Any

HOST_TAG, PID_TAG, PROCESS_TAG = "dmlhc.host", "dmlhc.pid", "dmlhc.process"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def fingerprint(pid: int) -> str:
    """``<boot id>:<start time in clock ticks>`` of a live process on Linux; "" elsewhere or if it is gone."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    start = stat.rsplit(")", 1)[-1].split()[19]  # field 22; the command name (field 2) may hold spaces
    return f"{_read('/proc/sys/kernel/random/boot_id')}:{start}"


@cache
def owner() -> dict[str, str]:
    """This process as an owner: ``{dmlhc.host, dmlhc.pid, dmlhc.process}`` (also the tags of its MLflow runs)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), PROCESS_TAG: fingerprint(os.getpid())}


def is_dead(recorded: dict[str, Any]) -> bool:
    """Whether the owner ``recorded`` (tags or attributes as made by :func:`owner`) is known to be dead: it ran on
    this host and its process is gone or is another one now. Owners on other hosts are never called dead here."""
    if recorded.get(HOST_TAG) != socket.gethostname() or not str(recorded.get(PID_TAG, "")).isdigit():
        return False
    pid = int(recorded[PID_TAG])
    if recorded.get(PROCESS_TAG):
        return fingerprint(pid) != recorded[PROCESS_TAG]  # "" (gone) or another process under the same pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def kill_run(client, run_id: str, why: str) -> None:
    """Close an MLflow run as KILLED, with tag ``dmlhc.end`` saying why and who closed it."""
    client.set_tag(run_id, "dmlhc.end", f"{why}; marked KILLED by process {os.getpid()} on {socket.gethostname()} "
                                        f"at {time.strftime('%Y-%m-%d %H:%M:%S')}")
    client.set_terminated(run_id, "KILLED")


def close_dead_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of ``experiment_id`` whose owner on this host is dead; returns their ids.

    One search (status RUNNING and this host's tag), so it is cheap to call whenever a job opens the store.
    """
    found = client.search_runs([experiment_id], filter_string=(
        f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{socket.gethostname()}'"), max_results=1000)
    dead = [run for run in found if is_dead(run.data.tags)]
    for run in dead:
        kill_run(client, run.info.run_id, f"process {run.data.tags[PID_TAG]} died without closing this run")
    return [run.info.run_id for run in dead]
