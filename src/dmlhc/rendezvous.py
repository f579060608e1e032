"""Single-node DDP with no port open to the network.

torch's ``env://`` rendezvous has rank 0 host a TCPStore that listens on every interface (``*:MASTER_PORT``),
whatever ``MASTER_ADDR`` says. For a single-node run (``trainer.num_nodes`` = 1) whose user set no
``MASTER_ADDR``, :func:`bind_rendezvous_to_localhost` hosts that store in the launching process on a socket bound
to 127.0.0.1 (TCPStore's ``master_listen_fd``) and sends every rank to it as a client: ``MASTER_ADDR=127.0.0.1``,
``MASTER_PORT`` its port and ``TORCHELASTIC_USE_AGENT_STORE=True`` (torch's switch for ranks that use a store
hosted by someone else). The collectives' own sockets go to the loopback interface too (``GLOO_SOCKET_IFNAME``,
``NCCL_SOCKET_IFNAME`` = lo unless set). Several nodes, or a ``MASTER_ADDR`` the user set, are left alone.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from datetime import timedelta

LOCALHOST = "127.0.0.1"
_hosted: list[object] = []  # the store and its socket, alive as long as the process


def is_multi_process(trainer_cfg: Mapping) -> bool:
    """Whether the trainer config may start several processes (a DDP strategy, or more than one device)."""
    strategy = str(trainer_cfg.get("strategy") or "auto").lower()
    return "ddp" in strategy or str(trainer_cfg.get("devices", 1)) not in ("1", "[0]", "None")


def bind_rendezvous_to_localhost(trainer_cfg: Mapping) -> bool:
    """Host the rendezvous store on 127.0.0.1 for a single-node multi-process run (module docstring); returns
    whether it did. Nothing happens in a rank that was launched (it inherits the settings) or when the user set
    ``MASTER_ADDR`` or asked for several nodes."""
    import torch.distributed as dist

    launched = any(key in os.environ for key in ("LOCAL_RANK", "RANK", "MASTER_ADDR"))
    if launched or int(trainer_cfg.get("num_nodes") or 1) != 1 or not is_multi_process(trainer_cfg) or _hosted:
        return False
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOCALHOST, 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    store = dist.TCPStore(LOCALHOST, port, None, True, timedelta(minutes=30), wait_for_workers=False,
                          master_listen_fd=listener.fileno())
    _hosted.extend([listener, store])
    os.environ.update(MASTER_ADDR=LOCALHOST, MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE=str(True))
    for interface in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME") if sys.platform == "linux" else ():
        os.environ.setdefault(interface, "lo")
    return True
