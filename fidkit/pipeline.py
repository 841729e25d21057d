"""Streaming images through an encoder's preprocessing and network into named feature batches.

Any :class:`~fidkit.encoders.Encoder` (Inception, DINOv2, CLIP) goes through the same path:
decoding (PIL) and per-image preparation (``preprocess.prepare``) run in DataLoader workers;
batches of uint8 (or already resized) images go to the device, where the mode's
``to_network`` and the network's ``forward_features`` run under ``torch.inference_mode``.
Images of mixed sizes are prepared per image and grouped by size on the device. Features
leave as float32 (n, dim) tensors on the device, one per name asked for; nothing is kept
beyond one batch. Nothing here asks which encoder it was given.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import threading
import time
from typing import Iterator, NamedTuple

import numpy as np
import torch

from .errors import SourceError
from .encoders import Encoder, Preprocess
from .sources import ArrayImages, Images, Picked


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' gives CUDA when available, else the CPU; otherwise ``device`` as ``torch.device``
    reads it (``cpu``, ``cuda``, ``cuda:N``, ...). One line (:class:`SourceError`) for a name
    torch does not know, CUDA where torch sees none, or a CUDA index past the devices it sees."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise SourceError(f"device {str(device)!r} is not a device name torch reads; use auto, cpu, cuda or cuda:N "
                          f"(--device, device=)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SourceError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise SourceError(f"--device {dev} asked for, but torch sees {count} CUDA device{'s' * (count != 1)} "
                          f"(cuda:0 to cuda:{count - 1}); set CUDA_VISIBLE_DEVICES or pick one of those")
    return dev


# 200 on CUDA; 16 on the CPU, where with the heap reuse of :func:`reuse_freed_memory` it ran
# as fast as 32 (21.0 vs 20.3 images/s) at 904 instead of 1,328 MiB peak
# (benchmarks/cpu_allocator.py --batch-size 16 / 32). The CLI's help reads these constants.
BATCH_SIZE_CPU, BATCH_SIZE_CUDA = 16, 200
MAX_DEFAULT_WORKERS = 8


def default_batch_size(device: torch.device) -> int:
    """:data:`BATCH_SIZE_CUDA` on CUDA, :data:`BATCH_SIZE_CPU` on the CPU."""
    return BATCH_SIZE_CUDA if device.type == "cuda" else BATCH_SIZE_CPU


def default_workers() -> int:
    """Cores − 1, at least 1 and at most :data:`MAX_DEFAULT_WORKERS`."""
    return max(1, min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 2) - 1))


PRECISIONS = ("fp32", "tf32", "bf16", "tf32x3")  # the first is the default


def check_precision_name(mode: str, error: type = SourceError) -> None:
    """Refuses, in one line (``error``), a mode not in :data:`PRECISIONS`: the one wording of the
    API's checks (:func:`fidkit.api.check_pass_args`, :class:`fidkit.FID`) and of the pass's."""
    if mode not in PRECISIONS:
        raise error(f"precision must be one of {', '.join(PRECISIONS)}, got {mode!r}")


def check_precision(device: torch.device, mode: str) -> None:
    """The refusals of :func:`precision`, for callers that check before any pass: a mode not in
    :data:`PRECISIONS`, or a fast one on another device than CUDA (one line, SourceError)."""
    check_precision_name(mode)
    if device.type != "cuda" and mode != "fp32":
        raise SourceError(f"precision {mode} needs a CUDA device; on {device.type} fidkit computes in fp32")


@contextlib.contextmanager
def precision(device: torch.device, mode: str = "fp32"):
    """Arithmetic of the network while features are computed.

    ``fp32`` (default): strict float32; on CUDA, TF32 is turned off for matmul and cuDNN.
    ``tf32`` (CUDA only): TF32 tensor cores for convolutions and matmuls.
    ``bf16`` (CUDA only): bfloat16 autocast. Both fast modes change the FID slightly.
    ``tf32x3`` (CUDA only): TF32 tensor cores for the convolutions, each computed from split
    operands as three TF32 products (:data:`fidkit.inception.TF32X3`, set on the network by
    :func:`fidkit.api.network`); matmuls stay strict float32. Emulated on the CPU, the FID
    stays within 1e-6 of strict fp32 (benchmarks/emulate_precision.py).
    """
    check_precision(device, mode)
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = mode in ("tf32", "bf16")
    torch.backends.cudnn.allow_tf32 = mode != "fp32"
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# glibc's mallopt parameters and their documented defaults (mallopt(3))
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def _load_glibc():
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.mallopt.argtypes, lib.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
        return lib
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to tune
        return None


_GLIBC = _load_glibc()
_heap_lock = threading.Lock()
_heap_depth = 0


@contextlib.contextmanager
def reuse_freed_memory(device: torch.device):
    """On the CPU with glibc, keep the network's freed activations in the heap for the pass.

    A CPU forward pass allocates and frees activations of tens of MB per layer. glibc
    serves each from a fresh ``mmap`` and unmaps it on free, so every batch faults all its
    activation pages in again: ~1 million page faults and ~30% of the wall time for 64
    images (benchmarks/cpu_allocator.py). For the pass, large blocks come from the heap
    (``M_MMAP_MAX`` 0) and the heap is not trimmed (``M_TRIM_THRESHOLD`` 1 GiB), so freed
    activations are reused. On exit glibc's defaults are restored and the heap is trimmed,
    giving the memory back. Results are unchanged: only where memory comes from changes.
    Other devices and C libraries: does nothing.
    """
    global _heap_depth
    if device.type != "cpu" or _GLIBC is None:
        yield
        return
    with _heap_lock:
        _heap_depth += 1
        if _heap_depth == 1:
            _GLIBC.mallopt(_M_MMAP_MAX, 0)
            _GLIBC.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_depth -= 1
            if _heap_depth == 0:
                _GLIBC.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                _GLIBC.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                _GLIBC.malloc_trim(0)


def memory_format(device: torch.device, mode: str = "fp32") -> torch.memory_format:
    """The faster layout, as measured (benchmarks/gpu_formats.py, benchmarks/results/): on CUDA,
    strict fp32 convolutions run faster in NCHW and tf32/bf16 in channels_last (tf32x3, unmeasured,
    follows tf32); on the CPU channels_last is faster."""
    if device.type == "cuda" and mode == "fp32":
        return torch.contiguous_format
    return torch.channels_last


class Progress:
    """A one-line progress bar on stderr (shown when stderr is a terminal): which source,
    images done, images/s and the time left, e.g.
    ``fidkit A real/ [#########        ] 160/250 17.5 images/s, 0:05 left``."""

    LABEL_CHARS = 40  # a longer source name keeps its end: "…/gan/samples"

    def __init__(self, total: int, label: str = "", enabled: bool | None = None):
        if len(label) > self.LABEL_CHARS:
            label = "…" + label[-(self.LABEL_CHARS - 1):]
        self.total, self.label, self.done = total, " ".join(filter(None, ["fidkit", label])), 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = self.last = time.perf_counter()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.t0, 1e-9)
        frac = self.done / max(self.total, 1)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = "--:--" if not math.isfinite(left) else "{}:{:02d}".format(*divmod(int(round(left)), 60))
        return f"{self.label} [{'#' * int(30 * frac):<30}] {self.done}/{self.total} {rate:6.1f} images/s, {eta} left"

    def update(self, k: int) -> None:
        self.done += k
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.5 or self.done >= self.total):
            self.last = now
            print("\r" + self.line(now), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)


class BadFile(NamedTuple):
    """A file that could not be decoded: its path and the one-line reason."""

    path: str
    message: str


class _Prepared(torch.utils.data.Dataset):
    """Reads and prepares one image of an :class:`~fidkit.sources.Images` per item (in the
    decoding worker); failures travel back as :class:`BadFile`."""

    def __init__(self, images: Images, protocol: Preprocess):
        self.images, self.protocol = images, protocol

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        try:
            return self.protocol.prepare(self.images[i])
        except SourceError as e:
            return BadFile(self.images.label(i), str(e))


def _collate(batch):
    """Runs in the decoding worker. Prepared tensors of one size become one stacked
    (B, C, H, W) tensor, so that a batch crosses to the main process, is pinned and is
    copied to the device once rather than image by image. A batch of mixed sizes, or one
    holding a :class:`BadFile`, stays a list."""
    first = batch[0]
    if all(isinstance(t, torch.Tensor) and t.shape == first.shape for t in batch):
        return torch.stack(batch)
    return batch


def _run(net: Encoder, protocol: Preprocess, prepared: list, device: torch.device,
         names: tuple, fmt: torch.memory_format) -> dict:
    """Prepared CHW tensors (possibly of several sizes) -> named features in input order."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(prepared):
        groups.setdefault(tuple(t.shape), []).append(i)
    if len(groups) == 1:
        x = torch.stack(prepared).to(device, non_blocking=True)
        return _forward(net, protocol.to_network(x), names, fmt)
    order = []
    parts = []
    for idx in groups.values():
        x = torch.stack([prepared[i] for i in idx]).to(device, non_blocking=True)
        parts.append(protocol.to_network(x))
        order.extend(idx)
    x = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return _forward(net, x[inverse.to(device)], names, fmt)


def _forward(net, x, names: tuple, fmt: torch.memory_format) -> dict:
    """x: float32 (N, 3, S, S) from the mode's ``to_network``, put in ``fmt``, the layout the network
    was built in. Returns {name: float32 (N, dim)} for the named features (keys of ``net.outputs``)."""
    x = x.contiguous(memory_format=fmt)
    return {k: v.float() for k, v in net.forward_features(x, tuple(names)).items()}


def iter_features(images: Images, protocol: Preprocess, net: Encoder, device: torch.device,
                  batch_size: int, workers: int = 0, progress: bool | None = None, names: tuple = ("pool3",),
                  mode: str = "fp32", skipped: list | None = None, label: str = "") -> Iterator[dict]:
    """Yields {name: float32 (b, dim) on ``device``} per batch for the named features ``names``.

    Any :class:`~fidkit.sources.Images` goes through the same path: items are read and
    prepared in ``workers`` DataLoader processes (each opening files itself; a
    ``sequential`` set is read by one), batched and sent to the device. In-memory arrays
    skip the workers. Stops with :class:`SourceError` naming the first item that cannot be
    read, unless a ``skipped`` list is given: then such items are appended to it as
    :class:`BadFile` and left out. At the end, what this process opened to read items is
    closed (:meth:`~fidkit.sources.Images.close`).
    """
    if isinstance(images, Picked):  # in-memory images picked by a subset: gathered now, as one array
        images = images.gathered()
    if isinstance(images, ArrayImages):
        yield from iter_array_features(images.array, protocol, net, device, batch_size, images.layout, progress,
                                       names=names, mode=mode, label=label)
        return
    loader = torch.utils.data.DataLoader(
        _Prepared(images, protocol), batch_size=batch_size, shuffle=False,
        num_workers=0 if images.sequential else workers,
        collate_fn=_collate, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if workers > 0 and not images.sequential else None)
    bar = Progress(len(images), label, progress)
    fmt = net.input_format  # the layout the network was built in
    try:
        with torch.inference_mode(), precision(device, mode), reuse_freed_memory(device):
            for batch in loader:
                if isinstance(batch, torch.Tensor):  # one size, no bad files: the common case
                    x = protocol.to_network(batch.to(device, non_blocking=True))
                    out = _forward(net, x, names, fmt)
                    bar.update(batch.shape[0])
                    yield out
                    continue
                bad = [item for item in batch if isinstance(item, BadFile)]
                if bad:
                    if skipped is None:
                        raise SourceError(bad[0].message)
                    skipped.extend(bad)
                    bar.update(len(bad))
                    batch = [item for item in batch if not isinstance(item, BadFile)]
                    if not batch:
                        continue
                out = _run(net, protocol, batch, device, names, fmt)
                bar.update(len(batch))
                yield out
    finally:
        bar.close()
        images.close()  # what this process opened to read items (workers=0, sequential sets); reopened if read again


def iter_array_features(images, protocol: Preprocess, net: Encoder, device: torch.device,
                        batch_size: int, layout: str = "NHWC", progress: bool | None = None,
                        names: tuple = ("pool3",), mode: str = "fp32", label: str = "") -> Iterator[dict]:
    """Like :func:`iter_features` for in-memory uint8 images (numpy or torch) in ``layout``."""
    n = images.shape[0]
    bar = Progress(n, label, progress)
    fmt = net.input_format
    try:
        with torch.inference_mode(), precision(device, mode), reuse_freed_memory(device):
            for s in range(0, n, batch_size):
                chunk = images[s:s + batch_size]
                if protocol.resizes_on_device:  # the whole batch goes to the device as it is
                    x = torch.as_tensor(chunk)
                    x = x if layout == "NCHW" else x.permute(0, 3, 1, 2)
                    out = _forward(net, protocol.to_network(x.to(device, non_blocking=True)), names, fmt)
                    bar.update(x.shape[0])
                    yield out
                    continue
                if layout == "NCHW":
                    chunk = chunk.permute(0, 2, 3, 1) if torch.is_tensor(chunk) else chunk.transpose(0, 2, 3, 1)
                chunk = chunk.cpu().numpy() if torch.is_tensor(chunk) else np.asarray(chunk)
                prepared = [protocol.prepare(img) for img in chunk]
                out = _run(net, protocol, prepared, device, names, fmt)
                bar.update(len(prepared))
                yield out
    finally:
        bar.close()
