"""A grid of trainings over benchmarks x S/sqrt(B), collected from MLflow into a table and a figure.

    python experiments/grid.py fig7 --jobs 2        # train every point, two benchmarks at a time, then collect
    python experiments/grid.py fig7 -- repeats=5    # extra overrides for train.py after --
    python experiments/grid.py fig7_quick           # two benchmarks, two S/sqrt(B), B = 2000 (minutes)
    python experiments/grid.py fig7 --collect-only  # only collect what MLflow holds
    python experiments/grid.py fig7 -- trainer=gpu

Training is ``python train.py experiment=NAME -m`` (conf/experiment/NAME.yaml lists the
benchmarks in ``hydra.sweeper.params`` and the S/sqrt(B) values in ``grid.snr``: one grid
job per benchmark, :mod:`dmlhc.grid`; with ``--jobs N`` one process per benchmark, N side by side, each on
one thread, after the samples were made one at a time); every network is one MLflow run in the experiment of
the same name, a point with repeats one parent run of its seeds). Collection reads, with
MLflow's client, the newest finished run of every (signal, snr) and writes ``experiments/results/NAME/`` (or --out):

- ``auc_vs_snr.csv``: signal, snr, test/auc (the trimmed mean over repeats where a point has
  them), test/auc_std, repeats, test/auc_optimal, test/auc_optimal_std (its bootstrap spread),
  gap (= optimum - network), epochs, run_id (the point's run);
- ``auc_vs_snr.png``: AUC vs S/sqrt(B), network solid (+- its spread), optimum dashed, one
  colour per benchmark, log x;

and logs both as artifacts of a summary run ``NAME_summary`` in the same experiment, with
the largest gap as a metric. Prints the table and the largest gap.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
from _common import log_summary_run, print_table, run_study, study_arguments, train  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402
from dmlhc.tracking.store import resolve_tracking_uri as tracking_uri  # noqa: E402

COLUMNS = ("signal", "snr", "test/auc", "test/auc_std", "repeats", "test/auc_optimal", "test/auc_optimal_std", "gap",
           "epochs", "run_id")


def collect(experiment: str, trained_by: str = "grid.py") -> list[dict]:
    """The newest finished run of every (signal, snr) of ``experiment``, as table rows sorted by signal and snr.

    A point is a single run (``test/auc``) or, with repeats, the parent of its seeds' runs (``test/auc_mean`` +-
    ``test/auc_std``, the trimmed statistic); the seeds' own runs are skipped. ``trained_by``: the script under
    experiments/ that trains it, for the hint when it is missing."""
    client = mlflow.MlflowClient(tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"grid: no MLflow experiment {experiment!r} at {tracking_uri()}; train it first "
                         f"(python experiments/{trained_by} {experiment})")
    runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=50000)
    rows: dict[tuple[str, float], dict] = {}
    for run in runs:
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        repeat_child = tags.get("dmlhc.repeat") == "child" or (
            "mlflow.parentRunId" in tags and "dmlhc.grid_run" not in tags and "dmlhc.repeat" not in tags)
        network = metrics.get("test/auc_mean", metrics.get("test/auc"))
        optimum = metrics.get("test/auc_optimal", metrics.get("test/auc_optimal_mean"))
        if repeat_child or network is None or optimum is None or "signal" not in params:
            continue  # a seed of a point with repeats, an incomplete run, a grid's or summary's run
        key = (params["signal"], float(params["snr"]))
        if key in rows:  # an older run of the same point
            continue
        rows[key] = {"signal": key[0], "snr": key[1], "test/auc": network,
                     "test/auc_std": metrics.get("test/auc_std", float("nan")),
                     "repeats": int(params.get("repeats", 1)), "test/auc_optimal": optimum,
                     "test/auc_optimal_std": metrics.get("test/auc_optimal_std", float("nan")),
                     "gap": optimum - network, "epochs": metrics.get("epochs", metrics.get("epoch", -1) + 1),
                     "run_id": run.info.run_id}
    return [rows[k] for k in sorted(rows)]


def write_table(rows: list[dict], path: Path) -> Path:
    return write_csv(rows, COLUMNS, path)


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """AUC vs S/sqrt(B): network solid with markers (trimmed mean +- std over repeats), optimum dashed, one colour
    per benchmark, log x."""
    from dmlhc.tracking.plots import hep_label, hep_style, save, snr_axis

    with hep_style():
        fig, ax = plt.subplots(figsize=(10, 7))
        signals = sorted({r["signal"] for r in rows})
        colours = plt.get_cmap("tab10")
        for k, signal in enumerate(signals):
            points = [r for r in rows if r["signal"] == signal]
            snr = [r["snr"] for r in points]
            spread = [0.0 if math.isnan(r["test/auc_std"]) else r["test/auc_std"] for r in points]  # one seed: none
            ax.errorbar(snr, [r["test/auc"] for r in points], yerr=spread, fmt="-o", color=colours(k % 10), ms=4,
                        capsize=2, label=signal)
            ax.plot(snr, [r["test/auc_optimal"] for r in points], "--", color=colours(k % 10), lw=1)
        ax.plot([], [], "k-o", ms=4, label="network")
        ax.plot([], [], "k--", lw=1, label="optimum (likelihood ratio)")
        snr_axis(ax, [r["snr"] for r in rows])
        ax.set_ylabel("test AUC")
        ax.set_ylim(0.48, 1.01)
        ax.legend(fontsize=10, ncol=2, loc="upper left", title=title, title_fontsize=11)
        hep_label(ax)
        return save(fig, path)


def log_summary(experiment: str, paths: list[Path], rows: list[dict]) -> str:
    """A summary run in the grid's experiment with the table and figure as artifacts."""
    return log_summary_run(experiment, f"{experiment}_summary", paths,
                           {"max_gap": max(r["gap"] for r in rows), "points": len(rows)}, {"dmlhc.summary": "grid"})


def main(argv: list[str] | None = None) -> int:
    args, overrides = study_arguments(__doc__, None, argv, jobs=True)
    if not args.collect_only:
        train(args.name, overrides, jobs=args.jobs)
    rows = collect(args.name)
    if not rows:
        raise SystemExit(f"grid: experiment {args.name!r} has no finished runs with test/auc")
    out = args.out
    table = write_table(rows, out / "auc_vs_snr.csv")
    figure = plot(rows, out / "auc_vs_snr.png", f"{args.name}: network (solid) vs likelihood-ratio optimum (dashed)")
    log_summary(args.name, [table, figure], rows)
    print_table(rows, [("signal", "signal", "20s"), ("snr", "snr", "7.3f"), ("network", "test/auc", "8.4f"),
                       ("optimum", "test/auc_optimal", "8.4f"), ("gap", "gap", "7.4f")])
    worst = max(rows, key=lambda r: r["gap"])
    print(f"largest gap (optimum - network): {worst['gap']:.4f} at {worst['signal']} snr={worst['snr']:g}; "
          f"{len(rows)} points; table {table}, figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
