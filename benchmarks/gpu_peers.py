"""The peers on a CUDA device, fed fidkit's weights, on two PNG folders: FID and seconds.

    python benchmarks/gpu_peers.py --weights W.npz --a DIR_A --b DIR_B [--batch-size 200] [--workers 8]

For a machine without the package registry (the GPU machines here), the peers' wheels are
installed beforehand (``pip install --no-deps --target``) and their weights are written
from fidkit's file into torch hub's cache under the names they load, so that all run the
same network. Peers: pytorch-fid 0.3.0 and torch-fidelity 0.4.0 (and torchmetrics, which
uses torch-fidelity's network), each with its defaults for workers where it fixes them.
Prints one JSON line per peer: {"impl", "fid", "seconds"}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def install_weights(weights_path: str) -> None:
    from fidkit.weights import load_file
    w = load_file(weights_path)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in w.tensors.items()}
    if not w.has_classifier:  # the peers' networks expect an fc layer; zeros serve pool3 features
        sd["fc.weight"] = torch.zeros(1008, 2048)
        sd["fc.bias"] = torch.zeros(1008)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    for name in ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"):
        torch.save(sd, hub / name)


def run(impl, a, b, batch_size, workers):
    t0 = time.perf_counter()
    if impl == "pytorch-fid":
        from pytorch_fid import fid_score
        value = fid_score.calculate_fid_given_paths([a, b], batch_size=batch_size, device="cuda", dims=2048,
                                                    num_workers=workers)
    elif impl == "torch-fidelity":
        import torch_fidelity
        r = torch_fidelity.calculate_metrics(input1=a, input2=b, fid=True, cuda=True, verbose=False, cache=False,
                                             batch_size=batch_size)
        value = r["frechet_inception_distance"]
    elif impl == "torchmetrics":
        from PIL import Image
        from torchmetrics.image.fid import FrechetInceptionDistance
        m = FrechetInceptionDistance(feature=2048, antialias=False).cuda()
        for folder, real in ((a, True), (b, False)):
            files = sorted(os.listdir(folder))
            for i in range(0, len(files), batch_size):
                batch = [np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"))
                         for f in files[i:i + batch_size]]
                m.update(torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).cuda(), real=real)
        value = float(m.compute())
    else:
        raise SystemExit(f"unknown peer {impl}")
    torch.cuda.synchronize()
    return {"impl": impl, "fid": float(value), "seconds": round(time.perf_counter() - t0, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--peers", default="pytorch-fid,torch-fidelity,torchmetrics")
    args = ap.parse_args()
    install_weights(args.weights)
    for impl in args.peers.split(","):
        try:
            print(json.dumps(run(impl, args.a, args.b, args.batch_size, args.workers)), flush=True)
        except Exception as e:  # noqa: BLE001 - one peer failing must not hide the others
            print(json.dumps({"impl": impl, "error": f"{type(e).__name__}: {str(e)[:200]}"}), flush=True)


if __name__ == "__main__":
    main()
