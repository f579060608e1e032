"""Study 10 of the paper (its Figs. 14 and 15): one network for "SM + any of 7 benchmarks" against SM only, tested
on every benchmark alone, the 7 it was trained on and the held-out ones, beside each benchmark's own network.

    python experiments/multimodel.py                  # trains and tests what MLflow lacks, then collects
    python experiments/multimodel.py --collect-only
    python experiments/multimodel.py --name multimodel_quick --reference fig7_quick   # minutes (the tests)

Training is ``python train.py experiment=NAME snr=<study.snr> -m``: one multimodel network (``model=multimodel``,
its benchmarks ``data.benchmarks``) per S/sqrt(B) of the config's ``study.snr`` (train.py ignores the ``study``
key). Each network is then tested on SM against SM + each benchmark of ``study.test_signals`` alone (``python
eval.py run_id=<network> data.task=binary data.benchmarks=null signal=<benchmarks> -m``, runs in the MLflow
experiment ``NAME_tests`` tagged with the network's run; a test already there is not run again). Collection joins
every test with the benchmark's own network at the same S/sqrt(B) in the grid ``--reference`` (experiments/grid.py:
Fig. 7's, the trimmed mean over its repeats) and writes ``experiments/results/NAME/`` (or ``--out``):

- ``multimodel.csv``: snr, signal, held_out (not among the network's benchmarks), test/auc (the multimodel network
  on that benchmark), individual (the benchmark's own network), ratio (= test/auc / individual), test/auc_optimal
  (the benchmark's optimum on the same test set), run_id, network_run;
- ``multimodel.png``: the ratio against S/sqrt(B) per benchmark (held-out ones dashed);

and logs both as artifacts of a run ``NAME_summary``. Prints the table.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _common import (  # noqa: E402
    ROOT,
    composed,
    log_summary_run,
    newest_runs,
    print_table,
    run_study,
    source_tests,
    stop_if_failed,
    study_arguments,
    train,
)
from grid import collect as collect_grid  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402

COLUMNS = ("snr", "signal", "held_out", "test/auc", "individual", "ratio", "test/auc_optimal", "run_id", "network_run")


def networks(name: str, snrs: list[float]) -> list:
    """The newest finished multimodel network of every S/sqrt(B) of ``snrs`` in experiment ``name``."""
    return [run for run in newest_runs(name, ("snr",), "params.task = 'multimodel'")
            if float(run.data.params["snr"]) in snrs]


def trained_on(network) -> list[str]:
    """The benchmarks a multimodel network was trained on (its ``data.benchmarks`` param)."""
    return [b.strip(" '\"") for b in network.data.params["data.benchmarks"].strip("[]").split(",")]


def run_tests(name: str, snrs: list[float], signals: list[str], extra: list[str]) -> None:
    """Every network on every benchmark of ``signals`` that it has not been tested on: one eval.py multirun each."""
    done = source_tests(f"{name}_tests")
    for network in networks(name, snrs):
        snr = round(float(network.data.params["snr"]), 9)
        missing = [s for s in signals if (network.info.run_id, s, snr) not in done]
        if not missing:
            continue
        command = [sys.executable, str(ROOT / "eval.py"), f"run_id='{network.info.run_id}'", "data.task=binary",
                   "data.benchmarks=null", f"signal={','.join(missing)}", f"logger.mlflow.experiment_name={name}_tests",
                   *extra, "-m"]
        print("+", " ".join(command), flush=True)
        stop_if_failed(command, subprocess.run(command).returncode, "a rerun tests what is still missing")


def collect(name: str, snrs: list[float], signals: list[str], reference: str) -> list[dict]:
    """One row per (network, benchmark) tested, joined with the benchmark's own network at that S/sqrt(B)."""
    individual = {(r["signal"], r["snr"]): r["test/auc"] for r in collect_grid(reference)}
    done, rows = source_tests(f"{name}_tests"), []
    for network in networks(name, snrs):
        snr, benchmarks = float(network.data.params["snr"]), trained_on(network)
        for signal in signals:
            test = done.get((network.info.run_id, signal, round(snr, 9)))
            if test is None:
                continue
            auc, own = test.data.metrics["test/auc"], individual.get((signal, snr), math.nan)
            rows.append({"snr": snr, "signal": signal, "held_out": signal not in benchmarks, "test/auc": auc,
                         "individual": own, "ratio": auc / own,
                         "test/auc_optimal": test.data.metrics.get("test/auc_optimal", math.nan),
                         "run_id": test.info.run_id, "network_run": network.info.run_id})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """Multimodel / individual network AUC against S/sqrt(B), one colour per benchmark, held-out ones dashed."""
    from dmlhc.tracking.plots import hep_label, hep_style, save, snr_axis

    with hep_style():
        fig, ax = plt.subplots(figsize=(9, 6.5))
        colours = plt.get_cmap("tab10")
        for k, signal in enumerate(sorted({r["signal"] for r in rows})):
            mine = sorted((r for r in rows if r["signal"] == signal), key=lambda r: r["snr"])
            style = "--s" if mine[0]["held_out"] else "-o"
            ax.plot([r["snr"] for r in mine], [r["ratio"] for r in mine], style, ms=4, color=colours(k % 10),
                    label=signal + (" (held out)" if mine[0]["held_out"] else ""))
        ax.axhline(1, color="k", lw=0.8)
        snr_axis(ax, [r["snr"] for r in rows])
        ax.set_ylabel("AUC / AUC of own network", fontsize=16)
        ax.legend(fontsize=9, loc="lower right", title=title, title_fontsize=10)
        hep_label(ax)
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    def more(parser):
        parser.add_argument("--reference", default="fig7", help="MLflow experiment (a grid) of the own networks")

    args, extra = study_arguments(__doc__, "multimodel", argv, more)
    study = composed(args.name).study
    snrs, signals = [float(s) for s in study.snr], [str(s) for s in study.test_signals]
    if not args.collect_only:
        train(args.name, ["snr=" + ",".join(f"{s:g}" for s in snrs), *extra])
        run_tests(args.name, snrs, signals, extra)
    rows = collect(args.name, snrs, signals, args.reference)
    if not rows:
        raise SystemExit(f"multimodel: experiment {args.name!r} has no tested network; run without --collect-only")
    table = write_csv(rows, COLUMNS, args.out / "multimodel.csv")
    figure = plot(rows, args.out / "multimodel.png", f"{args.name} vs {args.reference}")
    finite = [r for r in rows if math.isfinite(r["ratio"])]
    groups = {"trained": [r for r in finite if not r["held_out"]], "held_out": [r for r in finite if r["held_out"]]}
    metrics = {f"mean_ratio_{kind}": sum(r["ratio"] for r in group) / len(group)
               for kind, group in groups.items() if group}
    log_summary_run(args.name, f"{args.name}_summary", [table, figure], metrics | {"tests": len(rows)},
                    {"dmlhc.summary": "multimodel"}, {"reference": args.reference})
    print_table(rows, [("snr", "snr", "6.3f"), ("signal", "signal", "18s"), ("held out", "held_out", ">8s"),
                       ("multimodel", "test/auc", "10.4f"), ("own", "individual", "7.4f"), ("ratio", "ratio", "7.4f"),
                       ("optimum", "test/auc_optimal", "7.4f")])
    print("multimodel: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"; table {table}, figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
