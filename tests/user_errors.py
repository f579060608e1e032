"""Helpers of the bad-input suites: run an entry point as a user would, check it failed the way a user can act on,
and that nothing was corrupted or left behind."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_entry_point(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
                    timeout: float = 300) -> subprocess.CompletedProcess:
    """``python train.py ...`` (argv[0] == "train.py"), ``python eval.py ...`` or ``dmlhc ...`` in ``cwd``."""
    if argv[0] in ("train.py", "eval.py"):
        command = [sys.executable, str(ROOT / argv[0]), *argv[1:]]
    elif argv[0] == "dmlhc":
        command = [sys.executable, "-m", "dmlhc.cli", *argv[1:]]
    else:
        raise ValueError(f"unknown entry point {argv[0]!r}")
    full_env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "DMLHC_DEBUG")} | (env or {})
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def default_sigint() -> None:
    """``preexec_fn`` of a child a test sends Ctrl-C: SIGINT handled as in a terminal, even where the test runner
    itself ignores it (a shell's background job, ``nohup``), which the child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_user_error(result: subprocess.CompletedProcess, exit_code: int, *fragments: str) -> None:
    """Exit ``exit_code``, no traceback, and every fragment (case-insensitive) in stderr's ``dmlhc:`` line(s)."""
    output = result.stderr + result.stdout
    assert result.returncode == exit_code, f"exit {result.returncode} != {exit_code}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    lines = "\n".join(line for line in result.stderr.splitlines() if line.startswith("dmlhc:")).lower()
    for fragment in fragments:
        assert fragment.lower() in lines, f"{fragment!r} not in the error line(s):\n{result.stderr[-3000:]}"


def tree_state(path: Path) -> dict[str, str]:
    """Every file under ``path`` with its content hash: equal before and after means nothing written or changed."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}
