"""fidkit's Python API: statistics of a source, and the FID between two sources.

A *source* is one of: a folder of images (searched recursively), an ``.npz`` statistics
file, a :class:`~fidkit.stats.Statistics`, a list of image file paths, or in-memory uint8
images (numpy (N, H, W, 3) or torch (N, 3, H, W), values 0..255).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from . import scores as _scores
from .errors import FidkitError, FidkitWarning, SourceError, StatsError, WeightsError
from .pipeline import (default_batch_size, default_workers, iter_array_features, iter_file_features,
                       memory_format, resolve_device)
from .frechet import FrechetResult
from .frechet import frechet_distance as _frechet_arrays
from .inception import FEATURE_DIM
from .preprocess import get_protocol
from .sources import check_uint8_images, list_images
from .stats import Accumulator, Statistics
from .weights import PTFID_URL, Weights, build_network, load_file, resolve

_NETWORKS: dict = {}
_WEIGHTS: dict = {}


def load_weights(weights=None) -> Weights:
    """Weights from ``weights`` (a path, a :class:`Weights`, or None for the default resolution).

    Loaded once per path and kept. ``.digest`` (hex sha256 of the pool3 tensors) is what
    statistics files record as ``weights_digest``; ``.has_classifier`` tells whether the
    Inception Score can be computed; ``.origin`` and ``.path`` say where they came from.
    """
    if isinstance(weights, Weights):
        return weights
    key = str(weights)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = load_file(weights) if weights is not None else resolve()
    return _WEIGHTS[key]


def network(w: Weights, device: torch.device, mode: str):
    """The network for weights ``w`` on ``device``, in the memory layout that
    :func:`fidkit.pipeline.memory_format` gives for ``mode``; built once and kept.

    On CUDA in ``fp32`` and ``tf32`` the batch norms are folded into the convolutions and
    convolution + bias + ReLU run as one cuDNN call (H100, benchmarks/results/gpu_h100_fused.json
    against gpu_h100.json: strict fp32 2,236 -> 2,554 images/s, tf32 4,892 -> 6,744; strict-fp32
    FID moved by 2.5e-7). Not under ``bf16``, where a folded weight loses the batch norm's
    scale to bfloat16 rounding (its FID deviation grew from 7.3e-3 to 1.6e-2), nor on the
    CPU, where it would change every statistics file, the committed ones included.
    """
    fmt = memory_format(device, mode)
    fold = device.type == "cuda" and mode != "bf16"
    key = (w.digest, w.has_classifier, str(device), fmt, fold)
    if key not in _NETWORKS:
        _NETWORKS.clear()  # one network at a time: ~95 MB each
        net = build_network(w, device)
        if fold:
            net.fold_batch_norm()
        _NETWORKS[key] = net.to(memory_format=fmt)
    return _NETWORKS[key]


def _is_stats_path(source) -> bool:
    return isinstance(source, (str, Path)) and str(source).lower().endswith(".npz")


def _is_stats(source) -> bool:
    """A source that is statistics already (keeps no per-image features)."""
    return isinstance(source, Statistics) or _is_stats_path(source)


def check_provenance(st: Statistics, protocol: str | None, weights_digest: str | None,
                     allow_mismatch: bool = False) -> None:
    """Refuses, in one line, statistics that record another protocol or other weights than
    ``protocol`` / ``weights_digest`` (None: not checked); ``allow_mismatch`` lets them pass."""
    if allow_mismatch:
        return
    name = st.source or "the statistics"
    if st.protocol is not None and protocol is not None and st.protocol != protocol:
        raise StatsError(f"{name} was made with protocol {st.protocol!r}, not {protocol!r}; use --protocol "
                         f"{st.protocol} (protocol={st.protocol!r}) or recompute it")
    if st.weights_digest is not None and weights_digest is not None and st.weights_digest != weights_digest:
        raise StatsError(f"{name} was made with weights {st.weights_digest[:12]}, but the weights in use are "
                         f"{weights_digest[:12]}; give the same weights with --weights, or pass --allow-mismatch "
                         f"(allow_mismatch=True)")


def finish_stats(acc: Accumulator, protocol: str, weights: Weights, precision: str, source: str) -> Statistics:
    """The statistics of ``acc`` with their provenance (protocol, weights digest, version, arithmetic)."""
    st = acc.result(protocol=protocol, weights_digest=weights.digest, fidkit_version=__version__)
    if precision != "fp32":
        st.extra["network_precision"] = precision
    st.source = source
    return st


def _require_classifier(w: Weights) -> None:
    if not w.has_classifier:
        raise WeightsError(f"these weights ({w.origin}) have no 1008-way classifier, which the Inception Score "
                           f"needs; give pytorch-fid's pt_inception-2015-12-05-6726825d.pth with --weights "
                           f"(downloaded from {PTFID_URL})")


@dataclass
class Extraction:
    """What one pass over a source gives: its statistics and, when asked, the raw outputs.

    stats: :class:`Statistics` (float64); features: float32 numpy (N, 2048) or None;
    logits: float32 numpy (N, 1008) without the classifier's bias, or None.
    """

    stats: Statistics
    features: np.ndarray | None = None
    logits: np.ndarray | None = None


def extract(source, protocol: str = "ttur", *, batch_size: int | None = None, device="auto",
            workers: int | None = None, weights=None, progress: bool | None = None, precision: str = "fp32",
            keep_features: bool = False, logits: bool = False, skip_bad: bool = False,
            label: str | None = None) -> Extraction:
    """One pass of ``source`` (folder, file list or uint8 images) through protocol and network.

    Always accumulates the statistics; ``keep_features`` also returns every pool3 feature
    vector and ``logits`` every 1008-way logit vector (weights with a classifier needed), as
    float32 arrays on the host, so that several metrics read the same features. With
    ``skip_bad``, files that cannot be decoded are left out, counted and listed (in
    ``stats.extra["skipped"]`` and a warning) instead of stopping the run. ``label`` names the
    source on the progress bar (default: the folder, or what the source is).
    """
    proto = get_protocol(protocol)
    dev = resolve_device(device)
    bs = batch_size or default_batch_size(dev)
    if bs < 1:
        raise SourceError(f"batch size must be at least 1, got {bs}")
    w = load_weights(weights)
    if logits:
        _require_classifier(w)
    net = network(w, dev, precision)
    acc = Accumulator(FEATURE_DIM, dev)
    skipped = [] if skip_bad else None
    if isinstance(source, (str, Path)) or (isinstance(source, (list, tuple)) and source
                                           and isinstance(source[0], (str, Path))):
        files = list_images(source) if isinstance(source, (str, Path)) else [Path(p) for p in source]
        nw = default_workers() if workers is None else workers
        name = str(source) if isinstance(source, (str, Path)) else f"{len(files)} files"
        batches = iter_file_features(files, proto, net, dev, bs, nw, progress, logits=logits, mode=precision,
                                     skipped=skipped, label=label or name)
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        layout = "NCHW" if torch.is_tensor(source) else "NHWC"
        check_uint8_images(source, layout)
        name = f"{layout} array"
        batches = iter_array_features(source, proto, net, dev, bs, layout, progress, logits=logits,
                                      mode=precision, label=label or name)
    else:
        raise SourceError(f"cannot read a source of type {type(source).__name__}; give a folder, an .npz, "
                          f"a list of image paths or uint8 images")
    kept_features, kept_logits = [], []
    for feats, lg in batches:
        acc.update(feats)
        if keep_features:
            kept_features.append(feats.cpu().numpy())
        if logits:
            kept_logits.append(lg.cpu().numpy())
    st = finish_stats(acc, proto.name, w, precision, name)
    if skipped:
        st.extra["skipped"] = [b.path for b in skipped]
        warnings.warn(f"{name}: skipped {len(skipped)} file(s) that could not be decoded, the first: "
                      f"{skipped[0].message}", FidkitWarning, stacklevel=2)
    return Extraction(st, np.concatenate(kept_features) if keep_features else None,
                      np.concatenate(kept_logits) if logits else None)


def features(source, protocol: str = "ttur", **kw) -> np.ndarray:
    """The pool3 features of ``source`` (folder, file list or uint8 images): float32 (N, 2048).

    For metrics that need every feature vector (KID, precision/recall) computed more than
    once against the same reference; ``kw`` as for :func:`extract`.
    """
    _refuse_stats_file(source, "features")
    return extract(source, protocol, keep_features=True, **kw).features


def compute_stats(source, protocol: str = "ttur", *, allow_mismatch: bool = False, **kw) -> Statistics:
    """Mean and covariance of the pool3 features of ``source`` (see the module docstring).

    An ``.npz`` path or a :class:`Statistics` is returned as loaded (its protocol is checked
    when it records one, unless ``allow_mismatch``). Otherwise ``kw`` are those of :func:`extract` (batch_size, device,
    workers, weights, progress, precision): returns float64 statistics with protocol,
    weights digest and image count recorded. ``precision`` is ``fp32`` (strict, default), or
    on CUDA ``tf32`` or ``bf16`` (faster, slightly different scores; recorded in the file).
    """
    if isinstance(source, Statistics):
        return source
    if _is_stats_path(source):
        st = Statistics.load(source)
        check_provenance(st, get_protocol(protocol).name, None, allow_mismatch)
        return st
    return extract(source, protocol, **kw).stats


def _check_compatible(s1: Statistics, s2: Statistics, allow_mismatch: bool) -> None:
    if s1.dim != s2.dim:
        raise StatsError(f"statistics have different feature dimensions ({s1.dim} and {s2.dim}); they come "
                         f"from different networks or layers")
    check_provenance(s2, s1.protocol, s1.weights_digest, allow_mismatch)
    for st, label in ((s1, "first"), (s2, "second")):
        if st.n is not None and st.n <= st.dim:
            warnings.warn(f"the {label} set has {st.n} images, not more than the {st.dim} feature dimensions: its "
                          f"covariance is singular and FID is biased upward; compare only scores made with equal "
                          f"image counts", FidkitWarning, stacklevel=3)


def frechet_distance(s1, s2, *, allow_mismatch: bool = False) -> FrechetResult:
    """Fréchet distance between two :class:`Statistics` (or ``(mu, sigma)`` pairs), in float64.

    Refuses statistics made with different protocols or weights unless ``allow_mismatch``.
    Returns a :class:`~fidkit.frechet.FrechetResult`; ``float(result)`` or ``result.fid``
    is the FID (≥ 0).
    """
    s1, s2 = (s if isinstance(s, Statistics) else Statistics(np.asarray(s[0], np.float64),
                                                             np.asarray(s[1], np.float64)) for s in (s1, s2))
    _check_compatible(s1, s2, allow_mismatch)
    return _frechet_arrays(s1.mu, s1.sigma, s2.mu, s2.sigma)


@dataclass(frozen=True)
class FIDResult:
    """FID of two sources with what produced it: image counts, protocol, weights, timing."""

    fid: float
    protocol: str
    n_a: int | None
    n_b: int | None
    weights_digest: str | None
    frechet: FrechetResult
    seconds: float
    device: str = "cpu"
    network_precision: str = "fp32"
    scores: dict = field(default_factory=dict)
    skipped_a: list = field(default_factory=list)
    skipped_b: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """Flat dict for JSON. ``network_precision`` is the network arithmetic (fp32, tf32, bf16);
        ``precision`` appears only with precision/recall (``--metrics pr``) and is that metric."""
        d = {"fid": self.fid, "protocol": self.protocol, "n_a": self.n_a, "n_b": self.n_b,
             "weights_digest": self.weights_digest, "device": self.device,
             "network_precision": self.network_precision, "seconds": round(self.seconds, 3)}
        d.update({k: v for k, v in self.frechet.as_dict().items() if k != "fid"})
        d.update({k: v for k, v in (("skipped_a", self.skipped_a), ("skipped_b", self.skipped_b)) if v})
        d.update(self.scores)
        return d


METRICS = ("fid", "is", "kid", "pr")
_METRIC_ALIASES = {"isc": "is", "prc": "pr", "prdc": "pr"}
_METRIC_NAMES = {"is": "the Inception Score", "kid": "KID", "pr": "precision/recall"}


def parse_metrics(metrics) -> tuple:
    """Metric names from ``"fid,kid,pr"`` or an iterable: a tuple of fid, is, kid, pr (fid first)."""
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out = ["fid"]
    for m in items:
        m = _METRIC_ALIASES.get(str(m).strip().lower(), str(m).strip().lower())
        if m not in METRICS:
            raise FidkitError(f"unknown metric {m!r}; choose from {', '.join(METRICS)} (comma-separated)")
        out.append(m)
    return tuple(dict.fromkeys(out))


def _refuse_stats_file(source, metric: str) -> None:
    if _is_stats(source):
        raise StatsError(f"{_METRIC_NAMES.get(metric, metric)} needs the features of every image, which a "
                         f"statistics file does not keep ({source}); give the image folder instead")


def _side_label(side: str, source) -> str:
    """``A real/`` on the progress bar: which side of a comparison is being read."""
    return f"{side} {source}" if isinstance(source, (str, Path)) else side


def _one_pass(source, protocol: str, keep: bool, logits: bool, kw: dict, allow_mismatch: bool) -> Extraction:
    if not (keep or logits) or _is_stats(source):
        return Extraction(compute_stats(source, protocol, allow_mismatch=allow_mismatch, **kw))
    return extract(source, protocol, keep_features=keep, logits=logits, **kw)


def compare(a, b, protocol: str = "ttur", *, allow_mismatch: bool = False, metrics=("fid",),
            seed: int = _scores.DEFAULT_SEED, bootstrap: int = 0, **kw) -> FIDResult:
    """FID between sources ``a`` and ``b`` with details; ``kw`` as for :func:`compute_stats`.

    ``metrics`` (names or ``"fid,kid,pr"``) adds scores read from the same single pass over
    each source (FID is always computed): ``kid`` (KID of a vs b), ``pr`` (precision,
    recall, density, coverage with ``a`` the real set and ``b`` the generated one) and ``is``
    (Inception Score of ``b``, the generated set; needs weights with the classifier). They
    land in ``result.scores`` with keys ``kid_mean``, ``kid_std``, ``precision``, ``recall``,
    ``density``, ``coverage``, ``isc_mean``, ``isc_std``; ``seed`` seeds KID's subsets and
    the IS shuffle (torch-fidelity's default 2020). Sources of these metrics cannot be
    statistics files (they keep no per-image features). ``bootstrap`` = B > 0 adds a 95%
    percentile interval of the FID from B resamples of the features (``fid_ci_low``,
    ``fid_ci_high``, ``fid_bootstrap_std``, ``bootstrap_resamples``); a statistics file
    among the sources stays fixed, as it keeps no features.
    """
    t0 = time.perf_counter()
    wanted = parse_metrics(metrics)
    keep = "kid" in wanted or "pr" in wanted or bootstrap > 0
    if bootstrap > 0 and _is_stats(a) and _is_stats(b):
        raise StatsError("a bootstrap resamples images, but both sources are statistics files; give at least "
                         "one image folder")
    for m in ("kid", "pr"):
        if m in wanted:
            _refuse_stats_file(a, m)
            _refuse_stats_file(b, m)
    if "is" in wanted:
        _refuse_stats_file(b, "is")
        _require_classifier(load_weights(kw.get("weights")))  # before spending time on a
    ex1 = _one_pass(a, protocol, keep, False, {"label": _side_label("A", a), **kw}, allow_mismatch)
    s1 = ex1.stats
    if s1.weights_digest and not _is_stats(b):  # refuse other weights before spending time on b
        check_provenance(s1, None, load_weights(kw.get("weights")).digest, allow_mismatch)
    ex2 = _one_pass(b, protocol, keep, "is" in wanted, {"label": _side_label("B", b), **kw}, allow_mismatch)
    s2 = ex2.stats
    r = frechet_distance(s1, s2, allow_mismatch=allow_mismatch)
    scores: dict = {}
    if "kid" in wanted:
        k = _scores.kid(ex1.features, ex2.features, seed=seed)
        scores.update(kid_mean=k.mean, kid_std=k.std)
    if "pr" in wanted:
        scores.update(_scores.precision_recall(ex1.features, ex2.features))
    if "is" in wanted:
        i = _scores.inception_score(ex2.logits, seed=seed)
        scores.update(isc_mean=i.mean, isc_std=i.std)
    if bootstrap > 0:
        fa, fb, ref = ex1.features, ex2.features, None
        if fb is None:  # b is the statistics file: resample a against it (the distance is symmetric)
            fa, fb = None, fa
            ref = (s2.mu, s2.sigma)
        elif fa is None:
            ref = (s1.mu, s1.sigma)
        ci = _scores.fid_bootstrap(fa, fb, bootstrap, seed=seed, reference=ref)
        scores.update(fid_ci_low=ci.low, fid_ci_high=ci.high, fid_bootstrap_std=ci.std,
                      bootstrap_resamples=ci.resamples)
    digest = s1.weights_digest or s2.weights_digest
    return FIDResult(r.fid, get_protocol(protocol).name, s1.n, s2.n, digest, r, time.perf_counter() - t0,
                     str(resolve_device(kw.get("device", "auto"))), kw.get("precision", "fp32"), scores,
                     s1.extra.get("skipped", []), s2.extra.get("skipped", []))


def fid(a, b, protocol: str = "ttur", **kw) -> float:
    """The FID between sources ``a`` and ``b`` (folders, .npz files, arrays) as a float."""
    return compare(a, b, protocol, **kw).fid


def _is_values(x) -> bool:
    """Features or logits given directly: a 2-D floating-point numpy array or tensor."""
    if torch.is_tensor(x):
        return x.ndim == 2 and x.is_floating_point()
    return isinstance(x, np.ndarray) and x.ndim == 2 and np.issubdtype(x.dtype, np.floating)


def _features(source, protocol: str, metric: str, kw: dict) -> np.ndarray:
    if _is_values(source):
        return source
    _refuse_stats_file(source, metric)
    return extract(source, protocol, keep_features=True, **kw).features


def inception_score(source, protocol: str = "ttur", *, splits: int = 10, seed: int | None = _scores.DEFAULT_SEED,
                    **kw) -> _scores.MeanStd:
    """Inception Score (mean, std) of a source, or of logits given as an (N, 1008) float array.

    A source (folder, image files, uint8 images) goes through :func:`extract` with ``kw``
    and needs weights with the 1008-way classifier (pytorch-fid's ``.pth``); see
    :func:`fidkit.scores.inception_score` for the arithmetic (torch-fidelity 0.4.0's).
    """
    if _is_values(source):
        logits = source
    else:
        _refuse_stats_file(source, "is")
        logits = extract(source, protocol, logits=True, **kw).logits
    return _scores.inception_score(logits, splits, seed)


def kid(a, b, protocol: str = "ttur", *, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1, seed: int = _scores.DEFAULT_SEED, **kw) -> _scores.MeanStd:
    """KID (mean, std) of two sources or two (N, 2048) float feature arrays.

    Sources are extracted once each with ``kw`` (as :func:`extract`); see
    :func:`fidkit.scores.kid` (a subset size above the set sizes is reduced to them).
    """
    return _scores.kid(_features(a, protocol, "kid", kw), _features(b, protocol, "kid", kw), subsets, subset_size,
                       degree, gamma, coef0, seed)


def precision_recall(real, fake, protocol: str = "ttur", *, k: int = 3, block: int = 1000, **kw) -> dict:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (sources or features).

    Sources are extracted once each with ``kw`` (as :func:`extract`); see
    :func:`fidkit.scores.precision_recall` (blocked: memory O(block × 10,000) beside the
    features).
    """
    return _scores.precision_recall(_features(real, protocol, "pr", kw), _features(fake, protocol, "pr", kw), k,
                                    block)
