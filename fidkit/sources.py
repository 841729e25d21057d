"""Image sources: folders searched recursively, file lists and in-memory arrays.

Every image is decoded with PIL and ``convert("RGB")``, as the reference implementations
do: grayscale is replicated to three channels, alpha is dropped (not composited), palette
images are expanded. A decoded image is a uint8 numpy array of shape (H, W, 3). Images of
more than 8 bits per channel (16-bit PNG, 32-bit TIFF) are refused rather than clipped.
"""

from __future__ import annotations

import os
import zipfile
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


# ---------------------------------------------------------------- one indexable set of images

class Images:
    """An indexable set of images: ``len(images)``, ``images[i]`` -> uint8 (H, W, 3) RGB.

    Every kind of source (folder, file list, sample batch ``.npz``/``.npy``, in-memory
    arrays) becomes one of these, so the pipeline never asks what it was given. Items are
    read and decoded in the process that asks for them (a decoding worker opens files
    itself); an item that cannot be read raises :class:`SourceError`, and ``label(i)`` names
    it. ``sequential`` sets say that their items are cheap only in increasing order (a
    compressed archive member): they are read by one process. Archives and torchrun shards
    are meant to plug in here as further subclasses.
    """

    name: str = "images"
    sequential: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def label(self, i: int) -> str:
        return f"{self.name}[{i}]"


class FileImages(Images):
    """Image files decoded with PIL. The paths live in one byte buffer plus offsets, not in
    a list of Python objects: forked decoding workers read a list's items and so write their
    reference counts, which copies the list's pages into every worker (memory growing with
    N × workers)."""

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
        raise SourceError(f"{what}; sample batches hold uint8 images 0..255 as ADM's evaluator reads them: "
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


class BatchImages(Images):
    """The uint8 NHWC images of an ADM sample or reference batch: ``arr_0`` of an ``.npz``, or an ``.npy``.

    The array is never loaded whole: from an ``.npy`` and an uncompressed (``np.savez``)
    member an item reads only its own bytes at its offset (``pread``; nothing is mapped, so
    resident memory does not grow with the file); a compressed (``np.savez_compressed``)
    member is streamed in order. Each process opens the
    file itself on first use (decoding workers included). One gray channel is replicated
    to three, as PIL's ``convert("RGB")`` does.
    """

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
                self._stream[0].close()
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


def is_batch_path(source) -> bool:
    """An ``.npy``, or an ``.npz`` whose keys say it holds images (``arr_0``) and no statistics."""
    if not isinstance(source, (str, Path)):
        return False
    low = str(source).lower()
    if low.endswith(".npy"):
        return True
    return low.endswith(".npz") and Path(source).is_file() and npz_kind(source) == "images"


def as_images(source) -> Images:
    """Any image source as one :class:`Images`: a folder (searched recursively), a sample batch
    ``.npz`` (``arr_0``) or ``.npy``, a list of image paths, or uint8 arrays (numpy NHWC,
    torch NCHW). Statistics files are not images; callers tell them apart first."""
    import torch

    if isinstance(source, Images):
        return source
    if isinstance(source, (str, Path)):
        p = Path(source)
        if str(source).lower().endswith((".npz", ".npy")) and p.is_file():
            return BatchImages(p)
        return FileImages(list_images(p), str(source))
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], (str, Path)):
        return FileImages([Path(s) for s in source])
    if isinstance(source, np.ndarray):
        return ArrayImages(source, "NHWC")
    if torch.is_tensor(source):
        return ArrayImages(source, "NCHW")
    raise SourceError(f"cannot read a source of type {type(source).__name__}; give a folder, an .npz, a list of "
                      f"image paths or uint8 images")
