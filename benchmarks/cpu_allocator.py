"""Does keeping freed activations in the heap speed up the CPU network, and at what memory?

    python benchmarks/cpu_allocator.py [--images 64] [--batch-size 32] [--threads 2]
                                       [--out benchmarks/results/cpu_allocator.json]

Runs the network (channels_last, inference mode, as fidkit runs it on the CPU) over the
same seeded random batch in two fresh processes, alternating, twice each:

  default  glibc's default allocation: large activations come from mmap and are unmapped
           when freed, so each batch faults its activation pages in again;
  heap     inside ``fidkit.pipeline.reuse_freed_memory`` (what fidkit does on the CPU):
           large blocks from the heap, heap not trimmed during the pass.

Each process reports images/s over ``--images`` images after one warm-up batch, the minor
page faults and system CPU seconds of the timed part, its peak RSS, and the sha256 of the
features (the two must be equal: only where memory comes from changes).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(mode: str, images: int, batch_size: int, threads: int) -> dict:
    import torch
    sys.path.insert(0, str(ROOT))
    from fidkit.api import load_weights, network
    from fidkit.pipeline import reuse_freed_memory

    torch.set_num_threads(threads)
    dev = torch.device("cpu")
    net = network(load_weights(), dev, "fp32")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch_size, 3, 299, 299, generator=g) * 2 - 1).contiguous(memory_format=torch.channels_last)
    ctx = reuse_freed_memory(dev) if mode == "heap" else contextlib.nullcontext()
    h = hashlib.sha256()
    with torch.inference_mode(), ctx:
        net(x)  # warm-up
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(images // batch_size):
            f = net(x)
        sec = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        h.update(f.numpy().tobytes())
    return {"mode": mode, "images_per_s": round(images // batch_size * batch_size / sec, 2),
            "minor_page_faults": r1.ru_minflt - r0.ru_minflt, "system_cpu_s": round(r1.ru_stime - r0.ru_stime, 2),
            "user_cpu_s": round(r1.ru_utime - r0.ru_utime, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "features_sha256": h.hexdigest()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu_allocator.json"))
    ap.add_argument("--child", choices=["default", "heap"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.images, args.batch_size, args.threads)))
        return
    runs = []
    for _ in range(args.rounds):
        for mode in ("default", "heap"):
            cmd = [sys.executable, __file__, "--child", mode, "--images", str(args.images),
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for mode in ("default", "heap"):
        rs = [r for r in runs if r["mode"] == mode]
        summary[mode] = {k: round(sum(r[k] for r in rs) / len(rs), 2)
                         for k in ("images_per_s", "minor_page_faults", "system_cpu_s", "peak_rss_mib")}
    summary["speedup"] = round(summary["heap"]["images_per_s"] / summary["default"]["images_per_s"], 3)
    summary["features_identical"] = len({r["features_sha256"] for r in runs}) == 1
    rec = {"command": "python benchmarks/cpu_allocator.py " + " ".join(sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "libc": " ".join(platform.libc_ver())},
           "images": args.images, "batch_size": args.batch_size, "threads": args.threads,
           "runs": runs, "mean": summary}
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
