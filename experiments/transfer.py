"""Studies 7 and 8 of the paper: networks trained at one point, tested at another.

    python experiments/transfer.py wrong_snr --source fig7                    # every network at S/sqrt(B) 0.224, 2.236
    python experiments/transfer.py wrong_snr --source fig7 --test-snr 0.447 --signals alp,spin2_onshell
    python experiments/transfer.py wrong_snr --source fig7 --train-snr 0.112,1.118,4.47   # only these networks
    python experiments/transfer.py wrong_model --source fig7                  # every model's network on every model
    python experiments/transfer.py wrong_model --source fig7 --snr 1.118 --signals spin0_onshell,spin2_onshell
    python experiments/transfer.py wrong_snr --source fig7 --collect-only     # only collect what MLflow holds
    python experiments/transfer.py wrong_snr --source fig7 -- trainer=gpu     # extra eval.py overrides after --

``--source`` is an MLflow experiment of trained networks, a grid of ``experiments/grid.py`` (fig7, fig7_quick):
of every point (benchmark, S/sqrt(B)) the network of seed ``--seed`` (the point's run, or with repeats its seed's
child run, which holds the checkpoint). Each is re-tested by ``python eval.py run_id=<ids> <test setting> -m``, one
multirun per test setting, into the MLflow experiment named by the study, every test a run tagged with its source
run; a test already there (same source run, test signal and S/sqrt(B)) is not run again, so a rerun only collects.

- ``wrong_snr`` (study 7): every network of a benchmark tested on the same benchmark at each ``--test-snr`` (default
  the paper's 0.223 and 2.23, as the Fig. 7 grid writes them: sqrt(0.05) = 0.224 and sqrt(5) = 2.236);
- ``wrong_model`` (study 8): the network of model A trained at each ``--snr`` tested on model B at the same
  S/sqrt(B), for every pair of ``--signals`` (default: the source's benchmarks).

Collection writes ``experiments/results/<study>/<source>.csv`` (or ``--out DIR``): train_signal, train_snr,
test_signal, test_snr, test/auc (the network at the test point), test/auc_optimal and test/auc_optimal_std (the
likelihood-ratio optimum there and its bootstrap spread), source/auc (the network at its own training point, as
the source run reported it), test/auc_matched (on the same test set, the network trained at the test point: same
benchmark and S/sqrt(B)), source_run and run_id (the test's run); and ``<source>.png``: for wrong_snr the test AUC
against the training S/sqrt(B) (one panel per test S/sqrt(B), network solid, the optimum at the test point dashed,
a star at the network trained there), for wrong_model a train model x test model map (one panel per S/sqrt(B)) of
the AUC over the test model's own network's (or of the AUC, where that network is missing). Both are logged as
artifacts of a run ``<study>_summary`` in the study's experiment; the table is printed.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from _common import log_summary_run, run_study, source_tests, stop_if_failed  # noqa: E402
from grid import collect as grid_points  # noqa: E402

from dmlhc.config import split_overrides  # noqa: E402
from dmlhc.events.cache import write_csv  # noqa: E402
from dmlhc.tracking.store import resolve_tracking_uri  # noqa: E402
from dmlhc.tracking.summary import table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ("wrong_snr", "wrong_model")
COLUMNS = ("train_signal", "train_snr", "test_signal", "test_snr", "test/auc", "test/auc_optimal",
           "test/auc_optimal_std", "source/auc", "test/auc_matched", "source_run", "run_id")
SNR_COLUMNS = ("train_snr", "test_snr")


@dataclass(frozen=True)
class Network:
    """A trained network of the source experiment: its benchmark, S/sqrt(B), seed, run, and its test AUC there
    beside the optimum's."""

    signal: str
    snr: float
    seed: int
    run_id: str
    auc: float
    auc_optimal: float


@dataclass(frozen=True)
class Test:
    """A network tested on ``signal`` at ``snr``."""

    network: Network
    signal: str
    snr: float

    @property
    def key(self) -> tuple[str, str, float]:
        return self.network.run_id, self.signal, round(self.snr, 9)

    @property
    def run_name(self) -> str:
        """The test's run name: what was trained, on what it was tested."""
        n = self.network
        return f"{n.signal}_snr{n.snr:g}_seed{n.seed}_on_{self.signal}_snr{self.snr:g}"

    def overrides(self, study: str) -> tuple[str, ...]:
        """What eval.py is given beyond the run: the test S/sqrt(B) (wrong_snr) or the test model (wrong_model)."""
        if study == "wrong_snr":
            return (f"snr={self.snr!r}",)
        return f"signal.name={self.signal}", f"signal.benchmark={self.signal}"  # the other signal settings: trained


def same_snr(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def source_networks(experiment: str, seed: int) -> list[Network]:
    """The network of seed ``seed`` at every point of ``experiment`` (the newest finished run of each point, as
    experiments/grid.py collects them; of a point with repeats, its seed's child run)."""
    client = mlflow.MlflowClient(resolve_tracking_uri())
    points = grid_points(experiment)
    found = client.get_experiment_by_name(experiment)
    assert found is not None  # grid_points stops when it does not exist
    seeds = {run.data.tags["mlflow.parentRunId"]: run for run in client.search_runs(
        [found.experiment_id], f"attributes.status = 'FINISHED' and tags.`dmlhc.repeat` = 'child' and "
                               f"params.seed = '{seed}'", max_results=50000)}
    networks = []
    for point in points:
        run = seeds.get(point["run_id"]) if point["repeats"] > 1 else client.get_run(point["run_id"])
        if run is None or "test/auc" not in run.data.metrics:
            print(f"transfer: {point['signal']} at S/sqrt(B) = {point['snr']:g} has no finished network of seed "
                  f"{seed} in {experiment!r}; skipped", file=sys.stderr)
            continue
        networks.append(Network(point["signal"], point["snr"], int(run.data.params.get("seed", seed)),
                                run.info.run_id, run.data.metrics["test/auc"],
                                run.data.metrics.get("test/auc_optimal", math.nan)))
    return networks


def planned_tests(study: str, networks: Sequence[Network], signals: Sequence[str] | None,
                  snrs: Sequence[float], train_snrs: Sequence[float] | None = None) -> list[Test]:
    """wrong_snr: every network (of ``signals``, trained at one of ``train_snrs``: default any) on its own benchmark
    at every S/sqrt(B) of ``snrs``; wrong_model:
    every network of ``signals`` trained at an S/sqrt(B) of ``snrs`` on every benchmark of ``signals`` there."""
    chosen = [n for n in networks if signals is None or n.signal in signals]
    if study == "wrong_snr":
        chosen = [n for n in chosen if train_snrs is None or any(same_snr(n.snr, s) for s in train_snrs)]
        return [Test(n, n.signal, snr) for snr in snrs for n in chosen]
    models = list(signals) if signals is not None else sorted({n.signal for n in networks})
    for snr in snrs:
        if not any(same_snr(n.snr, snr) for n in chosen):
            print(f"transfer: no network trained at S/sqrt(B) = {snr:g} (the source has "
                  f"{', '.join(f'{x:g}' for x in sorted({n.snr for n in networks}))}); skipped", file=sys.stderr)
    return [Test(n, model, n.snr) for n in chosen if any(same_snr(n.snr, s) for s in snrs) for model in models]


def run_tests(study: str, tests: Sequence[Test], extra: Sequence[str]) -> None:
    """``python eval.py run_id=... <overrides> -m``: one multirun per test setting; each run is then named by its
    training and test point (eval.py names it by the test point only)."""
    groups: dict[tuple[str, ...], list[Test]] = {}
    for test in tests:
        groups.setdefault(test.overrides(study), []).append(test)
    for overrides, members in groups.items():
        runs = ",".join(f"'{t.network.run_id}'" for t in members)  # quoted: an id of digits is no number to Hydra
        command = [sys.executable, str(ROOT / "eval.py"), f"run_id={runs}", *overrides,
                   f"logger.mlflow.experiment_name={study}", *extra, "-m"]
        print("+", " ".join(command), flush=True)
        stop_if_failed(command, subprocess.run(command).returncode,
                       f"{study!r} keeps the tests that finished, a rerun tests the rest")
        done, client = source_tests(study), mlflow.MlflowClient(resolve_tracking_uri())
        for test in members:
            if test.key in done:
                client.update_run(done[test.key].info.run_id, name=test.run_name)


def collect(study: str, tests: Sequence[Test]) -> list[dict]:
    """The table rows of the ``tests`` that have a finished run, sorted by test point and training point."""
    done = source_tests(study)
    rows = []
    for test in tests:
        run = done.get(test.key)
        if run is None:
            continue
        metrics = run.data.metrics
        rows.append({"train_signal": test.network.signal, "train_snr": test.network.snr, "test_signal": test.signal,
                     "test_snr": test.snr, "test/auc": metrics["test/auc"],
                     "test/auc_optimal": metrics.get("test/auc_optimal", math.nan),
                     "test/auc_optimal_std": metrics.get("test/auc_optimal_std", math.nan),
                     "source/auc": test.network.auc, "test/auc_matched": math.nan,
                     "source_run": test.network.run_id, "run_id": run.info.run_id})
    for row in rows:  # the network trained at the test point, on the same test set
        matched = [r for r in rows if r["train_signal"] == row["test_signal"] == r["test_signal"]
                   and same_snr(r["train_snr"], row["test_snr"]) and same_snr(r["test_snr"], row["test_snr"])]
        if matched:
            row["test/auc_matched"] = matched[0]["test/auc"]
    return sorted(rows, key=lambda r: (r["test_snr"], r["test_signal"], r["train_signal"], r["train_snr"]))


def plot_wrong_snr(rows: Sequence[dict], path: Path, source: str) -> Path:
    """Test AUC against training S/sqrt(B), one panel per test S/sqrt(B): network solid, one colour per benchmark,
    the optimum at the test point dashed, a star at the network trained at the test point."""
    from dmlhc.tracking.plots import SNR_LABEL, hep_label, hep_style, save, snr_axis

    test_snrs = sorted({r["test_snr"] for r in rows})
    signals = sorted({r["test_signal"] for r in rows})
    colours = plt.get_cmap("tab10")
    with hep_style():
        fig, axes = plt.subplots(1, len(test_snrs), figsize=(9 * len(test_snrs), 7), squeeze=False)
        for ax, test_snr in zip(axes[0], test_snrs):
            for k, signal in enumerate(signals):
                points = sorted((r for r in rows if r["test_snr"] == test_snr and r["test_signal"] == signal),
                                key=lambda r: r["train_snr"])
                if not points:
                    continue
                colour = colours(k % 10)
                ax.plot([r["train_snr"] for r in points], [r["test/auc"] for r in points], "-o", color=colour, ms=4,
                        label=signal)
                ax.axhline(float(np.mean([r["test/auc_optimal"] for r in points])), ls="--", color=colour, lw=1)
                if not math.isnan(points[0]["test/auc_matched"]):
                    ax.plot([test_snr], [points[0]["test/auc_matched"]], "*", color=colour, ms=16, mec="k", mew=0.5)
            ax.axvline(test_snr, color="grey", ls=":", lw=1)
            ax.plot([], [], "k-o", ms=4, label="network")
            ax.plot([], [], "k--", lw=1, label="optimum at the test point")
            ax.plot([], [], "k*", ms=12, label="trained at the test point")
            snr_axis(ax, [r["train_snr"] for r in rows], label=f"training {SNR_LABEL}")
            ax.set_ylabel("test AUC")
            ax.margins(x=0.08, y=0.3)
            ax.legend(fontsize=10, ncol=2, loc="best", title=f"{source}: tested at {SNR_LABEL} = {test_snr:g}",
                      title_fontsize=11)
        hep_label(axes[0][0], right=len(test_snrs) == 1)
        if len(test_snrs) > 1:
            hep_label(axes[0][-1], left=False)
        return save(fig, path)


def plot_wrong_model(rows: Sequence[dict], path: Path, source: str) -> Path:
    """Train model x test model maps, one panel per S/sqrt(B), values in the cells: the test AUC over the test
    model's own network's on the same test set, or the test AUC where a panel lacks such a network."""
    from dmlhc.tracking.plots import SNR_LABEL, hep_label, hep_style, save

    snrs = sorted({r["test_snr"] for r in rows})
    size = max(8.0, 1.2 * len({r["test_signal"] for r in rows}) + 5)
    with hep_style():
        fig, axes = plt.subplots(1, len(snrs), figsize=(1.15 * size * len(snrs), size), squeeze=False)
        for ax, snr in zip(axes[0], snrs):
            panel = [r for r in rows if r["test_snr"] == snr]
            trained, tested = sorted({r["train_signal"] for r in panel}), sorted({r["test_signal"] for r in panel})
            ratio = all(not math.isnan(r["test/auc_matched"]) for r in panel)
            values, aucs = np.full((2, len(trained), len(tested)), np.nan)
            for r in panel:
                cell = trained.index(r["train_signal"]), tested.index(r["test_signal"])
                aucs[cell] = r["test/auc"]
                values[cell] = r["test/auc"] / r["test/auc_matched"] if ratio else r["test/auc"]
            image = ax.imshow(values, cmap="viridis", aspect="auto")
            fig.colorbar(image, ax=ax, label="AUC / the test model's own network's" if ratio else "test AUC")
            middle = np.nanmean(values)
            for (i, j), value in np.ndenumerate(values):
                if not np.isnan(value):
                    text = f"{value:.3f}\n(AUC {aucs[i, j]:.3f})" if ratio else f"{value:.3f}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=12, color="k" if value > middle else "w")
            optimum = {r["test_signal"]: r["test/auc_optimal"] for r in panel}
            ax.set_xticks(range(len(tested)), [f"{s}\n(optimum {optimum[s]:.3f})" for s in tested], rotation=30,
                          ha="right", fontsize=13)
            ax.set_yticks(range(len(trained)), trained, fontsize=13)
            ax.minorticks_off()
            ax.set_xlabel(f"tested on, {SNR_LABEL} = {snr:g}")
            ax.set_ylabel(f"trained on ({source})")
            hep_label(ax)
        return save(fig, path)


def summary_metrics(study: str, rows: Sequence[dict]) -> dict[str, float]:
    """The study's headline numbers: wrong_snr the largest AUC lost to the network trained at the test point,
    wrong_model the smallest ratio to it (both over the rows that have it)."""
    matched = [r for r in rows if not math.isnan(r["test/auc_matched"])]
    metrics = {"tests": float(len(rows))}
    if matched and study == "wrong_snr":
        metrics["max_loss"] = max(r["test/auc_matched"] - r["test/auc"] for r in matched)
    elif matched:
        metrics["min_ratio"] = min(r["test/auc"] / r["test/auc_matched"] for r in matched)
    return metrics


def source_arguments(parser: argparse.ArgumentParser, snr: bool = True) -> None:
    """The options that choose trained networks: ``--source`` (an MLflow experiment), ``--signals``, ``--seed`` and,
    with ``snr``, ``--snr`` (all of the source's by default); :func:`chosen_networks` applies them."""
    parser.add_argument("--source", required=True, help="the MLflow experiment of the trained networks (fig7, ...)")
    parser.add_argument("--signals", type=name_list, help="benchmarks (default: all of the source's)")
    if snr:
        parser.add_argument("--snr", type=float_list, help="S/sqrt(B) values (default: all of the source's)")
    parser.add_argument("--seed", type=int, default=1, help="the seed of the networks of a point with repeats")


def chosen_networks(args: argparse.Namespace, study: str) -> list[Network]:
    """The networks of ``--source`` that :func:`source_arguments` chose; stops with a message if there are none."""
    networks = [n for n in source_networks(args.source, args.seed)
                if (args.signals is None or n.signal in args.signals)
                and (args.snr is None or any(same_snr(n.snr, s) for s in args.snr))]
    if not networks:
        raise SystemExit(f"{study}: {args.source!r} has no finished network of the chosen signals and S/sqrt(B)")
    return networks


def float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def name_list(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_overrides(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=STUDIES)
    source_arguments(parser, snr=False)
    parser.add_argument("--test-snr", type=float_list, default=[0.224, 2.236],
                        help="wrong_snr: the S/sqrt(B) values to test at (default 0.224,2.236)")
    parser.add_argument("--train-snr", type=float_list,
                        help="wrong_snr: only the networks trained at these S/sqrt(B) values (default: all)")
    parser.add_argument("--snr", type=float_list, default=[0.447, 1.118],
                        help="wrong_model: the S/sqrt(B) values to train and test at (default 0.447,1.118)")
    parser.add_argument("--collect-only", action="store_true", help="do not test; collect what MLflow holds")
    parser.add_argument("--out", type=Path, help="output folder (default experiments/results/STUDY)")
    args = parser.parse_args(argv)
    networks = source_networks(args.source, args.seed)
    tests = planned_tests(args.study, networks, args.signals, args.test_snr if args.study == "wrong_snr" else args.snr,
                          args.train_snr)
    if not tests:
        raise SystemExit(f"transfer: {args.source!r} has no finished network of the chosen signals and S/sqrt(B)")
    if not args.collect_only:
        done = source_tests(args.study)
        to_run = [t for t in tests if t.key not in done]
        print(f"transfer: {len(tests)} tests, {len(tests) - len(to_run)} already in {args.study!r}, "
              f"{len(to_run)} to run", flush=True)
        run_tests(args.study, to_run, extra)
    rows = collect(args.study, tests)
    if not rows:
        raise SystemExit(f"transfer: {args.study!r} holds none of the {len(tests)} tests; run without --collect-only")
    out = args.out or ROOT / "experiments" / "results" / args.study
    csv_path = write_csv(rows, COLUMNS, out / f"{args.source}.csv", exact=SNR_COLUMNS)
    plot = plot_wrong_snr if args.study == "wrong_snr" else plot_wrong_model
    figure = plot(rows, out / f"{args.source}.png", args.source)
    metrics = summary_metrics(args.study, rows)
    log_summary_run(args.study, f"{args.study}_summary", [csv_path, figure], metrics,
                    {"dmlhc.summary": args.study, "dmlhc.source_experiment": args.source}, {"seed": args.seed})
    printed = [{**r, **{c: f"{r[c]:g}" for c in SNR_COLUMNS}, "source_run": r["source_run"][:8]} for r in rows]
    print(table(printed, COLUMNS))
    print(f"transfer: {len(rows)} of {len(tests)} tests; "
          + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "tests")
          + f"; table {csv_path}, figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
