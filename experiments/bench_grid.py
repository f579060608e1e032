"""Networks trained per minute: the grid trainer against one-at-a-time training, in the same run.

    python experiments/bench_grid.py       # one benchmark of Fig. 7: B = 50k, 18 S/sqrt(B) x 10 seeds (~20 min)
    python experiments/bench_grid.py --snr 0.447,1.118 --repeats 3 --single 2 -- debug=smoke   # a quick look

Both sides are real ``python train.py`` jobs on the same settings, samples (cached first) and stopping rule
(early stopping on val/auc, patience in training histograms), into a throw-away MLflow store:

- grid: one job, ``grid.snr=[...] repeats=R``, every network of the grid at once;
- one at a time: ``--single`` of the same networks (seed 1 at points spread evenly over the grid, smallest
  first), one job each, as ``python train.py snr=X seed=1`` trains them.

With CUDA present the grid also runs on the GPU (``trainer.accelerator=gpu``), and its rate is printed too.
Each side's rate is networks / wall-clock minutes of its whole jobs (data set-up, training, testing with the
optimum, logging). Prints both rates and, last, their ratio; ``--out`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import ROOT, composed

from dmlhc.config import split_overrides


def job(overrides: list[str], store: Path, cwd: Path) -> float:
    """Wall-clock seconds of one ``python train.py`` job (it must succeed)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides, "trainer.enable_progress_bar=false",
                          "callbacks.results.plots=false"], cwd=cwd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"bench_grid: python train.py {' '.join(overrides)} failed:\n{run.stderr[-3000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_overrides(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signal", default="spin2_onshell")
    parser.add_argument("--snr", help="the grid's S/sqrt(B) values, comma-separated (default: Fig. 7's grid.snr)")
    parser.add_argument("--repeats", type=int, default=10, help="seeds per point in the grid")
    parser.add_argument("--single", type=int, default=4,
                        help="networks trained one at a time (seed 1 at points spread over the grid)")
    parser.add_argument("--out", type=Path, help="also write the rates as JSON here")
    args = parser.parse_args(argv)
    snrs = [float(s) for s in args.snr.split(",")] if args.snr else [float(s) for s in composed("fig7").grid.snr]
    settings = [f"signal={args.signal}", *extra]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads by default, "
          f"{os.cpu_count()} cores; settings: {' '.join(settings) or 'defaults'}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        cwd, store = Path(folder), Path(folder) / "mlflow.db"
        job([*settings, f"snr={snrs[0]}", "trainer.max_epochs=1", "callbacks.results.n_bootstrap=0"], store, cwd)
        grid_networks = len(snrs) * args.repeats
        grid_s = job([*settings, f"grid.snr=[{','.join(map(str, snrs))}]", f"repeats={args.repeats}"], store, cwd)
        grid_rate = 60 * grid_networks / grid_s
        print(f"grid trainer:   {grid_networks:3d} networks in {grid_s:7.1f} s = {grid_rate:6.2f} networks/min",
              flush=True)
        cuda_rate = None
        if torch.cuda.is_available():  # the same grid on the GPU: the stacked model and the draws on the device
            cuda_s = job([*settings, f"grid.snr=[{','.join(map(str, snrs))}]", f"repeats={args.repeats}",
                          "trainer.accelerator=gpu"], store, cwd)
            cuda_rate = 60 * grid_networks / cuda_s
            print(f"grid on CUDA:   {grid_networks:3d} networks in {cuda_s:7.1f} s = {cuda_rate:6.2f} networks/min",
                  flush=True)
        points = [snrs[i * len(snrs) // args.single % len(snrs)] for i in range(args.single)]
        single_s = sum(job([*settings, f"snr={snr}", "seed=1"], store, cwd) for snr in points)
        single_rate = 60 * len(points) / single_s
        print(f"one at a time:  {len(points):3d} networks in {single_s:7.1f} s = {single_rate:6.2f} networks/min",
              flush=True)
    ratio = grid_rate / single_rate
    print(f"ratio grid / one at a time: {ratio:.1f}x")
    if args.out:
        args.out.write_text(json.dumps({"grid_per_minute": grid_rate, "single_per_minute": single_rate,
                                        "grid_cuda_per_minute": cuda_rate,
                                        "ratio": ratio, "snr": snrs, "repeats": args.repeats,
                                        "settings": settings}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
