"""fidkit.frechet: the Fréchet distance against independent computations.

References used here do not share fidkit's method (eigenvalues of Lᵀ Σ₂ L):
  * mpmath at 50 significant digits: eigenvalues of the product Σ₁Σ₂ itself, on the
    float64 input taken as exact (small d);
  * scipy.linalg.sqrtm of Σ₁Σ₂ (Schur method), the classic evaluation (d up to 512);
  * closed forms (equal, diagonal, commuting covariances).

Accuracy to expect. With well-conditioned covariances the distance is accurate to about
1e-14 relative. When a covariance is singular (fewer samples than dimensions) its zero
eigenvalues exist in float64 only as rounding noise of size about ε‖Σ‖, and tr (Σ₁Σ₂)^½
depends on them through square roots: any float64 evaluation, sqrtm included, is then
uncertain by about (number of such directions) · √(ε ‖Σ₁‖ ‖Σ₂‖). Tests of singular
cases use that bound (:func:`_singular_slack`) and not a fixed relative tolerance.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fidkit.errors import StatsError
from fidkit.frechet import FrechetResult, frechet_distance, frechet_distance_torch, trace_sqrt_product

EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------------------- helpers


def _spectrum(d: int, decay: float = 0.8) -> np.ndarray:
    return 1.0 / np.arange(1, d + 1) ** decay


def _features(rng, n: int, d: int, decay: float = 0.8, shift: float = 0.0) -> np.ndarray:
    """n samples of d features with a decaying spectrum in a random basis (like CNN features)."""
    x = rng.standard_normal((n, d)) * _spectrum(d, decay)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return x @ q.T + shift


def _stats(x: np.ndarray):
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _random_spd(rng, d: int, ridge: float = 0.1) -> np.ndarray:
    g = rng.standard_normal((d, 2 * d + 1))
    s = g @ g.T / g.shape[1] + ridge * np.eye(d)
    return (s + s.T) / 2


def _mp_trace_sqrt(s1: np.ndarray, s2: np.ndarray) -> mpmath.mpf:
    """Σ Re √λ over the eigenvalues λ of Σ₁Σ₂, at 50 digits (= Re tr sqrtm(Σ₁Σ₂))."""
    with mpmath.workdps(50):
        prod = mpmath.matrix(s1.tolist()) * mpmath.matrix(s2.tolist())
        ev = mpmath.eig(prod, left=False, right=False)
        return mpmath.fsum(mpmath.re(mpmath.sqrt(e)) for e in ev)


def _mp_fid(mu1, s1, mu2, s2) -> mpmath.mpf:
    with mpmath.workdps(50):
        mean = mpmath.fsum((mpmath.mpf(a) - mpmath.mpf(b)) ** 2 for a, b in zip(mu1.tolist(), mu2.tolist()))
        tr = mpmath.fsum(mpmath.mpf(v) for v in np.diag(s1).tolist() + np.diag(s2).tolist())
        return mean + tr - 2 * _mp_trace_sqrt(s1, s2)


def _sqrtm_fid(mu1, s1, mu2, s2) -> float:
    """The classic formula with scipy.linalg.sqrtm (real part: it may return tiny imaginary parts)."""
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _singular_slack(s1: np.ndarray, s2: np.ndarray) -> float:
    """Uncertainty of 2·tr (Σ₁Σ₂)^½ from rounding noise in singular covariances (see module doc)."""
    n1, n2 = np.linalg.norm(s1, 2), np.linalg.norm(s2, 2)
    return 2 * 8 * s1.shape[0] * math.sqrt(EPS * n1 * n2)


def _scale(mu1, s1, mu2, s2) -> float:
    """Magnitude of the terms of the distance: cancellation makes errors relative to this."""
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2))


# ------------------------------------------------------------- high-precision reference


@pytest.mark.parametrize("d", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_mpmath_small_d(d, seed):
    rng = np.random.default_rng(100 * d + seed)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d) * 2.5
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    r = frechet_distance(mu1, s1, mu2, s2)
    ref = _mp_fid(mu1, s1, mu2, s2)
    assert abs(r.fid - float(ref)) <= 1e-10 * float(ref)
    ts_ref = _mp_trace_sqrt(s1, s2)
    assert abs(r.trace_sqrt - float(ts_ref)) <= 1e-12 * float(ts_ref)
    assert r.negative_eigenvalue_mass == 0.0 and r.min_eigenvalue > 0
    if seed == 0:  # a second, independent reference: mpmath's matrix square root of the product
        with mpmath.workdps(50):
            root = mpmath.sqrtm(mpmath.matrix(s1.tolist()) * mpmath.matrix(s2.tolist()))
            ts_sqrtm = mpmath.re(mpmath.fsum(root[i, i] for i in range(d)))
        assert abs(r.trace_sqrt - float(ts_sqrtm)) <= 1e-12 * float(ts_sqrtm)


def test_matches_mpmath_ill_conditioned():
    """Condition numbers 1e5 (the product's eigenvalues span 10 decades), d = 8: 1e-10 relative.

    (Eigenvalues of Σ₁Σ₂ far below ε‖Σ₁Σ₂‖ are known only to about ε‖Σ₁Σ₂‖ in any float64
    evaluation, and enter through square roots; this case stays clear of that.)
    """
    rng = np.random.default_rng(7)
    d = 8
    q1, _ = np.linalg.qr(rng.standard_normal((d, d)))
    q2, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s1 = (q1 * np.logspace(0, -5, d)) @ q1.T
    s2 = (q2 * np.logspace(0.5, -4.5, d)) @ q2.T
    mu1, mu2 = np.zeros(d), np.full(d, 0.01)
    r = frechet_distance(mu1, s1, mu2, s2)
    ref = float(_mp_fid(mu1, s1, mu2, s2))
    assert abs(r.fid - ref) <= 1e-10 * ref


@pytest.mark.parametrize("n1,n2", [(3, 100), (3, 4), (5, 7)])
def test_singular_matches_mpmath(n1, n2):
    """Σ₁ (and maybe Σ₂) of rank < d = 8: within the rounding-noise bound of the exact value."""
    rng = np.random.default_rng(n1 * 31 + n2)
    d = 8
    mu1, s1 = _stats(_features(rng, n1, d))
    mu2, s2 = _stats(_features(rng, n2, d, decay=0.6, shift=0.1))
    r = frechet_distance(mu1, s1, mu2, s2)
    ref = float(_mp_fid(mu1, s1, mu2, s2))
    assert math.isfinite(r.fid) and isinstance(r.fid, float)
    assert abs(r.fid - ref) <= _singular_slack(s1, s2)
    assert r.negative_eigenvalue_mass <= 1e-12 * np.trace(s1) * np.trace(s2)


# --------------------------------------------------------------------------- closed forms


def test_equal_covariances_give_mean_term():
    rng = np.random.default_rng(3)
    d = 40
    s = _random_spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    r = frechet_distance(mu1, s, mu2, s)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert r.mean_term == pytest.approx(expected, rel=1e-14)
    assert abs(r.fid - expected) <= 1e-13 * _scale(mu1, s, mu2, s)
    assert abs(r.trace_term) <= 1e-13 * 2 * np.trace(s)


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(4)
    mu, s = _stats(_features(rng, 500, 100))
    r = frechet_distance(mu, s, mu, s)
    assert r.fid >= 0.0 and r.fid == max(r.fid_raw, 0.0)
    assert abs(r.fid_raw) <= 1e-13 * 2 * np.trace(s)
    assert r.mean_term == 0.0


@pytest.mark.parametrize("with_zeros", [False, True])
def test_diagonal_covariances(with_zeros):
    rng = np.random.default_rng(5)
    d = 50
    a, b = rng.uniform(0.01, 3.0, d), rng.uniform(0.01, 3.0, d)
    if with_zeros:  # both singular, in different directions: the eigen-factor path
        a[::3] = 0.0
        b[1::4] = 0.0
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    r = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    expected = math.fsum((np.sqrt(a) - np.sqrt(b)) ** 2) + math.fsum((mu1 - mu2) ** 2)
    assert r.fid == pytest.approx(expected, rel=1e-12)
    assert r.trace_sqrt == pytest.approx(math.fsum(np.sqrt(a * b)), rel=1e-13)


@pytest.mark.parametrize("zeros", ["none", "first", "second", "both"])
def test_commuting_covariances(zeros):
    """Σ₁ = Q diag(a) Qᵀ, Σ₂ = Q diag(b) Qᵀ: d² has a closed form. Zeros in a and/or b make the
    covariances singular in a rotated basis: Cholesky of Σ₂ with the roles exchanged ("first"),
    of Σ₁ ("second"), or the eigen-factor of Σ₁ ("both", zeros in different directions)."""
    rng = np.random.default_rng(6)
    d = 30
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.1, 2.0, d), rng.uniform(0.1, 2.0, d)
    if zeros in ("first", "both"):
        a[::3] = 0.0
    if zeros in ("second", "both"):
        b[1::4] = 0.0
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    mu = rng.standard_normal(d)
    r = frechet_distance(mu, s1, mu + 0.5, s2)
    expected = math.fsum((np.sqrt(a) - np.sqrt(b)) ** 2) + d * 0.25
    slack = 0.0 if zeros == "none" else _singular_slack(s1, s2)
    assert abs(r.fid - expected) <= 1e-11 * expected + slack
    assert r.negative_eigenvalue_mass <= 1e-12 * np.trace(s1) * np.trace(s2)


def test_paths_agree_when_the_arguments_are_exchanged():
    """(singular Σ₁, Σ₂) uses the Cholesky factor of Σ₂ with the roles exchanged, (Σ₂, singular Σ₁)
    uses it directly: the same distance up to the rounding noise of the singular covariance."""
    rng = np.random.default_rng(9)
    d = 40
    mu1, s1 = _stats(_features(rng, 10, d))
    mu2, s2 = _stats(_features(rng, 400, d, decay=0.6))
    a = frechet_distance(mu1, s1, mu2, s2)
    b = frechet_distance(mu2, s2, mu1, s1)
    assert abs(a.fid_raw - b.fid_raw) <= _singular_slack(s1, s2)
    assert a.mean_term == b.mean_term
    assert abs(a.trace_term - b.trace_term) <= _singular_slack(s1, s2)


def test_one_dimension():
    r = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]]))
    assert r.fid == pytest.approx((2.0 - 3.0) ** 2 + 2.0 ** 2, rel=1e-15)
    assert r.trace_sqrt == pytest.approx(6.0, rel=1e-15)


def test_zero_covariances():
    d = 5
    rng = np.random.default_rng(8)
    s2 = _random_spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    r = frechet_distance(mu1, np.zeros((d, d)), mu2, s2)
    assert r.fid == pytest.approx(np.sum((mu1 - mu2) ** 2) + np.trace(s2), rel=1e-14)
    assert r.trace_sqrt == 0.0
    r0 = frechet_distance(mu1, np.zeros((d, d)), mu2, np.zeros((d, d)))
    assert r0.fid == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-15)
    assert (r0.trace_sqrt, r0.negative_eigenvalue_mass, r0.min_eigenvalue) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------ singular covariances


@pytest.mark.parametrize("n1,n2", [(20, 2000), (2000, 20), (20, 30)])
def test_singular_d64_against_sqrtm(n1, n2):
    """d = 64 from N = 20 (and/or 30) samples: rank-deficient; every path (swap, eigen-factor)."""
    rng = np.random.default_rng(n1 + 7 * n2)
    d = 64
    mu1, s1 = _stats(_features(rng, n1, d))
    mu2, s2 = _stats(_features(rng, n2, d, decay=0.7, shift=0.02))
    r = frechet_distance(mu1, s1, mu2, s2)
    ref = _sqrtm_fid(mu1, s1, mu2, s2)
    for v in r.as_dict().values():
        assert isinstance(v, float) and math.isfinite(v)
    assert abs(r.fid - ref) <= _singular_slack(s1, s2)
    assert abs(r.fid - ref) <= 1e-6 * ref
    assert r.negative_eigenvalue_mass <= 1e-12 * np.trace(s1) * np.trace(s2)
    assert r.min_eigenvalue >= -1e-12 * np.trace(s1) * np.trace(s2)


def test_indefinite_input_is_reported_not_hidden():
    """A 'covariance' with a negative eigenvalue: clamped, and the clamped mass is reported."""
    r = frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -0.5]))
    assert r.negative_eigenvalue_mass == pytest.approx(0.5)
    assert r.min_eigenvalue == pytest.approx(-0.5)
    assert r.trace_sqrt == pytest.approx(1.0)
    assert math.isfinite(r.fid)
    assert r.clamped_sqrt == pytest.approx(math.sqrt(0.5)) and r.clamping_matters()


@pytest.mark.parametrize("func", [frechet_distance, frechet_distance_torch])
def test_indefinite_input_is_reported_when_neither_covariance_has_a_cholesky_factor(func):
    """Σ₂ singular and Σ₁ indefinite: L comes from Σ₁'s positive eigenpairs, and its negative
    part (weighted by Σ₂) is reported as A's negative λ are, not dropped."""
    rng = np.random.default_rng(0)
    d = 40
    x, y, u = rng.normal(size=(d, 20)), rng.normal(size=(d, 25)), rng.normal(size=d)
    s1, s2 = x @ x.T / 20 - 5 * np.outer(u, u) / d, y @ y.T / 25
    r = func(np.zeros(d), s1, np.zeros(d), s2)
    w, v = np.linalg.eigh(s1)
    assert (w < -1).sum() == 1  # one clearly negative eigenvalue
    neg = v[:, w < -1] * np.sqrt(-w[w < -1])
    want = float((neg.T @ s2 @ neg)[0, 0])  # its Σ₂-weighted mass: the one λ added
    assert r.negative_eigenvalue_mass == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert r.min_eigenvalue == pytest.approx(-want, rel=1e-9) and r.clamping_matters()
    assert r.clamped_sqrt == pytest.approx(math.sqrt(want), rel=1e-6)
    # a singular but positive semi-definite Σ₁ (rounding-sized negative eigenvalues) adds nothing
    quiet = func(np.zeros(d), x @ x.T / 20, np.zeros(d), s2)
    assert not quiet.clamping_matters() and quiet.negative_eigenvalue_mass < 1e-12 * np.trace(s2) ** 2


def test_rounding_sized_clamping_stays_silent():
    """Singular covariances (fewer samples than dimensions) clamp rounding-sized eigenvalues:
    reported in the result, but too small to move the digits, so no note is owed."""
    rng = np.random.default_rng(5)
    mu1, s1 = _stats(_features(rng, 100, 300))
    mu2, s2 = _stats(_features(rng, 100, 300, shift=0.1))
    r = frechet_distance(mu1, s1, mu2, s2)
    assert r.negative_eigenvalue_mass > 0 and 2 * r.clamped_sqrt < 1e-6 * r.fid
    assert not r.clamping_matters()
    same = frechet_distance(mu1, s1, mu1, s1)  # d² ≈ 0: any clamped λ moves it, but they are rounding
    assert not same.clamping_matters()


# --------------------------------------------------------------------- realistic sizes


@pytest.mark.parametrize("d,n", [(300, 1200), (512, 3000)])
def test_realistic_against_sqrtm(d, n):
    """Decaying spectra, different distributions."""
    rng = np.random.default_rng(d)
    mu1, s1 = _stats(_features(rng, n, d))
    mu2, s2 = _stats(_features(rng, n, d, decay=0.75, shift=0.01))
    r = frechet_distance(mu1, s1, mu2, s2)
    ref = _sqrtm_fid(mu1, s1, mu2, s2)
    assert abs(r.fid - ref) <= 1e-10 * ref
    assert r.negative_eigenvalue_mass == 0.0


# ------------------------------------------------------------------------- properties


@st.composite
def statistics(draw, singular=False):
    """A (mu1, s1, mu2, s2) quadruple with d ≤ 6 from a seed; singular ones from N ≤ d samples."""
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        if singular:
            n = draw(st.integers(1, d))
            g = rng.standard_normal((d, n)) * draw(st.floats(0.1, 10.0))
            s = g @ g.T / n
        else:
            s = _random_spd(rng, d) * draw(st.floats(0.01, 100.0))
        out.append((rng.standard_normal(d) * draw(st.floats(0.0, 5.0)), (s + s.T) / 2))
    return out[0][0], out[0][1], out[1][0], out[1][1]


def _tolerance(mu1, s1, mu2, s2, singular):
    tol = 1e-12 * _scale(mu1, s1, mu2, s2)
    return tol + (_singular_slack(s1, s2) if singular else 0.0)


# the same examples on every run (a rare failing draw would otherwise look like a flaky test)
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.booleans().flatmap(lambda sing: st.tuples(st.just(sing), statistics(singular=sing))))
def test_nonnegative_up_to_rounding(case):
    singular, (mu1, s1, mu2, s2) = case
    r = frechet_distance(mu1, s1, mu2, s2)
    assert r.fid >= 0.0 and r.fid == max(r.fid_raw, 0.0)
    assert r.fid_raw >= -_tolerance(mu1, s1, mu2, s2, singular)
    assert r.trace_sqrt >= 0.0 and r.negative_eigenvalue_mass >= 0.0


@PROPERTY
@given(st.booleans().flatmap(lambda sing: st.tuples(st.just(sing), statistics(singular=sing))))
def test_symmetric_in_its_arguments(case):
    singular, (mu1, s1, mu2, s2) = case
    a = frechet_distance(mu1, s1, mu2, s2)
    b = frechet_distance(mu2, s2, mu1, s1)
    assert abs(a.fid_raw - b.fid_raw) <= _tolerance(mu1, s1, mu2, s2, singular)


@PROPERTY
@given(st.booleans().flatmap(lambda sing: st.tuples(st.just(sing), statistics(singular=sing))),
       st.integers(0, 2 ** 32 - 1), st.floats(-100.0, 100.0))
def test_invariant_under_rotation_and_translation(case, seed, shift):
    singular, (mu1, s1, mu2, s2) = case
    d = mu1.shape[0]
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    t = rng.standard_normal(d) * shift
    a = frechet_distance(mu1, s1, mu2, s2)
    b = frechet_distance(q @ mu1 + t, q @ s1 @ q.T, q @ mu2 + t, q @ s2 @ q.T)
    tol = _tolerance(mu1, s1, mu2, s2, singular) + 1e-12 * float(t @ t + mu1 @ mu1 + mu2 @ mu2)
    assert abs(a.fid_raw - b.fid_raw) <= 10 * tol


@PROPERTY
@given(st.booleans().flatmap(lambda sing: st.tuples(st.just(sing), statistics(singular=sing))))
def test_zero_for_identical_statistics(case):
    singular, (mu1, s1, _, _) = case
    r = frechet_distance(mu1, s1, mu1.copy(), s1.copy())
    assert r.mean_term == 0.0
    assert abs(r.fid_raw) <= _tolerance(mu1, s1, mu1, s1, singular)


@PROPERTY
@given(statistics(), st.integers(-200, 200))
def test_scales_as_the_square_of_the_features(stats, k):
    """μ → 2^k μ, Σ → 4^k Σ multiplies d² by 4^k, also far outside the usual float range."""
    mu1, s1, mu2, s2 = stats
    c = 2.0 ** k
    base = frechet_distance(mu1, s1, mu2, s2)
    scaled = frechet_distance(mu1 * c, s1 * c * c, mu2 * c, s2 * c * c)
    tol = 1e-12 * _scale(mu1, s1, mu2, s2)
    assert abs(scaled.fid_raw / (c * c) - base.fid_raw) <= tol


# --------------------------------------------------------------------- inputs and output


def test_result_fields_and_conversions():
    rng = np.random.default_rng(12)
    mu1, s1 = _stats(_features(rng, 100, 10))
    mu2, s2 = _stats(_features(rng, 100, 10, shift=0.1))
    r = frechet_distance(mu1, s1, mu2, s2)
    assert isinstance(r, FrechetResult)
    d = r.as_dict()
    assert set(d) == {"fid", "fid_raw", "mean_term", "trace_term", "trace_sqrt", "negative_eigenvalue_mass",
                      "min_eigenvalue", "clamped_sqrt"}
    assert all(type(v) is float for v in d.values())
    assert float(r) == r.fid
    assert r.fid_raw == pytest.approx(r.mean_term + r.trace_term, rel=1e-15)
    assert r.trace_term == pytest.approx(np.trace(s1) + np.trace(s2) - 2 * r.trace_sqrt, rel=1e-12)
    with pytest.raises(AttributeError):
        r.fid = 0.0  # frozen


def test_inputs_are_not_modified_and_dtypes_are_accepted():
    rng = np.random.default_rng(13)
    mu1, s1 = _stats(_features(rng, 5, 12))  # singular: exercises every in-place step
    mu2, s2 = _stats(_features(rng, 6, 12))
    copies = [a.copy() for a in (mu1, s1, mu2, s2)]
    r64 = frechet_distance(mu1, s1, mu2, s2)
    for a, c in zip((mu1, s1, mu2, s2), copies):
        np.testing.assert_array_equal(a, c)
    # float32 rounding (1e-7) is amplified by √ when singular: compare on full-rank statistics
    mu3, s3 = _stats(_features(rng, 200, 12))
    mu4, s4 = _stats(_features(rng, 300, 12, shift=0.1))
    r64 = frechet_distance(mu3, s3, mu4, s4)
    r32 = frechet_distance(*(a.astype(np.float32) for a in (mu3, s3, mu4, s4)))
    assert r32.fid == pytest.approx(r64.fid, rel=1e-5)
    ri = frechet_distance(np.arange(3), np.eye(3, dtype=np.int64) * 4, np.zeros(3, dtype=np.uint8), np.eye(3))
    assert ri.fid == pytest.approx(5.0 + 3 * (2.0 - 1.0) ** 2)
    assert trace_sqrt_product(s3, s4)[0] == r64.trace_sqrt


@pytest.mark.parametrize("layout", ["C", "F", "strided", "asymmetric"])
@pytest.mark.parametrize("n1", [8, 400], ids=["singular", "full-rank"])
def test_memory_layouts_give_the_same_value_and_are_not_written(layout, n1):
    rng = np.random.default_rng(16)
    d = 40
    mu1, s1 = _stats(_features(rng, n1, d))
    mu2, s2 = _stats(_features(rng, 300, d, decay=0.6))
    ref = frechet_distance(mu1, s1, mu2, s2)

    def arrange(s):
        if layout == "F":
            return np.asfortranarray(s)
        if layout == "strided":
            big = np.zeros((2 * d, 2 * d))
            big[::2, ::2] = s
            return big[::2, ::2]
        if layout == "asymmetric":
            return s + np.triu(np.full((d, d), 1e-15), 1)
        return s.copy()

    a1, a2 = arrange(s1), arrange(s2)
    before = (a1.copy(), a2.copy())
    r = frechet_distance(mu1, a1, mu2, a2)
    np.testing.assert_array_equal(a1, before[0])
    np.testing.assert_array_equal(a2, before[1])
    slack = _singular_slack(s1, s2) if n1 <= d else 0.0
    assert abs(r.fid - ref.fid) <= 1e-13 * _scale(mu1, s1, mu2, s2) + slack


@pytest.mark.parametrize("d", [20, 300])
def test_slightly_asymmetric_covariance_is_symmetrised(d):
    rng = np.random.default_rng(14)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    asym = s1 + rng.standard_normal((d, d)) * 1e-9
    mu = np.zeros(d)
    a = frechet_distance(mu, asym, mu, s2)
    b = frechet_distance(mu, (asym + asym.T) / 2, mu, s2)
    assert a.fid == b.fid


@pytest.mark.parametrize("d", [5, 300])
@pytest.mark.parametrize("where", ["first row", "last row", "middle", "near diagonal"])
def test_asymmetry_is_found_anywhere(d, where):
    rng = np.random.default_rng(17)
    s = _random_spd(rng, d)
    i, j = {"first row": (0, d - 1), "last row": (d - 1, 0), "middle": (d // 2, d // 3),
            "near diagonal": (d - 1, d - 2)}[where]
    s[i, j] += 1e-3
    with pytest.raises(StatsError, match="sigma2 is not symmetric"):
        frechet_distance(np.zeros(d), np.eye(d), np.zeros(d), s)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("func", [frechet_distance, frechet_distance_torch], ids=["numpy", "torch"])
def test_absurd_magnitudes_give_a_correct_value_or_a_clear_error(func):
    """No rescaling: statistics are used as given; beyond the float64 range a StatsError says so."""
    rng = np.random.default_rng(18)
    d = 6
    mu1, s1 = _stats(_features(rng, 50, d))
    mu2, s2 = _stats(_features(rng, 60, d, shift=0.3))
    base = frechet_distance(mu1, s1, mu2, s2)
    for c in (1e-60, 1e60):  # products Σ₁Σ₂ of about 1e∓240: still exact
        r = func(mu1 * c, s1 * c * c, mu2 * c, s2 * c * c)
        assert r.fid / (c * c) == pytest.approx(base.fid, rel=1e-12)
    big = func(np.zeros(2), np.diag([3e300, 1e300]), np.ones(2), np.eye(2) * 1e-30)
    assert big.fid == pytest.approx(4e300, rel=1e-15)
    errors = {
        "extreme magnitudes": [(np.zeros(1), np.array([[1e308]]), np.zeros(1), np.array([[1e308]])),
                               (np.zeros(2), np.eye(2) * 1e-200, np.zeros(2), np.eye(2) * 1e-200)],
        "not a finite number": [(np.full(2, 1e200), np.eye(2), np.full(2, -1e200), np.eye(2)),
                                (np.zeros(2), np.eye(2) * 1.5e308, np.zeros(2), np.eye(2) * 1e-100)],
        "not symmetric": [(np.zeros(2), np.array([[1.0, 1.7e308], [-1.7e308, 1.0]]), np.zeros(2), np.eye(2))],
    }
    for pattern, cases in errors.items():
        for args in cases:
            with pytest.raises(StatsError, match=pattern) as info:
                func(*args)
            assert "\n" not in str(info.value)


def _bad_inputs():
    rng = np.random.default_rng(15)
    d = 4
    mu, s = np.zeros(d), _random_spd(rng, d)
    asym = s.copy()
    asym[0, 1] += 0.1
    nan_s, inf_s, nan_mu = s.copy(), s.copy(), mu.copy()
    nan_s[1, 2] = np.nan
    inf_s[3, 3] = np.inf
    nan_mu[0] = np.nan
    return {
        "mu 2-D": ((mu[None], s, mu, s), "mu1 must be a vector"),
        "sigma 1-D": ((mu, mu, mu, s), "sigma1 must be a square matrix"),
        "sigma not square": ((mu, s[:, :3], mu, s), "sigma1 must be a square matrix"),
        "mu dims differ": ((mu, s, mu[:3], s), "different|d = 3"),
        "sigma dims differ": ((mu, s, mu, s[:3, :3]), "sigma1 has shape"),
        "mu vs sigma": ((mu[:3], s, mu[:3], s), "same features"),
        "empty": ((np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0))), "d = 0|d ≥ 1"),
        "nan sigma": ((mu, nan_s, mu, s), "sigma1 contains NaN"),
        "inf sigma": ((mu, s, mu, inf_s), "sigma2 contains NaN or infinite"),
        "nan mu": ((nan_mu, s, mu, s), "mu1 contains NaN"),
        "complex mu": ((mu.astype(complex), s, mu, s), "complex"),
        "complex sigma": ((mu, s, mu, s.astype(np.complex128)), "complex"),
        "asymmetric": ((mu, asym, mu, s), "sigma1 is not symmetric"),
        "strings": ((np.array(["a", "b", "c", "d"]), s, mu, s), "not a real number type"),
        "bool": ((mu, s, mu, np.eye(d, dtype=bool)), "not a real number type"),
    }


BAD = _bad_inputs()


@pytest.mark.parametrize("func", [frechet_distance, frechet_distance_torch], ids=["numpy", "torch"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_one_line_stats_error(func, case):
    args, pattern = BAD[case]
    with pytest.raises(StatsError, match=pattern) as info:
        func(*args)
    message = str(info.value)
    assert message and "\n" not in message


def test_trace_sqrt_product_validates():
    with pytest.raises(StatsError, match="same feature dimension"):
        trace_sqrt_product(np.eye(3), np.eye(4))
    with pytest.raises(StatsError, match="not symmetric"):
        trace_sqrt_product(np.eye(3), np.triu(np.ones((3, 3))))


def test_unreadable_input_is_a_stats_error():
    with pytest.raises(StatsError, match="cannot be read as a NumPy array") as info:
        frechet_distance([[1.0], [1.0, 2.0]], np.eye(2), np.zeros(2), np.eye(2))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------- torch variant


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("n1,n2", [(400, 300), (10, 300), (10, 12)])
def test_torch_variant_matches_numpy(n1, n2, device):
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(n1 + n2)
    d = 32
    mu1, s1 = _stats(_features(rng, n1, d))
    mu2, s2 = _stats(_features(rng, n2, d, decay=0.6, shift=0.05))
    a = frechet_distance(mu1, s1, mu2, s2)
    b = frechet_distance_torch(*(torch.from_numpy(x).to(device) for x in (mu1, s1, mu2, s2)))
    c = frechet_distance_torch(mu1, torch.from_numpy(s1).to(device), mu2, s2.tolist())  # arrays, lists too
    assert isinstance(b, FrechetResult)
    tol = 1e-12 * _scale(mu1, s1, mu2, s2) + (_singular_slack(s1, s2) if min(n1, n2) <= d else 0.0)
    assert abs(a.fid - b.fid) <= tol
    assert c.fid == b.fid
    if device == "cpu":  # arrays with negative strides: the coordinates in reverse order
        e = frechet_distance_torch(*(x[::-1, ::-1] if x.ndim == 2 else x[::-1] for x in (mu1, s1, mu2, s2)))
        assert abs(a.fid - e.fid) <= tol


def test_mean_term_as_held_keeps_the_means_dtypes_and_with_mean_term_keeps_the_trace():
    from fidkit.frechet import mean_term_as_held, with_mean_term

    rng = np.random.default_rng(5)
    m1, m2 = (rng.gamma(0.5, 2.0, 64).astype(np.float32) for _ in range(2))
    d32 = m1 - m2
    assert mean_term_as_held(m1, m2) == float(d32.dot(d32))  # numpy's float32 lines
    d64 = m1.astype(np.float64) - m2
    assert mean_term_as_held(m1.astype(np.float64), m2) == float(d64.dot(d64))  # promoted: float64
    r = frechet_distance(m1, np.eye(64), m2, 2 * np.eye(64))
    held = with_mean_term(r, mean_term_as_held(m1, m2))
    assert held.trace_term == r.trace_term and held.mean_term == float(d32.dot(d32))
    assert held.fid == held.fid_raw == held.mean_term + r.trace_term
    assert with_mean_term(r, 0.0).fid == max(r.trace_term, 0.0)
    for bad in ((m1, m2[:3]), (m1[None], m2[None]), (m1.astype(complex), m2)):
        with pytest.raises(StatsError):
            mean_term_as_held(*bad)
    with pytest.raises(StatsError, match="not a finite number"):
        mean_term_as_held(np.full(2, 3e38, np.float32), np.full(2, -3e38, np.float32))
