"""Distances between two sets of features that go beyond the Fréchet distance of two Gaussians.

Pure functions on float arrays (N, d): they never ask which encoder made the features.

- :func:`cmmd`: CMMD (Jayasumana et al., CVPR 2024, google-research/cmmd ``distance.py``):
  MMD² with the Gaussian kernel k(x, y) = exp(−‖x − y‖² / (2σ²)), σ = 10, the biased
  (all pairs, diagonal included) estimator, times 1000. Meant for L2-normalised CLIP
  embeddings (``clip-vitl14-336``, output ``embedding``).
- :func:`fd_infinity`: FD∞ (Chong & Forsyth, CVPR 2020) as dgm-eval's
  ``compute_FD_infinity`` computes it: the Fréchet distance of the reference set against
  random subsets of the other set at 15 sizes, a least-squares line in 1/N, its value at
  1/N = 0.
- :func:`sw_approx`: dgm-eval's ``sw_approx``, the sliced Wasserstein-2 distance approximated
  without Monte Carlo (Nadjahi et al. 2021) from the means and the mean squared norms.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import FidkitWarning, StatsError
from .frechet import frechet_distance

CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0


def _features(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == object or np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number):
        raise StatsError(f"{name}: features must be a real numeric array, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise StatsError(f"{name}: features must have shape (N, d) with N, d ≥ 1, got {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise StatsError(f"{name}: features hold NaN or inf")
    return a


def _kernel_mean(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray, gamma: float,
                 block: int) -> float:
    """mean over all pairs of exp(−γ(‖a‖² − 2a·b + ‖b‖²)), in float64, ``block`` rows at a time."""
    total = 0.0
    for i in range(0, a.shape[0], block):
        d2 = a[i:i + block] @ b.T  # one (block, m) float64 matrix, updated in place
        d2 *= -2.0
        d2 += a_sq[i:i + block, None]
        d2 += b_sq[None, :]
        d2 *= -gamma
        total += float(np.exp(d2, out=d2).sum())
    return total / (a.shape[0] * b.shape[0])


def cmmd(x, y, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE, block_rows: int = 1024) -> float:
    """CMMD between feature sets ``x`` (n, d) and ``y`` (m, d): ``scale`` · MMD²_biased.

    MMD²_b = mean k(xᵢ, xⱼ) + mean k(yᵢ, yⱼ) − 2 mean k(xᵢ, yⱼ), all pairs including i = j,
    k(u, v) = exp(−γ‖u − v‖²), γ = 1/(2σ²), ‖u − v‖² written as ‖u‖² − 2u·v + ‖v‖² as the
    reference writes it. The reference (JAX, 64-bit off) computes in float32; fidkit in
    float64, ``block_rows`` rows of the kernel matrix at a time, in place, so 50k × 50k needs
    one ``block_rows × 50k`` float64 matrix (400 MB at the default 1024), not the whole one. Any real dtype; n and m may differ.
    """
    a, b = _features(x, "x"), _features(y, "y")
    if a.shape[1] != b.shape[1]:
        raise StatsError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    if not sigma > 0:
        raise StatsError(f"sigma must be positive, got {sigma}")
    gamma = 1.0 / (2.0 * sigma ** 2)
    a_sq = np.einsum("ij,ij->i", a, a)
    b_sq = np.einsum("ij,ij->i", b, b)
    k_xx = _kernel_mean(a, a, a_sq, a_sq, gamma, block_rows)
    k_yy = _kernel_mean(b, b, b_sq, b_sq, gamma, block_rows)
    k_xy = _kernel_mean(a, b, a_sq, b_sq, gamma, block_rows)
    return float(scale * (k_xx + k_yy - 2.0 * k_xy))


@dataclass(frozen=True)
class FDInfinity:
    """FD∞ and the points of its fit: ``value`` (the line at 1/N = 0), ``slope`` (per 1/N),
    ``sizes`` (the 15 subset sizes N), ``fd`` (the Fréchet distance at each), ``seed``."""

    value: float
    slope: float
    sizes: np.ndarray
    fd: np.ndarray
    seed: int

    def __float__(self) -> float:
        return self.value

    def as_dict(self) -> dict:
        return {"fd_infinity": self.value, "fd_infinity_slope": self.slope,
                "fd_infinity_sizes": [int(n) for n in self.sizes], "fd_infinity_points": [float(v) for v in self.fd],
                "fd_infinity_seed": int(self.seed)}


def fd_infinity_sizes(n: int, num_points: int = 15) -> np.ndarray:
    """dgm-eval's subset sizes: ``linspace(min(5000, max(n // 10, 2)), n, num_points)`` cast
    to int32 (truncation)."""
    return np.linspace(min(5000, max(n // 10, 2)), n, num_points).astype("int32")


MIN_SUBSET = 3


def fd_infinity_refusal(n: int, num_points: int = 15) -> str | None:
    """Why ``n`` generated images are too few for FD∞ (one line), or None when they suffice:
    the smallest of :func:`fd_infinity_sizes` must hold at least :data:`MIN_SUBSET` images and
    the sizes must give 3 distinct points. Asked before any image is read, and by
    :func:`fd_infinity`."""
    sizes = fd_infinity_sizes(n, num_points)
    if sizes[0] < MIN_SUBSET or len(np.unique(sizes)) < 3:
        return (f"{n} generated images are too few for FD∞: its {num_points} subset sizes "
                f"({sizes[0]}..{sizes[-1]}) need at least {MIN_SUBSET} images each and 3 distinct sizes; "
                f"FD∞ is meant for thousands of images (dgm-eval starts at min(5000, N/10))")
    return None


def _mean_cov(f: np.ndarray):
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


#: the seed of FD∞'s subsets: fidkit.scores.DEFAULT_SEED (torch-fidelity's 2020), which compare
#: and the CLI pass to every seeded metric (this stage may not import its sibling)
DEFAULT_SEED = 2020


def fd_infinity(reference, features, num_points: int = 15, seed: int = DEFAULT_SEED) -> FDInfinity:
    """FD∞ of ``features`` (the generated set, N × d) against ``reference``: its features
    (M × d), or its ``(mu, sigma)`` (float64 (d,), (d, d); e.g. a statistics file's).

    As dgm-eval: the reference's mean and covariance from all its rows; for each size n of
    :func:`fd_infinity_sizes` (N), a random subset of n rows of ``features`` drawn without
    replacement, its mean and covariance (1/(n−1)), the Fréchet distance
    (:func:`fidkit.frechet.frechet_distance`); then an ordinary least-squares line through
    (1/n, FD_n) and its intercept. dgm-eval draws from an unseeded generator; fidkit from
    ``numpy.random.default_rng(seed)`` (``rng.choice(features, n, replace=False)`` per
    size, in order), so a run is repeatable.

    Refuses (StatsError, one line) when the smallest subset would have fewer than 3 rows or
    the sizes give fewer than 3 distinct points to fit; warns when the smallest subset has
    no more rows than the dimension (singular covariances: FD_n is then not linear in 1/n
    and FD∞ means little).
    """
    gen = _features(features, "features")
    if isinstance(reference, tuple) and len(reference) == 2:  # (mu, sigma), e.g. from a statistics file
        mu1, sigma1 = (np.asarray(v, dtype=np.float64) for v in reference)
        dim = mu1.shape[0] if mu1.ndim == 1 else -1
    else:
        ref = _features(reference, "reference")
        if ref.shape[0] < 2:
            raise StatsError(f"{ref.shape[0]} reference row(s): a covariance needs at least 2")
        mu1, sigma1 = _mean_cov(ref)
        dim = ref.shape[1]
    if dim != gen.shape[1]:
        raise StatsError(f"feature dimensions differ: {dim} and {gen.shape[1]}")
    n = gen.shape[0]
    sizes = fd_infinity_sizes(n, num_points)
    problem = fd_infinity_refusal(n, num_points)
    if problem:
        raise StatsError(problem)
    if sizes[0] <= gen.shape[1]:
        warnings.warn(f"FD∞: the smallest subset ({sizes[0]} images) is not larger than the {gen.shape[1]} feature "
                      f"dimensions; its covariance is singular and the fit in 1/N is unreliable", FidkitWarning,
                      stacklevel=2)
    rng = np.random.default_rng(seed)
    fds = np.empty(len(sizes))
    for i, size in enumerate(sizes):
        sub = rng.choice(gen, int(size), replace=False)
        mu2, sigma2 = _mean_cov(sub)
        fds[i] = float(frechet_distance(mu1, sigma1, mu2, sigma2))
    x = 1.0 / sizes.astype(np.float64)
    design = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, fds, rcond=None)
    return FDInfinity(float(intercept), float(slope), sizes, fds, seed)


def sw_approx(features_a, features_b) -> float:
    """dgm-eval's ``sw_approx(X, Y)`` of features (N, d) and (M, d), in its arithmetic: float64
    numpy on the features (dgm-eval stores every encoder's output in a float64 array), with

        sqrt(‖μ_X − μ_Y‖² / d + (sqrt(mean ‖x − μ_X‖² / d) − sqrt(mean ‖y − μ_Y‖² / d))²)

    (the means of squared norms over rows, 1/N). Non-negative; 0 for identical sets."""
    x, y = _features(features_a, "features_a"), _features(features_b, "features_b")
    if x.shape[1] != y.shape[1]:
        raise StatsError(f"feature dimensions differ: {x.shape[1]} and {y.shape[1]}")
    d = x.shape[1]
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    mean_term = np.linalg.norm(mean_x - mean_y) ** 2 / d
    m2_x = (np.linalg.norm(x - mean_x, axis=1) ** 2).mean() / d
    m2_y = (np.linalg.norm(y - mean_y, axis=1) ** 2).mean() / d
    return float((mean_term + (m2_x ** (1 / 2) - m2_y ** (1 / 2)) ** 2) ** (1 / 2))
