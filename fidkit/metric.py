"""FID inside a training loop: a metric object, a generator evaluator, and torch.distributed.

:class:`FID` holds the reference statistics (computed or loaded once) and a float64
:class:`~fidkit.stats.Accumulator` of the generated images' features, so its memory does
not grow with the number of updates::

    metric = fidkit.FID("ref.npz", device="cuda")
    for images in batches:                  # uint8 (N, 3, H, W), or float with input_range
        metric.update(images, input_range=(-1, 1))
    print(metric.compute())                 # float
    metric.reset()                          # the reference statistics stay

Under ``torch.distributed`` (initialised by the user, e.g. with torchrun) each rank
updates with its own images and :meth:`FID.compute` gathers every rank's (count, mean,
M2) in float64 and folds them in rank order (:func:`reduce_accumulator`), so every rank
gets the statistics of all images, equal to one process's to rounding.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import _args
from .api import (_holds_images, _is_stats_path, check_provenance, compute_stats, encoder_for,
                  finish_stats, frechet_distance, load_weights, mode_of)
from .encoders import DEFAULT_ENCODER, Encoder, get_info
from .errors import FidkitError, SourceError, StatsError
from .pipeline import check_precision, check_precision_name, default_batch_size, iter_array_features, resolve_device, reuse_freed_memory
from .inception import FEATURE_DIM
from .preprocess import get_protocol
from .stats import Accumulator, Statistics


def to_uint8(images: torch.Tensor, input_range) -> torch.Tensor:
    """Float images with values in ``input_range = (lo, hi)`` as uint8 0..255, on their device.

    ``images``: a floating-point torch tensor (or NumPy array, taken as a tensor) of any
    shape, e.g. (N, 3, H, W); the result has the same shape, dtype torch.uint8. The arithmetic of saving an image (``torchvision.utils.save_image`` with
    ``normalize=True, value_range=(lo, hi)``): clamp to [lo, hi], map linearly to [0, 1],
    then ``x·255 + 0.5`` clamped to [0, 255] and truncated, i.e. rounded half up. It runs in
    float32 (float64 for float64 input), so uint8 images converted to floats by any linear
    map come back exactly. Non-finite values are refused.
    """
    lo, hi = _check_range(input_range)
    if isinstance(images, np.ndarray):
        if images.dtype.kind != "f":
            raise SourceError(f"to_uint8 takes floating-point images, got {images.dtype}")
        images = torch.from_numpy(np.ascontiguousarray(images, dtype=images.dtype.newbyteorder("=")))
    if not torch.is_tensor(images) or not images.is_floating_point():
        raise SourceError(f"to_uint8 takes floating-point images, got {getattr(images, 'dtype', type(images).__name__)}")
    if not torch.isfinite(images).all():
        raise SourceError("images hold NaN or inf; FID needs finite pixel values")
    x = images.detach()
    x = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    x = (x.clamp(lo, hi) - lo) / (hi - lo)
    return (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def _check_range(input_range) -> tuple:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise SourceError(f"input_range must be a pair (lo, hi) of numbers, got {input_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise SourceError(f"input_range {input_range!r}: need finite lo < hi, e.g. (-1, 1) or (0, 1)")
    return lo, hi


def _as_uint8_nchw(images, input_range) -> torch.Tensor:
    if input_range is not None:
        _check_range(input_range)  # one line for a range that is not a pair of numbers, e.g. input_range=5
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise SourceError(f"images must be uint8 (0..255) or floating point with input_range, got {images.dtype}")
        # as to_uint8 does: negative strides (a[:, ::-1], BGR to RGB) and big-endian data are
        # copied once into what torch takes; a native C-contiguous array is not copied
        images = torch.from_numpy(np.ascontiguousarray(images, dtype=images.dtype.newbyteorder("=")))
    if not torch.is_tensor(images):
        raise SourceError(f"images must be a tensor of shape (N, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise SourceError(f"images must have shape (N, 3, H, W) with 3 channels, got {tuple(images.shape)}")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise SourceError(f"images of shape {tuple(images.shape)} have no pixels; each needs a height and width of "
                          f"at least 1")
    if images.dtype == torch.uint8:
        if input_range is not None and _check_range(input_range) != (0.0, 255.0):
            raise SourceError(f"uint8 images are 0..255; input_range {input_range!r} is for float images")
        return images
    if not images.is_floating_point():
        raise SourceError(f"images must be uint8 (0..255) or floating point with input_range, got {images.dtype}")
    if input_range is None:
        raise SourceError(f"{images.dtype} images need input_range=(lo, hi), e.g. (-1, 1) for tanh outputs; "
                          f"fidkit does not guess the range from the values")
    return to_uint8(images, input_range)


def _distributed(group=None) -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def reduce_accumulator(acc: Accumulator, group=None) -> Accumulator:
    """The accumulator of all ranks' features under ``torch.distributed``; ``acc`` itself otherwise.

    A collective call: every rank of ``group`` must make it. Each rank's count, mean and M2
    (float64) are all-gathered and folded with :meth:`Accumulator.merge_moments` in rank
    order, so every rank gets the same result, equal to one accumulator over all features
    to rounding (about 1e-15 relative). Gathers on the CPU for gloo and on CUDA for nccl;
    ``acc`` is left unchanged. Memory: world size × (d² + d + 1) float64 values.
    """
    if not _distributed(group):
        return acc
    import torch.distributed as dist
    backend = str(dist.get_backend(group))
    if "nccl" in backend:
        dev = acc.mean.device if acc.mean.device.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    d = acc.dim
    flat = torch.cat([torch.tensor([float(acc.n)], dtype=torch.float64, device=dev),
                      acc.mean.to(dev), acc.m2.to(dev).reshape(-1)])
    parts = [torch.empty_like(flat) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, flat, group=group)
    out = Accumulator(d, acc.mean.device)
    for p in parts:
        n = int(p[0].item())
        if n:
            p = p.to(acc.mean.device)
            out.merge_moments(n, p[1:1 + d], p[1 + d:].reshape(d, d))
    return out


class FID:
    """FID of generated images, fed batch by batch, against fixed reference statistics.

    ``reference``: an ``.npz`` statistics file (or EDM2 ``.pkl``), a
    :class:`~fidkit.stats.Statistics`, an image folder, or uint8 images (numpy (N, H, W, 3)
    or torch (N, 3, H, W)); folders and images are turned into statistics once, here, with
    the same encoder, protocol, weights, device and precision. Reference statistics recording
    another encoder, protocol or other weights are refused (``allow_mismatch=True`` lets
    another protocol or weights pass, never another encoder); a plain mu/sigma file from
    elsewhere gives a warning that its provenance is unknown. Reference statistics of another
    feature dimension than the encoder's (e.g. pytorch-fid ``--dims 768``) and invalid ones
    (NaN or inf, complex, shapes other than (d,) and (d, d)) are refused here, at construction
    (:class:`~fidkit.errors.StatsError`).

    ``encoder``: the feature space, a name of :data:`fidkit.encoders.ENCODERS` or an
    :class:`~fidkit.encoders.Encoder` (default Inception, pool3: FID; an instance must already be on
    the metric's ``device``, it is not moved: refused otherwise). With
    ``encoder="dinov2-vitl14"`` :meth:`compute` is FD_DINOv2 (EDM2's, mode ``edm2``, or
    ``protocol="dgm-eval"``), its weights from ``encoder_weights`` (path; None: environment
    variable, cache, download). ``protocol``: the encoder's preprocessing mode (None: its
    default; Inception ``ttur``). ``batch_size``: images per network batch, an integer ≥ 1 (None:
    the default, 16 on the CPU, 200 on CUDA); ``workers``: decoding workers for a reference folder.
    ``keep_features=True`` also keeps every generated image's feature vector (the encoder's
    default feature, float32, e.g. 8 KiB per image for pool3) on the host for :meth:`features`,
    e.g. to compute KID against reference features with :func:`fidkit.kid`; memory then grows
    with the images. Inception's network is built on the first update; other encoders at once
    (their weights digest is checked against the reference's).
    """

    def __init__(self, reference, protocol: str | None = None, device="auto", weights=None, precision: str = "fp32",
                 batch_size: int | None = None, *, allow_mismatch: bool = False, workers: int | None = None,
                 keep_features: bool = False, encoder=None, encoder_weights=None):
        self.device = resolve_device(device)
        check_precision_name(precision, FidkitError)  # as the API refuses an unknown precision
        check_precision(self.device, precision)  # a fast one off CUDA: refused now, not at the first update
        allow_mismatch = _args.flag(allow_mismatch, "allow_mismatch")
        keep_features = _args.flag(keep_features, "keep_features")
        if isinstance(encoder, Encoder) and (weights is not None or encoder_weights is not None):
            raise FidkitError("an Encoder instance brings its own weights; leave out weights and encoder_weights")
        self.precision = precision
        if batch_size is not None and not (_args.is_int(batch_size) and batch_size >= 1):
            raise SourceError(f"batch size must be an integer of at least 1 (None: the default, "
                              f"{default_batch_size(self.device)} here), got {_args.shown(batch_size)}")
        self.batch_size = int(batch_size) if batch_size is not None else default_batch_size(self.device)
        mode = mode_of(encoder, protocol)
        self.encoder = encoder.name if isinstance(encoder, Encoder) else get_info(encoder).name
        self._net = None
        if isinstance(reference, FID):
            reference = reference.reference
        if self.encoder != DEFAULT_ENCODER and not isinstance(encoder, Encoder) and (
                isinstance(reference, Statistics) or (_is_stats_path(reference) and not _holds_images(reference))):
            # statistics of another encoder or protocol are refused before this one's weights are
            # loaded, which may mean downloading a ViT-L (an ADM reference batch is read as its
            # images under another encoder: that pass needs the encoder, below)
            reference = compute_stats(reference, mode, allow_mismatch=allow_mismatch, encoder=self.encoder,
                                      dgm_eval_note=False)
        if self.encoder == DEFAULT_ENCODER and not isinstance(encoder, Encoder):
            self.weights = load_weights(weights if weights is not None else encoder_weights)
            self.protocol = get_protocol(mode)
            self.feature, digest, net_or_weights = "pool3", self.weights.digest, self.weights
        else:
            if isinstance(encoder, Encoder):
                _check_encoder_device(encoder, self.device)
            self._net = encoder_for(encoder, mode, weights=weights, encoder_weights=encoder_weights,
                                    device=self.device, precision=precision)
            self.weights = self._net
            self.protocol = self._net.preprocess
            self.feature, digest, net_or_weights = self._net.default_feature, self._net.weights_digest, self._net
        self.allow_mismatch = allow_mismatch
        ref = compute_stats(reference, mode, allow_mismatch=allow_mismatch, device=self.device,
                            weights=self.weights if self._net is None else None, precision=precision,
                            batch_size=self.batch_size, workers=workers, progress=False,
                            encoder=net_or_weights if self._net is not None else None)
        check_provenance(ref, mode, digest, allow_mismatch, encoder=self.encoder)
        self.dim = FEATURE_DIM if self._net is None else self._net.outputs[self.feature]
        name = ref.source or "the reference statistics"
        ref.validate(name)  # a Statistics passed in directly is used as it is: NaN or bad shapes refused here
        if ref.dim != self.dim:
            raise StatsError(f"{name}: its features have {ref.dim} dimensions, but encoder {self.encoder!r} gives "
                             f"{self.dim} ({self.feature}); they come from another network or layer"
                             f"{f' (e.g. pytorch-fid --dims {ref.dim})' if self.encoder == DEFAULT_ENCODER else ''}: "
                             f"use reference statistics of {self.feature}")
        self.reference: Statistics = ref
        self._acc = Accumulator(self.dim, self.device)
        self.keep_features = keep_features
        self._kept: list = []

    @property
    def n(self) -> int:
        """Generated images seen by this process since the last reset."""
        return self._acc.n

    def update(self, images, input_range=None) -> None:
        """Adds a batch of generated images: uint8 (N, 3, H, W) 0..255, or float with ``input_range``,
        as a torch tensor or a NumPy array (any strides and byte order: copied once when not
        C-contiguous in native byte order).

        Float images are mapped from ``input_range = (lo, hi)`` to uint8 exactly as saving
        them as image files would (see :func:`to_uint8`); without ``input_range`` they are
        refused, never guessed from their values. With protocols ``ttur`` and
        ``pytorch-fid`` everything runs on the metric's device (a GPU batch never goes to
        the host); protocols ``clean`` and ``dgm-eval-clean`` resize with PIL, so they copy each
        batch to the host.
        On the CPU, one call with many images (split into ``batch_size`` batches inside) is
        faster than one call per batch, with the same result: freed activations are reused
        across the batches of one call (:func:`evaluate_generator` does this for its draw).
        Float images are mapped to uint8 all at once first, so pass uint8 (or a few
        thousand float images per call) when memory is short.
        """
        x = _as_uint8_nchw(images, input_range)
        if x.shape[0] == 0:
            return
        if self._net is None:
            self._net = encoder_for(None, self.protocol.name, weights=self.weights, device=self.device,
                                    precision=self.precision)
        for out in iter_array_features(x, self.protocol, self._net, self.device, self.batch_size, "NCHW",
                                       progress=False, names=(self.feature,), mode=self.precision):
            feats = out[self.feature]
            self._acc.update(feats)
            if self.keep_features:
                self._kept.append(feats.float().cpu().numpy())

    def features(self) -> np.ndarray:
        """This process's generated features since the last reset: float32 (N, dim) (2048 for
        Inception's pool3), a new array each call (a copy: changing it leaves the kept features
        as they are). Needs ``keep_features=True``; not gathered across torch.distributed ranks."""
        if not self.keep_features:
            raise FidkitError("this FID metric does not keep features; create it with keep_features=True")
        if not self._kept:
            return np.zeros((0, self.dim), np.float32)
        self._kept = [np.concatenate(self._kept)]
        return self._kept[0].copy()

    def compute_stats(self, sync: bool = True) -> Statistics:
        """Statistics of the generated images so far. Under torch.distributed, those of all
        ranks (a collective call, like :meth:`compute`); ``sync=False`` gives this rank's own."""
        acc = reduce_accumulator(self._acc) if sync else self._acc
        return finish_stats(acc, self.protocol.name, self.weights, self.precision, "fidkit.FID", self.feature)

    @property
    def stats(self) -> Statistics:
        """:meth:`compute_stats` (collective under torch.distributed)."""
        return self.compute_stats()

    def compute(self) -> float:
        """The FID of the generated images so far (of all ranks under torch.distributed, where
        every rank must call it) against the reference. Needs at least 2 images."""
        st = self.compute_stats()
        return float(frechet_distance(self.reference, st, allow_mismatch=self.allow_mismatch))

    def reset(self) -> None:
        """Forgets the generated images; the reference statistics stay."""
        self._acc = Accumulator(self.dim, self.device)
        self._kept = []

    def __repr__(self):
        return (f"FID(encoder={self.encoder!r}, protocol={self.protocol.name!r}, device={str(self.device)!r}, n={self.n}, "
                f"reference_n={self.reference.n})")


def _check_encoder_device(encoder: Encoder, device: torch.device) -> None:
    """Refuses, in one line, an :class:`Encoder` instance whose weights are not on the metric's
    device: every batch goes to ``device``, so the first update would fail with torch's device
    mismatch. The encoder is the caller's module (maybe shared with other code), so it is not
    moved behind their back."""
    tensor = next(encoder.parameters(), None)
    if tensor is None:
        tensor = next(encoder.buffers(), None)
    if tensor is None:  # no weights: nothing to be on another device
        return
    have, want = tensor.device, device
    if have.type == want.type == "cuda" and (have.index is None or want.index is None):
        current = torch.cuda.current_device()
        have = torch.device("cuda", current if have.index is None else have.index)
        want = torch.device("cuda", current if want.index is None else want.index)
    if have != want:
        raise FidkitError(f"the encoder's weights are on {tensor.device}, but the metric runs on {device}; move it "
                          f"first (encoder.to({str(device)!r})) or give device={str(tensor.device)!r}")


@dataclass(frozen=True)
class GeneratorResult:
    """What :func:`evaluate_generator` gives: ``fid``, ``n`` (images of all ranks), the
    protocol and the seconds taken; ``float(result)`` is the FID."""

    fid: float
    n: int
    protocol: str
    seconds: float

    def __float__(self):
        return self.fid


def _is_default(value, default) -> bool:
    """``value`` is the parameter's default (None, or the string / bool it defaults to)."""
    if default is None or isinstance(default, bool):
        return value is default
    return isinstance(value, str) and value == default


def evaluate_generator(sample_fn, n: int, batch_size: int, reference=None, *, input_range=None,
                       protocol: str | None = None, device="auto", weights=None, precision: str = "fp32",
                       allow_mismatch: bool = False, metric: FID | None = None, encoder=None,
                       encoder_weights=None) -> GeneratorResult:
    """FID of ``n`` images drawn from ``sample_fn(batch_size)`` against ``reference``.

    ``sample_fn(k)`` returns k images (or any number; extra ones are dropped): uint8
    (k, 3, H, W), or float with ``input_range`` as for :meth:`FID.update`. It is called
    under ``torch.no_grad()``. ``reference`` is as for :class:`FID` (or give a ready
    ``metric``, which is reset first and keeps its reference, to avoid recomputing it; it
    brings its own reference, protocol, device, weights, precision, ``allow_mismatch`` and
    encoder, so giving any of those beside it is refused with :class:`~fidkit.errors.FidkitError`).
    Under torch.distributed, ``n`` is the total: each rank draws its share and the
    statistics are gathered. ``encoder``/``encoder_weights`` choose the feature space as for
    :class:`FID` (``result.fid`` is then e.g. FD_DINOv2). On the CPU with glibc the whole draw,
    ``sample_fn`` included, runs inside one :func:`~fidkit.pipeline.reuse_freed_memory` span:
    freed memory stays in the process's heap until the draw ends (then it is trimmed).
    """
    t0 = time.perf_counter()
    n = _args.count(n, "n", 2, FidkitError, " (images to draw)")
    batch_size = _args.count(batch_size, "batch_size", 1, FidkitError, " (images per sample_fn call)")
    if not callable(sample_fn):
        raise FidkitError(f"sample_fn must be a function of a batch size that returns images, got "
                          f"{type(sample_fn).__name__}")
    if metric is not None and not isinstance(metric, FID):
        raise FidkitError(f"metric must be a fidkit.FID, got {type(metric).__name__}")
    if metric is not None:
        given = [name for name, value, default in (
            ("reference", reference, None), ("protocol", protocol, None), ("device", device, "auto"),
            ("weights", weights, None), ("precision", precision, "fp32"), ("allow_mismatch", allow_mismatch, False),
            ("encoder", encoder, None), ("encoder_weights", encoder_weights, None)) if not _is_default(value, default)]
        if given:
            raise FidkitError(f"evaluate_generator: a metric brings its own reference, protocol, device, weights, "
                              f"precision and encoder, so {', '.join(given)} would be ignored; leave "
                              f"{'it' if len(given) == 1 else 'them'} out, or give no metric")
    if metric is None:
        if reference is None:
            raise FidkitError("give the reference statistics (an .npz, Statistics, folder or images) or a metric")
        metric = FID(reference, protocol, device, weights, precision, allow_mismatch=allow_mismatch, encoder=encoder,
                     encoder_weights=encoder_weights)
    metric.reset()
    mine = n
    if _distributed():
        import torch.distributed as dist
        world, rank = dist.get_world_size(), dist.get_rank()
        mine = n // world + (rank < n % world)
    done = 0
    # one heap-reuse span for the whole draw, not one per update: each update's own span ends by
    # trimming the heap, so the next batch would fault its activation pages in again (on the CPU,
    # about 10% slower at batch 16: benchmarks/metric_update_cpu.py)
    with torch.no_grad(), reuse_freed_memory(metric.device):
        while done < mine:
            k = min(batch_size, mine - done)
            images = sample_fn(k)
            if not (torch.is_tensor(images) or isinstance(images, np.ndarray)):
                raise SourceError(f"sample_fn({k}) returned a {type(images).__name__}; return images as a torch "
                                  f"tensor or NumPy array")
            if images.shape[0] == 0:
                raise SourceError("sample_fn returned no images")
            images = images[:k]
            metric.update(images, input_range=input_range)
            done += images.shape[0]
    st = metric.compute_stats()
    fid = float(frechet_distance(metric.reference, st, allow_mismatch=metric.allow_mismatch))
    return GeneratorResult(fid, st.n, metric.protocol.name, time.perf_counter() - t0)
