"""``--precision tf32x3`` under emulated TF32 rounding: the arithmetic the GPU runs, on the CPU.

The network is built as :func:`fidkit.api.network` builds it on CUDA (batch norm folded, the
convolutions on split operands, one call each), with the tensor cores' conversion of float32 to
TF32 done in float32 (:func:`fidkit.api.emulated_network`). Reference: strict float32 as fidkit
computes on the CPU. benchmarks/emulate_precision.py measures the same on more images
(benchmarks/results/precision_emulation.json).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fidkit.api import emulated_network, network
from fidkit.frechet import frechet_distance
from fidkit.inception import TF32X3, Split, round_mantissa
from fidkit.preprocess import get_protocol
from fidkit.sources import decode, list_images


def test_rounding_to_tf32_and_bfloat16():
    x = torch.randn(10000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(round_mantissa(x, 7), x.bfloat16().float())  # torch's cast rounds to nearest even
    for bits in (10, 7):
        for mode, bound in (("nearest", 2.0 ** -(bits + 1)), ("truncate", 2.0 ** -bits)):
            r = round_mantissa(x, bits, mode)
            assert not (r.view(torch.int32) & ((1 << (23 - bits)) - 1)).any()
            assert float(((r - x).abs() / x.abs()).max()) <= bound
    assert float((round_mantissa(x, 10, "truncate").abs() <= x.abs()).all())
    one = 1.0 + 2.0 ** -11  # halfway between two TF32 values: ties go to the even one (1.0)
    three = 1.0 + 3 * 2.0 ** -11  # halfway again: to 1 + 2^-9
    r = round_mantissa(torch.tensor([one, -one, three]), 10)
    assert r.tolist() == [1.0, -1.0, 1.0 + 2.0 ** -9]


def test_the_stacked_call_sums_the_three_products():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 9, 9, generator=g)
    w = torch.randn(4, 5, 3, 3, generator=g)
    s = Split(10, ("hh", "lh", "hl"), "nearest")
    xh = round_mantissa(x, 10)
    wh = round_mantissa(w, 10)
    xl, wl = round_mantissa(x - xh, 10), round_mantissa(w - wh, 10)
    want = sum(F.conv2d(a.double(), b.double()) for a, b in ((xh, wh), (xl, wh), (xh, wl)))
    got = F.conv2d(s.stack_input(x).double(), s.split_weight(w).double())
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    # and they recover x·w to 2^-21 of Σ|x||w| (x_lo·w_lo ≤ 2^-22, each lo's rounding ≤ 2^-23),
    # where plain TF32 is ~2^-11 off
    exact = F.conv2d(x.double(), w.double())
    scale = F.conv2d(x.abs().double(), w.abs().double())
    assert bool(((got - exact).abs() <= 2.0 ** -21 * 1.001 * scale).all())
    plain = F.conv2d(round_mantissa(x, 10).double(), round_mantissa(w, 10).double())
    assert float(((plain - exact).abs() / scale).max()) > 2.0 ** -14


@pytest.fixture(scope="module")
def photo_batches(real_a, real_b):
    ttur = get_protocol("ttur")
    return [torch.cat([ttur.to_network(ttur.prepare(decode(p))[None]) for p in list_images(d)])
            .contiguous(memory_format=torch.channels_last) for d in (real_a, real_b)]


def _features(net, batches):
    with torch.inference_mode():
        return [net(x).double().numpy() for x in batches]


@pytest.fixture(scope="module")
def strict(real_weights, photo_batches):
    """Strict float32 features (fidkit's CPU network) and their FID: the reference."""
    ref = _features(network(real_weights, torch.device("cpu"), "fp32"), photo_batches)
    return ref, _fid(*ref)


def _fid(a, b):
    return float(frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))


# Measured on these 20 images (benchmarks/emulate_precision.py, set "photos"): the largest
# relative feature error is 1.6e-5 for tf32x3 (8.9e-6 of it comes with folding batch norm in
# float32 alone, which CUDA's fp32 shares) and 1.1e-2 for plain TF32; the FID moves by 2.2e-7
# (folding alone 2.8e-7) and 9.6e-4.
FEATURE_BOUND = 5e-5
FID_BOUND = 1e-6


@pytest.mark.parametrize("rounding", ["nearest", "truncate"])
def test_tf32x3_stays_within_1e6_of_strict_fp32(real_weights, photo_batches, strict, rounding):
    ref, fid_ref = strict
    net = emulated_network(real_weights, "tf32x3", rounding)
    split = {m.split for m in net.modules() if hasattr(m, "split")}
    assert split == {Split(TF32X3.bits, TF32X3.terms, rounding)}  # every convolution, GPU arithmetic
    got = _features(net, photo_batches)
    err = max(float((np.linalg.norm(g - r, axis=1) / np.linalg.norm(r, axis=1)).max()) for g, r in zip(got, ref))
    assert err < FEATURE_BOUND
    fid = _fid(*got)
    assert abs(fid - fid_ref) / fid_ref < FID_BOUND


def test_plain_tf32_shows_its_known_larger_error(real_weights, photo_batches, strict):
    # the check above can fail: plain TF32 (fidkit's --precision tf32) is far outside it
    ref, fid_ref = strict
    got = _features(emulated_network(real_weights, "tf32", "nearest"), photo_batches)
    err = max(float((np.linalg.norm(g - r, axis=1) / np.linalg.norm(r, axis=1)).max()) for g, r in zip(got, ref))
    assert err > 100 * FEATURE_BOUND
    fid = _fid(*got)
    assert abs(fid - fid_ref) / fid_ref > 10 * FID_BOUND
