"""Time and peak memory of dgm-eval's ``prdc`` (its ``metrics/prdc.py`` with scikit-learn) and of
fidkit's ``scores.dgm_eval_prdc`` on the same features, each in a fresh process, and whether they
agree.

    PYTHONPATH=SKLEARN python benchmarks/bench_dgm_eval_prdc.py DGM_EVAL_CHECKOUT [--n 10000] [--dim 1024]

Random float32 features (N × dim, DINOv2's 1024 by default; N = dgm-eval's ``--reduced_n``,
10,000, the subsample its prdc works on at 50,000 images), as float64 (dgm-eval's reps). Each
side runs in its own subprocess so that its peak resident memory (``ru_maxrss``) is its own
(``above_inputs_mib``: the peak beyond what the process held after loading the features and
importing its code); the features are written to a temporary ``.npy`` first. Prints one JSON line per side and the
comparison.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, json, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
real, fake = np.load({a!r}).astype(np.float64), np.load({b!r}).astype(np.float64)
if {side!r} == "dgm-eval":
    spec = importlib.util.spec_from_file_location("prdc", {prdc!r})
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
else:
    from fidkit.scores import dgm_eval_prdc
    class Identity:  # the subsample is the whole of each set (N = reduced_n): draw nothing that matters
        def choice(self, n, k, replace=False):
            return np.arange(n) if np.isscalar(n) else np.asarray(n)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # inputs and imports held
t0 = time.perf_counter()
if {side!r} == "dgm-eval":
    out = {{k: float(v) for k, v in mod.compute_prdc(real, fake, nearest_k=5).items()}}
else:
    out = dgm_eval_prdc(real, fake, Identity(), k=5)
sec = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"side": {side!r}, "seconds": round(sec, 2), "peak_rss_mib": round(peak / 1024, 1),
                   "above_inputs_mib": round((peak - base) / 1024, 1), **out}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", type=Path, help="a clone of layer6ai-labs/dgm-eval")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=1024)
    args = ap.parse_args()
    g = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        a, b = str(Path(tmp, "real.npy")), str(Path(tmp, "fake.npy"))
        np.save(a, g.normal(size=(args.n, args.dim)).astype(np.float32))
        np.save(b, (g.normal(size=(args.n, args.dim)) * 1.05 + 0.02).astype(np.float32))
        for side in ("dgm-eval", "fidkit"):
            code = CHILD.format(root=str(ROOT), a=a, b=b, side=side,
                                prdc=str(args.checkout.resolve() / "dgm_eval" / "metrics" / "prdc.py"))
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]))
    keys = ("precision", "recall", "density", "coverage")
    same = all(rows[0][k] == rows[1][k] for k in keys)
    print(json.dumps({"n": args.n, "dim": args.dim, "same_values": same,
                      "time_ratio_fidkit_over_dgm_eval": round(rows[1]["seconds"] / rows[0]["seconds"], 3),
                      "memory_above_inputs_ratio": round(rows[1]["above_inputs_mib"] / rows[0]["above_inputs_mib"], 3)}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
