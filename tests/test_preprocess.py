"""Each protocol's resize and scaling on tiny cases whose result is known by hand."""
import numpy as np
import pytest
import torch

from fidkit.errors import FidkitError
from fidkit.preprocess import SIZE, get_protocol, pil_bicubic_resize, tf1_bilinear_resize


def ramp_row(values, rows=2):
    """uint8 (1, 3, rows, len(values)) image whose every row is ``values``."""
    v = torch.tensor(values, dtype=torch.uint8)
    return v.view(1, 1, 1, -1).expand(1, 3, rows, len(values)).contiguous()


def test_ttur_resize_matches_tf1_legacy_formula_by_hand():
    # Two pixels 0 and 100 across: output i reads s = i * float32(2/299), lo = floor(s),
    # hi = min(lo + 1, 1), w = s - lo; no half-pixel shift, so output 0 is exactly input 0.
    out = tf1_bilinear_resize(ramp_row([0, 100]).float())
    row = out[0, 0, 0].numpy()
    scale = np.float32(2 / 299)
    for i in (0, 1, 50, 149, 150, 298):
        s = np.float32(i) * scale
        lo = int(np.floor(s))
        hi = min(lo + 1, 1)
        w = np.float32(s - np.float32(lo))
        a, b = np.float32([0, 100][lo]), np.float32([0, 100][hi])
        assert row[i] == a + (b - a) * w, i
    assert row[0] == 0 and row[298] == 100  # s >= 1 past the middle: clamped to the last pixel
    assert row[149] == pytest.approx(100 * 149 * 2 / 299, rel=1e-6)


def test_ttur_scales_to_minus_one_one():
    x = get_protocol("ttur").to_network(ramp_row([0, 255], rows=2))
    assert x.shape == (1, 3, SIZE, SIZE) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == pytest.approx(127 / 128)


def test_ttur_interpolates_x_then_y():
    # 2x2 image [[0, 10], [20, 40]]: output (i, j) = t + (b - t) * wy with t, b the x-interpolated rows.
    img = torch.tensor([[0.0, 10.0], [20.0, 40.0]]).view(1, 1, 2, 2)
    out = tf1_bilinear_resize(img)[0, 0].numpy()
    w = np.float32(100) * np.float32(2 / 299)  # i = 100: s ~ 0.669
    t = np.float32(0) + np.float32(10) * w
    b = np.float32(20) + np.float32(20) * w
    assert out[100, 100] == t + (b - t) * w


def test_pytorch_fid_is_half_pixel_bilinear_without_antialias():
    img = ramp_row([0, 255])
    x = get_protocol("pytorch-fid").to_network(img)
    row = ((x[0, 0, 0].double() + 1) / 2 * 255).numpy()
    # align_corners=False: source coordinate (i + 0.5) * 2/299 - 0.5, clamped at 0.
    for i in (0, 10, 100, 149, 200, 298):
        s = max((i + 0.5) * 2 / 299 - 0.5, 0.0)
        expected = 255 * min(s, 1.0)
        assert row[i] == pytest.approx(expected, abs=1e-3), i
    assert row[0] == 0 and row[-1] == pytest.approx(255, abs=1e-4)
    # no antialias: a 3x shrink reads the single source column 3i + 1, so alternating
    # black/white columns stay black or white instead of averaging to gray
    stripes = np.zeros((897, 897, 3), np.uint8)
    stripes[:, ::2] = 255
    y = get_protocol("pytorch-fid").to_network(torch.from_numpy(stripes).permute(2, 0, 1)[None])
    cols = y[0, 0, 0]
    assert torch.equal(cols[1::2], torch.ones(149)) and torch.equal(cols[::2], -torch.ones(150))


def test_clean_is_pil_bicubic_in_float_with_antialias_and_clip():
    # constant image stays constant (bicubic weights sum to one)
    flat = np.full((7, 5, 3), 77, np.uint8)
    assert np.allclose(pil_bicubic_resize(flat), 77, atol=1e-4)
    # 2x shrink of alternating black/white columns: PIL widens the kernel, so the interior averages to 127.5
    stripes = np.zeros((598, 598, 3), np.uint8)
    stripes[:, ::2] = 255
    r = pil_bicubic_resize(stripes)
    assert r.dtype == np.float32 and r.shape == (3, SIZE, SIZE)
    assert np.allclose(r[:, 10:-10, 10:-10], 127.5, atol=0.5)
    # bicubic overshoots at a hard edge when enlarging; the result is clipped to [0, 255]
    edge = np.zeros((4, 4, 3), np.uint8)
    edge[:, 2:] = 255
    e = pil_bicubic_resize(edge)
    assert e.min() == 0 and e.max() == 255
    x = get_protocol("clean").to_network(get_protocol("clean").prepare(edge)[None])
    assert x.min() == -1 and x.max() == pytest.approx(127 / 128)


def test_clean_values_are_not_requantised():
    img = np.array([[0, 1], [2, 3]], np.uint8)[:, :, None].repeat(3, 2)
    r = pil_bicubic_resize(img)
    assert not np.allclose(r, np.round(r))


def test_unknown_protocol_is_one_clear_error():
    with pytest.raises(FidkitError, match="unknown protocol 'tf'.*ttur"):
        get_protocol("tf")


def _corner_gather_resize(x, size=SIZE):
    """The TF1 legacy bilinear resize written the direct way: gather the four corners of
    every output pixel, interpolate along x, then y (the formula tf1_bilinear_resize must
    reproduce bit for bit)."""
    def axis(in_size):
        s = torch.arange(size, dtype=torch.float32) * torch.tensor(in_size / size, dtype=torch.float32)
        lo = s.long()
        return lo, (lo + 1).clamp_max(in_size - 1), s - lo.float()

    ylo, yhi, dy = axis(x.shape[2])
    xlo, xhi, dx = axis(x.shape[3])
    top, bottom = x[:, :, ylo, :], x[:, :, yhi, :]
    t = top[:, :, :, xlo] + (top[:, :, :, xhi] - top[:, :, :, xlo]) * dx
    b = bottom[:, :, :, xlo] + (bottom[:, :, :, xhi] - bottom[:, :, :, xlo]) * dx
    return t + (b - t) * dy.view(1, 1, size, 1)


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (2, 3, 28, 28), (1, 3, 500, 375), (2, 3, 17, 401),
                                   (1, 3, 299, 298), (1, 3, 1, 1)])
def test_ttur_resize_is_bit_identical_to_the_corner_gather_formula(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8).float()
    assert torch.equal(tf1_bilinear_resize(x), _corner_gather_resize(x))
    # to_network leaves its input alone (it resizes into a new tensor, then scales in place)
    u = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    before = u.clone()
    out = get_protocol("ttur").to_network(u)
    assert torch.equal(u, before) and torch.equal(out, (_corner_gather_resize(u.float()) - 128) / 128)


def _nvidia_torchscript_resize(img):
    """The first steps of NVIDIA's TorchScript Inception forward (inception-2015-12-05.pkl), as
    its code reads, op by op: theta's translations updated in place with add_."""
    x = img.to(torch.float32)
    batch_size, channels, height, width = x.shape
    theta = torch.eye(2, 3)
    theta[0][2].add_(torch.sub(torch.div(theta[0][0], width), torch.div(theta[0][0], 299)))
    theta[1][2].add_(torch.sub(torch.div(theta[1][1], height), torch.div(theta[1][1], 299)))
    theta0 = torch.unsqueeze(theta.to(x.dtype), 0).repeat([batch_size, 1, 1])
    grid = torch.nn.functional.affine_grid(theta0, [batch_size, channels, 299, 299], False)
    x0 = torch.nn.functional.grid_sample(x, grid, "bilinear", "border", False)
    return torch.div(torch.sub(x0, 128), 128)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 64, 48), (1, 3, 299, 299), (1, 3, 512, 512)])
def test_nvidia_protocol_is_the_torchscript_inceptions_own_resize(shape):
    img = torch.from_numpy(np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8))
    got = get_protocol("nvidia").to_network(img)
    assert got.dtype == torch.float32 and got.shape == (shape[0], 3, SIZE, SIZE)
    assert torch.equal(got, _nvidia_torchscript_resize(img))
    # the same sampling positions as ttur's TF resize, other float32 roundings; at 299 not the identity
    ttur = get_protocol("ttur").to_network(img)
    assert 0 < (got - ttur).abs().max().item() * 128 < 0.02


def test_nvidia_resize_stays_float32_under_the_networks_reduced_precision():
    # the network may run under bf16 autocast; the resize's sampling grid (a matmul) must not
    img = torch.from_numpy(np.random.default_rng(7).integers(0, 256, size=(2, 3, 256, 256), dtype=np.uint8))
    want = get_protocol("nvidia").to_network(img)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = get_protocol("nvidia").to_network(img)
    assert got.dtype == torch.float32 and torch.equal(got, want)
