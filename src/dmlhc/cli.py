"""The ``dmlhc`` command line: ``dmlhc generate``, ``dmlhc plot-kinematics`` and ``dmlhc check-events``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dmlhc.errors import CONFIG_ERROR_EXIT, ConfigError, reported_as_exit_codes
from dmlhc.events.benchmarks import BENCHMARKS, custom_point, get_benchmark
from dmlhc.events.cache import check_writable
from dmlhc.events.delphes import read_delphes
from dmlhc.events.detector import JetResponse
from dmlhc.events.generate import LEVELS, GenerationSpec, generate

PAPER_SM_SIGMA_PB = 53.6  # MadGraph LO + Pythia, 14 TeV, same generation cuts (docs/method.md)


class _Parser(argparse.ArgumentParser):
    """A bad command line is a configuration error: usage, then one ``dmlhc:`` line and exit 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"dmlhc: configuration error: {self.prog}: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(CONFIG_ERROR_EXIT)


def _add_sample_options(parser: argparse.ArgumentParser, default_events: int) -> None:
    parser.add_argument("--events", type=int, default=default_events, help="events per sample")
    parser.add_argument("--level", choices=LEVELS, default="parton", help="parton, shower or hadron level")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--no-detector", action="store_true", help="no jet smearing at shower/hadron level")
    parser.add_argument("--cache", type=Path, default=None, help="sample cache (default $DMLHC_CACHE or data/samples)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _spec(args, benchmark) -> GenerationSpec:
    return GenerationSpec(benchmark, args.events, args.level, args.seed, JetResponse(enabled=not args.no_detector))


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
