"""Study 13 of the paper (its Appendix D, Figs. 26-29): the histogram network and the optimum as the choices that
make the histograms change, one at a time, from the paper's default (parton level, 30 x 30 linear bins,
pT > 130 GeV, B = 50k).

    python experiments/appendix.py                          # every scan: trains what MLflow lacks, then collects
    python experiments/appendix.py --scans pt_min,pt_scale  # some scans
    python experiments/appendix.py --collect-only
    python experiments/appendix.py --name appendix_quick    # minutes (the tests)
    python experiments/appendix.py -- trainer=gpu           # extra train.py overrides after --

The scans and their values are the ``study`` key of conf/experiment/NAME.yaml (train.py ignores it):

- ``level``: parton level against detector level (Pythia's shower + the jet smearing of ``generation.detector``),
  on samples of ``level.background_events`` / ``level.signal_events`` at B = ``level.n_background`` (shower-level
  samples of the paper's size take hours on 2 cores; the AUC depends on S/sqrt(B) alone for B >= 1k, study 6);
- ``pt_scale``: linear against logarithmic pT bins (``binning=log``);
- ``bins``: N x N bins for every N of ``bins``;
- ``pt_min``: the jet pT cut. The paper holds the luminosity and the couplings fixed, so B and S shrink with the
  cut by the samples' own efficiencies: B(c) = B eps_SM(c), S(c) = S eps_signal(c), eps being the fraction of the
  selected events (pT > 130 GeV) above c; the S/sqrt(B) points are those at 130 GeV.

Every job is ONE parametrised network (experiment=parametrised) for the study's S/sqrt(B) points (``grid.snr``,
the paper's 0.223 and 1.12) of one benchmark, a ``python train.py experiment=NAME signal=... <the variant>`` run
in the MLflow experiment NAME; a job whose run is there already (found by the settings that define it) is not run
again, so a rerun resumes and ``--collect-only`` collects. The default job is shared by the scans that contain
it. Collection writes ``experiments/results/NAME/`` (or ``--out``):

- ``appendix.csv``: scan, variant, signal, snr (at 130 GeV), snr_job (the job's point), n_background, n_signal,
  test/auc, test/auc_optimal (+- its bootstrap spread), gap (optimum - network), epochs, run_id;
- ``appendix.png``: one row per scan, one column per S/sqrt(B): the AUC of every benchmark against the scanned
  setting, network solid, optimum dashed;

and logs both as artifacts of a run ``NAME_summary``. Prints the table.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    ROOT,
    composed,
    log_summary_run,
    newest_runs,
    print_table,
    run_study,
    stop_if_failed,
    study_arguments,
)
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from dmlhc.data.ensembles import n_signal_events  # noqa: E402
from dmlhc.data.pools import Cuts  # noqa: E402
from dmlhc.data.samples import load  # noqa: E402
from dmlhc.events.cache import write_csv  # noqa: E402

SCANS = ("level", "pt_scale", "bins", "pt_min")
#: The settings that tell the jobs apart: a run is a job's when its params hold these values.
KEY = ("signal.name", "binning.n_pt", "binning.n_eta", "binning.pt_scale", "data.cuts.pt_min", "generation.level",
       "background.events", "signal.events", "background.n_background", "grid.snr")
COLUMNS = ("scan", "variant", "signal", "snr", "snr_job", "n_background", "n_signal", "test/auc", "test/auc_optimal",
           "test/auc_optimal_std", "gap", "epochs", "run_id")


@dataclass(frozen=True)
class Job:
    """One parametrised network: a benchmark under train.py ``overrides``, at ``snrs`` (the points at 130 GeV:
    ``nominal``)."""

    signal: str
    overrides: tuple[str, ...]
    snrs: tuple[float, ...]
    nominal: tuple[float, ...]


@dataclass(frozen=True)
class Variant:
    """A scan's setting (``value``, as the figure's x) and its job."""

    scan: str
    value: str
    job: Job


def key_of(cfg: DictConfig) -> tuple[str, ...]:
    """The params of ``KEY`` as a run of ``cfg`` records them."""
    values = {k: OmegaConf.select(cfg, k) for k in KEY} | {"grid.snr": ",".join(f"{s:g}" for s in cfg.grid.snr)}
    return tuple(str(values[k]) for k in KEY)


def cut_efficiencies(cfg: DictConfig, cuts: Sequence[float]) -> dict[str, dict[float, float]]:
    """{'background'/'signal': {c: fraction of the selected events (cfg's cuts) with leading-jet pT >= c}}."""
    base = Cuts(**cfg.data.cuts)
    fractions = {}
    for role in ("background", "signal"):
        jet = load(OmegaConf.to_container(cfg[role], resolve=True), OmegaConf.to_container(cfg.generation),
                   cfg.paths.samples).leading_jet()
        pt = np.asarray(jet["pt"])[base.mask(np.asarray(jet["pt"]), np.asarray(jet["eta"]))]
        fractions[role] = {c: float(np.mean(pt >= c)) for c in cuts}
    return fractions


def variants(name: str, scans: Sequence[str]) -> list[Variant]:
    """Every (scan, value) of ``scans`` in conf/experiment/NAME.yaml's ``study`` key, for each benchmark."""
    cfg = composed(name, [])
    study = cfg.study
    snrs = tuple(float(s) for s in cfg.grid.snr)
    out: list[Variant] = []
    for scan in scans:
        for signal in study.signals:
            out += scan_variants(name, cfg, scan, signal, snrs)
    order = {value: k for k, value in enumerate(dict.fromkeys(v.value for v in out))}
    return sorted(out, key=lambda v: (scans.index(v.scan), order[v.value]))  # each setting for every benchmark


def scan_variants(name: str, cfg: DictConfig, scan: str, signal: str, snrs: tuple[float, ...]) -> list[Variant]:
    """The settings of one scan for one benchmark (module docstring)."""
    study = cfg.study

    def job(overrides: Sequence[str], points: Sequence[float] = snrs) -> Job:
        return Job(signal, (f"signal={signal}", *overrides), tuple(points), snrs)

    if scan == "level":
        sizes = (f"background.events={study.level.background_events}", f"signal.events={study.level.signal_events}",
                 f"background.n_background={study.level.n_background}")
        return [Variant(scan, "parton" if level == "parton" else "detector", job((*sizes, f"generation.level={level}")))
                for level in ("parton", "shower")]
    if scan == "pt_scale":
        return [Variant(scan, scale, job(() if scale == cfg.binning.pt_scale else (f"binning={scale}",)))
                for scale in study.pt_scale]
    if scan == "bins":
        return [Variant(scan, f"{n}", job(() if n == cfg.binning.n_pt == cfg.binning.n_eta else
                                          (f"binning.n_pt={n}", f"binning.n_eta={n}"))) for n in study.bins]
    if scan != "pt_min":
        raise SystemExit(f"appendix: no scan {scan!r}; choose from {', '.join(SCANS)}")
    efficiency = cut_efficiencies(composed(name, [f"signal={signal}"]), study.pt_min)
    b0, out = int(cfg.background.n_background), []
    for cut in study.pt_min:
        if cut == cfg.data.cuts.pt_min:
            out.append(Variant(scan, f"{cut:g}", job(())))
            continue
        n_background = round(b0 * efficiency["background"][cut])
        points = [float(f"{n_signal_events(b0, s) * efficiency['signal'][cut] / math.sqrt(n_background):.4g}")
                  for s in snrs]
        out.append(Variant(scan, f"{cut:g}", job((f"data.cuts.pt_min={cut}", f"background.n_background={n_background}",
                                                  "grid.snr=[" + ",".join(f"{p:g}" for p in points) + "]"), points)))
    return out


def run_jobs(name: str, keys: Mapping[Job, tuple[str, ...]], done: Mapping[tuple[str, ...], object],
             extra: Sequence[str]) -> None:
    """``python train.py experiment=NAME <job>`` for every job (of ``keys``: job -> its ``KEY`` params) without a
    finished run, in order."""
    todo = [job for job, key in keys.items() if key not in done]
    for k, job in enumerate(todo, 1):
        command = [sys.executable, str(ROOT / "train.py"), f"experiment={name}", *job.overrides, *extra]
        print(f"appendix: job {k} of {len(todo)}:", " ".join(command[2:]), flush=True)
        stop_if_failed(command, subprocess.run(command).returncode,
                       "MLflow keeps the jobs that finished, a rerun runs the rest")


def finished(name: str) -> dict[tuple[str, ...], object]:
    """The newest finished parametrised run of every job (its ``KEY`` params) in experiment ``name``."""
    runs = newest_runs(name, KEY, "tags.`dmlhc.parametrised` = 'true'", needs="test/auc/")
    return {tuple(run.data.params[k] for k in KEY): run for run in runs}


def collect(chosen: Sequence[Variant], keys: Mapping[Job, tuple[str, ...]],
            done: Mapping[tuple[str, ...], object]) -> list[dict]:
    """One row per (variant, S/sqrt(B)) whose job has a run."""
    rows = []
    for variant in chosen:
        job = variant.job
        run = done.get(keys[job])
        if run is None:
            continue
        metrics, n_background = run.data.metrics, int(run.data.params["background.n_background"])
        for snr, nominal in zip(job.snrs, job.nominal):
            auc, optimum, spread = (metrics[f"test/{m}/snr_{snr:g}"] for m in ("auc", "auc_optimal", "auc_optimal_std"))
            rows.append({"scan": variant.scan, "variant": variant.value, "signal": job.signal, "snr": nominal,
                         "snr_job": snr, "n_background": n_background,
                         "n_signal": n_signal_events(n_background, snr), "test/auc": auc,
                         "test/auc_optimal": optimum, "test/auc_optimal_std": spread,
                         "gap": optimum - auc, "epochs": metrics.get("epochs", math.nan), "run_id": run.info.run_id})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """One row of panels per scan, one column per S/sqrt(B): AUC against the setting, network solid, optimum
    dashed, one colour per benchmark."""
    from dmlhc.tracking.plots import hep_style, save

    scans = [s for s in SCANS if any(r["scan"] == s for r in rows)]
    snrs = sorted({r["snr"] for r in rows})
    signals = sorted({r["signal"] for r in rows})
    colours = plt.get_cmap("tab10")
    labels = {"level": "simulation level", "pt_scale": "pT bins", "bins": "bins per axis N (N x N)",
              "pt_min": r"jet $p_T$ cut (GeV)"}
    with hep_style():
        fig, axes = plt.subplots(len(scans), len(snrs), figsize=(5.5 * len(snrs), 3.6 * len(scans)), squeeze=False)
        for i, scan in enumerate(scans):
            for j, snr in enumerate(snrs):
                ax = axes[i, j]
                for k, signal in enumerate(signals):
                    mine = [r for r in rows if r["scan"] == scan and r["snr"] == snr and r["signal"] == signal]
                    numeric = scan in ("bins", "pt_min")  # else categories, in the config's order
                    x = [float(r["variant"]) if numeric else r["variant"] for r in mine]
                    ax.plot(x, [r["test/auc"] for r in mine], "-o", ms=4, color=colours(k), label=signal)
                    ax.plot(x, [r["test/auc_optimal"] for r in mine], "--", lw=1, color=colours(k))
                ax.set_xlabel(labels[scan], fontsize=12)
                ax.set_title(rf"{scan}, $S/\sqrt{{B}}$ = {snr:g} (at 130 GeV)", fontsize=12)
                ax.tick_params(labelsize=10)
                if j == 0:
                    ax.set_ylabel("test AUC", fontsize=12)
        axes[0, 0].plot([], [], "k-", label="network")
        axes[0, 0].plot([], [], "k--", lw=1, label="optimum")
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.suptitle(title, fontsize=13)
        fig.tight_layout(rect=(0, 0.05, 1, 0.98))
        fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=10, bbox_to_anchor=(0.5, 0.0))
        return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    def more(parser):
        parser.add_argument("--scans", default=",".join(SCANS), help=f"comma-separated, of {', '.join(SCANS)}")

    args, extra = study_arguments(__doc__, "appendix", argv, more)
    chosen = variants(args.name, [s for s in args.scans.split(",") if s])
    jobs = list(dict.fromkeys(v.job for v in chosen))  # the default job once
    keys = {job: key_of(composed(args.name, [*job.overrides, *extra])) for job in jobs}  # each config composed once
    if not args.collect_only:
        try:
            done = finished(args.name)
        except SystemExit:
            done = {}  # a first run: no experiment yet
        run_jobs(args.name, keys, done, extra)
    rows = collect(chosen, keys, finished(args.name))
    if not rows:
        raise SystemExit(f"appendix: experiment {args.name!r} has no finished run of these scans")
    table = write_csv(rows, COLUMNS, args.out / "appendix.csv", exact=("snr", "snr_job"))
    figure = plot(rows, args.out / "appendix.png", f"{args.name}: the histogram network as its inputs change")
    log_summary_run(args.name, f"{args.name}_summary", [table, figure],
                    {"max_gap": max(r["gap"] for r in rows), "rows": len(rows)}, {"dmlhc.summary": "appendix"})
    print_table(rows, [("scan", "scan", "8s"), ("variant", "variant", "9s"), ("signal", "signal", "15s"),
                       ("snr", "snr", "6.3f"), ("job snr", "snr_job", "7.4g"), ("B", "n_background", "6d"),
                       ("S", "n_signal", "5d"), ("network", "test/auc", "7.4f"),
                       ("optimum", "test/auc_optimal", "7.4f")])
    largest = max(r["gap"] for r in rows)
    print(f"appendix: {len(rows)} rows of {len(jobs)} jobs; largest gap to the optimum {largest:.4f}; table {table}, "
          f"figure {figure}")
    return 0


if __name__ == "__main__":
    run_study(main)
