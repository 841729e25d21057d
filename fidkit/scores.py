"""Inception Score, KID, precision/recall and density/coverage from features or logits.

These functions take arrays already extracted (see :func:`fidkit.api.extract`) and
reproduce the arithmetic of the reference implementations:

- :func:`inception_score` and :func:`kid` follow torch-fidelity 0.4.0 (``metric_isc.py``,
  ``metric_kid.py``): the same seeded ``numpy.random.RandomState`` draws, so with the same
  seed they shuffle the same way and pick the same subsets.
- :func:`precision_recall` follows torch-fidelity's ``metric_prc.py`` for precision and
  recall (Kynkäänniemi et al. 2019: float32 ``torch.cdist`` distances, the k-th nearest
  neighbour counting the point itself, inside a ball when ``distance <= radius``) and
  Naeem et al. 2020 (``prdc``) for density and coverage (same radii, ``distance < radius``).
  It works in blocks, so no N × M distance matrix is ever held: memory is
  O(block × chunk) beside the features themselves.
- :func:`adm_inception_score` and :func:`adm_precision_recall` follow OpenAI's guided-diffusion
  evaluator (``evaluations/evaluator.py``): IS over consecutive chunks of 5000, mean only;
  precision/recall with squared distances, radii within each set with the point itself not
  counted, ``<=``, every point, blocked likewise (see the README on its float16 step).
- :func:`authpct` follows dgm-eval's ``compute_authpct`` (Alaa et al. 2022's authenticity as
  dgm-eval takes it from ``fls``): float32 ``torch.cdist`` distances, blocked.
- :func:`stylegan_inception_score` follows StyleGAN2-ADA's and StyleGAN3's ``is50k``: 10
  consecutive splits, mean and population std, in ADM's float32 arithmetic.
- :func:`dgm_eval_inception_score` follows dgm-eval's ``is``: torch-fidelity's shuffle, equal
  parts of N // splits rows, scipy's ``entropy`` on float32 softmax probabilities.
- :func:`vendi_score` is the Vendi score (Friedman & Dieng 2023) of one set as dgm-eval's
  ``compute_vendi_score`` and the ``vendi-score`` package compute it (cosine similarity,
  order q = 1), from the d × d matrix instead of their N × N one.
- :func:`dgm_eval_kd` and :func:`dgm_eval_prdc` follow dgm-eval's ``kd`` and ``prdc``: float64
  features, scikit-learn's kernel and distance arithmetic, their subsets drawn from a generator
  in the state dgm-eval's global one is in (:func:`fidkit.sources.dgm_eval_generator`).
- :func:`dgm_eval_fls` follows dgm-eval's ``fls`` and ``fls_overfit`` (``metrics/fls.py``, from
  the FLS repository): its float32 torch operations in their order, on the four sets that
  :func:`dgm_eval_fls_sets` draws as its ``compute_scores`` does.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from . import _args
from .errors import StatsError

DEFAULT_SEED = 2020  # torch-fidelity's default rng_seed


class MeanStd(NamedTuple):
    """A score averaged over splits or subsets: ``mean`` and ``std`` (ddof 0)."""

    mean: float
    std: float


def _as_2d(x, name: str, dtype) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise StatsError(f"{name} must be a 2-D array (N, D), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise StatsError(f"{name} must hold floating-point values, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise StatsError(f"{name} holds NaN or infinite values")
    return np.ascontiguousarray(x, dtype=dtype)


#: the Inception Score's splits (torch-fidelity's and TTUR's 10)
IS_SPLITS = 10


def _split_bounds(n: int, splits: int) -> list:
    """The ``splits`` consecutive parts ``[i·n // splits, (i+1)·n // splits)`` of n rows, each
    non-empty: refused in one line when ``splits`` is not an integer of at least 1 or n < ``splits``."""
    _args.count(splits, "splits", 1, StatsError)
    if n < splits:
        raise StatsError(f"the Inception Score needs at least as many images as splits ({splits}), got {n}")
    return [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]


def check_is_args(splits=IS_SPLITS, seed=DEFAULT_SEED) -> None:
    """Checks the arguments of :func:`inception_score` without logits (before a network pass).

    ``splits``: an integer of at least 1 (not a bool, not a float); ``seed``: None (no shuffle)
    or a numpy seed, an integer from 0 to 2**32 − 1. A bad value raises :class:`StatsError` in
    one line; returns None.
    """
    _args.count(splits, "splits", 1, StatsError)
    if seed is not None:
        _args.seed(seed, "seed", StatsError)


def inception_score(logits, splits: int = IS_SPLITS, seed: int | None = DEFAULT_SEED) -> MeanStd:
    """Inception Score of ``logits`` as torch-fidelity 0.4.0 computes it.

    ``logits``: (N, C) float array or tensor (C = 1008 for the FID Inception network: pool3
    features times the classifier weights, *without* the classifier's bias). Computed in
    float64: rows shuffled by ``RandomState(seed).permutation(N)`` (``seed=None``: no
    shuffle), cut into ``splits`` consecutive chunks ``[i·N//splits, (i+1)·N//splits)``; per
    chunk exp(mean KL(p(y|x) ‖ p(y))) with p(y) the chunk's mean softmax.

    Returns :class:`MeanStd` (mean and ddof-0 std over the splits). The score lies in
    [1, C]; N must be at least ``splits``. Arguments are checked by :func:`check_is_args`; a
    class probability that underflows to 0 in a whole split (logits far too large) makes
    torch-fidelity's score NaN, and is a :class:`StatsError` here.
    """
    check_is_args(splits, seed)
    x = _as_2d(logits, "logits", np.float64)
    n = x.shape[0]
    bounds = _split_bounds(n, splits)
    if seed is not None:
        x = x[np.random.RandomState(seed).permutation(n)]
    t = torch.from_numpy(x)
    p = t.softmax(dim=1)
    log_p = t.log_softmax(dim=1)
    scores = []
    for lo, hi in bounds:
        p_c, log_p_c = p[lo:hi], log_p[lo:hi]
        q = p_c.mean(dim=0, keepdim=True)
        kl = (p_c * (log_p_c - q.log())).sum(dim=1).mean().exp().item()
        scores.append(kl)
    if not all(math.isfinite(v) for v in scores):
        raise StatsError("the Inception Score is not finite: a class probability underflowed to 0 in float64 across a "
                         "whole split (torch-fidelity would give nan); check the logits (far too large, or scaled?)")
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))


def _mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD² from the three kernel matrices (torch-fidelity's ``mmd2``)."""
    m = k_xx.shape[0]
    kt_xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
    kt_yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
    k_xy_sum = k_xy.sum(axis=0).sum()
    return (kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy_sum / (m * m)


def check_kid_args(subsets=100, subset_size=1000, degree=3, gamma=None, coef0=1, seed=DEFAULT_SEED) -> None:
    """Checks the arguments of :func:`kid` without features (before a network pass).

    ``subsets``: an integer of at least 1; ``subset_size``: an integer of at least 2 (the
    unbiased estimate needs 2 rows per subset); ``degree``: the polynomial kernel's degree, an
    integer of at least 1 (torch-fidelity's ``kid_kernel_poly_degree``, 3); ``gamma``: None
    (1/D) or a finite positive number; ``coef0``: a finite number; ``seed``: a numpy seed, an
    integer from 0 to 2**32 − 1. No bool is taken as a number, no float as a count. A bad
    value raises :class:`StatsError` in one line; returns None.
    """
    _args.count(subsets, "subsets", 1, StatsError, " (KID's number of subsets)")
    _args.count(subset_size, "subset_size", 2, StatsError, " (KID's rows per subset)")
    _args.count(degree, "degree", 1, StatsError, " (the polynomial kernel's degree, 3 by default)")
    if gamma is not None:
        try:
            _args.real(gamma, "gamma", StatsError, positive=True)
        except StatsError:
            raise StatsError(f"gamma (the polynomial kernel's scale) must be None (1/D) or a finite positive number, "
                             f"got {gamma!r}") from None
    _args.real(coef0, "coef0 (the polynomial kernel's constant term)", StatsError)
    _args.seed(seed, "seed", StatsError)


def kid(features_a, features_b, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1, seed: int = DEFAULT_SEED, dtype=np.float32,
        rng: np.random.RandomState | None = None) -> MeanStd:
    """Kernel Inception Distance (unbiased MMD², polynomial kernel) as torch-fidelity 0.4.0.

    ``features_a``, ``features_b``: (N, D) and (M, D) float arrays or tensors (pool3
    features, D = 2048), computed in float32 as torch-fidelity does. Kernel
    k(x, y) = (γ·xᵀy + coef0)^degree with γ = 1/D by default. For each of ``subsets``
    rounds, ``subset_size`` rows of a then of b are drawn without replacement from
    ``numpy.random.RandomState(seed)`` (the same draws as torch-fidelity for the same seed).

    A ``subset_size`` larger than N or M is not an error: min(subset_size, N, M) is used
    (torch-fidelity refuses instead). Returns :class:`MeanStd` over the subsets; KID is
    about 0 for the same distribution and can be slightly negative (unbiased estimate).
    ``dtype`` (float32) is the arithmetic's; ``rng``, when given, is drawn from instead of a
    fresh ``RandomState(seed)`` (and advanced), as :func:`dgm_eval_kd` replays a generator.
    Arguments are checked by :func:`check_kid_args`; a kernel value that overflows ``dtype``
    (features or gamma far too large) would make the score NaN and is a :class:`StatsError`.
    """
    check_kid_args(subsets, subset_size, degree, gamma, coef0, seed)
    a = _as_2d(features_a, "features_a", dtype)
    b = _as_2d(features_b, "features_b", dtype)
    if a.shape[1] != b.shape[1]:
        raise StatsError(f"features have different dimensions ({a.shape[1]} and {b.shape[1]})")
    n_a, n_b = len(a), len(b)
    m = min(subset_size, n_a, n_b)
    if m < 2:
        raise StatsError(f"KID needs at least 2 feature vectors in each set, got {n_a} and {n_b}")
    g = 1.0 / a.shape[1] if gamma is None else gamma

    def kernel(x, y):
        return (np.matmul(x, y.T) * g + coef0) ** degree

    rng = np.random.RandomState(seed) if rng is None else rng
    mmds = np.zeros(subsets)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, in one line
        for i in range(subsets):
            x = a[rng.choice(n_a, m, replace=False)]
            y = b[rng.choice(n_b, m, replace=False)]
            mmds[i] = _mmd2_unbiased(kernel(x, x), kernel(x, y), kernel(y, y))
    if not np.isfinite(mmds).all():
        raise StatsError(f"KID is not finite: the polynomial kernel (gamma * x.y + coef0) ** degree overflowed "
                         f"{np.dtype(dtype).name} (features too large for the kernel, or gamma, coef0 or degree too "
                         f"large; pool3 features are of order 1); scale the features down or lower gamma")
    return MeanStd(float(np.mean(mmds)), float(np.std(mmds)))


def _chunks(n: int, size: int, start: int = 0):
    """(lo, hi) slices of ``size`` covering start..n."""
    for lo in range(start, n, size):
        yield lo, min(lo + size, n)


def _column_blocks(n: int, block: int, least: int = 64) -> list:
    """``[lo, hi)`` bounds of ``block`` (at least ``least``) columns at a time over ``n``, a last
    part narrower than ``least`` joined to the one before: ``torch.cdist``'s matrix-product
    path gives a block of 1..11 columns other last bits than the same columns of a wide product (measured with this
    torch and MKL, benchmarks/cdist_block_bits.py; 12 and more were equal), so no block is that
    narrow unless the whole set is."""
    block = max(block, least)
    bounds = [[lo, min(lo + block, n)] for lo in range(0, n, block)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < least:
        last = bounds.pop()
        bounds[-1][1] = last[1]
    return [tuple(b) for b in bounds]


def _row_blocks(n: int, block: int, part: int) -> list:
    """Row bounds over ``n``: torch-fidelity's parts of ``part`` rows (its ``prc_batch_size``),
    each cut into blocks of about ``block`` rows (:func:`_column_blocks`: none narrower than 64
    unless its part is), so that a block of 1..11 rows, whose distances carry other last bits,
    occurs exactly where torch-fidelity has one."""
    return [(p0 + lo, p0 + hi) for p0 in range(0, n, part) for lo, hi in _column_blocks(min(part, n - p0), block)]


def _cdist_may_overflow(*sets: torch.Tensor) -> bool:
    """Whether a ``torch.cdist`` distance between rows of ``sets`` might not be finite in their
    dtype. Each of its paths (‖u‖² + ‖v‖² − 2u·v, or the sum of squared differences) stays
    within (‖u‖ + ‖v‖)² ≤ (2·max‖·‖)² at every step, so below the dtype's largest value, with
    1% to spare for rounding, no distance can overflow: one O(N·D) pass over the rows' norms,
    which spares the distances a look. Features of order 1 (pool3's) are far below."""
    if not all(torch.is_tensor(x) and x.is_floating_point() and x.dim() == 2 for x in sets):
        return False  # not distances fidkit makes (cdist refuses them as before)
    top = max((float(torch.linalg.vector_norm(x, dim=1).max()) for x in sets if x.shape[0]), default=0.0)
    limit = float(torch.finfo(sets[0].dtype).max)
    return not (math.isfinite(top) and (2 * top) ** 2 * 1.01 < limit)


def _refuse_overflow(d: torch.Tensor, who: str) -> None:
    """A :class:`StatsError` when a block ``d`` of distances holds inf or NaN (asked only when
    :func:`_cdist_may_overflow` says it might)."""
    if not bool(torch.isfinite(d).all()):
        raise StatsError(f"{who}: a {str(d.dtype).replace('torch.', '')} distance between feature vectors is not "
                         f"finite (features too large for {str(d.dtype).replace('torch.', '')} distances; pool3 "
                         f"features are of order 1); scale the features down")


def knn_radii(features: torch.Tensor, k: int = 3, block: int = 1000, chunk: int = 10000) -> torch.Tensor:
    """Distance of each row of ``features`` (N, D) to its k-th nearest neighbour, itself counted.

    That is the (k+1)-th smallest of its distances to all rows (the first being itself,
    about 0), as ``kthvalue(k + 1)`` in torch-fidelity and ``prdc``. Returns (N,) float32.
    Memory: O(block × chunk). ``k``, ``block``, ``chunk``: integers of at least 1; a distance
    that overflows (features far too large) is a :class:`StatsError`.
    """
    _args.count(k, "k", 1, StatsError)
    _args.count(block, "block", 1, StatsError)
    _args.count(chunk, "chunk", 1, StatsError)
    return _knn_radii(features, k, block, chunk, _cdist_may_overflow(features))


def _knn_radii(features: torch.Tensor, k: int, block: int, chunk: int, check: bool,
               who: str = "the k-nearest-neighbour radii") -> torch.Tensor:
    """:func:`knn_radii` with its arguments checked; ``check``: look at every block of
    distances for one that is not finite (:func:`_refuse_overflow`)."""
    n = features.shape[0]
    out = torch.empty(n, dtype=features.dtype)
    for r0, r1 in _row_blocks(n, block, chunk):
        rows = features[r0:r1]
        best = None
        for c0, c1 in _chunks(n, chunk):
            d = torch.cdist(rows, features[c0:c1])
            if check:
                _refuse_overflow(d, who)
            cand = d if best is None else torch.cat([best, d], dim=1)
            best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
        out[r0:r1] = best[:, k]
    return out


def _knn_sets(a, name_a: str, b, name_b: str, k: int, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two feature sets as float32 tensors, checked for a k-nearest-neighbour metric: same
    dimension, k ≥ 1, more than k vectors in each."""
    ta = torch.from_numpy(_as_2d(a, name_a, np.float32))
    tb = torch.from_numpy(_as_2d(b, name_b, np.float32))
    if ta.shape[1] != tb.shape[1]:
        raise StatsError(f"features have different dimensions ({ta.shape[1]} and {tb.shape[1]})")
    _args.count(k, "k", 1, StatsError, " (the nearest neighbour that sets the radii)")
    if min(ta.shape[0], tb.shape[0]) <= k:
        raise StatsError(f"{metric} with k={k} needs more than {k} feature vectors in each set, "
                         f"got {ta.shape[0]} and {tb.shape[0]}")
    return ta, tb


def check_pr_args(k=3, block=1000) -> None:
    """Checks the arguments of :func:`precision_recall` without features (before a network
    pass): ``k`` (the nearest neighbour that sets the radii, torch-fidelity's 3) and ``block``
    (fake rows per block of distances), each an integer of at least 1, not a bool or a float.
    A bad value raises :class:`StatsError` in one line; returns None.
    """
    _args.count(k, "k", 1, StatsError, " (the nearest neighbour that sets the radii)")
    _args.count(block, "block", 1, StatsError, " (rows per block of distances)")


def precision_recall(features_real, features_fake, k: int = 3, block: int = 1000,
                     chunk: int = 10000) -> dict:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020).

    ``features_real``: (N, D), ``features_fake``: (M, D) float arrays or tensors (pool3
    features), used as float32. Radii: distance of each point to its k-th nearest neighbour
    within its own set (itself counted as the first, as torch-fidelity and ``prdc`` do).

    - precision: share of fake points inside at least one real ball (distance ≤ radius);
    - recall: share of real points inside at least one fake ball (distance ≤ radius);
    - density: (1/(k·M)) · number of (real i, fake j) pairs with d(i, j) < radius_i;
    - coverage: share of real points whose nearest fake point is closer than its radius.

    Precision and recall follow torch-fidelity 0.4.0 (``<=``), density and coverage the
    authors' ``prdc`` (``<``). Precision, recall and coverage lie in [0, 1]; density in
    [0, N/k] (about 1 when the sets match). Distances are computed ``block`` fake rows ×
    ``chunk`` real columns at a time (``torch.cdist``, in torch-fidelity's orientation and
    within its parts of ``chunk`` rows, its ``prc_batch_size``, so that every distance has
    its bits), so memory beyond the features is O(block × chunk), never N × M. Returns a
    dict of four Python floats. Arguments are checked by :func:`check_pr_args` (``chunk``: an
    integer of at least 1); a float32 distance that overflows (features far too large) would
    count every point in every ball, and is a :class:`StatsError`.
    """
    check_pr_args(k, block)
    _args.count(chunk, "chunk", 1, StatsError, " (columns per block of distances)")
    real, fake = _knn_sets(features_real, "features_real", features_fake, "features_fake", k, "precision/recall")
    n, m = real.shape[0], fake.shape[0]
    check = _cdist_may_overflow(real, fake)
    r_real = _knn_radii(real, k, block, chunk, check, "precision/recall")
    r_fake = _knn_radii(fake, k, block, chunk, check, "precision/recall")
    recall_hit = torch.zeros(n, dtype=torch.bool)
    nearest_fake = torch.full((n,), float("inf"), dtype=torch.float32)
    precision_hit = torch.zeros(m, dtype=torch.bool)
    density_count = torch.zeros(m, dtype=torch.int64)
    # fake rows × real columns, torch-fidelity's dist_2_1 (its recall reads the transpose): the
    # other orientation differs in the last bits of ~5% of the distances (cdist_block_bits.py)
    for r0, r1 in _row_blocks(m, block, chunk):
        rows, rad = fake[r0:r1], r_fake[r0:r1, None]
        for c0, c1 in _chunks(n, chunk):
            d = torch.cdist(rows, real[c0:c1])
            if check:
                _refuse_overflow(d, "precision/recall")
            precision_hit[r0:r1] |= (d <= r_real[None, c0:c1]).any(dim=1)
            recall_hit[c0:c1] |= (d <= rad).any(dim=0)
            nearest_fake[c0:c1] = torch.minimum(nearest_fake[c0:c1], d.min(dim=0).values)
            density_count[r0:r1] += (d < r_real[None, c0:c1]).sum(dim=1)
    return {
        "precision": float(precision_hit.double().mean().item()),
        "recall": float(recall_hit.double().mean().item()),
        "density": float(density_count.sum().item() / (k * m)),
        "coverage": float((nearest_fake < r_real).double().mean().item()),
    }


class Interval(NamedTuple):
    """A bootstrap confidence interval: percentile bounds, the spread, and the resample count."""

    low: float
    high: float
    std: float
    resamples: int


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


def fid_bootstrap(features_a, features_b, resamples: int = 100, seed: int = DEFAULT_SEED,
                  level: float = 0.95, reference=None) -> Interval:
    """Percentile bootstrap interval of the FID: both feature sets resampled with replacement.

    features_a, features_b: float (N, d) arrays. When ``features_a`` is None, ``reference``
    (``(mu, sigma)`` of a statistics file, which keeps no per-image features) stays fixed and
    only ``features_b`` is resampled. Each resample gets its own mean and unbiased covariance
    in float64 and the Fréchet distance of :mod:`fidkit.frechet`. Cost: ``resamples``
    distances (about 0.6 s each at d = 2048 on two cores).
    """
    from .frechet import frechet_distance

    if not _args.is_int(resamples) or resamples < 2:
        raise StatsError(f"a bootstrap needs at least 2 resamples (an integer), got {_args.shown(resamples)}")
    _args.count(seed, "seed", 0, StatsError, " (numpy.random.default_rng's)")
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float, np.integer, np.floating)) \
            or not 0 < level < 1:
        raise StatsError(f"confidence level must be a number in (0, 1), got {_args.shown(level)}")
    b = _as_2d(features_b, "features_b", np.float64)
    a = None if features_a is None else _as_2d(features_a, "features_a", np.float64)
    if a is None and reference is None:
        raise StatsError("give features_a, or the reference (mu, sigma) to keep fixed")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        mu1, s1 = reference if a is None else _moments(a[rng.integers(0, len(a), len(a))])
        mu2, s2 = _moments(b[rng.integers(0, len(b), len(b))])
        values.append(frechet_distance(mu1, s1, mu2, s2).fid)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), float(np.std(values, ddof=1)), resamples)


# ----------------------------------------------------------- OpenAI's guided-diffusion evaluator (ADM)

ADM_IS_CHUNK = 5000


def _split_is(logits, bounds, who: str) -> list:
    """exp(mean KL(p(y|x) ‖ p(y))) of each part ``[lo, hi)`` of ``bounds``, in ADM's and
    StyleGAN's arithmetic: the softmax in float32, then their numpy expressions on float32,
    ``part * (log(part) − log(mean(part, 0)))`` summed over classes and averaged over rows.
    A probability that underflows to 0 makes the originals' score NaN; here it is a
    :class:`StatsError` naming ``who``."""
    preds = torch.from_numpy(logits).softmax(dim=1).numpy()  # float32, as their detectors give them
    scores = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for lo, hi in bounds:
            part = preds[lo:hi]
            kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
            kl = np.mean(np.sum(kl, axis=1))
            scores.append(np.exp(kl))
    if not all(math.isfinite(float(v)) for v in scores):
        raise StatsError(f"the {who} Inception Score is not finite: a class probability underflowed to 0 in "
                         f"float32 (the original would print nan); check the logits")
    return scores


def adm_inception_score(logits, chunk: int = ADM_IS_CHUNK) -> float:
    """The Inception Score as guided-diffusion's ``evaluations/evaluator.py`` reports it.

    ``logits``: (N, 1008) pool3 features times the classifier weights without its bias.
    Consecutive chunks of ``chunk`` rows in the given order (no shuffle; a last, shorter
    chunk counts as much as a full one), per chunk exp(mean KL(p(y|x) ‖ p(y))), and the
    mean over chunks (ADM reports no spread). In ADM's arithmetic: the softmax in float32
    (ADM's is TensorFlow's; the two may differ in the last bit of a probability), then
    ADM's own numpy expressions on float32, ``part * (log(part) − log(mean(part, 0)))``
    summed over classes and averaged over rows. Float64 throughout would move the score by
    up to 4.7e-6 relative (benchmarks/adm_is_float32.py: 0.001 on a score of 252). A probability that underflows to 0 makes
    ADM's score NaN; here that is a :class:`StatsError`.
    """
    _args.count(chunk, "chunk", 1, StatsError, " (ADM's images per Inception Score chunk, 5000)")
    x = _as_2d(logits, "logits", np.float32)
    if x.shape[0] < 1:
        raise StatsError("the Inception Score needs at least one image")
    n = x.shape[0]
    return float(np.mean(_split_is(x, [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)], "ADM")))


def stylegan_inception_score(logits, splits: int = IS_SPLITS) -> MeanStd:
    """The Inception Score as StyleGAN2-ADA's and StyleGAN3's metrics compute it (``is50k``).

    ``logits``: (N, 1008) as for :func:`adm_inception_score` (their detector is called with
    ``no_output_bias=True``). ``splits`` parts of rows ``[i·N // splits, (i+1)·N // splits)``
    in the given order (no shuffle), per part exp(mean KL) in the arithmetic of
    :func:`adm_inception_score` (float32 softmax, then their numpy on float32); returns the
    mean and the population standard deviation (``np.std``, ddof 0) over the parts. With
    N = 50,000 the parts are ADM's chunks of 5000, so the mean equals ADM's score.
    """
    x = _as_2d(logits, "logits", np.float32)
    scores = _split_is(x, _split_bounds(x.shape[0], splits), "StyleGAN")
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))


#: how FID's and sFID's means may be taken: ``float32``, as guided-diffusion's evaluator,
#: clean-fid and torch-fidelity do (``np.mean`` of float32 features: a float32 sum in reading
#: order, :meth:`fidkit.stats.Accumulator.mean_float32`; the difference in the means' dtype,
#: :func:`fidkit.frechet.mean_term_as_held`), or ``float64``, fidkit's own statistics
MEANS = ("float32", "float64")
#: ``fidkit compute``'s and ``compare``'s default: fidkit's own float64 statistics
DEFAULT_MEANS = "float64"
#: ``fidkit adm``'s default: the evaluator's
ADM_DEFAULT_MEANS = "float32"


#: how :func:`adm_precision_recall` computes squared distances
ADM_DISTANCES = ("float16", "float32", "float64")
#: the default: the emulation of ADM's float16 step. Its rounding turns near misses into ties,
#: which ``<=`` counts as hits, so the emulation's precision and recall sit above the exact
#: ones on every seed measured (benchmarks/bench_adm.py fp16-membership: +0.005 to +0.007 on
#: synthetic features, +0.001 and +0.003 on Fashion-MNIST's), and so, presumably, do the
#: original's (not measured: no GPU run of it); float32 would be systematically low
ADM_DEFAULT_DISTANCES = "float16"


#: ADM's ManifoldEstimator's row and column batch sizes: its float16 step makes and checks
#: the distances 10,000 × 10,000 at a time, redoing a block with any non-finite value in float32
ADM_BLOCK = 10000
_FLOAT16_MAX = 65504.0


def _fp16_step(u, v, nu, nv) -> torch.Tensor:
    """ADM's float16 step for rows u (b, D) and v (c, D) with norms from :func:`_adm_norms`:
    operands rounded to float16, products summed in float32, then the rounded product,
    doubled, norms and sums, each rounded to float16. Float32 holding float16 values; inf
    or NaN where float16 overflows (no redo here).

    In place on one float32 block and one float16 buffer: each step is a float32 operation
    on float16 values followed by rounding to float16 (a copy through the buffer), the same
    values as rounding each intermediate tensor; (−2·dot) + ‖u‖² = ‖u‖² − 2·dot exactly."""
    h = torch.float16
    d = u.to(h).float() @ v.to(h).float().T
    buf = torch.empty(d.shape, dtype=h)
    d.copy_(buf.copy_(d)).mul_(-2)  # the product, rounded, doubled (ADM's 2·matmul: inf past 65504)
    d.copy_(buf.copy_(d)).add_(nu[:, None])
    d.copy_(buf.copy_(d)).add_(nv[None, :])
    return d.copy_(buf.copy_(d)).clamp_min_(0)


def _fp32_redo(u, v) -> torch.Tensor:
    """ADM's float32 distances, made where its float16 block is not finite."""
    u32, v32 = u.float(), v.float()
    return ((u32 * u32).sum(1)[:, None] - 2 * (u32 @ v32.T) + (v32 * v32).sum(1)[None, :]).clamp_min_(0)


def _sq_distances(u, v, nu, nv, mode: str) -> torch.Tensor:
    """Squared distances ‖u‖² − 2u·v + ‖v‖², clamped at 0, of row blocks u (b, D) and v (c, D),
    with the rows' squared norms ``nu`` (b,) and ``nv`` (c,) from :func:`_adm_norms`.

    float32: the product in float32, norms (float64) and sum in float64; float64: all in
    float64; float16: ADM's step (:func:`_fp16_step`) on this block, redone in float32 when
    any value is not finite, as ADM does for each of its blocks (so this is ADM's arithmetic
    when u and v are one of its 10,000 × 10,000 blocks; :class:`_Distances` keeps ADM's blocks
    for any other slicing). float16 returns float32 holding float16 values.
    """
    if mode in ("float64", "float32"):  # in place: (−2·u·v + ‖u‖²) + ‖v‖², the same values as ADM's order
        d = u.double() @ v.double().T if mode == "float64" else (u @ v.T).double()
        return d.mul_(-2).add_(nu[:, None]).add_(nv[None, :]).clamp_min_(0)
    d = _fp16_step(u, v, nu, nv)
    return d if torch.isfinite(d).all() else _fp32_redo(u, v)


class _Distances:
    """Squared distances between rows of ``x`` and rows of ``y`` (with their norms), served a
    slice at a time. For float16, which of ADM's 10,000 × 10,000 blocks ADM would redo in
    float32 is decided per ADM block, not per slice, so any ``block`` × ``chunk`` slicing gives
    ADM's values. Most blocks need no look: when (√max‖u‖² + √max‖v‖²)², with 1% to spare,
    stays below float16's largest value, no step of the block can overflow (Inception's pool3
    features have squared norms of a few hundred); otherwise the block's float16 distances are
    made once, a slice at a time, to see."""

    def __init__(self, x, y, nx, ny, mode: str, block: int, chunk: int):
        self.x, self.y, self.nx, self.ny, self.mode = x, y, nx, ny, mode
        self.redo = None
        if mode != "float16":
            return
        gx, gy = -(-len(x) // ADM_BLOCK), -(-len(y) // ADM_BLOCK)
        self.redo = torch.zeros(gx, gy, dtype=torch.bool)
        for i in range(gx):
            x0, x1 = i * ADM_BLOCK, min((i + 1) * ADM_BLOCK, len(x))
            mx = float(nx[x0:x1].max())
            for j in range(gy):
                y0, y1 = j * ADM_BLOCK, min((j + 1) * ADM_BLOCK, len(y))
                my = float(ny[y0:y1].max())
                if math.isfinite(mx) and math.isfinite(my) and (math.sqrt(mx) + math.sqrt(my)) ** 2 * 1.01 < _FLOAT16_MAX:
                    continue
                self.redo[i, j] = not all(
                    bool(torch.isfinite(_fp16_step(x[r0:r1], y[c0:c1], nx[r0:r1], ny[c0:c1])).all())
                    for r0, r1 in _chunks(x1, block, x0) for c0, c1 in _chunks(y1, chunk, y0))

    def __call__(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        u, v, nu, nv = self.x[r0:r1], self.y[c0:c1], self.nx[r0:r1], self.ny[c0:c1]
        if self.redo is None:
            return _sq_distances(u, v, nu, nv, self.mode)
        redo = self.redo[r0 // ADM_BLOCK:(r1 - 1) // ADM_BLOCK + 1, c0 // ADM_BLOCK:(c1 - 1) // ADM_BLOCK + 1]
        if not redo.any():
            return _fp16_step(u, v, nu, nv)
        if redo.all():
            return _fp32_redo(u, v)
        # the slice straddles ADM blocks that differ: each value from its own block's arithmetic
        rows = torch.arange(r0, r1) // ADM_BLOCK
        cols = torch.arange(c0, c1) // ADM_BLOCK
        return torch.where(self.redo[rows][:, cols], _fp32_redo(u, v), _fp16_step(u, v, nu, nv))


def _adm_norms(x: torch.Tensor, mode: str, rows: int = 4096) -> torch.Tensor:
    """Squared norms of the rows, a slice of rows at a time (a float64 copy of 50k × 2048
    features would take 800 MB): float64 for ``float32``/``float64``; for ``float16`` as ADM's
    step makes them (squares of the float16-rounded features rounded to float16, summed in
    float32, the sum rounded to float16), as float32."""
    h = torch.float16
    out = torch.empty(x.shape[0], dtype=torch.float32 if mode == "float16" else torch.float64)
    for lo in range(0, x.shape[0], rows):
        part = x[lo:lo + rows]
        if mode == "float16":
            x16 = part.to(h).float()
            out[lo:lo + rows] = (x16 * x16).to(h).float().sum(1).to(h).float()
        else:
            out[lo:lo + rows] = part.double().square().sum(1)
    return out


def adm_radii(features, k: int = 3, block: int = 2000, chunk: int = 10000,
              distances: str = ADM_DEFAULT_DISTANCES) -> torch.Tensor:
    """Squared distance of each row to its k-th nearest neighbour in the same set, itself not
    counted: the (k+1)-th smallest of its squared distances to all rows, itself included (ADM's
    ``np.partition(..., kth=range(k+1))[:, k]``). (N,) float64 (float32 values for ``float16``).
    Memory O(block × chunk). ``k``, ``block``, ``chunk``: integers of at least 1."""
    if distances not in ADM_DISTANCES:
        raise StatsError(f"distances must be one of {', '.join(ADM_DISTANCES)}, got {distances!r}")
    _args.count(k, "k", 1, StatsError)
    _args.count(block, "block", 1, StatsError)
    _args.count(chunk, "chunk", 1, StatsError)
    return _radii(features, _adm_norms(features, distances), k, block, chunk, distances)


def _radii(x, norms, k: int, block: int, chunk: int, distances: str) -> torch.Tensor:
    """:func:`adm_radii` with the rows' norms from :func:`_adm_norms` given."""
    n = x.shape[0]
    dist = _Distances(x, x, norms, norms, distances, block, chunk)
    out = torch.empty(n, dtype=torch.float64)
    for r0, r1 in _chunks(n, block):
        best = None
        for c0, c1 in _chunks(n, chunk):
            d = dist(r0, r1, c0, c1)
            # float16's values are exact in float32: the same k + 1 nearest without a float64 copy
            near = torch.topk(d, min(k + 1, d.shape[1]), dim=1, largest=False).values.double()
            cand = near if best is None else torch.cat([best, near], dim=1)
            best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
        out[r0:r1] = best[:, k]
    return out


def authpct(features_real, features_fake, block: int = 1000) -> float:
    """dgm-eval's AuthPct: the percentage (0..100) of generated samples that are "authentic".
    For each generated sample g, its nearest real point r (distance d1; the first of equal
    minima), and r's nearest other real point (distance d2): g counts when d2 < d1, i.e. it
    lies strictly farther from r than r's own nearest neighbour does.

    As ``compute_authpct``: features as float32, ``torch.cdist`` distances (real × real with
    the diagonal excluded, real × generated), minima over the real axis, ``<``, then
    ``100 * count / M`` in float32. Computed about ``block`` columns at a time (the original
    holds the N × N and N × M matrices: 20 GB of float32 for 50,000 of each); a column of
    ``cdist(real, x[lo:hi])`` is the original's column, bit for bit, for the block widths
    :func:`_column_blocks` gives. Needs 2 real and 1 generated sample at least.
    """
    _args.count(block, "block", 1, StatsError, " (columns per block of distances)")
    tr = torch.from_numpy(_as_2d(features_real, "features_real", np.float32))
    tg = torch.from_numpy(_as_2d(features_fake, "features_fake", np.float32))
    if tr.shape[1] != tg.shape[1]:
        raise StatsError(f"features have different dimensions ({tr.shape[1]} and {tg.shape[1]})")
    if tr.shape[0] < 2 or tg.shape[0] < 1:
        raise StatsError(f"AuthPct needs at least 2 real and 1 generated feature vectors, got {tr.shape[0]} and "
                         f"{tg.shape[0]}")
    n = tr.shape[0]
    with torch.no_grad():
        real_min = torch.empty(n, dtype=torch.float32)
        for lo, hi in _column_blocks(n, block):
            d = torch.cdist(tr, tr[lo:hi])
            cols = torch.arange(hi - lo)
            d[lo + cols, cols] = float("inf")  # itself, as fill_diagonal_ there
            real_min[lo:hi] = d.min(dim=0).values
        authen = torch.empty(tg.shape[0], dtype=torch.bool)
        for lo, hi in _column_blocks(tg.shape[0], block):
            gen_min = torch.cdist(tr, tg[lo:hi]).min(dim=0)
            authen[lo:hi] = real_min[gen_min.indices] < gen_min.values
        return (100 * torch.sum(authen) / len(authen)).item()


#: the nearest neighbour that sets ADM's radii
ADM_K = 3


def adm_precision_recall(features_ref, features_sample, k: int = ADM_K, block: int = 2000, chunk: int = 10000,
                         distances: str = ADM_DEFAULT_DISTANCES) -> dict:
    """Precision and recall as guided-diffusion's evaluator computes them (``ManifoldEstimator``).

    Improved precision/recall (Kynkäänniemi et al. 2019) with ADM's choices: **squared**
    Euclidean distances ‖u‖² − 2u·v + ‖v‖² clamped at 0; each point's radius is its squared
    distance to its k-th nearest neighbour (k = 3) within its own set, itself not counted;
    membership with ``<=``; all points, no subsets. precision = share of samples inside some
    reference ball, recall = share of reference points inside some sample ball.

    Differs from :func:`precision_recall` (torch-fidelity's: plain ``cdist`` distances in
    float32). ``distances``: ``float16`` (default: an emulation of ADM's GPU float16 step,
    whose rounding decides memberships of the original, nearly always towards a hit; see
    :data:`ADM_DEFAULT_DISTANCES` and the README), ``float32`` (float32 products, float64 norms
    and sums: the exact memberships to rounding) or ``float64``. Distances are computed
    ``block`` × ``chunk`` at a time: memory O(block × chunk) beside the features, never
    N_ref × N_sample. Returns ``{"adm_precision": float, "adm_recall": float}``.
    """
    if distances not in ADM_DISTANCES:
        raise StatsError(f"distances must be one of {', '.join(ADM_DISTANCES)}, got {distances!r}")
    _args.count(block, "block", 1, StatsError, " (rows per block of distances)")
    _args.count(chunk, "chunk", 1, StatsError, " (columns per block of distances)")
    ref, smp = _knn_sets(features_ref, "features_ref", features_sample, "features_sample", k,
                         "ADM precision/recall")
    n, m = ref.shape[0], smp.shape[0]
    n_ref, n_smp = _adm_norms(ref, distances), _adm_norms(smp, distances)  # once per set, for radii and both
    r_ref = _radii(ref, n_ref, k, block, chunk, distances)
    r_smp = _radii(smp, n_smp, k, block, chunk, distances)
    dist = _Distances(ref, smp, n_ref, n_smp, distances, block, chunk)
    ref_in = torch.zeros(n, dtype=torch.bool)  # recall: reference point inside some sample ball
    smp_in = torch.zeros(m, dtype=torch.bool)  # precision: sample inside some reference ball
    for r0, r1 in _chunks(n, block):
        for c0, c1 in _chunks(m, chunk):
            d = dist(r0, r1, c0, c1)
            # radii of float16 distances are float32 values (exact in d's dtype): compare there
            ref_in[r0:r1] |= (d <= r_smp[None, c0:c1].to(d.dtype)).any(dim=1)
            smp_in[c0:c1] |= (d <= r_ref[r0:r1, None].to(d.dtype)).any(dim=0)
    return {"adm_precision": smp_in.double().mean().item(), "adm_recall": ref_in.double().mean().item()}


def _entropy_q(p: np.ndarray, q) -> float:
    """The order-``q`` (Rényi) entropy of the eigenvalues ``p``, as the Vendi score's reference
    code (``entropy_q``): the positive ones for q = 1 (Shannon) and finite q, the largest for
    ``q = inf``."""
    pos = p[p > 0]
    if q == 1:
        return float(-(pos * np.log(pos)).sum())
    if q == float("inf"):
        return float(-np.log(np.max(p)))
    return float(np.log((pos ** q).sum()) / (1 - q))


def vendi_score(features, q: float = 1) -> float:
    """The Vendi score of one set of feature vectors (Friedman & Dieng, TMLR 2023): the exponential
    of the order-``q`` entropy of the eigenvalues of K/N, K the N × N cosine-similarity matrix
    (rows L2-normalised, a zero row left zero, as scikit-learn's ``normalize``; linear kernel).
    The effective number of distinct samples: 1 for N copies of one vector, N for N orthogonal
    ones, at most min(N, d).

    ``q``: at least 1, or ``float("inf")`` (the reference's ``"inf"``); for q < 1 the reference's
    value is dominated by the rounding-level eigenvalues of its N × N matrix, so it is refused.
    ``features``: (N, d) float array or tensor, used in float64 (dgm-eval keeps features in
    float64). As dgm-eval's ``compute_vendi_score(X)`` and the ``vendi-score`` package's
    ``score_X`` with their defaults (q = 1), but from the d × d matrix XᵀX/N when N > d,
    whose nonzero eigenvalues are those of XXᵀ/N (dgm-eval forms the N × N one: 20 GB of
    float64 at 50,000 images); the two agree to rounding (tests/test_scores.py). dgm-eval
    reports the mean of this score over the classes of a class-conditional set instead
    (``mean vendi per class``): :func:`dgm_eval_vendi_per_class`.
    """
    x = _as_2d(features, "features", np.float64)
    if x.shape[0] < 1:
        raise StatsError("the Vendi score needs at least one feature vector")
    if isinstance(q, (bool, np.bool_)) or not isinstance(q, (int, float, np.integer, np.floating)) or not q >= 1:
        raise StatsError(f"the Vendi score's order q must be a number of at least 1 or inf, got {q!r} (below 1 the "
                         f"rounding-level eigenvalues of the N x N matrix, which the reference sums, would count)")
    norms = np.sqrt((x * x).sum(axis=1))
    x = x / np.where(norms == 0, 1.0, norms)[:, None]
    n = x.shape[0]
    k = (x.T @ x) / n if n > x.shape[1] else (x @ x.T) / n
    from scipy.linalg import eigvalsh
    return float(np.exp(_entropy_q(eigvalsh(k), q)))


def dgm_eval_inception_score(logits, splits: int = IS_SPLITS, seed: int = DEFAULT_SEED) -> MeanStd:
    """The Inception Score as dgm-eval's ``metrics/inception_score.py`` computes it (its ``is``).

    ``logits``: (N, 1008) pool3 features times the classifier weights without its bias (dgm-eval
    drops the bias too). Its arithmetic: the softmax in float32 (its network's last step), kept
    in float64; rows shuffled by ``RandomState(seed).permutation(N)`` (2020, as torch-fidelity);
    ``splits`` parts of N // splits rows each (the last N mod splits rows are left out, unlike
    :func:`inception_score`'s ``[i·N//splits, (i+1)·N//splits)``); per row scipy's
    ``entropy(p(y|x), p(y))``, which normalises both to sum 1, with p(y) the part's mean; exp
    of the mean per part; mean and population std over the parts. With N a multiple of
    ``splits`` it differs from :func:`inception_score` only by the float32 softmax (about
    1e-7 relative).
    """
    from scipy.special import rel_entr

    _args.count(splits, "splits", 1, StatsError)
    _args.seed(seed, "seed", StatsError)
    x = _as_2d(logits, "logits", np.float32)
    n = x.shape[0]
    _split_bounds(n, splits)  # the same refusals; its parts are N // splits rows each
    preds = torch.from_numpy(x).softmax(dim=1).numpy().astype(np.float64)
    preds = preds[np.random.RandomState(seed).permutation(n), :]
    size = n // splits
    scores = []
    for k in range(splits):
        part = preds[k * size:(k + 1) * size, :]
        py = np.mean(part, axis=0)
        q = py / np.sum(py)
        p = part / np.sum(part, axis=1, keepdims=True)
        kl = np.sum(rel_entr(p, q), axis=1)
        scores.append(np.exp(np.mean(kl)))
    if not all(math.isfinite(float(v)) for v in scores):
        raise StatsError("dgm-eval's Inception Score is not finite: a class probability underflowed to 0 in float32 "
                         "where the part's mean did not; check the logits")
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))


DGM_EVAL_NEAREST_K = 5  # dgm-eval's --nearest_k
DGM_EVAL_REDUCED_N = 10000  # dgm-eval's --reduced_n: prdc's subsample
DGM_EVAL_JOBS = 8  # dgm-eval's pairwise_distances(..., n_jobs=8): the column slices of its distances


def dgm_eval_kd(features_real, features_fake, rng: np.random.RandomState) -> MeanStd:
    """dgm-eval's ``kd`` (``metrics/mmd.py``'s ``compute_mmd``): 100 subsets of min(1000, N, M)
    rows of the real then of the fake set, each drawn with ``rng.choice(·, replace=False)``,
    scikit-learn's ``polynomial_kernel`` (degree 3, γ = 1/D, coef0 1) and the unbiased MMD² in
    float64 (dgm-eval keeps its features in float64), mean and population std: its ``kd_value``
    and ``kd_variance`` (a std, despite the name). ``features_*``: (N, D), (M, D) float arrays.

    ``rng`` stands for numpy's global generator, which dgm-eval draws from: pass it in the state
    dgm-eval leaves it (:func:`fidkit.sources.dgm_eval_generator`); it is advanced by 200 draws,
    as dgm-eval's is before its ``prdc``. The same estimator as :func:`kid` (torch-fidelity's) in
    float64 instead of float32.
    """
    return kid(features_real, features_fake, dtype=np.float64, rng=rng)


def _even_slices(n: int, packs: int) -> list:
    """scikit-learn's ``gen_even_slices(n, packs)``: ``packs`` consecutive ranges, the first
    n mod packs one longer, empty ones left out, as ``(lo, hi)``."""
    out, lo = [], 0
    for i in range(packs):
        size = n // packs + (1 if i < n % packs else 0)
        if size > 0:
            out.append((lo, lo + size))
            lo += size
    return out


def _sklearn_distance_slices(x: np.ndarray, y: np.ndarray, same: bool, jobs: int = DGM_EVAL_JOBS):
    """Yields ``(lo, hi, d)``: the columns ``lo:hi`` of ``sklearn.metrics.pairwise_distances(x, y,
    n_jobs=jobs)`` (float64 rows of x, columns of y) computed as scikit-learn computes them: the
    columns cut by :func:`_even_slices`, each ``sqrt(max(-2·x·y[s]ᵀ + |x|² + |y[s]|², 0))`` with
    ``einsum`` row norms, and the diagonal 0 when ``same`` (y is x). Memory: N × M / jobs."""
    xx = np.einsum("ij,ij->i", x, x)[:, None]
    for lo, hi in _even_slices(y.shape[0], jobs):
        ys = y[lo:hi]
        d = -2 * (x @ ys.T)
        d += xx
        d += np.einsum("ij,ij->i", ys, ys)[None, :]
        np.maximum(d, 0, out=d)
        if same:
            idx = np.arange(lo, hi)
            d[idx, idx - lo] = 0
        yield lo, hi, np.sqrt(d, out=d)


def _dgm_eval_radii(x: np.ndarray, k: int) -> np.ndarray:
    """prdc's ``get_kth_value(distances, k + 1)`` of every row of x against x: the (k+1)-th
    smallest distance, the point itself (0) counted. (N,) float64."""
    best = None
    for _lo, _hi, d in _sklearn_distance_slices(x, x, True):
        cand = d if best is None else np.concatenate([best, d], axis=1)
        best = np.partition(cand, k, axis=1)[:, :k + 1] if cand.shape[1] > k + 1 else cand
    return best.max(axis=1)


def dgm_eval_prdc(features_real, features_fake, rng: np.random.RandomState, k: int = DGM_EVAL_NEAREST_K,
                  reduced_n: int = DGM_EVAL_REDUCED_N, realism: bool = False) -> dict:
    """dgm-eval's ``prdc``: precision, recall (Kynkäänniemi et al.), density and coverage (Naeem
    et al.) as its ``__main__.compute_scores`` and ``metrics/prdc.py`` compute them.

    First its subsample: ``r = min(reduced_n, N, M)`` real rows ``rng.choice(N, r,
    replace=False)`` then ``min(M, r)`` fake rows drawn the same way, in that order (``rng``
    stands for numpy's global generator: pass it in the state dgm-eval leaves it,
    :func:`fidkit.sources.dgm_eval_generator`, after :func:`dgm_eval_kd` where dgm-eval's
    ``kd`` was computed too). Then on float64 features scikit-learn's Euclidean distances
    (:func:`_sklearn_distance_slices`), radii the (k+1)-th smallest distance within each set
    (the point itself counted, as ``prdc``), and strict ``<`` everywhere (fidkit's
    :func:`precision_recall`, torch-fidelity's, takes ``<=`` for precision and recall and float32
    distances): precision, the share of fake points closer to some real point than its radius;
    recall the converse; density (1/k)·mean over fake points of the real balls holding them;
    coverage the share of real points whose nearest fake point is inside their ball.
    ``features_*``: (N, D), (M, D) float arrays, N and M at least k + 2 (its ``argpartition``).
    Memory: the r × r / 8 distances of one slice at a time, where dgm-eval forms each r × r
    matrix whole (at r = 10,000, 1024-d: 571 MiB above the inputs against its 1,627 MiB,
    ``benchmarks/bench_dgm_eval_prdc.py``). Returns a dict of four floats.

    ``realism``: dgm-eval's ``--metrics prdc,realism``. Its fake rows are then not drawn (all M of
    them, in their order, so that each realism score stays with its image; precision, recall,
    density and coverage change with them), and the dict gains ``"realism"``: (M,) float64, the
    realism score of each fake row (Kynkäänniemi et al. 2019, as dgm-eval's ``prdc.py`` has it):
    the largest radius / distance over the real rows whose radius is below the median radius.
    An exact copy of such a real row scores far above any other row: its distance, computed as
    √(|x|² + |y|² − 2x·y), rounds to about 1e-8 of the norms, or to 0, which gives ``inf``; and
    0 / 0 gives ``nan``, as in dgm-eval.
    """
    x = _as_2d(features_real, "features_real", np.float64)
    y = _as_2d(features_fake, "features_fake", np.float64)
    if x.shape[1] != y.shape[1]:
        raise StatsError(f"features have different dimensions ({x.shape[1]} and {y.shape[1]})")
    if not _args.is_int(k) or k < 1:
        raise StatsError(f"k must be a positive integer (dgm-eval's --nearest_k, 5), got {_args.shown(k)}")
    if min(x.shape[0], y.shape[0]) < k + 2:
        raise StatsError(f"dgm-eval's prdc with k={k} needs at least {k + 2} feature vectors in each set (its "
                         f"argpartition at k + 1), got {x.shape[0]} and {y.shape[0]}")
    _args.count(reduced_n, "reduced_n", k + 2, StatsError, f" (dgm-eval's --reduced_n, 10000; its prdc with k={k} "
                f"needs k + 2 rows)")
    r = min(reduced_n, x.shape[0], y.shape[0])
    x = x[rng.choice(x.shape[0], r, replace=False)]
    if not realism:  # with realism, dgm-eval keeps every fake row in its order
        y = y[rng.choice(np.arange(y.shape[0]), min(y.shape[0], r), replace=False)]
    r_real = _dgm_eval_radii(x, k)
    r_fake = _dgm_eval_radii(y, k)
    n, m = x.shape[0], y.shape[0]
    if realism:
        small = r_real < np.median(r_real)  # its mask: the balls below the median radius
        if not small.any():  # dgm-eval's max over no ball would stop with a ValueError
            raise StatsError(f"dgm-eval's realism takes the real balls whose radius is below the median radius, "
                             f"and none of the {n} is (their radii are all equal: repeated real features?)")
        realism_of = np.empty(m)
    precision_hit = np.zeros(m, dtype=bool)
    recall_hit = np.zeros(n, dtype=bool)
    density_count = np.zeros(m, dtype=np.int64)
    nearest = np.full(n, np.inf)
    for lo, hi, d in _sklearn_distance_slices(x, y, False):
        inside = d < r_real[:, None]
        precision_hit[lo:hi] = inside.any(axis=0)
        density_count[lo:hi] = inside.sum(axis=0)
        recall_hit |= (d < r_fake[None, lo:hi]).any(axis=1)
        np.minimum(nearest, d.min(axis=1), out=nearest)
        if realism:  # radius / distance, as dgm-eval divides: inf at a distance of 0, nan at 0 / 0
            with np.errstate(divide="ignore", invalid="ignore"):
                realism_of[lo:hi] = (np.expand_dims(r_real[small], axis=1) / d[small]).max(axis=0)
    out = {
        "precision": float(precision_hit.mean()),
        "recall": float(recall_hit.mean()),
        "density": float((1. / float(k)) * density_count.mean()),
        "coverage": float((nearest < r_real).mean()),
    }
    if realism:
        out["realism"] = realism_of
    return out


def dgm_eval_vendi_per_class(features, labels) -> np.ndarray:
    """dgm-eval's ``vendi`` (``metrics/vendi.py``'s ``compute_per_class_vendi_scores``): for each
    ``i`` in ``range(len(np.unique(labels)))`` the Vendi score of the rows labelled ``i``, as its
    ``compute_vendi_score`` computes it (rows L2-normalised as scikit-learn's ``normalize``: norms
    from ``einsum``, one under 10 machine epsilons taken as 1; the c × c linear kernel; ``eigvalsh`` of it over c;
    q = 1). Returns float64 (classes,); dgm-eval reports their mean as ``mean vendi per class``.

    ``features``: (N, D) float array, used in float64 as dgm-eval keeps them; ``labels``: int (N,),
    the label of each row as dgm-eval gives it (:func:`fidkit.sources.dgm_eval_labels`). Like
    dgm-eval, it takes the classes as 0 … u − 1 for the u distinct labels; one of those with no
    row (a class folder left empty, or emptied by a cut) is refused, where dgm-eval stops.
    """
    x = _as_2d(features, "features", np.float64)
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise StatsError(f"labels must give one class per feature row: {labels.shape} for {x.shape[0]} rows")
    classes = len(np.unique(labels))
    out = np.zeros(classes)
    for i in range(classes):
        rows = x[labels == i]
        if rows.shape[0] == 0:
            raise StatsError(f"class {i} of the {classes} dgm-eval counts holds no image (its labels skip a number: "
                             f"a class folder without images, or one a cut emptied); dgm-eval stops there")
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        norms[norms < 10 * np.finfo(np.float64).eps] = 1.0  # scikit-learn's _handle_zeros_in_scale
        rows = rows / norms[:, np.newaxis]
        from scipy.linalg import eigvalsh
        out[i] = np.exp(_entropy_q(eigvalsh((rows @ rows.T) / rows.shape[0]), 1))
    return out


class FLS(NamedTuple):
    """dgm-eval's Feature Likelihood Score and its overfitting score (:func:`dgm_eval_fls`)."""

    fls: float
    fls_overfit: float
    reduced_n: int


#: dgm-eval's CT (``metrics/ct.py``, from Meehan et al.'s data-copying test): features above
#: this many dimensions are projected on the train set's first principal components
DGM_EVAL_CT_COMPONENTS = 64
#: its k-means cells
DGM_EVAL_CT_CELLS = 3
#: its variants, in the order its ``compute_scores`` runs them
DGM_EVAL_CT_VARIANTS = ("ct", "ct_test", "ct_modified")


def dgm_eval_ct_modules() -> tuple:
    """scikit-learn's ``(KMeans, PCA, NearestNeighbors)``, which dgm-eval's CT calls; StatsError
    saying how to install it where it is missing (checked by ``compare`` before any pass)."""
    try:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.neighbors import NearestNeighbors
    except ImportError:
        raise StatsError("dgm-eval's ct clusters with scikit-learn's PCA and KMeans, whose draws and arithmetic "
                         "fidkit replays by calling them: install scikit-learn (pip install 'fidkit[ct]')") from None
    return KMeans, PCA, NearestNeighbors


def _dgm_eval_ct_sets(variant: str, train, test, gen) -> tuple:
    """A variant's (train, test, generated) from dgm-eval's (train, test, generated) sets:
    ``ct_test`` splits the test set in two (``np.array_split``) and takes its first half as the
    train set, ``ct_modified`` swaps the train and generated sets."""
    if variant == "ct_test":
        first, second = np.array_split(test, 2)
        return first, second, gen
    if variant == "ct_modified":
        return gen, test, train
    return train, test, gen


def dgm_eval_ct(features_train, features_test, features_gen, rng: np.random.RandomState,
                variant: str = "ct") -> float:
    """dgm-eval's ``ct``, ``ct_test`` or ``ct_modified`` (``variant``), as its ``metrics/ct.py``
    computes them: the C_T statistic of Meehan et al. (2020), the test-set-weighted mean over
    k-means cells of the Z-scored Mann-Whitney U of the generated rows' distances to their nearest
    train row against the test rows' (much below 0: generated rows closer to the train set than
    unseen real rows are, i.e. copying; much above 0: under-fitting).

    As dgm-eval: features of more than 64 dimensions go through scikit-learn's
    ``PCA(n_components=64)`` fitted on the train rows; ``KMeans(n_clusters=3, n_init=10)`` fitted on
    them labels every row; per cell ``NearestNeighbors(n_neighbors=1)`` and scipy's
    ``mannwhitneyu(..., alternative="less")``, Z-scored with a 0.5 continuity correction; cells
    holding at most 20 generated rows left out. PCA's randomized solver and k-means' seeding draw
    from ``rng``, which stands for numpy's global generator: pass it in the state dgm-eval leaves
    it (after its ``kd`` and ``prdc`` draws, and the earlier variants'); it is advanced as dgm-eval
    advances its own. Needs scikit-learn (``pip install scikit-learn``): the values depend on its
    version as dgm-eval's do. ``features_*``: (N, D) float arrays, converted to float64 as
    dgm-eval's features are; the set the PCA and k-means are fitted on needs at least 64 rows
    (3 where D ≤ 64). StatsError where dgm-eval would stop: a cell without a test or a train row."""
    KMeans, PCA, NearestNeighbors = dgm_eval_ct_modules()
    from scipy.stats import mannwhitneyu

    if variant not in DGM_EVAL_CT_VARIANTS:
        raise StatsError(f"variant must be one of {', '.join(DGM_EVAL_CT_VARIANTS)}, got {_args.shown(variant)}")
    sets = [_as_2d(f, name, np.float64) for f, name in ((features_train, "features_train"),
                                                         (features_test, "features_test"),
                                                         (features_gen, "features_gen"))]
    if len({f.shape[1] for f in sets}) != 1:
        raise StatsError(f"features have different dimensions ({', '.join(str(f.shape[1]) for f in sets)})")
    train, test, gen = _dgm_eval_ct_sets(variant, *sets)
    least = DGM_EVAL_CT_COMPONENTS if train.shape[1] > DGM_EVAL_CT_COMPONENTS else DGM_EVAL_CT_CELLS
    if train.shape[0] < least or min(test.shape[0], gen.shape[0]) < 1:
        raise StatsError(f"dgm-eval's {variant} fits its PCA and k-means to {train.shape[0]} row(s); it needs at "
                         f"least {least}, and a test and a generated row")
    if train.shape[1] > DGM_EVAL_CT_COMPONENTS:  # its preprcoess_ct
        pca = PCA(n_components=DGM_EVAL_CT_COMPONENTS, random_state=rng).fit(train)
        train, test, gen = pca.transform(train), pca.transform(test), pca.transform(gen)
    km = KMeans(n_clusters=DGM_EVAL_CT_CELLS, n_init=10, random_state=rng).fit(train)
    t_cells, p_cells, q_cells = km.predict(train), km.predict(test), km.predict(gen)
    m, n = gen.shape[0], test.shape[0]
    k = np.max(np.unique(t_cells)) + 1

    def per_cell(cells):  # its rows per cell label, as float64, in label order
        labels, cts = np.unique(cells, return_counts=True)
        out = np.zeros(k)
        out[labels.astype(int)] = cts
        return out

    kept = per_cell(q_cells) / m > 20 / m  # its tau = 20 / len(gen): cells with more than 20 generated rows
    p_of_pi = per_cell(p_cells) / n
    zu = np.zeros(len(np.unique(p_cells)))  # its Zu_cells: one per test cell label 0 … u − 1
    for i in range(len(zu)):
        p_i, q_i, t_i = test[p_cells == i], gen[q_cells == i], train[t_cells == i]
        if len(p_i) * len(t_i) == 0:
            raise StatsError(f"dgm-eval's {variant}: k-means cell {i} holds no test or no train row, where dgm-eval "
                             f"stops; more images in each set make that unlikely")
        if len(q_i) > 0:
            nearest = NearestNeighbors(n_neighbors=1).fit(t_i)
            lq, _ = nearest.kneighbors(X=q_i, n_neighbors=1)
            lp, _ = nearest.kneighbors(X=p_i, n_neighbors=1)
            u, _ = mannwhitneyu(lq, lp, alternative="less")
            mi, ni = q_i.shape[0], p_i.shape[0]
            zu[i] = ((u - ((ni * mi / 2) - 0.5)) / np.sqrt(ni * mi * (ni + mi + 1) / 12))[0]
    if len(zu) != k:  # dgm-eval's boolean index would not fit: it stops
        raise StatsError(f"dgm-eval's {variant}: k-means cell {len(zu)} holds no test row, where dgm-eval stops; "
                         f"more test images make that unlikely")
    if not kept.any():
        raise StatsError(f"dgm-eval's {variant}: no k-means cell holds more than 20 generated rows, so its C_T is "
                         f"0 / 0; it needs more generated images")
    return float(p_of_pi[kept].dot(zu[kept]) / np.sum(p_of_pi[kept]))


def dgm_eval_fls_sets(features_train, features_test, features_gen, rng: np.random.RandomState,
                      reduced_n: int = DGM_EVAL_REDUCED_N) -> tuple:
    """The four sets of dgm-eval's ``fls`` as its ``compute_scores`` draws them: r = min(``reduced_n``,
    N_train // 2, N_test, N_gen); r test rows, r generated rows, then 2r train rows, each with
    ``rng.choice(n, ·, replace=False)``; the first r train rows drawn are its train set, the other
    r its baseline. ``rng`` stands for numpy's global generator, in the state dgm-eval leaves it
    (after its ``kd`` and ``prdc`` draws where those were computed). Returns (train, baseline,
    test, gen) as float64 arrays of r rows each (dgm-eval keeps its features in float64)."""
    sets = [_as_2d(x, name, np.float64) for x, name in ((features_train, "features_train"),
                                                        (features_test, "features_test"),
                                                        (features_gen, "features_gen"))]
    train, test, gen = sets
    if not train.shape[1] == test.shape[1] == gen.shape[1]:
        raise StatsError(f"features have different dimensions (train {train.shape[1]}, test {test.shape[1]}, "
                         f"generated {gen.shape[1]})")
    _args.count(reduced_n, "reduced_n", 1, StatsError, " (dgm-eval's --reduced_n, 10000)")
    r = min(int(reduced_n), train.shape[0] // 2, test.shape[0], gen.shape[0])
    if r < 2:
        raise StatsError(f"dgm-eval's fls needs at least 4 train, 2 test and 2 generated feature vectors (it splits "
                         f"the train set in two), got {train.shape[0]}, {test.shape[0]} and {gen.shape[0]}")
    test = test[rng.choice(test.shape[0], r, replace=False)]
    gen = gen[rng.choice(gen.shape[0], r, replace=False)]
    train = train[rng.choice(train.shape[0], 2 * r, replace=False)]
    return train[:r], train[r:], test, gen


#: dgm-eval's bandwidth fit (``metrics/fls.py``'s ``optimize_sigmas``): Adam at lr 0.5 for 100
#: steps, the rate cut by 10 after step 50, log σ clamped to [−100, 20] after each step
FLS_STEPS, FLS_LR, FLS_MILESTONE, FLS_CLAMP = 100, 0.5, 50, (-100.0, 20.0)


def _fls_log_terms(dists: torch.Tensor, log_sigmas: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, M) log-likelihood terms of N data rows under each of M kernel points' Gaussians, from
    their squared distances ``dists``: the lines dgm-eval's ``nll`` and ``get_pairwise_likelihood``
    share, in their operations and order (float32)."""
    exponent_term = (-0.5 * dists) / torch.exp(log_sigmas)
    exponent_term -= (dim / 2) * log_sigmas
    exponent_term += torch.log(torch.tensor(1 / dists.shape[1], device=dists.device))
    return exponent_term


def _fls_nll(dists: torch.Tensor, log_sigmas: torch.Tensor, dim: int, detailed: bool = False):
    """dgm-eval's ``nll`` with its ``lambd`` 0, in its operations and their order (float32)."""
    inner_term = torch.logsumexp(_fls_log_terms(dists, log_sigmas, dim), dim=1)
    total_nll = torch.mean(-inner_term)
    # its regulariser, 0 · ‖exp(−log σ)‖², kept: it is what makes the loss NaN where a log σ
    # has fallen below −88 (exp overflows float32 and 0 · inf is NaN), as dgm-eval's does
    final_nll = total_nll + 0 / 2 * torch.norm(torch.exp(-log_sigmas)) ** 2
    return (final_nll, -inner_term) if detailed else final_nll


def _fls_bandwidths(x_data: torch.Tensor, x_kernel: torch.Tensor) -> torch.Tensor:
    """dgm-eval's ``optimize_sigmas(x_data, x_kernel, init_val=0)``: the log bandwidths (M,)
    of a Gaussian KDE on ``x_kernel`` that maximise the likelihood of ``x_data``."""
    with torch.inference_mode(False), torch.enable_grad():  # a fit, whatever mode the caller is in
        log_sigmas = torch.zeros(x_kernel.shape[0], device=x_kernel.device, requires_grad=True)
        optim = torch.optim.Adam([log_sigmas], lr=FLS_LR)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=[FLS_MILESTONE], gamma=0.1)
        dists = (torch.cdist(x_data, x_kernel) ** 2).detach()
        dim = x_data.shape[1]
        for _ in range(FLS_STEPS):
            loss = _fls_nll(dists, log_sigmas, dim)
            optim.zero_grad()
            loss.backward()
            optim.step()
            scheduler.step()
            with torch.no_grad():
                log_sigmas.data = log_sigmas.clamp(*FLS_CLAMP).data
    return log_sigmas.detach()


def _fls_pairwise(x_data: torch.Tensor, x_kernel: torch.Tensor, log_sigmas: torch.Tensor) -> torch.Tensor:
    """dgm-eval's ``get_pairwise_likelihood``: (N, M) log-likelihood terms of each data row under
    each kernel point's Gaussian."""
    return _fls_log_terms(torch.cdist(x_data, x_kernel) ** 2, log_sigmas, x_kernel.shape[1])


def dgm_eval_fls(train, baseline, test, gen, device="cpu") -> FLS:
    """dgm-eval's ``fls`` and ``fls_overfit`` (Jiralerspong et al. 2023, its ``metrics/fls.py``) of
    the four drawn sets (:func:`dgm_eval_fls_sets`), in its float32 torch arithmetic on ``device``
    (dgm-eval runs them on CUDA only).

    The features are standardised by the mean and std (unbiased) of all four sets together. A
    Gaussian KDE centred on the generated rows, one bandwidth per row fitted to the train rows
    (:func:`_fls_bandwidths`), gives the test rows a mean negative log-likelihood; so does one
    centred on the baseline rows (real images the fit did not see). ``fls`` = 100 ·
    exp(−2 (nll_gen − nll_baseline) / D): 100 when the generated set explains unseen real images
    as well as real images do, more when better, less when worse; copies of train rows lower it,
    as the fit shrinks their bandwidths onto the rows they copy. ``fls_overfit``: the percentage
    of generated rows whose Gaussian gives the train rows a higher total likelihood than the test
    rows, minus 50 (0: no preference for the train set; it rises with memorisation).

    ``train``, ``baseline``, ``test``, ``gen``: (r, D) float arrays, r ≥ 2 (dgm-eval draws the
    same r for all four). Memory: a few r × r float32 matrices (400 MB each at r = 10,000). StatsError
    when a score is not a finite number (a feature constant over all four sets, or a bandwidth
    that collapsed on identical rows, where dgm-eval prints NaN).
    """
    sets = [_as_2d(x, name, np.float32) for x, name in ((train, "train"), (baseline, "baseline"), (test, "test"),
                                                        (gen, "gen"))]
    if len({s.shape[1] for s in sets}) != 1:
        raise StatsError(f"features have different dimensions ({', '.join(str(s.shape[1]) for s in sets)})")
    if min(s.shape[0] for s in sets) < 2:
        raise StatsError(f"dgm-eval's fls needs at least 2 feature vectors in each set, got "
                         f"{', '.join(str(s.shape[0]) for s in sets)} (train, baseline, test, generated)")
    t_train, t_base, t_test, t_gen = (torch.tensor(s, dtype=torch.float32, device=device) for s in sets)
    everything = torch.cat((t_train, t_base, t_test, t_gen), dim=0)
    mean, std = everything.mean(dim=0), everything.std(dim=0)
    del everything
    t_train, t_base, t_test, t_gen = ((t - mean) / std for t in (t_train, t_base, t_test, t_gen))
    dim = t_train.shape[1]
    gen_sigmas = _fls_bandwidths(t_train, t_gen)
    with torch.no_grad():
        gen_nll = _fls_nll(torch.cdist(t_test, t_gen) ** 2, gen_sigmas, dim, detailed=True)[0].item()
    base_sigmas = _fls_bandwidths(t_train, t_base)
    with torch.no_grad():
        base_nll = _fls_nll(torch.cdist(t_test, t_base) ** 2, base_sigmas, dim, detailed=True)[0].item()
        size = min(t_test.shape[0], t_train.shape[0])
        ll_diff = (_fls_pairwise(t_train[:size], t_gen, gen_sigmas).logsumexp(axis=0)
                   - _fls_pairwise(t_test[:size], t_gen, gen_sigmas).logsumexp(axis=0))
        overfit = ((ll_diff > 0).sum().item() / ll_diff.shape[0]) * 100 - 50
    diff = 2 * (gen_nll - base_nll) / dim
    try:
        score = math.e ** (-diff) * 100
    except OverflowError:  # where dgm-eval stops with the same error
        raise StatsError(f"dgm-eval's fls overflows: the generated set's KDE gives the test set an NLL lower than "
                         f"the baseline's by {base_nll - gen_nll:.6g} nats ({-diff:.6g} per half dimension), a "
                         f"likelihood that only bandwidths collapsed on copies of the data reach") from None
    if not (math.isfinite(score) and math.isfinite(gen_nll) and math.isfinite(base_nll)):
        raise StatsError(f"dgm-eval's fls is not a finite number (test-set NLL {gen_nll} under the generated set's "
                         f"KDE, {base_nll} under the baseline's): a feature constant over all four sets, or a "
                         f"bandwidth collapsed on identical rows; check the features")
    return FLS(float(score), float(overfit), int(sets[0].shape[0]))
