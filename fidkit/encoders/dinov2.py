"""DINOv2 ViT-L/14 (torch hub ``dinov2_vitl14``) in plain torch: FD_DINOv2 as EDM2 and dgm-eval compute it.

Architecture (Oquab et al. 2023, facebookresearch/dinov2): patch 14, width 1024, 24
pre-norm blocks with 16 heads, MLP 4096 with exact GELU, LayerScale on both branches,
LayerNorm eps 1e-6, no register tokens, biases everywhere. Trained at 518 px, so the
position embedding is a 37×37 grid plus the CLS position; at another input size it is
interpolated at run time exactly as the official ``interpolate_pos_encoding`` does:
bicubic (``align_corners=False``, no antialias) on the grid with
``scale_factor = (side // 14 + 0.1) / 37`` per axis (at 224 px: 16.1/37, output 16×16).
The feature is the CLS token after the final norm, float32 (N, 1024).

Preprocessing modes (input uint8 RGB of any size; output float32 (N, 3, 224, 224)):

- ``edm2`` (default; EDM2 ``calculate_metrics.py`` ``DINOv2Detector``, resize_mode
  ``torch``): ``F.interpolate(x.float(), (224, 224), mode="bicubic", antialias=True)`` on
  0..255 floats on the device, no clamping or rounding, then x/255, minus the ImageNet
  mean, over the ImageNet std;
- ``dgm-eval`` (dgm-eval's ``DINOv2Encoder.transform``, and EDM2's resize_mode ``pil``):
  PIL bicubic resize to 224×224 on the uint8 image in the worker (torchvision's
  ``Resize((224, 224), BICUBIC)`` on a PIL image is this call), then the same scaling;
- ``dgm-eval-clean`` (dgm-eval's DINOv2 with ``--clean_resize``): its ``pil_resize``, i.e.
  clean-fid's per-channel PIL "F" bicubic to 224×224 in float, clipped to [0, 255] and not
  rounded, in the worker, then the same scaling.

Weights: Meta's ``dinov2_vitl14_pretrain.pth`` (a state dict; no published digest, so the
first download's sha256 is recorded and later ones must match; see
:mod:`fidkit.encoders.weights`).

Speed on the CPU, with the same arithmetic as the official code up to float rounding:
the position embedding is interpolated once per input size and kept; attention runs
through ``F.scaled_dot_product_attention``; LayerScale is folded into the projections
before it (γ(Wh + b) = (γW)h + γb) and each residual branch is added in place, with its
bias, in one step into the residual stream; the last block computes only the CLS
row (its other outputs feed nothing); only the CLS token goes through the final norm; on
the CPU the matrix products (and fc1's GELU) run through oneDNN (:mod:`fidkit.encoders._linear`).
These change float32 rounding only (≈1e-6 relative on the features; the tests hold the
official code to 1e-5). ``net.sdpa = False`` / ``net.fold = False`` give the official forms,
``net.onednn = False`` torch's own matrix products.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..preprocess import pil_bicubic_resize
from ..weights import check_layout
from . import Encoder, Preprocess
from ._image import IMAGENET_MEAN, IMAGENET_STD, chw, normalise, pil_bicubic_uint8
from ._linear import linear, residual_
from .weights import WeightsSource, build_encoder

NAME = "dinov2-vitl14"
SOURCE = WeightsSource(NAME, "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
                       "dinov2_vitl14_pretrain.pth", sha256=None)
SIZE = 224
VITL14 = dict(dim=1024, depth=24, heads=16, mlp=4096, patch=14, grid=37)


class EDM2Resize(Preprocess):
    """EDM2's default: torch bicubic with antialias on 0..255 floats, on the device."""

    name = "edm2"
    size = SIZE
    reproduces = ("EDM2 calculate_metrics.py DINOv2Detector (resize_mode 'torch'): F.interpolate(x.float(), "
                  "(224, 224), mode='bicubic', antialias=True), /255, ImageNet mean/std")
    resizes_on_device = True

    def to_network(self, batch):
        x = F.interpolate(batch.to(torch.float32), size=(SIZE, SIZE), mode="bicubic", antialias=True)
        return normalise(x, IMAGENET_MEAN, IMAGENET_STD)


class PILResize(Preprocess):
    """dgm-eval's: PIL bicubic to 224×224 on uint8 in the worker, then /255 and ImageNet mean/std."""

    name = "dgm-eval"
    size = SIZE
    reproduces = ("dgm-eval DINOv2Encoder.transform: torchvision Resize((224, 224), BICUBIC) on the PIL image "
                  "(= PIL resize), ToTensor, Normalize(ImageNet); EDM2 resize_mode 'pil'")
    resizes_on_device = False

    def prepare(self, img):
        return chw(pil_bicubic_uint8(np.asarray(img), SIZE))

    def to_network(self, batch):
        return normalise(batch, IMAGENET_MEAN, IMAGENET_STD)


class PILFloatResize(Preprocess):
    """dgm-eval's with ``--clean_resize``: per-channel PIL "F" bicubic to 224×224 in the worker
    (clipped, not rounded), then /255 and ImageNet mean/std."""

    name = "dgm-eval-clean"
    size = SIZE
    reproduces = ("dgm-eval DINOv2Encoder.transform with clean_resize: resizer.pil_resize(image, (224, 224)) "
                  "(per channel Image.fromarray(mode='F').resize(BICUBIC), clip 0..255), to_tensor, /255, "
                  "Normalize(ImageNet)")
    resizes_on_device = False

    def prepare(self, img):
        return torch.from_numpy(pil_bicubic_resize(np.asarray(img), SIZE))

    def to_network(self, batch):
        return normalise(batch, IMAGENET_MEAN, IMAGENET_STD)


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def heads_out(self, x: torch.Tensor, cls_only: bool = False, sdpa: bool = True,
                  onednn: bool = False) -> torch.Tensor:
        """The attention heads' output before ``proj``, (B, n, C); n = 1 when ``cls_only``."""
        b, n, c = x.shape
        h = self.heads
        qkv = linear(x, self.qkv.weight, self.qkv.bias, onednn=onednn)
        qkv = qkv.reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if cls_only:
            q = q[:, :, :1]
        if sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:  # the official arithmetic: (q·scale) kᵀ, softmax, · v
            o = ((q * (c // h) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return o.transpose(1, 2).reshape(b, q.shape[2], c)

    def forward(self, x, cls_only: bool = False, sdpa: bool = True):
        return self.proj(self.heads_out(x, cls_only, sdpa))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x, cls_only: bool = False, sdpa: bool = True, folded=None, onednn: bool = False):
        """x: (B, n, C). ``folded`` (inference only): (W_proj, b_proj, W_fc2, b_fc2) with the
        LayerScale factors folded in, γ·(W h + b) = (γW) h + γb, each branch then added into the
        residual stream in one step (:func:`._linear.residual_`; the products through oneDNN on
        the CPU when ``onednn``)."""
        if folded is None:  # the official form
            a = self.attn(self.norm1(x), cls_only, sdpa) * self.ls1.gamma
            x = (x[:, :1] if cls_only else x) + a
            return x + self.mlp(self.norm2(x)) * self.ls2.gamma
        wp, bp, w2, b2 = folded
        o = self.attn.heads_out(self.norm1(x), cls_only, sdpa, onednn)
        x = residual_(x[:, :1].contiguous() if cls_only else x, o, wp, bp, onednn)
        h = linear(self.norm2(x), self.mlp.fc1.weight, self.mlp.fc1.bias, gelu=True, onednn=onednn)
        return residual_(x, h, w2, b2, onednn)


class DINOv2ViT(nn.Module):
    """The DINOv2 ViT backbone with the official parameter names (``blocks.{i}.attn.qkv.weight``, ...).

    Input float32 (N, 3, H, W) with H, W multiples of ``patch``; :meth:`forward` returns the CLS
    token after the final norm, float32 (N, dim).
    """

    def __init__(self, dim=1024, depth=24, heads=16, mlp=4096, patch=14, grid=37):
        super().__init__()
        self.patch, self.grid, self.dim = patch, grid, dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        #: F.scaled_dot_product_attention (True) or the official explicit softmax(q kᵀ) v
        self.sdpa = True
        #: fold LayerScale into proj/fc2 and update the residual stream in place (inference only).
        #: The folded tensors and interpolated position grids are kept until ``.to()``/``.float()``
        #: or ``load_state_dict``; after changing parameters in place otherwise, call ``_forget()``.
        self.fold = True
        #: with ``fold``, on the CPU: the blocks' matrix products through oneDNN (:mod:`._linear`);
        #: False gives torch's F.linear/addmm (the same products, another summation order)
        self.onednn = True
        self._pos_cache: Dict[tuple, torch.Tensor] = {}
        self._folded = None

    def _forget(self):
        self._pos_cache, self._folded = {}, None

    def _apply(self, fn, *args, **kwargs):  # .to(), .float(), ...: forget derived tensors
        self._forget()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):  # new weights: forget derived tensors
        self._forget()
        return super()._load_from_state_dict(*args, **kwargs)

    def folded(self):
        """Per block (γ₁W_proj, γ₁b_proj, γ₂W_fc2, γ₂b_fc2), computed once (inference only)."""
        if self._folded is None:
            self._folded = [(b.attn.proj.weight * b.ls1.gamma[:, None], b.attn.proj.bias * b.ls1.gamma,
                             b.mlp.fc2.weight * b.ls2.gamma[:, None], b.mlp.fc2.bias * b.ls2.gamma)
                            for b in self.blocks]
        return self._folded

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """(1, 1 + (h//patch)(w//patch), dim) for an h×w input, as the official code computes it."""
        h0, w0 = h // self.patch, w // self.patch
        if h0 == self.grid and w0 == self.grid:
            return self.pos_embed
        key = (h0, w0, self.pos_embed.device, self.pos_embed.dtype)
        if key in self._pos_cache and not torch.is_grad_enabled():
            return self._pos_cache[key]
        pos = self.pos_embed.float()
        m = math.sqrt(pos.shape[1] - 1)
        grid = pos[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h0 + 0.1) / m, (w0 + 0.1) / m), mode="bicubic")
        if grid.shape[-2:] != (h0, w0):
            raise ValueError(f"position grid interpolated to {tuple(grid.shape[-2:])}, expected {(h0, w0)}")
        out = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, -1)], dim=1)
        out = out.to(self.pos_embed.dtype)
        if not torch.is_grad_enabled():
            self._pos_cache[key] = out
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        t = t + self.position_embedding(h, w)
        last = len(self.blocks) - 1
        fold = self.folded() if self.fold and not torch.is_grad_enabled() else [None] * len(self.blocks)
        for i, blk in enumerate(self.blocks):
            t = blk(t, cls_only=(i == last), sdpa=self.sdpa, folded=fold[i], onednn=self.onednn)
        return self.norm(t[:, 0])


def load_state_dict_into(net: DINOv2ViT, sd: Dict[str, torch.Tensor], origin: str,
                         assign: bool = False) -> DINOv2ViT:
    """Copies an official-layout state dict into ``net`` (float32), checking names and shapes.
    ``mask_token`` (used only in training) is ignored. ``assign``: the tensors become the
    parameters (no copy; for a network built on the meta device)."""
    expected = net.state_dict()
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    sd.pop("mask_token", None)
    check_layout(sd, {k: tuple(v.shape) for k, v in expected.items()}, origin, f"the DINOv2 ViT layout of {NAME}",
                 "give dinov2_vitl14_pretrain.pth")
    net.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True, assign=assign)
    return net


class DINOv2Encoder(Encoder):
    """``dinov2-vitl14``: outputs ``cls`` float32 (N, 1024); modes ``edm2`` (default), ``dgm-eval``,
    ``dgm-eval-clean``."""

    name = NAME
    outputs = {"cls": VITL14["dim"]}
    preprocessing = {"edm2": EDM2Resize(), "dgm-eval": PILResize(), "dgm-eval-clean": PILFloatResize()}

    def __init__(self, **config):
        super().__init__()
        cfg = dict(VITL14, **config)
        self.outputs = {"cls": cfg["dim"]}
        self.net = DINOv2ViT(**cfg)

    def forward(self, x):
        return {"cls": self.net(x)}


def config_of(sd: Dict[str, torch.Tensor]) -> dict:
    """The architecture a DINOv2 state dict holds: width, depth, MLP, patch and grid read from its
    tensor shapes, heads = width // 64 (every DINOv2 ViT: S 384/6, B 768/12, L 1024/16, g 1536/24;
    the one size the tensors do not show). ViT-L/14 for the official file; a smaller file (the
    tests' random weights) builds a smaller network under the same name, with the warning that
    its digest is not the official one. A file without these tensors gets ViT-L/14, whose
    loader then names what is missing."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    try:
        dim = int(sd["cls_token"].shape[-1])
        depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        return dict(dim=dim, depth=depth, heads=max(1, dim // 64), mlp=int(sd["blocks.0.mlp.fc1.weight"].shape[0]),
                    patch=int(sd["patch_embed.proj.weight"].shape[-1]),
                    grid=math.isqrt(int(sd["pos_embed"].shape[1]) - 1))
    except (KeyError, IndexError, AttributeError, TypeError, ValueError):
        return dict(VITL14)


def build(weights=None, mode: Optional[str] = None, source: WeightsSource = SOURCE, **config) -> DINOv2Encoder:
    """The encoder with weights resolved as :mod:`fidkit.encoders.weights` describes; ``source``
    and ``config`` (smaller sizes) exist for tests, which cannot download the real weights. Without
    ``config`` the architecture is read from the file (:func:`config_of`)."""
    return build_encoder(DINOv2Encoder, config_of, load_state_dict_into, source, weights, mode, config)
