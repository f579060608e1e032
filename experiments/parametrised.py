"""One parametrised network per benchmark against the per-point networks of Fig. 7 and the optimum.

    python experiments/parametrised.py                   # trains (python train.py experiment=parametrised -m),
                                                         # then collects; needs the fig7 grid in MLflow
    python experiments/parametrised.py --collect-only
    python experiments/parametrised.py --name parametrised_quick --reference fig7_quick   # minutes (tests)

Training is ``python train.py experiment=NAME -m``: one job per benchmark, each ONE
:class:`~dmlhc.models.architectures.ParametrisedDNN` for all points of ``grid.snr`` (:mod:`dmlhc.parametrised`).
Collection reads, with MLflow's client, the newest finished parametrised run of every benchmark in experiment NAME
and the per-point networks of the reference grid (experiment ``--reference``, as ``experiments/grid.py`` collects
them; same B, data seed, test sets and optimum) and writes ``experiments/results/NAME/``:

- ``parametrised.csv``: signal, snr, the parametrised network's test AUC, the per-point networks' (trimmed mean
  +- std over their repeats), the optimum (+- its bootstrap spread), both gaps (optimum - network), run ids;
- ``parametrised.png``: per benchmark, the gap to the optimum vs S/sqrt(B) of both, the +-0.005 band shaded;

and logs both as artifacts of a summary run ``NAME_summary`` (largest gaps as metrics). Prints the table.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _common import log_summary_run, newest_runs, print_table, run_study, study_arguments, train  # noqa: E402
from grid import collect as collect_grid  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402

COLUMNS = ("signal", "snr", "parametrised", "per_point", "per_point_std", "repeats", "optimum", "optimum_std",
           "gap_parametrised", "gap_per_point", "parametrised_run_id", "per_point_run_id")
TARGET = 0.005  # issue 12: within this of the optimum at every point


def parametrised_runs(experiment: str, by: tuple[str, ...]) -> list:
    """The newest finished parametrised run of every value of the params ``by`` in ``experiment``."""
    return newest_runs(experiment, by, "tags.`dmlhc.parametrised` = 'true'", needs="test/auc/")


def points(run) -> dict[float, tuple[float, float, float]]:
    """S/sqrt(B) -> (network AUC, optimum, optimum's bootstrap spread) of a parametrised run."""
    metrics = run.data.metrics
    return {float(snr): (metrics[f"test/auc/snr_{snr}"], metrics[f"test/auc_optimal/snr_{snr}"],
                         metrics[f"test/auc_optimal_std/snr_{snr}"]) for snr in run.data.params["grid.snr"].split(",")}


def collect_parametrised(experiment: str) -> dict[tuple[str, float], tuple[float, float, float, str]]:
    """(signal, snr) -> (network AUC, optimum, optimum spread, run id) of the newest finished parametrised run of
    every benchmark in ``experiment``."""
    return {(run.data.params["signal"], snr): (*values, run.info.run_id)
            for run in parametrised_runs(experiment, ("signal",)) for snr, values in points(run).items()}


def join(parametrised: dict, per_point: list[dict]) -> list[dict]:
    """One row per (signal, snr) of the parametrised runs, with the reference grid's point where it has one."""
    reference = {(r["signal"], r["snr"]): r for r in per_point}
    rows = []
    for (signal, snr), (auc, optimum, optimum_std, run_id) in sorted(parametrised.items()):
        point = reference.get((signal, snr), {})
        network = point.get("test/auc", math.nan)
        rows.append({"signal": signal, "snr": snr, "parametrised": auc, "per_point": network,
                     "per_point_std": point.get("test/auc_std", math.nan), "repeats": point.get("repeats", 0),
                     "optimum": optimum, "optimum_std": optimum_std, "gap_parametrised": optimum - auc,
                     "gap_per_point": optimum - network, "parametrised_run_id": run_id,
                     "per_point_run_id": point.get("run_id", "")})
    return rows


def plot(rows: list[dict], path: Path) -> Path:
    """Per benchmark: optimum - network vs S/sqrt(B), parametrised and per-point (+- the repeats' spread)."""
    from dmlhc.tracking.plots import hep_style, save, snr_axis

    signals = sorted({r["signal"] for r in rows})
    columns = min(5, len(signals))
    n_rows = math.ceil(len(signals) / columns)
    with hep_style():
        fig, axes = plt.subplots(n_rows, columns, figsize=(4 * columns, 3.4 * n_rows), sharex=True, sharey=True,
                                 squeeze=False)
        for ax, signal in zip(axes.flat, signals):
            points = [r for r in rows if r["signal"] == signal]
            snr = [r["snr"] for r in points]
            ax.axhspan(-TARGET, TARGET, color="0.9")
            ax.axhline(0, color="k", lw=0.8)
            ax.plot(snr, [r["gap_parametrised"] for r in points], "-o", ms=3, label="one parametrised network")
            spread = [0.0 if math.isnan(r["per_point_std"]) else r["per_point_std"] for r in points]
            ax.errorbar(snr, [r["gap_per_point"] for r in points], yerr=spread, fmt="--s", ms=3, capsize=2,
                        label="a network per point")
            snr_axis(ax, [r["snr"] for r in rows], label=None)
            ax.set_title(signal, fontsize=11)
            ax.tick_params(labelsize=10)
        for ax in axes.flat[len(signals):]:
            ax.set_visible(False)
        fig.supxlabel(r"$S/\sqrt{B}$", fontsize=14)
        fig.supylabel("optimum - network test AUC", fontsize=14)
        axes[0, 0].legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    def more(parser):
        parser.add_argument("--reference", default="fig7", help="MLflow experiment of the per-point networks")

    args, overrides = study_arguments(__doc__, "parametrised", argv, more)
    if not args.collect_only:
        train(args.name, overrides)
    rows = join(collect_parametrised(args.name), collect_grid(args.reference))
    if not rows:
        raise SystemExit(f"parametrised: experiment {args.name!r} has no finished parametrised runs")
    table = write_csv(rows, COLUMNS, args.out / "parametrised.csv")
    figure = plot(rows, args.out / "parametrised.png")
    largest = {key: max(r[key] for r in rows if not math.isnan(r[key])) for key in ("gap_parametrised", "gap_per_point")
               if any(not math.isnan(r[key]) for r in rows)}
    log_summary_run(args.name, f"{args.name}_summary", [table, figure], largest | {"points": len(rows)},
                    {"dmlhc.summary": "parametrised"}, {"reference": args.reference})
    print_table(rows, [("signal", "signal", "18s"), ("snr", "snr", "7.3f"), ("param.", "parametrised", "7.4f"),
                       ("per-pt", "per_point", "7.4f"), ("optimum", "optimum", "7.4f"),
                       ("gap p.", "gap_parametrised", "7.4f"), ("gap pp", "gap_per_point", "7.4f")])
    within = sum(r["gap_parametrised"] <= TARGET for r in rows)
    print(f"parametrised within {TARGET} of the optimum at {within} of {len(rows)} points; largest gaps: "
          + ", ".join(f"{k} {v:.4f}" for k, v in largest.items()) + f"; table {table}, figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
