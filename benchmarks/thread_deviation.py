"""How much pool3 features differ between torch thread counts on the CPU.

    python benchmarks/thread_deviation.py [--threads 1,2] [--out benchmarks/results/thread_deviation.json]

Each thread count runs in a fresh process (``OMP_NUM_THREADS`` and ``torch.set_num_threads``)
on the images of tests/data/real_a and real_b (20 photo crops), protocol ttur; the record
gives the largest absolute and relative difference of every count's float32 features from
the first count's, and the relative difference of the FID of real_a against real_b.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r"""
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
import fidkit
a = fidkit.features("tests/data/real_a", device="cpu", workers=0, progress=False)
b = fidkit.features("tests/data/real_b", device="cpu", workers=0, progress=False)
np.savez(sys.argv[2], a=a, b=b, fid=fidkit.fid("tests/data/real_a", "tests/data/real_b", device="cpu", workers=0,
                                               progress=False))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "benchmarks", "results", "thread_deviation.json"))
    args = ap.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    got = {}
    for t in counts:
        path = f"/tmp/fidkit-threads-{t}.npz"
        env = {**os.environ, "OMP_NUM_THREADS": str(t), "PYTHONPATH": REPO_ROOT}
        subprocess.run([sys.executable, "-c", CHILD, str(t), path], check=True, cwd=REPO_ROOT, env=env)
        got[t] = dict(np.load(path))
    base = got[counts[0]]
    feats = np.concatenate([base["a"], base["b"]]).astype(np.float64)
    record = {"command": "python benchmarks/thread_deviation.py " + " ".join(sys.argv[1:]),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "images": len(feats),
              "baseline_threads": counts[0], "fid_baseline": float(base["fid"]), "against_baseline": {}}
    for t in counts[1:]:
        other = np.concatenate([got[t]["a"], got[t]["b"]]).astype(np.float64)
        diff = np.abs(other - feats)
        record["against_baseline"][str(t)] = {
            "max_abs_feature_difference": float(diff.max()),
            "max_relative_feature_difference": float((diff / np.maximum(np.abs(feats), 1e-12)).max()),
            "largest_feature": float(np.abs(feats).max()),
            "fid": float(got[t]["fid"]),
            "fid_relative_difference": float(abs(got[t]["fid"] - base["fid"]) / base["fid"])}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
