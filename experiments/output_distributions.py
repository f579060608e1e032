"""Study 5 of the paper: the network's output on SM-only and SM + signal test histograms, at a few S/sqrt(B).

    python experiments/output_distributions.py --source fig7 --signals alp,spin0_onshell,spin1_onshell,spin2_onshell \
        --snr 0.224,1.118,2.236
    python experiments/output_distributions.py --source fig7_quick

``--source`` is an MLflow experiment of trained networks, a grid of ``experiments/grid.py`` (fig7, fig7_quick): of
every chosen point (benchmark, S/sqrt(B)) the network of seed ``--seed``, loaded from its run's checkpoint artifact,
scores the point's own test histograms (the ones its ``test/auc`` was measured on:
same ``data.data_seed``). Writes ``experiments/results/output_distributions/<source>.csv`` (or ``--out DIR``): per
point and class (``sm`` or ``sm+signal``) the fraction of the test histograms in each of ``--bins`` equal bins of
the output in [0, 1]; ``<source>_points.csv``: per point the test AUC recomputed from these scores (equal to the
run's ``test/auc``), the run's optimum, and the median output of each class; and ``<source>.png``: one panel per
point (benchmark rows, S/sqrt(B) columns), both classes' distributions. Both are logged as artifacts of a run
``output_distributions_summary`` in the MLflow experiment ``output_distributions``.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import log_summary_run, run_study, trained_run  # noqa: E402
from torchmetrics.functional.classification import binary_auroc  # noqa: E402
from transfer import Network, chosen_networks, same_snr, source_arguments  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402
from dmlhc.predict import network_scorer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUDY = "output_distributions"
CLASSES = {1: "sm+signal", 0: "sm"}
COLUMNS = ("signal", "snr", "class", "bin_low", "bin_high", "fraction")
POINT_COLUMNS = ("signal", "snr", "test/auc", "test/auc_run", "test/auc_optimal", "median_sm", "median_sm+signal",
                 "histograms", "run_id")


def point_scores(network: Network) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's outputs (H,) on its point's test histograms and their labels (H,)."""
    datamodule, model = trained_run(network.run_id)
    score = network_scorer(model, datamodule)
    counts = datamodule.test_counts
    scores = torch.cat([score(counts[i: i + 4096]) for i in range(0, len(counts), 4096)])
    return scores, datamodule.sets["test"].y


def distribution_rows(network: Network, scores: torch.Tensor, labels: torch.Tensor, bins: int) -> list[dict]:
    """The fraction of each class's test histograms in each output bin."""
    rows = []
    for label, name in CLASSES.items():
        mine = scores[labels == label].float()
        counts = torch.histc(mine, bins=bins, min=0.0, max=1.0)
        for k, count in enumerate(counts.tolist()):
            rows.append({"signal": network.signal, "snr": network.snr, "class": name, "bin_low": k / bins,
                         "bin_high": (k + 1) / bins, "fraction": count / len(mine)})
    return rows


def point_row(network: Network, scores: torch.Tensor, labels: torch.Tensor) -> dict:
    return {"signal": network.signal, "snr": network.snr,
            "test/auc": float(binary_auroc(scores.float(), labels.long())), "test/auc_run": network.auc,
            "test/auc_optimal": network.auc_optimal,
            "median_sm": float(scores[labels == 0].median()), "median_sm+signal": float(scores[labels == 1].median()),
            "histograms": len(scores), "run_id": network.run_id}


def plot(rows: list[dict], points: list[dict], path: Path, source: str) -> Path:
    """Benchmarks as rows, S/sqrt(B) as columns: the output distribution of each class, the AUC in the corner."""
    from dmlhc.tracking.plots import hep_style, save

    signals = sorted({p["signal"] for p in points})
    snrs = sorted({p["snr"] for p in points})
    with hep_style():
        fig, axes = plt.subplots(len(signals), len(snrs), figsize=(3.6 * len(snrs), 2.8 * len(signals)), sharex=True,
                                 squeeze=False)
        for i, signal in enumerate(signals):
            for j, snr in enumerate(snrs):
                ax = axes[i, j]
                point = next((p for p in points if p["signal"] == signal and same_snr(p["snr"], snr)), None)
                if point is None:
                    ax.set_visible(False)
                    continue
                for name, colour in (("sm", "tab:blue"), ("sm+signal", "tab:red")):
                    mine = [r for r in rows if r["signal"] == signal and same_snr(r["snr"], snr) and r["class"] == name]
                    edges = [r["bin_low"] for r in mine] + [mine[-1]["bin_high"]]
                    ax.stairs([r["fraction"] for r in mine], edges, color=colour, label=name.replace("sm", "SM"))
                ax.text(0.03, 0.95, f"AUC {point['test/auc']:.3f}\noptimum {point['test/auc_optimal']:.3f}",
                        transform=ax.transAxes, va="top", fontsize=8)
                ax.set_title(f"{signal}, S/sqrt(B) = {snr:g}", fontsize=9)
                ax.tick_params(labelsize=9)
                if i == len(signals) - 1:
                    ax.set_xlabel("network output", fontsize=10)
                if j == 0:
                    ax.set_ylabel("fraction of histograms", fontsize=10)
        axes[0, 0].legend(fontsize=8, loc="upper right")
        fig.suptitle(f"{source}: network output on SM-only and SM + signal test histograms", fontsize=12)
        fig.tight_layout()
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source_arguments(parser)
    parser.add_argument("--bins", type=int, default=25, help="bins of the output in [0, 1] (default 25)")
    parser.add_argument("--out", type=Path, help=f"output folder (default experiments/results/{STUDY})")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if args.bins < 2:
        parser.error(f"--bins {args.bins}: give at least 2")
    networks = chosen_networks(args, STUDY)
    rows, points = [], []
    for k, network in enumerate(networks, 1):
        scores, labels = point_scores(network)
        rows += distribution_rows(network, scores, labels, args.bins)
        points.append(point_row(network, scores, labels))
        print(f"{STUDY}: {k}/{len(networks)} {network.signal} S/sqrt(B) = {network.snr:g}: AUC "
              f"{points[-1]['test/auc']:.4f} (run {network.auc:.4f}), median output SM {points[-1]['median_sm']:.3f}, "
              f"SM + signal {points[-1]['median_sm+signal']:.3f}", flush=True)
    out = args.out or ROOT / "experiments" / "results" / STUDY
    table = write_csv(rows, COLUMNS, out / f"{args.source}.csv")
    point_table = write_csv(points, POINT_COLUMNS, out / f"{args.source}_points.csv")
    figure = plot(rows, points, out / f"{args.source}.png", args.source)
    largest = max(abs(p["test/auc"] - p["test/auc_run"]) for p in points)
    log_summary_run(STUDY, f"{STUDY}_summary", [table, point_table, figure],
                    {"points": len(points), "max_auc_difference_to_run": largest},
                    {"dmlhc.summary": STUDY, "dmlhc.source_experiment": args.source}, {"seed": args.seed})
    print(f"{STUDY}: {len(points)} points; AUC from these scores vs the runs' test/auc: largest difference "
          f"{largest:.2g}; table {table}, figure {figure}")
    return 0 if math.isfinite(largest) else 1


if __name__ == "__main__":
    run_study(main)
