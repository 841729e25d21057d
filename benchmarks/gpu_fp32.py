"""Where does strict-fp32 time go on a CUDA device, and which network variants help?

    python benchmarks/gpu_fp32.py --weights W.npz [--n 20000] [--batch-sizes 500,1000]
                                  [--out benchmarks/results/gpu_fp32.json]

TF32 is off for matmul and cuDNN throughout (fidkit's default ``fp32``); cuDNN's
autotuner is on. Input: in-memory random uint8 32×32 images on the device, protocol ttur
(resize to 299 on the device). For each variant and batch size it times the network
path (resize + network, synchronised) over n images and reports images/s; then it
profiles one batch of each variant and sums the GPU kernel time by kind (convolution,
batch norm, ReLU, pooling, concatenation, resize, other).

Variants:
  as_is            convolution, batch norm, ReLU (what fidkit ran before folding)
  bn_folded        batch norm folded into the convolution's weight and bias, ReLU in place
  bn_folded_fused  folded, and convolution + bias + ReLU in one cuDNN call
                   (``torch.cudnn_convolution_relu``): what fidkit runs on CUDA in fp32/tf32
each in NCHW and channels_last. The features of every variant are compared with as_is
(relative L2 difference over one batch).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fidkit.api import load_weights  # noqa: E402
from fidkit.inception import BasicConv2d  # noqa: E402
from fidkit.preprocess import get_protocol  # noqa: E402
from fidkit.weights import build_network  # noqa: E402


def unfused_forward(m: BasicConv2d):
    """A folded block's convolution and ReLU as two kernels (BasicConv2d fuses them on CUDA)."""
    def forward(x):
        return F.relu(m.conv(x), inplace=True)
    return forward


def variant(base, name: str, fmt):
    net = copy.deepcopy(base)
    if name != "as_is":
        net.fold_batch_norm()  # on CUDA a folded BasicConv2d runs the fused cuDNN call itself
    if name == "bn_folded":
        for m in net.modules():
            if isinstance(m, BasicConv2d):
                m.forward = unfused_forward(m)
    return net.to(memory_format=fmt)


def kind(kernel: str) -> str:
    k = kernel.lower()
    for key, label in (("batch_norm", "batch_norm"), ("bn_fw", "batch_norm"), ("relu", "relu"),
                       ("clamp", "relu"), ("threshold", "relu"), ("pool", "pool"), ("cat", "cat"),
                       ("upsample", "resize"), ("index", "resize"), ("gather", "resize"),
                       ("conv", "conv"), ("gemm", "conv"), ("xmma", "conv"), ("sm90", "conv"),
                       ("sm80", "conv"), ("winograd", "conv"), ("fft", "conv"), ("implicit", "conv"),
                       ("cudnn", "conv"), ("cutlass", "conv")):
        if key in k:
            return label
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch-sizes", default="500,1000")
    ap.add_argument("--device", default="cuda", help="cpu only to smoke-test this script")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_fp32.json"))
    args = ap.parse_args()

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    w = load_weights(args.weights)
    base = build_network(w)
    proto = get_protocol("ttur")
    rec = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
           "python": platform.python_version(), "n": args.n, "tf32": False, "cudnn_benchmark": True,
           "weights_digest": w.digest, "command": " ".join(sys.argv), "throughput": [], "profile": {},
           "feature_relative_difference": {}}
    g = torch.Generator(device=dev).manual_seed(0)
    imgs = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, device=dev, generator=g)
    names = ("as_is", "bn_folded", "bn_folded_fused")
    fmts = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    ref = None
    with torch.inference_mode():
        for fname, fmt in fmts.items():
            for name in names:
                try:
                    net = variant(base, name, fmt).to(dev)
                    probe = proto.to_network(imgs[:200]).contiguous(memory_format=fmt)
                    feats = net(probe)
                except Exception as e:  # a variant this build cannot run
                    rec["throughput"].append({"variant": name, "format": fname, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                    print(json.dumps(rec["throughput"][-1]), flush=True)
                    continue
                if ref is None:
                    ref = feats
                rec["feature_relative_difference"][f"{name}/{fname}"] = float((feats - ref).norm() / ref.norm())
                for bs in [int(b) for b in args.batch_sizes.split(",")]:
                    for s in range(0, 2 * bs, bs):  # warm-up: autotuner, allocator
                        net(proto.to_network(imgs[s:s + bs]).contiguous(memory_format=fmt))
                    sync()
                    t = time.perf_counter()
                    for s in range(0, args.n, bs):
                        net(proto.to_network(imgs[s:s + bs]).contiguous(memory_format=fmt))
                    sync()
                    sec = time.perf_counter() - t
                    row = {"variant": name, "format": fname, "batch_size": bs, "seconds": round(sec, 3),
                           "images_per_s": round(args.n / sec, 1)}
                    rec["throughput"].append(row)
                    print(json.dumps(row), flush=True)
                bs = int(args.batch_sizes.split(",")[0])
                x = imgs[:bs]
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU]) as prof:
                    net(proto.to_network(x).contiguous(memory_format=fmt))
                    sync()
                by_kind = defaultdict(float)
                kernels = []
                for e in prof.key_averages():
                    us = e.self_device_time_total if cuda else e.self_cpu_time_total
                    if us <= 0:
                        continue
                    by_kind[kind(e.key)] += us
                    kernels.append((us, e.key[:90], e.count))
                total = sum(by_kind.values())
                kernels.sort(reverse=True)
                rec["profile"][f"{name}/{fname}"] = {
                    "batch_size": bs, "gpu_ms_per_batch": round(total / 1000, 2),
                    "ms_by_kind": {k: round(v / 1000, 2) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
                    "top_kernels": [{"ms": round(us / 1000, 2), "calls": c, "kernel": k} for us, k, c in kernels[:12]]}
                print(json.dumps({f"{name}/{fname}": rec["profile"][f"{name}/{fname}"]["ms_by_kind"]}), flush=True)
                del net
                if cuda:
                    torch.cuda.empty_cache()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
