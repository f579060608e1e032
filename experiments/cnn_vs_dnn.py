"""Study 4 of the paper: the CNN's AUC over the DNN's against S/sqrt(B).

    python experiments/cnn_vs_dnn.py                      # trains (python train.py experiment=cnn_vs_dnn -m), collects
    python experiments/cnn_vs_dnn.py --jobs 2             # two benchmarks side by side (a 2-core CPU)
    python experiments/cnn_vs_dnn.py --collect-only
    python experiments/cnn_vs_dnn.py --name cnn_vs_dnn_quick --reference fig7_quick   # minutes (the tests)
    python experiments/cnn_vs_dnn.py -- trainer=gpu       # extra train.py overrides after --

Training is ``python train.py experiment=NAME -m``: one CNN per (benchmark, S/sqrt(B)) of the config's sweep.
Collection reads, as ``experiments/grid.py`` does, the newest finished point of every (benchmark, S/sqrt(B)) of
experiment NAME (the CNNs) and of ``--reference`` (the DNNs of a grid with the same B, data seed and test sets) and
writes ``experiments/results/NAME/`` (or --out):

- ``cnn_vs_dnn.csv``: signal, snr, cnn (test AUC), dnn (the reference point's, the trimmed mean over its seeds),
  dnn_std, ratio = cnn / dnn, optimum (+- its bootstrap spread), ratio_optimal = optimum / dnn, both run ids;
- ``cnn_vs_dnn.png``: the ratio against S/sqrt(B), one colour per benchmark, +- the DNN's seed spread (the optimum's
  over the DNN dashed);

and logs both as artifacts of a run ``NAME_summary``. Prints the table.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _common import log_summary_run, print_table, run_study, study_arguments, train  # noqa: E402
from grid import collect  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402

COLUMNS = ("signal", "snr", "cnn", "dnn", "dnn_std", "ratio", "optimum", "optimum_std", "ratio_optimal", "cnn_run_id",
           "dnn_run_id")


def join(cnns: list[dict], dnns: list[dict]) -> list[dict]:
    """One row per CNN point that the reference grid has a DNN for."""
    reference = {(r["signal"], r["snr"]): r for r in dnns}
    rows = []
    for c in cnns:
        d = reference.get((c["signal"], c["snr"]))
        if d is None:
            print(f"cnn_vs_dnn: no DNN of {c['signal']} at S/sqrt(B) = {c['snr']:g} in the reference; skipped")
            continue
        rows.append({"signal": c["signal"], "snr": c["snr"], "cnn": c["test/auc"], "dnn": d["test/auc"],
                     "dnn_std": d["test/auc_std"], "ratio": c["test/auc"] / d["test/auc"],
                     "optimum": c["test/auc_optimal"], "optimum_std": c["test/auc_optimal_std"],
                     "ratio_optimal": c["test/auc_optimal"] / d["test/auc"], "cnn_run_id": c["run_id"],
                     "dnn_run_id": d["run_id"]})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """CNN / DNN against S/sqrt(B), one colour per benchmark, with the DNN's seed spread (std / mean) as error bars:
    how far one network of either kind may land from the mean; optimum / DNN dashed."""
    from dmlhc.tracking.plots import hep_label, hep_style, save, snr_axis

    with hep_style():
        fig, ax = plt.subplots(figsize=(9, 6.5))
        colours = plt.get_cmap("tab10")
        for k, signal in enumerate(sorted({r["signal"] for r in rows})):
            points = [r for r in rows if r["signal"] == signal]
            snr = [r["snr"] for r in points]
            ax.errorbar(snr, [r["ratio"] for r in points], yerr=[r["ratio"] * r["dnn_std"] / r["dnn"] for r in points],
                        fmt="-o", ms=4, capsize=3, color=colours(k % 10), label=signal)
            ax.plot(snr, [r["ratio_optimal"] for r in points], "--", lw=1, color=colours(k % 10))
        ax.axhline(1, color="k", lw=0.8)
        ax.errorbar([], [], yerr=[], fmt="k-o", ms=4, capsize=3, label="CNN / DNN (+- the DNN's seed spread)")
        ax.plot([], [], "k--", lw=1, label="optimum / DNN")
        snr_axis(ax, [r["snr"] for r in rows])
        ax.set_ylabel("AUC / AUC of the DNN")
        ax.legend(fontsize=10, loc="best", title=title, title_fontsize=10)
        hep_label(ax)
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    def more(parser):
        parser.add_argument("--reference", default="fig7", help="MLflow experiment of the DNNs (a grid)")

    args, overrides = study_arguments(__doc__, "cnn_vs_dnn", argv, more, jobs=True)
    if not args.collect_only:
        train(args.name, overrides, jobs=args.jobs)
    rows = join(collect(args.name, trained_by="cnn_vs_dnn.py"), collect(args.reference))
    if not rows:
        raise SystemExit(f"cnn_vs_dnn: no CNN point of {args.name!r} has a DNN in {args.reference!r}")
    out = args.out
    table = write_csv(rows, COLUMNS, out / "cnn_vs_dnn.csv")
    figure = plot(rows, out / "cnn_vs_dnn.png", f"{args.name} vs {args.reference}")
    log_summary_run(args.name, f"{args.name}_summary", [table, figure],
                    {"min_ratio": min(r["ratio"] for r in rows), "max_ratio": max(r["ratio"] for r in rows),
                     "points": len(rows)}, {"dmlhc.summary": "cnn_vs_dnn"}, {"reference": args.reference})
    print_table(rows, [("signal", "signal", "18s"), ("snr", "snr", "7.3f"), ("CNN", "cnn", "7.4f"),
                       ("DNN", "dnn", "7.4f"), ("ratio", "ratio", "7.4f"), ("optimum", "optimum", "7.4f")])
    print(f"cnn_vs_dnn: {len(rows)} points, CNN / DNN from {min(r['ratio'] for r in rows):.4f} to "
          f"{max(r['ratio'] for r in rows):.4f}; table {table}, figure {figure}")
    return 0 if all(math.isfinite(r["ratio"]) for r in rows) else 1


if __name__ == "__main__":
    run_study(main)
