"""How far ADM's float32 Inception Score lies from the same score in float64.

    python benchmarks/adm_is_float32.py [--n 12345] [--seeds 0,1,2] [--scale 2,4,6]
                                        [--out benchmarks/results/adm_is_float32.json]

guided-diffusion's evaluator takes the softmax of the 1008 logits in float32 (TensorFlow) and
computes the score with numpy on float32 (``part * (log(part) - log(mean(part, 0)))``, summed
over classes, averaged over rows, exp, mean over chunks of 5000). fidkit's
``scores.adm_inception_score`` does the same in float32 (torch's softmax for TensorFlow's).
For synthetic logits (standard normal × ``--scale``, ``--n`` rows, per seed) this records
that score, the float64 one (softmax, log-softmax and means in float64) and their relative
difference: what computing the score "more accurately" would move it by.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def float64_score(logits: np.ndarray, chunk: int = 5000) -> float:
    t = torch.from_numpy(logits.astype(np.float64))
    p, log_p = t.softmax(dim=1), t.log_softmax(dim=1)
    out = []
    for lo in range(0, len(logits), chunk):
        pc, lc = p[lo:lo + chunk], log_p[lo:lo + chunk]
        out.append((pc * (lc - pc.mean(0, keepdim=True).log())).sum(1).mean().exp().item())
    return float(np.mean(out))


def main():
    from fidkit.scores import adm_inception_score

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12345)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--scale", default="2,4,6")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adm_is_float32.json"))
    args = ap.parse_args()
    rows = []
    for scale in (float(s) for s in args.scale.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            logits = (np.random.default_rng(seed).normal(size=(args.n, 1008)) * scale).astype(np.float32)
            f32, f64 = adm_inception_score(logits), float64_score(logits)
            rows.append({"scale": scale, "seed": seed, "float32_adm": f32, "float64": f64,
                         "relative_difference": abs(f32 - f64) / f64})
            print(json.dumps(rows[-1]), flush=True)
    rec = {"command": "python benchmarks/adm_is_float32.py " + " ".join(sys.argv[1:]),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "n": args.n, "rows": rows,
           "max_relative_difference": max(r["relative_difference"] for r in rows)}
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(f"max relative difference {rec['max_relative_difference']:.2e}; wrote {args.out}")


if __name__ == "__main__":
    main()
