"""The ViT encoders' linear layers, through oneDNN on the CPU.

A ViT-L forward pass on the CPU is ~85% matrix products (the qkv, output, and two MLP
projections of 24 blocks). torch's ``F.linear``/``addmm`` call the BLAS library it was
built with (MKL in the x86 wheels); oneDNN's inner-product primitive, also inside every
x86 wheel, ran the ViT-L shapes 3–19% faster on the build machine (AMD EPYC, AVX-512:
189–214 against 164–194 GFLOP/s, ``benchmarks/bench_encoders.py --gemm``). Both compute
float32 products with float32 accumulation; only the summation order differs (≈1e-7
relative per product).

:func:`linear` and :func:`residual_` take that path when it applies (float32 CPU tensors,
no autograd, ``torch.ops.mkldnn._linear_pointwise`` present and giving F.linear's result
on a probe) and otherwise the plain torch calls, so training code, other devices and
builds without oneDNN are unaffected. Inception does not use this module: its numbers are
pinned to the last bit.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["linear", "residual_", "onednn_available"]

_AVAILABLE: Optional[bool] = None


def onednn_available() -> bool:
    """Whether oneDNN's fused linear op exists in this torch build and agrees with F.linear
    on a small probe (checked once per process)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = False
        try:
            if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
                g = torch.Generator().manual_seed(0)
                x, w, b = (torch.randn(*s, generator=g) for s in ((5, 16), (8, 16), (8,)))
                with torch.inference_mode():
                    y = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
                    z = torch.ops.mkldnn._linear_pointwise.binary(x, y, w, b, "add")
                ref = F.linear(x, w, b)
                _AVAILABLE = bool(torch.allclose(y, ref, rtol=1e-5, atol=1e-5)
                                  and torch.allclose(z, 2 * ref, rtol=1e-5, atol=1e-5))
        except Exception:  # an op missing or refusing this CPU: the plain path
            _AVAILABLE = False
    return _AVAILABLE


def _applies(x: torch.Tensor, enabled: bool) -> bool:
    return (enabled and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and onednn_available())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gelu: bool = False,
           onednn: bool = True) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, then exact (erf) GELU when ``gelu``. x: float (..., K),
    weight (N, K), bias (N,); returns (..., N), a new tensor."""
    if _applies(x, onednn):
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias,
                                               "gelu" if gelu else "none", [], "none" if gelu else "")
        return y.view(*x.shape[:-1], weight.shape[0])
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y


def residual_(x: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              onednn: bool = True) -> torch.Tensor:
    """The residual update x + (h·Wᵀ + b). x: contiguous float (B, n, C); h: (B, n, K);
    weight (C, K); bias (C,).

    Plain path: in place on ``x`` as (x + b) + h·Wᵀ, one ``addmm_`` (no new activation).
    oneDNN path: one fused product-plus-add into a new tensor (x itself is left unchanged);
    use the return value either way."""
    x2, h2 = x.view(-1, x.shape[-1]), h.reshape(-1, h.shape[-1])
    if _applies(x, onednn):
        return torch.ops.mkldnn._linear_pointwise.binary(h2, x2, weight, bias, "add").view(x.shape)
    x2.add_(bias).addmm_(h2, weight.t())
    return x
