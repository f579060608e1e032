"""The ``dmlhc`` command line: ``dmlhc generate``, ``dmlhc plot-kinematics``, ``dmlhc check-events``,
``dmlhc reach`` and ``dmlhc predict``."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

from dmlhc.errors import CONFIG_ERROR_EXIT, ConfigError, reported_as_exit_codes
from dmlhc.events.benchmarks import BENCHMARKS, custom_point, get_benchmark
from dmlhc.events.cache import check_writable, write_json
from dmlhc.events.delphes import read_delphes
from dmlhc.events.detector import JetResponse
from dmlhc.events.generate import LEVELS, GenerationSpec, check_output_path, generate

PAPER_SM_SIGMA_PB = 53.6  # MadGraph LO + Pythia, 14 TeV, same generation cuts (docs/method.md)


class _Parser(argparse.ArgumentParser):
    """A bad command line is a configuration error: usage, then one ``dmlhc:`` line and exit 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"dmlhc: configuration error: {self.prog}: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(CONFIG_ERROR_EXIT)


def _add_sample_options(parser: argparse.ArgumentParser, default_events: int | None,
                        events_help: str = "events per sample") -> None:
    parser.add_argument("--events", type=int, default=default_events, help=events_help)
    parser.add_argument("--level", choices=LEVELS, default="parton", help="parton, shower or hadron level")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--no-detector", action="store_true", help="no jet smearing at shower/hadron level")
    parser.add_argument("--cache", type=Path, default=None, help="sample cache (default $DMLHC_CACHE or data/samples)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _spec(args, benchmark, events: int | None = None) -> GenerationSpec:
    return GenerationSpec(benchmark, args.events if events is None else events, args.level, args.seed,
                          JetResponse(enabled=not args.no_detector))


def cmd_generate(args) -> int:
    custom = (args.spin, args.mediator_mass, args.dm_mass)
    if args.benchmark and any(v is not None for v in custom):
        raise ConfigError("give either --benchmark or --spin/--mediator-mass/--dm-mass, not both")
    if args.benchmark:
        benchmark = get_benchmark(args.benchmark)
    elif all(v is not None for v in custom):
        benchmark = custom_point(*custom)
    else:
        raise ConfigError("give --benchmark NAME, or all of --spin, --mediator-mass and --dm-mass")
    path = generate(_spec(args, benchmark), out=args.out, workers=args.workers, cache=args.cache,
                    show_progress=not args.quiet)
    meta = read_delphes(path).metadata
    sigma, err = meta["sigma_after_cuts_pb"], meta["sigma_after_cuts_err_pb"]
    q = meta["invisible_mass_quantiles_gev"]
    quantiles = " / ".join(f"{q[k]:.4g}" for k in ("min", "q10", "median", "q90", "max"))
    print(f"{benchmark.describe()}: {meta['n_events']} events ({meta['n_accepted']} accepted of "
          f"{meta['n_tried']} tried); invisible mass min / 10% / median / 90% / max = {quantiles} GeV",
          file=sys.stderr)
    if benchmark.framework == "sm":
        print(f"SM cross section after the generation cuts: {sigma:.2f} +- {err:.2f} pb "
              f"(paper, MadGraph LO: {PAPER_SM_SIGMA_PB} pb; ratio {sigma / PAPER_SM_SIGMA_PB:.3f})", file=sys.stderr)
    else:
        print(f"cross section after cuts: {sigma:.4g} pb ({meta['cross_section_note']})", file=sys.stderr)
    print(path)
    return 0


def cmd_plot_kinematics(args) -> int:
    from dmlhc.events.kinematics import plot_kinematics

    names = args.benchmarks or [n for n in BENCHMARKS if n != "sm"]
    specs = {name: _spec(args, get_benchmark(name)) for name in ["sm", *names]}  # every name checked first
    check_writable(args.out_dir, "--out-dir", "give a folder you can write")
    samples = {}
    for name, spec in specs.items():
        path = generate(spec, workers=args.workers, cache=args.cache, show_progress=not args.quiet)
        samples[name] = read_delphes(path)
    for path in plot_kinematics(samples, args.out_dir, title=f"{args.level} level, {args.events} events"):
        print(path)
    return 0


def cmd_check_events(args) -> int:
    for path in args.files:  # read as training reads them: what is dropped is logged, an unusable file fails
        sample = read_delphes(path)
        print(f"{path}: {len(sample)} of {sample.metadata['n_events_read']} events kept")
    return 0


def cmd_reach(args) -> int:
    from dmlhc import reach  # torch: only for this command

    xsecs = reach.parse_positive_list(args.xsec_pb, "--xsec-pb")
    lumis = reach.parse_positive_list(args.lumi_ifb, "--lumi-ifb")
    scale = reach.PAPER_BACKGROUND_SCALE if args.paper_background else reach.check_scale(args.background_scale)
    pseudo_count = reach.DEFAULT_PSEUDO_COUNT if args.pseudo_count is None else args.pseudo_count
    if not (math.isfinite(pseudo_count) and pseudo_count >= 0):
        raise ConfigError(f"--pseudo-count {pseudo_count}: give a finite number >= 0 (default "
                          f"{reach.DEFAULT_PSEUDO_COUNT})")
    signal = get_benchmark(args.signal)
    if signal.framework == "sm":
        raise ConfigError(f"--signal {args.signal}: give a dark-matter benchmark, one of "
                          f"{', '.join(n for n in BENCHMARKS if n != 'sm')}")
    if args.csv is not None:
        check_output_path(args.csv)
    events = {"sm": reach.DEFAULT_BACKGROUND_EVENTS if args.background_events is None else args.background_events,
              args.signal: reach.DEFAULT_SIGNAL_EVENTS if args.events is None else args.events}
    benchmarks = {"sm": get_benchmark("sm"), args.signal: signal}
    selected = {name: reach.select(read_delphes(generate(_spec(args, benchmark, events[name]), workers=args.workers,
                                                         cache=args.cache, show_progress=not args.quiet)), name)
                for name, benchmark in benchmarks.items()}
    rows = reach.reach_rows(selected["sm"], selected[args.signal], xsecs, lumis, background_scale=scale,
                            pseudo_count=pseudo_count)
    for line in reach.describe_inputs(selected["sm"], selected[args.signal], level=args.level, seed=args.seed,
                                      background_scale=scale, pseudo_count=pseudo_count):
        print(f"# {line}")
    print(reach.format_table(rows))
    if args.csv is not None:
        print(f"# written to {reach.write_csv(rows, args.csv)}")
    return 0


def cmd_predict(args) -> int:
    from dmlhc import predict  # torch, Lightning: only for this command

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # two small files; bars hide the report
    if args.json is not None:
        check_output_path(args.json)
    n_experiments = (predict.DEFAULT_PSEUDO_EXPERIMENTS if args.pseudo_experiments is None
                     else args.pseudo_experiments)
    report = predict.predict(args.events, args.run, n_experiments=n_experiments, seed=args.seed,
                             tracking_uri=args.tracking_uri)
    print(predict.format_report(report))
    if args.json is not None:
        write_json(args.json, report)
        print(f"# written to {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dmlhc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate a sample (cached) and print its path")
    gen.add_argument("--benchmark", help=f"one of {', '.join(BENCHMARKS)}")
    gen.add_argument("--spin", type=int, choices=(0, 1, 2), help="mediator spin of a point of your own")
    gen.add_argument("--mediator-mass", type=float, help="M_Y in GeV")
    gen.add_argument("--dm-mass", type=float, help="m_chi in GeV")
    gen.add_argument("--out", type=Path, help="also copy the file here")
    _add_sample_options(gen, default_events=100_000)
    gen.set_defaults(func=cmd_generate)

    kin = sub.add_parser("plot-kinematics", help="PNGs of pT, eta, phi of each benchmark against the SM")
    kin.add_argument("--benchmarks", nargs="*", help="default: all")
    kin.add_argument("--out-dir", type=Path, default=Path("plots") / "kinematics")
    _add_sample_options(kin, default_events=50_000)
    kin.set_defaults(func=cmd_plot_kinematics)

    check = sub.add_parser("check-events", help="read Delphes ROOT files as training does; say what is dropped")
    check.add_argument("files", nargs="+", type=Path)
    check.set_defaults(func=cmd_check_events)

    reach = sub.add_parser(
        "reach", help="B, S, expected AUC and discovery Z of a model at given cross sections and luminosities",
        description="How much luminosity until the LHC sees a model: for every cross section x luminosity, "
                    "B = sigma_SM x eff_SM x L x scale and S = xsec x eff_signal x L selected events (eff: the "
                    "fraction of a sample's events passing 130 <= pT <= 2000 GeV, |eta| <= 4), S/sqrt(B), the "
                    "expected AUC and the Asimov median Z of the binned likelihood ratio on the paper's 30 x 30 "
                    "(pT, eta) grid, and the luminosity at which Z reaches 3 and 5. Statistical uncertainties only. "
                    "The samples are those training uses (same generator, cache and default sizes).")
    reach.add_argument("--signal", required=True,
                       help=f"benchmark: one of {', '.join(n for n in BENCHMARKS if n != 'sm')}")
    reach.add_argument("--xsec-pb", required=True, metavar="X[,X...]",
                       help="the model's cross section(s) in pb AFTER the generation cuts (leading jet pT >= 130 GeV, "
                            "|eta| <= 5; 14 TeV), comma-separated; the signal sample gives only the efficiency and "
                            "the (pT, eta) shape")
    reach.add_argument("--lumi-ifb", required=True, metavar="L[,L...]",
                       help="integrated luminosities in fb^-1, comma-separated")
    scale = reach.add_mutually_exclusive_group()
    scale.add_argument("--background-scale", type=float, default=1.0,
                       help="multiply the SM Z(nu nu) + jet background by this (default 1)")
    scale.add_argument("--paper-background", action="store_true",
                       help="background scale 1.3: W, ttbar and dibosons add ~30%% events with the same jet "
                            "kinematics (docs/method.md); the paper's 0.78 detector-level efficiency is not applied, "
                            "the selection efficiency is measured on the samples at their level")
    reach.add_argument("--background-events", type=int, default=None,
                       help="events of the SM sample (default: training's, conf/background/sm.yaml: 1500000)")
    reach.add_argument("--pseudo-count", type=float, default=None,
                       help="added to every bin's count before the bin probabilities are taken (default: the "
                            "optimum's, 0.5); sparse high-pT bins make Z depend on it by several %%")
    reach.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    _add_sample_options(reach, default_events=None,
                        events_help="events of the signal sample (default: training's, conf/signal/*.yaml: 500000)")
    reach.set_defaults(func=cmd_reach)

    predict = sub.add_parser(
        "predict", help="does a dataset contain the signal? a trained run's score, p-value and Z of your events",
        description="Histogram the events of Delphes files that pass a trained run's cuts into one histogram on its "
                    "binning and score it with the run's network. Binary runs: the probability of SM + signal, and "
                    "its p-value and Z against SM-only pseudo-datasets of as many expected events as were selected "
                    "(Poisson, from the run's held-out SM pool: a test of the (pT, eta) shape, not of the count), "
                    "beside the run's likelihood-ratio optimum on the same pseudo-datasets. Multiclass runs: the "
                    "classes ranked by probability. The file must hold about the B + S events the run was trained "
                    "on (0.5 to 2 times, at least 100 after the cuts).")
    predict.add_argument("--events", required=True, nargs="+", type=Path, metavar="FILE.root",
                         help="Delphes ROOT file(s): your Delphes output or `dmlhc generate --out`; all selected "
                              "events make one histogram")
    predict.add_argument("--run", required=True, metavar="RUN_ID|FILE.ckpt",
                         help="the MLflow run id of a training (its config.yaml and checkpoints/best.ckpt), or a "
                              "checkpoint file (a config.yaml beside it or one folder up, else its own settings)")
    predict.add_argument("--pseudo-experiments", type=int, default=None,
                         help="SM-only pseudo-datasets (default 2000; the smallest p-value is 1/(n+1))")
    predict.add_argument("--seed", type=int, default=1, help="seed of the pseudo-datasets")
    predict.add_argument("--json", type=Path, help="also write the report to this JSON file")
    predict.add_argument("--tracking-uri", default=None,
                         help="MLflow store of --run (default $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    predict.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a bad command line exits 2 here (_Parser.error)
    warnings = logging.StreamHandler()  # what the reader dropped, a damaged cached sample regenerated
    warnings.setFormatter(logging.Formatter("dmlhc: warning: %(message)s"))
    logging.getLogger("dmlhc").addHandler(warnings)
    with reported_as_exit_codes("no partial file was kept"):  # one line and an exit code per kind (errors.py)
        return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
