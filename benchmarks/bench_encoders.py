"""fidkit's DINOv2 ViT-L/14 and CLIP ViT-L/14-336 against the reference model code on the CPU.

    python benchmarks/bench_encoders.py [--images 4] [--batch-size 4] [--repeats 2] [--threads 2]
                                        [--encoders dinov2,clip] [--out benchmarks/results/encoders_cpu.json]
    python benchmarks/bench_encoders.py --interleaved ROUNDS ...      (speed ratios in one process)
    python benchmarks/bench_encoders.py --gemm --out ...              (the products alone, GFLOP/s)

Needs the reference packages (``pip install --no-deps -r tests/requirements-references.txt``).
The real weights cannot be downloaded here, so each encoder gets full-size random weights,
written once to a temporary file in the official layout (DINOv2: a state dict as
``dinov2_vitl14_pretrain.pth``; CLIP: an OpenAI-layout state dict with float16 visual
tensors) and loaded by every process from that file:

  reference  DINOv2: ``dinov2.models.vision_transformer.vit_large`` as the hub builds
             ``dinov2_vitl14`` + ``load_state_dict``, run under ``torch.no_grad``;
             CLIP: ``open_clip.model.build_model_from_openai_state_dict(...).float()``,
             ``encode_image(normalize=True)`` under ``torch.no_grad``;
  fidkit     ``fidkit.encoders.{dinov2,clip}.build(file)`` under ``torch.inference_mode``;
  fidkit+heap  the same inside ``fidkit.pipeline.reuse_freed_memory`` (freed activations
             stay in the heap), as fidkit's CPU pipeline runs its network.

Each runs in its own fresh process (peak RSS is that process's VmHWM, weights included), over the
same network input (tests/data images through the encoder's default preprocessing), one
warm-up batch, then ``--repeats`` timed passes over ``--images`` images; the best pass counts.
Processes run in the order reference, fidkit, fidkit+heap, twice (alternating), and each
implementation's best is reported. ``--interleaved ROUNDS`` instead loads both into one
process and times them batch by batch in alternating order (both inside
``reuse_freed_memory``), reporting the median of the per-round speed ratios: on a machine
whose load drifts, that ratio is steadier than separate processes' rates (no memory figures).
This mode also times fidkit with torch's own matrix products (``net.onednn = False``), so the
share of fidkit's gain that comes from oneDNN's products is measured in the same run. Full-size ViT-L runs at about one image per second on two
cores, so the image count is small: the figures are a rate, not a score.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def make_weights(encoder: str, path: Path) -> None:
    import torch
    if encoder == "dinov2":
        from _references import dinov2_reference
        torch.save(dinov2_reference(24, seed=0).state_dict(), path)
    else:
        from _references import open_clip_model
        ocm = open_clip_model()
        torch.manual_seed(0)
        vis = ocm.CLIPVisionCfg(layers=24, width=1024, patch_size=14, image_size=336)
        txt = ocm.CLIPTextCfg(context_length=8, vocab_size=64, width=64, heads=1, layers=1)
        m = ocm.CLIP(768, vision_cfg=vis, text_cfg=txt, quick_gelu=True)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        torch.save({k: (v.half() if k.startswith("visual.") else v) for k, v in m.state_dict().items()}, path)


def make_input(encoder: str, images: int, path: Path) -> None:
    from fidkit.sources import decode
    from fidkit.encoders import clip, dinov2
    mode = dinov2.EDM2Resize() if encoder == "dinov2" else clip.CMMDCropResize()
    files = sorted(glob.glob(str(ROOT / "tests" / "data" / "real_*" / "*.png")))
    prepared = [mode.to_network(mode.prepare(decode(files[i % len(files)]))[None])[0] for i in range(images)]
    import torch
    np.save(path, torch.stack(prepared).numpy())


def child(impl: str, encoder: str, weights: str, inputs: str, batch_size: int, repeats: int, threads: int) -> dict:
    import contextlib
    import warnings
    import torch
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    x = torch.from_numpy(np.load(inputs))
    if impl == "reference":
        if encoder == "dinov2":
            from _references import dinov2_vision_transformer
            vt = dinov2_vision_transformer()
            net = vt.vit_large(patch_size=14, img_size=518, init_values=1.0, ffn_layer="mlp", block_chunks=0)
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            net.eval()
            run = net
        else:
            from _references import open_clip_model
            net = open_clip_model().build_model_from_openai_state_dict(
                torch.load(weights, map_location="cpu", weights_only=True)).float().eval()

            def run(t):
                return net.encode_image(t, normalize=True)
        grad = torch.no_grad()
        ctx = contextlib.nullcontext()
    else:
        from fidkit.encoders import clip, dinov2
        from fidkit.pipeline import reuse_freed_memory
        enc = (dinov2 if encoder == "dinov2" else clip).build(weights)
        key = enc.default_feature

        def run(t):
            return enc(t)[key]
        grad = torch.inference_mode()
        ctx = reuse_freed_memory(torch.device("cpu")) if impl == "fidkit+heap" else contextlib.nullcontext()
    best, feats = float("inf"), None
    with grad, ctx:
        run(x[:batch_size])  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = [run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
            best = min(best, time.perf_counter() - t0)
            feats = torch.cat(out).float().numpy()
    return {"impl": impl, "images_per_s": len(x) / best, "seconds_best_pass": best,
            "peak_rss_mib": peak_rss_mib(), "features": feats.tolist()}


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: on Linux that survives fork and exec,
    so a child would report its parent's size if the parent was larger."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved(encoder: str, weights: str, inputs: str, batch_size: int, rounds: int, threads: int) -> dict:
    """Reference and fidkit in one process, timed batch by batch in alternating order, so that
    a busy machine's drifting load falls on both alike; the per-round ratios and their median."""
    import statistics
    import warnings
    import torch
    from fidkit.encoders import clip, dinov2
    from fidkit.pipeline import reuse_freed_memory
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    x = torch.from_numpy(np.load(inputs))[:batch_size]
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    if encoder == "dinov2":
        from _references import dinov2_vision_transformer
        ref = dinov2_vision_transformer().vit_large(patch_size=14, img_size=518, init_values=1.0, ffn_layer="mlp",
                                                    block_chunks=0)
        ref.load_state_dict(sd)
        ref = ref.eval()
        ref_run = ref
    else:
        from _references import open_clip_model
        ref = open_clip_model().build_model_from_openai_state_dict(dict(sd)).float().eval()

        def ref_run(t):
            return ref.encode_image(t, normalize=True)
    del sd
    enc = (dinov2 if encoder == "dinov2" else clip).build(weights)
    key = enc.default_feature

    def timed(fn, ctx):
        with ctx:
            t0 = time.perf_counter()
            out = fn(x)
            return time.perf_counter() - t0, out

    def ours(onednn):
        def run(t):
            enc.net.onednn = onednn
            return enc(t)[key]
        return run

    # fidkit as shipped, and with torch's own matrix products (``net.onednn = False``)
    runs = {"ref": (ref_run, torch.no_grad), "fidkit": (ours(True), torch.inference_mode),
            "fidkit_torch_matmul": (ours(False), torch.inference_mode)}
    secs = {k: [] for k in runs}
    outs = {}
    with reuse_freed_memory(torch.device("cpu")):
        for fn, ctx in runs.values():
            timed(fn, ctx())
        names = list(runs)
        for r in range(rounds):
            for who in names[r % 3:] + names[:r % 3]:  # rotate the order round by round
                fn, ctx = runs[who]
                sec, outs[who] = timed(fn, ctx())
                secs[who].append(sec)
    a = outs["ref"]

    def ratio(who):
        return round(statistics.median([r / f for r, f in zip(secs["ref"], secs[who])]), 3)

    return {"rounds": rounds, "images_per_batch": len(x),
            "reference_seconds": [round(v, 3) for v in secs["ref"]],
            "fidkit_seconds": [round(v, 3) for v in secs["fidkit"]],
            "fidkit_torch_matmul_seconds": [round(v, 3) for v in secs["fidkit_torch_matmul"]],
            "median_speed_vs_reference": ratio("fidkit"),
            "median_speed_vs_reference_torch_matmul": ratio("fidkit_torch_matmul"),
            "reference_images_per_s_best": round(len(x) / min(secs["ref"]), 4),
            "fidkit_images_per_s_best": round(len(x) / min(secs["fidkit"]), 4),
            "relative_difference_to_reference": float((outs["fidkit"] - a).norm() / a.norm()),
            "relative_difference_to_reference_torch_matmul":
                float((outs["fidkit_torch_matmul"] - a).norm() / a.norm())}


def gemm_rates(threads: int, repeats: int = 5) -> dict:
    """GFLOP/s of the ViT-L blocks' four products (qkv, output projection, fc1, fc2) at the
    token counts of one batch of 2 (DINOv2 at 224 px: 2×257 rows; CLIP at 336 px: 2×577), through
    torch's addmm (the BLAS it was built with) and through oneDNN's linear op as fidkit calls it."""
    import torch
    from fidkit.encoders import _linear
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    out = {}
    with torch.inference_mode():
        for rows in (2 * 257, 2 * 577):
            for k, n in ((1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024)):
                x, w, b = torch.randn(rows, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
                rate = {}
                for name, fn in (("torch_addmm", lambda: torch.addmm(b, x, w.t())),
                                 ("onednn", lambda: _linear.linear(x, w, b))):
                    fn()
                    best = min(_timed(fn) for _ in range(repeats))
                    rate[name] = round(2 * rows * k * n / best / 1e9, 1)
                out[f"{rows}x{k}->{n}"] = rate
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--encoders", default="dinov2,clip")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "encoders_cpu.json"))
    ap.add_argument("--child", nargs=4, metavar=("IMPL", "ENCODER", "WEIGHTS", "INPUTS"))
    ap.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                    help="instead: both in one process, ROUNDS alternating timed batches each (speed only)")
    ap.add_argument("--gemm", action="store_true",
                    help="instead: GFLOP/s of the ViT-L products through torch's addmm and through oneDNN")
    a = ap.parse_args()
    if a.gemm:
        r = {"command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
             "load_average_at_start": os.getloadavg(), "threads": a.threads, "gflops": gemm_rates(a.threads)}
        Path(a.out).write_text(json.dumps(r, indent=1) + "\n")
        print(json.dumps(r, indent=1))
        return
    if a.child:
        print(json.dumps(child(*a.child, a.batch_size, a.repeats, a.threads)))
        return
    record = {"command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                          "python": platform.python_version()},
              "images": a.images, "batch_size": a.batch_size, "threads": a.threads, "results": {}}
    import torch
    record["machine"]["torch"] = torch.__version__
    impls = ["reference", "fidkit", "fidkit+heap"]
    with tempfile.TemporaryDirectory(prefix="fidkit-bench-") as d:
        for encoder in a.encoders.split(","):
            w, inp = Path(d) / f"{encoder}.pt", Path(d) / f"{encoder}.npy"
            make_weights(encoder, w)
            make_input(encoder, a.images, inp)
            if a.interleaved:
                r = interleaved(encoder, str(w), str(inp), a.batch_size, a.interleaved, a.threads)
                print(encoder, r, file=sys.stderr, flush=True)
                record["results"][encoder] = r
                continue
            runs = {}
            for _ in range(a.rounds):
                for impl in impls:
                    cmd = [sys.executable, __file__, "--child", impl, encoder, str(w), str(inp),
                           "--batch-size", str(a.batch_size), "--repeats", str(a.repeats), "--threads", str(a.threads)]
                    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
                    print(encoder, impl, f"{r['images_per_s']:.3f} images/s", f"{r['peak_rss_mib']:.0f} MiB",
                          file=sys.stderr, flush=True)
                    prev = runs.get(impl)
                    if prev is None or r["images_per_s"] > prev["images_per_s"]:
                        runs[impl] = r
                    runs[impl].setdefault("all_images_per_s", [])
                    runs[impl]["all_images_per_s"] = (prev or {}).get("all_images_per_s", []) + [round(r["images_per_s"], 4)]
            ref = np.array(runs["reference"]["features"])
            out = {}
            for impl, r in runs.items():
                f = np.array(r.pop("features"))
                out[impl] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                out[impl]["relative_difference_to_reference"] = float(np.linalg.norm(f - ref) / np.linalg.norm(ref))
                out[impl]["speed_vs_reference"] = round(r["images_per_s"] / runs["reference"]["images_per_s"], 3)
            record["results"][encoder] = out
    Path(a.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["results"], indent=1))


if __name__ == "__main__":
    main()
