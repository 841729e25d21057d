"""The FID metric object on the CPU: one update per batch against one update with them all.

    python benchmarks/metric_update_cpu.py [--images 128] [--batch-size 16] [--threads 1]
                                           [--rounds 2] [--out benchmarks/results/metric_update_cpu.json]

``fidkit.FID.update`` runs its images in ``batch_size`` batches inside one heap-reuse span
(``fidkit.pipeline.reuse_freed_memory``), which ends by trimming the heap. A caller that
updates once per batch therefore faults each batch's activation pages in again. In one
process, after a warm-up update (weights loaded), each round times the same seeded float
images (N, 3, 28, 28) in [-1, 1], as a 28x28 generator gives them, three ways:

  per-batch   ``metric.update`` once per ``--batch-size`` images (what fidkit-ttur's evaluator
              and ``evaluate_generator`` did);
  one-call    ``metric.update`` once with all the images (the metric splits them into the
              same batches: what fidkit-ttur's evaluator does now);
  evaluate    ``fidkit.evaluate_generator`` drawing the same images ``--batch-size`` at a
              time (it now holds one heap-reuse span for the whole draw).

Each reports images/s, the minor page faults of the timed part, and the FID (which must be
the same in all three: the batches and their order do not change). Rounds alternate the
modes, so a slow spell of a shared machine hits them alike; the summary gives each mode's
median and the ratios to per-batch.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _machine import cpu_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reference", default=str(ROOT / "reference_stats" / "fashion-mnist-test.npz"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "metric_update_cpu.json"))
    args = ap.parse_args()

    import warnings

    import torch

    import fidkit

    warnings.simplefilter("ignore", fidkit.FidkitWarning)  # fewer images than 2048 dimensions: expected here
    torch.set_num_threads(args.threads)
    n, bs = args.images, args.batch_size
    x = torch.rand(n, 3, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    metric = fidkit.FID(args.reference, device="cpu", batch_size=bs)
    metric.update(x[:bs], input_range=(-1, 1))  # warm-up: weights loaded, first allocations made

    def timed(mode: str) -> dict:
        metric.reset()
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        if mode == "per-batch":
            for i in range(0, n, bs):
                metric.update(x[i:i + bs], input_range=(-1, 1))
            fid = metric.compute()
        elif mode == "one-call":
            metric.update(x, input_range=(-1, 1))
            fid = metric.compute()
        else:
            drawn = iter(range(0, n, bs))
            fid = fidkit.evaluate_generator(lambda k: x[(i := next(drawn)):i + k], n, bs, input_range=(-1, 1),
                                            metric=metric).fid
        sec = time.perf_counter() - t0
        return {"mode": mode, "images_per_s": round(n / sec, 3),
                "minor_page_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0, "fid": fid}

    modes = ("per-batch", "one-call", "evaluate")
    runs = []
    for r in range(args.rounds):
        for mode in (modes if r % 2 == 0 else modes[::-1]):
            runs.append(timed(mode))
            print(json.dumps(runs[-1]), flush=True)
    median = {m: statistics.median(r["images_per_s"] for r in runs if r["mode"] == m) for m in modes}
    summary = {"median_images_per_s": median,
               "ratio_to_per_batch": {m: round(median[m] / median["per-batch"], 3) for m in modes[1:]},
               "fid_identical": len({r["fid"] for r in runs}) == 1}
    rec = {"command": "python benchmarks/metric_update_cpu.py " + " ".join(sys.argv[1:]),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
                       "python": platform.python_version(), "torch": torch.__version__,
                       "load_average_at_start": os.getloadavg()},
           "images": n, "batch_size": bs, "threads": args.threads, "runs": runs, "summary": summary}
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
