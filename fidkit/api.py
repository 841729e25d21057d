"""fidkit's Python API: statistics of a source, and the FID between two sources.

A *source* is one of: a folder of images (searched recursively), an archive of images
(``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, tar shards by pattern or list; see
:class:`fidkit.sources.ArchiveImages`), a sample batch (an
``.npz`` whose ``arr_0`` holds uint8 NHWC images, as OpenAI's guided-diffusion evaluator
reads, or an ``.npy`` of such an array), a statistics file (``.npz`` with ``mu``/``sigma``,
ADM reference batches included, or EDM2's ``.pkl``), a :class:`~fidkit.stats.Statistics`, a
list of image file paths, or in-memory uint8 images (numpy (N, H, W, 3) or torch
(N, 3, H, W), values 0..255). An ``.npz`` is told to be images or statistics by its keys.
Every image source becomes one :class:`fidkit.sources.Images` before the pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from . import _args
from . import distances as _distances
from . import scores as _scores
from .encoders import DEFAULT_ENCODER, Encoder, encoder_names, encoders_with, get_encoder, get_info
from .encoders.inception import InceptionEncoder
from .errors import FidkitError, FidkitWarning, SourceError, StatsError, WeightsError
from .pipeline import (check_precision_name, default_batch_size, default_workers, iter_features, memory_format,
                       resolve_device)
from .frechet import FrechetResult, mean_term_as_held, real_array, with_mean_term
from .inception import TF32X3, Split
from .frechet import frechet_distance as _frechet_arrays
from .preprocess import get_protocol
from .sources import (BATCH_KEY, DGM_EVAL_NSAMPLE, DGM_EVAL_SEED, BatchImages, as_images, check_exists,
                      dgm_eval_generator, dgm_eval_row_labels, dgm_eval_scan, dgm_eval_subset, dgm_eval_unread,
                      npz_kind, npz_members, nvidia_listing_note, seeded_subset)
from .stats import FILE_KEYS, Accumulator, Statistics
from .weights import PTFID_URL, Weights, build_network, load_file, resolve

_NETWORKS: dict = {}
_WEIGHTS: dict = {}
_ENCODERS: dict = {}
#: set by fidkit.distributed on rank 0 of a torchrun run: :func:`extract` then reads through every rank
_distributed_extract = None


def load_weights(weights=None) -> Weights:
    """Weights from ``weights`` (a path, a :class:`Weights`, or None for the default resolution).

    Loaded once per path and kept. The default resolution may download the weights and
    write them into fidkit's cache (under a lock file), saying so on stderr; see the README's
    Weights. ``.digest`` (hex sha256 of the pool3 tensors) is what
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
    CPU, where it would change every statistics file, the committed ones included. Under
    ``tf32x3`` the folded convolutions run on split operands (:data:`fidkit.inception.TF32X3`),
    so neither the weight nor the folded batch-norm scale loses digits to TF32.
    """
    fmt = memory_format(device, mode)
    fold = device.type == "cuda" and mode != "bf16"
    key = (w.digest, w.has_classifier, str(device), fmt, fold, mode == "tf32x3")
    if key not in _NETWORKS:
        _NETWORKS.clear()  # one network at a time: ~95 MB each
        _NETWORKS[key] = _configured(build_network(w, device), fold, conv_arithmetic(mode), fmt)
    return _NETWORKS[key]


def conv_arithmetic(mode: str, emulate: str | None = None) -> Split | None:
    """The :class:`~fidkit.inception.Split` the convolutions run with under precision ``mode``
    on CUDA: :data:`~fidkit.inception.TF32X3` for ``tf32x3``, None (cuDNN as it is, under
    autocast for ``bf16``) for ``fp32``, ``tf32`` and ``bf16``. With ``emulate`` (``nearest``
    or ``truncate``: how the tensor cores convert float32), the same arithmetic with the TF32
    rounding done in float32, for the CPU; ``tf32`` is then one product of the operands as
    given, ``fp32`` stays None, and ``bf16`` has none."""
    if mode == "tf32x3":
        return dataclasses.replace(TF32X3, emulate=emulate)
    if mode == "tf32" and emulate is not None:
        return Split(TF32X3.bits, ("hh",), emulate)
    if mode in ("fp32", "tf32") or (mode == "bf16" and emulate is None):
        return None
    raise FidkitError(f"precision {mode!r} has no TF32 emulation; fp32, tf32 or tf32x3")


def _configured(net, fold: bool, split: Split | None, fmt: torch.memory_format):
    if fold:
        net.fold_batch_norm()
    net = net.to(memory_format=fmt)
    if split is not None:  # after folding and moving: the split weights are made from the final ones
        net.set_split(split)
    return net


def emulated_network(w: Weights, mode: str = "tf32x3", rounding: str = "nearest"):
    """The network :func:`network` builds on CUDA for ``mode`` (``fp32``, ``tf32``, ``tf32x3``:
    batch norm folded, the same :func:`conv_arithmetic`), built on the CPU with the tensor cores'
    conversion of float32 to TF32 emulated as ``rounding`` (``nearest`` or ``truncate``). Its
    features are what the GPU's arithmetic gives, up to the order of float32 sums."""
    return _configured(build_network(w), True, conv_arithmetic(mode, rounding), torch.channels_last)


def mode_of(encoder=None, protocol=None) -> str:
    """The preprocessing mode in use: ``protocol`` (a name, or a :class:`~fidkit.preprocess.Protocol`),
    or the encoder's default (Inception ``ttur``, DINOv2 ``edm2``, CLIP ``cmmd``) when it is None;
    one line when the encoder has no such mode."""
    if isinstance(encoder, Encoder):
        modes = tuple(encoder.preprocessing)
        name = encoder.name
    else:
        info = get_info(encoder)
        modes, name = info.modes, info.name
    if protocol is None:
        return modes[0]
    mode = getattr(protocol, "name", protocol)
    if mode not in modes:
        owners = [e for e in encoder_names() if e != name and mode in get_info(e).modes]
        if name == DEFAULT_ENCODER and not owners:
            get_protocol(mode)  # unknown protocol: the protocols' own message
        fix = "leave out --encoder" if owners and owners[0] == DEFAULT_ENCODER else \
            f"{'add' if name == DEFAULT_ENCODER else 'use'} --encoder {owners[0]}" if owners else ""
        whose = f" ({mode} is a mode of {' and '.join(owners)}: {fix})" if owners else ""
        raise FidkitError(f"encoder {name!r} has no preprocessing mode {mode!r}{whose}; choose one of "
                          f"{', '.join(modes)} (--protocol; its default is {modes[0]})")
    return mode


def encoder_for(encoder=None, protocol=None, *, weights=None, encoder_weights=None, device="auto",
                precision: str = "fp32") -> Encoder:
    """The encoder a pass runs: ``encoder`` is a name of :data:`fidkit.encoders.ENCODERS` (None:
    Inception) or an :class:`~fidkit.encoders.Encoder`; its mode is ``protocol`` (None: its
    default). Inception takes ``weights`` (or ``encoder_weights``) as :func:`load_weights` does and
    is :func:`network` behind :class:`~fidkit.encoders.inception.InceptionEncoder`; the others take
    ``encoder_weights`` (a path, or None: environment variable, cache, download) and are built
    once per weights and device and kept."""
    dev = resolve_device(device)
    if isinstance(encoder, Encoder):
        return encoder.set_mode(mode_of(encoder, protocol))
    info = get_info(encoder)
    mode = mode_of(info.name, protocol)
    if info.name == DEFAULT_ENCODER:
        w = load_weights(weights if weights is not None else encoder_weights)
        return InceptionEncoder(network(w, dev, precision), w, mode, memory_format(dev, precision))
    key = (info.name, str(encoder_weights), str(dev))
    if key not in _ENCODERS:
        _ENCODERS.clear()  # one at a time: a ViT-L holds ~1.2 GB
        _ENCODERS[key] = get_encoder(info.name, encoder_weights).to(dev)
    return _ENCODERS[key].set_mode(mode)


def _is_stats_path(source) -> bool:
    """A statistics file: an EDM2 ``.pkl``, or an ``.npz`` whose keys hold ``mu``/``sigma`` (told
    by its keys, not its name). A path that does not exist is none: reading it as a source
    gives the one message for every missing path (``no such file or folder``)."""
    if not isinstance(source, (str, Path)) or not os.path.exists(source):  # False, not OSError, for a too-long name
        return False
    low = str(source).lower()
    if low.endswith(".pkl"):
        return True
    if not low.endswith(".npz"):
        return False
    return not Path(source).is_file() or npz_kind(source) == "stats"


def _holds_images(source) -> bool:
    """A statistics file that also holds its images (an ADM reference batch: ``arr_0``)."""
    return (isinstance(source, (str, Path)) and str(source).lower().endswith(".npz") and os.path.isfile(source)
            and BATCH_KEY in npz_members(source))


def _is_stats(source) -> bool:
    """A source that is statistics already (a file, which may also keep its images or per-image
    features, or a :class:`Statistics`)."""
    return isinstance(source, Statistics) or _is_stats_path(source)


def check_provenance(st: Statistics, protocol: str | None, weights_digest: str | None,
                     allow_mismatch: bool = False, encoder: str | None = None,
                     protocol_advice: str | None = None) -> None:
    """Refuses, in one line, statistics that record another encoder, protocol or other weights than
    ``encoder`` / ``protocol`` / ``weights_digest`` (None: not checked). ``allow_mismatch`` lets
    another protocol or other weights pass, never another encoder: two encoders' features live
    in different spaces, so such a file could only be refused later, after the other source
    had been read. ``protocol_advice``: what to do about another protocol, where the caller
    knows better than "use --protocol THEIRS" (a command that has only one)."""
    name = st.source or "the statistics"
    if encoder is not None and st.encoder != encoder:
        raise StatsError(f"{name} was made with encoder {st.encoder!r}, not {encoder!r}; use --encoder {st.encoder} "
                         f"(encoder={st.encoder!r}) or recompute it")
    if allow_mismatch:
        return
    if st.protocol is not None and protocol is not None and st.protocol != protocol:
        raise StatsError(f"{name} was made with protocol {st.protocol!r}, not {protocol!r}; "
                         f"{protocol_advice or f'use --protocol {st.protocol} (protocol={st.protocol!r}) or recompute it'}")
    if st.weights_digest is not None and weights_digest is not None and st.weights_digest != weights_digest:
        raise StatsError(f"{name} was made with weights {st.weights_digest[:12]}, but the weights in use are "
                         f"{weights_digest[:12]}; give the same weights with --weights, or pass --allow-mismatch "
                         f"(allow_mismatch=True)")


def finish_stats(acc: Accumulator, protocol: str, weights, precision: str, source: str,
                 feature: str | None = None) -> Statistics:
    """The statistics of ``acc`` with their provenance (encoder, protocol, weights digest, version,
    arithmetic). ``weights``: the :class:`Encoder` that made the features, or Inception's :class:`Weights`."""
    if isinstance(weights, Encoder):
        st = acc.result(protocol=protocol, weights_digest=weights.weights_digest, fidkit_version=__version__,
                        encoder=weights.name)
        if weights.name != DEFAULT_ENCODER and feature is not None:
            st.extra["feature"] = feature
    else:
        st = acc.result(protocol=protocol, weights_digest=weights.digest, fidkit_version=__version__)
    if precision != "fp32":
        st.extra["network_precision"] = precision
    st.source = source
    return st


def finish_pass(accs: dict, net: Encoder, precision: str, name: str, skipped: list | None) -> Statistics:
    """The statistics of one pass: ``accs`` (feature name -> :class:`Accumulator`, the encoder's
    default feature and optionally ``spatial``) with their provenance, the files ``skipped``
    (:class:`~fidkit.pipeline.BadFile`) listed and warned about once. Shared by :func:`extract`
    and its torchrun counterpart (:mod:`fidkit.distributed`), so both give the same file."""
    main = net.default_feature
    st = finish_stats(accs[main], net.preprocess.name, net, precision, name, main)
    if "spatial" in accs:
        st.named["spatial"] = finish_stats(accs["spatial"], net.preprocess.name, net, precision, name, "spatial")
    if skipped:
        st.extra["skipped"] = [b.path for b in skipped]
        warnings.warn(f"{name}: skipped {len(skipped)} file(s) that could not be decoded, the first: "
                      f"{skipped[0].message}", FidkitWarning, stacklevel=3)
    return st


def pass_device(device, batch_size: int | None) -> tuple:
    """(torch device, images per network batch) of a pass; one line for a batch size below 1."""
    dev = resolve_device(device)
    if batch_size is not None and (not _args.is_int(batch_size) or batch_size < 1):
        raise SourceError(f"batch size must be an integer of at least 1 (None: the device's default), "
                          f"got {_args.shown(batch_size)}")
    return dev, int(batch_size) if batch_size is not None else default_batch_size(dev)


#: the keywords of a pass that the public functions hand on to :func:`extract` (through ``kw``)
PASS_KEYWORDS = ("batch_size", "device", "workers", "weights", "progress", "precision", "skip_bad", "label",
                 "encoder", "encoder_weights")


def check_pass_args(kw: dict, where: str, also: tuple = (), without: tuple = ()) -> None:
    """Refuses, in one line and before anything is read, what ``where`` (a public function's
    name) would otherwise hand on to a pass as it is: a keyword it does not take (a typo, or
    one the function sets itself, such as ``keep_features`` in :func:`compare`), a precision
    fidkit does not know, a batch size or worker count that is not a count, a device name
    torch does not read, a flag that is not True or False (``progress`` may also be None: on
    a terminal). ``also``: the further keywords ``where`` takes in ``kw``. Checked even where
    the sources turn out to be statistics files, which no pass reads. ``without``: keywords of
    :data:`PASS_KEYWORDS` that ``where`` sets itself (refused by the caller, not listed)."""
    taken = sorted(k for k in PASS_KEYWORDS + tuple(also) if k not in without)
    unknown = sorted(k for k in kw if k not in taken and k not in without)
    if unknown:
        raise FidkitError(f"{where}() takes no keyword {unknown[0]!r}; its keywords for the pass are "
                          f"{', '.join(taken)}")
    check_precision_name(kw.get("precision", "fp32"), FidkitError)
    if kw.get("batch_size") is not None:
        _args.count(kw["batch_size"], "batch_size", 1, SourceError, " (images per network batch; None: the default)")
    if kw.get("workers") is not None:
        _args.count(kw["workers"], "workers", 0, SourceError, " (decoding processes; None: the default)")
    if kw.get("progress") is not None:
        _args.flag(kw["progress"], "progress (None: shown on a terminal)")
    if "skip_bad" in kw:
        _args.flag(kw["skip_bad"], "skip_bad")
    if kw.get("label") is not None and not isinstance(kw["label"], str):
        raise FidkitError(f"label must be a string (the source's name on the progress bar), got {kw['label']!r}")
    resolve_device(kw.get("device", "auto"))


def check_classifier(encoder, weights=None, encoder_weights=None) -> None:
    """Refuses, in one line, Inception weights without the classifier that logits need (other
    encoders give no logits, which :func:`pass_encoder` says)."""
    if isinstance(encoder, (type(None), str)) and get_info(encoder).name == DEFAULT_ENCODER:
        _require_classifier(load_weights(weights if weights is not None else encoder_weights))


def pass_encoder(encoder, protocol, *, weights, encoder_weights, device: torch.device, precision: str,
                 spatial: bool, logits: bool) -> tuple:
    """(encoder, feature names) of a pass: the encoder's default feature first, then ``spatial``
    and ``logits`` when asked; one line when the encoder lacks one. Shared by :func:`extract` and
    each torchrun rank's block (:mod:`fidkit.distributed`)."""
    if logits:
        check_classifier(encoder, weights, encoder_weights)
    net = encoder_for(encoder, protocol, weights=weights, encoder_weights=encoder_weights, device=device,
                      precision=precision)
    names = (net.default_feature,) + (("spatial",) if spatial else ()) + (("logits",) if logits else ())
    missing = [k for k in names if k not in net.outputs]
    if missing:
        raise FidkitError(f"encoder {net.name!r} gives no {missing[0]!r} feature; encoders that do: "
                          f"{', '.join(encoders_with(missing[0])) or 'none'}")
    return net, names


def _require_classifier(w: Weights) -> None:
    if not w.has_classifier:
        raise WeightsError(f"these weights ({w.origin}) have no 1008-way classifier, which the Inception Score "
                           f"needs; give pytorch-fid's pt_inception-2015-12-05-6726825d.pth with --weights "
                           f"(downloaded from {PTFID_URL})")


@dataclass
class Extraction:
    """What one pass over a source gives: its statistics and, when asked, the raw outputs.

    stats: :class:`Statistics` of the encoder's default feature (float64; with ``stats.spatial``
    when the sFID feature was asked for); features: float32 numpy (N, dim) of the default
    feature (Inception pool3, DINOv2 cls, CLIP embedding) or None; logits: float32 numpy (N, 1008)
    without the classifier's bias, or None. ``stats_from_file``: names of the features whose
    statistics were read from a file rather than computed (see :func:`compare`). ``means32``:
    feature name -> its mean as guided-diffusion's evaluator takes it (float32 (dim,), see
    :meth:`~fidkit.stats.Accumulator.mean_float32`), for the features computed in a pass
    asked for ``float32_means``; empty otherwise.
    """

    stats: Statistics
    features: np.ndarray | None = None
    logits: np.ndarray | None = None
    stats_from_file: tuple = ()
    means32: dict = field(default_factory=dict)


def extract(source, protocol: str | None = None, *, batch_size: int | None = None, device="auto",
            workers: int | None = None, weights=None, progress: bool | None = None, precision: str = "fp32",
            keep_features: bool = False, logits: bool = False, spatial: bool = False,
            skip_bad: bool = False, label: str | None = None, encoder=None, encoder_weights=None,
            float32_means: bool = False) -> Extraction:
    """One pass of ``source`` (folder, sample batch, file list or uint8 images) through an encoder.

    ``encoder``: a name of :data:`fidkit.encoders.ENCODERS` or an :class:`Encoder` (None:
    Inception, with ``weights``); ``encoder_weights`` the weights file of the others (see
    :func:`encoder_for`); ``protocol`` its preprocessing mode (None: its default). Always
    accumulates the statistics of the encoder's default feature (Inception: pool3); ``spatial`` also accumulates those of the sFID
    feature (``stats.spatial``, from the same pass); ``keep_features`` also returns every
    pool3 feature vector and ``logits`` every 1008-way logit vector (weights with a
    classifier needed), as float32 arrays on the host, so that several metrics read the same
    features. With ``skip_bad``, files that cannot be decoded are left out, counted and
    listed (in ``stats.extra["skipped"]`` and a warning) instead of stopping the run.
    ``label`` names the source on the progress bar (default: the folder, or what the source is).
    ``float32_means``: also each accumulated feature's mean as guided-diffusion's evaluator
    takes it, a float32 sum of the rows in reading order (``Extraction.means32``).
    When the ``fidkit`` command runs under torchrun (:mod:`fidkit.distributed`), every rank reads
    a block of the source and rank 0 gets this same result.
    """
    if _distributed_extract is not None:
        return _distributed_extract(source, protocol, batch_size=batch_size, device=device, workers=workers,
                                    weights=weights, progress=progress, precision=precision,
                                    keep_features=keep_features, logits=logits, spatial=spatial, skip_bad=skip_bad,
                                    label=label, encoder=encoder, encoder_weights=encoder_weights,
                                    float32_means=float32_means)
    dev, bs = pass_device(device, batch_size)
    images = as_images(source)
    net, names = pass_encoder(encoder, protocol, weights=weights, encoder_weights=encoder_weights, device=dev,
                              precision=precision, spatial=spatial, logits=logits)
    main = net.default_feature
    accs = {k: Accumulator(net.outputs[k], dev, float32_sum=float32_means) for k in names if k != "logits"}
    skipped = [] if skip_bad else None
    nw = (default_workers() if workers is None else workers) if images.in_workers else 0
    name = images.name
    batches = iter_features(images, net.preprocess, net, dev, bs, nw, progress, names=names, mode=precision,
                            skipped=skipped, label=label or name)
    # per-image features go straight into arrays of the final size (a list of batches joined at
    # the end would hold them twice: 800 MB at the peak for 50,000 pool3 vectors instead of 400)
    kept = {k: np.empty((len(images), net.outputs[k]), np.float32)
            for k in ((main,) if keep_features else ()) + (("logits",) if logits else ())}
    filled = 0
    # closed on the way out, whatever is raised here (Ctrl-C, a NaN feature): its progress line is
    # ended before the caller reports why, not when the suspended generator is collected later
    with contextlib.closing(batches):
        for out in batches:
            for k, acc in accs.items():
                acc.update(out[k])
            for k, arr in kept.items():
                arr[filled:filled + out[k].shape[0]] = out[k].cpu().numpy()
            filled += out[main].shape[0]
    st = finish_pass(accs, net, precision, name, skipped)
    kept = {k: arr[:filled] for k, arr in kept.items()}  # fewer rows when files were skipped
    return Extraction(st, kept.get(main) if keep_features else None, kept.get("logits") if logits else None,
                      means32=means_float32(accs) if float32_means else {})


def means_float32(accs: dict) -> dict:
    """Feature name -> float32 mean (:meth:`~fidkit.stats.Accumulator.mean_float32`) of a pass's
    accumulators; shared with the torchrun pass (:mod:`fidkit.distributed`)."""
    return {k: acc.mean_float32() for k, acc in accs.items()}


def features(source, protocol: str | None = None, **kw) -> np.ndarray:
    """The features of ``source`` (folder, archive, sample batch, file list or
    uint8 images (numpy (N, H, W, 3) or torch (N, 3, H, W), values 0..255)): float32 (N, dim) of the
    encoder's default feature (``encoder=``; Inception's pool3, (N, 2048), by default).

    For metrics that need every feature vector (KID, precision/recall) computed more than
    once against the same reference; ``kw`` as for :func:`extract`.
    """
    check_pass_args(kw, "features")
    if _is_stats(source) and _holds_features(source):  # kept by fidkit stats --features
        return _functional_file_features(source, protocol, kw)
    _refuse_stats_file(source, "features")
    return extract(source, protocol, keep_features=True, **kw).features


def compute_stats(source, protocol: str | None = None, *, allow_mismatch: bool = False, spatial: bool = False,
                  nsample: int | None = None, nsample_seed: int = DGM_EVAL_SEED, dgm_eval_note: bool = True,
                  keep_features: bool = False, **kw) -> Statistics:
    """Mean and covariance of the features of ``source`` (see the module docstring): Inception's pool3,
    or with ``encoder="dinov2-vitl14"`` (``"clip-vitl14-336"``) that encoder's default feature, its
    weights from ``encoder_weights`` (see :func:`encoder_for`); ``protocol`` is the encoder's
    preprocessing mode (None: its default).

    A statistics file (``.npz`` with ``mu``/``sigma``, ADM reference batches included but for
    another encoder than Inception or with ``nsample``, when their images are read instead,
    or EDM2's ``.pkl``) or a :class:`Statistics` is returned as loaded (its encoder is checked,
    and its protocol when it records one unless ``allow_mismatch``; with ``spatial``, that
    it holds sFID statistics). Otherwise ``kw`` are those of :func:`extract` (batch_size, device,
    workers, weights, progress, precision): returns float64 statistics with protocol,
    weights digest and image count recorded (``mu`` float64 (d,), ``sigma`` float64 (d, d),
    d = 2048 for pool3). ``precision`` is ``fp32`` (strict, default), or on CUDA ``tf32x3``
    (fp32-grade on TF32 tensor cores), ``tf32`` or ``bf16`` (faster, slightly different
    scores; recorded in the file). Sources as for :func:`compare`. Warns
    (:class:`FidkitWarning`) for a plain ``mu``/``sigma`` file of unknown provenance and for
    files skipped with ``skip_bad``.
    ``spatial``: also the sFID statistics (``.spatial``, saved as ``mu_s``/``sigma_s``).
    ``keep_features``: also every image's feature vector (``.features``, float32 (N, d) in
    reading order, saved as ``features``), so that a saved file serves the per-image metrics of
    :func:`compare` (KID, precision/recall, dgm-eval's kd/prdc, FD∞, the bootstrap) in place of
    its images; of a statistics file, the features it keeps (refused when it keeps none).
    ``nsample=N``: of a source with more than N images, the N that dgm-eval's ``--nsample N
    --seed S`` reads (``nsample_seed=S``, default 13579: :func:`fidkit.sources.dgm_eval_subset`),
    recorded in the file's metadata as ``nsample``, ``nsample_seed`` and ``nsample_from``; a
    warning when dgm-eval would list the folder otherwise. Without it, under dgm-eval's resize,
    a warning when the set (or statistics file) holds more than dgm-eval's default 50,000,
    which dgm-eval would cut (``dgm_eval_note=False``: not here; :func:`compare` says it itself).
    """
    allow_mismatch = _args.flag(allow_mismatch, "allow_mismatch")
    spatial, keep_features = _args.flag(spatial, "spatial"), _args.flag(keep_features, "keep_features")
    check_pass_args(kw, "compute_stats")
    nsample, nsample_seed = _nsample_args(nsample, nsample_seed)
    enc = kw.get("encoder")
    name = enc.name if isinstance(enc, Encoder) else get_info(enc).name
    mode = mode_of(enc, protocol)  # the encoder's preprocessing mode (protocol None: its default)
    source = _batch_images_of(source, name, nsample, mode)
    if isinstance(source, Statistics) or _is_stats_path(source):
        st = source if isinstance(source, Statistics) else Statistics.load(source, encoder=name)
        check_provenance(st, None, None, allow_mismatch, encoder=name)
        check_provenance(st, mode, None, allow_mismatch)
        if spatial:
            st.feature("spatial")  # refused in one line when the file holds none
        if nsample is not None:
            _nsample_file_check("the statistics", st, nsample, nsample_seed)
        elif dgm_eval_note and mode in DGM_EVAL_MODES:
            _dgm_eval_cut_note({}, {st.source or "the statistics": st}, mode)
        if keep_features and st.features is None:
            st.features = _file_features(source, st)  # one line when the file keeps none
        return st

    def computed(images) -> Statistics:
        ex = extract(images, protocol, spatial=spatial, keep_features=keep_features, **kw)
        ex.stats.features = ex.features if keep_features else None
        return ex.stats

    if nsample is None:
        if dgm_eval_note and mode in DGM_EVAL_MODES:
            source = as_images(source)
            _dgm_eval_cut_note({kw.get("label") or source.name: len(source)}, {}, mode)
        return computed(source)
    images, info = _nsample_cut(source, as_images(source), nsample, nsample_seed, kw.get("label"))
    st = computed(images)
    st.extra.update(nsample=info["nsample"], nsample_seed=info["nsample_seed"], nsample_from=info["from"])
    return st


def _batch_images_of(source, encoder: str, nsample: int | None, mode: str):
    """An ADM reference batch (``arr_0`` with ``mu``/``sigma`` of Inception's pool3 under TF's
    resize, protocol ``ttur``) as its images (:class:`BatchImages`) where its statistics cannot
    serve: for another encoder than Inception or another preprocessing ``mode``, and for
    dgm-eval's cut (``nsample``), which reads ``arr_0`` and ignores the statistics. Any other
    source as it is."""
    other = encoder != DEFAULT_ENCODER or mode != "ttur" or nsample is not None
    if other and _is_stats_path(source) and _holds_images(source):
        return BatchImages(source)
    return source


#: the preprocessing modes that reproduce dgm-eval's transforms (DINOv2's; both with --clean_resize)
DGM_EVAL_MODES = ("dgm-eval", "dgm-eval-clean")


def _dgm_eval_cut_note(counts: dict, files: dict, mode: str = "dgm-eval") -> None:
    """Under dgm-eval's resize (``mode``) without ``nsample``: warns when a set (``counts``:
    label -> images) or a statistics file (``files``: label -> :class:`Statistics` not cut)
    holds more than dgm-eval's default 50,000, which dgm-eval would cut."""
    big = [f"{label} holds {n} images" for label, n in counts.items() if n > DGM_EVAL_NSAMPLE]
    big += [f"{label} is of {st.n} images" for label, st in files.items()
            if st.n is not None and st.n > DGM_EVAL_NSAMPLE and st.extra.get("nsample") is None]
    if big:
        warnings.warn(f"{' and '.join(big)}; dgm-eval, whose resize --protocol {mode} reproduces, reads a seeded "
                      f"{DGM_EVAL_NSAMPLE} of each set (its --nsample default): add --nsample {DGM_EVAL_NSAMPLE} "
                      f"(nsample=) to score what it scores", FidkitWarning, stacklevel=3)


def _nsample_args(nsample, seed) -> tuple:
    """``nsample`` and ``nsample_seed`` checked: an image count of at least 2 (or None) and a
    seed numpy takes (0 to 2**32 − 1)."""
    if nsample is not None and (not _args.is_int(nsample) or nsample < 2):
        raise FidkitError(f"nsample must be an image count of at least 2 (dgm-eval's --nsample: 50000), got "
                          f"{_args.shown(nsample)}")
    if not _args.is_int(seed) or not 0 <= seed < 2 ** 32:
        raise FidkitError(f"nsample_seed must be an integer from 0 to 2**32 - 1, as numpy's seed (dgm-eval's --seed: "
                          f"13579), got {_args.shown(seed)}")
    return (None if nsample is None else int(nsample)), int(seed)


def _nsample_cut(source, images, n: int, seed: int, label: str | None, scan=None) -> tuple:
    """``images`` (listed from ``source``) cut as dgm-eval's ``--nsample n --seed seed`` cuts
    them, with a warning when dgm-eval would read the folder otherwise. Returns the images and
    ``{"nsample", "nsample_seed", "from"}`` (``from``: the images listed). ``scan``: the
    folder's :func:`fidkit.sources.dgm_eval_scan`, when one was taken."""
    picked, note = dgm_eval_subset(images, n, seed, source, scan)
    if note:
        warnings.warn(f"{label + ': ' if label else ''}{note}", FidkitWarning, stacklevel=3)
    return picked, {"nsample": n, "nsample_seed": seed, "from": len(images)}


def _nsample_file_check(label: str, st: Statistics, n: int, seed: int) -> None:
    """Warns when the statistics file ``st`` is not what dgm-eval's ``--nsample n --seed seed``
    would compare against: cut with other settings, or of more than n images and not cut."""
    who = f"{label} {st.source}" if st.source else label
    done, listed = (st.extra.get("nsample"), st.extra.get("nsample_seed")), st.extra.get("nsample_from")
    if done[0] is not None and not (done == (n, seed) or (listed is not None and listed <= min(n, done[0]))):
        # cut otherwise, unless neither cut would leave any image out
        warnings.warn(f"{who} were made with nsample {done[0]} and seed {done[1]}, not {n} and "
                      f"{seed}: they are not of the images dgm-eval would read; make them again with "
                      f"fidkit stats --nsample {n} --nsample-seed {seed}", FidkitWarning, stacklevel=3)
    elif done[0] is None and st.n is not None and st.n > n:
        warnings.warn(f"{who} are of {st.n} images, more than nsample {n}: dgm-eval would read a "
                      f"seeded {n} of them; make them with fidkit stats --nsample {n} (--nsample-seed {seed})",
                      FidkitWarning, stacklevel=3)


def _check_compatible(s1: Statistics, s2: Statistics, allow_mismatch: bool) -> None:
    if s1.encoder != s2.encoder:  # two feature spaces: never comparable, --allow-mismatch or not
        raise StatsError(f"statistics of two encoders: {s1.source or 'the first'} holds {s1.encoder!r} features, "
                         f"{s2.source or 'the second'} {s2.encoder!r}; compare statistics of one encoder")
    if s1.dim != s2.dim:
        raise StatsError(f"statistics have different feature dimensions ({s1.dim} and {s2.dim}); they come "
                         f"from different networks or layers")
    if not allow_mismatch:  # the pair's own provenance, both named (either may be what is in use)
        n1, n2 = s1.source or "the first statistics", s2.source or "the second statistics"
        if s1.protocol is not None and s2.protocol is not None and s1.protocol != s2.protocol:
            raise StatsError(f"{n1} was made with protocol {s1.protocol!r} and {n2} with {s2.protocol!r}; recompute one "
                             f"with the other's protocol, or pass --allow-mismatch (allow_mismatch=True)")
        d1, d2 = s1.weights_digest, s2.weights_digest
        if d1 is not None and d2 is not None and d1 != d2:
            raise StatsError(f"{n1} was made with weights {d1[:12]} and {n2} with weights {d2[:12]}; recompute one "
                             f"with the other's weights (--weights), or pass --allow-mismatch (allow_mismatch=True)")
    for st, label in ((s1, "first"), (s2, "second")):
        if st.n is not None and st.n <= st.dim:
            warnings.warn(f"the {label} set has {st.n} images, not more than the {st.dim} feature dimensions: its "
                          f"covariance is singular and FID is biased upward; compare only scores made with equal "
                          f"image counts", FidkitWarning, stacklevel=3)


@contextlib.contextmanager
def _small_n_warned():
    """For the sFID of sets whose FID was just computed: the too-few-images warning has been
    given for pool3's 2048 dimensions, which covers the spatial feature's 2023, so it is not
    repeated for each set."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*not more than the \d+ feature dimensions", category=FidkitWarning)
        yield


def frechet_distance(s1, s2, *, allow_mismatch: bool = False) -> FrechetResult:
    """Fréchet distance between two :class:`Statistics` (or ``(mu, sigma)`` pairs: real arrays
    of shapes (d,) and (d, d), used in float64), in float64.

    Refuses (:class:`StatsError`, one line) statistics of two encoders, made with different
    protocols or weights unless ``allow_mismatch``, complex or non-numeric pairs, and what
    :func:`fidkit.frechet.frechet_distance` refuses (NaN, asymmetric Σ, mismatched shapes);
    warns (:class:`FidkitWarning`) when a set has no more images than dimensions.
    Returns a :class:`~fidkit.frechet.FrechetResult`; ``float(result)`` or ``result.fid``
    is the FID (≥ 0).
    """
    allow_mismatch = _args.flag(allow_mismatch, "allow_mismatch")  # a safety check: "no" is not False

    def as_stats(s, i: int) -> Statistics:
        if isinstance(s, Statistics):
            s.validate(s.source or f"statistics {i}")  # shapes and values, before .dim or the provenance is read
            if not (isinstance(s.mu, np.ndarray) and isinstance(s.sigma, np.ndarray)):  # e.g. lists
                s = dataclasses.replace(s, mu=np.asarray(s.mu), sigma=np.asarray(s.sigma))
            return s
        if not (isinstance(s, (tuple, list)) and len(s) == 2):
            got = f"a {type(s).__name__} of length {len(s)}" if isinstance(s, (tuple, list)) else type(s).__name__
            raise StatsError(f"statistics {i} must be a Statistics or a (mu, sigma) pair, got {got}")
        return Statistics(real_array(s[0], f"mu{i}"), real_array(s[1], f"sigma{i}"))

    s1, s2 = as_stats(s1, 1), as_stats(s2, 2)
    _check_compatible(s1, s2, allow_mismatch)
    return _frechet_arrays(s1.mu, s1.sigma, s2.mu, s2.sigma)


@dataclass(frozen=True)
class FIDResult:
    """FID of two sources with what produced it: image counts, protocol, weights, timing."""

    fid: float
    #: the protocol (the encoder's mode) of both sides; where allow_mismatch let statistics of
    #: two protocols meet, both: ``"clean for A, ttur for B"`` (not a name --protocol takes)
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
    #: the encoder whose features were compared; ``fid`` holds the Fréchet distance in its space
    encoder: str = DEFAULT_ENCODER

    @property
    def fd_key(self) -> str:
        """The JSON key of the Fréchet distance: ``fid`` (Inception), ``fd_dinov2``, ``fd_clip``."""
        return get_info(self.encoder).fd_key

    def as_dict(self) -> dict:
        """Flat dict for JSON. ``network_precision`` is the network arithmetic (fp32, tf32, bf16);
        ``precision`` appears only with precision/recall (``--metrics pr``) and is that metric.
        The Fréchet distance is under :attr:`fd_key`, its value before clamping at 0 under
        ``<fd_key>_raw``; ``protocol`` is the encoder's mode (both sides' modes, "X for A, Y for B",
        where ``allow_mismatch`` let two meet)."""
        d = {self.fd_key: self.fid, "encoder": self.encoder, "protocol": self.protocol, "n_a": self.n_a, "n_b": self.n_b,
             "weights_digest": self.weights_digest, "device": self.device,
             "network_precision": self.network_precision, "seconds": round(self.seconds, 3)}
        terms = self.frechet.as_dict()
        d[f"{self.fd_key}_raw"] = terms.pop("fid_raw")  # fid_raw, fd_dinov2_raw, fd_clip_raw
        d.update({k: v for k, v in terms.items() if k != "fid"})
        d.update({k: v for k, v in (("skipped_a", self.skipped_a), ("skipped_b", self.skipped_b)) if v})
        d.update(self.scores)
        return d


METRICS = ("fid", "is", "kid", "pr", "sfid", "adm-pr", "is-adm", "is-stylegan", "is-dgm-eval", "kd-dgm-eval",
           "prdc-dgm-eval", "realism-dgm-eval", "ct-dgm-eval", "ct-test-dgm-eval", "ct-modified-dgm-eval",
           "fls-dgm-eval", "fd-inf", "cmmd", "authpct", "sw-approx", "vendi",
           "vendi-dgm-eval")
_METRIC_ALIASES = {"isc": "is", "prc": "pr", "prdc": "pr", "adm_pr": "adm-pr", "is_adm": "is-adm",
                   "is_stylegan": "is-stylegan", "is_dgm_eval": "is-dgm-eval", "kd_dgm_eval": "kd-dgm-eval",
                   "prdc_dgm_eval": "prdc-dgm-eval", "sw_approx": "sw-approx", "fd": "fid",
                   "fd-inf": "fd-inf", "fd_inf": "fd-inf", "fid-inf": "fd-inf", "fid_inf": "fd-inf",
                   "fd-infinity": "fd-inf", "vendi_dgm_eval": "vendi-dgm-eval", "fls_dgm_eval": "fls-dgm-eval",
                   "realism_dgm_eval": "realism-dgm-eval", "ct_dgm_eval": "ct-dgm-eval",
                   "ct_test_dgm_eval": "ct-test-dgm-eval", "ct_modified_dgm_eval": "ct-modified-dgm-eval"}
_METRIC_NAMES = {"is": "the Inception Score", "kid": "KID", "pr": "precision/recall",
                 "adm-pr": "ADM precision/recall", "is-adm": "the Inception Score (ADM)",
                 "is-stylegan": "the Inception Score (StyleGAN)", "is-dgm-eval": "the Inception Score (dgm-eval)",
                 "kd-dgm-eval": "dgm-eval's kd", "prdc-dgm-eval": "dgm-eval's prdc", "fls-dgm-eval": "dgm-eval's fls",
                 "realism-dgm-eval": "dgm-eval's realism", "ct-dgm-eval": "dgm-eval's ct",
                 "ct-test-dgm-eval": "dgm-eval's ct_test", "ct-modified-dgm-eval": "dgm-eval's ct_modified",
                 "sfid": "sFID",
                 "fd-inf": "FD∞", "cmmd": "CMMD", "authpct": "AuthPct", "sw-approx": "sliced W2 (approx.)",
                 "vendi": "the Vendi score", "vendi-dgm-eval": "dgm-eval's per-class Vendi score"}
#: metrics that read every image's features, of both sets
_PER_IMAGE = ("kid", "pr", "adm-pr", "cmmd", "authpct", "sw-approx", "kd-dgm-eval", "prdc-dgm-eval", "realism-dgm-eval",
              "ct-dgm-eval", "ct-test-dgm-eval", "ct-modified-dgm-eval", "fls-dgm-eval")
_LOGITS = ("is", "is-adm", "is-stylegan", "is-dgm-eval")  # metrics that read every generated image's logits
#: dgm-eval's metrics of its --test_path set's features (the CT variants, by their dgm-eval names, and fls)
_TEST_SET = {"ct-dgm-eval": "ct", "ct-test-dgm-eval": "ct_test", "ct-modified-dgm-eval": "ct_modified",
             "fls-dgm-eval": "fls"}
#: drawn from the state dgm-eval's cuts leave, by their dgm-eval names, in its order
_DGM_EVAL_DRAWN = {"kd-dgm-eval": "kd", "prdc-dgm-eval": "prdc", **_TEST_SET}
#: the named feature a metric reads, where it is not the encoder's default feature (any encoder's
#: FD, KID, precision/recall, FD∞ and bootstrap read that one). Which encoders can give a metric
#: follows from their outputs; metric code never names an encoder.
METRIC_FEATURES = {"sfid": "spatial", "is": "logits", "is-adm": "logits", "is-stylegan": "logits",
                   "is-dgm-eval": "logits", "adm-pr": "pool3",
                   "cmmd": "embedding"}


def check_metrics(wanted, encoder=None) -> None:
    """Refuses, in one line, a metric the encoder cannot give, naming the encoders that can."""
    info = get_info(encoder.name if isinstance(encoder, Encoder) else encoder)
    for m in wanted:
        need = METRIC_FEATURES.get(m)
        if need is not None and need not in info.outputs:
            raise FidkitError(f"{m} ({_METRIC_NAMES.get(m, m)}) needs the {need!r} feature, which encoder "
                              f"{info.name!r} does not give; use --encoder {' or '.join(encoders_with(need))}")


def parse_metrics(metrics) -> tuple:
    """Metric names from ``"fid,kid,pr"`` or an iterable: a tuple of fid (alias fd), is, kid, pr, sfid,
    adm-pr, is-adm, is-stylegan, is-dgm-eval, kd-dgm-eval, prdc-dgm-eval, realism-dgm-eval, ct-dgm-eval,
    ct-test-dgm-eval, ct-modified-dgm-eval, fls-dgm-eval, fd-inf, cmmd, authpct,
    sw-approx, vendi, vendi-dgm-eval (fid first: the Fréchet distance in the encoder's space)."""
    try:
        items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    except TypeError:
        items = None
    if items is None or not all(isinstance(m, str) for m in items):
        raise FidkitError(f"metrics must be a comma-separated string or an iterable of metric names, got "
                          f"{_args.shown(metrics)}")
    out = ["fid"]
    for m in items:
        m = _METRIC_ALIASES.get(str(m).strip().lower(), str(m).strip().lower())
        if m not in METRICS:
            raise FidkitError(f"unknown metric {m!r}; choose from {', '.join(METRICS)} (comma-separated)")
        out.append(m)
    return tuple(dict.fromkeys(out))


def _holds_features(source) -> bool:
    """A statistics file written by fidkit (or a :class:`Statistics`) that keeps every image's
    feature vector (``fidkit stats --features``: ``features``, with ``per_image_features`` in its
    ``fidkit_meta``; another tool's array of that name is not taken for them)."""
    if isinstance(source, Statistics):
        return source.features is not None
    if not (isinstance(source, (str, Path)) and str(source).lower().endswith(".npz") and os.path.isfile(source)
            and {"features", "fidkit_meta"} <= npz_members(source) and npz_kind(source) == "stats"):
        return False
    return Statistics.keeps_features(source)


@dataclass(frozen=True)
class _Kind:
    """What a source is, read from its file once (:func:`_kind_of`): ``stats`` (a statistics file or
    :class:`Statistics`), and of such, whether it also holds its ``images`` (an ADM reference batch)
    and whether it keeps per-image ``features`` (``fidkit stats --features``)."""

    stats: bool = False
    images: bool = False
    features: bool = False

    @property
    def stats_only(self) -> bool:
        """Statistics without images or per-image features: no per-image metric can use them."""
        return self.stats and not self.images and not self.features


def _kind_of(source) -> _Kind:
    """The :class:`_Kind` of ``source``; an image source (or a path that does not exist) is none of them."""
    if not _is_stats(source):
        return _Kind()
    return _Kind(True, _holds_images(source), _holds_features(source))


def _refuse_stats_file(source, metric: str, features_serve: bool = True, kind: _Kind | None = None) -> None:
    """Refuses, in one line, a statistics file for a metric that needs every image's features
    (``features_serve``: per-image features kept in the file serve it) or logits (False).
    ``kind``: the source's :class:`_Kind` when the caller has it (else read here)."""
    kind = _kind_of(source) if kind is None else kind
    if kind.stats and not kind.images and not (features_serve and kind.features):
        what = "features" if features_serve else "logits"
        kept = " (its per-image features are not logits)" if kind.features else ""
        make = ", or make the file with fidkit stats --features" if features_serve else ""
        raise StatsError(f"{_METRIC_NAMES.get(metric, metric)} needs the {what} of every image, which a "
                         f"statistics file does not keep ({_named(source)}){kept}; give the image folder or sample batch "
                         f"instead{make}")


def _file_features(source, st: Statistics) -> np.ndarray:
    """The per-image features a statistics file (or :class:`Statistics`) keeps: float32 (n, d)."""
    if isinstance(source, Statistics):
        if source.features is None:
            raise StatsError(f"{source.source or 'these statistics'} keep no per-image features; compute them with "
                             f"keep_features=True, or give the images")
        return source.checked_features(source.features)
    return Statistics.load_features(source, st)


def _functional_file_features(source, protocol: str | None, kw: dict) -> np.ndarray:
    """The per-image features a statistics file keeps, for :func:`features`, :func:`kid` and
    :func:`precision_recall`: its encoder and protocol checked as :func:`compute_stats` checks
    them, and its weights against those ``kw`` name (as :func:`compare` checks a lone file)."""
    enc = kw.get("encoder")
    st = compute_stats(source, protocol, encoder=enc)
    if st.weights_digest:
        check_provenance(st, None, _digest_in_use(enc, mode_of(enc, protocol), kw))
    return _file_features(source, st)


def _digest_in_use(enc, mode: str, kw: dict) -> str | None:
    """The weights digest of the network that ``kw`` (``weights``, ``encoder_weights``, ``device``,
    ``precision``) name for encoder ``enc`` in preprocessing ``mode``: what a statistics file's
    recorded digest is checked against when no pass computes one."""
    return encoder_for(enc, mode, weights=kw.get("weights"), encoder_weights=kw.get("encoder_weights"),
                       device=kw.get("device", "auto"), precision=kw.get("precision", "fp32")).weights_digest


def _named(source) -> str:
    """A source as one line names it: a path as it is, a :class:`Statistics` by its ``source``
    (never its repr, which prints the arrays over many lines), anything else by its type."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, Statistics):
        return source.source or "the Statistics given"
    return f"the {type(source).__name__} given"


def _side_label(side: str, source) -> str:
    """``A real/`` on the progress bar: which side of a comparison is being read."""
    return f"{side} {source}" if isinstance(source, (str, Path)) else side


def _one_pass(source, protocol: str, keep: bool, logits: bool, spatial: bool, kw: dict,
              allow_mismatch: bool, file_stats: Statistics | None = None,
              batch: BatchImages | None = None, kind: _Kind | None = None,
              float32_means: bool = False) -> Extraction:
    """Statistics (and, when asked, per-image features) of one source, in at most one pass.

    A statistics file gives its statistics as they are; when it also holds its images (an ADM
    reference batch) and per-image features or statistics it lacks (sFID) are needed, those
    images go through the network once, and the file's own statistics still win, as in ADM's
    evaluator. ``Extraction.stats_from_file`` says which features came from the file. ``kind``:
    the source's :class:`_Kind` when the caller has it (else read here). ``float32_means``: the
    computed features' means also as the evaluator takes them (``Extraction.means32``).
    """
    kind = _kind_of(source) if kind is None else kind
    if not kind.stats:
        if not (keep or logits or spatial or float32_means):
            return Extraction(compute_stats(source, protocol, allow_mismatch=allow_mismatch, dgm_eval_note=False,
                                            **kw))
        return extract(source, protocol, keep_features=keep, logits=logits, spatial=spatial,
                       float32_means=float32_means, **kw)
    st = file_stats if file_stats is not None else compute_stats(source, protocol, allow_mismatch=allow_mismatch,
                                                                 encoder=kw.get("encoder"), dgm_eval_note=False)
    from_file = (st.extra.get("feature", "pool3"),) + (("spatial",) if st.spatial is not None else ())
    missing_spatial = spatial and st.spatial is None
    if not (keep or logits or missing_spatial):
        return Extraction(st, stats_from_file=from_file)
    if not (logits or missing_spatial) and kind.features:  # fidkit stats --features
        return Extraction(st, _file_features(source, st), stats_from_file=from_file + ("features",))
    if not kind.images:
        if missing_spatial:
            st.feature("spatial")  # one line: how to make a file with spatial statistics
        _refuse_stats_file(source, "is" if logits else "adm-pr", features_serve=not logits, kind=kind)
    ex = extract(batch if batch is not None else BatchImages(source), protocol, keep_features=keep, logits=logits,
                 spatial=missing_spatial, float32_means=float32_means and missing_spatial, **kw)
    if st.weights_digest is None:  # recorded-unknown weights: the file's statistics, the pass's images
        check_provenance(ex.stats, st.protocol, None, allow_mismatch)
    if missing_spatial:
        st.named["spatial"] = ex.stats.spatial
    return Extraction(st, ex.features, ex.logits, from_file, {k: m for k, m in ex.means32.items() if k == "spatial"})


def _load_files(sources: dict, kinds: dict, protocol: str, enc, allow_mismatch: bool, spatial: bool,
                biased: bool) -> dict:
    """Each statistics file among ``sources`` (``"a"``/``"b"`` -> source, of :class:`_Kind` ``kinds[side]``) loaded once, before any
    pass, its warnings shown once: its encoder checked, and its protocol unless
    ``allow_mismatch``; refused in one line when it lacks what was asked for: spatial
    statistics (sFID) with no images to compute them from, an image count for a 1/N
    covariance (``biased``). Returns side -> :class:`Statistics`."""
    out = {}
    for side, src in sources.items():
        if kinds[side].stats:
            # a file's warnings (a plain mu/sigma file's unknown provenance) are shown only once it
            # is accepted: a refused file gets its one line, not a warning before it
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                st = compute_stats(src, protocol, allow_mismatch=allow_mismatch, encoder=enc, dgm_eval_note=False)
                if spatial and not kinds[side].images:
                    st.feature("spatial")  # one line: how to make a file with spatial statistics
                if biased:
                    _check_biased_n(side.upper(), st.n)
            for w in said:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            out[side] = st
    return out


def _check_counts(wanted, pr_k: int, counts: dict, cut: str = "", dgm_eval_k: int = _scores.DGM_EVAL_NEAREST_K) -> None:
    """Refuses, in one line and before any pass, an image source too small for the Fréchet
    distance or a metric asked for. ``counts``: ``"a"``/``"b"`` -> the images that side will
    read (a statistics file has none), ``"t"`` the test set; ``cut``: the
    sides (``"b"``, ``"ab"``) that ``subset`` or
    ``nsample`` cut. The
    metrics check their features again (files skipped with ``skip_bad``)."""
    needs = {"fid": ("ab", 2, "the Fréchet distance needs at least 2 images in each set (thousands for a "
                              "meaningful one)"),
             "kid": ("ab", 2, "KID needs at least 2 images in each set"),
             "authpct": ("a", 2, "AuthPct needs at least 2 images in A (a real image's nearest other)"),
             "pr": ("ab", pr_k + 1, f"pr with k = {pr_k} (--pr-k, pr_k=) needs more than {pr_k} images in each set"),
             "kd-dgm-eval": ("ab", 2, "dgm-eval's kd needs at least 2 images in each set"),
             "prdc-dgm-eval": ("ab", dgm_eval_k + 2, f"dgm-eval's prdc with k = {dgm_eval_k} (--pr-k, pr_k=) needs at "
                                                     f"least {dgm_eval_k + 2} images in each set (its argpartition)"),
             "realism-dgm-eval": ("ab", dgm_eval_k + 2, f"dgm-eval's realism, of its prdc with k = {dgm_eval_k} (--pr-k, "
                                                        f"pr_k=), needs at least {dgm_eval_k + 2} images in each set"),
             "adm-pr": ("ab", _scores.ADM_K + 1, f"adm-pr (k = {_scores.ADM_K}) needs more than {_scores.ADM_K} "
                                                f"images in each set"),
             "is": ("b", _scores.IS_SPLITS, f"the Inception Score needs at least {_scores.IS_SPLITS} images "
                                            f"(its splits) in B"),
             "is-stylegan": ("b", _scores.IS_SPLITS, f"StyleGAN's Inception Score needs at least "
                                                     f"{_scores.IS_SPLITS} images (its splits) in B"),
             "is-dgm-eval": ("b", _scores.IS_SPLITS, f"dgm-eval's Inception Score needs at least "
                                                     f"{_scores.IS_SPLITS} images (its splits) in B")}
    fls_why = ("dgm-eval's fls needs at least 4 images in A (its train set, which it splits in two) and 2 in B "
               "and in the test set")
    needs["fls-dgm-eval"] = [("a", 4, fls_why), ("bt", 2, fls_why)]  # a metric with per-side minima: a list
    pca = _scores.DGM_EVAL_CT_COMPONENTS
    for m, fitted, cut_of, gen in (("ct-dgm-eval", "a", "A", "b"), ("ct-test-dgm-eval", "t", "the first half of the "
                                                                    "test set", "b"),
                                   ("ct-modified-dgm-eval", "b", "B", "a")):
        why = (f"{_METRIC_NAMES[m]} fits its {pca}-component PCA and k-means to {cut_of}, which needs at least {pca} "
               f"images, and keeps only k-means cells of more than 20 of {'B' if gen == 'b' else 'A'}'s images")
        needs[m] = [(fitted, 2 * pca if fitted == "t" else pca, why), (gen, 21, why), ("t", 1, why)]
    names = {"a": "A", "b": "B", "t": "the test set"}
    for m in wanted:
        spec = needs.get(m, [])
        for sides, least, why in (spec if isinstance(spec, list) else [spec]):
            for side in sides:
                if side in counts and counts[side] < least:
                    held = "'s subset holds" if side in cut else " holds"
                    raise StatsError(f"{names[side]}{held} {counts[side]} image(s): {why}")
    if "fd-inf" in wanted and "b" in counts:
        problem = _distances.fd_infinity_refusal(counts["b"])
        if problem:
            raise StatsError(problem)


def _dgm_eval_drawn(wanted, fa, fb, info: dict, nsample: int | None, seed: int, k: int,
                    reduced_n: int = _scores.DGM_EVAL_REDUCED_N, ft=None, device="cpu") -> dict:
    """dgm-eval's ``kd``, ``prdc`` and ``fls`` of A (real) against B, their subsets drawn as
    dgm-eval draws them: from numpy's global generator in the state its ``--nsample`` cut left it
    (:func:`fidkit.sources.dgm_eval_generator`), in its order: ``kd``'s 200 draws, then
    ``prdc``'s, then those of the PCA and k-means of ``ct``, ``ct_test`` and ``ct_modified``
    (:func:`fidkit.scores.dgm_eval_ct`), then ``fls``'s, each only when asked for (so ``prdc-dgm-eval`` alone is
    dgm-eval's ``--metrics prdc`` without ``kd``). Where no set was cut, dgm-eval draws from
    an unseeded generator: the draws here come from ``RandomState(seed)``, and a warning says so
    when they pick a proper subset or, for ``fls``, split the train set (its values then vary from
    run to run), and suggests ``--nsample 50000`` when dgm-eval's default would have cut a set.
    Rows missing from the features (files skipped as undecodable) shift every draw: warned, and
    not called replayed. ``fa``/``fb``/``ft`` (``ft``: the ``--test_path`` set of ``fls``, else
    None; ``ct`` reads it too): the features in dgm-eval's row order; ``info``: ``nsample_from_a``/``_b``/``_t``, the
    images each set held before the cut (``_t`` without ``ft``: a ``--test_path`` set read for
    its count, whose cut seeds the draws when the generated set is not cut). Keys ``dgm_eval_kd_value``, ``dgm_eval_kd_variance``,
    ``dgm_eval_precision``, ..., ``dgm_eval_nearest_k``, ``dgm_eval_fls``, ``dgm_eval_fls_overfit``,
    ``dgm_eval_fls_reduced_n``, ``dgm_eval_ct``, ``dgm_eval_ct_test``, ``dgm_eval_ct_modified``, ``dgm_eval_draws`` (``"replayed"``, ``"seeded here"`` or
    ``"not dgm-eval's"``) and ``dgm_eval_draw_order`` (``"kd,prdc,fls"``, the draws made, in
    order; ``prdc+realism`` where ``realism-dgm-eval`` is asked too: dgm-eval's ``--metrics
    prdc,realism``, whose ``prdc`` then draws the real rows only and keeps every fake row, and
    ``dgm_eval_realism`` holds each fake row's realism score, in B's row order: huge, or ``inf``
    (counted in ``dgm_eval_realism_infinite``), for an exact copy of a real row with a small ball). ``reduced_n``: dgm-eval's ``--reduced_n``, the subsample of ``prdc`` and ``fls``
    (10,000). ``device``: where ``fls`` fits its bandwidths."""
    sets = {"a": fa, "b": fb, **({"t": ft} if ft is not None else {})}
    totals = {side: info.get(f"nsample_from_{side}") or len(f) for side, f in sets.items()}
    if ft is None and info.get("nsample_from_t") is not None:  # a test set read for its count: its cut seeds
        totals["t"] = info["nsample_from_t"]
    rng = dgm_eval_generator(totals["a"], totals["b"], nsample, seed, totals.get("t"))
    realism = "realism-dgm-eval" in wanted  # computed by prdc, whose fake rows it then leaves undrawn
    order = [name for m, name in _DGM_EVAL_DRAWN.items() if m in wanted]
    out: dict = {"dgm_eval_draws": "replayed" if rng is not None else "seeded here",
                 "dgm_eval_draw_order": ",".join(m + ("+realism" if m == "prdc" and realism else "") for m in order)}
    rows = {side: min(t, nsample) if nsample is not None else t for side, t in totals.items()}
    if any(len(sets[side]) != rows[side] for side in sets):
        out["dgm_eval_draws"] = "not dgm-eval's"
        held = " and ".join(str(len(f)) for f in sets.values())
        warnings.warn(f"the features hold {held} rows where dgm-eval would hold "
                      f"{' and '.join(str(rows[side]) for side in sets)} "
                      f"(images skipped as undecodable, at which dgm-eval would stop, or a statistics file not "
                      f"cut as it cuts): the subsets of its "
                      f"{' and '.join(order)} index other rows, so these are not its values", FidkitWarning,
                      stacklevel=3)
    if rng is None:
        rng = np.random.RandomState(seed)
        reduced = min(reduced_n, len(fa), len(fb))
        parts = [m for m, proper in (("kd", min(1000, len(fa), len(fb)) < max(len(fa), len(fb))),
                                     ("prdc", reduced < (len(fa) if realism else max(len(fa), len(fb)))),
                                     ("ct", True), ("ct_test", True), ("ct_modified", True),  # PCA and k-means
                                     ("fls", True)) if m in order and proper]  # fls splits the train set by draw
        biggest = max(totals.values())
        if parts and nsample is None and biggest > DGM_EVAL_NSAMPLE:
            warnings.warn(f"dgm-eval's default --nsample {DGM_EVAL_NSAMPLE} would cut a set of {biggest} "
                          f"images, which seeds the draws of its {' and '.join(parts)}: give --nsample "
                          f"{DGM_EVAL_NSAMPLE} (nsample=) to read the images it reads and replay them; these draw "
                          f"from RandomState({seed})", FidkitWarning, stacklevel=3)
        elif parts:
            counts = " and ".join(str(t) for t in totals.values())
            warnings.warn(f"dgm-eval draws the subsets of its {' and '.join(parts)} from numpy's global generator, "
                          f"which it seeds only when --nsample cuts a set, and {'neither' if len(totals) == 2 else 'no'} set "
                          f"is cut here ({counts} "
                          f"images{'' if nsample is None else f', nsample {nsample}'}): its own values vary "
                          f"from run to run; these draw from RandomState({seed}) (--nsample-seed)", FidkitWarning,
                          stacklevel=3)
    if "kd" in order:
        kd = _scores.dgm_eval_kd(fa, fb, rng)
        out.update(dgm_eval_kd_value=kd.mean, dgm_eval_kd_variance=kd.std)
    if "prdc" in order:
        prdc = _scores.dgm_eval_prdc(fa, fb, rng, k=k, reduced_n=reduced_n, realism=realism)
        if realism:
            values = prdc.pop("realism")
            out.update(dgm_eval_realism=[float(v) for v in values],
                       dgm_eval_realism_infinite=int(np.isinf(values).sum()))  # copies whose distance rounded to 0
        out.update({f"dgm_eval_{key}": v for key, v in prdc.items()}, dgm_eval_nearest_k=k)
    for variant in _scores.DGM_EVAL_CT_VARIANTS:  # PCA's and k-means' draws, after prdc's, in its order
        if variant in order:
            out[f"dgm_eval_{variant}"] = _scores.dgm_eval_ct(fa, ft, fb, rng, variant)
    if "fls" in order:
        fls = _scores.dgm_eval_fls(*_scores.dgm_eval_fls_sets(fa, ft, fb, rng, reduced_n), device=device)
        out.update(dgm_eval_fls=fls.fls, dgm_eval_fls_overfit=fls.fls_overfit, dgm_eval_fls_reduced_n=fls.reduced_n)
    return out


def _decoded(images, skipped: list) -> list:
    """For each of ``images`` (a side's :class:`Images` after any cut), whether it is a row of
    that side's features: not among the files ``skipped`` as undecodable."""
    gone = set(skipped)
    return [images.path(i) not in gone for i in range(len(images))]


def _row_files(images, skipped: list) -> list | None:
    """The file of each row of a side's features: ``images`` (None for a statistics file) less
    the files ``skipped`` as undecodable (:func:`_decoded`), in order."""
    if images is None:
        return None
    return [images.path(i) for i, kept in enumerate(_decoded(images, skipped)) if kept]


def _dgm_eval_vendi(fb: np.ndarray, labels: np.ndarray, follows: bool, images, skipped: list) -> dict:
    """dgm-eval's ``vendi`` of B (:func:`fidkit.scores.dgm_eval_vendi_per_class`): ``fb`` B's features,
    ``labels`` the label dgm-eval gives each of B's ``images`` (:func:`fidkit.sources.dgm_eval_row_labels`),
    ``follows`` whether those are the images' own class folders, ``skipped`` the files left out of
    ``fb`` as undecodable. Keys ``dgm_eval_vendi_per_class_mean`` (its ``mean vendi per class``),
    ``dgm_eval_vendi_per_class`` (each class's, as it saves them) and ``dgm_eval_vendi_labels``
    (``"its folders"``, ``"dgm-eval's, not its folders"`` or ``"not dgm-eval's"``), with a warning for
    the last two."""
    how = "its folders" if follows else "dgm-eval's, not its folders"
    if skipped:  # rows left out: their labels with them; dgm-eval would have stopped at such a file
        labels = labels[_decoded(images, skipped)]
        how = "not dgm-eval's"
        warnings.warn(f"B: {len(skipped)} image(s) skipped as undecodable, at which dgm-eval would stop: the "
                      f"per-class Vendi scores are of the images decoded, not dgm-eval's", FidkitWarning, stacklevel=3)
    elif not follows:
        warnings.warn("B: dgm-eval numbers its class folders in numeric order (2/ before 10/) but reads their images "
                      "in path order (10/ before 2/), and its labels keep the first order: the 'classes' of its mean "
                      "Vendi score per class, replayed here, mix images of different folders", FidkitWarning,
                      stacklevel=3)
    per_class = _scores.dgm_eval_vendi_per_class(fb, labels)
    return {"dgm_eval_vendi_per_class_mean": float(per_class.mean()),
            "dgm_eval_vendi_per_class": [float(v) for v in per_class], "dgm_eval_vendi_labels": how}


def _check_biased_n(label: str, n) -> None:
    if n is None:
        raise StatsError(f"{label}: its statistics do not record an image count, which a 1/N covariance needs; "
                         f"compute them with fidkit (fidkit stats) or leave out the 1/N covariance")
    if n < 2:
        raise StatsError(f"{label}: {n} image; a 1/N covariance (as any) needs at least 2")


def compare(a, b, protocol: str | None = None, *, allow_mismatch: bool = False, metrics=("fid",),
            seed: int = _scores.DEFAULT_SEED, bootstrap: int = 0, test=None, **kw) -> FIDResult:
    """FID between sources ``a`` and ``b`` with details; ``kw`` as for :func:`compute_stats`.

    A source is an image folder, an archive (``.zip``, ``.tar``, ``.tar.gz``, a pattern of tar
    shards), a sample batch (``.npz`` with ``arr_0``, ``.npy``), a list of image paths,
    uint8 images (numpy (N, H, W, 3) or torch (N, 3, H, W), values 0..255), a statistics file or a :class:`Statistics`. A path that does not
    exist is refused before either source is read.

    ``encoder`` (in ``kw``; default Inception) names the feature space: every metric below reads
    that encoder's default feature, except those that need a named one (:data:`METRIC_FEATURES`:
    ``sfid``, ``is``, ``is-adm``, ``is-stylegan``, ``is-dgm-eval``, ``adm-pr`` Inception's, ``cmmd`` CLIP's
    ``embedding``), which are
    refused in one line for an encoder that lacks it. ``protocol`` is the encoder's
    preprocessing mode (None: its default). With ``encoder="dinov2-vitl14"`` ``result.fid`` is
    FD_DINOv2 (JSON key ``fd_dinov2``). ``fd-inf`` adds FD∞ of ``b`` against ``a``
    (``<fd key>_inf``, e.g. ``fid_inf``, with the fit: ``..._inf_slope``, ``..._inf_sizes``,
    ``..._inf_values``); ``cmmd`` adds CMMD (CLIP).

    ``metrics`` (names or ``"fid,kid,pr"``) adds scores read from the same single pass over
    each source (FID is always computed): ``kid`` (KID of a vs b), ``pr`` (precision,
    recall, density, coverage with ``a`` the real set and ``b`` the generated one,
    torch-fidelity's, with ``pr_k`` nearest neighbours: 3 by default as there;
    recorded as ``pr_k``), ``is`` (Inception Score of ``b``, the generated set; needs weights
    with the classifier), ``sfid`` (the Fréchet distance of the spatial feature, as
    guided-diffusion's evaluator), ``adm-pr`` (precision and recall as that evaluator
    computes them), ``is-adm`` (its Inception Score: chunks of 5000, no shuffle, mean) and
    ``is-stylegan`` (StyleGAN2-ADA's/StyleGAN3's ``is50k``: 10 consecutive splits, mean and
    population std, keys ``stylegan_is_mean``, ``stylegan_is_std``; with ``protocol="nvidia"``)
    and ``is-dgm-eval`` (dgm-eval's ``is``: :func:`fidkit.scores.dgm_eval_inception_score`, keys
    ``dgm_eval_is_mean``, ``dgm_eval_is_std``; with ``protocol="pytorch-fid"``).
    ``authpct`` and ``sw-approx`` add dgm-eval's AuthPct (``authpct``, percent of B's images
    strictly farther from their nearest A image than that image is from its nearest other A
    image) and approximate sliced W2 (``sw_approx``), on the encoder's default feature;
    ``vendi`` the Vendi score of B (``vendi``: :func:`fidkit.scores.vendi_score`, cosine
    similarity, q = 1), the effective number of distinct generated images in that space;
    ``vendi-dgm-eval`` dgm-eval's ``vendi``, the mean of that score over B's class folders with
    the class labels dgm-eval gives B's images (:func:`_dgm_eval_vendi`; B a folder of class folders).
    ``kd-dgm-eval`` and ``prdc-dgm-eval`` add dgm-eval's ``kd`` and ``prdc`` (k = ``pr_k``,
    default 5), their subsets drawn as dgm-eval draws them after the cut of ``nsample``
    (``reduced_n``: dgm-eval's ``--reduced_n``, the subsample of its ``prdc`` and ``fls``, 10,000)
    (:func:`_dgm_eval_drawn`: keys ``dgm_eval_kd_value``, ``dgm_eval_precision``, ...).
    ``fls-dgm-eval`` adds dgm-eval's ``fls`` and ``fls_overfit`` (:func:`fidkit.scores.dgm_eval_fls`;
    keys ``dgm_eval_fls``, ``dgm_eval_fls_overfit``, ``dgm_eval_fls_reduced_n``) with ``a`` its
    train set and ``test`` its ``--test_path`` set, a source like ``a`` and ``b`` (images, or a
    statistics file that keeps per-image features) of real images the generator never saw, read
    in the same pass settings and cut by ``nsample`` as dgm-eval cuts it; its draws follow
    ``kd``'s and ``prdc``'s. ``ct-dgm-eval``, ``ct-test-dgm-eval`` and ``ct-modified-dgm-eval`` add
    dgm-eval's ``ct``, ``ct_test`` and ``ct_modified`` (:func:`fidkit.scores.dgm_eval_ct`, which
    needs scikit-learn; keys ``dgm_eval_ct``, ...) of the same three sets, their draws between
    ``prdc``'s and ``fls``'s. With ``kd-dgm-eval`` or ``prdc-dgm-eval`` and none of those,
    ``test`` is listed and counted, not read through the network: dgm-eval reads a ``--test_path``
    set whatever its metrics, and where ``nsample`` cuts it but not the generated set, that cut
    seeds their draws (recorded: ``n_test``, and ``test_read: "count only"``).
    They land in ``result.scores`` with keys ``kid_mean``, ``kid_std``, ``precision``,
    ``recall``, ``density``, ``coverage``, ``isc_mean``, ``isc_std``, ``sfid``,
    ``adm_precision``, ``adm_recall`` (with ``adm_pr_distances``, their arithmetic: ``adm_distances=``,
    default float16 as in ADM), ``adm_inception_score``; ``seed`` seeds KID's subsets
    and the IS shuffle (torch-fidelity's default 2020). Statistics files serve ``fid`` and
    ``sfid`` (when they hold ``mu_s``/``sigma_s``); the per-image metrics need images (an
    ADM reference batch holds both: its statistics are used, its images feed the rest; with another
    encoder than Inception or with ``nsample`` its images serve every metric).
    ``bootstrap`` = B > 0 adds a 95% percentile interval of the FID from B resamples of the
    features (``fid_ci_low``, ``fid_ci_high``, ``fid_bootstrap_std``,
    ``bootstrap_resamples``; ``fd_dinov2_ci_low`` etc. with another encoder); a statistics
    file among the sources stays fixed (one that keeps per-image features is resampled as its
    images would be). ``biased_covariance=True`` normalises both covariances
    by 1/N for the Fréchet distance, as StyleGAN2-ADA/StyleGAN3's metrics do (fidkit, TTUR and
    EDM use 1/(N−1)); it is recorded as ``scores["covariance"] = "1/N"``, needs both image
    counts, and with ``protocol="nvidia"`` gives StyleGAN's FID. ``subset=N`` scores, of B's
    images (the generated set; B may not be a statistics file), the N that EDM's and EDM2's
    metric scripts (``--num N --seed S``, which pick generated images only) would pick with
    ``subset_seed=S`` (:func:`fidkit.sources.seeded_subset`); B with fewer is refused before
    any pass, and a warning says when they would number B's folder or zip differently
    (:func:`fidkit.sources.nvidia_listing_note`); recorded as ``subset_n``, ``subset_seed`` and
    ``subset_from``, the images B held. ``nsample=N`` cuts each image set with more than N
    images, A and B, to the N that dgm-eval's ``--nsample N --seed S`` reads
    (``nsample_seed=S``, default 13579; :func:`fidkit.sources.dgm_eval_subset`, which follows
    dgm-eval's order of a folder), with a warning when dgm-eval would read other files of a
    folder and when a statistics file is not of the images it would read; recorded as ``nsample``,
    ``nsample_seed`` and ``nsample_from_a``/``nsample_from_b``, the images each set held. Without
    it, ``protocol="dgm-eval"`` or ``"dgm-eval-clean"`` warns when a set or statistics file
    holds more than dgm-eval's default 50,000.

    ``means="float32"`` takes the means of ``fid`` and ``sfid`` as clean-fid, torch-fidelity
    and guided-diffusion's evaluator do: ``np.mean`` of the float32 features (a float32 sum in
    reading order) and a statistics file's means as it stores them, subtracted in numpy's
    dtype of the two (:func:`fidkit.frechet.mean_term_as_held`); recorded as
    ``scores["means"]``. The default ``"float64"`` is fidkit's own statistics (TTUR,
    pytorch-fid, torchmetrics, EDM and StyleGAN take float64 means). The covariances, the
    trace term and every other metric are the same either way.
    """
    t0 = time.perf_counter()
    allow_mismatch = _args.flag(allow_mismatch, "allow_mismatch")  # a safety check: "no" is not False
    seed = _args.seed(seed, "seed (of kid's subsets, the IS splits, the bootstrap)")
    bootstrap = _args.count(bootstrap, "bootstrap", 0, FidkitError, " (resamples; 0: none)")
    if bootstrap == 1:  # before any pass, not after both
        raise FidkitError("bootstrap must be 0 (none) or at least 2 resamples, got 1")
    if "label" in kw:
        raise FidkitError("compare() names its two sources itself ('A path', 'B path'); leave out label")
    check_pass_args(kw, "compare", also=("adm_distances", "biased_covariance", "pr_k", "subset", "subset_seed",
                                         "nsample", "nsample_seed", "means", "reduced_n"), without=("label",))
    means = kw.pop("means", _scores.DEFAULT_MEANS)
    if means not in _scores.MEANS:  # before any pass
        raise FidkitError(f"means must be one of {', '.join(_scores.MEANS)}, got {_args.shown(means)}")
    float32_means = means == "float32"
    wanted = parse_metrics(metrics)
    enc = kw.get("encoder")
    enc_name = enc.name if isinstance(enc, Encoder) else get_info(enc).name
    check_metrics(wanted, enc)
    protocol = mode_of(enc, protocol)
    adm_distances = kw.pop("adm_distances", _scores.ADM_DEFAULT_DISTANCES)
    if adm_distances not in _scores.ADM_DISTANCES:  # before any pass, not after both
        raise FidkitError(f"adm_distances must be one of {', '.join(_scores.ADM_DISTANCES)}, got {adm_distances!r}")
    biased = kw.pop("biased_covariance", False)
    if not isinstance(biased, bool):
        raise FidkitError(f"biased_covariance must be True or False, got {biased!r}")
    if biased and (bootstrap > 0 or "fd-inf" in wanted or "sfid" in wanted):
        raise FidkitError("a 1/N covariance (biased_covariance, StyleGAN's) applies to the Fréchet distance alone; "
                          "leave out sfid, fd-inf and the bootstrap, which no evaluator computes that way")
    pr_k = kw.pop("pr_k", None)
    if pr_k is not None and (not _args.is_int(pr_k) or pr_k < 1):
        raise FidkitError(f"pr_k must be a positive integer (torch-fidelity's 3, dgm-eval's 5), got "
                          f"{_args.shown(pr_k)}")
    # k of pr (torch-fidelity's default 3) and of prdc-dgm-eval (dgm-eval's --nearest_k, 5)
    dgm_eval_k = _scores.DGM_EVAL_NEAREST_K if pr_k is None else int(pr_k)
    pr_k = 3 if pr_k is None else int(pr_k)
    # dgm-eval's --reduced_n: the subsample of its prdc (k + 2 rows at least) and fls (2)
    reduced_n = _args.count(kw.pop("reduced_n", _scores.DGM_EVAL_REDUCED_N), "reduced_n", 1, FidkitError,
                            " (dgm-eval's --reduced_n, 10000)")
    for m, least in (("prdc-dgm-eval", dgm_eval_k + 2), ("fls-dgm-eval", 2)):
        if m in wanted and reduced_n < least:  # before any pass
            raise FidkitError(f"reduced_n (dgm-eval's --reduced_n) is {reduced_n}, but {_METRIC_NAMES[m]} needs at "
                              f"least {least} rows in its subsample")
    subset, subset_seed = kw.pop("subset", None), kw.pop("subset_seed", 0)
    if subset is not None and (not _args.is_int(subset) or subset < 2):
        raise FidkitError(f"subset must be an image count of at least 2 (EDM's and EDM2's --num: 50000), "
                          f"got {_args.shown(subset)}")
    if not _args.is_int(subset_seed):
        raise FidkitError(f"subset_seed must be an integer (EDM's and EDM2's --seed: 0), got {_args.shown(subset_seed)}")
    nsample, nsample_seed = _nsample_args(kw.pop("nsample", None), kw.pop("nsample_seed", DGM_EVAL_SEED))
    if nsample is not None and subset is not None:
        raise FidkitError("subset (EDM's and EDM2's pick of B's images) and nsample (dgm-eval's cut of each set) "
                          "both choose the images to score; give one of them")
    if subset is not None and "vendi-dgm-eval" in wanted:
        raise FidkitError("vendi-dgm-eval is dgm-eval's, which reads all of B's images or those of its --nsample cut "
                          "(nsample=), not EDM's subset; leave out subset")
    fls = "fls-dgm-eval" in wanted
    of_test = [m for m in _TEST_SET if m in wanted]  # the metrics that read the test set's features
    if of_test and test is None:
        raise FidkitError(f"{of_test[0]} ({_METRIC_NAMES[of_test[0]]}) needs a set of real images the generator never "
                          f"saw, dgm-eval's --test_path: give it as --test PATH (test=)")
    if any(_TEST_SET[m].startswith("ct") for m in of_test):
        _scores.dgm_eval_ct_modules()  # scikit-learn, before any pass rather than after it
    if "realism-dgm-eval" in wanted and "prdc-dgm-eval" not in wanted:
        raise FidkitError("realism-dgm-eval is computed by dgm-eval's prdc (its --metrics prdc,realism), whose fake "
                          "rows it leaves undrawn: add prdc-dgm-eval to the metrics")
    drawn = [m for m in _DGM_EVAL_DRAWN if m in wanted]
    if test is not None and not drawn:
        raise FidkitError("a test set (--test, test=) is dgm-eval's --test_path set, read by fls-dgm-eval and the ct "
                          "metrics and, for the cut that seeds their draws, by kd-dgm-eval and prdc-dgm-eval; add "
                          "one of them to the metrics, or leave out the test set")
    count_t = test is not None and not of_test  # the test set's image count only: its cut seeds kd's and prdc's draws
    per_image = any(m in wanted for m in _PER_IMAGE)
    # per-image features of each side: every metric of _PER_IMAGE needs both; FD∞ needs B's
    # (A may be a statistics file, whose mean and covariance it then uses); the bootstrap
    # resamples the sides that have images and keeps a statistics file fixed
    kinds = {"a": _kind_of(a), "b": _kind_of(b)}  # each file's kind read once (a missing path: none), passed down
    if test is not None:
        kinds["t"] = _kind_of(test)
        if of_test:
            _refuse_stats_file(test, of_test[0], kind=kinds["t"])
    keep_a = per_image or ((bootstrap > 0 or "fd-inf" in wanted) and not kinds["a"].stats_only)
    keep_b = (per_image or any(m in wanted for m in ("fd-inf", "vendi", "vendi-dgm-eval"))
              or (bootstrap > 0 and not kinds["b"].stats_only))
    spatial = "sfid" in wanted
    logits = any(m in wanted for m in _LOGITS)
    for m in _PER_IMAGE:
        if m in wanted:
            _refuse_stats_file(a, m, kind=kinds["a"])
            _refuse_stats_file(b, m, kind=kinds["b"])
    for m in ("fd-inf", "vendi", "vendi-dgm-eval"):  # B's own features
        if m in wanted:
            _refuse_stats_file(b, m, kind=kinds["b"])
    for m in _LOGITS:
        if m in wanted:
            _refuse_stats_file(b, m, features_serve=False, kind=kinds["b"])
            _require_classifier(load_weights(kw.get("weights")))  # before spending time on a
    for source in (a, b) + ((test,) if test is not None else ()):  # after the checks of the arguments, before any source
        check_exists(source)  # is read: a missing B is named before A's images go through the network
    label_a, label_b = _side_label("A", a), _side_label("B", b)
    label_t = _side_label("test", test)
    given = {"a": a, "b": b, **({"t": test} if test is not None else {})}
    sources = {side: _batch_images_of(src, enc_name, nsample, protocol) for side, src in given.items()}
    for side, src in given.items():
        if sources[side] is not src:  # an ADM reference batch read as its images: no longer statistics
            kinds[side] = _Kind()
    a, b, test = sources["a"], sources["b"], sources.get("t")
    side_names = {"a": "A", "b": "B", "t": "the test set"}
    if bootstrap > 0 and kinds["a"].stats_only and kinds["b"].stats_only:
        raise StatsError("a bootstrap resamples images, but both sources are statistics files; give at least "
                         "one image folder")
    if subset is not None and kinds["b"].stats:
        raise StatsError(f"--subset (subset=) picks images of B, the generated set, but {label_b[2:] or 'B'} holds "
                         f"statistics; put the reference first (fidkit compute REF IMAGES), or leave out the subset")
    files = _load_files({"a": a, "b": b}, kinds, protocol, enc, allow_mismatch, spatial, biased)
    if test is not None:  # a test file's spatial statistics are of no use to fls and ct: not asked of it
        files.update(_load_files({"t": test}, kinds, protocol, enc, allow_mismatch, False, False))
        if count_t and "t" in files and files["t"].n is None:
            raise StatsError(f"the test set {label_t[2:] or ''}: its statistics do not record an image count, which "
                             f"dgm-eval's cut of it (and so the draws of its kd and prdc) depends on; make them again "
                             f"with fidkit stats, or leave out the test set")
    explicit = kw.get("weights") is not None or kw.get("encoder_weights") is not None
    recorded = any(st.weights_digest for st in files.values())  # else no digest to check: no network built
    if recorded and (len(files) == 1 or explicit) and not allow_mismatch:
        # a statistics file of other weights than those in use: refused before any listing (with two
        # files, only where weights were given: else none are in use, and the pair's own check speaks)
        digest = _digest_in_use(enc, protocol, kw)
        for st in files.values():
            if st.weights_digest:
                check_provenance(st, None, digest, allow_mismatch)
    subset_info: dict = {}
    # each image source listed once, before any pass, and handed on listed: a source short of the
    # subset or of what a metric needs is refused before any image goes through the network
    images = {side: as_images(src) for side, src in sources.items() if not kinds[side].stats}
    scan_b = None  # B's folder as dgm-eval looks at it, read once for its unread files, cut and labels
    if "vendi-dgm-eval" in wanted and "b" in images and isinstance(b, (str, Path)) and Path(b).is_dir():
        scan_b = dgm_eval_scan(b)  # before the cut: B's files as listed
        extra = dgm_eval_unread(b, images["b"], scan_b)
        if extra:
            raise FidkitError(f"vendi-dgm-eval: dgm-eval reads {len(extra)} file(s) of B that fidkit does not, the "
                              f"first {extra[0]} (it globs .ppm and .pgm too), so its classes would hold other "
                              f"images; convert them to PNG or move them out of B")
    cut = ""  # the sides that subset or nsample left images out of
    if subset is not None:  # B only, as EDM's and EDM2's --num picks generated images only
        cut = "b"
        subset_info.update(subset_n=int(subset), subset_seed=int(subset_seed), subset_from=len(images["b"]))
        note = nvidia_listing_note(b, images["b"], int(subset))
        if note:
            warnings.warn(note, FidkitWarning, stacklevel=2)
        images["b"] = seeded_subset(images["b"], int(subset), int(subset_seed), label_b)
    if nsample is not None:  # every set, as dgm-eval cuts the real set and each generated one
        subset_info.update(nsample=nsample, nsample_seed=nsample_seed)
        for side, src in sources.items():
            if side in images:
                images[side], info = _nsample_cut(src, images[side], nsample, nsample_seed, side_names[side],
                                                  scan_b if side == "b" else None)
                subset_info[f"nsample_from_{side}"] = info["from"]
                cut += side if info["from"] > nsample else ""
            elif not (side == "t" and count_t):  # a test file read for its count: its features are not used
                _nsample_file_check(f"{side_names[side]}: the statistics", files[side], nsample, nsample_seed)
    elif protocol in DGM_EVAL_MODES and subset is None:
        _dgm_eval_cut_note({side_names[side]: len(im) for side, im in images.items()},
                           {f"{side_names[side]}'s statistics file": st for side, st in files.items()}, protocol)
    counts = {side: len(im) for side, im in images.items()}
    vendi_labels = None  # dgm-eval's class label of each of B's images, known before the pass
    if "vendi-dgm-eval" in wanted:
        if "b" not in images or not (isinstance(b, (str, Path)) and Path(b).is_dir()):
            raise FidkitError(f"vendi-dgm-eval (dgm-eval's mean Vendi score per class) needs B as a folder of class "
                              f"folders, as dgm-eval reads it; {label_b[2:] or 'B'} is not a folder (--metrics vendi "
                              f"gives the Vendi score of the whole set)")
        vendi_labels = dgm_eval_row_labels(b, images["b"], scan_b)
        present = set(np.unique(vendi_labels[0]).tolist())
        missing = [i for i in range(len(present)) if i not in present]
        if missing:  # before any pass: dgm-eval takes the classes as 0 … u − 1 for its u distinct labels
            raise FidkitError(f"vendi-dgm-eval: dgm-eval would stop on B: it takes its {len(present)} labels as classes "
                              f"0 to {len(present) - 1}, but none of B's images is labelled {missing[0]} (it numbers "
                              f"every top-level entry, so a file or a folder without images beside the class "
                              f"folders leaves a gap{', as can the --nsample cut' if nsample is not None else ''})")
    batches = {}  # an ADM reference batch whose images are read: opened once, to count and to read
    for side, src, needed in (("a", a, keep_a), ("b", b, keep_b or logits)) + ((("t", test, True),) if test is not None
                                                                                else ()):
        if side not in counts and needed and kinds[side].images:
            batches[side] = BatchImages(src)
            counts[side] = len(batches[side])
        elif side not in counts and needed and kinds[side].features and files[side].n is not None:
            counts[side] = files[side].n  # its per-image features' rows
    _check_counts(wanted, pr_k, counts, cut, dgm_eval_k)
    a, b, test = images.get("a", a), images.get("b", b), images.get("t", test)
    ex1 = _one_pass(a, protocol, keep_a, False, spatial, {"label": label_a, **kw}, allow_mismatch, files.get("a"),
                    batches.get("a"), kinds["a"], float32_means=float32_means)
    ex2 = _one_pass(b, protocol, keep_b, logits, spatial, {"label": label_b, **kw}, allow_mismatch, files.get("b"),
                    batches.get("b"), kinds["b"], float32_means=float32_means)
    ex3 = None  # the test set of fls and ct: features only
    if of_test:
        ex3 = _one_pass(test, protocol, True, False, False, {"label": label_t, **kw}, allow_mismatch, files.get("t"),
                        batches.get("t"), kinds["t"])
        with warnings.catch_warnings():  # its image count matters to no covariance: no warning of a small set
            warnings.simplefilter("ignore", FidkitWarning)
            _check_compatible(ex1.stats, ex3.stats, allow_mismatch)  # a file of other weights or protocol
    s1 = ex1.stats
    s2 = ex2.stats
    if subset is not None and s2.extra.get("skipped"):  # EDM and EDM2 would have stopped at such a file
        warnings.warn(f"B: scored {s2.n} of the {subset} images of the subset ({len(s2.extra['skipped'])} skipped as "
                      f"undecodable); EDM and EDM2 would stop at them", FidkitWarning, stacklevel=2)
    scores: dict = {}
    if biased:  # StyleGAN2-ADA/StyleGAN3: cov = E[xxᵀ] − μμᵀ, i.e. 1/N, from the unbiased 1/(N−1)
        for label, s in (("A", s1), ("B", s2)):
            _check_biased_n(label, s.n)
        r = frechet_distance(*(dataclasses.replace(s, sigma=s.sigma * ((s.n - 1) / s.n)) for s in (s1, s2)),
                             allow_mismatch=allow_mismatch)
        scores["covariance"] = "1/N"
    else:
        r = frechet_distance(s1, s2, allow_mismatch=allow_mismatch)
    if float32_means:
        r = _with_means_as_held(r, ex1, a, ex2, b)
        scores["means"] = "float32"
    if spatial:
        with _small_n_warned():
            rs = frechet_distance(s1.feature("spatial"), s2.feature("spatial"), allow_mismatch=allow_mismatch)
            scores["sfid"] = (_with_means_as_held(rs, ex1, a, ex2, b, spatial=True) if float32_means else rs).fid
    if "kid" in wanted:
        k = _scores.kid(ex1.features, ex2.features, seed=seed)
        scores.update(kid_mean=k.mean, kid_std=k.std)
    if "pr" in wanted:
        scores.update(_scores.precision_recall(ex1.features, ex2.features, k=int(pr_k)), pr_k=int(pr_k))
    if drawn:
        # the images each set held before a cut (a kept file: before its cut, skipped files counted)
        listed = {f"nsample_from_{side}": subset_info.get(f"nsample_from_{side}", files[side].extra.get(
            "nsample_from", files[side].n + len(files[side].extra.get("skipped", []))) if side in files
            else counts.get(side)) for side in sources}
        scores.update(_dgm_eval_drawn(wanted, ex1.features, ex2.features, listed, nsample, nsample_seed, dgm_eval_k,
                                      reduced_n, ft=ex3.features if of_test else None,
                                      device=resolve_device(kw.get("device", "auto"))))
        if "prdc-dgm-eval" in wanted or fls:
            scores["dgm_eval_reduced_n"] = reduced_n
        if "realism-dgm-eval" in wanted:  # the file of each row, where B was read as images
            scores["dgm_eval_realism_files"] = _row_files(images.get("b"), s2.extra.get("skipped", []))
        if of_test:
            scores["n_test"] = ex3.stats.n
            if ex3.stats.extra.get("skipped"):
                scores["skipped_test"] = list(ex3.stats.extra["skipped"])
        elif count_t:  # read for its count: the images dgm-eval keeps of it (before the cut: nsample_from_t)
            total = listed["nsample_from_t"]
            scores.update(n_test=min(total, nsample) if nsample is not None else total, test_read="count only")
    if "adm-pr" in wanted:
        scores.update(_scores.adm_precision_recall(ex1.features, ex2.features, distances=adm_distances),
                      adm_pr_distances=adm_distances)
    if "is" in wanted:
        i = _scores.inception_score(ex2.logits, seed=seed)
        scores.update(isc_mean=i.mean, isc_std=i.std)
    if "is-adm" in wanted:
        scores["adm_inception_score"] = _scores.adm_inception_score(ex2.logits)
    if "is-dgm-eval" in wanted:
        i = _scores.dgm_eval_inception_score(ex2.logits, seed=seed)
        scores.update(dgm_eval_is_mean=i.mean, dgm_eval_is_std=i.std)
    if "is-stylegan" in wanted:
        i = _scores.stylegan_inception_score(ex2.logits)
        scores.update(stylegan_is_mean=i.mean, stylegan_is_std=i.std)
    if "cmmd" in wanted:
        scores["cmmd"] = _distances.cmmd(ex1.features, ex2.features)
    if "authpct" in wanted:
        scores["authpct"] = _scores.authpct(ex1.features, ex2.features)
    if "sw-approx" in wanted:
        scores["sw_approx"] = _distances.sw_approx(ex1.features, ex2.features)
    if "vendi" in wanted:
        scores["vendi"] = _scores.vendi_score(ex2.features)
    if "vendi-dgm-eval" in wanted:
        scores.update(_dgm_eval_vendi(ex2.features, *vendi_labels, images["b"], s2.extra.get("skipped", [])))
    if "fd-inf" in wanted:
        key = get_info(enc_name).fd_key + "_inf"
        inf = _distances.fd_infinity(ex1.features if ex1.features is not None else (s1.mu, s1.sigma),
                                     ex2.features, seed=seed)
        scores.update({key: inf.value, f"{key}_slope": inf.slope, f"{key}_sizes": [int(n) for n in inf.sizes],
                       f"{key}_values": [float(v) for v in inf.fd], f"{key}_seed": int(inf.seed)})
    scores.update(subset_info)
    for label, ex in (("a", ex1), ("b", ex2), ("test", ex3)):
        if ex is not None and ex.stats_from_file:
            scores[f"statistics_from_file_{label}"] = list(ex.stats_from_file)
    if bootstrap > 0:
        fa, fb, ref = ex1.features, ex2.features, None
        if fb is None:  # b is the statistics file: resample a against it (the distance is symmetric)
            fa, fb = None, fa
            ref = (s2.mu, s2.sigma)
        elif fa is None:
            ref = (s1.mu, s1.sigma)
        ci = _scores.fid_bootstrap(fa, fb, bootstrap, seed=seed, reference=ref)
        key = get_info(enc_name).fd_key  # fid_ci_low with Inception, fd_dinov2_ci_low with DINOv2, ...
        scores.update({f"{key}_ci_low": ci.low, f"{key}_ci_high": ci.high, f"{key}_bootstrap_std": ci.std,
                       "bootstrap_resamples": ci.resamples})
    digest = s1.weights_digest or s2.weights_digest
    sides = (s1.protocol or protocol, s2.protocol or protocol)  # other than protocol only by allow_mismatch
    protocol = sides[0] if sides[0] == sides[1] else f"{sides[0]} for A, {sides[1]} for B"  # what was compared
    return FIDResult(r.fid, protocol, s1.n, s2.n, digest, r, time.perf_counter() - t0,
                     str(resolve_device(kw.get("device", "auto"))), kw.get("precision", "fp32"), scores,
                     s1.extra.get("skipped", []), s2.extra.get("skipped", []), enc_name)


@dataclass(frozen=True)
class ADMResult:
    """The table of OpenAI's guided-diffusion evaluator: Inception Score, FID, sFID, precision, recall.

    ``inception_score`` is None with features-only weights or when the sample is given only
    as statistics; ``sfid`` None when a statistics
    file without ``mu_s``/``sigma_s`` (and without images) stands in for a set; ``precision``
    and ``recall`` None when a set is given only as statistics that keep no per-image
    features. ``ref_statistics`` and ``sample_statistics`` say for ``fid`` and ``sfid`` whether
    the statistics were read from the file (``"file"``) or computed from the images
    (``"computed"``), and hold ``precision_recall: "file"`` where a file's kept features served them.
    ``means``: how the means of ``fid`` and ``sfid`` were taken (see :func:`adm_evaluate`).
    """

    inception_score: float | None
    fid: float
    sfid: float | None
    precision: float | None
    recall: float | None
    n_ref: int | None
    n_sample: int | None
    weights_digest: str | None
    ref_statistics: dict
    sample_statistics: dict
    seconds: float
    distances: str = _scores.ADM_DEFAULT_DISTANCES
    means: str = _scores.ADM_DEFAULT_MEANS

    def as_dict(self) -> dict:
        return {"inception_score": self.inception_score, "fid": self.fid, "sfid": self.sfid,
                "precision": self.precision, "recall": self.recall, "n_ref": self.n_ref, "n_sample": self.n_sample,
                "weights_digest": self.weights_digest, "protocol": "ttur", "ref_statistics": self.ref_statistics,
                "sample_statistics": self.sample_statistics, "pr_distances": self.distances,
                "means": self.means, "seconds": round(self.seconds, 3)}


def adm_evaluate(ref, sample, *, distances: str = _scores.ADM_DEFAULT_DISTANCES,
                 means: str = _scores.ADM_DEFAULT_MEANS, allow_mismatch: bool = False, **kw) -> ADMResult:
    """What ``python evaluations/evaluator.py REF SAMPLE`` of guided-diffusion prints, without TensorFlow.

    ``ref`` and ``sample``: sample/reference batches (``.npz`` with ``arr_0``, or ``.npy``),
    image folders, uint8 images (numpy (N, H, W, 3) or torch (N, 3, H, W), values 0..255), or statistics files. Warns (:class:`FidkitWarning`)
    for each number that comes out None. A statistics file that keeps its images' pool3 features
    (``fidkit stats DIR --features``, protocol ``ttur``) serves precision and recall in place of the
    images (``ref_statistics["precision_recall"] = "file"``), e.g. a reference encoded once. As in ADM's evaluator, a reference
    batch's ``mu``/``sigma``/``mu_s``/``sigma_s`` are used for FID and sFID while its
    ``arr_0`` still feeds precision/recall; plain ``mu``/``sigma`` files (EDM's) are read as
    ``ttur`` statistics of unknown weights; EDM2's ``.pkl`` (protocol ``nvidia``) and other
    files that record another protocol are refused unless ``allow_mismatch``. Protocol ``ttur`` (the TF
    graph's own resize). One pass per source serves all five numbers. ``distances`` as for
    :func:`fidkit.scores.adm_precision_recall`; ``kw`` as for :func:`extract` (weights,
    device, batch_size, workers, progress, precision). ``means``: ``"float32"`` (the default)
    takes the means of FID and sFID as the evaluator does: ``np.mean`` of the float32 features,
    a float32 sum of the rows in file order, and a file's means as it stores them, their
    difference in numpy's dtype of the two (:func:`fidkit.frechet.mean_term_as_held`); the covariances
    and the trace term are fidkit's float64 ones (the evaluator's ``np.cov`` is float64 too).
    ``"float64"``: fidkit's own statistics throughout, the digits of ``fidkit compute``.
    """
    t0 = time.perf_counter()
    allow_mismatch = _args.flag(allow_mismatch, "allow_mismatch")
    check_pass_args(kw, "adm_evaluate")
    for source in (ref, sample):
        check_exists(source)
    w = load_weights(kw.get("weights"))
    if distances not in _scores.ADM_DISTANCES:
        raise FidkitError(f"distances must be one of {', '.join(_scores.ADM_DISTANCES)}, got {distances!r}")
    if means not in _scores.MEANS:
        raise FidkitError(f"means must be one of {', '.join(_scores.MEANS)}, got {_args.shown(means)}")
    float32_means = means == "float32"

    def plan(src):
        st = Statistics.load(src, assume_protocol="ttur") if _is_stats_path(src) else None
        if isinstance(src, Statistics):
            st = src
        images = st is None or _holds_images(src)
        return st, images, not images and _holds_features(src)  # per-image features kept: pool3's, serve P/R

    st_r, img_r, feat_r = plan(ref)
    st_s, img_s, feat_s = plan(sample)
    for st in (st_r, st_s):
        if st is not None:
            check_provenance(st, "ttur", w.digest, allow_mismatch, encoder=DEFAULT_ENCODER,
                             protocol_advice=f"ADM's evaluator computes with TF's resize (protocol ttur): score it with "
                                             f"`fidkit compute --protocol {st.protocol}`, or pass --allow-mismatch "
                                             f"(allow_mismatch=True)")
    if not w.has_classifier:
        warnings.warn(f"Inception Score: null, these weights ({w.origin}) have no 1008-way classifier; give "
                      f"pytorch-fid's pt_inception-2015-12-05-6726825d.pth with --weights ({PTFID_URL})",
                      FidkitWarning, stacklevel=2)
    want_is = w.has_classifier and img_s
    if w.has_classifier and not img_s:
        warnings.warn(f"Inception Score: null, {_named(sample)} holds statistics, not the sample images", FidkitWarning,
                      stacklevel=2)
    want_pr = (img_r or feat_r) and (img_s or feat_s)
    if not want_pr:
        which = ref if not (img_r or feat_r) else sample
        warnings.warn(f"precision and recall: null, {_named(which)} holds statistics, not images (or the per-image features "
                      f"of `fidkit stats DIR --features -o FILE`)", FidkitWarning, stacklevel=2)
    spatial_r = img_r or st_r.spatial is not None
    spatial_s = img_s or st_s.spatial is not None
    if not (spatial_r and spatial_s):
        which = ref if not spatial_r else sample
        warnings.warn(f"sFID: null, {_named(which)} holds no spatial statistics (mu_s/sigma_s); make them with `fidkit "
                      f"stats DIR --metrics fid,sfid -o FILE`", FidkitWarning, stacklevel=2)
    want_sfid = spatial_r and spatial_s
    ex_r = _one_pass(ref, "ttur", want_pr, False, want_sfid, {"label": _side_label("REF", ref), **kw},
                     allow_mismatch, st_r, float32_means=float32_means)
    ex_s = _one_pass(sample, "ttur", want_pr, want_is, want_sfid, {"label": _side_label("SAMPLE", sample), **kw},
                     allow_mismatch, st_s, float32_means=float32_means)
    s_r, s_s = ex_r.stats, ex_s.stats

    def distance(feature):
        # provenance checked above. Reference first, as `fidkit compute REF SAMPLE` does: the same value
        # to rounding (ADM passes the sample first); with float64 means the digits of fidkit's own FID
        r = frechet_distance(s_r.feature(feature), s_s.feature(feature), allow_mismatch=True)
        if not float32_means:
            return r.fid
        return _with_means_as_held(r, ex_s, sample, ex_r, ref, feature == "spatial").fid

    fid_ = distance("pool3")
    with _small_n_warned():
        sfid = distance("spatial") if want_sfid else None
    pr = _scores.adm_precision_recall(ex_r.features, ex_s.features, distances=distances) if want_pr else {}
    isc = _scores.adm_inception_score(ex_s.logits) if want_is else None

    def origin(ex, st_given):
        names = {"pool3": "fid", "spatial": "sfid"}
        out = {names[k]: ("file" if k in ex.stats_from_file else "computed") for k in names
               if k == "pool3" or want_sfid}
        if "features" in ex.stats_from_file:  # precision/recall from the features a file keeps
            out["precision_recall"] = "file"
        return out

    n_r = len(ex_r.features) if ex_r.features is not None else s_r.n
    n_s = len(ex_s.features) if ex_s.features is not None else (len(ex_s.logits) if ex_s.logits is not None
                                                                 else s_s.n)
    return ADMResult(isc, fid_, sfid, pr.get("adm_precision"), pr.get("adm_recall"), n_r, n_s,
                     s_s.weights_digest or s_r.weights_digest or w.digest, origin(ex_r, st_r), origin(ex_s, st_s),
                     time.perf_counter() - t0, distances, means)


def _with_means_as_held(r: FrechetResult, ex1: Extraction, source1, ex2: Extraction, source2,
                        spatial: bool = False) -> FrechetResult:
    """``r`` (the two sides' Fréchet result of the encoder's default feature, or of ``spatial``)
    with the mean term of the means as guided-diffusion's evaluator, clean-fid and torch-fidelity
    hold them (:func:`_mean_as_held`)."""
    return with_mean_term(r, mean_term_as_held(_mean_as_held(ex1, source1, spatial),
                                               _mean_as_held(ex2, source2, spatial)))


def _mean_as_held(ex: Extraction, source, spatial: bool = False) -> np.ndarray:
    """The mean of the encoder's default feature (e.g. ``pool3``), or of ``spatial``, of one
    side as ``np.mean`` of float32 features holds it: float32 when the pass computed it
    (``Extraction.means32``), a file's in the dtype the file stores (the evaluators subtract
    the means in numpy's promotion of the two)."""
    computed = [k for k in ex.means32 if (k == "spatial") == spatial]
    if computed:
        return ex.means32[computed[0]]
    st = ex.stats.feature("spatial") if spatial else ex.stats
    key = FILE_KEYS["spatial"][0] if spatial else "mu"
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".npz"):
        with np.load(source) as z:
            if key in z.files and z[key].shape == np.shape(st.mu) and np.array_equal(z[key], st.mu):
                return z[key]
    return np.asarray(st.mu)  # given as Statistics, or read from a pickle: as it was handed over


def fid(a, b, protocol: str | None = None, **kw) -> float:
    """The FID between sources ``a`` and ``b`` as a float (≥ 0); sources as for :func:`compare`."""
    return compare(a, b, protocol, **kw).fid


def _is_values(x) -> bool:
    """Features or logits given directly: a 2-D floating-point numpy array or tensor."""
    if torch.is_tensor(x):
        return x.ndim == 2 and x.is_floating_point()
    return isinstance(x, np.ndarray) and x.ndim == 2 and np.issubdtype(x.dtype, np.floating)


def _check_functional(where: str, sources: tuple, protocol, kw: dict) -> None:
    """The pass arguments of a functional score (:func:`kid`, :func:`precision_recall`,
    :func:`inception_score`) checked before any pass; refused when every source is a feature
    or logit array, where nothing would read them."""
    check_pass_args(kw, where)
    if all(_is_values(s) for s in sources) and (kw or protocol is not None):
        given = sorted(kw) + (["protocol"] if protocol is not None else [])
        raise FidkitError(f"{where}() was given features (or logits) directly, which no pass reads, and "
                          f"{', '.join(given)} for a pass; leave them out, or give image sources")


def _features(source, protocol: str, metric: str, kw: dict) -> np.ndarray:
    if _is_values(source):
        return source
    if _is_stats(source) and _holds_features(source):  # kept by fidkit stats --features
        return _functional_file_features(source, protocol, kw)
    _refuse_stats_file(source, metric)
    return extract(source, protocol, keep_features=True, **kw).features


def inception_score(source, protocol: str = "ttur", *, splits: int = 10, seed: int | None = _scores.DEFAULT_SEED,
                    **kw) -> _scores.MeanStd:
    """Inception Score (mean, std) of a source, or of logits given as an (N, C) float array
    (C = 1008 for the TF graph's classifier).

    A source (folder, archive, sample batch, image files, or uint8 images (numpy (N, H, W, 3) or torch (N, 3, H, W), values 0..255)) goes through :func:`extract` with ``kw``
    and needs weights with the 1008-way classifier (pytorch-fid's ``.pth``); see
    :func:`fidkit.scores.inception_score` for the arithmetic (torch-fidelity 0.4.0's).
    """
    _scores.check_is_args(splits, seed)  # before the pass, not after it
    _check_functional("inception_score", (source,), None if protocol == "ttur" else protocol, kw)
    if _is_values(source):
        logits = source
    else:
        _refuse_stats_file(source, "is", features_serve=False)
        logits = extract(source, protocol, logits=True, **kw).logits
    return _scores.inception_score(logits, splits, seed)


def kid(a, b, protocol: str | None = None, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1, seed: int = _scores.DEFAULT_SEED, **kw) -> _scores.MeanStd:
    """KID (mean, std) of two sources or two (N, 2048) float feature arrays.

    Sources are extracted once each with ``kw`` (as :func:`extract`); see
    :func:`fidkit.scores.kid` (a subset size above the set sizes is reduced to them).
    """
    _scores.check_kid_args(subsets, subset_size, degree, gamma, coef0, seed)  # before the passes, not after
    _check_functional("kid", (a, b), protocol, kw)
    return _scores.kid(_features(a, protocol, "kid", kw), _features(b, protocol, "kid", kw), subsets, subset_size,
                       degree, gamma, coef0, seed)


def precision_recall(real, fake, protocol: str | None = None, *, k: int = 3, block: int = 1000, **kw) -> dict:
    """Precision, recall, density and coverage (floats in [0, 1], density may exceed 1) of
    ``fake`` against ``real``: sources (as for :func:`compare`), or features given directly as
    float arrays (N, D) and (M, D).

    Sources are extracted once each with ``kw`` (as :func:`extract`); see
    :func:`fidkit.scores.precision_recall` (blocked: memory O(block × 10,000) beside the
    features).
    """
    _scores.check_pr_args(k, block)  # before the passes, not after them
    _check_functional("precision_recall", (real, fake), protocol, kw)
    return _scores.precision_recall(_features(real, protocol, "pr", kw), _features(fake, protocol, "pr", kw), k,
                                    block)
