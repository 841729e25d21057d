"""Image sources: folders searched recursively, file lists, archives (zip, tar, tar.gz, tar
shards), sample batches and in-memory arrays.

Every image is decoded with PIL and ``convert("RGB")``, as the reference implementations
do: grayscale is replicated to three channels, alpha is dropped (not composited), palette
images are expanded. A decoded image is a uint8 numpy array of shape (H, W, 3). Single-channel
images of more than 8 bits (16-bit grayscale PNG, 32-bit TIFF), which ``convert("RGB")``
would clip to 255, are refused; 16-bit RGB, RGBA and gray+alpha PNGs, which PIL opens as
8-bit keeping each sample's high byte, are read so, as the reference implementations read
them. Only the raster formats of :func:`decoded_formats` are decoded, whatever a file's
name, and only regular files are opened.
"""

from __future__ import annotations

import bz2
import copy
import glob
import gzip
import io
import os
import posixpath
import re
import stat
import struct
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import _tiff
from .errors import SourceError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: PIL modes of more than 8 bits per channel: convert("RGB") clips them, so they are refused
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def is_image_name(relpath: str) -> bool:
    """Whether a file or archive member (its path relative to the folder or archive root, ``/``
    separated) is taken as an image: its name ends in :data:`IMAGE_EXTENSIONS` (any case), and
    it is not macOS metadata, which carries the image's name but holds no image: AppleDouble
    files ``._NAME`` (written beside every file on volumes without resource forks) and anything
    under ``__MACOSX/`` (where the Finder's zips keep them)."""
    parts = relpath.split("/")
    return (parts[-1].lower().endswith(IMAGE_EXTENSIONS) and not parts[-1].startswith("._")
            and "__MACOSX" not in parts[:-1])


def list_images(folder) -> list[Path]:
    """The image files below ``folder`` that fidkit reads, in the order it reads them: chosen
    by :func:`is_image_name`, searched recursively (links to folders followed, each folder
    read once), sorted by relative path. Raises :class:`~fidkit.errors.SourceError` for a
    missing path, a file, or a folder without images."""
    root = Path(folder)
    check_exists(root)
    if not root.is_dir():
        raise SourceError(f"{folder}: not a folder; give an image folder or a statistics .npz")
    seen = set()
    found = []

    def unlistable(e: OSError):
        # os.walk's default (onerror=None) skips a folder it cannot list: the statistics would then be
        # computed on part of the data without a word
        raise SourceError(f"{e.filename or folder}: cannot list this folder ({e.strerror or _one_line(e)}); "
                          f"make it readable, or move it out of {folder}, so that no images are left out") from None

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unlistable):
        try:
            st = os.stat(dirpath)
        except OSError as e:
            unlistable(e)
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop or a second link to a folder already read
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).as_posix()
        found.extend(Path(dirpath) / f for f in filenames
                     if is_image_name(f if rel == "." else f"{rel}/{f}"))
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    if not found:
        raise SourceError(f"{folder}: no images found (looked for {', '.join(e[1:] for e in IMAGE_EXTENSIONS)} "
                          f"recursively)")
    return found


#: Pillow formats decoded besides those named by :data:`IMAGE_EXTENSIONS`: PPM (``.ppm``, ``.pgm``,
#: which pytorch-fid, clean-fid and dgm-eval list), GIF (palette raster images) and MPO (a
#: multi-picture JPEG, as cameras write them; Pillow's JPEG opener gives it)
EXTRA_FORMATS = ("PPM", "GIF", "MPO")
_formats: tuple | None = None


def decoded_formats() -> tuple:
    """The Pillow formats :func:`decode` reads, in Pillow's order of trying them: those of
    :data:`IMAGE_EXTENSIONS` (PNG, JPEG, BMP, WEBP, TIFF, as ``PIL.Image.EXTENSION`` maps
    them) and :data:`EXTRA_FORMATS`, among the formats this Pillow opens. A file holding any
    other format is refused, whatever its name: Pillow would otherwise try every format it
    knows (an ``.png`` holding EPS would go to Ghostscript)."""
    global _formats
    if _formats is None:
        Image.init()
        wanted = {Image.EXTENSION[e] for e in IMAGE_EXTENSIONS if e in Image.EXTENSION} | set(EXTRA_FORMATS)
        _formats = tuple(f for f in Image.ID if f in wanted)
    return _formats


def _format_held(path, data: bytes | None) -> str | None:
    """The first Pillow format, outside :func:`decoded_formats`, whose signature check accepts the
    file's first 16 bytes (what ``PIL.Image.open`` tests); None when none does. Only the
    signature checks run, never an opener. A weak signature can name a near relative (an
    uncompressed TGA passes CUR's check); formats without one (TGA) are never named."""
    try:
        if data is None:
            with open(path, "rb") as f:
                prefix = f.read(16)
        else:
            prefix = data[:16]
        for fmt in Image.ID:
            if fmt in decoded_formats():
                continue
            accept = Image.OPEN[fmt][1]
            if accept is not None and (result := accept(prefix)) and not isinstance(result, str):
                return fmt
    except Exception:  # a signature check failing on odd bytes: no format to name
        return None
    return None


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _check_regular(path) -> None:
    """Refuses, in one line, a path that is not a regular file (after following links): reading a
    FIFO or a device named ``*.png`` would block or never end."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _FILE_KINDS if test(mode)), "a special file")
        raise SourceError(f"{path}: {kind}, not a regular file; fidkit does not open it (reading it could block "
                          f"forever): remove it, or move it out of the images")


def decode(path, data: bytes | None = None) -> np.ndarray:
    """Decodes one image file to uint8 (H, W, 3) RGB (values 0..255) with PIL's ``convert("RGB")``.

    Only the formats of :func:`decoded_formats` are read, and from disk only regular files.
    ``data``: the file's bytes when they come from elsewhere (an archive member); ``path`` then
    only names the image in errors (``archive.zip:dir/img.png``)."""
    _tiff.capture()
    _tiff.clear()
    formats = decoded_formats()
    try:
        if data is None:
            _check_regular(path)  # a stat error (a link loop, a missing file) reads as the open's would
        with warnings.catch_warnings():
            # both say nothing of which file: fidkit's own error follows every decompression-bomb warning
            # (the size check below), and alpha is dropped by design, transparency bytes included
            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", message="Palette images with Transparency expressed in bytes",
                                    category=UserWarning)
            with Image.open(path if data is None else io.BytesIO(data), formats=formats) as im:
                # PIL only warns between its limit and twice it; a few hundred bytes of JPEG whose
                # header claims 10000×10000 then decode to 300 MB in seconds, in every worker
                if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
                    raise SourceError(f"{path}: image larger than PIL's decompression-bomb limit ({im.width}×"
                                      f"{im.height} pixels, PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); "
                                      f"check the file or skip it")
                if im.mode in HIGH_BIT_DEPTH_MODES:
                    raise SourceError(f"{path}: {im.mode} image with more than 8 bits per channel; PIL's "
                                      f"convert(\"RGB\"), which the reference implementations use, would clip it "
                                      f"to 255; convert it to 8-bit first")
                arr = np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy
    except Image.DecompressionBombError as e:
        raise SourceError(f"{path}: image larger than PIL's decompression-bomb limit ({e}); "
                          f"check the file or skip it") from None
    except (OSError, ValueError, SyntaxError) as e:
        held = _format_held(path, data) if isinstance(e, UnidentifiedImageError) else None
        if held is not None:
            raise SourceError(f"{path}: its first bytes mark it as {held}, a format fidkit does not decode whatever "
                              f"the file's name (it decodes {', '.join(sorted(formats))}); convert it to PNG") from None
        detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if _tiff.last():  # libtiff's own account of it (kept off stderr by _tiff)
            detail += f"; libtiff: {_tiff.last()}"
        raise SourceError(f"{path}: cannot decode image ({detail})") from None
    return arr


def check_uint8_images(images, layout: str) -> None:
    """Checks an in-memory batch: uint8 with 3 channels in ``layout`` 'NHWC' or 'NCHW'."""
    if images.dtype not in (np.uint8, "uint8") and str(images.dtype) != "torch.uint8":
        raise SourceError(f"images must be uint8 (0..255), got {images.dtype}; convert them first")
    if images.ndim != 4 or images.shape[layout.index("C")] != 3:
        raise SourceError(f"images must have shape {layout} with 3 channels, got {tuple(images.shape)}")
    if images.shape[layout.index("H")] == 0 or images.shape[layout.index("W")] == 0:
        raise SourceError(f"images of shape {tuple(images.shape)} ({layout}) have no pixels; each needs a height "
                          f"and width of at least 1")


def shard(files, spec: str):
    """The ``i``-th of ``k`` contiguous, nearly equal parts of ``files`` for ``spec`` = "i/k" (0 ≤ i < k).

    ``files``: a list (of image paths), or an :class:`Images` (an archive's members or a
    sample batch's images, in their order)."""
    try:
        i, k = (int(x) for x in spec.split("/"))
    except ValueError:
        raise SourceError(f"--shard {spec!r}: expected i/k with integers, e.g. 0/4 for the first of four") from None
    if not (k >= 1 and 0 <= i < k):
        raise SourceError(f"--shard {spec}: need k ≥ 1 and 0 ≤ i < k (shards are numbered from 0)")
    n = len(files)
    name = f"{getattr(files, 'name', '')} (shard {i}/{k})"
    if isinstance(files, ArchiveImages):
        return files.subset(i * n // k, (i + 1) * n // k, name)
    if isinstance(files, Images):
        return share_of(files, i * n // k, (i + 1) * n // k, name)
    return files[i * n // k:(i + 1) * n // k]


def shardable(source):
    """What ``--shard`` splits: the sorted image files of a folder (a list of paths), the
    members of an archive source (an :class:`ArchiveImages`), or the images of a sample
    batch (``.npz`` with ``arr_0``, ``.npy``; a :class:`BatchImages`); an :class:`Images` as it is."""
    if isinstance(source, Images):
        return source
    if is_archive_source(source) or is_batch_path(source):
        return as_images(source)
    return list_images(source)


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


# ---------------------------------------------------------------- one indexable set of images

class Images:
    """An indexable set of images: ``len(images)``, ``images[i]`` -> uint8 (H, W, 3) RGB.

    Every kind of source (folder, file list, sample batch ``.npz``/``.npy``, in-memory
    arrays) becomes one of these, so the pipeline never asks what it was given. Items are
    read and decoded in the process that asks for them (a decoding worker opens files
    itself); an item that cannot be read raises :class:`SourceError`, and ``label(i)`` names
    it. ``sequential`` sets say that their items are cheap only in increasing order (a
    compressed archive member): they are read by one process. ``in_workers`` sets are read
    and decoded in decoding worker processes (files, batches, archives); the others (arrays
    in memory) by the process that runs the network. Archives are :class:`ArchiveImages`;
    a contiguous part of one (a ``--shard``, a torchrun rank's block) is a :class:`Share`,
    or the archive's own subset, or a slice of the array (:func:`share_of`, :func:`shard`).
    """

    name: str = "images"
    sequential: bool = False
    in_workers: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def label(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def close(self) -> None:
        """Closes what this process opened to read items (file descriptors, streams); a later
        item opens them again. Safe to call twice, and in any process: only the process that
        opened something closes it. Called when the set is collected, and by
        :func:`fidkit.pipeline.iter_features` after its pass."""

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit, modules may already be gone
            pass


class FileImages(Images):
    """Image files decoded with PIL. The paths live in one byte buffer plus offsets, not in
    a list of Python objects: forked decoding workers read a list's items and so write their
    reference counts, which copies the list's pages into every worker (memory growing with
    N × workers)."""

    in_workers = True

    def __init__(self, files, name: str | None = None):
        encoded = [os.fsencode(str(f)) for f in files]
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int64)
        self.name = name or f"{len(encoded)} files"

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def path(self, i: int) -> str:
        return os.fsdecode(self._blob[self._offsets[i]:self._offsets[i + 1]].tobytes())

    def label(self, i: int) -> str:
        return self.path(i)

    def __getitem__(self, i: int) -> np.ndarray:
        return decode(self.path(i))


class ArrayImages(Images):
    """In-memory uint8 images: numpy (N, H, W, 3) or torch (N, 3, H, W) (``layout``)."""

    def __init__(self, array, layout: str, name: str | None = None):
        check_uint8_images(array, layout)
        self.array, self.layout = array, layout
        self.name = name or f"{layout} array"

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        x = self.array[i]
        if self.layout == "NCHW":
            x = x.permute(1, 2, 0) if hasattr(x, "permute") else x.transpose(1, 2, 0)
        return np.asarray(x.cpu() if hasattr(x, "cpu") else x)


class Share(Images):
    """Items ``lo`` .. ``hi − 1`` of another :class:`Images` (a ``--shard``, a torchrun rank's block).

    ``share[i]`` is ``base[lo + i]``, a uint8 (H, W, 3) array; labels, ``sequential`` and
    ``in_workers`` are the base's, so errors and skipped files name the original items;
    ``name`` defaults to the base's.
    """

    def __init__(self, base: Images, lo: int, hi: int, name: str | None = None):
        self.base, self.lo, self.hi = base, lo, hi
        self.name = name or base.name
        self.sequential, self.in_workers = base.sequential, base.in_workers

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i: int) -> np.ndarray:
        return self.base[self.lo + i]

    def label(self, i: int) -> str:
        return self.base.label(self.lo + i)

    def close(self) -> None:
        self.base.close()


def share_of(images: Images, lo: int, hi: int, name: str | None = None) -> Images:
    """The part ``[lo, hi)`` of ``images``: a slice of the array for in-memory images (which the
    pipeline reads without workers), a :class:`Share` otherwise."""
    if isinstance(images, ArrayImages):
        return ArrayImages(images.array[lo:hi], images.layout, name or images.name)
    if isinstance(images, Picked):  # still a view of the base: a named dataset travels as its name
        return Picked(images.base, images.indices[lo:hi], name or images.name)
    return Share(images, lo, hi, name)


class Picked(Images):
    """Items ``indices`` (increasing int64) of another :class:`Images`.

    ``picked[i]`` is ``base[indices[i]]``, a uint8 (H, W, 3) array; labels, ``sequential`` and
    ``in_workers`` are the base's (increasing indices keep a sequential archive sequential).
    """

    def __init__(self, base: Images, indices: np.ndarray, name: str | None = None):
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)
        self.name = name or base.name
        self.sequential, self.in_workers = base.sequential, base.in_workers

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.base[int(self.indices[i])]

    def label(self, i: int) -> str:
        return self.base.label(int(self.indices[i]))

    def close(self) -> None:
        self.base.close()

    def gathered(self) -> Images:
        """For in-memory images, the picked rows as an :class:`ArrayImages` (a copy, on the
        array's device), so that they take the pipeline's in-memory path; called when the pass
        over them starts, so the copy is not held before. Otherwise itself."""
        if not isinstance(self.base, ArrayImages):
            return self
        arr = self.base.array
        rows = arr[self.indices] if isinstance(arr, np.ndarray) else _torch_rows(arr, self.indices)
        return ArrayImages(rows, self.base.layout, self.name)


def subset_indices(total: int, n: int, seed: int = 0) -> np.ndarray:
    """NVIDIA's seeded subset (EDM's and EDM2's ``--num N --seed S``, StyleGAN2-ADA's dataset
    ``max_size``): the indices, int64 (n,), increasing, of ``n`` of ``total`` items in their
    reading order. All of them when ``total`` <= ``n``; otherwise
    ``np.random.RandomState(seed % 2**31)`` shuffles ``arange(total)``, the first ``n`` are
    kept and sorted."""
    idx = np.arange(total, dtype=np.int64)
    if total > n:
        np.random.RandomState(seed % (1 << 31)).shuffle(idx)
        idx = np.sort(idx[:n])
    return idx


def _torch_rows(t, idx: np.ndarray):
    """Rows ``idx`` (int64 numpy) of the torch tensor ``t``, on its device."""
    import torch

    return t[torch.from_numpy(idx).to(t.device)]


def seeded_subset(images: Images, n: int, seed: int = 0, label: str | None = None) -> Images:
    """``n`` images of ``images`` chosen as EDM's and EDM2's metric scripts choose them from a
    folder (:func:`subset_indices` over the files sorted by relative path, which is how
    fidkit and they both order a folder; :func:`nvidia_listing_note` says when they list one
    differently). ``images`` itself when it holds exactly ``n``; :class:`SourceError`, naming
    ``label`` (default: the set's name), when it holds fewer (as those scripts refuse). A
    file list gives a file list of the picked files (what a torchrun rank is sent), any other
    set a :class:`Picked` view (of in-memory arrays, gathered into an array when its pass
    starts: :meth:`Picked.gathered`)."""
    total = len(images)
    if total < n:
        raise SourceError(f"{label or images.name}: {total} images, fewer than the subset of {n} asked for; give a "
                          f"source with at least {n} images or a smaller subset")
    if total == n:
        return images
    return _pick(images, subset_indices(total, n, seed), seed)


def _pick(images: Images, idx: np.ndarray, seed: int) -> Images:
    """The items ``idx`` of ``images`` in that order: a file list of the picked files (what a
    torchrun rank is sent) for files, a :class:`Picked` view otherwise (``idx`` increasing)."""
    name = f"{images.name} ({len(idx)} of {len(images)}, seed {seed})"
    if isinstance(images, FileImages):
        return FileImages([images.path(int(i)) for i in idx], name)
    return Picked(images, idx, name)


#: dgm-eval's ``--nsample`` and ``--seed`` defaults
DGM_EVAL_NSAMPLE, DGM_EVAL_SEED = 50000, 13579
#: the extensions dgm-eval's ``get_files_at_path`` globs, each in lower and in upper case only
DGM_EVAL_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")


def dgm_eval_indices(total: int, n: int, seed: int = DGM_EVAL_SEED) -> np.ndarray:
    """dgm-eval's ``--nsample N --seed S`` on a set of ``total`` items (its
    ``DataLoader.subsample_dataset``): all of them, in order, when ``total`` <= ``n``;
    otherwise ``np.random.seed(S)`` then ``sorted(np.random.choice(total, n, replace=False))``,
    drawn here from a fresh ``RandomState(S)`` (the same stream, NEP 19 keeps it) without
    touching numpy's global state. int64 (n,), increasing. ``seed`` as numpy takes it: 0 to
    2**32 − 1 (no modulo, unlike :func:`subset_indices`)."""
    if total <= n:
        return np.arange(total, dtype=np.int64)
    return np.sort(np.random.RandomState(seed).choice(total, n, replace=False)).astype(np.int64)


def dgm_eval_generator(total_real: int, total_fake: int, n: int | None,
                       seed: int = DGM_EVAL_SEED, total_test: int | None = None) -> np.random.RandomState | None:
    """numpy's global generator in the state dgm-eval leaves it after reading its real set of
    ``total_real`` items, its ``--test_path`` set of ``total_test`` (None: none) and one generated
    set of ``total_fake`` under ``--nsample n --seed seed``, as a fresh ``RandomState``; None when
    no set was cut (``n`` None or at least every total), where dgm-eval never seeds it and draws
    its ``kd``, ``prdc`` and ``fls`` subsets from an unseeded generator.

    Each cut (:func:`dgm_eval_indices`) calls ``np.random.seed(seed)`` then draws its pick, and
    dgm-eval reads the real set, then the test set, then the generated one, so the state is that
    after the last cut. Nothing between the cuts and its ``compute_scores`` draws from that
    generator (its FD∞ draws from an unseeded generator of its own). Assumes dgm-eval's single
    generated path and no ``:train`` path (which re-seeds with seed + 1)."""
    if n is None:
        return None
    for total in (total_fake, total_test, total_real):  # the last set cut is the one that counts
        if total is not None and total > n:
            rng = np.random.RandomState(seed)
            rng.choice(total, n, replace=False)
            return rng
    return None


def _folder_prefix(root: Path) -> int:
    """How many characters of the paths :func:`list_images` gives for files below ``root`` name
    the folder: the folder as pathlib writes it and a separator (none after ``/``), or none for
    ``.``, which pathlib leaves out."""
    text = str(root)
    return 0 if text == "." else len(os.path.join(text, ""))


def dgm_eval_subset(images: Images, n: int, seed: int = DGM_EVAL_SEED, source=None,
                    scan: DgmEvalScan | None = None) -> tuple:
    """``images`` cut to ``n`` as dgm-eval's ``--nsample n --seed seed`` cuts every set it reads,
    real and generated: :func:`dgm_eval_indices` over dgm-eval's order of the images.

    For a folder ``source`` (``images`` its :func:`as_images`) that order is
    :func:`dgm_eval_listing`'s: when it holds the same files as fidkit's listing but sorts them
    otherwise (``Path`` order puts ``a/`` before ``a-b/``, fidkit's path strings after), the
    pick follows it and the images come in dgm-eval's order (its rows, which the subsets of its
    ``kd`` and ``prdc`` index), cut or not; when it holds other files, the pick is over fidkit's
    order and a note says how they differ. Other sources (sample batches, which dgm-eval reads in array order; arrays;
    archives, which it does not read) are cut in fidkit's order. Returns (the images: ``images``
    itself when it holds at most ``n``, else a file list or :class:`Picked` view as
    :func:`seeded_subset` gives; the note or None). ``scan``: :func:`dgm_eval_scan` of a folder
    ``source``, when the caller took one."""
    order, note = None, None
    if isinstance(images, FileImages) and isinstance(source, (str, Path)) and Path(source).is_dir():
        root = Path(source)
        theirs = dgm_eval_listing(root, scan)
        ours = [images.path(i)[_folder_prefix(root):] for i in range(len(images))]
        if theirs != ours and sorted(theirs) == sorted(ours):
            at = {f: i for i, f in enumerate(ours)}
            order = np.array([at[f] for f in theirs], dtype=np.int64)
        elif theirs != ours:
            why = _listing_difference(theirs, ours, "dgm-eval", "reads", " (it reads the top level, or one level of "
                                                                         "class folders when the top holds no images)")
            note = (f"{source}: dgm-eval would read {len(theirs)} file{'s' * (len(theirs) != 1)} where fidkit reads "
                    f"{len(ours)} ({why}), so "
                    f"these are not the images dgm-eval would score")
    if len(images) <= n:
        if order is not None:  # the same files in dgm-eval's row order, which kd's and prdc's draws index
            return FileImages([images.path(int(i)) for i in order], images.name), note
        return images, note
    idx = dgm_eval_indices(len(images), n, seed)
    return _pick(images, idx if order is None else order[idx], seed), note


def _listing_difference(theirs: list, ours: list, who: str, verb: str, unlisted: str = "") -> str:
    """Why ``who``'s listing ``theirs`` is not fidkit's ``ours`` (two lists of relative names), for
    a one-line note: the first name only ``who`` reads (``verb``: how it takes it), else the
    first only fidkit reads (with ``unlisted``: why ``who`` skips it), else their order."""
    extra, missing = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    if extra:
        return f"{who} {verb} {extra[0]}, which fidkit does not read"
    if missing:
        return f"fidkit reads {missing[0]}, which {who} does not list{unlisted}"
    return "they order it otherwise"


class DgmEvalScan(NamedTuple):
    """One look at the folder ``root`` as dgm-eval's ``DataLoader`` looks at it: ``top`` its
    entries' names in ``os.scandir``'s order; ``inner`` each entry's names (``[]`` for a file or
    an unreadable folder) when the top level holds no image dgm-eval reads, else None. Taken
    once by :func:`dgm_eval_scan` and handed to :func:`dgm_eval_listing`,
    :func:`dgm_eval_labels`, :func:`dgm_eval_unread`, :func:`dgm_eval_row_labels` and
    :func:`dgm_eval_subset`, so that one run reads the folder's names once."""
    root: str
    top: list
    inner: dict | None


def dgm_eval_scan(root) -> DgmEvalScan:
    """The names dgm-eval's listing and labels of the folder ``root`` come from
    (:class:`DgmEvalScan`): one ``scandir`` of the top level, and one of each entry when the
    top level holds no image it reads."""
    root = str(root)
    top = _names_in(root)
    inner = None if _dgm_eval_images(top) else {d: _names_in(os.path.join(root, d)) for d in top}
    return DgmEvalScan(root, top, inner)


def _scanned(root, scan: DgmEvalScan | None) -> DgmEvalScan:
    """``scan`` when given (it must be of ``root``), else a fresh :func:`dgm_eval_scan`."""
    if scan is None:
        return dgm_eval_scan(root)
    if os.path.normpath(scan.root) != os.path.normpath(str(root)):
        raise ValueError(f"a scan of {scan.root} given for {root}")
    return scan


def dgm_eval_listing(root, scan: DgmEvalScan | None = None) -> list[str]:
    """The files dgm-eval's ``DataLoader`` reads from the folder ``root``, in its order, as
    paths relative to ``root`` (``/``-separated): the top level's ``*.EXT`` for the extensions
    of :data:`DGM_EVAL_EXTENSIONS` in lower or upper case (pathlib's glob: case-sensitive,
    hidden names and anything so named included); when the top level holds none, those of each
    entry one level down (its class folders; files and unreadable folders give none) instead.
    ``ImagePathDataset`` then sorts them as ``Path`` objects, component by component. One
    ``scandir`` per folder where dgm-eval globs 18 times (ImageNet's 1.28M files: seconds, not
    a minute); none when ``scan`` (:func:`dgm_eval_scan` of ``root``) is given."""
    scan = _scanned(root, scan)
    if scan.inner is None:
        found = [(n,) for n in _dgm_eval_images(scan.top)]
    else:
        found = [(d, n) for d in scan.top for n in _dgm_eval_images(scan.inner[d])]
    return ["/".join(parts) for parts in sorted(found)]


def _names_in(folder: str) -> list:
    """The entries of ``folder`` in ``os.scandir``'s order (pathlib's glob's); none when it is
    not a folder (pathlib's glob yields nothing there) or cannot be read."""
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries]
    except OSError:
        return []


_DGM_EVAL_SUFFIXES = frozenset({f".{e}" for e in DGM_EVAL_EXTENSIONS} | {f".{e.upper()}" for e in DGM_EVAL_EXTENSIONS})


def _dgm_eval_images(names: list) -> list:
    """The names dgm-eval's ``get_files_at_path`` globs (``*.ext``, case as in its list)."""
    return [n for n in names if n.rfind(".") >= 0 and n[n.rfind("."):] in _DGM_EVAL_SUFFIXES]


def dgm_eval_labels(root, scan: DgmEvalScan | None = None) -> tuple:
    """The class labels dgm-eval's ``DataLoader`` gives the images of the folder ``root``:
    (int32 (N,) labels, list of the class folders' names in label order), with N the images
    :func:`dgm_eval_listing` lists; ``(None, [])`` when the top level holds images, where it has
    no classes. Its ``get_local_dataset`` numbers every top-level entry (file or folder) in the
    order ``sorted(glob('*'), key=get_order)`` (``get_order``: the name without its extension,
    as an int when ``str.isnumeric``) and appends each entry's images, sorted, with that number;
    ``ImagePathDataset`` then sorts all the files, and the features come in that order while
    the labels keep the first. So the label of feature row r is this array's r-th entry, which
    is the class of the r-th file only when the two orders agree (:func:`dgm_eval_row_labels`);
    with numbered class folders past ``9`` they do not (``10/`` sorts before ``2/`` as a path,
    after it as a number). Raises :class:`SourceError` where dgm-eval's sort stops: names that
    are numbers beside names that are not, or a numeric name ``int`` cannot read. ``scan``:
    :func:`dgm_eval_scan` of ``root``, when the caller took one."""
    scan = _scanned(root, scan)
    root, top = scan.root, scan.top
    if scan.inner is None:
        return None, []

    def key(name: str):
        stem = os.path.splitext(name)[0]
        if not stem.isnumeric():
            return stem
        try:
            return int(stem)
        except ValueError:
            raise SourceError(f"{root}: dgm-eval's sort of its class folders stops at {name!r} (a numeric name that "
                              f"int() cannot read), so it would not run on this folder") from None

    keys = [key(n) for n in top]
    if len({type(k) for k in keys}) > 1:
        number = next(n for n, k in zip(top, keys) if isinstance(k, int))
        word = next(n for n, k in zip(top, keys) if isinstance(k, str))
        raise SourceError(f"{root}: dgm-eval's sort of its class folders stops at names that are numbers beside "
                          f"names that are not ({number!r} and {word!r}), so it would not run on this folder")
    order = [top[i] for i in sorted(range(len(top)), key=lambda i: keys[i])]
    counts = [len(_dgm_eval_images(scan.inner[d])) for d in order]
    return np.repeat(np.arange(len(order), dtype=np.int32), counts), order


def dgm_eval_unread(root, images: Images, scan: DgmEvalScan | None = None) -> list[str]:
    """The files of the folder ``root`` that dgm-eval reads (:func:`dgm_eval_listing`) and fidkit
    does not (``images``: its listing of ``root``, before any cut), as paths relative to
    ``root``, sorted: e.g. ``.ppm`` and ``.pgm`` files, which dgm-eval globs. ``scan``:
    :func:`dgm_eval_scan` of ``root``, when the caller took one."""
    cut = _folder_prefix(Path(root))
    ours = {images.path(i)[cut:].replace(os.sep, "/") for i in range(len(images))} \
        if isinstance(images, FileImages) else set()
    return sorted(set(dgm_eval_listing(root, scan)) - ours)


def dgm_eval_row_labels(root, images: Images, scan: DgmEvalScan | None = None) -> tuple:
    """The class label dgm-eval's features carry for each item of ``images``, files of the folder
    ``root`` as fidkit listed (and perhaps cut) them, in any order: the label of dgm-eval's row of
    that file (:func:`dgm_eval_labels`: the r-th label falls on the r-th file of
    :func:`dgm_eval_listing`). Returns (int32 (len(images),), whether every label is the file's
    own class folder's). Raises :class:`SourceError` in one line when the top level holds images
    (dgm-eval has no classes then), ``images`` is not files of ``root``, or one of them is a
    file dgm-eval does not read. ``scan``: :func:`dgm_eval_scan` of ``root``, when the caller
    took one (before any cut: the folder's names, not the images kept)."""
    scan = _scanned(root, scan)
    labels, order = dgm_eval_labels(root, scan)
    if labels is None:
        raise SourceError(f"{root} holds images at its top level, so dgm-eval gives it no classes (its per-class "
                          f"Vendi score is then nan); put each class's images in a folder of its own")
    if not isinstance(images, FileImages):
        raise SourceError(f"{root}: dgm-eval's class labels need the folder's files")
    rows = {name: r for r, name in enumerate(dgm_eval_listing(root, scan))}
    cut = _folder_prefix(Path(root))
    at = np.empty(len(images), dtype=np.int64)
    for i in range(len(images)):
        r = rows.get(images.path(i)[cut:].replace(os.sep, "/"))
        if r is None:
            raise SourceError(f"{images.path(i)}: not an image dgm-eval reads from {root} (it reads one level of "
                              f"class folders, the extensions {', '.join(DGM_EVAL_EXTENSIONS)} in lower or upper "
                              f"case), so its class labels cannot be given")
        at[i] = r
    own = {d: k for k, d in enumerate(order)}  # each class folder's number
    names = list(rows)
    follows = all(labels[r] == own[names[r].split("/", 1)[0]] for r in at)
    return labels[at], follows


def _nvidia_kept(name: str, npy: bool) -> bool:
    """Whether EDM's (``npy`` False) or EDM2's (``npy`` True) dataset class numbers a file: its
    extension (``os.path.splitext``, lower case) is one PIL knows, or ``.npy`` for EDM2."""
    ext = os.path.splitext(name)[1].lower()
    return ext in Image.EXTENSION or (npy and ext == ".npy")


def nvidia_listing_note(source, images: Images, n: int) -> str | None:
    """None when EDM's and EDM2's ``ImageFolderDataset`` number the images of ``source`` (a
    folder or one ``.zip``) as fidkit does (``images``, its :func:`as_images`), so that
    :func:`seeded_subset` picks their ``n`` files; otherwise one line saying how the listings
    differ. They walk a folder without following links to folders, count every file whose
    extension PIL knows (this Pillow's list; EDM2 also ``.npy``), macOS metadata (``._*``,
    ``__MACOSX/``) included, and sort the relative names (a zip's raw member names). Other
    sources: None (nothing to compare)."""
    Image.init()
    if not isinstance(source, (str, Path)):
        return None
    root = Path(source)
    if isinstance(images, FileImages) and root.is_dir():
        # relative names by slicing (1.1 s for 200,000 files, benchmarks/bench_listing.py): os.walk's paths start
        # with the folder as given, fidkit's with it as pathlib writes it ("." left out)
        cut = len(os.path.join(str(root), ""))
        theirs = sorted(os.path.join(d, f)[cut:] for d, _, files in os.walk(str(root)) for f in files)
        ours = [images.path(i)[_folder_prefix(root):] for i in range(len(images))]
    elif isinstance(images, ZipImages) and len(images.paths) == 1:
        with zipfile.ZipFile(images.paths[0]) as z:
            theirs = sorted(set(z.namelist()))
        ours = [images.member(i) for i in range(len(images))]
    else:
        return None
    listed = {"EDM": [f for f in theirs if _nvidia_kept(f, False)],
              "EDM2": [f for f in theirs if _nvidia_kept(f, True)]}
    differ = [who for who, x in listed.items() if x != ours]
    if not differ:
        return None
    why = _listing_difference(listed[differ[-1]], ours, differ[-1], "counts")
    counts = " and ".join(f"{who} would number {len(listed[who])}" for who in differ)
    outcome = (f"{' and '.join(w for w in differ if len(listed[w]) < n)} would refuse it (fewer than {n})"
               if any(len(listed[w]) < n for w in differ) else "this subset is not the one they would pick")
    return f"{source}: {counts} files where fidkit reads {len(ours)} ({why}), so {outcome}"


class DatasetImages(ArrayImages):
    """A named dataset (:data:`DATASETS`) as :class:`ArrayImages` (NHWC, as
    :func:`dataset_images` gives it), pickled as its name and ``n`` only: a process that
    receives it (a torchrun rank) reads the dataset file itself, instead of the whole array
    (141 MB for Fashion-MNIST's training set) travelling through the rendezvous store. The
    file is read when the set is made, so a missing dataset is reported there."""

    def __init__(self, dataset: str, n: int | None = None):
        self.dataset, self.n, self.layout, self.name = dataset, n, "NHWC", dataset
        self._array = dataset_images(dataset, n)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = dataset_images(self.dataset, self.n)
        return self._array

    def __getstate__(self):
        return {**self.__dict__, "_array": None}


BATCH_KEY = "arr_0"  # the images of an ADM sample or reference batch
STATS_KEYS = ("mu", "sigma")


def npz_members(path) -> set:
    """Array names of an ``.npz`` (``arr_0``, ``mu``, ...), read from its zip directory only."""
    try:
        with zipfile.ZipFile(path) as z:
            return {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise SourceError(f"{path}: not a readable .npz ({type(e).__name__}); the file may be truncated") from None


def npz_kind(path) -> str:
    """What an ``.npz`` holds, told by its keys: 'stats' (``mu``/``sigma``, perhaps images too: an
    ADM reference batch), 'images' (only ``arr_0``: a sample batch). Anything else is refused."""
    keys = npz_members(path)
    if set(STATS_KEYS) <= keys:
        return "stats"
    if BATCH_KEY in keys:
        return "images"
    raise SourceError(f"{path}: holds neither images ('arr_0', as in ADM sample batches) nor statistics ('mu' and "
                      f"'sigma'); found {sorted(keys) or 'no arrays'}")


def _read_npy_header(f):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy version {version}")


def _check_batch_array(path, shape, dtype, sample) -> None:
    """Refuses, in one line, what ADM's evaluator cannot read as uint8 NHWC images."""
    if dtype != np.uint8:
        what = f"{path}: arr_0 has dtype {dtype}"
        if np.issubdtype(dtype, np.number) and shape and shape[0] > 0:
            x = sample()
            what += f" with values in [{x.min():.4g}, {x.max():.4g}]" + (" (first 1000 images)"
                                                                           if shape[0] > 1000 else "")
        raise SourceError(f"{what}; fidkit reads sample batches as uint8 images 0..255, as guided-diffusion's "
                          f"samplers save them (its evaluator would cast another dtype to float32 unchecked): "
                          f"save np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for images in [0, 1] (or the "
                          f"matching mapping for [-1, 1])")
    if len(shape) != 4:
        raise SourceError(f"{path}: arr_0 has shape {tuple(shape)}; expected images (N, H, W, C) in NHWC order")
    if shape[-1] not in (1, 3):
        if shape[1] in (1, 3):
            raise SourceError(f"{path}: arr_0 has shape {tuple(shape)}, which looks like NCHW; sample batches are "
                              f"NHWC: save arr.transpose(0, 2, 3, 1)")
        raise SourceError(f"{path}: arr_0 has {shape[-1]} channels (shape {tuple(shape)}); expected 1 (gray) or 3 "
                          f"(RGB) in NHWC order")
    if shape[0] == 0:
        raise SourceError(f"{path}: arr_0 holds no images")
    if shape[1] == 0 or shape[2] == 0:
        raise SourceError(f"{path}: arr_0 has shape {tuple(shape)}: images without pixels (each needs a height and "
                          f"width of at least 1)")


class BatchImages(Images):
    """The uint8 NHWC images of an ADM sample or reference batch: ``arr_0`` of an ``.npz``, or an ``.npy``.

    The array is never loaded whole: from an ``.npy`` and an uncompressed (``np.savez``)
    member an item reads only its own bytes at its offset (``pread``; nothing is mapped, so
    resident memory does not grow with the file); a compressed (``np.savez_compressed``)
    member is streamed in order. Each process opens the
    file itself on first use (decoding workers included). One gray channel is replicated
    to three, as PIL's ``convert("RGB")`` does.
    """

    in_workers = True

    def __init__(self, path):
        self.path = str(path)
        self.name = self.path
        self._pid = None
        self._arr = None
        self._stream = None
        self._fd = None
        self.offset = None  # data offset when memory-mappable
        self.fortran = False
        if self.path.lower().endswith(".npy"):
            try:
                with open(self.path, "rb") as f:
                    shape, fortran, dtype = _read_npy_header(f)
                    self.offset = f.tell()
            except (OSError, ValueError, EOFError) as e:
                raise SourceError(f"{self.path}: not a readable .npy ({e})") from None
            self.compressed = False
        else:
            try:
                with zipfile.ZipFile(self.path) as z:
                    info = z.getinfo(BATCH_KEY + ".npy")
                    self.compressed = info.compress_type != zipfile.ZIP_STORED
                    with z.open(info) as m:
                        shape, fortran, dtype = _read_npy_header(m)
                        header_len = m.tell() if not self.compressed else None
                if not self.compressed:
                    with open(self.path, "rb") as f:  # the local file header precedes the member's bytes
                        f.seek(info.header_offset)
                        local = f.read(30)
                        if local[:4] != b"PK\x03\x04":
                            raise zipfile.BadZipFile("bad local file header")
                        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30],
                                                                                                     "little")
                        self.offset = info.header_offset + 30 + name_len + extra_len + header_len
                    if self.offset + int(np.prod(shape)) * dtype.itemsize > os.path.getsize(self.path):
                        raise zipfile.BadZipFile("member data beyond the end of the file")
            except KeyError:
                raise SourceError(f"{self.path}: has no '{BATCH_KEY}' array of images") from None
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise SourceError(f"{self.path}: not a readable .npz ({type(e).__name__}: {e}); the file may be "
                                  f"truncated") from None
        self.shape, self.dtype, self.fortran = tuple(int(s) for s in shape), dtype, fortran
        if self.offset is not None and not fortran and dtype != object and dtype.itemsize:
            if self.offset + int(np.prod(shape)) * dtype.itemsize > os.path.getsize(self.path):
                raise SourceError(f"{self.path}: holds fewer bytes than its header's {self.shape} {dtype}; the file is "
                                  f"truncated")
        if dtype == object:
            raise SourceError(f"{self.path}: arr_0 holds Python objects, which fidkit does not load; save uint8 images")
        _check_batch_array(self.path, self.shape, dtype, lambda: self._slice(0, min(self.shape[0], 1000)))
        self.sequential = self.compressed

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):  # a process that receives it opens the file itself
        d = dict(self.__dict__)
        d["_arr"], d["_stream"], d["_pid"], d["_fd"] = None, None, None, None
        return d

    def close(self) -> None:
        """Closes the file descriptor and the compressed stream this process opened (a forked
        worker's inherited copies are left to it); the next item opens them again."""
        fd, stream = getattr(self, "_fd", None), getattr(self, "_stream", None)
        mine = getattr(self, "_pid", None) == os.getpid()
        self._pid, self._arr, self._stream, self._fd = None, None, None, None
        if not mine:
            return
        if stream is not None:
            _close_all(stream[0], stream[2])
        if fd is not None:
            _close_fd(fd)

    def _open(self):
        if self._pid == os.getpid():
            return
        self._pid, self._arr, self._stream, self._fd = os.getpid(), None, None, None
        if self.offset is not None and not self.fortran:
            self._fd = os.open(self.path, os.O_RDONLY)  # items are read with pread: nothing is mapped
        elif self.path.lower().endswith(".npy"):  # Fortran order, rare: numpy reads it whole
            self._arr = np.load(self.path, allow_pickle=False)
        elif self.fortran:
            with np.load(self.path, allow_pickle=False) as z:
                self._arr = z[BATCH_KEY]

    def _slice(self, lo: int, hi: int) -> np.ndarray:
        self._open()
        item = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        if self._fd is not None:
            data = os.pread(self._fd, (hi - lo) * item, self.offset + lo * item)
            if len(data) != (hi - lo) * item:
                raise SourceError(f"{self.path}: arr_0 ends early; the file is truncated")
            return np.frombuffer(data, self.dtype).reshape((hi - lo,) + self.shape[1:])
        if self._arr is not None:
            return np.array(self._arr[lo:hi])
        # compressed member: a stream read forward; reopened when asked to go back
        if self._stream is None or self._stream[1] > lo:
            if self._stream is not None:
                stream, self._stream = self._stream, None
                _close_all(stream[0], stream[2])
            z = zipfile.ZipFile(self.path)
            m = z.open(BATCH_KEY + ".npy")
            _read_npy_header(m)
            self._stream = [m, 0, z]
        m, pos = self._stream[0], self._stream[1]
        if lo > pos:
            skip = (lo - pos) * item
            while skip:
                chunk = m.read(min(skip, 1 << 24))
                if not chunk:
                    raise SourceError(f"{self.path}: arr_0 ends early; the file is truncated")
                skip -= len(chunk)
        want = (hi - lo) * item
        data = m.read(want)
        if len(data) != want:
            raise SourceError(f"{self.path}: arr_0 ends early; the file is truncated")
        self._stream[1] = hi
        return np.frombuffer(data, self.dtype).reshape((hi - lo,) + self.shape[1:])

    def __getitem__(self, i: int) -> np.ndarray:
        try:
            x = self._slice(i, i + 1)[0]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise SourceError(f"{self.path}: cannot read image {i} ({type(e).__name__}: {e}); the file may be "
                              f"truncated") from None
        return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else np.ascontiguousarray(x)


# ---------------------------------------------------------------- archives: zip, tar, tar.gz, tar shards

ZIP_EXTENSIONS = (".zip",)
TAR_EXTENSIONS = (".tar",)
TAR_GZ_EXTENSIONS = (".tar.gz", ".tgz")
ARCHIVE_EXTENSIONS = ZIP_EXTENSIONS + TAR_EXTENSIONS + TAR_GZ_EXTENSIONS
#: bytes allowed beyond 4 bytes per pixel of the largest image PIL decodes (headers, metadata, ICC profiles)
MEMBER_SIZE_MARGIN = 1 << 20
#: a zip member above this declared size whose compression ratio exceeds :data:`MAX_COMPRESSION_RATIO` is refused
RATIO_CHECK_ABOVE = 32 << 20
#: deflate cannot exceed 1032:1; only a near-constant uncompressed bitmap over 32 MiB comes close
MAX_COMPRESSION_RATIO = 1000
#: the largest single read while indexing (tar headers, a zip's central directory is capped by the file size)
_MAX_INDEX_READ = 16 << 20
_GLOB_CHARS = "*?["
MAX_BRACE_RANGE = 100_000
_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")

# problems of one member, found while indexing and reported when it is read
_OK, _ENCRYPTED, _LINK, _DANGLING, _SPARSE = 0, 1, 2, 3, 4


def member_size_limit() -> int | None:
    """The largest declared uncompressed size (bytes) of an image member that fidkit reads:
    4 × ``PIL.Image.MAX_IMAGE_PIXELS`` + :data:`MEMBER_SIZE_MARGIN` (358,962,516 bytes with
    PIL's default), the size of the largest RGBA bitmap PIL decodes plus headers; None when
    PIL's limit is off (``PIL.Image.MAX_IMAGE_PIXELS = None``)."""
    return 4 * Image.MAX_IMAGE_PIXELS + MEMBER_SIZE_MARGIN if Image.MAX_IMAGE_PIXELS else None


def _archive_kind(path) -> str | None:
    low = str(path).lower()
    for kind, exts in (("zip", ZIP_EXTENSIONS), ("tar.gz", TAR_GZ_EXTENSIONS), ("tar", TAR_EXTENSIONS)):
        if low.endswith(exts):
            return kind
    return None


def expand_pattern(pattern: str) -> list[str]:
    """The files a pattern names, sorted: numeric brace ranges as the shell expands them
    (``train-{000..009}.tar``: every name, zero padding kept, so a missing shard is reported
    rather than left out), then shell wildcards (``shards/*.tar``: the files that exist)."""
    m = _BRACE_RANGE.search(pattern)
    if m:
        lo, hi = m.group(1), m.group(2)
        if abs(int(hi) - int(lo)) > MAX_BRACE_RANGE:
            raise SourceError(f"{pattern}: a range of more than {MAX_BRACE_RANGE:,} names; give a wildcard instead")
        padded = any(len(x) > 1 and x.startswith("0") for x in (lo, hi))
        width = max(len(lo), len(hi)) if padded else 0
        step = 1 if int(hi) >= int(lo) else -1
        out = []
        for v in range(int(lo), int(hi) + step, step):
            out.extend(expand_pattern(pattern[:m.start()] + str(v).zfill(width) + pattern[m.end():]))
        return sorted(set(out))
    if any(c in pattern for c in _GLOB_CHARS):
        return sorted(glob.glob(pattern))
    return [pattern]


def _is_pattern(source) -> bool:
    return isinstance(source, str) and not os.path.exists(source) and (
        any(c in source for c in _GLOB_CHARS) or bool(_BRACE_RANGE.search(source)))


def check_exists(source) -> None:
    """Raises :class:`SourceError` for a path that does not exist, with the message every
    missing path gets, and for a pattern that matches no file or names a missing one (a brace
    range names every file); other sources pass. Cheap (no file is opened): for checking both
    sides of a comparison before either is read."""
    if isinstance(source, (list, tuple)) and source and all(
            isinstance(s, (str, Path)) and _archive_kind(s) for s in source):  # archives (a list of image
        for s in source:                                                     # files may --skip-bad some)
            check_exists(s)
        return
    if not isinstance(source, (str, Path)):
        return
    if _is_pattern(str(source)):
        found = expand_pattern(str(source))
        if not found:
            raise SourceError(f"{source}: the pattern matches no files")
        missing = [f for f in found if not os.path.exists(f)]
        if missing:
            raise SourceError(f"{missing[0]}: no such file ({len(missing)} of the {len(found)} that {source} names "
                              f"are missing)")
    elif not os.path.exists(source):
        raise SourceError(f"{source}: no such file or folder; give an image folder or a statistics .npz")


def is_archive_source(source) -> bool:
    """A zip, tar or tar.gz file (by its name), a pattern naming such files, or a list of them."""
    if isinstance(source, (str, Path)):
        if _is_pattern(str(source)):
            found = expand_pattern(str(source))
            return bool(found) and all(_archive_kind(f) for f in found)
        return _archive_kind(source) is not None and os.path.isfile(source)
    return (isinstance(source, (list, tuple)) and bool(source) and all(isinstance(s, (str, Path)) for s in source)
            and all(_archive_kind(s) for s in source))


class _CappedReader:
    """A binary file for zipfile and tarfile while indexing: no single read returns more than
    the file holds (or :data:`_MAX_INDEX_READ` from a decompressed stream), so a damaged size
    field cannot make them allocate gigabytes."""

    def __init__(self, f, size: int | None):
        self.f, self.size = f, size
        self.mode = "rb"
        self.last = (-1, b"")  # (position, bytes) of the last read

    def read(self, n: int = -1) -> bytes:
        pos = self.f.tell()
        cap = _MAX_INDEX_READ if self.size is None else max(self.size - pos, 0)
        data = self.f.read(cap if n is None or n < 0 else min(n, cap))
        self.last = (pos, data)
        return data

    def block_at(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset``, from the last read when it started there (a gzip stream
        cannot seek back without decompressing again from its start)."""
        if self.last[0] == offset and len(self.last[1]) >= n:
            return self.last[1][:n]
        self.f.seek(offset)
        return self.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _member_key(name: str) -> str:
    """The name a member sorts by: without leading ``/`` and ``./`` (``tar -C dir .`` writes them)."""
    key = name.lstrip("/")
    while key.startswith("./"):
        key = key[2:].lstrip("/")
    return key


#: exceptions of zipfile, tarfile, gzip and zlib on a damaged archive, turned into one-line SourceErrors
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, OSError, EOFError, ValueError,
                   struct.error, NotImplementedError, OverflowError, zlib.error, KeyError, IndexError, MemoryError)


class ArchiveImages(Images):
    """The image members of one or more archives, read without extracting them to disk.

    Members are chosen by name as a folder's files are (:func:`is_image_name`: an image
    extension, not macOS metadata); directories and other members are ignored. Order:
    archives sorted by path, then each archive's members sorted by name (leading ``./``
    dropped), so an archive of a folder gives the folder's order; a name present twice counts
    once, its last copy (what extracting gives). ``images[i]`` is uint8 (H, W, 3) RGB, 0..255, decoded as from a file;
    ``label(i)`` is ``ARCHIVE:MEMBER``. The member table (names, offsets, sizes) lives in
    numpy arrays, so forked workers do not copy it; each process opens the archive itself
    (pickling drops open files). A member that cannot be read raises a one-line
    :class:`SourceError` starting with its label (``--skip-bad`` leaves it out); an archive
    whose member list cannot be trusted (unreadable directory, bad tar header, truncated
    file) is refused whole when the set is made.
    """

    in_workers = True

    kind = "archive"

    def __init__(self, paths, name: str | None = None):
        paths = sorted(str(p) for p in paths)
        self.paths = paths
        self.name = name or (paths[0] if len(paths) == 1 else f"{len(paths)} archives ({paths[0]} …)")
        self._pid = self._fd = self._fd_arch = self._stream = None
        rows, names = [], []
        for a, path in enumerate(paths):
            if not os.path.isfile(path):
                raise SourceError(f"{path}: no such file; give an existing {self.kind} archive")
            try:
                members = self._index(path)
            except SourceError:
                raise
            except _ARCHIVE_ERRORS as e:
                raise SourceError(f"{path}: cannot read the {self.kind} archive ({_one_line(e)}); the file is damaged "
                                  f"or not a {self.kind} archive: recreate or re-download it") from None
            for key in sorted(members):
                name_, row = members[key]
                names.append(name_.encode("utf-8", "surrogateescape"))
                rows.append((a,) + row)
        if not rows:
            raise SourceError(f"{self.name}: no images found (looked for members ending in "
                              f"{', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
        ends = np.cumsum([len(n) for n in names], dtype=np.int64)
        self._blob = np.frombuffer(b"".join(names), dtype=np.uint8)
        self._starts, self._ends = ends - np.array([len(n) for n in names], dtype=np.int64), ends
        cols = list(zip(*rows))
        self._arch = np.array(cols[0], dtype=np.int32)
        self._offset = np.array(cols[1], dtype=np.int64)   # zip: local header; tar: data (uncompressed stream)
        self._csize = np.array(cols[2], dtype=np.int64)    # bytes stored in the archive
        self._size = np.array(cols[3], dtype=np.int64)     # bytes once decompressed
        self._method = np.array(cols[4], dtype=np.int32)   # zip compression method; 0 for tar
        self._flags = np.array(cols[5], dtype=np.int32)    # zip general purpose flags; 0 for tar
        self._crc = np.array(cols[6], dtype=np.uint32)     # zip CRC-32; 0 for tar
        self._problem = np.array(cols[7], dtype=np.int8)

    def _index(self, path) -> dict:
        """key -> (member name, (offset, stored size, size, method, flags, crc, problem))."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._arch)

    def member(self, i: int) -> str:
        """The name of item ``i`` inside its archive."""
        return self._blob[self._starts[i]:self._ends[i]].tobytes().decode("utf-8", "backslashreplace")

    def label(self, i: int) -> str:
        return f"{self.paths[self._arch[i]]}:{self.member(i)}"

    def subset(self, lo: int, hi: int, name: str | None = None) -> "ArchiveImages":
        """Items ``lo`` to ``hi`` − 1 as a set of their own (``--shard``)."""
        out = copy.copy(self)
        for k in ("_arch", "_offset", "_csize", "_size", "_method", "_flags", "_crc", "_problem", "_starts", "_ends"):
            setattr(out, k, getattr(self, k)[lo:hi])
        out.name = name or f"{self.name}[{lo}:{hi}]"
        out._pid = out._fd = out._fd_arch = out._stream = None
        return out

    def __getstate__(self):  # a process that receives it opens the archives itself
        d = dict(self.__dict__)
        d["_pid"] = d["_fd"] = d["_fd_arch"] = d["_stream"] = None
        return d

    def close(self) -> None:
        """Closes the archive descriptor and the tar.gz stream this process opened (a forked
        worker's inherited copies are left to it); the next item opens them again."""
        fd, stream = getattr(self, "_fd", None), getattr(self, "_stream", None)
        mine = getattr(self, "_pid", None) == os.getpid()
        self._pid = self._fd = self._fd_arch = self._stream = None
        if not mine:
            return
        if stream is not None:
            _close_all(stream[1])
        if fd is not None:
            _close_fd(fd)

    def _pread(self, a: int, n: int, offset: int) -> bytes:
        """``n`` bytes at ``offset`` of archive ``a``; one archive is kept open per process."""
        if self._pid != os.getpid():
            self._pid, self._fd, self._fd_arch, self._stream = os.getpid(), None, None, None
        if self._fd_arch != a:
            if self._fd is not None:
                os.close(self._fd)
            self._fd, self._fd_arch = None, None
            self._fd = os.open(self.paths[a], os.O_RDONLY)
            self._fd_arch = a
        return os.pread(self._fd, n, offset)

    def _check_size(self, i: int, label: str) -> None:
        limit, size, stored = member_size_limit(), int(self._size[i]), int(self._csize[i])
        if limit is not None and size > limit:
            raise SourceError(f"{label}: member declares {size:,} bytes, more than an image PIL decodes can need "
                              f"({limit:,} = 4 × PIL.Image.MAX_IMAGE_PIXELS + 1 MiB); the archive is damaged or "
                              f"hostile: check it, or skip the member with --skip-bad")
        if size > RATIO_CHECK_ABOVE and size > MAX_COMPRESSION_RATIO * max(stored, 1):
            raise SourceError(f"{label}: member would expand {size:,} bytes from {stored:,} (over "
                              f"{MAX_COMPRESSION_RATIO}:1), which no image needs; the archive is damaged or "
                              f"hostile: check it, or skip the member with --skip-bad")

    def _check_problem(self, i: int, label: str) -> None:
        p = int(self._problem[i])
        if p == _ENCRYPTED:
            raise SourceError(f"{label}: encrypted member, which fidkit does not read; extract the archive with its "
                              f"password, or re-create it without encryption")
        if p == _LINK:
            raise SourceError(f"{label}: a symbolic link stored in the zip, which fidkit does not follow; store the "
                              f"image itself")
        if p == _DANGLING:
            raise SourceError(f"{label}: a link to a member the archive does not hold as an image; store the image "
                              f"itself")
        if p == _SPARSE:
            raise SourceError(f"{label}: a sparse tar member, which fidkit does not read; re-create the archive "
                              f"without --sparse")

    def read_member(self, i: int) -> bytes:
        """The bytes of item ``i``'s file, checked; raises a one-line SourceError naming it."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> np.ndarray:
        return decode(self.label(i), self.read_member(i))


def _close_all(*files) -> None:
    """Closes each of ``files`` (streams, ``ZipFile`` objects), all of them even if one fails."""
    for f in files:
        try:
            f.close()
        except Exception:  # a damaged stream may fail to close; its descriptor is released all the same
            pass


def _close_fd(fd: int) -> None:
    """``os.close``, quiet: called from ``finally`` blocks and ``__del__``, where an error would hide
    the one being raised."""
    try:
        os.close(fd)
    except OSError:
        pass


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


class ZipImages(ArchiveImages):
    """The images of ``.zip`` files, each member read at its recorded offset (``pread``):
    random access, by any number of decoding workers. Stored, deflated and bzip2 members are
    read; their CRC-32 is checked. Refused per member (``--skip-bad`` skips it): encrypted,
    another compression method, a declared size over :func:`member_size_limit` or over
    1000:1 above 32 MiB, a bad CRC, a local header that does not match the directory, data
    past the end of the file. Refused whole: a directory that cannot be read (a truncated
    zip loses it)."""

    kind = "zip"

    def _index(self, path) -> dict:
        members = {}
        with open(path, "rb") as f, zipfile.ZipFile(_CappedReader(f, os.fstat(f.fileno()).st_size)) as z:
            for info in z.infolist():
                key = _member_key(info.filename)
                if info.is_dir() or not is_image_name(key):
                    continue
                problem = _ENCRYPTED if info.flag_bits & 0x1 else _OK
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    problem = _LINK
                members[key] = (info.orig_filename, (info.header_offset, info.compress_size, info.file_size,
                                                     info.compress_type, info.flag_bits, info.CRC, problem))
        return members

    def read_member(self, i: int) -> bytes:
        label = self.label(i)
        self._check_problem(i, label)
        self._check_size(i, label)
        a, off, stored, size = int(self._arch[i]), int(self._offset[i]), int(self._csize[i]), int(self._size[i])
        method, flags = int(self._method[i]), int(self._flags[i])
        if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2):
            raise SourceError(f"{label}: compression method {method}, which fidkit does not read (it reads stored, "
                              f"deflate and bzip2); re-create the archive with one of those")
        try:
            head = self._pread(a, 30, off)
            if len(head) < 30 or head[:4] != b"PK\x03\x04":
                raise SourceError(f"{label}: no local file header at byte {off}; the archive is damaged: recreate "
                                  f"it, or skip the member with --skip-bad")
            name_len, extra_len = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
            body = self._pread(a, name_len + extra_len + stored, off + 30)
            if len(body) < name_len + extra_len + stored:
                raise SourceError(f"{label}: ends early ({len(body) - name_len - extra_len} of {stored} stored "
                                  f"bytes); the archive is truncated or damaged: recreate it, or skip the member "
                                  f"with --skip-bad")
            local_name = body[:name_len].decode("utf-8" if flags & 0x800 else "cp437", "replace")
            if local_name != self.member(i):
                raise SourceError(f"{label}: its local header names {local_name[:100]!r}; the archive is damaged: "
                                  f"recreate it, or skip the member with --skip-bad")
            data = body[name_len + extra_len:]
            if method == zipfile.ZIP_DEFLATED:
                d = zlib.decompressobj(-15)
                out = d.decompress(data, size + 1)
                complete = d.eof
            elif method == zipfile.ZIP_BZIP2:
                d = bz2.BZ2Decompressor()
                out = d.decompress(data, size + 1)
                complete = d.eof
            else:
                out, complete = data, True
        except SourceError:
            raise
        except (OSError, ValueError, EOFError, zlib.error) as e:
            raise SourceError(f"{label}: cannot read the member ({_one_line(e)}); the archive is damaged: recreate "
                              f"it, or skip the member with --skip-bad") from None
        if len(out) != size or not complete:
            raise SourceError(f"{label}: decompresses to {'more than ' if len(out) > size else ''}{len(out):,} "
                              f"bytes{'' if complete else ' without an end of stream'}, its directory says "
                              f"{size:,}; the archive is damaged: recreate it, or skip the member with --skip-bad")
        if zlib.crc32(out) != int(self._crc[i]):
            raise SourceError(f"{label}: bad CRC-32 (the member's bytes are damaged); recreate the archive, or skip "
                              f"the member with --skip-bad")
        return out


class TarImages(ArchiveImages):
    """The images of ``.tar`` files (webdataset shards among them) and ``.tar.gz``/``.tgz`` files.

    A plain tar's member is read at its recorded data offset (``pread``): random access, by
    any number of workers. A tar.gz is one compressed stream: it is checked whole (gzip
    CRC) when the set is made, and its members are decompressed in order by one process
    (``sequential``), so it is slower than a plain tar. Hard and symbolic links to image
    members are followed. Refused per member: a size over :func:`member_size_limit`, a link
    to nothing readable, a sparse member. Refused whole: a bad header (checksum, fields),
    a member running past the end of the file, no end-of-archive blocks (a truncated
    file), a damaged gzip stream. Tar keeps no checksum of member data: damaged bytes in a
    member show only if the image no longer decodes.
    """

    kind = "tar"

    def __init__(self, paths, name: str | None = None):
        super().__init__(paths, name)
        self._gz = [_archive_kind(p) == "tar.gz" for p in self.paths]
        self.sequential = any(self._gz)

    def _index(self, path) -> dict:
        gz = _archive_kind(path) == "tar.gz"
        entries = None if gz else _scan_plain_tar(path)  # the common case, ~10× faster than tarfile
        if entries is None:
            entries = self._index_with_tarfile(path, gz)
        return self._members(entries)

    def _index_with_tarfile(self, path, gz: bool) -> dict:
        """name key -> (name, data offset, size, problem) or (name, link target key), read
        with :mod:`tarfile`, which also names what is wrong with a damaged archive."""
        entries = {}
        with open(path, "rb") as raw:
            src = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            f = _CappedReader(src, None if gz else os.fstat(raw.fileno()).st_size)
            tf = tarfile.TarFile(fileobj=f, mode="r", encoding="utf-8", errors="surrogateescape")
            last = -1
            while True:
                ti = tf.next()
                if ti is None:
                    break
                if ti.offset <= last:  # a negative size field sent tarfile back: it would loop forever
                    raise SourceError(f"{path}: bad tar header before byte {last:,} (a negative size); recreate "
                                      f"or re-download the archive")
                last = ti.offset
                tf.members.clear()  # a member list of the whole archive is not kept
                key = _member_key(ti.name)
                if ti.isreg():
                    entries[key] = (ti.name, ti.offset_data, ti.size, _SPARSE if ti.issparse() else _OK)
                elif ti.islnk() or ti.issym():
                    base = "" if ti.islnk() else posixpath.dirname(key)
                    target = _member_key(posixpath.normpath(posixpath.join(base, ti.linkname)))
                    entries[key] = (ti.name, target)
                else:
                    entries.pop(key, None)
            end = f.block_at(tf.offset, 512)
            if len(end) < 512:
                raise SourceError(f"{path}: ends without tar's end-of-archive blocks (at byte {tf.offset:,}"
                                  f"{' of the decompressed stream' if gz else ''}); the archive is truncated: "
                                  f"recreate or re-download it")
            if end.count(0) != 512:
                raise SourceError(f"{path}: bad tar header at byte {tf.offset:,}"
                                  f"{' of the decompressed stream' if gz else ''}; the members from there on "
                                  f"cannot be found: recreate or re-download the archive")
            if gz:
                while src.read(1 << 20):  # to the end of the stream: gzip checks its CRC there
                    pass
        return entries

    @staticmethod
    def _members(entries: dict) -> dict:
        members = {}
        for key, e in entries.items():
            if not is_image_name(key):
                continue
            seen = 0
            while len(e) == 2 and seen < 16:  # a link: follow it to a regular member
                e = entries.get(e[1], (None, None))
                seen += 1
            name = entries[key][0]
            if len(e) == 4 and e[0] is not None:
                members[key] = (name, (e[1], e[2], e[2], 0, 0, 0, e[3]))
            else:
                members[key] = (name, (0, 0, 0, 0, 0, 0, _DANGLING))
        return members

    def read_member(self, i: int) -> bytes:
        label = self.label(i)
        self._check_problem(i, label)
        self._check_size(i, label)
        a, off, size = int(self._arch[i]), int(self._offset[i]), int(self._size[i])
        try:
            data = self._stream_read(a, off, size) if self._gz[a] else self._pread(a, size, off)
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise SourceError(f"{label}: cannot read the member ({_one_line(e)}); the archive is damaged: recreate "
                              f"it, or skip the member with --skip-bad") from None
        if len(data) != size:
            raise SourceError(f"{label}: ends early ({len(data):,} of {size:,} bytes); the archive is truncated: "
                              f"recreate it, or skip the member with --skip-bad")
        return data

    def _stream_read(self, a: int, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of tar.gz ``a``'s decompressed stream, read forward;
        the stream is reopened when asked to go back or to another archive."""
        if self._pid != os.getpid():
            self._pid, self._fd, self._fd_arch, self._stream = os.getpid(), None, None, None
        if self._stream is None or self._stream[0] != a or self._stream[2] > offset:
            if self._stream is not None:
                stream, self._stream = self._stream, None
                _close_all(stream[1])
            self._stream = [a, gzip.open(self.paths[a], "rb"), 0]
        _, g, pos = self._stream
        while pos < offset:
            chunk = g.read(min(offset - pos, 1 << 20))
            if not chunk:
                break
            pos += len(chunk)
        data = g.read(size) if pos == offset else b""
        self._stream[2] = pos + len(data)
        return data


_TAR_MAGICS = (b"ustar\x0000", b"ustar  \x00")  # POSIX ustar, GNU
_TAR_PAX_KEYS = {"path", "linkpath", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname"}
#: the numeric header fields (mode, uid, gid, size, mtime, checksum, devmajor, devminor)
_TAR_NUMBERS = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156), (329, 337), (337, 345))
_OCTAL = re.compile(rb"[0-7]*")
_DIGITS = re.compile(rb"[0-9]+")


def _tar_text(b: bytes) -> str:
    """A header's string field as tarfile decodes it: up to the first NUL, UTF-8, surrogateescape."""
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _tar_octal(b: bytes) -> int | None:
    """A numeric header field written plainly (ASCII octal digits, spaces, NULs), or None for
    anything tarfile reads another way (base-256, signs, other digits)."""
    digits = b.split(b"\0", 1)[0].strip(b" ")
    return int(digits or b"0", 8) if _OCTAL.fullmatch(digits) else None


def _scan_plain_tar(path) -> dict | None:
    """The members of a plainly written uncompressed tar, as
    :meth:`TarImages._index_with_tarfile` gives them (name key -> (name, data offset, size,
    problem) or (name, link target key)), from its 512-byte headers read directly: ~20 µs a
    member where :mod:`tarfile` takes ~100.

    Only what is plain is read here: ustar or GNU headers whose numeric fields are plain
    octal and whose (unsigned) checksum holds; regular files, directories, hard and symbolic
    links, devices and fifos (the non-regular ones without data); at most one GNU long name,
    long link or POSIX extended header before a member, the latter holding only path,
    linkpath, size, times and owners. Anything else (global or sparse headers, base-256
    numbers, stacked extended headers, a damaged header, a member running past the end, no
    end-of-archive block) returns None, and the caller reads the archive with tarfile, which
    also says what is wrong."""
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except OSError:
        return None
    entries: dict = {}
    pax: dict | None = None
    longname = longlink = None
    with f:
        off = 0
        while True:
            h = os.pread(f.fileno(), 512, off)
            if len(h) < 512:
                return None
            pending = pax is not None or longname is not None or longlink is not None
            if not any(h):  # the end, unless an extended header awaits its member (tarfile refuses that)
                return entries if off > 0 and not pending else None
            if h[257:265] not in _TAR_MAGICS:
                return None
            numbers = [_tar_octal(h[a:b]) for a, b in _TAR_NUMBERS]
            if None in numbers or numbers[5] != 256 + sum(h[:148]) + sum(h[156:]):  # unsigned sum
                return None
            n, t, data = numbers[3], h[156:157], off + 512
            end = data + (n + 511) // 512 * 512
            if t in (b"x", b"L", b"K"):
                if pending or end > size:
                    return None  # stacked extended headers: tarfile's order of application
                block = os.pread(f.fileno(), end - data, data)
                body = block[:n]
                if any(block[n:]):
                    return None  # bytes in the padding, which tarfile parses too
                if t == b"L":
                    longname = _tar_text(body)
                elif t == b"K":
                    longlink = _tar_text(body)
                else:
                    pax = _pax_records(body)
                    if pax is None:
                        return None
                off = end
                continue
            pax = pax or {}
            if "size" in pax:
                n = int(pax["size"])
                end = data + (n + 511) // 512 * 512
            name = _tar_text(h[0:100])
            if t == b"\0" and name.endswith("/"):
                t = b"5"
            if t == b"5":
                name = name.rstrip("/")
            prefix = _tar_text(h[345:500])
            if prefix:
                name = prefix + "/" + name
            if longname is not None:
                name = longname.removesuffix("/") if t == b"5" else longname
            if "path" in pax:
                name = pax["path"].rstrip("/")
            key = _member_key(name)
            if t in (b"0", b"\0", b"7"):
                if data + n > size:
                    return None
                entries[key] = (name, data, n, _OK)
                off = end
            elif n:
                return None  # a non-regular member with data: tarfile does not skip it
            elif t in (b"1", b"2"):
                linkname = pax.get("linkpath", longlink if longlink is not None else _tar_text(h[157:257]))
                base = "" if t == b"1" else posixpath.dirname(key)
                entries[key] = (name, _member_key(posixpath.normpath(posixpath.join(base, linkname))))
                off = data
            elif t in (b"3", b"4", b"5", b"6"):
                entries.pop(key, None)
                off = data
            else:
                return None  # sparse, global headers, vendor types: tarfile's call
            pax, longname, longlink = None, None, None


def _pax_records(body: bytes) -> dict | None:
    """A POSIX extended header's ``LEN key=value\\n`` records, or None for keys beyond
    :data:`_TAR_PAX_KEYS`, a malformed record or a size that is not plain digits."""
    out, pos = {}, 0
    while pos < len(body):
        sp = body.find(b" ", pos)
        if sp < 0 or not _DIGITS.fullmatch(body[pos:sp]):
            return None
        length = int(body[pos:sp])
        rec = body[sp + 1:pos + length]
        if pos + length > len(body) or not rec.endswith(b"\n") or b"=" not in rec:
            return None
        k, v = rec[:-1].split(b"=", 1)
        key = k.decode("utf-8", "surrogateescape")
        if key not in _TAR_PAX_KEYS:
            return None
        out[key] = v.decode("utf-8", "surrogateescape")
        pos += length
    if "size" in out and not _DIGITS.fullmatch(out["size"].encode("utf-8", "surrogateescape")):
        return None
    return out


def archive_images(source) -> ArchiveImages:
    """An archive source as :class:`ZipImages` or :class:`TarImages`: a ``.zip``, ``.tar``,
    ``.tar.gz``/``.tgz`` path, a pattern (``'shards/*.tar'``, ``'train-{000..009}.tar'``) or a
    list of such paths, all zips or all tars (plain and gzipped may mix)."""
    name = None
    if isinstance(source, (str, Path)):
        if _is_pattern(str(source)):
            paths = expand_pattern(str(source))
            if not paths:
                raise SourceError(f"{source}: the pattern matches no files")
            name = str(source)
        else:
            paths = [str(source)]
    else:
        paths = [str(p) for p in source]
    kinds = {"zip" if _archive_kind(p) == "zip" else "tar" for p in paths}
    if len(kinds) != 1 or not all(_archive_kind(p) for p in paths):
        raise SourceError(f"{name or paths[0]}: give archives of one kind (all .zip, or all .tar/.tar.gz); "
                          f"found {', '.join(sorted({Path(p).suffix or p for p in paths}))}")
    return (ZipImages if kinds == {"zip"} else TarImages)(paths, name)


def is_batch_path(source) -> bool:
    """An ``.npy``, or an ``.npz`` whose keys say it holds images (``arr_0``) and no statistics."""
    if not isinstance(source, (str, Path)):
        return False
    low = str(source).lower()
    if low.endswith(".npy"):
        return True
    return low.endswith(".npz") and os.path.isfile(source) and npz_kind(source) == "images"


def as_images(source) -> Images:
    """Any image source as one :class:`Images`: a folder (searched recursively), a sample batch
    ``.npz`` (``arr_0``) or ``.npy``, an archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``), a
    pattern of tar shards or image files (``'shards/*.tar'``, ``'train-{000..009}.tar'``), a
    list of image paths or of archives, or uint8 arrays (numpy NHWC, torch NCHW). Statistics
    files are not images; callers tell them apart first."""
    import torch

    if isinstance(source, Images):
        return source
    if isinstance(source, (str, Path)):
        p = Path(source)
        if str(source).lower().endswith((".npz", ".npy")) and os.path.isfile(p):
            return BatchImages(p)
        if _is_pattern(str(source)):
            found = expand_pattern(str(source))
            if found and all(f.lower().endswith(IMAGE_EXTENSIONS) for f in found):
                return FileImages(found, str(source))
            return archive_images(source)
        if is_archive_source(source):
            return archive_images(source)
        return FileImages(list_images(p), str(source))
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], (str, Path)):
        if is_archive_source(source):
            return archive_images(source)
        return FileImages([Path(s) for s in source])
    if isinstance(source, np.ndarray):
        return ArrayImages(source, "NHWC")
    if torch.is_tensor(source):
        return ArrayImages(source, "NCHW")
    raise SourceError(f"cannot read a source of type {type(source).__name__}; give a folder, an .npz, a list of "
                      f"image paths or uint8 images")
