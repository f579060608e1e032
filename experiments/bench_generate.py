"""Generation speed per level: dmlhc's generator against bare Pythia in the same run.

    python experiments/bench_generate.py [--events-scale 1.0]

For each level it times (a) a bare single-process Pythia loop of the SM process
(`pythia.next()` only: no jets, no cuts, no file) and (b) `generate_sample` for the
SM and for spin1_onshell (pilot cross sections cached beforehand, all cores, jets,
detector response and cuts included), and prints accepted events per second and
the ratio to (a). Events per second count events that pass the generation cut.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pythia8mc

from dmlhc.events.benchmarks import get_benchmark
from dmlhc.events.generate import GenerationSpec, base_settings, generate_sample, process_settings

EVENTS = {"parton": 40000, "shower": 4000, "hadron": 400}


def bare_pythia_rate(level: str, n: int) -> float:
    pythia = pythia8mc.Pythia("", False)
    for line in [*base_settings(level), *process_settings(get_benchmark("sm")), "Random:seed = 7"]:
        pythia.readString(line)
    pythia.init()
    start = time.perf_counter()
    for _ in range(n):
        pythia.next()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events-scale", type=float, default=1.0)
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    print(f"cores: {os.cpu_count()}")
    generate_sample(GenerationSpec(get_benchmark("spin1_onshell"), 10, "parton"), cache=cache, show_progress=False)
    rows = []
    for level, n in EVENTS.items():
        n = max(int(n * args.events_scale), 10)
        bare = bare_pythia_rate(level, n)
        for name in ("sm", "spin1_onshell"):
            start = time.perf_counter()
            generate_sample(GenerationSpec(get_benchmark(name), n, level), cache=cache, show_progress=False)
            rate = n / (time.perf_counter() - start)
            rows.append((level, name, n, rate, bare))
    bare = "bare Pythia ev/s (1 core, SM, no cuts)"
    print(f"{'level':8s} {'sample':15s} {'events':>7s} {'dmlhc ev/s':>11s} {bare:>40s} {'ratio':>6s}")
    for level, name, n, rate, bare in rows:
        print(f"{level:8s} {name:15s} {n:7d} {rate:11.0f} {bare:40.0f} {rate / bare:6.2f}")


if __name__ == "__main__":
    main()
