"""Costs of the ADM evaluator's metrics in fidkit.

    python benchmarks/bench_adm.py sfid-overhead [--n 128] [--repeats 3]
    python benchmarks/bench_adm.py sfid-overhead-paired [--rounds 12]
    python benchmarks/bench_adm.py pr-memory [--n-ref 10000] [--n-sample 50000]
    python benchmarks/bench_adm.py fp16-membership [--n-ref 5000] [--n-sample 5000] [--seeds 1,2,3]
    python benchmarks/bench_adm.py fp16-membership --features FEATURES.npy --out FILE.json

``sfid-overhead``: wall time of one pass (real weights, CPU, protocol ttur, uint8 64×64 images
in memory, batch 16) with pool3 statistics alone and with the sFID statistics added, alternated,
best of ``--repeats``. ``sfid-overhead-paired``: one batch of 16 through the network and the
float64 accumulation, with and without the spatial feature, interleaved round by round, so
that a busy machine's load falls on both alike. ``pr-memory``: time and peak resident memory (``ru_maxrss``, which
includes the features themselves) of :func:`fidkit.scores.adm_precision_recall` on synthetic
2048-d features. ``fp16-membership``: how many memberships (sample inside some reference ball,
reference inside some sample ball) change between float64, float32 and the float16 emulation,
on synthetic Inception-like features (≥ 0, squared norms of a few hundred), and in which direction
(``*_gained``: inside some ball with the first arithmetic, outside every ball with the second). Each writes
``benchmarks/results/adm_<name>.json`` with its command line.
"""
import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def features(rng, n: int, dim: int = 2048) -> np.ndarray:
    """Inception-like: ReLU of Gaussians scaled so that squared norms are about 300."""
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, 5000):
        hi = min(lo + 5000, n)
        out[lo:hi] = np.maximum(rng.standard_normal((hi - lo, dim)) * 0.54, 0)
    return out


def sfid_overhead(args) -> dict:
    from fidkit.api import extract

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.n, 64, 64, 3), dtype=np.uint8)
    kw = dict(device="cpu", batch_size=16, progress=False)
    extract(images[:16], **kw)  # weights loaded and network built before timing
    times = {"pool3": [], "pool3+spatial": []}
    for _ in range(args.repeats):
        for spatial, key in ((False, "pool3"), (True, "pool3+spatial")):
            t = time.perf_counter()
            extract(images, spatial=spatial, **kw)
            times[key].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    return {"n_images": args.n, "image_size": 64, "batch_size": 16, "seconds": times, "best": best,
            "overhead": best["pool3+spatial"] / best["pool3"] - 1, "goal": "<= 0.10",
            "torch_threads": torch.get_num_threads()}


def sfid_overhead_paired(args) -> dict:
    """The same batch through one step without and with sFID, interleaved (A B B A ...), so that a
    busy machine's load falls on both alike: the network's forward plus the float64 accumulation."""
    from fidkit.api import load_weights, network
    from fidkit.inception import FEATURES
    from fidkit.pipeline import memory_format, reuse_freed_memory
    from fidkit.preprocess import get_protocol
    from fidkit.stats import Accumulator

    dev = torch.device("cpu")
    net = network(load_weights(), dev, "fp32")
    proto = get_protocol("ttur")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, size=(16, 3, 64, 64), dtype=np.uint8))
    x = proto.to_network(x).contiguous(memory_format=memory_format(dev))
    accs = {k: Accumulator(FEATURES[k]) for k in ("pool3", "spatial")}

    def step(names):
        t = time.perf_counter()
        out = net.forward_features(x, names)
        for k, v in out.items():
            accs[k].update(v)
        return time.perf_counter() - t

    a, b = [], []
    with torch.inference_mode(), reuse_freed_memory(dev):
        step(("pool3", "spatial"))  # warm-up
        for i in range(args.rounds):
            order = [("pool3",), ("pool3", "spatial")]
            for names in (order if i % 2 == 0 else order[::-1]):
                (a if len(names) == 1 else b).append(step(names))
    ratios = [bb / aa for aa, bb in zip(a, b)]
    return {"batch_size": 16, "rounds": args.rounds, "seconds_pool3": a, "seconds_pool3_spatial": b,
            "median_pool3": float(np.median(a)), "median_pool3_spatial": float(np.median(b)),
            "overhead_of_medians": float(np.median(b) / np.median(a) - 1),
            "median_paired_overhead": float(np.median(ratios) - 1), "goal": "<= 0.10",
            "torch_threads": torch.get_num_threads(), "load_average": list(__import__("os").getloadavg())}


def pr_memory(args) -> dict:
    from fidkit.scores import adm_precision_recall

    rng = np.random.default_rng(0)
    ref, smp = features(rng, args.n_ref), features(rng, args.n_sample)
    before = rss_mb()
    t = time.perf_counter()
    out = adm_precision_recall(ref, smp, distances=args.distances)
    seconds = time.perf_counter() - t
    peak = rss_mb()
    return {"n_ref": args.n_ref, "n_sample": args.n_sample, "dim": 2048, "distances": args.distances,
            "result": out, "seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1),
            "rss_before_mb": round(before, 1), "features_mb": round((ref.nbytes + smp.nbytes) / 2**20, 1),
            "under_2gb": peak < 2048, "torch_threads": torch.get_num_threads()}


def _memberships(ref, smp) -> dict:
    from fidkit.scores import _Distances, _adm_norms, _chunks, _radii

    status = {}
    for mode in ("float64", "float32", "float16"):
        nr, ns = _adm_norms(ref, mode), _adm_norms(smp, mode)
        r_ref, r_smp = _radii(ref, nr, 3, 2000, 10000, mode), _radii(smp, ns, 3, 2000, 10000, mode)
        dist = _Distances(ref, smp, nr, ns, mode, 2000, 10000)
        smp_in = torch.zeros(len(smp), dtype=torch.bool)
        ref_in = torch.zeros(len(ref), dtype=torch.bool)
        for r0, r1 in _chunks(len(ref), 2000):
            for c0, c1 in _chunks(len(smp), 10000):
                d = dist(r0, r1, c0, c1).double()
                ref_in[r0:r1] |= (d <= r_smp[None, c0:c1]).any(1)
                smp_in[c0:c1] |= (d <= r_ref[r0:r1, None]).any(0)
        status[mode] = (smp_in, ref_in, r_ref, r_smp)
    out = {"precision": {m: status[m][0].double().mean().item() for m in status},
           "recall": {m: status[m][1].double().mean().item() for m in status}}
    for a, b in (("float32", "float64"), ("float16", "float64"), ("float16", "float32")):
        sa, sb, ra, rb = status[a][0], status[b][0], status[a][1], status[b][1]
        out[f"{a}_vs_{b}"] = {
            "samples_changed": int((sa != sb).sum()),
            "samples_gained": int((sa & ~sb).sum()),  # inside some ball with a, outside every ball with b
            "references_changed": int((ra != rb).sum()),
            "references_gained": int((ra & ~rb).sum()),
            "ref_radii_max_rel_diff": float(((status[a][2] - status[b][2]).abs() / status[b][2]).max()),
        }
    return out


def fp16_membership(args) -> dict:
    """Per seed (``--seeds``), synthetic features from ``default_rng(seed)``; whether the float16
    step moves memberships one way (ties under ``<=``) or both."""
    if args.features:  # real features: the first half as references, the second as samples
        f = torch.from_numpy(np.load(args.features).astype(np.float32))
        h = len(f) // 2
        out = _memberships(f[:h], f[h:2 * h])
        return {"features": args.features, "n_ref": h, "n_sample": h, **out}
    per_seed = {}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        ref = torch.from_numpy(features(rng, args.n_ref))
        smp = torch.from_numpy(features(rng, args.n_sample))
        per_seed[str(seed)] = _memberships(ref, smp)
    shifts = {k: [r[k]["float16"] - r[k]["float64"] for r in per_seed.values()] for k in ("precision", "recall")}
    return {"n_ref": args.n_ref, "n_sample": args.n_sample, "seeds": args.seeds, "per_seed": per_seed,
            "float16_minus_float64": {k: {"values": v, "mean": float(np.mean(v)), "min": float(np.min(v)),
                                          "max": float(np.max(v))} for k, v in shifts.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sfid-overhead", "sfid-overhead-paired", "pr-memory", "fp16-membership"])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-ref", type=int, default=None)
    ap.add_argument("--n-sample", type=int, default=None)
    ap.add_argument("--distances", default="float32")
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[1],
                    help="fp16-membership: comma-separated seeds of the synthetic features")
    ap.add_argument("--features", default=None,
                    help="fp16-membership: an .npy of real (N, 2048) features instead (halves: references, samples)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    default_n = {"pr-memory": (10_000, 50_000), "fp16-membership": (5000, 5000)}.get(args.what, (0, 0))
    args.n_ref = args.n_ref or default_n[0]
    args.n_sample = args.n_sample or default_n[1]
    fn = {"sfid-overhead": sfid_overhead, "sfid-overhead-paired": sfid_overhead_paired, "pr-memory": pr_memory,
          "fp16-membership": fp16_membership}[args.what]
    record = fn(args)
    record.update(machine=platform.machine(), command="python " + " ".join(sys.argv))
    out = Path(args.out or RESULTS / f"adm_{args.what.replace('-', '_')}.json")
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
