"""fidkit on a CUDA device: throughput per precision, the FID shift of the fast modes,
the Fréchet distance on the GPU, and agreement of CUDA with the CPU references.

    python benchmarks/bench_gpu.py --weights W.npz [--n 50000] [--batch-sizes 250,500,1000]
                                   [--png-dir DIR] [--out benchmarks/results/gpu.json]

Measures, on one run of one machine:

1. in-memory uint8 32×32 images (random, on the device) → statistics, protocol ttur, for
   each batch size and precision (``--precisions``; default fp32 strict = TF32 off, tf32, bf16): images/s;
2. the FID between two in-memory sets per precision, and its relative deviation from fp32;
3. the Fréchet distance in float64 on the GPU at d = 2048 (median of 10 after a warm-up);
4. tests/data/real_a vs real_b on CUDA for each protocol (and precision) against the CPU
   reference values of tests/data/README.md;
5. optionally a PNG folder end to end through ``fidkit.compare`` (decode workers + GPU).

Writes JSON (and prints it) with the device name and versions.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fidkit  # noqa: E402
from fidkit.api import load_weights  # noqa: E402
from fidkit.frechet import frechet_distance_torch  # noqa: E402

REFERENCE = {"ttur": 275.9083691694693, "pytorch-fid": 279.7848234423883, "clean": 313.70841684569416}


def sync():
    torch.cuda.synchronize()


def timed_stats(images, **kw):
    sync()
    t = time.perf_counter()
    st = fidkit.compute_stats(images, device="cuda", progress=False, **kw)
    sync()
    return st, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--batch-sizes", default="250,500,1000")
    ap.add_argument("--png-dir", default=None, help="folder with subfolders a/ and b/ of PNG images")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    ap.add_argument("--precisions", default="fp32,tf32,bf16", help="fp32 first: the reference of the deviations")
    args = ap.parse_args()
    precisions = args.precisions.split(",")
    assert precisions[0] == "fp32", "--precisions must start with fp32"

    w = load_weights(args.weights)
    rec = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "cpu_count": os.cpu_count(), "n": args.n,
           "weights_digest": w.digest, "command": " ".join(sys.argv)}
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, device="cuda", generator=g)
    b = (a.float() * 0.7 + 20).to(torch.uint8)  # a darker, lower-contrast copy: a clear FID

    # warm-up (cuDNN algorithm choice, allocator)
    fidkit.compute_stats(a[:2000], device="cuda", weights=w, batch_size=500, progress=False)

    rec["throughput"] = []
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        for prec in precisions:
            _, sec = timed_stats(a, weights=w, batch_size=bs, precision=prec)
            row = {"batch_size": bs, "precision": prec, "seconds": round(sec, 3),
                   "images_per_s": round(args.n / sec, 1)}
            rec["throughput"].append(row)
            print(json.dumps(row), flush=True)

    best_bs = max((r for r in rec["throughput"] if r["precision"] == "fp32"), key=lambda r: r["images_per_s"])
    bs = best_bs["batch_size"]
    rec["fid_by_precision"] = {}
    for prec in precisions:
        sa, _ = timed_stats(a, weights=w, batch_size=bs, precision=prec)
        sb, _ = timed_stats(b, weights=w, batch_size=bs, precision=prec)
        rec["fid_by_precision"][prec] = float(fidkit.frechet_distance(sa, sb, allow_mismatch=True))
        if prec == "fp32":
            stats_fp32 = (sa, sb)
    ref = rec["fid_by_precision"]["fp32"]
    rec["fid_relative_deviation"] = {p: abs(v - ref) / ref for p, v in rec["fid_by_precision"].items()}
    print(json.dumps({"fid_by_precision": rec["fid_by_precision"],
                      "deviation": rec["fid_relative_deviation"]}), flush=True)

    sa, sb = stats_fp32
    args_t = [torch.from_numpy(x).cuda() for x in (sa.mu, sa.sigma, sb.mu, sb.sigma)]
    frechet_distance_torch(*args_t)
    times = []
    for _ in range(10):
        sync()
        t = time.perf_counter()
        r = frechet_distance_torch(*args_t)
        sync()
        times.append(time.perf_counter() - t)
    cpu_value = float(fidkit.frechet_distance(sa, sb))
    rec["frechet_gpu"] = {"median_s": float(np.median(times)), "min_s": float(min(times)),
                          "value": float(r), "cpu_value": cpu_value,
                          "relative_difference": abs(float(r) - cpu_value) / cpu_value}
    print(json.dumps(rec["frechet_gpu"]), flush=True)

    rec["cuda_vs_cpu_reference"] = {}
    for proto, value in REFERENCE.items():
        for prec in precisions:
            got = fidkit.fid(str(ROOT / "tests/data/real_a"), str(ROOT / "tests/data/real_b"), protocol=proto,
                             device="cuda", weights=w, workers=2, precision=prec)
            key = proto if prec == "fp32" else f"{proto} {prec}"
            rec["cuda_vs_cpu_reference"][key] = {"fidkit_cuda": got, "reference_cpu": value,
                                                 "relative_difference": abs(got - value) / value}
    print(json.dumps(rec["cuda_vs_cpu_reference"]), flush=True)

    if args.png_dir:
        rec["folder"] = {}
        for prec in [p for p in precisions if p != "bf16"]:
            t = time.perf_counter()
            r = fidkit.compare(os.path.join(args.png_dir, "a"), os.path.join(args.png_dir, "b"), device="cuda",
                               weights=w, workers=args.workers, precision=prec, progress=False)
            sec = time.perf_counter() - t
            rec["folder"][prec] = {"fid": r.fid, "n": r.n_a + r.n_b, "seconds": round(sec, 2),
                                   "images_per_s": round((r.n_a + r.n_b) / sec, 1), "workers": args.workers}
        print(json.dumps(rec["folder"]), flush=True)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
