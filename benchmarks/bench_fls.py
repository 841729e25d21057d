"""Time of dgm-eval's FLS fit (``fidkit.scores.dgm_eval_fls``) on random features.

    python benchmarks/bench_fls.py [--r 1000,2000] [--dim 1024] [--threads 1] [--out RESULT.json] [--note TEXT]

Four sets of r rows each (train, baseline, test, generated; Gaussian clusters), the fit on the
CPU in float32 as dgm-eval's runs on CUDA. Its two bandwidth fits take 100 Adam steps over an
r × r matrix each, so the time grows with r². Prints one JSON line per r; ``--out`` writes
them all with the command, git commit, machine and date.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from fidkit import scores as S  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--r", default="1000,2000")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--note", default="", help="what else ran on the machine, recorded with the result")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for r in (int(x) for x in args.r.split(",")):
        g = np.random.default_rng(r)
        centres = g.normal(size=(10, args.dim)) * 2
        sets = [centres[g.integers(0, 10, r)] + g.normal(size=(r, args.dim)) for _ in range(4)]
        t = time.perf_counter()
        out = S.dgm_eval_fls(*sets)
        row = {"r": r, "dim": args.dim, "threads": args.threads, "seconds": round(time.perf_counter() - t, 2),
               "fls": out.fls, "fls_overfit": out.fls_overfit}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        from _machine import provenance
        Path(args.out).write_text(json.dumps({**provenance("bench_fls.py"), "note": args.note, "rows": rows},
                                             indent=1) + "\n")


if __name__ == "__main__":
    main()
