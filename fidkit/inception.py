"""The FID Inception-v3 network (TF graph of 2015-12-05) in plain torch.

The network takes images already resized to 299×299 and scaled to [-1, 1] (the
protocols in :mod:`fidkit.preprocess` do both) and returns the 2048-d pool3 features,
plus the 1008 logits of the classifier (without its bias, as the Inception Score uses
them) when the weights carry one.

:meth:`FIDInception.forward_features` emits *named features* from one pass
(:data:`FEATURES`): ``pool3`` (2048), ``spatial`` (2023, the sFID feature of OpenAI's
guided-diffusion evaluator: the TF tensor ``mixed_6/conv``, i.e. ``Mixed_6d.branch1x1``
after its batch norm and ReLU, channels 0–6 of its 17×17×192 output, flattened in
(H, W, C) order) and ``logits`` (1008). Asking for more features never changes the
operations that produce the others.

Parameter names follow the torchvision Inception3 layout that pytorch-fid and
torch-fidelity use (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``,
…), so their files load directly. The TF graph differs from torchvision's Inception3 in
its pooling: the average pools exclude padding, and the last block uses a max pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
FEATURE_DIM = 2048
NUM_CLASSES = 1008
SPATIAL_CHANNELS = 7  # ADM keeps mixed_6/conv[..., :7]
SPATIAL_SIZE = 17
SPATIAL_DIM = SPATIAL_SIZE * SPATIAL_SIZE * SPATIAL_CHANNELS  # 2023

#: the named features :meth:`FIDInception.forward_features` emits, and their dimensions
FEATURES = {"pool3": FEATURE_DIM, "spatial": SPATIAL_DIM, "logits": NUM_CLASSES}


def round_mantissa(x: torch.Tensor, bits: int, mode: str = "nearest") -> torch.Tensor:
    """float32 ``x`` with its mantissa rounded to ``bits`` explicit bits (TF32: 10, bfloat16: 7),
    still as float32. ``nearest``: round half to even; ``truncate``: toward zero (drop the bits).

    Works on the bit pattern (sign and magnitude), so it is exact and runs on any device.
    Finite inputs only (the network's values are).
    """
    if mode not in ("nearest", "truncate"):
        raise ValueError(f"unknown rounding {mode!r}; nearest or truncate")
    drop = 23 - bits
    i = x.view(torch.int32)  # same element size: any strides, the layout is kept
    if mode == "nearest":
        i = i + (((i >> drop) & 1) + ((1 << (drop - 1)) - 1))
    return (i & ~((1 << drop) - 1)).view(torch.float32)


@dataclass(frozen=True)
class Split:
    """A convolution computed from split operands on tensor cores of ``bits`` mantissa bits.

    Each operand is written as hi + lo: hi = the operand rounded (to nearest even) to ``bits``,
    lo = the remainder, exact in float32 (and, for the weights, rounded once more to ``bits``).
    ``terms`` names the products summed, from ``h`` (hi) and ``l`` (lo), activation first: TF32×3
    is ``("hh", "lh", "hl")`` (x_lo·w_lo, ~2^-22 of the rest, is left out); ``("hh",)`` is one
    product of the operands as given, i.e. the plain tensor-core arithmetic. Products of two
    ``bits``-bit values are exact in float32 and are accumulated in float32.

    The products run as one convolution: the operands are stacked along the input channels
    (``cat([x_a …], 1)`` against ``cat([w_b …], 1)``), so the kernel's float32 accumulator sums
    all of them, with bias and ReLU still fused on CUDA. Cost: ``len(terms)``× the tensor-core
    FLOPs of the layer, one call.

    ``emulate``: None on a GPU, where the tensor cores convert what they are given (the parts
    not rounded here: x_lo, or in ``("hh",)`` both operands) by the hardware's own rule. On the
    CPU, ``"nearest"`` or ``"truncate"`` applies that conversion here, so that float32
    convolutions reproduce the tensor-core arithmetic: the very code the GPU runs, with the
    rounding emulated.
    """

    bits: int = 10
    terms: tuple = ("hh", "lh", "hl")
    emulate: str | None = None

    def __post_init__(self):
        if not self.terms or any(len(t) != 2 or set(t) - {"h", "l"} for t in self.terms):
            raise ValueError(f"terms must be pairs of h/l, got {self.terms!r}")
        if self.emulate not in (None, "nearest", "truncate"):
            raise ValueError(f"emulate must be None, nearest or truncate, got {self.emulate!r}")

    @property
    def products(self) -> int:
        return len(self.terms)

    def hardware(self, t: torch.Tensor) -> torch.Tensor:
        """What the tensor cores make of a float32 operand: ``t`` itself on a GPU, emulated otherwise."""
        return t if self.emulate is None else round_mantissa(t, self.bits, self.emulate)

    def parts(self, t: torch.Tensor, which: int) -> dict:
        """{'h': hi, 'l': lo} of operand ``t`` as its ``which``-th letter in ``terms`` needs them."""
        used = {term[which] for term in self.terms}
        if used == {"h"}:  # not split: the operand goes to the tensor cores as it is
            return {"h": self.hardware(t)}
        hi = round_mantissa(t, self.bits)
        return {"h": hi, "l": self.hardware(t - hi)}  # t − hi is exact in float32

    def split_weight(self, w: torch.Tensor) -> torch.Tensor:
        """The stacked weight operand; computed once per layer. The lo part is rounded here
        (to nearest) so that only the activations' lo part depends on the hardware."""
        used = {term[1] for term in self.terms}
        if used == {"h"}:
            p = {"h": self.hardware(w)}
        else:
            hi = round_mantissa(w, self.bits)
            p = {"h": hi, "l": round_mantissa(w - hi, self.bits)}
        return torch.cat([p[t[1]] for t in self.terms], 1)

    def stack_input(self, x: torch.Tensor) -> torch.Tensor:
        p = self.parts(x, 0)
        return torch.cat([p[t[0]] for t in self.terms], 1)


#: fidkit's ``tf32x3`` precision: three TF32 products (hi·hi + lo·hi + hi·lo) per convolution
TF32X3 = Split(bits=10, terms=("hh", "lh", "hl"))


class BasicConv2d(nn.Module):
    """Convolution (no bias), batch norm (eps 1e-3), ReLU; or, after :meth:`fold_batch_norm`,
    convolution with bias and ReLU (fused into one cuDNN call on CUDA). With a :class:`Split`
    (:meth:`set_split`) the convolution runs on split operands."""

    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.split = None
        self.split_weight = None

    def set_split(self, split: Split | None) -> None:
        """Compute this convolution with ``split`` (None: the plain float32 convolution). Call it
        after :meth:`fold_batch_norm` and after moving the module: the split weight is made here."""
        self.split = split
        self.split_weight = None
        if split is not None:
            w = self.conv.weight.detach()
            nhwc = w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
            sw = split.split_weight(w)
            self.split_weight = sw.contiguous(memory_format=torch.channels_last) if nhwc else sw

    def forward(self, x):
        c = self.conv
        if self.split is None:
            w = c.weight
            if self.bn is not None:
                return F.relu(self.bn(c(x)))
        else:  # the operands stacked along the input channels: one call sums all the products
            x, w = self.split.stack_input(x), self.split_weight
            if self.bn is not None:
                return F.relu(self.bn(F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)))
        # folded: the convolution carries the batch norm
        if x.is_cuda and not torch.is_autocast_enabled("cuda"):
            # convolution, bias and ReLU in one cuDNN call; it honours cudnn.allow_tf32 as
            # F.conv2d does. Under bf16 autocast (which has no rule for it) the plain path runs.
            return torch.cudnn_convolution_relu(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)
        return F.relu(F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups), inplace=True)

    def fold_batch_norm(self) -> None:
        """Fold the (eval-mode) batch norm into the convolution's weight and a new bias.

        Mathematically the same map; in float32 it moves features by ~1e-6 relative.
        """
        if self.bn is None:
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
        conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
        self.bn = None
        if self.split is not None:
            self.set_split(self.split)


def _avg_pool(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        return self.forward_tapped(x)[0]

    def forward_tapped(self, x):
        """The block's output and, computed on the way, its ``branch1x1`` output (after BN and ReLU)."""
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        b1 = self.branch1x1(x)
        return torch.cat([b1, b7, d, self.branch_pool(_avg_pool(x))], 1), b1


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """Last blocks; ``max_pool`` selects the TF graph's pooling of the final block."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class FIDInception(nn.Module):
    """Inception-v3 of the TF FID graph.

    Input: float32 tensor of shape (N, 3, 299, 299) with values in [-1, 1].
    Output of :meth:`forward`: pool3 features, float32 of shape (N, 2048), values ≥ 0.
    :meth:`forward_with_logits` also returns logits (N, 1008) = features · fcᵀ, without
    the classifier's bias (``has_classifier`` must be true).
    """

    def __init__(self, with_classifier: bool = True):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES) if with_classifier else None
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def fold_batch_norm(self) -> "FIDInception":
        """Fold every batch norm into its convolution (see :meth:`BasicConv2d.fold_batch_norm`)."""
        for m in self.modules():
            if isinstance(m, BasicConv2d):
                m.fold_batch_norm()
        return self

    def set_split(self, split: Split | None, layers=None) -> "FIDInception":
        """Compute the convolutions named in ``layers`` (prefixes of :func:`conv_names`; None: all
        94) with ``split``, the others in plain float32; ``split`` None restores float32 everywhere.
        The classifier's matmul is not split. Call it after moving the network to its device."""
        chosen = None if layers is None else set(layers)
        for name, m in self.named_modules():
            if isinstance(m, BasicConv2d):
                m.set_split(split if chosen is None or name in chosen else None)
        return self

    @property
    def has_classifier(self) -> bool:
        return self.fc is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x, ("pool3",))["pool3"]

    def forward_features(self, x: torch.Tensor, names=("pool3",)) -> dict:
        """Named features of one pass: a dict from each of ``names`` (keys of :data:`FEATURES`)
        to a float tensor (N, dim). ``logits`` needs the classifier (:attr:`has_classifier`)."""
        unknown = [n for n in names if n not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}; choose from {', '.join(FEATURES)}")
        if "logits" in names and self.fc is None:
            raise RuntimeError("these weights carry no classifier")
        out = {}
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            if block is self.Mixed_6d and "spatial" in names:
                x, b1 = block.forward_tapped(x)
                # (N, 192, 17, 17) -> channels 0-6 -> (N, 17, 17, 7) -> (N, 2023): TF's NHWC order
                out["spatial"] = b1[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).reshape(b1.shape[0], -1)
            else:
                x = block(x)
        pool3 = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        out["pool3"] = pool3
        if "logits" in names:
            out["logits"] = pool3 @ self.fc.weight.t()
        return {n: out[n] for n in names}

    def forward_with_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_features(x, ("pool3", "logits"))
        return out["pool3"], out["logits"]


def conv_names(net: nn.Module) -> list[str]:
    """Prefixes of the 94 BasicConv2d blocks in registration order (e.g. ``Mixed_5b.branch1x1``)."""
    return [name for name, m in net.named_modules() if isinstance(m, BasicConv2d)]
