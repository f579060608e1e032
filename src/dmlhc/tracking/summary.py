"""What a user sees when a job ends: a short summary of its run (where it is in MLflow, its AUCs, its files, how to
browse it), a ``result.json`` in the job's folder, and after a multirun one table of its jobs
(:class:`MultirunTable`, a Hydra callback in ``hydra/default.yaml``) read from those files."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dmlhc.tracking.secrets import redact

RESULT_FILE = "result.json"
TABLE_COLUMNS = ("job", "task", "signal", "snr", "architecture", "seed", "test/auc", "test/auc_optimal", "run_id")


def browse_command(uri: str) -> str:
    """How to open the store in a browser: ``mlflow ui`` on a database, the server's address otherwise (either
    without a password)."""
    if uri.startswith(("http://", "https://")):
        return f"open {redact(uri)}"
    return f"mlflow ui --backend-store-uri {redact(uri)}"


def job_summary(result: Mapping[str, Any]) -> str:
    """The lines printed at the end of a job (``result`` as :func:`write_result` stores it)."""
    repeats = int(result.get("repeats") or 1)
    spread = result.get("test/auc_optimal_std")
    epochs = f"{result['epochs']} epochs, best checkpoint at epoch {result['best_epoch']}" if result.get(
        "best_epoch") else ""
    lines = [f"dmlhc: run {result['run_name']!r} finished" + (f" ({epochs})" if epochs else ""),
             f"  MLflow            experiment {result['experiment']!r}, run {result['run_id']}"
             + (f" (tested the checkpoint of run {result['source_run']})" if result.get("source_run") else ""),
             f"  test/auc          {_number(result.get('test/auc'))}"
             + (f" +- {result['test/auc_std']:.4f} over {repeats} repeats" if repeats > 1 else ""),
             f"  test/auc_optimal  {_number(result.get('test/auc_optimal'))}"
             + (f" +- {spread:.4f}" if spread else "") + " (likelihood-ratio optimum)",
             f"  outputs           {result['output_dir']}"]
    plots = [Path(p) for p in result.get("plots") or []]
    if plots:
        folder = plots[0].parent
        where = folder.relative_to(result["output_dir"]) if folder.is_relative_to(result["output_dir"]) else folder
        lines.append(f"  plots             {where}/ " + " ".join(p.name if p.parent == folder else str(p)
                                                               for p in plots))
    lines.append(f"  browse            {browse_command(result['tracking_uri'])}")
    return "\n".join(lines)


def write_result(output_dir: str | Path, result: Mapping[str, Any]) -> Path:
    """``<output_dir>/result.json``: what the job's summary shows, for the multirun table and scripts."""
    path = Path(output_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(result), indent=1, default=str))
    return path


def read_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job folder of a sweep (``<sweep_dir>/<job>/``, a folder Hydra made); a job that wrote no
    result (it failed, or runs elsewhere still) has only its ``job`` and ``status``."""
    rows = []
    for folder in Path(sweep_dir).iterdir() if Path(sweep_dir).is_dir() else ():
        if not (folder / ".hydra").is_dir() and not (folder / RESULT_FILE).is_file():
            continue
        file = folder / RESULT_FILE
        row = json.loads(file.read_text()) if file.is_file() else {"status": "no result"}
        rows.append({"job": folder.name, **row})
    return sorted(rows, key=lambda r: (not r["job"].isdigit(), int(r["job"]) if r["job"].isdigit() else r["job"]))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """Rows as an aligned text table (numbers to 4 decimals, run ids shortened to 8 characters)."""
    cells = [[_cell(c, row.get(c, row.get("status", "") if c == "test/auc" else "")) for c in columns]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip()
                     for line in [list(columns), *cells])


class MultirunTable(Callback):
    """At the end of a multirun (any sweeper, any launcher): one table of its jobs, printed and saved as
    ``results.csv`` in the sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = read_results(sweep_dir)
        if not rows:
            return
        columns = list(TABLE_COLUMNS)
        if any("trial" in r for r in rows):
            columns.insert(1, "trial")
        print(f"dmlhc: {len(rows)} jobs in {sweep_dir}\n{table(rows, columns)}", flush=True)
        with open(sweep_dir / "results.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, [*columns, "status", "experiment", "run_name", "output_dir"],
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def _number(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.4f}"


def _cell(column: str, value: Any) -> str:
    if column == "run_id" and value:
        return str(value)[:8]
    if isinstance(value, float):
        return f"{value:g}" if column == "snr" else _number(value)
    return "" if value is None else str(value)
