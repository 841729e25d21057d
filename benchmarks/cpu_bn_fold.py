"""Would folding batch norm into the convolutions speed up the CPU path, and by how much
would it move the features? Network only (no decoding), protocol-scaled random input.

    python benchmarks/cpu_bn_fold.py [--batch-size 32] [--threads 2] [--repeats 2]

Prints images/s of the network as fidkit runs it (channels_last, inference mode) and of a
copy with each BN folded into its convolution's weight and bias, and the relative L2
difference of their pool3 features. fidkit does not fold today.
"""
import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fidkit.api import load_weights  # noqa: E402
from fidkit.inception import BasicConv2d  # noqa: E402
from fidkit.weights import build_network  # noqa: E402


def folded(net):
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, BasicConv2d):
            s = m.bn.weight / torch.sqrt(m.bn.running_var + m.bn.eps)
            m.conv.weight.data = (m.conv.weight * s.view(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
            m.conv.bias = torch.nn.Parameter(m.bn.bias - m.bn.running_mean * s, requires_grad=False)
            m.bn = torch.nn.Identity()
    return net


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = build_network(load_weights()).to(memory_format=torch.channels_last)
    fnet = folded(net)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch_size, 3, 299, 299, generator=g) * 2 - 1).contiguous(memory_format=torch.channels_last)
    out = {"batch_size": args.batch_size, "threads": args.threads}
    with torch.inference_mode():
        a, b = net(x), fnet(x)
        out["feature_relative_difference"] = float((a - b).norm() / a.norm())
        for name, n in (("as_is", net), ("bn_folded", fnet)):
            t = time.perf_counter()
            for _ in range(args.repeats):
                n(x)
            out[f"{name}_images_per_s"] = round(args.repeats * args.batch_size / (time.perf_counter() - t), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
