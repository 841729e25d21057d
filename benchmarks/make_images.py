"""Writes a deterministic set of real-image PNG files cut from the photographs that ship
inside the scikit-image wheel (``skimage.data``), for fidkit's benchmarks and tests.

    python benchmarks/make_images.py OUT_DIR --n 250 --size 64 [--mixed-sizes]
                                     [--min-size 24] [--seed 0] [--split a|b|all]

Each image is a random crop of one photograph, taken at a random scale (the crop covers
1x to 4x the output size and is shrunk with PIL's LANCZOS filter), randomly mirrored, and
saved as ``00000.png``, ``00001.png``, ... Grayscale photographs (camera, moon, coins, ...)
are saved as 8-bit grayscale PNG files (mode "L"), so that readers exercise the
grayscale -> RGB conversion; colour photographs are saved as RGB.

Splits. Every photograph is cut into a left and a right half. ``--split a`` crops only
the left halves, ``--split b`` only the right halves, ``--split all`` (the default) the
whole photographs. The two halves of a photograph show different objects, backgrounds
and textures, so the sets a and b hold the same kinds of pictures in the same proportions
but different content: 250 + 250 images of 64x64 (seed 0) give a FID of about 113
(torch-fidelity 113.0857, pytorch-fid 112.7096, clean-fid 111.7935).
(Drawing a and b from two disjoint groups of photographs instead gives about 276, a
distance dominated by the choice of photographs.)
The photographs used (natural photographs only: no drawings, text, logos or synthetic
patterns): astronaut, chelsea, coffee, hubble_deep_field, stereo_motorcycle (left view),
cat, rocket, retina, immunohistochemistry in colour; camera, moon, grass, clock, coins,
brick, gravel, cell in grayscale.

Sizes. Without ``--mixed-sizes`` every image is SIZE x SIZE. With ``--mixed-sizes`` the
width and the height of each image are drawn independently from [MIN_SIZE, SIZE], so a
folder holds images of mixed, mostly non-square sizes.

Determinism. All random draws come from Python's ``random.Random`` seeded with a string
built from the split and the seed (stable across Python versions and platforms), and the
PNG files carry no time stamp, so the same arguments give byte-identical files with the
same Pillow and scikit-image versions. Photographs that are not in the wheel (newer
scikit-image versions download some of them with pooch) are skipped with a note; the
printed summary lists the photographs used, since skipping one changes the set.

scikit-image is a benchmark-only requirement (``pip install scikit-image``); fidkit itself
does not depend on it.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import re
import sys
from collections import Counter

import numpy as np
from PIL import Image

# (name in skimage.data, grayscale?), in a fixed order.
PHOTOS = [
    ("astronaut", False), ("chelsea", False), ("coffee", False), ("hubble_deep_field", False),
    ("stereo_motorcycle", False), ("cat", False), ("rocket", False), ("retina", False),
    ("immunohistochemistry", False),
    ("camera", True), ("moon", True), ("grass", True), ("clock", True), ("coins", True),
    ("brick", True), ("gravel", True), ("cell", True),
]
SPLITS = ("a", "b", "all")  # left halves, right halves, whole photographs

MAX_SCALE = 4.0  # a crop covers at most 4x the output size along each side
NAME_RE = re.compile(r"^\d{5,}\.png$")


def load_photo(name: str, gray: bool) -> Image.Image | None:
    """Returns the photograph as a PIL image (mode "L" or "RGB"), or None when it is not
    available offline."""
    import skimage.data

    try:
        array = getattr(skimage.data, name)()
    except Exception as exc:  # not in the wheel (needs a download), or not in this version
        print(f"note: skipping skimage.data.{name}: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return None
    if isinstance(array, tuple):  # stereo_motorcycle -> (left, right, disparity)
        array = array[0]
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name} has dtype {array.dtype}, expected uint8")
    if gray:
        if array.ndim != 2:
            raise ValueError(f"skimage.data.{name} is not grayscale: shape {array.shape}")
        return Image.fromarray(array, mode="L")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"skimage.data.{name} is not RGB: shape {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array[:, :, :3]), mode="RGB")


def crop_one(rng: random.Random, photo: Image.Image, width: int, height: int):
    """Cuts one randomly placed, randomly scaled crop of ``photo`` and resizes it to
    width x height. Returns the image and the crop box."""
    pw, ph = photo.size
    max_scale = min(MAX_SCALE, pw / width, ph / height)
    if max_scale < 1.0:
        raise ValueError(f"photo {pw}x{ph} is smaller than the output {width}x{height}")
    scale = rng.uniform(1.0, max_scale)
    cw = min(pw, max(width, round(width * scale)))
    ch = min(ph, max(height, round(height * scale)))
    x0 = rng.randint(0, pw - cw)
    y0 = rng.randint(0, ph - ch)
    mirror = rng.random() < 0.5
    box = (x0, y0, x0 + cw, y0 + ch)
    image = photo.crop(box)
    if (cw, ch) != (width, height):
        image = image.resize((width, height), Image.LANCZOS)
    if mirror:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return image, box, mirror


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def make_images(out_dir: str, n: int, size: int, mixed_sizes: bool = False,
                min_size: int = 24, seed: int = 0, split: str = "all",
                verbose: bool = False) -> list[str]:
    """Writes the n images into out_dir and returns their paths (sorted)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if n < 1:
        raise ValueError("--n must be at least 1")
    if size < 1 or (mixed_sizes and not 1 <= min_size <= size):
        raise ValueError("need 1 <= --min-size <= --size")
    photos = []
    for name, gray in PHOTOS:
        image = load_photo(name, gray)
        if image is None:
            continue
        half = image.width // 2
        if split == "a":
            image = image.crop((0, 0, half, image.height))
        elif split == "b":
            image = image.crop((half, 0, image.width, image.height))
        if image.width < size or image.height < size:
            print(f"note: skipping {name}: {image.width}x{image.height} is smaller than "
                  f"{size}x{size}", file=sys.stderr)
            continue
        photos.append((name, image))
    if not photos:
        raise RuntimeError(f"no photograph of skimage.data, large enough for {size}x{size} "
                           f"crops, could be loaded offline")

    digits = max(5, len(str(n - 1)))
    names = [f"{i:0{digits}d}.png" for i in range(n)]
    os.makedirs(out_dir, exist_ok=True)
    stale = sorted(set(os.listdir(out_dir)) - set(names))
    foreign = [f for f in stale if not NAME_RE.match(f)]
    if foreign:
        raise RuntimeError(f"{out_dir} holds files this script did not write "
                           f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
                           f"use an empty or new directory")
    for f in stale:  # numbered PNG files of an earlier, larger run
        os.remove(os.path.join(out_dir, f))

    rng = random.Random(f"fidkit-make-images:split={split}:seed={seed}")
    used = Counter()
    modes = Counter()
    sizes = Counter()
    total_bytes = 0
    paths = []
    for file_name in names:
        name, photo = photos[rng.randrange(len(photos))]
        if mixed_sizes:
            width, height = rng.randint(min_size, size), rng.randint(min_size, size)
        else:
            width = height = size
        image, box, mirror = crop_one(rng, photo, width, height)
        data = png_bytes(image)
        path = os.path.join(out_dir, file_name)
        with open(path, "wb") as fh:
            fh.write(data)
        paths.append(path)
        used[name] += 1
        modes[image.mode] += 1
        sizes[image.size] += 1
        total_bytes += len(data)
        if verbose:
            print(f"{path}: {width}x{height} {image.mode} from {name} box={box}"
                  f"{' mirrored' if mirror else ''} ({len(data)} bytes)")

    widths = [w for w, _ in sizes.elements()]
    heights = [h for _, h in sizes.elements()]
    print(f"wrote {n} PNG files to {out_dir} ({names[0]} .. {names[-1]}, "
          f"{total_bytes / 1024:.1f} KiB) split={split} seed={seed}")
    print(f"  sizes: width {min(widths)}..{max(widths)}, height {min(heights)}..{max(heights)}"
          f" ({len(sizes)} distinct)")
    print("  modes: " + ", ".join(f"{m} {c}" for m, c in sorted(modes.items())))
    print("  photographs: " + ", ".join(f"{name} {used[name]}" for name, _ in photos))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a deterministic set of real-image PNG crops of the "
                    "scikit-image photographs.")
    parser.add_argument("out_dir", help="folder to write 00000.png, 00001.png, ... into")
    parser.add_argument("--n", type=int, default=250, help="number of images (default 250)")
    parser.add_argument("--size", type=int, default=64,
                        help="image side in pixels; the largest side with --mixed-sizes "
                             "(default 64)")
    parser.add_argument("--mixed-sizes", action="store_true",
                        help="draw width and height of each image from [--min-size, --size]")
    parser.add_argument("--min-size", type=int, default=24,
                        help="smallest side with --mixed-sizes (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--split", choices=SPLITS, default="all",
                        help="crop the left halves of the photographs (a), the right "
                             "halves (b), or the whole photographs (all, default)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print one line per file (source photo and crop box)")
    args = parser.parse_args(argv)
    try:
        make_images(args.out_dir, args.n, args.size, args.mixed_sizes, args.min_size,
                    args.seed, args.split, args.verbose)
    except ImportError as exc:
        print(f"error: {exc}; this script needs scikit-image (pip install scikit-image)",
              file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
