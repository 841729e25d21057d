"""fidkit's Python API: statistics of a source, and the FID between two sources.

A *source* is one of: a folder of images (searched recursively), an ``.npz`` statistics
file, a :class:`~fidkit.stats.Statistics`, a list of image file paths, or in-memory uint8
images (numpy (N, H, W, 3) or torch (N, 3, H, W), values 0..255).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import FidkitWarning, SourceError, StatsError, WeightsError
from .features import (default_batch_size, default_workers, iter_array_features, iter_file_features,
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
    """Weights from ``weights`` (a path, a :class:`Weights`, or None for the default resolution)."""
    if isinstance(weights, Weights):
        return weights
    key = str(weights)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = load_file(weights) if weights is not None else resolve()
    return _WEIGHTS[key]


def _network(w: Weights, device: torch.device, mode: str):
    fmt = memory_format(device, mode)
    key = (w.digest, w.has_classifier, str(device), fmt)
    if key not in _NETWORKS:
        _NETWORKS.clear()  # one network at a time: ~95 MB each
        _NETWORKS[key] = build_network(w, device).to(memory_format=fmt)
    return _NETWORKS[key]


def _is_stats_path(source) -> bool:
    return isinstance(source, (str, Path)) and str(source).lower().endswith(".npz")


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
            keep_features: bool = False, logits: bool = False) -> Extraction:
    """One pass of ``source`` (folder, file list or uint8 images) through protocol and network.

    Always accumulates the statistics; ``keep_features`` also returns every pool3 feature
    vector and ``logits`` every 1008-way logit vector (weights with a classifier needed), as
    float32 arrays on the host, so that several metrics read the same features.
    """
    proto = get_protocol(protocol)
    dev = resolve_device(device)
    bs = batch_size or default_batch_size(dev)
    if bs < 1:
        raise SourceError(f"batch size must be at least 1, got {bs}")
    w = load_weights(weights)
    if logits and not w.has_classifier:
        raise WeightsError(f"these weights ({w.origin}) have no 1008-way classifier, which the Inception Score "
                           f"needs; give pytorch-fid's pt_inception-2015-12-05-6726825d.pth with --weights "
                           f"(downloaded from {PTFID_URL})")
    net = _network(w, dev, precision)
    acc = Accumulator(FEATURE_DIM, dev)
    if isinstance(source, (str, Path)) or (isinstance(source, (list, tuple)) and source
                                           and isinstance(source[0], (str, Path))):
        files = list_images(source) if isinstance(source, (str, Path)) else [Path(p) for p in source]
        nw = default_workers() if workers is None else workers
        batches = iter_file_features(files, proto, net, dev, bs, nw, progress, logits=logits, mode=precision)
        name = str(source) if isinstance(source, (str, Path)) else f"{len(files)} files"
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        layout = "NCHW" if torch.is_tensor(source) else "NHWC"
        check_uint8_images(source, layout)
        batches = iter_array_features(source, proto, net, dev, bs, layout, progress, logits=logits,
                                      mode=precision)
        name = f"{layout} array"
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
    st = acc.result(protocol=proto.name, weights_digest=w.digest, fidkit_version=__version__)
    if precision != "fp32":
        st.extra["precision"] = precision
    st.source = name
    return Extraction(st, np.concatenate(kept_features) if keep_features else None,
                      np.concatenate(kept_logits) if logits else None)


def compute_stats(source, protocol: str = "ttur", **kw) -> Statistics:
    """Mean and covariance of the pool3 features of ``source`` (see the module docstring).

    An ``.npz`` path or a :class:`Statistics` is returned as loaded (its protocol is checked
    when it records one). Otherwise ``kw`` are those of :func:`extract` (batch_size, device,
    workers, weights, progress, precision): returns float64 statistics with protocol,
    weights digest and image count recorded. ``precision`` is ``fp32`` (strict, default), or
    on CUDA ``tf32`` or ``bf16`` (faster, slightly different scores; recorded in the file).
    """
    if isinstance(source, Statistics):
        return source
    if _is_stats_path(source):
        st = Statistics.load(source)
        if st.protocol is not None and st.protocol != get_protocol(protocol).name:
            raise StatsError(f"{source} was made with protocol {st.protocol!r}, not {protocol!r}; "
                             f"use --protocol {st.protocol} or recompute it")
        return st
    return extract(source, protocol, **kw).stats


def _check_compatible(s1: Statistics, s2: Statistics, allow_mismatch: bool) -> None:
    if s1.dim != s2.dim:
        raise StatsError(f"statistics have different feature dimensions ({s1.dim} and {s2.dim}); they come "
                         f"from different networks or layers")
    for field, label in (("protocol", "protocol"), ("weights_digest", "weights")):
        a, b = getattr(s1, field), getattr(s2, field)
        if a is not None and b is not None and a != b and not allow_mismatch:
            raise StatsError(f"the two statistics were made with different {label} ({a[:12]} and {b[:12]}); "
                             f"recompute one of them, or pass --allow-mismatch to compare anyway")
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
    precision: str = "fp32"

    def as_dict(self) -> dict:
        d = {"fid": self.fid, "protocol": self.protocol, "n_a": self.n_a, "n_b": self.n_b,
             "weights_digest": self.weights_digest, "device": self.device, "precision": self.precision,
             "seconds": round(self.seconds, 3)}
        d.update({k: v for k, v in self.frechet.as_dict().items() if k != "fid"})
        return d


def compare(a, b, protocol: str = "ttur", *, allow_mismatch: bool = False, **kw) -> FIDResult:
    """FID between sources ``a`` and ``b`` with details; ``kw`` as for :func:`compute_stats`."""
    t0 = time.perf_counter()
    s1 = compute_stats(a, protocol, **kw)
    if s1.weights_digest and not allow_mismatch and not (isinstance(b, Statistics) or _is_stats_path(b)):
        digest = load_weights(kw.get("weights")).digest
        if digest != s1.weights_digest:  # refuse before spending time on b
            raise StatsError(f"{a} was made with weights {s1.weights_digest[:12]}, but the weights in use are "
                             f"{digest[:12]}; give the same weights with --weights, or pass --allow-mismatch")
    s2 = compute_stats(b, protocol, **kw)
    r = frechet_distance(s1, s2, allow_mismatch=allow_mismatch)
    digest = s1.weights_digest or s2.weights_digest
    return FIDResult(r.fid, get_protocol(protocol).name, s1.n, s2.n, digest, r, time.perf_counter() - t0,
                     str(resolve_device(kw.get("device", "auto"))), kw.get("precision", "fp32"))


def fid(a, b, protocol: str = "ttur", **kw) -> float:
    """The FID between sources ``a`` and ``b`` (folders, .npz files, arrays) as a float."""
    return compare(a, b, protocol, **kw).fid
