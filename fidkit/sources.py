"""Image sources: folders searched recursively, file lists and in-memory arrays.

Every image is decoded with PIL and ``convert("RGB")``, as the reference implementations
do: grayscale is replicated to three channels, alpha is dropped (not composited), palette
images are expanded. A decoded image is a uint8 numpy array of shape (H, W, 3). Images of
more than 8 bits per channel (16-bit PNG, 32-bit TIFF) are refused rather than clipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import SourceError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: PIL modes of more than 8 bits per channel: convert("RGB") clips them, so they are refused
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def list_images(folder) -> list[Path]:
    """Image files below ``folder`` (recursive, links followed once), sorted by relative path."""
    root = Path(folder)
    if not root.exists():
        raise SourceError(f"{folder}: no such file or folder; give an image folder or a statistics .npz")
    if not root.is_dir():
        raise SourceError(f"{folder}: not a folder; give an image folder or a statistics .npz")
    seen = set()
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=None):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop or a second link to a folder already read
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        found.extend(Path(dirpath) / f for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS))
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    if not found:
        raise SourceError(f"{folder}: no images found (looked for {', '.join(e[1:] for e in IMAGE_EXTENSIONS)} "
                          f"recursively)")
    return found


def decode(path) -> np.ndarray:
    """Decodes one image file to uint8 (H, W, 3) RGB with PIL's ``convert("RGB")``."""
    try:
        with Image.open(path) as im:
            # PIL only warns between its limit and twice it; a few hundred bytes of JPEG whose
            # header claims 10000×10000 then decode to 300 MB in seconds, in every worker
            if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
                raise SourceError(f"{path}: image larger than PIL's decompression-bomb limit ({im.width}×{im.height} "
                                  f"pixels, PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); check the file "
                                  f"or skip it")
            if im.mode in HIGH_BIT_DEPTH_MODES:
                raise SourceError(f"{path}: {im.mode} image with more than 8 bits per channel; PIL's "
                                  f"convert(\"RGB\"), which the reference implementations use, would clip it "
                                  f"to 255; convert it to 8-bit first")
            arr = np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy
    except Image.DecompressionBombError as e:
        raise SourceError(f"{path}: image larger than PIL's decompression-bomb limit ({e}); "
                          f"check the file or skip it") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise SourceError(f"{path}: cannot decode image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")\
            from None
    return arr


def check_uint8_images(images, layout: str) -> None:
    """Checks an in-memory batch: uint8 with 3 channels in ``layout`` 'NHWC' or 'NCHW'."""
    if images.dtype not in (np.uint8, "uint8") and str(images.dtype) != "torch.uint8":
        raise SourceError(f"images must be uint8 (0..255), got {images.dtype}; convert them first")
    if images.ndim != 4 or images.shape[layout.index("C")] != 3:
        raise SourceError(f"images must have shape {layout} with 3 channels, got {tuple(images.shape)}")


def shard(files: list, spec: str) -> list:
    """The ``i``-th of ``k`` contiguous, nearly equal parts of ``files`` for ``spec`` = "i/k" (0 ≤ i < k)."""
    try:
        i, k = (int(x) for x in spec.split("/"))
    except ValueError:
        raise SourceError(f"--shard {spec!r}: expected i/k with integers, e.g. 0/4 for the first of four") from None
    if not (k >= 1 and 0 <= i < k):
        raise SourceError(f"--shard {spec}: need k ≥ 1 and 0 ≤ i < k (shards are numbered from 0)")
    n = len(files)
    return files[i * n // k:(i + 1) * n // k]


#: Datasets read directly from their files: name -> (folder, IDX image file). The folder is
#: where Debian's package dataset-fashion-mnist installs them (``apt-get install
#: dataset-fashion-mnist``); ``FIDKIT_DATASETS`` points elsewhere.
DATASETS = {
    "fashion-mnist-train": ("/usr/share/datasets/fashion-mnist", "train-images-idx3-ubyte.gz"),
    "fashion-mnist-test": ("/usr/share/datasets/fashion-mnist", "t10k-images-idx3-ubyte.gz"),
}


def read_idx_images(path) -> np.ndarray:
    """Images of an IDX file (gzipped or not; type uint8, 3 dimensions) as uint8 (N, H, W)."""
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise SourceError(f"{path}: cannot read the IDX file ({e}); reinstall the dataset") from None
    if len(data) < 16 or data[:4] != b"\x00\x00\x08\x03":
        raise SourceError(f"{path}: not an IDX file of uint8 images (magic {data[:4].hex()}, expected 00000803)")
    n, h, w = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    if len(data) != 16 + n * h * w:
        raise SourceError(f"{path}: holds {len(data) - 16} pixel bytes, its header says {n}×{h}×{w}; "
                          f"the file is truncated or damaged")
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, h, w)


def dataset_images(name: str, n: int | None = None) -> np.ndarray:
    """A named dataset as uint8 (N, H, W, 3): grayscale replicated, as ``convert("RGB")`` does.

    ``n``: only the first n images (all when None); the file is read and checked whole, but
    only those n are expanded to RGB.
    """
    if n is not None and n < 0:
        raise SourceError(f"n must be at least 0, got {n}")
    if name not in DATASETS:
        raise SourceError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    folder, filename = DATASETS[name]
    path = Path(os.environ.get("FIDKIT_DATASETS", folder)) / filename
    if not path.is_file():
        raise SourceError(f"{path} not found; install it with `apt-get install dataset-fashion-mnist` or set "
                          f"FIDKIT_DATASETS to the folder holding {filename}")
    return np.repeat(read_idx_images(path)[:n, :, :, None], 3, axis=3)
