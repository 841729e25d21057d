"""Chooses fidkit's CUDA settings by measurement: memory format (NCHW / channels_last) and
cuDNN autotuning (cudnn.benchmark) for the network in strict fp32 (TF32 off), tf32 and bf16.

    python benchmarks/gpu_formats.py [--n 20000] [--batch-size 500]

Weights are random (speed does not depend on their values); input is uint8 32×32 on the
device, resized by the ttur protocol as in fidkit. Prints one JSON line per setting.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fidkit.pipeline import precision  # noqa: E402
from fidkit.inception import FIDInception  # noqa: E402
from fidkit.preprocess import get_protocol  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the network (fp32)")
    args = ap.parse_args()
    dev = torch.device("cuda")
    proto = get_protocol("ttur")
    x = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, device=dev)
    for bench in (False, True):
        torch.backends.cudnn.benchmark = bench
        for fmt in (torch.contiguous_format, torch.channels_last):
            net = FIDInception(with_classifier=False).to(dev).to(memory_format=fmt)
            for mode in ("fp32", "tf32", "bf16"):
                with torch.inference_mode(), precision(dev, mode):
                    for s in range(0, 2 * args.batch_size, args.batch_size):  # warm-up / autotune
                        net(proto.to_network(x[s:s + args.batch_size]).contiguous(memory_format=fmt))
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    for s in range(0, args.n, args.batch_size):
                        net(proto.to_network(x[s:s + args.batch_size]).contiguous(memory_format=fmt))
                    torch.cuda.synchronize()
                    sec = time.perf_counter() - t
                print(json.dumps({"cudnn_benchmark": bench, "format": "channels_last" if fmt is torch.channels_last
                                  else "NCHW", "precision": mode, "images_per_s": round(args.n / sec, 1)}), flush=True)

    if args.compile:
        torch.backends.cudnn.benchmark = True
        for fmt in (torch.contiguous_format, torch.channels_last):
            net = torch.compile(FIDInception(with_classifier=False).to(dev).to(memory_format=fmt))
            with torch.inference_mode(), precision(dev, "fp32"):
                t = time.perf_counter()
                for s in range(0, 2 * args.batch_size, args.batch_size):
                    net(proto.to_network(x[s:s + args.batch_size]).contiguous(memory_format=fmt))
                torch.cuda.synchronize()
                warm = time.perf_counter() - t
                t = time.perf_counter()
                for s in range(0, args.n, args.batch_size):
                    net(proto.to_network(x[s:s + args.batch_size]).contiguous(memory_format=fmt))
                torch.cuda.synchronize()
                sec = time.perf_counter() - t
            print(json.dumps({"compile": True, "format": "channels_last" if fmt is torch.channels_last else "NCHW",
                              "precision": "fp32", "compile_and_warmup_s": round(warm, 1),
                              "images_per_s": round(args.n / sec, 1)}), flush=True)


if __name__ == "__main__":
    main()
