"""How far would each tensor-core arithmetic move the features and the FID? Emulated on the CPU.

    python benchmarks/emulate_precision.py [--fm 2048] [--threads 2] [--work DIR]
        [--out benchmarks/results/precision_emulation.json]

fidkit's Inception runs in float32 with the operands of every convolution rounded as tensor
cores would take them (:class:`fidkit.inception.Split` with ``emulate``): TF32 keeps 10
explicit mantissa bits, bfloat16 7; a product of two such values is exact in float32 and
products are summed in float32, which is what a float32 convolution of the rounded operands
computes. The hardware's own conversion of an operand is emulated both as round to nearest
even and as truncation, since a cuDNN kernel's conversion may be either. The reference is
strict float32 as fidkit computes on the CPU (batch norm not folded, channels_last); float64
checks float32 itself.

Candidates (``CANDIDATES``): plain TF32 with batch norm folded into the weights (fidkit's
``--precision tf32`` on CUDA) or kept out of them; split operands x = x_hi + x_lo,
w = w_hi + w_lo with 2 or 3 products (``tf32x3``: x_hi·w_hi + x_lo·w_hi + x_hi·w_lo, one
convolution call over operands stacked along the input channels); the same in bfloat16; and
``tf32x3`` only on the layers whose rounding moves the features most (per-layer sensitivity:
one layer at a time in plain TF32, the rest in float32).

Image sets: ``photos`` = tests/data/real_a vs real_b (10 + 10 crops, mixed sizes; FID between
them); ``fm-mini`` = the first ``--mini`` (64) test vs as many train images of
tests/data/fashion-mnist-mini; ``fm`` = the first ``--fm`` Fashion-MNIST test images (the
Debian dataset) vs ``reference_stats/fashion-mnist-train.npz`` (protocol ttur). For each
candidate and set: FID, its deviation relative to strict float32, the largest and mean
relative L2 error of the pool3 features, and the Gelbrich bound (below).

FID is a squared Fréchet distance d_F, a metric between Gaussians that never exceeds the
Wasserstein-2 distance of the distributions (Gelbrich). Pairing each image's features with
their perturbed value therefore bounds |√FID' − √FID| by e = √(mean ‖δ‖²) (× √(N/(N−1)) for
the unbiased covariance), summed over both sets: a worst case, reached only if every error
pointed the same way.

Cost on a GPU: ``products`` tensor-core products per convolution (FLOP multiplier over plain
TF32) in ``calls`` cuDNN calls; TF32 tensor cores run dense convolutions at about 7–8× the
float32 rate on an H100 (494 vs 67 TFLOP/s), so 3 products still leave ~2.5× float32's peak.

Features are kept under ``--work`` (one .npy per set and candidate), so a run that is stopped
resumes where it was; the JSON is rewritten after each candidate.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fidkit.api import load_weights  # noqa: E402
from fidkit.frechet import frechet_distance  # noqa: E402
from fidkit.inception import BasicConv2d, Split, conv_names  # noqa: E402
from fidkit.preprocess import get_protocol  # noqa: E402
from fidkit.sources import dataset_images, decode, list_images, read_idx_images  # noqa: E402
from fidkit.stats import Statistics  # noqa: E402
from fidkit.weights import build_network  # noqa: E402

TF32, BF16 = 10, 7
TF32_SPEEDUP_H100 = 494 / 67  # dense TF32 tensor-core vs float32 peak (H100 SXM data sheet)

# name -> (fold batch norm, Split or None, layers: None = all, "selective"; float64)
CANDIDATES = {
    "fp32": dict(fold=False, split=None, note="strict float32 as fidkit computes on the CPU: the reference"),
    "fp64": dict(fold=False, split=None, double=True, note="float64: how far float32 itself is"),
    "fp32-folded": dict(fold=True, split=None, note="float32, batch norm folded (fidkit's CUDA fp32 path)"),
    "tf32-nearest": dict(fold=True, split=Split(TF32, ("hh",), "nearest"),
                         note="plain TF32, batch norm folded into the rounded weight (fidkit --precision tf32)"),
    "tf32-truncate": dict(fold=True, split=Split(TF32, ("hh",), "truncate"), note="the same, truncating conversion"),
    "tf32-bn-out-nearest": dict(fold=False, split=Split(TF32, ("hh",), "nearest"),
                                note="plain TF32, batch norm scale kept out of the rounded weight (applied in fp32)"),
    "tf32-bn-out-truncate": dict(fold=False, split=Split(TF32, ("hh",), "truncate"), note="the same, truncating"),
    "tf32x2-weights-nearest": dict(fold=True, split=Split(TF32, ("hh", "hl"), "nearest"),
                                   note="weights split, activations not: x·w_hi + x·w_lo"),
    "tf32x2-activations-nearest": dict(fold=True, split=Split(TF32, ("hh", "lh"), "nearest"),
                                       note="activations split, weights not: x_hi·w + x_lo·w"),
    "tf32x3-nearest": dict(fold=True, split=Split(TF32, ("hh", "lh", "hl"), "nearest"),
                           note="fidkit --precision tf32x3, x_lo converted to nearest"),
    "tf32x3-truncate": dict(fold=True, split=Split(TF32, ("hh", "lh", "hl"), "truncate"),
                            note="fidkit --precision tf32x3, x_lo converted by truncation"),
    "tf32x3-bn-out-nearest": dict(fold=False, split=Split(TF32, ("hh", "lh", "hl"), "nearest"),
                                  note="tf32x3 with batch norm applied after the convolution in fp32"),
    "bf16x3-nearest": dict(fold=True, split=Split(BF16, ("hh", "lh", "hl"), "nearest"),
                           note="the same split in bfloat16 (7 mantissa bits)"),
    "tf32x3-selective-nearest": dict(fold=True, split=Split(TF32, ("hh", "lh", "hl"), "nearest"), layers="selective",
                                     note="tf32x3 on the most sensitive layers, plain TF32 (nearest) on the rest"),
}
# (set, candidate) in the order they run: what decides the choice first (the machine is
# shared and slow), the rest after; a stopped run keeps what it finished. A tuple of candidates
# runs chunk by chunk (256 images) over all of them, and is reported on the chunks all have.
PLAN = ([("photos", c) for c in ("fp32", "tf32x3-nearest", "tf32-nearest", "fp32-folded", "tf32x3-truncate",
                                 "tf32-truncate", "tf32-bn-out-nearest", "tf32x2-weights-nearest",
                                 "tf32x2-activations-nearest", "bf16x3-nearest", "tf32x3-selective-nearest",
                                 "tf32x3-bn-out-nearest", "tf32-bn-out-truncate", "fp64")]
        + [("fm", ("fp32", "tf32x3-nearest"))]  # chunk by chunk, both
        + [("fm-mini", c) for c in ("fp32", "tf32x3-nearest", "tf32-nearest", "tf32x3-truncate", "fp32-folded",
                                    "tf32-bn-out-nearest", "tf32x3-selective-nearest")]
        + [("fm", ("fp32", "tf32-nearest", "tf32x3-truncate", "fp32-folded", "tf32-truncate",
                   "tf32-bn-out-nearest"))])


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return r.stdout.strip() + ("+changes" if dirty else "")


def build(weights, cand: dict, selective_layers=None):
    net = build_network(weights)
    if cand.get("double"):
        return net.double()
    if cand["fold"]:
        net.fold_batch_norm()
    net = net.to(memory_format=torch.channels_last)
    split = cand["split"]
    if split is None:
        return net
    if cand.get("layers") == "selective":
        plain = Split(split.bits, ("hh",), split.emulate)
        for name, m in net.named_modules():
            if isinstance(m, BasicConv2d):
                m.set_split(split if name in selective_layers else plain)
        return net
    return net.set_split(split)


def features(net, x_batches, double=False) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for x in x_batches():
            x = x.double() if double else x.contiguous(memory_format=torch.channels_last)
            out.append(net(x).double().numpy())
    return np.concatenate(out)


def image_sets(fm_n: int, mini_n: int = 64, batch: int = 16, chunk: int = 256):
    """name -> (list of (part name, callable yielding network input batches))."""
    ttur = get_protocol("ttur")

    def arrays(imgs):
        def gen():
            for s in range(0, len(imgs), batch):
                chunk = imgs[s:s + batch]
                if isinstance(chunk, np.ndarray):  # one size
                    yield ttur.to_network(torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2))))
                else:  # mixed sizes: one image at a time, then one batch
                    yield torch.cat([ttur.to_network(ttur.prepare(im)[None]) for im in chunk])
        return gen

    data = ROOT / "tests" / "data"
    photos = {k: [decode(p) for p in list_images(data / k)] for k in ("real_a", "real_b")}
    mini = {k: np.repeat(read_idx_images(data / "fashion-mnist-mini" / f)[:mini_n, :, :, None], 3, axis=3)
            for k, f in (("test", "t10k-images-idx3-ubyte.gz"), ("train", "train-images-idx3-ubyte.gz"))}
    sets = {
        "photos": [("real_a", arrays(photos["real_a"])), ("real_b", arrays(photos["real_b"]))],
        "fm-mini": [(f"test{mini_n}", arrays(mini["test"])), (f"train{mini_n}", arrays(mini["train"]))],
    }
    if fm_n:
        fm = dataset_images("fashion-mnist-test", fm_n)
        sets["fm"] = [(f"test{s}-{min(s + chunk, fm_n)}", arrays(fm[s:s + chunk])) for s in range(0, fm_n, chunk)]
    return sets


def moments(f):
    return f.mean(0), np.cov(f, rowvar=False)


def fid_of(set_name, feats: list) -> float:
    if set_name == "fm":  # one set, given in chunks
        ref = Statistics.load(ROOT / "reference_stats" / "fashion-mnist-train.npz")
        return float(frechet_distance(*moments(feats[0]), ref.mu, ref.sigma))
    return float(frechet_distance(*moments(feats[0]), *moments(feats[1])))


def rel_errors(f, ref):
    r = np.linalg.norm(f - ref, axis=1) / np.linalg.norm(ref, axis=1)
    return float(r.max()), float(r.mean())


def gelbrich_bound(feats, refs, fid_ref):
    """Largest relative FID change the feature errors allow (see the module docstring)."""
    e = 0.0
    for f, r in zip(feats, refs):
        n = len(f)
        e += np.sqrt(np.mean(np.sum((f - r) ** 2, axis=1)) * n / (n - 1))
    s = np.sqrt(fid_ref)
    return float(((s + e) ** 2 - fid_ref) / fid_ref)


def conv_flops(weights) -> dict:
    """Multiply-adds ×2 of each convolution for one image (from the shapes of one pass)."""
    net = build_network(weights)
    flops = {}
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, BasicConv2d):
            def hook(mod, inp, out, name=name):
                w = mod.conv.weight
                flops[name] = 2 * out.shape[1] * out.shape[2] * out.shape[3] * w.shape[1] * w.shape[2] * w.shape[3]
            hooks.append(m.register_forward_hook(hook))
    with torch.inference_mode():
        net(torch.zeros(1, 3, 299, 299))
    for h in hooks:
        h.remove()
    return flops


def sensitivity(weights, n_images: int, log) -> dict:
    """Per layer: relative L2 error of pool3 (largest over the images) when only that layer runs in
    plain TF32 (nearest; batch norm folded), all others in float32 (folded)."""
    data = ROOT / "tests" / "data"
    ttur = get_protocol("ttur")
    mini = np.repeat(read_idx_images(data / "fashion-mnist-mini" / "t10k-images-idx3-ubyte.gz")[:n_images // 2,
                     :, :, None], 3, axis=3)
    x = torch.cat([ttur.to_network(torch.from_numpy(np.ascontiguousarray(mini.transpose(0, 3, 1, 2))))]
                  + [ttur.to_network(ttur.prepare(decode(p))[None])
                     for p in list_images(data / "real_a")[:n_images - n_images // 2]])
    x = x.contiguous(memory_format=torch.channels_last)
    net = build_network(weights).fold_batch_norm().to(memory_format=torch.channels_last)
    plain = Split(TF32, ("hh",), "nearest")
    modules = dict(net.named_modules())
    out = {}
    with torch.inference_mode():
        ref = net(x).double().numpy()
        for i, name in enumerate(conv_names(net)):
            modules[name].set_split(plain)
            out[name] = rel_errors(net(x).double().numpy(), ref)[0]
            modules[name].set_split(None)
            if i % 10 == 0:
                log(f"sensitivity {i + 1}/94 {name}: {out[name]:.2e}")
    return out


def choose_selective(sens: dict, budget: float) -> list:
    """The layers to split: all but the least sensitive ones whose summed errors stay under ``budget``."""
    order = sorted(sens, key=sens.get)
    plain, total = [], 0.0
    for name in order:
        if total + sens[name] > budget:
            break
        total += sens[name]
        plain.append(name)
    return [n for n in sens if n not in plain]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fm", type=int, default=2048, help="Fashion-MNIST test images (0: skip the set)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sensitivity-images", type=int, default=4)
    ap.add_argument("--work", default="/tmp/fidkit-precision-emulation")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "precision_emulation.json"))
    ap.add_argument("--sets", default="photos,fm-mini,fm")
    ap.add_argument("--mini", type=int, default=64, help="images of each fashion-mnist-mini split")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    def log(msg):
        print(f"[{time.time() - t_start:7.0f} s] {msg}", file=sys.stderr, flush=True)

    weights = load_weights()
    flops = conv_flops(weights)
    total_flops = sum(flops.values())
    result = {
        "command": "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}"] + sys.argv[1:]),
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), shared; torch "
                   f"{torch.__version__}, {args.threads} threads",
        "weights_digest": weights.digest,
        "protocol": "ttur",
        "reference": "fp32 (strict float32, batch norm not folded, channels_last: fidkit's CPU path)",
        "gpu_cost_model": f"products = tensor-core products per convolution (FLOP multiplier over plain TF32); "
                          f"time relative to strict fp32 ~ products / {TF32_SPEEDUP_H100:.1f} (H100 dense TF32 vs "
                          f"fp32 peak), convolutions only",
        "conv_gflops_per_image": round(total_flops / 1e9, 3),
        "candidates": {},
    }
    out_path = Path(args.out)

    def save():
        result["seconds"] = round(time.time() - t_start, 1)
        out_path.write_text(json.dumps(result, indent=1) + "\n")

    sens_file = work / "sensitivity.json"
    if sens_file.is_file():
        sens = json.loads(sens_file.read_text())
    else:
        sens = sensitivity(weights, args.sensitivity_images, log)
        sens_file.write_text(json.dumps(sens))
    result["sensitivity"] = {
        "how": f"pool3 relative L2 error (largest of {args.sensitivity_images} images: Fashion-MNIST and photo "
               f"crops) with only that layer in plain TF32 (nearest), the others float32; batch norm folded",
        "per_layer": {k: {"error": v, "gflops": round(flops[k] / 1e9, 4)} for k, v in
                      sorted(sens.items(), key=lambda kv: -kv[1])},
        "sum_of_errors": sum(sens.values()),
    }
    selective = None
    sets = image_sets(args.fm, args.mini)
    refs = {}
    wanted = set(args.sets.split(","))

    def ensure_selective():
        nonlocal selective
        if selective is None:
            x3 = result["candidates"].get("tf32x3-nearest", {}).get("photos")
            budget = x3["max_feature_error"] if x3 else 1e-6
            selective = choose_selective(sens, budget)
            result["selective"] = {
                "rule": "split every layer except the least sensitive ones whose summed sensitivity stays "
                        "under tf32x3-nearest's own largest feature error on photos",
                "budget": budget, "split_layers": len(selective),
                "plain_layers": sorted(set(sens) - set(selective)),
            }

    def part_features(set_name, cname, part, gen):
        f_path = work / f"{set_name}.{part}.{cname}.npy"
        if f_path.is_file():
            return np.load(f_path), 0
        cand = CANDIDATES[cname]
        if cand.get("layers") == "selective":
            ensure_selective()
            if len(selective) == len(sens):  # every layer split: the features are tf32x3's own
                return part_features(set_name, "tf32x3-nearest", part, gen)[0], 0
        f = features(build(weights, cand, selective), gen, cand.get("double", False))
        np.save(f_path, f)
        return f, len(f)

    def evaluate(set_name, cname, parts):
        cand = CANDIDATES[cname]
        if cand.get("layers") == "selective":
            ensure_selective()
        t0 = time.time()
        feats, n_img = [], 0
        for part, gen in parts:
            f, n = part_features(set_name, cname, part, gen)
            feats.append(f)
            n_img += n
        secs = time.time() - t0
        if set_name == "fm":
            feats = [np.concatenate(feats)]
        if cname == "fp32":
            refs[set_name] = feats
        fid = fid_of(set_name, feats)
        ref_fid = fid if cname == "fp32" else result["candidates"]["fp32"][set_name]["fid"]
        split = cand["split"]
        if split is None:
            products = 1
        elif cand.get("layers") == "selective":
            products = sum(flops[k] * (split.products if k in selective else 1) for k in flops) / total_flops
        else:
            products = split.products
        errs = [rel_errors(f, r) for f, r in zip(feats, refs[set_name])]
        entry = {
            "n": [len(f) for f in feats],
            "fid": fid,
            "fid_relative_deviation": abs(fid - ref_fid) / ref_fid,
            "max_feature_error": max(e[0] for e in errs),
            "mean_feature_error": float(np.mean([e[1] for e in errs])),
            "gelbrich_bound_relative_fid": gelbrich_bound(feats, refs[set_name], ref_fid),
        }
        c = result["candidates"].setdefault(cname, {"note": cand["note"]})
        if n_img:
            c.setdefault("cpu_seconds_per_image", {})[set_name] = round(secs / n_img, 3)
        if not cand.get("double"):
            c["products"] = round(products, 3)
            c["calls_per_conv"] = 1
            c["est_conv_time_vs_fp32"] = round(products / TF32_SPEEDUP_H100, 3) if split else 1.0
        if cname == "fp32-folded" or not cand["fold"]:
            c["folded"] = bool(cand["fold"])
        c[set_name] = entry
        log(f"{set_name} {cname} n={entry['n']}: FID {fid:.6f} dev {entry['fid_relative_deviation']:.2e} feat "
            f"{entry['max_feature_error']:.2e} ({secs:.0f} s)")
        save()

    for set_name, cnames in PLAN:
        if set_name not in sets or set_name not in wanted:
            continue
        if isinstance(cnames, str):
            evaluate(set_name, cnames, sets[set_name])
            continue
        parts = sets[set_name]
        for k in range(1, len(parts) + 1):  # chunk by chunk: every candidate has the same images
            for cname in cnames:
                part_features(set_name, cname, *parts[k - 1])
            for cname in cnames:  # reported after every chunk
                evaluate(set_name, cname, parts[:k])
    save()
    log(f"wrote {out_path}")


if __name__ == "__main__":
    main()
