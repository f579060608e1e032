"""Study 9 of the paper (its Fig. 13): which of two models? SM + model A (label 1) against SM + model B (label 0),
for pairs of benchmarks over S/sqrt(B), the likelihood-ratio optimum beside every network.

    python experiments/model_vs_model.py                      # trains what MLflow lacks, then collects
    python experiments/model_vs_model.py --collect-only
    python experiments/model_vs_model.py --name model_vs_model_quick   # minutes (the tests)

The pairs and S/sqrt(B) values are the ``study`` key of conf/experiment/NAME.yaml (train.py ignores it). Each
pair is one ``python train.py experiment=NAME signal=A data.other=B snr=<values> -m`` (a network per point, the
single-run trainer: the grid trainer trains SM-only against SM + signal); a pair whose points all have a finished
run in the MLflow experiment NAME is not trained again. Collection writes ``experiments/results/NAME/`` (or
``--out``): ``model_vs_model.csv`` (signal, other, snr, test/auc, test/auc_optimal +- its bootstrap spread, gap,
epochs, run_id) and ``model_vs_model.png`` (AUC against S/sqrt(B), one colour per pair, network solid, optimum
dashed: experiments/grid.py's figure), logged as artifacts of a run ``NAME_summary``. Prints the table.
"""

from __future__ import annotations

import math
import subprocess
import sys

from _common import (  # noqa: E402
    ROOT,
    composed,
    log_summary_run,
    newest_runs,
    print_table,
    run_study,
    stop_if_failed,
    study_arguments,
)
from grid import plot  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402

COLUMNS = ("signal", "other", "snr", "test/auc", "test/auc_optimal", "test/auc_optimal_std", "gap", "epochs", "run_id")
BY = ("signal", "data.other", "snr")


def finished(name: str) -> dict[tuple[str, str, float], object]:
    """The newest finished run of every (signal, other, S/sqrt(B)) in experiment ``name`` ({} before the first)."""
    try:
        runs = newest_runs(name, BY, "params.task = 'model_vs_model'")
    except SystemExit:
        return {}
    return {(r.data.params["signal"], r.data.params["data.other"], float(r.data.params["snr"])): r for r in runs}


def train_pairs(name: str, pairs: list[tuple[str, str]], snrs: list[float], extra: list[str]) -> None:
    """One multirun per pair that lacks a point."""
    done = finished(name)
    todo = [pair for pair in pairs if any((*pair, snr) not in done for snr in snrs)]
    for k, (signal, other) in enumerate(todo, 1):
        command = [sys.executable, str(ROOT / "train.py"), f"experiment={name}", f"signal={signal}",
                   f"data.other={other}", "snr=" + ",".join(f"{s:g}" for s in snrs), *extra, "-m"]
        print(f"model_vs_model: pair {k} of {len(todo)}:", " ".join(command[2:]), flush=True)
        stop_if_failed(command, subprocess.run(command).returncode, "a rerun trains the pairs still missing")


def collect(name: str, pairs: list[tuple[str, str]], snrs: list[float]) -> list[dict]:
    """One row per (pair, S/sqrt(B)) with a finished run."""
    done, rows = finished(name), []
    for signal, other in pairs:
        for snr in snrs:
            run = done.get((signal, other, snr))
            if run is None:
                continue
            metrics = run.data.metrics
            rows.append({"signal": signal, "other": other, "snr": snr, "test/auc": metrics["test/auc"],
                         "test/auc_optimal": metrics["test/auc_optimal"],
                         "test/auc_optimal_std": metrics.get("test/auc_optimal_std", math.nan),
                         "gap": metrics["test/auc_optimal"] - metrics["test/auc"],
                         "epochs": metrics.get("epochs", math.nan), "run_id": run.info.run_id})
    return rows


def main(argv: list[str] | None = None) -> int:
    args, extra = study_arguments(__doc__, "model_vs_model", argv)
    study = composed(args.name).study
    pairs = [(str(a), str(b)) for a, b in study.pairs]
    snrs = [float(s) for s in study.snr]
    if not args.collect_only:
        train_pairs(args.name, pairs, snrs, extra)
    rows = collect(args.name, pairs, snrs)
    if not rows:
        raise SystemExit(f"model_vs_model: experiment {args.name!r} has no finished run of these pairs")
    table = write_csv(rows, COLUMNS, args.out / "model_vs_model.csv")
    curves = [r | {"signal": f"{r['signal']} vs {r['other']}", "test/auc_std": math.nan} for r in rows]
    figure = plot(curves, args.out / "model_vs_model.png", f"{args.name}: SM + A (1) vs SM + B (0)")
    log_summary_run(args.name, f"{args.name}_summary", [table, figure],
                    {"max_gap": max(r["gap"] for r in rows), "points": len(rows)}, {"dmlhc.summary": "model_vs_model"})
    print_table(rows, [("signal", "signal", "16s"), ("other", "other", "16s"), ("snr", "snr", "6.3f"),
                       ("network", "test/auc", "8.4f"), ("optimum", "test/auc_optimal", "8.4f"),
                       ("gap", "gap", "7.4f")])
    print(f"model_vs_model: {len(rows)} points; largest gap to the optimum {max(r['gap'] for r in rows):.4f}; "
          f"table {table}, figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
