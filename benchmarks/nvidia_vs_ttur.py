"""How far the ``nvidia`` protocol (NVIDIA's TorchScript resize: EDM, EDM2, StyleGAN2-ADA/3)
moves FID from ``ttur`` (TF's resize), on the same images and weights.

    python benchmarks/nvidia_vs_ttur.py [--dataset fashion-mnist-test] [--n 500]
                                        [--out benchmarks/results/nvidia_vs_ttur.json]

The first ``--n`` images of the dataset against the next ``--n``, each protocol in turn: both
FIDs, their relative difference, and the largest difference of a pool3 feature. With fewer
images than 2048 both covariances are singular; the FID is still one deterministic function
of the features, so the protocols' difference is what this measures, not the FID's value.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    import fidkit

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist-test")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "nvidia_vs_ttur.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore", fidkit.FidkitWarning)  # fewer images than dimensions: expected
    images = fidkit.dataset_images(args.dataset, 2 * args.n)
    a, b = images[:args.n], images[args.n:]
    out = {}
    feats = {}
    t0 = time.perf_counter()
    for protocol in ("ttur", "nvidia"):
        fa = fidkit.features(a, protocol, device="cpu", workers=0)
        fb = fidkit.features(b, protocol, device="cpu", workers=0)
        feats[protocol] = fa
        stats = [(f.astype(np.float64).mean(0), np.cov(f.astype(np.float64), rowvar=False)) for f in (fa, fb)]
        out[protocol] = float(fidkit.frechet_distance(*stats))
        print(protocol, out[protocol], flush=True)
    rec = {"command": "python benchmarks/nvidia_vs_ttur.py " + " ".join(sys.argv[1:]),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "dataset": args.dataset, "n": args.n,
           "image_size": list(images.shape[1:3]), "fid": out,
           "fid_relative_difference": abs(out["nvidia"] - out["ttur"]) / out["ttur"],
           "feature_max_abs_difference": float(np.abs(feats["nvidia"] - feats["ttur"]).max()),
           "feature_max_abs": float(np.abs(feats["ttur"]).max()), "seconds": round(time.perf_counter() - t0, 1)}
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
