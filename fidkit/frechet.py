"""The Fréchet distance between two Gaussians, in float64, without a matrix square root.

d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 · tr (Σ₁Σ₂)^½. The classic evaluation takes ``scipy.linalg.sqrtm``
of the non-symmetric Σ₁Σ₂: complex Schur arithmetic, about 8 s at d = 2048 on two cores, complex
values or NaN for singular covariances. Yet tr (Σ₁Σ₂)^½ = Σ √λ over the eigenvalues λ of Σ₁Σ₂,
and those are the eigenvalues of the symmetric A = Lᵀ Σ₂ L, where L Lᵀ = Σ₁. In LAPACK:

1. L: the Cholesky factor of Σ₁ (``dpotrf``); of Σ₂ with the roles exchanged when Σ₁ is singular
   (N ≤ d samples); V·diag(√w) over the eigenpairs (w, V) of Σ₁ with w > 0 when both are (then
   Σ₁'s eigenvalues below rounding's −d·ε·max|w|, if any, are reported through step 3 too).
2. A = Lᵀ Σ₂ L by ``dsygst``, which uses the symmetry of Σ₂ and the triangle of L.
3. λ by ``dsyevr``. Negative λ are rounding: clamped to 0, their total and the smallest λ are
   reported, so that a covariance that is not positive semi-definite shows.

About 0.57 s at d = 2048 on two cores, about 1e-14 relative for full-rank covariances. The zero
eigenvalues of a singular covariance exist in float64 only as rounding noise and enter through
square roots: every float64 evaluation (sqrtm included) is then uncertain by about
(their number) · √(ε ‖Σ₁‖ ‖Σ₂‖). :func:`frechet_distance_torch` does the same in torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import StatsError

__all__ = ["FrechetResult", "frechet_distance", "frechet_distance_torch", "mean_term_as_held", "trace_sqrt_product",
           "with_mean_term"]

#: A covariance whose largest |Σ − Σᵀ| exceeds this fraction of its largest |entry| is refused as
#: not symmetric; below it, Σ is replaced by (Σ + Σᵀ)/2.
ASYMMETRY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class FrechetResult:
    """The Fréchet distance between two Gaussians and its terms; ``float(result)`` is ``fid``.

    ``fid`` = max(``fid_raw``, 0) is the distance d², ``fid_raw`` = ``mean_term`` + ``trace_term`` as
    computed (about −1e-12 of the traces for equal distributions), ``mean_term`` = ‖μ₁ − μ₂‖²,
    ``trace_term`` = tr Σ₁ + tr Σ₂ − 2 · ``trace_sqrt``, ``trace_sqrt`` = tr (Σ₁Σ₂)^½ = Σ √λ over the
    eigenvalues λ > 0 of A = Lᵀ Σ₂ L. ``negative_eigenvalue_mass`` = Σ |λ| over the λ < 0 clamped to 0
    (rounding gives about 1e-16 · d · ‖Σ₁‖‖Σ₂‖; much more: a covariance is not positive semi-definite),
    ``min_eigenvalue`` the smallest λ (0.0 when A is empty: both covariances zero), ``clamped_sqrt`` =
    Σ √|λ| over the same clamped λ: had they counted with their magnitudes, d² would differ by at most
    2 · ``clamped_sqrt``. :meth:`clamping_matters` tells when that bound can change the printed digits.
    """

    fid: float
    fid_raw: float
    mean_term: float
    trace_term: float
    trace_sqrt: float
    negative_eigenvalue_mass: float
    min_eigenvalue: float
    clamped_sqrt: float

    #: :meth:`clamping_matters` needs both: a clamped mass beyond rounding, which is at most about
    #: this part of tr Σ₁ · tr Σ₂ (taken as ((tr Σ₁ + tr Σ₂) / 2)², its upper bound) ...
    CLAMP_ROUNDING = 1e-12
    #: ... and a possible shift 2 · clamped_sqrt beyond this part of d² (its sixth significant
    #: digit, fidkit's agreement tolerance).
    CLAMP_RELATIVE_TO_FID = 1e-6

    def clamping_matters(self) -> bool:
        """True when the clamped eigenvalues are more than rounding and may have moved ``fid``:
        ``negative_eigenvalue_mass`` > 1e-12 · ((tr Σ₁ + tr Σ₂)/2)² and 2 · ``clamped_sqrt`` >
        1e-6 · ``fid``. Ordinary runs clamp about 1e-13 of eigenvalue mass against traces in the
        hundreds: silent. A covariance that is not positive semi-definite is not."""
        traces = self.trace_term + 2.0 * self.trace_sqrt
        return (self.negative_eigenvalue_mass > self.CLAMP_ROUNDING * (traces / 2.0) ** 2
                and 2.0 * self.clamped_sqrt > self.CLAMP_RELATIVE_TO_FID * self.fid)

    def as_dict(self) -> dict:
        """The fields as a ``{name: float}`` dict (JSON-serialisable)."""
        return {k: float(v) for k, v in asdict(self).items()}

    def __float__(self) -> float:
        return float(self.fid)


# ----------------------------------------------------- checks (NumPy arrays or torch tensors)


def _dtype_error(name: str, dtype, is_complex: bool) -> StatsError:
    if is_complex:
        return StatsError(f"{name} has complex dtype {dtype}; pass real-valued statistics (a complex "
                          f"covariance usually comes from a complex matrix square root upstream)")
    return StatsError(f"{name} has dtype {dtype}, not a real number type; pass a float array")


def _numpy(x, name: str) -> np.ndarray:
    """``x`` as a float64 NumPy array (no copy when it already is one)."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # a tensor on a GPU, a ragged list
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise StatsError(f"{name} cannot be read as a NumPy array ({reason}); pass a NumPy array, or use "
                         f"frechet_distance_torch for tensors") from None
    if arr.dtype.kind not in "fiu":
        raise _dtype_error(name, arr.dtype, arr.dtype.kind == "c")
    return arr.astype(np.float64, copy=False)


def real_array(x, name: str) -> np.ndarray:
    """``x`` (a NumPy array, list or CPU tensor of real numbers) as a float64 NumPy array;
    :class:`StatsError` in one line for complex, non-numeric or unreadable input (never
    silently cut to its real part)."""
    return _numpy(x, name)


def _largest_magnitude(x, name: str) -> float:
    """max |x|, or StatsError for NaN or inf (max and min both propagate NaN)."""
    largest = max(float(x.max()), -float(x.min()))
    if not math.isfinite(largest):
        raise StatsError(f"{name} contains NaN or infinite values; recompute the statistics from finite features")
    return largest


def _symmetric(s, name: str):
    """``(Σ, max |Σ|)``, Σ replaced by (Σ + Σᵀ)/2 when it is symmetric only within tolerance."""
    largest, b, d = _largest_magnitude(s, name), 128, s.shape[0]
    # tile by tile: transposed reads of whole rows would leave the cache
    asymmetry = max(float(abs(s[i:i + b, j:j + b] - s[j:j + b, i:i + b].T).max())
                    for i in range(0, d, b) for j in range(0, i + 1, b))
    if asymmetry > ASYMMETRY_TOLERANCE * largest:
        raise StatsError(f"{name} is not symmetric (largest |Σ − Σᵀ| is {asymmetry / largest:.2g} of its largest "
                         f"|entry|, limit {ASYMMETRY_TOLERANCE:g}); pass a covariance matrix")
    return (s if asymmetry == 0 else 0.5 * s + 0.5 * s.T), largest


def _covariances(s1, s2):
    """Σ₁, Σ₂ checked (shape (d, d), finite, symmetric, moderate) and made exactly symmetric."""
    for s, name in ((s1, "sigma1"), (s2, "sigma2")):
        if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
            raise StatsError(f"{name} must be a square matrix of shape (d, d), d ≥ 1, got shape {tuple(s.shape)}; "
                             f"pass the covariance of the features")
    if s1.shape != s2.shape:
        raise StatsError(f"sigma1 has shape {tuple(s1.shape)} but sigma2 has shape {tuple(s2.shape)}; compare "
                         f"statistics of the same feature dimension (same network and layer)")
    (s1, max1), (s2, max2) = _symmetric(s1, "sigma1"), _symmetric(s2, "sigma2")
    if max1 and max2 and not 1e-280 < max1 * max2 < 1e280:  # else Lᵀ Σ₂ L overflows, or underflows
        raise StatsError(f"the covariances have extreme magnitudes (largest entries {max1:.2g} and {max2:.2g}); "
                         f"rescale the features to a moderate range")
    return s1, s2


def _statistics(convert, mu1, sigma1, mu2, sigma2):
    """The four statistics as ``convert(x, name)`` makes them, checked; the covariances exactly symmetric."""
    mu1, sigma1, mu2, sigma2 = map(convert, (mu1, sigma1, mu2, sigma2), ("mu1", "sigma1", "mu2", "sigma2"))
    for mu, name in ((mu1, "mu1"), (mu2, "mu2")):
        if mu.ndim != 1 or mu.shape[0] == 0:
            raise StatsError(f"{name} must be a vector of shape (d,), d ≥ 1, got shape {tuple(mu.shape)}; "
                             f"pass the mean of the features")
        _largest_magnitude(mu, name)
    if mu1.shape != mu2.shape:
        raise StatsError(f"mu1 has d = {mu1.shape[0]} but mu2 has d = {mu2.shape[0]}; compare statistics of the "
                         f"same feature dimension (same network and layer)")
    sigma1, sigma2 = _covariances(sigma1, sigma2)
    if sigma1.shape[0] != mu1.shape[0]:
        raise StatsError(f"sigma1 and sigma2 have shape {tuple(sigma1.shape)} but mu1 and mu2 have d = "
                         f"{mu1.shape[0]}; pass a mean and covariance computed from the same features")
    return mu1, sigma1, mu2, sigma2


# --------------------------------------------------------------------------- computation


def _eigenvalues(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """The eigenvalues of A = Lᵀ Σ₂ L (module documentation); Σ₁ and Σ₂ are only read."""
    import scipy.linalg  # here, not at the top: SciPy takes ~0.3 s to import, paid only when a distance is computed
    from scipy.linalg import blas, lapack

    # The LAPACK wrappers work on Fortran-ordered copies. Σ is exactly symmetric, so Σᵀ is Σ, and
    # it is Fortran-ordered when Σ is C-ordered: then the copies are plain, not transposing, ones.
    f1, f2 = (s.T if s.flags.c_contiguous else s for s in (s1, s2))
    for f, g in ((f1, f2), (f2, f1)):
        L, info = lapack.dpotrf(f, lower=1, clean=0)
        if info == 0:
            a, _ = lapack.dsygst(g, L, itype=2, lower=1)  # A in the lower triangle
            break
    else:  # both singular. SciPy's BLAS, as in LAPACK: alternating with NumPy's own OpenBLAS
        # would make the idle threads of each library spin against the other's.
        w, v = scipy.linalg.eigh(f1, check_finite=False, driver="evd")
        L = np.asfortranarray(v[:, w > 0]) * np.sqrt(w[w > 0])
        a = blas.dgemm(1.0, L, blas.dgemm(1.0, f2, L), trans_a=1)
        below = _below_rank_tolerance(w)
        if below.any():  # Σ₁ is not positive semi-definite: its negative part, weighted by Σ₂
            K = np.asfortranarray(v[:, below]) * np.sqrt(-w[below])
            c = scipy.linalg.eigvalsh(blas.dgemm(1.0, K, blas.dgemm(1.0, f2, K), trans_a=1), check_finite=False)
            lam = scipy.linalg.eigvalsh(a, lower=True, overwrite_a=True, check_finite=False, driver="evr") \
                if a.shape[0] else np.zeros(0)
            return np.concatenate([lam, -c[c > 0]])
    if a.shape[0] == 0:
        return np.zeros(0)
    return scipy.linalg.eigvalsh(a, lower=True, overwrite_a=True, check_finite=False, driver="evr")


def _below_rank_tolerance(w):
    """Which eigenvalues ``w`` (NumPy or torch, of a d × d covariance Σ₁ that has no Cholesky
    factor) are negative beyond rounding: below −d · ε · max |w| (the numerical-rank tolerance).
    Their part of Σ₁, K Kᵀ with K = V · √(−w), is left out of L; the eigenvalues of Kᵀ Σ₂ K then
    join A's as negative λ. They are reported (``negative_eigenvalue_mass``, ``min_eigenvalue``,
    ``clamped_sqrt``) as A's negative λ are when Σ₁ or Σ₂ has a Cholesky factor, and they bound
    the same way: counting that part with its magnitude (|Σ₁| for Σ₁) would raise tr (Σ₁Σ₂)^½ by
    at most Σ √ of them (Rotfel'd and interlacing). A singular covariance's rounding noise stays
    above the tolerance and costs nothing."""
    largest = float(abs(w).max()) if w.shape[0] else 0.0
    return w < -w.shape[0] * np.finfo(np.float64).eps * largest


def _result(mu1, sigma1, mu2, sigma2, lam: np.ndarray) -> FrechetResult:
    """The distance from checked statistics (arrays or tensors) and the eigenvalues λ of A."""
    trace_sqrt, negative_mass, min_eigenvalue, clamped_sqrt = _spectrum(lam)
    mean_term = float(((mu1 - mu2) ** 2).sum())
    trace_term = float(sigma1.diagonal().sum()) + float(sigma2.diagonal().sum()) - 2.0 * trace_sqrt
    fid_raw = mean_term + trace_term
    result = FrechetResult(max(fid_raw, 0.0), fid_raw, mean_term, trace_term, trace_sqrt, negative_mass,
                           min_eigenvalue, clamped_sqrt)
    if not all(map(math.isfinite, result.as_dict().values())):
        raise StatsError("the Fréchet distance or one of its terms is not a finite number (float64 overflow); "
                         "rescale the features to a moderate range")
    return result


def _spectrum(lam: np.ndarray) -> tuple[float, float, float, float]:
    """(Σ √λ over λ > 0, Σ |λ| over λ < 0, min λ or 0.0 when there is none, Σ √|λ| over λ < 0)."""
    negative = -lam[lam < 0]
    return (math.fsum(np.sqrt(lam[lam > 0])), math.fsum(negative), (float(lam.min()) if lam.size else 0.0),
            math.fsum(np.sqrt(negative)))


# ---------------------------------------------------------------------------- public API


def trace_sqrt_product(sigma1, sigma2) -> tuple[float, float, float]:
    """``(trace_sqrt, negative_eigenvalue_mass, min_eigenvalue)`` of :class:`FrechetResult` for Σ₁, Σ₂.

    The covariances are as for :func:`frechet_distance` and not modified; StatsError as there.
    """
    s1, s2 = _covariances(_numpy(sigma1, "sigma1"), _numpy(sigma2, "sigma2"))
    return _spectrum(_eigenvalues(s1, s2))[:3]


def frechet_distance(mu1, sigma1, mu2, sigma2) -> FrechetResult:
    """Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂), in float64; ``float(result)`` is d² ≥ 0.

    μ: real arrays of shape (d,), d ≥ 1; Σ: real arrays of shape (d, d), symmetric up to a relative
    :data:`ASYMMETRY_TOLERANCE` (then symmetrised), positive semi-definite up to rounding (singular
    is fine: N ≤ d samples). Any float or integer dtype; all finite; not modified. StatsError for
    wrong shapes or dimensions, NaN or inf, complex or non-numeric dtypes, asymmetric covariances,
    extreme magnitudes, or a result that is not a finite number.
    """
    m1, s1, m2, s2 = _statistics(_numpy, mu1, sigma1, mu2, sigma2)
    return _result(m1, s1, m2, s2, _eigenvalues(s1, s2))


def mean_term_as_held(mu1, mu2) -> float:
    """‖μ₁ − μ₂‖² as numpy computes ``diff = mu1 - mu2; diff.dot(diff)`` for means held in their own
    dtypes: in numpy's promotion of the two, so float32 when both are (``np.mean`` of float32
    features gives float32 means, as guided-diffusion's evaluator, clean-fid and torch-fidelity
    take them), and then ``dot`` is the BLAS's ``sdot``, whose last bits follow the BLAS build
    and CPU. μ: real numpy arrays of one shape (d,); StatsError otherwise or for a result that is
    not finite."""
    mu1, mu2 = np.asarray(mu1), np.asarray(mu2)
    for mu, name in ((mu1, "mu1"), (mu2, "mu2")):
        if mu.dtype.kind not in "fiu" or mu.ndim != 1:
            raise StatsError(f"{name} must be a real vector of shape (d,), got {mu.dtype} of shape {mu.shape}")
    if mu1.shape != mu2.shape:
        raise StatsError(f"mu1 has d = {mu1.shape[0]} but mu2 has d = {mu2.shape[0]}; compare means of one feature")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below, in one line
        diff = mu1 - mu2
        value = float(diff.dot(diff))
    if not math.isfinite(value):
        raise StatsError("the squared distance of the two means is not a finite number; check the statistics")
    return value


def with_mean_term(result: FrechetResult, mean_term: float) -> FrechetResult:
    """``result`` with another ``mean_term`` (e.g. :func:`mean_term_as_held`'s), its trace term
    kept: ``fid_raw`` = mean_term + trace_term and ``fid`` = max(fid_raw, 0) follow."""
    raw = float(mean_term) + result.trace_term
    return dataclasses.replace(result, fid=max(raw, 0.0), fid_raw=raw, mean_term=float(mean_term))


def frechet_distance_torch(mu1, sigma1, mu2, sigma2) -> FrechetResult:
    """:func:`frechet_distance` in torch float64 on the device of the given tensors.

    The same checks, factor L (``torch.linalg.cholesky_ex``, or the eigenpairs of Σ₁) and result;
    useful on a GPU with good float64 throughput. Arguments may be tensors, arrays or lists, used
    on the device of the first tensor among sigma1, sigma2, mu1, mu2 (else the CPU). Not modified.
    """
    import torch

    device = next((x.device for x in (sigma1, sigma2, mu1, mu2) if isinstance(x, torch.Tensor)), "cpu")

    def tensor(x, name):
        if not isinstance(x, torch.Tensor):
            return torch.tensor(np.ascontiguousarray(_numpy(x, name)), device=device)
        if x.is_complex() or x.dtype == torch.bool:
            raise _dtype_error(name, x.dtype, x.is_complex())
        return x.detach().to(device=device, dtype=torch.float64)

    m1, s1, m2, s2 = _statistics(tensor, mu1, sigma1, mu2, sigma2)
    for f, g in ((s1, s2), (s2, s1)):
        L, info = torch.linalg.cholesky_ex(f)
        if int(info) == 0:
            break
    else:
        w, v = torch.linalg.eigh(s1)
        L, g = v[:, w > 0] * torch.sqrt(w[w > 0]), s2
    a = L.mT @ g @ L
    lam = torch.linalg.eigvalsh((a + a.mT) * 0.5).cpu().numpy() if a.shape[0] else np.zeros(0)
    if int(info) != 0:  # neither had a Cholesky factor: Σ₁'s negative part, as in frechet_distance
        below = _below_rank_tolerance(w)
        if bool(below.any()):
            K = v[:, below] * torch.sqrt(-w[below])
            c = K.mT @ s2 @ K
            c = torch.linalg.eigvalsh((c + c.mT) * 0.5).cpu().numpy()
            lam = np.concatenate([lam, -c[c > 0]])
    return _result(m1, s1, m2, s2, lam)
