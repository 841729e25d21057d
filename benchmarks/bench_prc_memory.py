"""Peak memory of fidkit.precision_recall on N × N synthetic 2048-d float32 features.

    python benchmarks/bench_prc_memory.py --n 50000 [--block 1000] [--out benchmarks/results/prc_memory.json]

Features are generated (numpy RandomState, float32) inside this process, so the peak
resident set size (``ru_maxrss``) includes them (2 × N × 2048 × 4 bytes: 0.82 GB at
N = 50k), torch and numpy; the distances are computed block × 10,000 at a time and never
as an N × N matrix (50k × 50k float32 would be 10 GB per matrix).
"""
import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fidkit.scores import precision_recall


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--block", type=int, default=1000)
    ap.add_argument("--out", default="benchmarks/results/prc_memory.json")
    args = ap.parse_args()
    rng = np.random.RandomState(0)
    real = np.empty((args.n, args.dim), np.float32)
    fake = np.empty((args.n, args.dim), np.float32)
    for lo in range(0, args.n, 5000):  # generated in slices, so generation adds no float64 peak
        hi = min(lo + 5000, args.n)
        real[lo:hi] = np.abs(rng.standard_normal((hi - lo, args.dim)))
        fake[lo:hi] = np.abs(rng.standard_normal((hi - lo, args.dim)) * 1.05)
    before = rss_mb()
    t0 = time.perf_counter()
    r = precision_recall(real, fake, block=args.block)
    seconds = time.perf_counter() - t0
    out = {"n_real": args.n, "n_fake": args.n, "dim": args.dim, "block": args.block, "result": r,
           "peak_rss_mb": round(rss_mb(), 1), "rss_before_mb": round(before, 1),
           "features_mb": round((real.nbytes + fake.nbytes) / 2**20, 1), "seconds": round(seconds, 1),
           "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
           "command": "python " + " ".join(sys.argv)}
    out["under_2gb"] = out["peak_rss_mb"] < 2048
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
