"""Study 2 of the paper (its Fig. 5): the event-by-event DNN's ROC curve and AUC for every benchmark.

    python experiments/event_level.py                  # trains (python train.py experiment=event_level -m), collects
    python experiments/event_level.py --collect-only
    python experiments/event_level.py --name event_level_quick   # minutes (the tests)

Training is ``python train.py experiment=NAME -m``: one event network (``model=event architecture=event_dnn``) per
benchmark, single events (pT, eta, phi) of the benchmark against SM events. Collection takes, with MLflow's client,
the newest finished run of every benchmark in experiment NAME, loads its checkpoint and
scores its own test events again for the ROC curve, and writes ``experiments/results/NAME/`` (or --out):

- ``event_level.csv``: signal, test/auc (recomputed from the scores; equal to the run's), test/auc_run,
  test/auc_optimal (the per-event likelihood ratio of the (pT, eta) bins, its bootstrap spread), epochs, run_id;
- ``event_level.png``: the ROC curves of every benchmark in one panel (the paper's Fig. 5), AUCs in the legend;

and logs both as artifacts of a run ``NAME_summary``. Prints the table.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import log_summary_run, newest_runs, run_study, study_arguments, train, trained_run  # noqa: E402
from torchmetrics.functional.classification import binary_auroc, binary_roc  # noqa: E402

from dmlhc.events.cache import write_csv  # noqa: E402

COLUMNS = ("signal", "test/auc", "test/auc_run", "test/auc_optimal", "test/auc_optimal_std", "test_events", "epochs",
           "run_id")


def scores_of(run) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's network's probabilities of signal on its own test events, and their labels."""
    datamodule, model = trained_run(run.info.run_id)
    test = datamodule.sets["test"]
    with torch.no_grad():
        scores = torch.cat([model.scores(model(test.x[i: i + 65536])) for i in range(0, len(test.x), 65536)])
    return scores, test.y.long()


def plot(curves: dict[str, tuple[torch.Tensor, torch.Tensor, float]], path: Path, title: str) -> Path:
    """Every benchmark's ROC curve (signal efficiency against SM efficiency), the AUC in the legend."""
    from dmlhc.tracking.plots import hep_label, hep_style, save

    with hep_style():
        fig, ax = plt.subplots(figsize=(8, 7.5))
        colours = plt.get_cmap("tab10")
        for k, (signal, (fpr, tpr, auc)) in enumerate(curves.items()):
            ax.plot(fpr.numpy(), tpr.numpy(), color=colours(k % 10), lw=1.5, label=f"{signal} ({auc:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("SM events accepted (false positive rate)")
        ax.set_ylabel("signal events accepted (true positive rate)")
        ax.legend(fontsize=11, loc="lower right", title=title, title_fontsize=11)
        hep_label(ax)
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    args, overrides = study_arguments(__doc__, "event_level", argv)
    if not args.collect_only:
        train(args.name, overrides)
    rows, curves = [], {}
    for run in newest_runs(args.name, ("signal",)):
        scores, labels = scores_of(run)
        signal, metrics = run.data.params["signal"], run.data.metrics
        auc = float(binary_auroc(scores, labels))
        fpr, tpr, _ = binary_roc(scores, labels)  # every threshold, then 2000 of them for the figure
        keep = torch.linspace(0, len(fpr) - 1, min(len(fpr), 2000)).long()
        curves[signal] = (fpr[keep], tpr[keep], auc)
        rows.append({"signal": signal, "test/auc": auc, "test/auc_run": metrics["test/auc"],
                     "test/auc_optimal": metrics.get("test/auc_optimal", float("nan")),
                     "test/auc_optimal_std": metrics.get("test/auc_optimal_std", float("nan")),
                     "test_events": len(labels), "epochs": metrics.get("epochs", float("nan")),
                     "run_id": run.info.run_id})
        print(f"event_level: {signal}: AUC {auc:.4f} (run {metrics['test/auc']:.4f}), per-event optimum "
              f"{rows[-1]['test/auc_optimal']:.4f}", flush=True)
    if not rows:
        raise SystemExit(f"event_level: experiment {args.name!r} has no finished run with test/auc")
    out = args.out
    table = write_csv(rows, COLUMNS, out / "event_level.csv")
    figure = plot(curves, out / "event_level.png", f"{args.name}: event-by-event DNN (AUC)")
    log_summary_run(args.name, f"{args.name}_summary", [table, figure],
                    {"max_gap": max(r["test/auc_optimal"] - r["test/auc"] for r in rows), "benchmarks": len(rows)},
                    {"dmlhc.summary": "event_level"})
    print(f"event_level: {len(rows)} benchmarks; table {table}, figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
