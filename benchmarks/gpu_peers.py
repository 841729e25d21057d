"""fidkit and the peers on a CUDA device, fed the same weights, on two PNG folders: FID and seconds.

    python benchmarks/gpu_peers.py --weights W.npz --a DIR_A --b DIR_B [--batch-size 200] [--workers 8]
                                   [--impls fidkit-fp32,fidkit-tf32,pytorch-fid,torch-fidelity,torchmetrics]

Each implementation runs in its own fresh process, one after another; ``wall_seconds`` is
that process's whole life (Python start, imports, CUDA start, decoding, network, FID), as a
user running one command sees it, and ``seconds`` the part from folders to FID inside it.
``conv_tf32`` records whether cuDNN convolutions were allowed TF32 in that run (PyTorch's
default is yes; fidkit's default fp32 turns it off).

For a machine without the package registry (the GPU machines here), the peers' wheels are
installed beforehand (``pip install --no-deps --target``) and their weights are written
from fidkit's file into torch hub's cache under the names they load, so that all run the
same network. Peers: pytorch-fid 0.3.0 and torch-fidelity 0.4.0 (and torchmetrics, which
uses torch-fidelity's network), each with its defaults for workers where it fixes them.
Prints one JSON line per peer: {"impl", "fid", "seconds"}.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
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


def run(impl, a, b, batch_size, workers, weights):
    conv_tf32 = torch.backends.cudnn.allow_tf32
    t0 = time.perf_counter()
    if impl.startswith("fidkit-"):
        import fidkit
        prec = impl.split("-", 1)[1]
        conv_tf32 = prec != "fp32"
        value = fidkit.compare(a, b, device="cuda", weights=weights, workers=workers, precision=prec,
                               progress=False).fid
    elif impl == "pytorch-fid":
        import scipy.linalg
        from pytorch_fid import fid_score
        if "disp" not in inspect.signature(scipy.linalg.sqrtm).parameters:  # newer SciPy removed disp=
            plain = scipy.linalg.sqrtm
            scipy.linalg.sqrtm = lambda m, disp=True, **kw: plain(m, **kw) if disp else (plain(m, **kw), 0.0)
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
    return {"impl": impl, "fid": float(value), "seconds": round(time.perf_counter() - t0, 2), "conv_tf32": conv_tf32}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--impls", default="fidkit-fp32,fidkit-tf32,pytorch-fid,torch-fidelity,torchmetrics")
    ap.add_argument("--only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        try:
            print(json.dumps(run(args.only, args.a, args.b, args.batch_size, args.workers, args.weights)), flush=True)
        except Exception as e:  # noqa: BLE001 - one peer failing must not hide the others
            print(json.dumps({"impl": args.only, "error": f"{type(e).__name__}: {str(e)[:200]}"}), flush=True)
        return
    install_weights(args.weights)
    n = len(os.listdir(args.a)) + len(os.listdir(args.b))
    for impl in args.impls.split(","):
        cmd = [sys.executable, __file__, "--weights", args.weights, "--a", args.a, "--b", args.b,
               "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--only", impl]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        row = json.loads(lines[-1]) if lines else {"impl": impl, "error": proc.stderr.strip()[-300:]}
        row.update({"wall_seconds": round(wall, 2), "images": n, "images_per_s_wall": round(n / wall, 1),
                    "device": torch.cuda.get_device_name(0)})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
