"""Training images as float tensors in [-1, 1], and a seeded sampler of batches.

A data source is the name of a dataset fidkit reads (``fashion-mnist-train``,
``fashion-mnist-test``, through :func:`fidkit.dataset_images`) or a folder of image files
(the files :func:`fidkit.list_images` lists, as ``fidkit compute`` reads them: png, jpg,
jpeg, bmp, webp, tif, tiff, searched recursively, links to folders followed once, sorted
by relative path).
Images are decoded with PIL, converted to grayscale (``"L"``) or RGB, and resized to
size×size with PIL's bicubic filter (antialiased when shrinking) where their size differs.

:func:`load_images` returns float32 (N, C, H, W) in [-1, 1] (x / 127.5 − 1);
:func:`to_uint8_nhwc` maps such tensors back to the uint8 (N, H, W, 3) images fidkit
takes (grayscale replicated to three channels), rounding as saving an image does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fidkit


class DataError(fidkit.FidkitError):
    """A training data source cannot be read as asked."""


def _resize(img: Image.Image, size: int) -> Image.Image:
    return img if img.size == (size, size) else img.resize((size, size), Image.BICUBIC)


def _folder_files(source: str) -> list:
    """The image files of a folder ``source``, as ``fidkit compute`` lists and orders them;
    :class:`DataError` for a source that is no folder or holds no images."""
    if not Path(source).is_dir():
        raise DataError(f"{source}: neither a dataset ({', '.join(fidkit.DATASETS)}) nor an image folder")
    try:
        return fidkit.list_images(source)
    except fidkit.FidkitError as e:
        raise DataError(str(e)) from None


def count_images(source: str, limit: int | None = None) -> int:
    """How many images :func:`load_images` would return for ``source`` and ``limit``, without
    decoding a folder's files (a dataset's file is read: 0.7 s for Fashion-MNIST's 60,000).
    Raises :class:`DataError` as it does, or fidkit's :class:`~fidkit.errors.SourceError`
    for a dataset that is not installed."""
    n = fidkit.dataset_images(source, limit).shape[0] if source in fidkit.DATASETS else len(_folder_files(source))
    return n if limit is None else min(n, limit)


def load_images(source: str, size: int = 28, channels: int = 1, limit: int | None = None) -> torch.Tensor:
    """Images of ``source`` as float32 (N, channels, size, size) with values in [-1, 1].

    ``source``: a name in ``fidkit.DATASETS`` or an image folder. ``channels``: 1
    (grayscale, PIL ``"L"``) or 3 (RGB). ``limit``: only the first ``limit`` images (in
    the dataset's order, or sorted file order). Raises :class:`DataError` for a source that
    is neither, an empty folder or an undecodable file.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    if source in fidkit.DATASETS:
        rgb = fidkit.dataset_images(source, limit)  # uint8 (N, H, W, 3), grayscale replicated
        if rgb.shape[1:3] == (size, size):  # no resize: the pixels as they are ("L" of replicated gray = gray)
            x = rgb[..., :1] if channels == 1 else rgb
            return _to_float(x.transpose(0, 3, 1, 2))
        pils = [Image.fromarray(a) for a in rgb]
    else:
        files = _folder_files(source)
        if limit is not None:
            files = files[:limit]
        pils = []
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    pils.append(im.copy())
            except (OSError, ValueError, SyntaxError) as e:
                raise DataError(f"{f}: cannot decode image ({type(e).__name__})") from None
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(_resize(im.convert(mode), size), dtype=np.uint8) for im in pils]
    x = np.stack(arrays)
    return _to_float(x[:, None, :, :] if channels == 1 else x.transpose(0, 3, 1, 2))


def _to_float(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) → float32 (N, C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).float().div_(127.5).sub_(1.0)


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] (C = 1 or 3) → uint8 numpy (N, H, W, 3), as fidkit takes.

    Clamp to [-1, 1], map to 0..255, add 0.5 and truncate (what saving the image as a file
    does; uint8 images loaded by :func:`load_images` come back exactly). Grayscale is
    replicated to three channels, as PIL's ``convert("RGB")`` does.
    """
    x = fidkit.to_uint8(images, (-1, 1))
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


class BatchSampler:
    """Seeded batches of a fixed tensor of images, epoch by epoch without replacement.

    Each epoch is a permutation of the N images drawn from a private ``torch.Generator``
    seeded with ``seed``; a batch is the next ``batch_size`` indices (an epoch's tail that
    is too short is dropped, so every batch has ``batch_size`` images). The order depends
    only on (seed, N, batch_size), and :meth:`state_dict` / :meth:`load_state_dict` capture
    it, so a resumed run draws the very same batches as an uninterrupted one.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if batch_size > data.shape[0]:
            raise DataError(f"batch size {batch_size} is larger than the {data.shape[0]} training images")
        self.data, self.batch_size = data, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(data.shape[0], generator=self.gen)
        self.pos = 0
        self.epoch = 0

    def next(self) -> torch.Tensor:
        """The next batch: float32 (batch_size, C, H, W) in [-1, 1], on the data's device."""
        if self.pos + self.batch_size > self.perm.shape[0]:
            self.perm = torch.randperm(self.data.shape[0], generator=self.gen)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.data[idx]

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm.clone(), "pos": self.pos, "epoch": self.epoch,
                "batch_size": self.batch_size, "n": int(self.data.shape[0])}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.data.shape[0] or state["batch_size"] != self.batch_size:
            raise DataError(f"the checkpoint's sampler drew batches of {state['batch_size']} from "
                            f"{state['n']} images, not {self.batch_size} from {self.data.shape[0]}; "
                            f"resume with the same data and batch size")
        self.gen.set_state(state["gen"])
        self.perm = state["perm"].clone()
        self.pos, self.epoch = int(state["pos"]), int(state["epoch"])
