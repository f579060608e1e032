"""Errors a user can fix, and how the entry points report them.

Every user error ends in one line on stderr, ``dmlhc: <kind> error: <input>: <problem>; <fix>``, and a distinct
exit code, never a traceback (``HYDRA_FULL_ERROR=1`` or ``DMLHC_DEBUG=1`` re-raises it to show one):

====  ==================  =====================================================================
code  class               what
====  ==================  =====================================================================
2     ConfigError         a configuration or command line that cannot run (bad value, bad combination)
3     InputDataError      an event file or sample that cannot be used (unreadable, wrong schema, too few events)
4     StoreError          a store that cannot be used: MLflow tracking URI, Optuna storage, sample cache, output path
130   (KeyboardInterrupt) interrupted (Ctrl-C); nothing partial is left that looks valid
====  ==================  =====================================================================
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """An error the user can fix; the message names the input, the problem and the fix."""

    exit_code = 1
    kind = ""


class ConfigError(UserError, ValueError):
    """A configuration that cannot run."""

    exit_code = 2
    kind = "configuration"


class InputDataError(UserError, ValueError):
    """An event file or sample that cannot be used as it is."""

    exit_code = 3
    kind = "input data"


class StoreError(UserError):
    """A store (MLflow, Optuna, sample cache, output folder) that cannot be reached, written or read."""

    exit_code = 4
    kind = "store"


CONFIG_ERROR_EXIT = ConfigError.exit_code
INPUT_DATA_ERROR_EXIT = InputDataError.exit_code
STORE_ERROR_EXIT = StoreError.exit_code
INTERRUPTED_EXIT = 130  # 128 + SIGINT, the shell's convention


def show_tracebacks() -> bool:
    """Whether the user asked to see tracebacks (``HYDRA_FULL_ERROR=1`` or ``DMLHC_DEBUG=1``)."""
    return any(os.environ.get(var, "") not in ("", "0") for var in ("HYDRA_FULL_ERROR", "DMLHC_DEBUG"))


@contextmanager
def reported_as_exit_codes(interrupt_note: str = "nothing partial was kept") -> Iterator[None]:
    """Turn a :class:`UserError` into its one-line message and exit code, Ctrl-C into exit 130."""
    try:
        yield
    except UserError as err:
        if show_tracebacks():
            raise
        kind = f"{err.kind} " if err.kind else ""
        print(f"dmlhc: {kind}error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        if show_tracebacks():
            raise
        print(f"dmlhc: interrupted; {interrupt_note}", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
