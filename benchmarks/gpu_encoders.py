"""DINOv2 ViT-L/14 and CLIP ViT-L/14-336 on one GPU: images/s per network arithmetic, and how far
the fast modes move the features from strict fp32 (not yet run on a GPU; a few minutes expected).

    python benchmarks/gpu_encoders.py [--device cuda] [--batch 64] [--batches 5]
        [--precisions fp32,tf32,bf16] [--encoders dinov2,clip] [--out benchmarks/results/gpu_encoders.json]

The official weights cannot be downloaded on the build machines, and a GPU machine has no
network, so each tower gets full-size random weights written in the official layout (as
``benchmarks/bench_encoders.py`` writes them) and loaded with fidkit's own loader. Timing:
``--batch`` network inputs (tests/data photographs through the encoder's default
preprocessing, repeated), one warm-up pass, then ``--batches`` timed passes of the network
alone inside fidkit's precision context (:func:`fidkit.pipeline.precision`), synchronised;
the best pass counts. Deviation: per image, ‖f_mode − f_fp32‖ / ‖f_fp32‖ (largest and mean).
With random weights the deviations show the arithmetic's order of magnitude, not what the
trained weights give. ``--device cpu --precisions fp32`` is a smoke test of the script.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--encoders", default="dinov2,clip")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_encoders.json"))
    a = ap.parse_args()
    import torch
    from bench_encoders import make_input, make_weights
    from fidkit.encoders import clip, dinov2
    from fidkit.pipeline import precision
    dev = torch.device(a.device)
    record = {"command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
              "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
              "torch": torch.__version__, "batch": a.batch, "batches": a.batches,
              "weights": "full-size random weights in the official layouts (not the official files)", "results": {}}
    with tempfile.TemporaryDirectory(prefix="fidkit-gpu-enc-") as d:
        for name in a.encoders.split(","):
            w, inp = Path(d) / f"{name}.pt", Path(d) / f"{name}.npy"
            t0 = time.perf_counter()
            make_weights(name, w)
            make_input(name, a.batch, inp)
            enc = (dinov2 if name == "dinov2" else clip).build(w).to(dev).eval()
            key = enc.default_feature
            x = torch.from_numpy(np.load(inp)).to(dev)
            setup = time.perf_counter() - t0
            out, feats = {}, {}
            for mode in a.precisions.split(","):
                with torch.inference_mode(), precision(dev, mode):
                    enc(x)  # warm-up
                    best = float("inf")
                    for _ in range(a.batches):
                        if dev.type == "cuda":
                            torch.cuda.synchronize(dev)
                        t = time.perf_counter()
                        f = enc(x)[key]
                        if dev.type == "cuda":
                            torch.cuda.synchronize(dev)
                        best = min(best, time.perf_counter() - t)
                feats[mode] = f.float().cpu().numpy().astype(np.float64)
                out[mode] = {"images_per_s": round(a.batch / best, 1), "seconds_best_pass": round(best, 4)}
                if dev.type == "cuda":
                    out[mode]["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2 ** 20)
                if "fp32" in feats and mode != "fp32":
                    rel = (np.linalg.norm(feats[mode] - feats["fp32"], axis=1)
                           / np.linalg.norm(feats["fp32"], axis=1))
                    out[mode].update(feature_rel_error_max=float(rel.max()), feature_rel_error_mean=float(rel.mean()))
                print(name, mode, out[mode], file=sys.stderr, flush=True)
            record["results"][name] = {"setup_seconds": round(setup, 1), "modes": out}
            del enc, x
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            os.remove(w)
    Path(a.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["results"], indent=1))


if __name__ == "__main__":
    main()
