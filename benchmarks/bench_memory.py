"""Peak memory of ``fidkit stats`` over folders of 10k and 100k images: flat in N?

    python benchmarks/bench_memory.py [--n 10000,100000] [--network stand-in|real]
                                      [--device cpu] [--data /tmp/fidkit-memory]
                                      [--out benchmarks/results/memory_flat.json]

For each N a folder of N synthetic 32×32 PNG images is written once (deterministic:
smooth colour gradients plus seeded noise, so that PNG decoding does real work) and its
statistics are computed in a fresh process through fidkit's whole folder pipeline:
listing, decoding in worker processes, protocol ttur (resize to 299 on the device),
network, float64 accumulation. The resident memory of that process and its decoding
workers together (the sum of their proportional set sizes, so that pages shared after
fork count once) is sampled every 0.1 s; the peak is recorded.

``--network real`` runs the Inception network (on a GPU 100k images take about a minute;
on 2 CPU cores about two hours). ``--network stand-in`` (the default on the CPU) replaces
only the network by a cheap module with the same input and output (a (B, 3, 299, 299)
float batch in, (B, 2048) float32 features out: an 8×8 average pool and a fixed random
projection): everything whose memory could grow with N (file list, loader, batches,
accumulator) is fidkit's own code. The network's memory is a constant (its weights and
one batch of activations), measured separately by the real runs.

The claim under test: peak RSS at 100k is within 10% of the peak at 10k.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agreement import machine_info, run_timed  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
import torch
import fidkit, fidkit.api
folder, network, device = sys.argv[1], sys.argv[2], sys.argv[3]
if network == "stand-in":
    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.register_buffer("proj", torch.randn(3 * 64, 2048, generator=g) / 8)
        def forward(self, x):
            y = torch.nn.functional.adaptive_avg_pool2d(x.float(), 8).flatten(1)
            return torch.tanh(y @ self.proj)
        def forward_features(self, x, names=("pool3",)):  # the pipeline asks for named features
            return {"pool3": self(x)}
    net = StandIn().eval()
    fidkit.api.network = lambda w, dev, mode: net.to(dev)
t = time.perf_counter()
st = fidkit.compute_stats(folder, device=device, progress=False)
print(json.dumps({"n": st.n, "seconds": time.perf_counter() - t, "trace_sigma": float(st.sigma.trace())}))
"""


def write_folder(folder: str, n: int) -> None:
    """n deterministic 32×32 RGB PNG files (00000000.png, ...), written once."""
    done = os.path.join(folder, ".complete")
    if os.path.isfile(done):
        return
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    t = time.perf_counter()
    for i in range(n):
        c = rng.random((2, 3))
        base = (c[0][None, None, :] * yy[..., None] + c[1][None, None, :] * xx[..., None]) * 200
        im = np.clip(base + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(os.path.join(folder, f"{i:08d}.png"), compress_level=1)
    open(done, "w").close()
    print(f"wrote {n} images to {folder} in {time.perf_counter() - t:.0f} s", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Peak RSS of fidkit stats at two folder sizes.")
    p.add_argument("--n", default="10000,100000")
    p.add_argument("--network", choices=["stand-in", "real"], default=None,
                   help="default: real on CUDA, stand-in on the CPU")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="/tmp/fidkit-memory")
    p.add_argument("--out", default=os.path.join(REPO_ROOT, "benchmarks", "results", "memory_flat.json"))
    args = p.parse_args(argv)
    network = args.network or ("real" if args.device.startswith("cuda") else "stand-in")
    sizes = [int(x) for x in args.n.split(",")]
    runs = []
    for n in sizes:
        folder = os.path.join(args.data, f"n{n}")
        write_folder(folder, n)
        rss = {}
        rc, out, err, seconds = run_timed([sys.executable, "-c", CHILD, folder, network, args.device],
                                          cwd=REPO_ROOT, rss=rss)
        if rc != 0:
            print(f"bench_memory: N={n} failed: {(err.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
            return 1
        res = json.loads(out.strip().splitlines()[-1])
        runs.append({"n": n, "images_counted": res["n"], "wall_seconds": round(seconds, 1),
                     "pipeline_seconds": round(res["seconds"], 1),
                     "images_per_second": round(n / res["seconds"], 1),
                     "peak_rss_mib": round(rss["peak_bytes"] / 2**20, 1)})
        print(json.dumps(runs[-1]), flush=True)
    base = runs[0]["peak_rss_mib"]
    for r in runs:
        r["peak_rss_ratio_to_first"] = round(r["peak_rss_mib"] / base, 3)
    record = {"command": "python " + " ".join([os.path.relpath(__file__, REPO_ROOT)]
                                              + (argv if argv is not None else sys.argv[1:])),
              "network": network, "device": args.device, "machine": machine_info(), "runs": runs,
              "flat_within_10_percent": all(abs(r["peak_rss_ratio_to_first"] - 1) <= 0.10 for r in runs)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"flat within 10%: {record['flat_within_10_percent']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
