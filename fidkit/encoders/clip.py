"""OpenAI CLIP ViT-L/14 at 336 px, the image tower, in plain torch: CMMD (Jayasumana et al. 2024).

Architecture (OpenAI's ``VisionTransformer`` in ``clip/model.py``): a 14×14 convolution
without bias to width 1024, a learned class embedding prepended, a learned position
embedding (24×24 + 1 at 336 px), ``ln_pre``, 24 residual attention blocks (16 heads,
``ln_1`` → multi-head attention with a packed ``in_proj``, ``ln_2`` → ``c_fc`` →
QuickGELU x·σ(1.702x) → ``c_proj``), ``ln_post`` on the class token, and the projection
``proj`` (1024 × 768). LayerNorm eps 1e-5. The feature is that projected embedding,
L2-normalised: float32 (N, 768), unit norm.

Preprocessing mode ``cmmd`` (google-research/cmmd ``io_util._center_crop_and_resize`` and
``embedding._clip_preprocess``): in the worker, the centred square of side l = min(w, h)
(offsets ``(h − l) // 2``, ``(w − l) // 2``), PIL bicubic resize to 336×336 on uint8
(antialiased when shrinking); on the device x/255 in float32, minus the CLIP mean, over the
CLIP std. (CMMD then calls ``jax.image.resize`` to 336×336 on the 336×336 image, which
leaves it unchanged.) OpenAI's own ``clip.load`` preprocessing (resize the short side, then
crop) is a different transform, not offered here.

Weights: OpenAI's TorchScript archive ``ViT-L-14-336px.pt``, whose download URL carries its
sha256; its tensors (float16) are read without running the archive's code and used in
float32, as OpenAI's ``clip.load`` does on the CPU (``model.float()``).

Speed at inference (same arithmetic up to float32 rounding, ≈1e-6 relative on the
embedding; the tests hold the reference code to 1e-5): attention through
``F.scaled_dot_product_attention``; each branch's output projection and bias added into
the residual stream in one step; the last block computes only the class row; on the CPU
the matrix products run through oneDNN (:mod:`fidkit.encoders._linear`;
``net.onednn = False`` gives torch's own).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..weights import check_layout
from . import Encoder, Preprocess
from ._image import CLIP_MEAN, CLIP_STD, centre_crop_square, chw, normalise, pil_bicubic_uint8
from ._linear import linear, residual_
from .weights import WeightsSource, build_encoder

NAME = "clip-vitl14-336"
OPENAI_SHA256 = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
SOURCE = WeightsSource(NAME, f"https://openaipublic.azureedge.net/clip/models/{OPENAI_SHA256}/ViT-L-14-336px.pt",
                       "ViT-L-14-336px.pt", sha256=OPENAI_SHA256)
SIZE = 336
VITL14_336 = dict(width=1024, layers=24, heads=16, patch=14, image_size=336, output_dim=768)


class CMMDCropResize(Preprocess):
    """CMMD's: centre square crop, PIL bicubic 336 on uint8 (worker); /255, CLIP mean/std (device)."""

    name = "cmmd"
    size = SIZE
    reproduces = ("google-research/cmmd io_util._center_crop_and_resize (centre square, PIL BICUBIC 336) and "
                  "embedding._clip_preprocess (/255, CLIP mean/std)")
    resizes_on_device = False

    def prepare(self, img):
        return chw(pil_bicubic_uint8(centre_crop_square(np.asarray(img)), SIZE))

    def to_network(self, batch):
        return normalise(batch, CLIP_MEAN, CLIP_STD)


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def heads_out(self, x: torch.Tensor, cls_only: bool = False, onednn: bool = True) -> torch.Tensor:
        """The heads' output before ``out_proj``, (B, n, C); n = 1 when ``cls_only``."""
        b, n, c = x.shape
        h = self.heads
        qkv = linear(x, self.in_proj_weight, self.in_proj_bias, onednn=onednn)
        qkv = qkv.reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if cls_only:
            q = q[:, :, :1]
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, q.shape[2], c)

    def forward(self, x, cls_only: bool = False):
        return self.out_proj(self.heads_out(x, cls_only))


class MLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        x = self.c_fc(x)
        return self.c_proj(x * torch.sigmoid(1.702 * x))  # QuickGELU


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x, cls_only: bool = False, onednn: bool = True):
        if torch.is_grad_enabled():  # the textbook form
            x = (x[:, :1] if cls_only else x) + self.attn(self.ln_1(x), cls_only)
            return x + self.mlp(self.ln_2(x))
        # inference: each branch's output projection and bias added into the residual stream in
        # one step (_linear.residual_), the products through oneDNN on the CPU when ``onednn``
        o = self.attn.heads_out(self.ln_1(x), cls_only, onednn)
        out = self.attn.out_proj
        x = residual_(x[:, :1].contiguous() if cls_only else x, o, out.weight, out.bias, onednn)
        h = linear(self.ln_2(x), self.mlp.c_fc.weight, self.mlp.c_fc.bias, onednn=onednn)
        fc = self.mlp.c_proj  # QuickGELU below: one new tensor
        return residual_(x, h.mul(1.702).sigmoid_().mul_(h), fc.weight, fc.bias, onednn)


class CLIPVisual(nn.Module):
    """OpenAI's CLIP image tower with its parameter names (without the ``visual.`` prefix).

    Input float32 (N, 3, S, S), S = ``image_size``; returns the projected embedding before
    normalisation, float32 (N, output_dim).
    """

    def __init__(self, width=1024, layers=24, heads=16, patch=14, image_size=336, output_dim=768):
        super().__init__()
        grid = image_size // patch
        self.image_size = image_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))
        #: inference on the CPU: the blocks' matrix products through oneDNN (:mod:`._linear`);
        #: False gives torch's F.linear/addmm (the same products, another summation order)
        self.onednn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(t.dtype).expand(t.shape[0], 1, -1)
        t = torch.cat([cls, t], dim=1) + self.positional_embedding.to(t.dtype)
        t = self.ln_pre(t)
        last = len(self.transformer.resblocks) - 1
        for i, blk in enumerate(self.transformer.resblocks):
            t = blk(t, cls_only=(i == last), onednn=self.onednn)
        return self.ln_post(t[:, 0]) @ self.proj


def visual_state_dict(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The image tower's tensors of a full OpenAI CLIP state dict, without ``visual.``."""
    return {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}


def load_state_dict_into(net: CLIPVisual, sd: Dict[str, torch.Tensor], origin: str,
                         assign: bool = False) -> CLIPVisual:
    """Copies the ``visual.*`` tensors of an OpenAI-layout state dict into ``net`` as float32.
    ``assign``: the float32 tensors become the parameters (for a network built on the meta
    device), and ``sd``'s visual entries are released one by one as they are converted."""
    vis = visual_state_dict(sd)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    check_layout(vis, expected, origin, f"the OpenAI CLIP ViT layout of {NAME}", "give OpenAI's ViT-L-14-336px.pt",
                 prefix="visual.")
    if net.image_size != SIZE:  # CMMD's preprocessing gives 336 px; a tower for other sizes cannot read them
        raise WeightsError(f"{origin}: a CLIP image tower for {net.image_size}-pixel images (patch × position grid), "
                           f"but {NAME} feeds it {SIZE}-pixel images; give OpenAI's ViT-L-14-336px.pt")
    if assign:
        for k in list(vis):
            sd.pop("visual." + k, None)
            vis[k] = vis.pop(k).to(torch.float32)  # float16 as stored -> float32, one tensor at a time
    else:
        vis = {k: v.to(torch.float32) for k, v in vis.items()}
    net.load_state_dict(vis, strict=True, assign=assign)
    return net


class CLIPEncoder(Encoder):
    """``clip-vitl14-336``: outputs ``embedding`` float32 (N, 768), unit L2 norm; mode ``cmmd``."""

    name = NAME
    outputs = {"embedding": VITL14_336["output_dim"]}
    preprocessing = {"cmmd": CMMDCropResize()}

    def __init__(self, **config):
        super().__init__()
        cfg = dict(VITL14_336, **config)
        self.outputs = {"embedding": cfg["output_dim"]}
        self.net = CLIPVisual(**cfg)

    def forward(self, x):
        e = self.net(x)
        return {"embedding": e / e.norm(dim=-1, keepdim=True)}


def config_of(sd: Dict[str, torch.Tensor]) -> dict:
    """The image tower an OpenAI CLIP state dict holds, read from its tensor shapes as OpenAI's
    ``clip.model.build_model`` does (heads = width // 64): ViT-L/14 at 336 px for the official
    file; a smaller file (the tests' random weights) builds a smaller tower under the same name,
    with the warning that its digest is not the official one. A file without these tensors gets
    ViT-L/14-336, whose loader then names what is missing."""
    try:
        width = int(sd["visual.conv1.weight"].shape[0])
        patch = int(sd["visual.conv1.weight"].shape[-1])
        grid = math.isqrt(int(sd["visual.positional_embedding"].shape[0]) - 1)
        layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
        return dict(width=width, layers=layers, heads=max(1, width // 64), patch=patch, image_size=patch * grid,
                    output_dim=int(sd["visual.proj"].shape[1]))
    except (KeyError, IndexError, AttributeError, TypeError, ValueError):
        return dict(VITL14_336)


def build(weights=None, mode: Optional[str] = None, source: WeightsSource = SOURCE, **config) -> CLIPEncoder:
    """The encoder with weights resolved as :mod:`fidkit.encoders.weights` describes; ``source``
    and ``config`` (smaller sizes) exist for tests, which cannot download the real weights. Without
    ``config`` the architecture is read from the file (:func:`config_of`)."""
    return build_encoder(CLIPEncoder, config_of, load_state_dict_into, source, weights, mode, config)
