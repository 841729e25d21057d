"""CMMD and FD∞ on features (fidkit/distances.py)."""

import numpy as np
import pytest

from fidkit import distances
from fidkit.distances import cmmd, fd_infinity, fd_infinity_sizes
from fidkit.errors import FidkitWarning, StatsError


def unit_rows(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def cmmd_direct(x, y, sigma=10.0):
    """An independent form: explicit differences, float64, biased (diagonal included)."""
    x, y = x.astype(np.float64), y.astype(np.float64)

    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma ** 2)).mean()

    return 1000 * (k(x, x) + k(y, y) - 2 * k(x, y))


def test_cmmd_equals_independent_implementation():
    x, y = unit_rows(300, 768, 0), unit_rows(250, 768, 1) * 0.9 + 0.01
    want = cmmd_direct(x, y)
    assert cmmd(x, y) == pytest.approx(want, rel=1e-9)
    assert cmmd(x, y, block_rows=7) == pytest.approx(want, rel=1e-12 * 1e3)  # blocks change only the summation order
    assert cmmd(x, x) == pytest.approx(0, abs=1e-12)
    assert cmmd(x, y) == pytest.approx(cmmd(y, x), rel=1e-12)


def test_cmmd_reference_float32_arithmetic_differs_little():
    """The reference computes in float32 (JAX without x64); say how far that is from float64."""
    x, y = unit_rows(400, 768, 2), unit_rows(400, 768, 3)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    g = np.float32(1 / (2 * 10 ** 2))

    def k32(a, b):
        an, bn = np.diag(a @ a.T), np.diag(b @ b.T)
        return np.mean(np.exp(-g * (-2 * (a @ b.T) + an[:, None] + bn[None, :])), dtype=np.float32)

    ref32 = 1000 * (k32(x32, x32) + k32(y32, y32) - 2 * k32(x32, y32))
    assert abs(float(ref32) - cmmd(x, y)) < 1e-3  # absolute, on values of order 1e-1


def test_cmmd_refuses_bad_input():
    with pytest.raises(StatsError, match="dimensions differ"):
        cmmd(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(StatsError, match="NaN or inf"):
        cmmd(np.full((3, 4), np.nan), np.zeros((3, 4)))
    with pytest.raises(StatsError, match=r"shape \(N, d\)"):
        cmmd(np.zeros(4), np.zeros((3, 4)))


def test_fd_infinity_sizes_are_dgm_evals():
    # np.linspace(min(5000, max(N // 10, 2)), N, 15).astype('int32'), as dgm-eval's compute_FD_infinity
    assert list(fd_infinity_sizes(50000)) == list(np.linspace(5000, 50000, 15).astype("int32"))
    assert fd_infinity_sizes(50000)[1] == 8214  # 5000 + 3214.28…, truncated
    assert list(fd_infinity_sizes(1000)) == list(np.linspace(100, 1000, 15).astype("int32"))
    assert fd_infinity_sizes(10)[0] == 2


def test_fd_infinity_recovers_the_intercept_of_an_exactly_linear_fd(monkeypatch):
    """With FD_n = a + b/n exactly (the Fréchet step replaced), the fit returns a and b."""
    a, b = 3.25, 1234.5
    seen = []
    real_mean_cov = distances._mean_cov

    def mean_cov(f):
        seen.append(f.shape[0])
        return real_mean_cov(f)

    monkeypatch.setattr(distances, "_mean_cov", mean_cov)
    monkeypatch.setattr(distances, "frechet_distance", lambda *args: a + b / seen[-1])
    rng = np.random.default_rng(0)
    r = fd_infinity(rng.normal(size=(500, 3)), rng.normal(size=(2000, 3)), seed=1)
    assert r.value == pytest.approx(a, rel=1e-10) and r.slope == pytest.approx(b, rel=1e-10)
    assert list(r.sizes) == list(fd_infinity_sizes(2000)) and seen[1:] == list(r.sizes)
    assert np.allclose(r.fd, a + b / r.sizes)


def test_fd_infinity_on_gaussians():
    """Two Gaussians with a known FD: FD∞ is closer to it than the FD at N, and repeatable."""
    d = 8
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20000, d))
    gen = rng.normal(size=(3000, d)) * 1.5 + 0.5
    true_fd = d * 0.5 ** 2 + d * (1 + 1.5 ** 2 - 2 * 1.5)
    r = fd_infinity(ref, gen, seed=0)
    from fidkit.frechet import frechet_distance
    fd_n = float(frechet_distance(ref.mean(0), np.cov(ref, rowvar=False), gen.mean(0), np.cov(gen, rowvar=False)))
    assert abs(r.value - true_fd) < abs(fd_n - true_fd)
    assert r.slope > 0 and fd_infinity(ref, gen, seed=0).value == r.value
    by_stats = fd_infinity((ref.mean(0), np.cov(ref, rowvar=False)), gen, seed=0)
    assert by_stats.value == r.value and np.array_equal(by_stats.fd, r.fd)
    assert r.as_dict()["fd_infinity_sizes"][0] == 300


def test_fd_infinity_refuses_too_few_and_warns_singular():
    rng = np.random.default_rng(0)
    with pytest.raises(StatsError, match="20 generated images are too few for FD∞"):
        fd_infinity(rng.normal(size=(50, 2)), rng.normal(size=(20, 2)))
    with pytest.warns(FidkitWarning, match="smallest subset .* not larger than the 64 feature dimensions"):
        fd_infinity(rng.normal(size=(200, 64)), rng.normal(size=(300, 64)))


def test_fd_infinity_default_seed_is_the_seed_of_every_other_seeded_metric():
    from fidkit import distances, scores
    assert distances.DEFAULT_SEED == scores.DEFAULT_SEED


def test_fd_infinity_record_is_json_whatever_the_seed_type():
    import json
    rng = np.random.default_rng(0)
    r = fd_infinity(rng.normal(size=(200, 2)), rng.normal(size=(300, 2)), seed=np.int64(1))
    assert json.loads(json.dumps(r.as_dict()))["fd_infinity_seed"] == 1


def _dgm_eval_sw_approx(X, Y):
    """dgm-eval's metrics/sw.py, verbatim but for the import."""
    from numpy import linalg
    d = X.shape[1]
    mean_X = X.mean(axis=0)
    mean_Y = Y.mean(axis=0)
    mean_term = linalg.norm(mean_X - mean_Y) ** 2 / d
    m2_Xc = (linalg.norm(X - mean_X, axis=1) ** 2).mean() / d
    m2_Yc = (linalg.norm(Y - mean_Y, axis=1) ** 2).mean() / d
    approx_sw = (mean_term + (m2_Xc ** (1 / 2) - m2_Yc ** (1 / 2)) ** 2) ** (1/2)
    return approx_sw


def test_sw_approx_is_dgm_evals_on_its_float64_copy_of_float32_features():
    rng = np.random.default_rng(21)
    a = rng.normal(size=(300, 64)).astype(np.float32)
    b = (rng.normal(size=(200, 64)) * 1.3 + 0.2).astype(np.float32)
    # dgm-eval keeps every encoder's float32 output in a float64 array (np.empty((N, dims)))
    assert distances.sw_approx(a, b) == _dgm_eval_sw_approx(a.astype(np.float64), b.astype(np.float64))
    assert distances.sw_approx(a, a) == 0.0 and distances.sw_approx(a, b) > 0.1
    with pytest.raises(StatsError, match="dimensions differ"):
        distances.sw_approx(a, b[:, :8])
