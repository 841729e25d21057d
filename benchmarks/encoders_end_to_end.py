"""The encoder commands end to end, full size, with weights files in the official formats.

    python benchmarks/encoders_end_to_end.py [--images 32] [--out benchmarks/results/encoders_end_to_end.json]

Runs, as a user would, in fresh processes:

    fidkit compute A B --encoder dinov2-vitl14 --encoder-weights dinov2_vitl14_pretrain.pth \\
        --metrics fd,kid,pr,fd-inf --json                           (both preprocessing modes)
    fidkit compute A B --encoder clip-vitl14-336 --encoder-weights ViT-L-14-336px.pt --metrics cmmd --json

The official weights cannot be downloaded on the build machines, so the files hold full-size
random weights written in the official layouts (DINOv2: a state dict ``.pth``; CLIP: an
OpenAI-layout state dict with float16 visual tensors, as ``benchmarks/bench_encoders.py``
writes them); fidkit warns that their digest is not the official one, and the scores mean
nothing. What this shows: the full-size towers load from those formats and every metric of
the command runs on real photographs. A and B are ``--images`` random crops (64-256 px, RGB)
of the photographs in tests/data/real_a and real_b.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def crops(src: Path, out: Path, n: int, seed: int) -> None:
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(src.glob("*.png"))]
    for i in range(n):
        a = photos[i % len(photos)]
        h, w = a.shape[:2]
        side = int(rng.integers(min(64, h, w), min(256, h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        Image.fromarray(a[y:y + side, x:x + side]).save(out / f"{i:04d}.png")


def run(cmd: list) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"})
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return {"command": " ".join(["fidkit"] + cmd[3:]), "seconds": round(took, 1), "result": json.loads(r.stdout),
            "stderr": [line for line in r.stderr.splitlines() if line.strip()]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "encoders_end_to_end.json"))
    a = ap.parse_args()
    from bench_encoders import make_weights
    import torch
    record = {"command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
              "load_average_at_start": os.getloadavg(), "torch": torch.__version__, "images_per_side": a.images,
              "weights": "full-size random weights in the official formats (not the official files)", "runs": []}
    fidkit = [sys.executable, "-m", "fidkit", "compute"]
    with tempfile.TemporaryDirectory(prefix="fidkit-e2e-") as d:
        d = Path(d)
        crops(ROOT / "tests" / "data" / "real_a", d / "A", a.images, 0)
        crops(ROOT / "tests" / "data" / "real_b", d / "B", a.images, 1)
        dino, clip = d / "dinov2_vitl14_pretrain.pth", d / "ViT-L-14-336px.pt"
        make_weights("dinov2", dino)
        make_weights("clip", clip)
        for mode in ("edm2", "dgm-eval"):
            record["runs"].append(run(fidkit + [str(d / "A"), str(d / "B"), "--encoder", "dinov2-vitl14",
                                                "--encoder-weights", str(dino), "--protocol", mode,
                                                "--metrics", "fd,kid,pr,fd-inf", "--json"]))
            print(record["runs"][-1]["command"], record["runs"][-1]["seconds"], "s", file=sys.stderr, flush=True)
        record["runs"].append(run(fidkit + [str(d / "A"), str(d / "B"), "--encoder", "clip-vitl14-336",
                                            "--encoder-weights", str(clip), "--metrics", "cmmd", "--json"]))
        print(record["runs"][-1]["command"], record["runs"][-1]["seconds"], "s", file=sys.stderr, flush=True)
    for r in record["runs"]:  # temporary paths out of the record
        r["command"] = r["command"].replace(str(d) + "/", "")
        r["stderr"] = [line.replace(str(d) + "/", "") for line in r["stderr"]]
        r["result"] = json.loads(json.dumps(r["result"]).replace(str(d) + "/", ""))
    Path(a.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({r["command"]: {k: v for k, v in r["result"].items() if not isinstance(v, (dict, list))}
                      for r in record["runs"]}, indent=1))


if __name__ == "__main__":
    main()
