"""Passwords out of everything the platform writes: params, artifacts, logs, stdout and Hydra's saved configs.

A store's URL may carry a password (``postgresql://user:PASSWORD@host/db``, ``http://user:PASSWORD@host``,
``...?password=PASSWORD``). :func:`redact` replaces it with ``***`` in any string, or in every string of a
nested dict / list; every writer of a URL goes through it. Hydra saves the job's config and overrides to
``.hydra/`` before the job starts: :class:`RedactSecrets`, a Hydra callback, rewrites them without the
secret. The way to keep a secret out of saved configs altogether is an environment variable interpolation,
``hydra.sweeper.storage='${oc.env:OPTUNA_STORAGE}'`` (saved as written, resolved only in memory).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

MASK = "***"
# scheme://user:PASSWORD@  (a password may hold any character but '@', whitespace and quotes)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s'\"]*:)(?P<secret>[^@\s'\"]+)@")
# ...?password=PASSWORD&...  (query parameters some drivers take)
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|token|secret)=)(?P<secret>[^&\s'\"]+)", re.IGNORECASE)


def redact(value: Any) -> Any:
    """``value`` with every URL password replaced by ``***``: a string, or every string of a dict / list / tuple."""
    if isinstance(value, str):
        return _QUERY.sub(rf"\g<head>{MASK}", _USERINFO.sub(rf"\g<head>{MASK}@", value))
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item) for item in value)
    return value


def redact_url(url: str | None) -> str | None:
    """A URL (SQLAlchemy, MLflow tracking URI) without its password; None stays None."""
    return None if url is None else redact(url)


def redact_file(path: Path) -> bool:
    """Rewrite a text file without its secrets (atomically, by rename); returns whether it held any."""
    text = path.read_text()
    clean = redact(text)
    if clean == text:
        return False
    tmp = path.with_name(f".{path.name}.redacted")
    tmp.write_text(clean)
    os.replace(tmp, path)
    return True


class RedactSecrets(Callback):
    """Hydra callback (``hydra.callbacks.redact_secrets``): the job's ``.hydra/*.yaml`` (config, hydra, overrides),
    which Hydra writes just before the job starts, rewritten without URL passwords."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.output_subdir is None:
            return
        for path in sorted((Path(config.hydra.runtime.output_dir) / config.hydra.output_subdir).glob("*.yaml")):
            redact_file(path)
