"""Study 11 of the paper (its Figs. 16 and 17): which benchmark is it? One 8-class network per S/sqrt(B).

    python experiments/multiclass.py                   # trains (python train.py experiment=multiclass -m), collects
    python experiments/multiclass.py --collect-only
    python experiments/multiclass.py --name multiclass_quick        # minutes (the tests)

Training is ``python train.py experiment=NAME -m``: one multiclass network (SM only and SM + each of the
benchmarks of ``data.benchmarks``) per S/sqrt(B) of the config's sweep. Collection takes, with MLflow's client, the
newest finished run of every S/sqrt(B) of experiment NAME, loads its checkpoint, scores its own test histograms and
writes ``experiments/results/NAME/`` (or --out):

- ``multiclass.csv``: per S/sqrt(B) and true class, the one-vs-rest AUC (recomputed; equal to the run's
  ``test/auc_classK``) and the fraction of the class's test histograms predicted as each class (the top probability,
  if above 2/n_classes, as the paper counts them) or as none, run_id;
- ``auc_vs_snr.png``: the one-vs-rest AUC of every class against S/sqrt(B);
- ``prediction_frequency.png``: per S/sqrt(B), the true class x predicted class map of those fractions;

and logs them as artifacts of a run ``NAME_summary``. Prints the table.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import log_summary_run, newest_runs, run_study, study_arguments, train, trained_run  # noqa: E402
from torchmetrics.functional.classification import binary_auroc  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402
from dmlhc.tracking.plots import class_names, prediction_frequency  # noqa: E402, snr_axis


def point_rows(run) -> tuple[list[dict], list[str]]:
    """The rows of one run (one per true class) and the class names."""
    datamodule, model = trained_run(run.info.run_id)
    test = datamodule.sets["test"]
    with torch.no_grad():
        probabilities = torch.cat([model.scores(model(test.x[i: i + 4096])) for i in range(0, len(test.x), 4096)])
    labels = test.y.long()
    names = class_names(datamodule.task.name, datamodule.task.classes)
    frequency = prediction_frequency(labels.numpy(), probabilities.numpy())
    rows = []
    for k, name in enumerate(names):
        row = {"snr": float(run.data.params["snr"]), "class": name,
               "auc": float(binary_auroc(probabilities[:, k], (labels == k).long())),
               "auc_run": run.data.metrics.get(f"test/auc_class{k}", math.nan)}
        row |= {f"predicted {other}": float(frequency[k, j]) for j, other in enumerate(names)}
        row |= {"predicted none": float(frequency[k, -1]), "run_id": run.info.run_id}
        rows.append(row)
    return rows, names


def plot_auc(rows: list[dict], names: list[str], path: Path) -> Path:
    """One-vs-rest AUC of every class against S/sqrt(B)."""
    from dmlhc.tracking.plots import hep_label, hep_style, save, snr_axis

    with hep_style():
        fig, ax = plt.subplots(figsize=(9, 6.5))
        colours = plt.get_cmap("tab10")
        for k, name in enumerate(names):
            mine = [r for r in rows if r["class"] == name]
            ax.plot([r["snr"] for r in mine], [r["auc"] for r in mine], "-o", ms=4, color=colours(k % 10), label=name)
        snr_axis(ax, [r["snr"] for r in rows])
        ax.set_ylabel("one-vs-rest test AUC")
        ax.set_ylim(0.45, 1.01)
        ax.legend(fontsize=9, loc="lower right", title="true class", title_fontsize=10)
        hep_label(ax)
        return save(fig, path)


def plot_frequency(rows: list[dict], names: list[str], path: Path) -> Path:
    """Per S/sqrt(B), true class (rows) x predicted class (columns, then none): the fraction of test histograms."""
    from dmlhc.tracking.plots import hep_style, save

    snrs = sorted({r["snr"] for r in rows})
    columns = [*names, "none"]
    short = [n.replace("SM + ", "+") for n in columns]
    with hep_style():
        n_columns = min(3, len(snrs))
        n_rows = math.ceil(len(snrs) / n_columns)
        fig, axes = plt.subplots(n_rows, n_columns, figsize=(6.2 * n_columns, 6 * n_rows), squeeze=False)
        for ax in axes.flat[len(snrs):]:
            ax.set_visible(False)
        for ax, snr in zip(axes.flat, snrs):
            matrix = np.array([[r[f"predicted {c}"] for c in columns] for n in names
                               for r in rows if r["snr"] == snr and r["class"] == n])
            ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
            for (i, j), value in np.ndenumerate(matrix):
                if value >= 0.005:
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if value > 0.6 else "black")
            ax.set_xticks(range(len(columns)), short, rotation=90, fontsize=8)
            ax.set_yticks(range(len(names)), [n.replace("SM + ", "+") for n in names], fontsize=8)
            ax.tick_params(which="minor", left=False, right=False, top=False, bottom=False)
            ax.set_xlabel("predicted (top probability > 2/n)", fontsize=10)
            ax.set_title(f"S/sqrt(B) = {snr:g}", fontsize=11)
        for ax in axes[:, 0]:
            ax.set_ylabel("true class", fontsize=10)
        fig.tight_layout()
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    args, overrides = study_arguments(__doc__, "multiclass", argv)
    if not args.collect_only:
        train(args.name, overrides)
    rows: list[dict] = []
    names: list[str] = []
    for run in newest_runs(args.name, ("snr",), "params.task = 'multiclass'"):
        point, names = point_rows(run)
        rows += point
        print(f"multiclass: S/sqrt(B) = {point[0]['snr']:g}: one-vs-rest AUC "
              + ", ".join(f"{r['class']} {r['auc']:.3f}" for r in point), flush=True)
    if not rows:
        raise SystemExit(f"multiclass: experiment {args.name!r} has no finished multiclass run")
    out = args.out
    columns = ("snr", "class", "auc", "auc_run", *(f"predicted {n}" for n in [*names, "none"]), "run_id")
    table = write_csv(rows, columns, out / "multiclass.csv")
    figures = [plot_auc(rows, names, out / "auc_vs_snr.png"),
               plot_frequency(rows, names, out / "prediction_frequency.png")]
    correct = {r["snr"]: 0.0 for r in rows}
    for r in rows:
        correct[r["snr"]] += r[f"predicted {r['class']}"] / len(names)
    log_summary_run(args.name, f"{args.name}_summary", [table, *figures],
                    {f"correct_snr{snr:g}": value for snr, value in correct.items()}, {"dmlhc.summary": "multiclass"})
    print("multiclass: share of test histograms given to their true class (mean over classes): "
          + ", ".join(f"{value:.3f} at S/sqrt(B) = {snr:g}" for snr, value in correct.items()) + f"; table {table}")
    return 0


if __name__ == "__main__":
    run_study(main)
