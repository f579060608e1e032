"""Study 1 of the paper (its Fig. 1): the leading jet of every benchmark against the SM, as a table and figures.

    python experiments/kinematics.py                                  # 50k parton-level events per sample
    python experiments/kinematics.py --events 500000 --level parton
    python experiments/kinematics.py --benchmarks spin1_onshell spin2_onshell --events 20000

Runs ``dmlhc plot-kinematics`` (samples from the cache, generated where missing) into
``experiments/results/kinematics/`` (or ``--out DIR``): ``kinematics.csv`` (per sample: total-variation distance
to the SM of the leading jet's pT, eta and phi distributions, pT mean and 10/50/90% quantiles, mean |eta|,
invisible-mass quantiles) and one PNG per framework; both are logged as artifacts of a run ``kinematics_summary``
in the MLflow experiment ``kinematics``. Prints the table.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from _common import log_summary_run, run_study

from dmlhc.cli import main as dmlhc
from dmlhc.events.kinematics import TABLE_COLUMNS
from dmlhc.tracking.summary import table

ROOT = Path(__file__).resolve().parents[1]
STUDY = "kinematics"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per sample (default 50000)")
    parser.add_argument("--level", default="parton", help="parton, shower or hadron (default parton)")
    parser.add_argument("--benchmarks", nargs="*", help="default: all")
    parser.add_argument("--out", type=Path, help=f"output folder (default experiments/results/{STUDY})")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "experiments" / "results" / STUDY
    command = ["plot-kinematics", "--events", str(args.events), "--level", args.level, "--out-dir", str(out), "--quiet"]
    if args.benchmarks:
        command += ["--benchmarks", *args.benchmarks]
    if (code := dmlhc(command)) != 0:
        return code
    with open(out / "kinematics.csv") as file:
        rows = list(csv.DictReader(file))
    figures = sorted(out.glob("kinematics_*.png"))
    metrics = {f"tv_pt/{r['sample']}": float(r["tv_pt"]) for r in rows if r["sample"] != "sm"}
    log_summary_run(STUDY, f"{STUDY}_summary", [out / "kinematics.csv", *figures], metrics,
                    {"dmlhc.summary": STUDY}, {"events": args.events, "level": args.level})
    print(table(rows, TABLE_COLUMNS))
    print(f"kinematics: {len(rows)} samples; table {out / 'kinematics.csv'}, {len(figures)} figures")
    return 0


if __name__ == "__main__":
    run_study(main)
