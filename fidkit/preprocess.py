"""Protocols: how a decoded image becomes the network's 299×299 input.

A protocol fixes the resize to 299×299 and the scaling to [-1, 1]; together with PIL
decoding with ``convert("RGB")`` (in :mod:`fidkit.sources`) and the weights, it decides
which published numbers a score can be compared with.

========================  =======================================  ==================
protocol                  resize to 299×299                        scaling
========================  =======================================  ==================
``ttur`` (default)        TF1 legacy bilinear on 0..255 floats     (x − 128) / 128
``pytorch-fid``           torch bilinear, half-pixel, no antialias 2·(x/255) − 1
``clean``                 PIL bicubic per channel in mode "F"      (x − 128) / 128
``nvidia``                ``grid_sample`` bilinear, border, as     (x − 128) / 128
                          NVIDIA's TorchScript Inception (EDM,
                          EDM2, StyleGAN2-ADA/3), even at 299
``dgm-eval-clean``        as ``clean`` (dgm-eval's Inception with  2·(x/255) − 1
                          ``--clean_resize``)
========================  =======================================  ==================

Each protocol works in two steps so that decoding workers and the device share the work:
:meth:`Protocol.prepare` runs per image in a worker (it returns a uint8 CHW tensor, or for
``clean`` and ``dgm-eval-clean`` the already resized float32 CHW tensor) and :meth:`Protocol.to_network` runs on
the device over a batch of prepared images of one size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import FidkitError

SIZE = 299


def tf1_bilinear_resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (align_corners=False, legacy coordinates) in float32.

    x: float32 (N, C, H, W). Output index i reads source coordinate s = i·(H/size) (no
    half-pixel shift), lo = floor(s), hi = min(lo+1, H−1), w = s − lo; interpolation runs
    along x first, then along y, each as a + (b − a)·w, which reproduces TF bit for bit.
    """
    n, c, h, w = x.shape

    def axis(in_size):
        scale = torch.tensor(in_size / size, dtype=torch.float32)
        s = torch.arange(size, dtype=torch.float32, device=x.device) * scale.to(x.device)
        lo = s.long()
        hi = (lo + 1).clamp_max(in_size - 1)
        return lo, hi, s - lo.float()

    ylo, yhi, dy = axis(h)
    xlo, xhi, dx = axis(w)
    # Along x on every source row first, then pick the rows: each output value goes through
    # exactly the same float32 operations as interpolating the two picked rows would, with
    # 2-3x less memory traffic than gathering full-size corner tensors.
    x0, x1 = x.index_select(3, xlo), x.index_select(3, xhi)
    rows = x0 + (x1 - x0) * dx.view(1, 1, 1, size)
    t, b = rows.index_select(2, ylo), rows.index_select(2, yhi)
    return t + (b - t) * dy.view(1, 1, size, 1)


def pil_bicubic_resize(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    """clean-fid's resize: per channel, PIL mode "F" bicubic to size×size, clipped to [0, 255].

    img: uint8 (H, W, 3). Returns float32 (3, size, size) with values in [0, 255], not
    re-quantised. PIL widens its kernel when shrinking, so downscaling antialiases.
    """
    chans = []
    for c in range(img.shape[2]):
        ch = Image.fromarray(img[:, :, c].astype(np.float32), mode="F")
        chans.append(np.asarray(ch.resize((size, size), resample=Image.BICUBIC), dtype=np.float32))
    return np.clip(np.stack(chans, 0), 0, 255)


class Protocol:
    """Base class; see the module docstring. Subclasses set ``name`` and the two steps."""

    name = ""
    #: True when :meth:`prepare` only changes the layout, so batches can go to the device as uint8
    resizes_on_device = True

    def prepare(self, img: np.ndarray) -> torch.Tensor:
        """img: uint8 (H, W, 3) RGB. Returns a CHW tensor for :meth:`to_network`."""
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

    def to_network(self, batch: torch.Tensor) -> torch.Tensor:
        """batch: (N, 3, H, W) prepared images of one size. Returns float32 (N, 3, 299, 299) in [-1, 1]."""
        raise NotImplementedError

    def __repr__(self):
        return f"Protocol({self.name!r})"


class TTUR(Protocol):
    """The original TF FID: TF1 legacy bilinear on 0..255 floats, then (x − 128)/128."""

    name = "ttur"

    def to_network(self, batch):
        if batch.shape[-2:] == (SIZE, SIZE):
            return (batch.float() - 128) / 128
        return tf1_bilinear_resize(batch.float()).sub_(128).div_(128)  # a new tensor: in place is safe


class PytorchFID(Protocol):
    """pytorch-fid 0.3.0: x/255, torch bilinear (align_corners=False, no antialias), 2x − 1."""

    name = "pytorch-fid"

    def to_network(self, batch):
        x = batch.float() / 255
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        return 2 * x - 1


class Clean(Protocol):
    """clean-fid 0.1.35 mode "clean": PIL bicubic per channel in float, then (x − 128)/128."""

    name = "clean"
    resizes_on_device = False

    def prepare(self, img):
        return torch.from_numpy(pil_bicubic_resize(img))

    def to_network(self, batch):
        return (batch.float() - 128) / 128


class NVIDIA(Protocol):
    """The resize inside NVIDIA's TorchScript Inception (``inception-2015-12-05.pkl``), which
    StyleGAN2-ADA, StyleGAN3, EDM and EDM2 compute FID with: float32 images 0..255, an
    identity ``affine_grid`` (align_corners=False) shifted by 1/W − 1/299 and 1/H − 1/299,
    ``grid_sample`` bilinear with border padding, then (x − 128)/128. The same source
    coordinates as ``ttur`` in exact arithmetic, other float32 roundings, and applied at
    299×299 too (where ``ttur`` leaves the image as it is)."""

    name = "nvidia"

    def to_network(self, batch):
        x = batch.float()
        n, _, h, w = x.shape
        theta = torch.eye(2, 3, dtype=torch.float32, device=x.device)
        theta[0, 2] += theta[0, 0] / w - theta[0, 0] / SIZE  # in float32, as the TorchScript's add_
        theta[1, 2] += theta[1, 1] / h - theta[1, 1] / SIZE
        # in float32 whatever the network's arithmetic: affine_grid is a batched matmul, which
        # autocast (bf16) or TF32 would round, moving the sampling positions
        saved = torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            with torch.autocast(x.device.type, enabled=False):
                grid = F.affine_grid(theta.unsqueeze(0).repeat(n, 1, 1), [n, 3, SIZE, SIZE], align_corners=False)
                x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
        return (x - 128) / 128


class DgmEvalClean(Protocol):
    """dgm-eval's Inception with ``--clean_resize``: its ``pil_resize`` (clean-fid's per-channel
    PIL "F" bicubic, clipped to [0, 255], in the worker), ``to_tensor``, /255, then its
    pytorch-fid network's 2x − 1 (not clean-fid's (x − 128)/128). Without the flag dgm-eval
    resizes as ``pytorch-fid`` does (``F.interpolate`` bilinear of the [0, 1] image, then 2x − 1)."""

    name = "dgm-eval-clean"
    resizes_on_device = False

    def prepare(self, img):
        return torch.from_numpy(pil_bicubic_resize(img))

    def to_network(self, batch):
        return 2 * (batch.float() / 255) - 1


PROTOCOLS = {p.name: p for p in (TTUR(), PytorchFID(), Clean(), NVIDIA(), DgmEvalClean())}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (``ttur``, ``pytorch-fid``, ``clean``, ``nvidia`` or ``dgm-eval-clean``)."""
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise FidkitError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
