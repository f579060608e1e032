"""Study 12 of the paper: the event network's outputs combined over a histogram's events, against the histogram
network and the optimum, on the same ensembles of events.

    python experiments/event_combination.py        # event networks of event_level, histogram networks of fig7
    python experiments/event_combination.py --signals alp,spin2_onshell --snr 0.224,1.118 --ensembles 1000
    python experiments/event_combination.py --events event_level_quick --histograms fig7_quick --snr 0.447,1.118
    python experiments/event_combination.py --replot  # the figure again from the committed table

For every benchmark with an event network (the newest finished run of MLflow experiment ``--events``,
experiments/event_level.py) and a histogram network at each S/sqrt(B) of ``--snr`` (seed ``--seed`` of that point
in the grid ``--histograms``, experiments/grid.py; its B): ``--ensembles`` SM-only ensembles (B + S SM events) and
as many SM + signal ones (B SM + S signal events) are drawn from the test pools without repeats, as Fig. 7 draws
them (neither network saw these events: both were trained on the same samples' train pools, checked). Each
ensemble is scored four ways:

- ``event_sum``: the event network combined, t = sum over its events of log((B + S r(x)) / (B + S)), r(x) = f / (1 -
  f) the likelihood ratio signal / SM that a network trained on balanced classes estimates (the optimal set
  classifier when r is exact: Nachman & Thaler, arXiv:2101.07263);
- ``event_sum_calibrated``: the same with r the likelihood ratio of the network's output measured on the
  validation pools (quantile bins of the output): the network's ranking of events, its magnitudes from data;
- ``optimum``: the same sum with the binned r = q_b / p_b of the train pools (the pseudo-count the histogram
  network's run chose): it is the optimum of Fig. 7, t(h) = sum_b h_b log((B p_b + S q_b) / ((B + S) p_b));
- ``histogram``: the histogram network on the ensembles' (pT, eta) histograms.

It writes ``experiments/results/event_combination/`` (or ``--out``): ``event_combination.csv`` (signal, snr, B, S,
the four AUCs, the histogram network's AUC on its own test set, ensembles, both run ids) and
``event_combination.png`` (AUC against S/sqrt(B) per benchmark, the four side by side), and logs both as
artifacts of a run ``event_combination_summary`` in the experiment of ``--events``. Prints the table.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import ROOT, log_summary_run, newest_runs, run_study, trained_run  # noqa: E402
from transfer import source_networks  # noqa: E402

from dmlhc.data.ensembles import draw_event_indices, n_signal_events, normalise  # noqa: E402
from dmlhc.events.cache import write_csv  # noqa: E402
from dmlhc.optimal import auc, bin_probabilities  # noqa: E402
from dmlhc.predict import trained_config  # noqa: E402

COLUMNS = ("signal", "snr", "n_background", "n_signal", "event_sum", "event_sum_calibrated", "histogram", "optimum",
           "histogram_own_test",
           "ensembles", "event_run", "histogram_run")
#: Params both networks' runs must share, so that the test pools are the same events, unseen by both.
SAME_SAMPLES = ("background.events", "signal.events", "generation.level", "generation.seed", "data.data_seed",
                "data.fractions", "data.cuts.pt_min", "data.cuts.pt_max", "data.cuts.abs_eta_max")
CHUNK = 250  # ensembles drawn at once (CHUNK x (B + S) indices)
PLOTTED = ("signal", "snr", "event_sum", "event_sum_calibrated", "histogram", "optimum")
CALIBRATION_BINS = 100  # quantile bins of the event network's output for its calibrated likelihood ratio


def event_log_ratios(run_id: str) -> tuple[object, dict[str, dict[str, torch.Tensor]]]:
    """The event run's DataModule (its pools) and, for every test-pool event of each sample, log r(x) (float64) two
    ways: ``raw``, the network's logit; ``calibrated``, the likelihood ratio of the network's output itself,
    measured on the validation pools in ``CALIBRATION_BINS`` quantile bins of the logit (a monotone map: the
    network's ranking of events, with the magnitudes the data give it)."""
    datamodule, model = trained_run(run_id)

    def logits(split: str, name: str) -> torch.Tensor:
        x = datamodule.network_inputs(getattr(datamodule.pools[name], split).features)
        with torch.no_grad():
            return torch.cat([model(x[i: i + 65536]).squeeze(-1) for i in range(0, len(x), 65536)]).double()

    names = list(datamodule.pools)
    signal = next(name for name in names if name != "background")
    val = {name: logits("val", name) for name in names}
    edges = torch.quantile(torch.cat(list(val.values())).float(),
                           torch.linspace(0, 1, CALIBRATION_BINS + 1)[1:-1]).double()
    counts = {name: torch.bincount(torch.bucketize(v, edges), minlength=CALIBRATION_BINS) for name, v in val.items()}
    calibration = (bin_probabilities(counts[signal]) / bin_probabilities(counts["background"])).log()
    ratios = {}
    for name in names:
        raw = logits("test", name)
        ratios[name] = {"raw": raw, "calibrated": calibration[torch.bucketize(raw, edges)]}
    return datamodule, ratios


def histogram_network(run_id: str):
    """(config, network in eval mode) of a training run, from its checkpoint."""
    with tempfile.TemporaryDirectory() as folder:
        cfg, checkpoint, _ = trained_config(run_id, Path(folder))
        model = hydra.utils.get_class(cfg.model._target_).load_from_checkpoint(checkpoint, map_location="cpu")
    return cfg, model.eval()


def summed(weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per ensemble (row of pool indices), the sum of the events' ``weights``."""
    return weights[rows].sum(dim=1)


def histograms(bins: torch.Tensor, rows: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Per ensemble, its (pT, eta) bin counts (float32)."""
    counts = torch.zeros(len(rows), n_bins)
    return counts.scatter_add_(1, bins[rows].long(), torch.ones(rows.shape))


def score_point(datamodule, log_r: dict[str, torch.Tensor], signal: str, cfg, net, pseudo_count: float,
                n_background: int, n_signal: int, n_ensembles: int, seed: int) -> dict[str, float]:
    """The four AUCs (module docstring) on ``n_ensembles`` ensembles of each class."""
    background, source = datamodule.pools["background"], datamodule.pools[signal]
    p = bin_probabilities(background.train.bin_counts, pseudo_count)
    q = bin_probabilities(source.train.bin_counts, pseudo_count)
    total = n_background + n_signal

    def mixture(ratio: torch.Tensor) -> torch.Tensor:  # log((B + S r) / (B + S))
        return torch.log((n_background + n_signal * ratio) / total)

    event_w = {way: {name: mixture(log_r[name][way].exp()) for name in ("background", signal)}
               for way in ("raw", "calibrated")}
    binned = mixture(q / p)
    optimum_w = {"background": binned[background.test.bin_index.long()], signal: binned[source.test.bin_index.long()]}
    generator = torch.Generator().manual_seed(seed)
    scores: dict[str, list[torch.Tensor]] = {"event_sum": [], "event_sum_calibrated": [], "optimum": [],
                                             "histogram": []}
    labels = []
    shape = tuple(net.hparams["input_shape"])
    for label in (0, 1):
        for start in range(0, n_ensembles, CHUNK):
            n = min(CHUNK, n_ensembles - start)
            parts = [("background", draw_event_indices(len(background.test.bin_index), n_background + (
                n_signal if label == 0 else 0), n, generator=generator))]
            if label == 1:
                parts.append((signal, draw_event_indices(len(source.test.bin_index), n_signal, n, generator=generator)))
            counts = sum(histograms(datamodule.pools[name].test.bin_index, rows, background.test.n_bins)
                         for name, rows in parts)
            for key, way in (("event_sum", "raw"), ("event_sum_calibrated", "calibrated")):
                scores[key].append(sum(summed(event_w[way][name], rows) for name, rows in parts))
            scores["optimum"].append(sum(summed(optimum_w[name], rows) for name, rows in parts))
            with torch.no_grad():
                x = normalise(counts, cfg.data.normalisation).view(-1, *shape)
                scores["histogram"].append(net(x).squeeze(-1).double())
            labels.append(torch.full((n,), label))
    y = torch.cat(labels)
    return {key: auc(torch.cat(values), y) for key, values in scores.items()}


def check_same_samples(event_run, histogram_run) -> None:
    """Both runs were trained on the same samples, split alike (else the test pools are not unseen by both)."""
    differ = [k for k in SAME_SAMPLES if event_run.data.params.get(k) != histogram_run.data.params.get(k)]
    if differ:
        raise SystemExit("event_combination: the event and histogram networks were trained on different samples ("
                         + ", ".join(f"{k}: {event_run.data.params.get(k)} against {histogram_run.data.params.get(k)}"
                                     for k in differ)
                         + "), so one's test events may be the other's training events; pair an --events experiment "
                           "with a --histograms grid of the same samples (event_level with fig7, event_level_quick "
                           "with fig7_quick)")


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """Per benchmark, AUC against S/sqrt(B): the event network combined, the histogram network, the optimum."""
    from dmlhc.tracking.plots import hep_style, save, snr_axis

    signals = sorted({r["signal"] for r in rows})
    columns = min(5, len(signals))
    n_rows = math.ceil(len(signals) / columns)
    styles = {"event_sum": ("-o", "event network summed"), "event_sum_calibrated": ("-^", "... calibrated"),
              "histogram": ("-s", "histogram network"),
              "optimum": ("k--", "optimum (binned likelihood ratio)")}
    with hep_style():
        fig, axes = plt.subplots(n_rows, columns, figsize=(4 * columns, 3.6 * n_rows), sharex=True, sharey=True,
                                 squeeze=False)
        for ax, signal in zip(axes.flat, signals):
            mine = sorted((r for r in rows if r["signal"] == signal), key=lambda r: r["snr"])
            for key, (style, label) in styles.items():
                ax.plot([r["snr"] for r in mine], [r[key] for r in mine], style, ms=4, lw=1.2, label=label)
            snr_axis(ax, [r["snr"] for r in rows], label=None)
            ax.set_title(signal, fontsize=11)
            ax.tick_params(labelsize=10)
        for ax in axes.flat[len(signals):]:
            ax.set_visible(False)
        fig.supxlabel(r"$S/\sqrt{B}$", fontsize=13, y=0.075)
        fig.supylabel("AUC on the same ensembles", fontsize=13)
        fig.suptitle(title, fontsize=12)
        fig.tight_layout(rect=(0, 0.09, 1, 1))
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=10,
                   bbox_to_anchor=(0.5, 0.0))
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="event_level", help="MLflow experiment of the event networks")
    parser.add_argument("--histograms", default="fig7", help="MLflow experiment (a grid) of the histogram networks")
    parser.add_argument("--snr", default="0.112,0.224,0.447,0.671,1.118,2.236", help="S/sqrt(B) points of the grid")
    parser.add_argument("--signals", help="comma-separated benchmarks (default: every one with both networks)")
    parser.add_argument("--seed", type=int, default=1, help="the histogram network of this seed at each point")
    parser.add_argument("--ensembles", type=int, default=3000, help="ensembles of each class per point")
    parser.add_argument("--out", type=Path, help="output folder (default experiments/results/event_combination)")
    parser.add_argument("--replot", action="store_true", help="only draw the figure again from the table in --out")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "experiments" / "results" / "event_combination"
    title = f"event networks ({args.events}) summed vs histogram networks ({args.histograms})"
    if args.replot:
        with open(out / "event_combination.csv") as table:
            rows = [{k: v if k == "signal" else float(v) for k, v in r.items() if k in PLOTTED}
                    for r in csv.DictReader(table)]
        print(f"event_combination: figure {plot(rows, out / 'event_combination.png', title)}")
        return 0
    snrs = [float(s) for s in args.snr.split(",")]
    chosen = set(args.signals.split(",")) if args.signals else None
    import mlflow

    from dmlhc.tracking.store import resolve_tracking_uri

    client = mlflow.MlflowClient(resolve_tracking_uri())
    networks = {(n.signal, round(n.snr, 9)): n for n in source_networks(args.histograms, args.seed)}
    rows = []
    for event_run in newest_runs(args.events, ("signal",)):
        signal = event_run.data.params["signal"]
        points = [(snr, networks.get((signal, round(snr, 9)))) for snr in snrs]
        if (chosen is not None and signal not in chosen) or not any(n for _, n in points):
            continue
        datamodule, log_r = event_log_ratios(event_run.info.run_id)
        for snr, network in points:
            if network is None:
                print(f"event_combination: {signal} has no histogram network at S/sqrt(B) = {snr:g} in "
                      f"{args.histograms!r}; skipped", file=sys.stderr)
                continue
            histogram_run = client.get_run(network.run_id)
            check_same_samples(event_run, histogram_run)
            cfg, net = histogram_network(network.run_id)
            n_background = int(histogram_run.data.params["n_background"])
            n_signal = n_signal_events(n_background, snr)
            pseudo_count = histogram_run.data.metrics["test/auc_optimal_pseudo_count"]
            aucs = score_point(datamodule, log_r, signal, cfg, net, pseudo_count, n_background, n_signal,
                               args.ensembles, seed=len(rows))
            rows.append({"signal": signal, "snr": snr, "n_background": n_background, "n_signal": n_signal, **aucs,
                         "histogram_own_test": network.auc, "ensembles": 2 * args.ensembles,
                         "event_run": event_run.info.run_id, "histogram_run": network.run_id})
            print(f"event_combination: {signal} S/sqrt(B) = {snr:g}: event network summed {aucs['event_sum']:.4f} "
                  f"(calibrated {aucs['event_sum_calibrated']:.4f}), histogram network {aucs['histogram']:.4f}, "
                  f"optimum {aucs['optimum']:.4f}", flush=True)
    if not rows:
        raise SystemExit(f"event_combination: no benchmark has an event network in {args.events!r} and a histogram "
                         f"network in {args.histograms!r} at S/sqrt(B) = {args.snr}")
    table = write_csv(rows, COLUMNS, out / "event_combination.csv")
    figure = plot(rows, out / "event_combination.png", title)
    gaps = {key: max(r["optimum"] - r[key] for r in rows) for key in ("event_sum", "event_sum_calibrated", "histogram")}
    log_summary_run(args.events, "event_combination_summary", [table, figure],
                    {f"max_gap_{key}": value for key, value in gaps.items()} | {"points": len(rows)},
                    {"dmlhc.summary": "event_combination"},
                    {"histograms": args.histograms, "seed": args.seed, "ensembles": args.ensembles})
    print(f"event_combination: {len(rows)} points; largest optimum - AUC: event network summed "
          f"{gaps['event_sum']:.4f} (calibrated {gaps['event_sum_calibrated']:.4f}), histogram network "
          f"{gaps['histogram']:.4f}; table {table}, figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
