"""Expected discovery significance against S/sqrt(B): the trained networks of a grid, their optimum, and counting.

    python experiments/expected_z.py --source fig7                     # every point of the Fig. 7 grid
    python experiments/expected_z.py --source fig7 --signals alp,spin2_onshell --snr 0.224,1.118
    python experiments/expected_z.py --source fig7_quick --pseudo-experiments 500

``--source`` is an MLflow experiment of trained networks, a grid of ``experiments/grid.py`` (fig7, fig7_quick); of
every point (benchmark, S/sqrt(B)) the network of seed ``--seed`` is loaded from its run's checkpoint artifact, as
``dmlhc predict --run`` loads it. At the point it was trained for, :func:`dmlhc.predict.expected_significance`
draws ``--pseudo-experiments`` SM-only pseudo-datasets (Poisson bin counts, B events expected, from the run's
held-out SM pool) and as many with S signal events added, scores both with the network and with the run's optimum
(the likelihood ratio of ``test/auc_optimal``), and takes the median Z of SM + signal data against the SM-only
scores, with its bootstrap spread. Both are tests of the (pT, eta) shape: a max-normalised histogram carries no
event count. Beside them, two closed forms for the same expected counts (Cowan et al., Asimov): counting alone,
one bin of B and S events (~ S/sqrt(B)), and the binned Poisson likelihood ratio of all bins, count and shape
together, the most any analysis of these histograms can reach.

Every point is a run of the MLflow experiment ``expected_z`` (its row as params and metrics, tagged with the network's
run); a rerun with the same ``--pseudo-experiments`` and ``--seed`` computes only the points it does not hold.
Writes ``experiments/results/expected_z/<source>.csv`` (or ``--out DIR``): signal, snr, n_background, n_signal,
z_network and z_optimum (median Z) with their _std (bootstrap spread) and _bound (1: the median SM + signal score is
above every SM-only score, so the value is only a lower bound; more pseudo-experiments resolve it), z_counting,
z_binned, pseudo_experiments, test/auc and test/auc_optimal of the run, run_id; and ``<source>.png`` (Z against
S/sqrt(B): network solid, optimum dashed, binned Poisson dotted, one colour per benchmark; counting grey). Both are
logged as artifacts of a run ``expected_z_summary`` in the MLflow experiment ``expected_z``; the table is printed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import torch  # noqa: E402
from _common import log_summary_run, run_study  # noqa: E402
from transfer import Network, chosen_networks, source_arguments  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402
from dmlhc.predict import DEFAULT_PSEUDO_EXPERIMENTS, expected_significance, load_run  # noqa: E402
from dmlhc.significance import asimov_significance, expected_counts  # noqa: E402
from dmlhc.tracking.store import resolve_tracking_uri  # noqa: E402
from dmlhc.tracking.summary import table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUDY = "expected_z"
COLUMNS = ("signal", "snr", "n_background", "n_signal", "z_network", "z_network_std", "z_network_bound", "z_optimum",
           "z_optimum_std", "z_optimum_bound", "z_counting", "z_binned", "pseudo_experiments", "test/auc",
           "test/auc_optimal", "run_id")
TEXT = ("signal", "run_id")  # the other columns are numbers (metrics of a point's run)
INTEGERS = ("n_background", "n_signal", "z_network_bound", "z_optimum_bound", "pseudo_experiments")


def point_row(network: Network, n_experiments: int, seed: int) -> dict:
    """The table row of one trained network: the median Z of its network and its optimum, and the closed forms."""
    datamodule, model, _ = load_run(network.run_id)
    tests = expected_significance(model, datamodule, n_experiments, seed)
    pools = datamodule.pools
    signal = next(iter(datamodule.signal_sources))
    b, s = expected_counts(pools["background"]["train"].bin_counts, pools[signal]["train"].bin_counts,
                           datamodule.n_background, datamodule.n_signal, datamodule.optimum_pseudo_count())
    row = {"signal": network.signal, "snr": network.snr, "n_background": datamodule.n_background,
           "n_signal": datamodule.n_signal,
           "z_counting": asimov_significance(torch.tensor([float(datamodule.n_background)]),
                                             torch.tensor([float(datamodule.n_signal)])),
           "z_binned": asimov_significance(b, s), "pseudo_experiments": n_experiments, "test/auc": network.auc,
           "test/auc_optimal": network.auc_optimal, "run_id": network.run_id}
    for name, result in tests.items():
        row |= {f"z_{name}": result.median_z, f"z_{name}_std": result.median_z_std,
                f"z_{name}_bound": int(result.median_beyond_tail)}
    return row


def tracked_rows(n_experiments: int, seed: int) -> dict[str, dict]:
    """The rows of the points ``expected_z`` holds for these settings, by network run id (the newest of each)."""
    client = mlflow.MlflowClient(resolve_tracking_uri())
    found = client.get_experiment_by_name(STUDY)
    if found is None:
        return {}
    rows: dict[str, dict] = {}
    for run in client.search_runs([found.experiment_id], f"tags.`dmlhc.expected_z` = 'point' and attributes.status = "
                                  f"'FINISHED' and params.pseudo_experiments = '{n_experiments}' and params.seed = "
                                  f"'{seed}'", order_by=["attributes.start_time DESC"], max_results=50000):
        row = {"signal": run.data.params["signal"], "run_id": run.data.tags["dmlhc.source_run"], **run.data.metrics}
        row |= {k: int(row[k]) for k in INTEGERS}
        rows.setdefault(row["run_id"], row)
    return rows


def plot(rows: Sequence[dict], path: Path, source: str) -> Path:
    """Median Z against S/sqrt(B): network solid (+- bootstrap spread; open triangles: lower bounds), optimum dashed,
    binned Poisson likelihood ratio dotted, one colour per benchmark; counting alone grey; log x."""
    from dmlhc.tracking.plots import hep_label, hep_style, save, snr_axis

    with hep_style():
        fig, ax = plt.subplots(figsize=(10, 7))
        colours = plt.get_cmap("tab10")
        for k, signal in enumerate(sorted({r["signal"] for r in rows})):
            points = [r for r in rows if r["signal"] == signal]
            snr, colour = [r["snr"] for r in points], colours(k % 10)
            ax.errorbar(snr, [r["z_network"] for r in points], yerr=[r["z_network_std"] for r in points], fmt="-o",
                        color=colour, ms=4, capsize=2, label=signal)
            ax.plot(snr, [r["z_optimum"] for r in points], "--", color=colour, lw=1)
            ax.plot(snr, [r["z_binned"] for r in points], ":", color=colour, lw=1)
            bounds = [r for r in points if r["z_network_bound"]]
            ax.plot([r["snr"] for r in bounds], [r["z_network"] for r in bounds], "^", mfc="none", color=colour)
        counting = sorted({(r["snr"], r["z_counting"]) for r in rows})
        ax.plot(*zip(*counting), "-", color="grey", lw=2, alpha=0.5, label="counting alone")
        ax.plot([], [], "k-o", ms=4, label="network (shape)")
        ax.plot([], [], "k--", lw=1, label="optimum (shape)")
        ax.plot([], [], "k:", lw=1, label="binned Poisson LR (count + shape)")
        ax.plot([], [], "k^", mfc="none", label="lower bound (beyond all SM-only)")
        snr_axis(ax, [r["snr"] for r in rows])
        ax.set_ylabel("expected (median) discovery Z")
        ax.legend(fontsize=9, ncol=2, loc="upper left", title=f"{source}: {rows[0]['pseudo_experiments']} SM-only "
                  "pseudo-datasets per point", title_fontsize=10)
        hep_label(ax)
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source_arguments(parser)
    parser.add_argument("--pseudo-experiments", type=int, default=DEFAULT_PSEUDO_EXPERIMENTS,
                        help=f"SM-only (and as many SM + signal) pseudo-datasets per point (default "
                             f"{DEFAULT_PSEUDO_EXPERIMENTS}; Z resolves up to ~Phi^-1(1 - 1 / (n + 1)))")
    parser.add_argument("--out", type=Path, help=f"output folder (default experiments/results/{STUDY})")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one checkpoint per point: no bars
    if args.pseudo_experiments < 10:
        parser.error(f"--pseudo-experiments {args.pseudo_experiments}: give at least 10 (a median Z needs a "
                     "distribution)")
    networks = chosen_networks(args, STUDY)
    done = tracked_rows(args.pseudo_experiments, args.seed)
    rows, start = [done[n.run_id] for n in networks if n.run_id in done], time.monotonic()
    to_do = [n for n in networks if n.run_id not in done]
    print(f"expected_z: {len(networks)} points, {len(rows)} already in {STUDY!r}, {len(to_do)} to compute", flush=True)
    for k, network in enumerate(to_do, 1):
        rows.append(point_row(network, args.pseudo_experiments, args.seed))
        r = rows[-1]
        numbers = {key: float(value) for key, value in r.items() if key not in TEXT}
        log_summary_run(STUDY, f"{r['signal']}_snr{r['snr']:g}", [], numbers,  # the point as a run: reruns reuse it
                        {"dmlhc.expected_z": "point", "dmlhc.source_run": r["run_id"]},
                        {"signal": r["signal"], "seed": args.seed, "pseudo_experiments": args.pseudo_experiments})
        print(f"expected_z: {k}/{len(to_do)} {r['signal']} S/sqrt(B) = {r['snr']:g}: network "
              f"{'>' if r['z_network_bound'] else ''}{r['z_network']:.2f}, optimum "
              f"{'>' if r['z_optimum_bound'] else ''}{r['z_optimum']:.2f}, binned {r['z_binned']:.2f} "
              f"({time.monotonic() - start:.0f} s)", flush=True)
    rows.sort(key=lambda r: (r["signal"], r["snr"]))
    out = args.out or ROOT / "experiments" / "results" / STUDY
    csv_path = write_csv(rows, COLUMNS, out / f"{args.source}.csv")
    figure = plot(rows, out / f"{args.source}.png", args.source)
    resolved = [r for r in rows if not r["z_network_bound"] and not r["z_optimum_bound"]]
    metrics = {"points": len(rows), "bounds": len(rows) - len(resolved)}
    if resolved:
        metrics["max_z_gap"] = max(r["z_optimum"] - r["z_network"] for r in resolved)
    log_summary_run(STUDY, f"{STUDY}_summary", [csv_path, figure], metrics,
                    {"dmlhc.summary": STUDY, "dmlhc.source_experiment": args.source},
                    {"seed": args.seed, "pseudo_experiments": args.pseudo_experiments})
    print(table([{**r, "run_id": r["run_id"][:8]} for r in rows], COLUMNS))
    print(f"expected_z: {len(rows)} points; table {csv_path}, figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
