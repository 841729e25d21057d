"""Disturbance baselines: FID and KID between a set of real images and disturbed copies of
it, at five levels of six disturbances (the experiment of the TTUR paper's appendix).

    python benchmarks/baselines.py [--n N] [--sets fashion-mnist,photos] [--device auto]
                                   [--out benchmarks/results/baselines]

Image sets (real images, offline):

* ``fashion-mnist``: the first N images of the Fashion-MNIST test split (28×28 grayscale,
  read with ``fidkit.dataset_images``; ``apt-get install dataset-fashion-mnist``);
* ``photos``: N crops of 64×64 of the photographs inside scikit-image
  (``benchmarks/make_images.py``, seed 0, split "all").

Disturbances, applied to the uint8 images (values 0..255) with a fixed seed; each level
disturbs the same images with the same random draws, more strongly, so the levels are
nested (a pixel salted at one level stays salted at the next):

* ``gaussian_noise``: (1 − α)·X + α·N, N = clip(127.5 + 63.75·z, 0, 255), z ~ N(0, 1)
  per pixel and channel; α ∈ {0.05, 0.1, 0.25, 0.5, 0.75};
* ``gaussian_blur``: a Gaussian filter of standard deviation α pixels over height and
  width; α ∈ {0.5, 1, 2, 3, 4};
* ``black_rectangles``: five black rectangles per image, each α·H × α·W, centred at fixed
  random points; α ∈ {0.1, 0.2, 0.3, 0.4, 0.5};
* ``swirl``: ``skimage.transform.swirl`` of strength α around the centre, radius 0.75·size
  (bilinear, reflected borders); α ∈ {1, 2, 3, 4, 5};
* ``salt_and_pepper``: a fraction α of the pixel positions set to black or white (all
  channels); α ∈ {0.002, 0.005, 0.01, 0.02, 0.05}. (A first run with α ∈ {0.01, 0.05, 0.1,
  0.2, 0.3} saturated on the photographs: FID 183 at 1%, then 280, 290, 279, 285, so not
  monotone beyond 5% (Spearman 0.5); that run stays in the JSON under ``replaced``.);
* ``contamination``: a fraction α of the images replaced by images of the other set
  (Fashion-MNIST by photograph crops, the photographs by Fashion-MNIST training images),
  resized to the set's size; α ∈ {0.1, 0.2, 0.3, 0.5, 0.75}.

For each set, the clean images go through the network once; each disturbed copy once.
FID (protocol ttur, float64 statistics) and KID (torch-fidelity's estimator, 100 subsets of
min(N, 1000); with N ≤ 1000 every subset is the whole set, so the KID std is 0 and the mean
is the unbiased MMD² over all images) are computed between the clean set and its disturbed
copy; level 0 is the
clean set itself (FID 0). The Inception Score needs weights with a classifier: when the
weights have none (the registry's features-only file), IS is recorded as unavailable with
the reason. The Spearman rank correlation between the five levels and the FID values is
reported per disturbance and set; the TTUR paper's claim is that it is 1.

``--kinds`` runs some disturbances only; with ``--update`` their results replace those in
an existing ``OUT.json`` (the replaced ones are kept under ``replaced``, with the command
that made them) and the plots are redrawn from the JSON.

Writes ``OUT.json`` (every value, the commands, the machine), ``OUT.png`` (six panels, FID
per level for each set, KID dashed on the right axis) and ``OUT_examples.png`` (one image
at each level of each disturbance). Defaults: N = 200 on the CPU, 5000 on a GPU.
Needs scikit-image and matplotlib (``pip install scikit-image matplotlib``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fidkit  # noqa: E402
from fidkit.api import extract  # noqa: E402

LEVELS = {
    "gaussian_noise": [0.05, 0.1, 0.25, 0.5, 0.75],
    "gaussian_blur": [0.5, 1.0, 2.0, 3.0, 4.0],
    "black_rectangles": [0.1, 0.2, 0.3, 0.4, 0.5],
    "swirl": [1.0, 2.0, 3.0, 4.0, 5.0],
    "salt_and_pepper": [0.002, 0.005, 0.01, 0.02, 0.05],
    "contamination": [0.1, 0.2, 0.3, 0.5, 0.75],
}
SETS = ("fashion-mnist", "photos")


# --- image sets: uint8 (N, H, W, 3) -------------------------------------------------------

def photo_crops(n: int, size: int, seed: int) -> np.ndarray:
    """n crops of size×size of scikit-image's photographs (make_images.py) as uint8 NHWC."""
    from make_images import make_images

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(tmp, n, size, seed=seed)
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 NHWC images resized to size×size with PIL bilinear."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


def load_set(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The clean images of a set and the images of the other set that contaminate it."""
    if name == "fashion-mnist":
        clean = fidkit.dataset_images("fashion-mnist-test", n)
        other = resize_all(photo_crops(n, 64, seed=1), 28)
    elif name == "photos":
        clean = photo_crops(n, 64, seed=0)
        other = resize_all(fidkit.dataset_images("fashion-mnist-train", n), 64)
    else:
        raise SystemExit(f"baselines.py: unknown image set {name!r}; choose from {', '.join(SETS)}")
    if len(clean) < n:
        raise SystemExit(f"baselines.py: {name} has only {len(clean)} images, asked for {n}")
    return np.ascontiguousarray(clean), np.ascontiguousarray(other)


# --- disturbances: uint8 NHWC -> uint8 NHWC ------------------------------------------------

def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class Disturber:
    """The random draws of every disturbance for one image set, made once (seeded), so
    that all levels of a disturbance use the same draws."""

    def __init__(self, images: np.ndarray, other: np.ndarray, seed: int = 0):
        rng = np.random.default_rng(seed)
        n, h, w, _ = images.shape
        self.images, self.other = images, other
        self.noise = np.clip(127.5 + 63.75 * rng.standard_normal(images.shape), 0, 255)
        self.centres = rng.random((n, 5, 2))          # rectangle centres, fractions of (H, W)
        self.sp_u = rng.random((n, h, w))              # a pixel is hit when u < α
        self.sp_white = rng.random((n, h, w)) < 0.5    # salt or pepper
        self.order = rng.permutation(n)                # which images are replaced first

    def __call__(self, kind: str, a: float) -> np.ndarray:
        x = self.images
        if kind == "gaussian_noise":
            return _to_uint8((1 - a) * x + a * self.noise)
        if kind == "gaussian_blur":
            from scipy.ndimage import gaussian_filter
            return _to_uint8(gaussian_filter(x.astype(np.float64), sigma=(0, a, a, 0), mode="reflect"))
        if kind == "black_rectangles":
            out = x.copy()
            n, h, w, _ = x.shape
            rh, rw = a * h, a * w
            for i in range(n):
                for cy, cx in self.centres[i]:
                    y0, y1 = int(round(cy * h - rh / 2)), int(round(cy * h + rh / 2))
                    x0, x1 = int(round(cx * w - rw / 2)), int(round(cx * w + rw / 2))
                    out[i, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 0
            return out
        if kind == "swirl":
            from skimage.transform import swirl
            r = 0.75 * min(x.shape[1:3])
            return np.stack([_to_uint8(swirl(im.astype(np.float64), strength=a, radius=r, order=1,
                                             mode="reflect", preserve_range=True)) for im in x])
        if kind == "salt_and_pepper":
            out = x.copy()
            hit = self.sp_u < a
            out[hit & self.sp_white] = 255
            out[hit & ~self.sp_white] = 0
            return out
        if kind == "contamination":
            out = x.copy()
            k = int(round(a * len(x)))
            idx = self.order[:k]
            out[idx] = self.other[idx % len(self.other)]
            return out
        raise ValueError(kind)


# --- measurement ---------------------------------------------------------------------------

def _classifier_reason() -> str | None:
    """None when the weights have the 1008-way classifier the Inception Score needs, else why not."""
    w = fidkit.api.load_weights()
    return None if w.has_classifier else (f"the weights ({w.origin}) have no 1008-way classifier; run with "
                                          f"FIDKIT_WEIGHTS=pt_inception-2015-12-05-6726825d.pth for IS")


def run_set(name: str, n: int, device: str, batch_size: int | None, log, kinds) -> dict:
    t0 = time.perf_counter()
    clean, other = load_set(name, n)
    dist = Disturber(clean, other)
    no_is = _classifier_reason()
    kw = dict(device=device, batch_size=batch_size, keep_features=True, logits=no_is is None, progress=False)
    ref = extract(clean, **kw)
    subset = min(n, 1000)
    out = {"n": n, "image_size": list(clean.shape[1:3]), "kid_subset_size": subset, "kinds": {}}
    if no_is is None:
        s = fidkit.inception_score(ref.logits)
        out["inception_score_clean"] = {"mean": s.mean, "std": s.std}
    else:
        out["inception_score"] = {"unavailable": no_is}
    for kind in kinds:
        levels = LEVELS[kind]
        rows = []
        for a in levels:
            t = time.perf_counter()
            x = dist(kind, a)
            ext = extract(x, **kw)
            fd = float(fidkit.frechet_distance(ref.stats, ext.stats))
            k = fidkit.kid(ref.features, ext.features, subset_size=subset)
            rows.append({"level": a, "fid": fd, "kid_mean": k.mean, "kid_std": k.std})
            if no_is is None:
                s = fidkit.inception_score(ext.logits)
                rows[-1].update(is_mean=s.mean, is_std=s.std)
            rows[-1]["seconds"] = round(time.perf_counter() - t, 2)
            log(f"{name:14s} {kind:17s} {a:5g}  FID {fd:10.4f}  KID {k.mean:.5f} ± {k.std:.5f}")
        from scipy.stats import spearmanr
        rho = float(spearmanr(levels, [r["fid"] for r in rows]).statistic)
        rho_kid = float(spearmanr(levels, [r["kid_mean"] for r in rows]).statistic)
        out["kinds"][kind] = {"levels": rows, "spearman_fid": rho, "spearman_kid": rho_kid}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def examples(name: str, n: int) -> tuple[np.ndarray, dict]:
    """The first clean image of a set and its disturbed versions at every level (no network)."""
    clean, other = load_set(name, n)
    dist = Disturber(clean, other)
    return clean[0], {kind: [dist(kind, a)[0] for a in levels] for kind, levels in LEVELS.items()}


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    colours = {"fashion-mnist": "tab:blue", "photos": "tab:orange"}
    for ax, kind in zip(axes.flat, LEVELS):
        ax2 = ax.twinx()
        for name, res in results.items():
            if kind not in res["kinds"]:
                continue
            rows = res["kinds"][kind]["levels"]
            lv = [0] + [r["level"] for r in rows]
            ax.plot(lv, [0] + [r["fid"] for r in rows], "o-", color=colours.get(name), label=f"{name} FID")
            ax2.plot(lv, [0] + [r["kid_mean"] for r in rows], "s--", color=colours.get(name), alpha=0.5,
                     label=f"{name} KID")
        rhos = ", ".join(f"{nm} ρ={res['kinds'][kind]['spearman_fid']:.2f}" for nm, res in results.items()
                         if kind in res["kinds"])
        ax.set_title(f"{kind.replace('_', ' ')}\n{rhos}", fontsize=10)
        ax.set_xlabel("level α")
        ax.set_ylabel("FID")
        ax2.set_ylabel("KID (dashed)")
    axes.flat[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("fidkit: FID and KID between real images and disturbed copies (protocol ttur)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    cols = 1 + max(len(v) for v in LEVELS.values())
    fig, axes = plt.subplots(len(LEVELS) * len(names), cols, figsize=(cols * 1.2, len(LEVELS) * len(names) * 1.2))
    axes = np.atleast_2d(axes)
    rows = [(kind, name) for kind in LEVELS for name in names]
    for r, (kind, name) in enumerate(rows):
        clean, ex = results[name]
        levels = LEVELS[kind]
        ims = [clean] + ex[kind]
        for c, im in enumerate(ims):
            ax = axes[r, c]
            ax.imshow(im, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r % len(names) == 0:
                ax.set_title("clean" if c == 0 else f"α={levels[c - 1]:g}", fontsize=7)
        axes[r, 0].set_ylabel(f"{kind.replace('_', ' ')}\n{name}", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="images per set (default 200 on the CPU, 5000 on CUDA)")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--kinds", default=",".join(LEVELS), help="disturbances to run (default all six)")
    p.add_argument("--update", action="store_true",
                   help="replace these disturbances' results in the existing OUT.json, keep the others")
    p.add_argument("--out", default="benchmarks/results/baselines")
    args = p.parse_args(argv)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    if device == "auto":
        device = "cpu"
    n = args.n or (5000 if device.startswith("cuda") else 200)
    sets = [s for s in args.sets.split(",") if s]
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in LEVELS]
    if unknown:
        p.error(f"unknown disturbance(s) {', '.join(unknown)}; choose from {', '.join(LEVELS)}")
    command = "python " + " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))
    t0 = time.perf_counter()
    results = {name: run_set(name, n, device, args.batch_size, lambda m: print(m, flush=True), kinds)
               for name in sets}
    doc = {"commands": [command]}
    if args.update:
        with open(args.out + ".json") as f:
            doc = json.load(f)
        doc["commands"] = doc.get("commands", [doc.get("command")]) + [command]
        doc.pop("command", None)
        old_command = doc["commands"][-2]
        for name, res in results.items():
            kept = doc["sets"][name]
            for kind, v in res["kinds"].items():
                if kind in kept["kinds"]:
                    kept.setdefault("replaced", {})[kind] = dict(kept["kinds"][kind], command=old_command)
                kept["kinds"][kind] = v
            kept["kinds"] = {k: kept["kinds"][k] for k in LEVELS if k in kept["kinds"]}
        results = doc["sets"]
    monotone = {f"{nm}/{kind}": v["spearman_fid"] for nm, res in results.items() for kind, v in res["kinds"].items()}
    doc.update({
        "protocol": "ttur", "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor()
        or platform.machine(),
        "cpu_cores": os.cpu_count(), "torch": torch.__version__, "fidkit": fidkit.__version__,
        "weights_digest": fidkit.api.load_weights().digest,
        "levels": LEVELS, "sets": results,
        "all_spearman_fid_equal_1": all(abs(v - 1) < 1e-12 for v in monotone.values()),
        "seconds": round(time.perf_counter() - t0, 1) + (doc.get("seconds", 0) if args.update else 0),
    })
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    plot(results, args.out + ".png")
    plot_examples({name: examples(name, results[name]["n"]) for name in results}, args.out + "_examples.png")
    tmp = args.out + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, args.out + ".json")
    print(f"Spearman(level, FID) = 1 for all {len(monotone)}: {doc['all_spearman_fid_equal_1']}")
    for k, v in monotone.items():
        if abs(v - 1) >= 1e-12:
            print(f"  not monotone: {k}: {v:.3f}")
    print(f"wrote {args.out}.json, {args.out}.png, {args.out}_examples.png ({doc['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
