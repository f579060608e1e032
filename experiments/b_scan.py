"""Study 6 of the paper (its Fig. 10): the AUC as a function of S/sqrt(B) alone, for B = 20 ... 100k.

    python experiments/b_scan.py                       # trains (python train.py experiment=b_scan -m), then collects
    python experiments/b_scan.py --collect-only
    python experiments/b_scan.py --name b_scan_quick --reference-b 2000    # minutes (the tests)

Training: one parametrised network per (benchmark, B) for every S/sqrt(B) of ``grid.snr`` (conf/experiment/NAME.yaml,
:mod:`dmlhc.parametrised`), the optimum of every point beside it. Collection reads, with MLflow's client, the newest
finished run of every (benchmark, B) and writes ``experiments/results/NAME/`` (or --out):

- ``b_scan.csv``: signal, n_background (B), snr (nominal), n_signal (S = round(snr sqrt(B)), so the S/sqrt(B) the
  histograms hold, snr_actual, departs from the nominal one at small B), test/auc, test/auc_optimal (+- its bootstrap
  spread), ratio and ratio_optimal (the AUC over the AUC at ``--reference-b``, default 50k, same benchmark and
  S/sqrt(B): the paper's Fig. 10), run_id;
- ``b_scan.png``: per benchmark, the ratio against S/sqrt(B), one colour per B, network solid, optimum dashed;

and logs both as artifacts of a run ``NAME_summary``; prints the table and, per B, the largest departure of the
ratio from 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _common import log_summary_run, print_table, run_study, study_arguments, train  # noqa: E402
from parametrised import parametrised_runs, points  # noqa: E402

from dmlhc.data.ensembles import n_signal_events  # noqa: E402
from dmlhc.events.cache import write_csv  # noqa: E402

COLUMNS = ("signal", "n_background", "snr", "n_signal", "snr_actual", "test/auc", "test/auc_optimal",
           "test/auc_optimal_std", "ratio", "ratio_optimal", "run_id")


def collect(experiment: str, reference_b: int) -> list[dict]:
    """One row per (benchmark, B, S/sqrt(B)) of the newest runs, with the ratios to B = ``reference_b``."""
    rows = []
    for run in parametrised_runs(experiment, ("signal", "n_background")):
        n_background = int(run.data.params["n_background"])
        for snr, (auc, optimum, spread) in points(run).items():
            n_signal = n_signal_events(n_background, snr)
            rows.append({"signal": run.data.params["signal"], "n_background": n_background, "snr": snr,
                         "n_signal": n_signal, "snr_actual": n_signal / math.sqrt(n_background), "test/auc": auc,
                         "test/auc_optimal": optimum, "test/auc_optimal_std": spread, "run_id": run.info.run_id})
    reference = {(r["signal"], r["snr"]): r for r in rows if r["n_background"] == reference_b}
    for r in rows:
        base = reference.get((r["signal"], r["snr"]))
        r["ratio"] = r["test/auc"] / base["test/auc"] if base else math.nan
        r["ratio_optimal"] = r["test/auc_optimal"] / base["test/auc_optimal"] if base else math.nan
    return sorted(rows, key=lambda r: (r["signal"], r["n_background"], r["snr"]))


def plot(rows: list[dict], path: Path, reference_b: int) -> Path:
    """Per benchmark: AUC(B) / AUC(reference B) against S/sqrt(B), one colour per B; network solid, optimum dashed."""
    from dmlhc.tracking.plots import hep_style, save, snr_axis

    signals = sorted({r["signal"] for r in rows})
    sizes = sorted({r["n_background"] for r in rows})
    columns = min(2, len(signals))
    n_rows = math.ceil(len(signals) / columns)
    colours = plt.get_cmap("viridis")
    with hep_style():
        fig, axes = plt.subplots(n_rows, columns, figsize=(6.5 * columns, 4.5 * n_rows), sharex=True, sharey=True,
                                 squeeze=False)
        for ax, signal in zip(axes.flat, signals):
            for k, size in enumerate(sizes):
                mine = [r for r in rows if r["signal"] == signal and r["n_background"] == size]
                colour = colours(k / max(1, len(sizes) - 1))
                snr = [r["snr"] for r in mine]
                ax.plot(snr, [r["ratio"] for r in mine], "-o", ms=3, color=colour, label=f"B = {size:,}")
                ax.plot(snr, [r["ratio_optimal"] for r in mine], "--", lw=1, color=colour)
            ax.axhline(1, color="k", lw=0.8)
            snr_axis(ax, [r["snr"] for r in rows], label=None)
            ax.set_title(signal, fontsize=12)
            ax.tick_params(labelsize=11)
        for ax in axes.flat[len(signals):]:
            ax.set_visible(False)
        fig.supxlabel(r"$S/\sqrt{B}$", fontsize=14, y=0.06)
        fig.supylabel(f"AUC(B) / AUC(B = {reference_b:,})", fontsize=14)
        axes[0, 0].plot([], [], "k-", label="network")
        axes[0, 0].plot([], [], "k--", lw=1, label="optimum")
        fig.tight_layout(rect=(0.02, 0.1, 1, 1))
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=len(sizes) + 2, fontsize=10,
                   bbox_to_anchor=(0.5, 0.0))
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    def more(parser):
        parser.add_argument("--reference-b", type=int, default=50_000, help="the B the ratios divide by")

    args, overrides = study_arguments(__doc__, "b_scan", argv, more)
    if not args.collect_only:
        train(args.name, overrides)
    rows = collect(args.name, args.reference_b)
    if not any(r["n_background"] == args.reference_b for r in rows):
        raise SystemExit(f"b_scan: no run of experiment {args.name!r} at B = {args.reference_b} to divide by; "
                         f"give --reference-b one of {sorted({r['n_background'] for r in rows})}")
    table = write_csv(rows, COLUMNS, args.out / "b_scan.csv")
    figure = plot(rows, args.out / "b_scan.png", args.reference_b)
    departures = {size: max(abs(r["ratio"] - 1) for r in rows if r["n_background"] == size)
                  for size in sorted({r["n_background"] for r in rows})}
    log_summary_run(args.name, f"{args.name}_summary", [table, figure],
                    {f"max_departure_B{size}": value for size, value in departures.items()},
                    {"dmlhc.summary": "b_scan"}, {"reference_b": args.reference_b})
    print_table(rows, [("signal", "signal", "16s"), ("B", "n_background", "7d"), ("snr", "snr", "6.3f"),
                       ("S", "n_signal", "5d"), ("network", "test/auc", "8.4f"),
                       ("optimum", "test/auc_optimal", "8.4f"), ("ratio", "ratio", "7.4f"),
                       ("ratio opt", "ratio_optimal", "9.4f")])
    print(f"largest |AUC(B) / AUC(B = {args.reference_b}) - 1| of the network, per B: "
          + ", ".join(f"B = {size}: {value:.4f}" for size, value in departures.items()) + f"; table {table}")
    return 0


if __name__ == "__main__":
    run_study(main)
