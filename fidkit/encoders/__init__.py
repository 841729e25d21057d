"""Feature encoders: one network per module, each with its preprocessing modes and its weights.

An :class:`Encoder` turns a batch of prepared images into *named features* in one pass
(Inception: ``pool3``, ``spatial``, ``logits``; DINOv2: ``cls``; CLIP: ``embedding``). Metrics read those features (or statistics of them) and never
ask which encoder made them.

A *preprocessing mode* (:class:`Preprocess`) says how a decoded image becomes the
network's input, in the same two steps as :class:`fidkit.preprocess.Protocol` (whose
instances satisfy this interface already, so Inception's protocols ``ttur``,
``pytorch-fid``, ``clean``, ``nvidia`` and ``dgm-eval-clean`` become its modes unchanged):

- ``prepare(img)`` runs per image in a decoding worker: ``img`` is uint8 ``(H, W, 3)`` RGB
  (values 0..255, as :func:`fidkit.sources.decode` gives it); it returns a CHW tensor,
  uint8 when the mode resizes on the device (``resizes_on_device`` true), else the already
  resized image (uint8 or float32, as the mode says);
- ``to_network(batch)`` runs on the device over a stack of prepared images of one size
  and returns the float32 ``(N, 3, S, S)`` tensor the network takes.

Encoders live in the registry :data:`ENCODERS`; :func:`get_encoder` builds one with its
weights (see :mod:`fidkit.encoders.weights` for where they come from)::

    enc = get_encoder("dinov2-vitl14", mode="dgm-eval")     # weights: path, env, cache, download
    x = enc.preprocess.to_network(torch.stack([enc.preprocess.prepare(img) for img in imgs]))
    feats = enc(x)                                           # {"cls": float32 (N, 1024)}

This package imports nothing from :mod:`fidkit.api` or :mod:`fidkit.cli`: encoders are a
stage below the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional

import numpy as np
import torch
from torch import nn

from ..errors import FidkitError

__all__ = ["Encoder", "Preprocess", "EncoderInfo", "ENCODERS", "DEFAULT_ENCODER", "get_encoder", "get_info",
           "encoder_names", "encoders_with"]


class Preprocess:
    """One preprocessing mode: ``prepare`` per image in a worker, ``to_network`` per batch.

    Subclasses set ``name``, ``size`` (the network's input side, pixels), ``reproduces``
    (which reference's transform this is, in words) and ``resizes_on_device``.
    """

    name: str = ""
    size: int = 0
    reproduces: str = ""
    #: True when :meth:`prepare` only changes the layout (uint8 CHW at the decoded size)
    resizes_on_device: bool = True

    def prepare(self, img: np.ndarray) -> torch.Tensor:
        """img: uint8 (H, W, 3) RGB. Returns a CHW tensor for :meth:`to_network`."""
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

    def to_network(self, batch: torch.Tensor) -> torch.Tensor:
        """batch: (N, 3, H, W) prepared images of one size. Returns float32 (N, 3, size, size)."""
        raise NotImplementedError

    def __call__(self, images) -> torch.Tensor:
        """Both steps on a list (or (N, H, W, 3) array) of uint8 RGB images of one size."""
        return self.to_network(torch.stack([self.prepare(np.asarray(im)) for im in images]))

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class Encoder(nn.Module):
    """A feature network with named outputs, preprocessing modes and identified weights.

    Attributes (set by subclasses or their builders):

    - ``name``: registry name, e.g. ``"dinov2-vitl14"``;
    - ``outputs``: feature name -> dimension of the float32 vectors :meth:`forward` returns
      (in insertion order; the first is the default feature);
    - ``preprocessing``: mode name -> :class:`Preprocess` (the first is the default);
    - ``mode``: the selected mode's name; ``preprocess`` is its :class:`Preprocess`;
    - ``weights_digest``: hex sha256 of the weights file the tensors came from (what a
      statistics file records; ``None`` for random test weights), ``weights_origin`` in words,
      ``weights_official``: whether the file is the published one (``None``: not known).
    """

    name: str = ""
    outputs: Dict[str, int] = {}
    preprocessing: Dict[str, Preprocess] = {}

    def __init__(self):
        super().__init__()
        self.mode: str = next(iter(self.preprocessing), "")
        self.weights_digest: Optional[str] = None
        self.weights_origin: str = "random initialisation"
        self.weights_official: Optional[bool] = None

    @property
    def default_feature(self) -> str:
        return next(iter(self.outputs))

    @property
    def preprocess(self) -> Preprocess:
        return self.preprocessing[self.mode]

    def set_mode(self, mode: Optional[str]) -> "Encoder":
        """Selects a preprocessing mode by name (``None`` keeps the current one)."""
        if mode is not None:
            if mode not in self.preprocessing:
                raise FidkitError(f"encoder {self.name!r} has no preprocessing mode {mode!r}; "
                                  f"choose one of {', '.join(self.preprocessing)}")
            self.mode = mode
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: float32 (N, 3, S, S) from ``preprocess.to_network``. Returns feature name ->
        float32 (N, dim) for every name in ``outputs``."""
        raise NotImplementedError

    #: the memory layout the pipeline puts a batch in before :meth:`forward_features`
    input_format: torch.memory_format = torch.contiguous_format

    def forward_features(self, x: torch.Tensor, names=None) -> Dict[str, torch.Tensor]:
        """The named features ``names`` (default: all ``outputs``) of one pass, float32 (N, dim)
        each: what :mod:`fidkit.pipeline` calls. Encoders that can skip work for features not
        asked for override it (Inception)."""
        unknown = [n for n in (names or ()) if n not in self.outputs]
        if unknown:
            raise FidkitError(f"encoder {self.name!r} gives no feature {unknown[0]!r}; it gives "
                              f"{', '.join(self.outputs)}")
        out = self(x)
        return {k: out[k].float() for k in (names or self.outputs)}

    @torch.inference_mode()
    def encode(self, images, batch_size: int = 16) -> Dict[str, np.ndarray]:
        """Convenience for small in-memory sets: uint8 (N, H, W, 3) images of one size (or a
        list of such arrays, any sizes) through the selected mode and the network, on the
        network's device. Returns feature name -> float32 numpy (N, dim)."""
        dev = next(self.parameters()).device
        out: Dict[str, list] = {k: [] for k in self.outputs}
        images = list(images)
        for i in range(0, len(images), batch_size):
            prepared = [self.preprocess.prepare(np.asarray(im)) for im in images[i:i + batch_size]]
            groups: Dict[tuple, list] = {}
            for j, t in enumerate(prepared):
                groups.setdefault(tuple(t.shape), []).append(j)
            parts: Dict[str, list] = {k: [None] * len(prepared) for k in self.outputs}
            for idx in groups.values():
                x = self.preprocess.to_network(torch.stack([prepared[j] for j in idx]).to(dev))
                feats = self(x)
                for k, v in feats.items():
                    for j, row in zip(idx, v.float().cpu().numpy()):
                        parts[k][j] = row
            for k in self.outputs:
                out[k].extend(parts[k])
        return {k: np.stack(v).astype(np.float32) if v else np.zeros((0, self.outputs[k]), np.float32)
                for k, v in out.items()}

    def describe(self) -> dict:
        """What a statistics file should record about the encoder that made its features."""
        return {"encoder": self.name, "preprocessing": self.mode, "weights_digest": self.weights_digest,
                "weights_origin": self.weights_origin, "weights_official": self.weights_official}


@dataclass(frozen=True)
class EncoderInfo:
    """A registry entry: what the encoder is, what it gives, and how to build it.

    ``build(weights, mode)`` returns an eval-mode float32 :class:`Encoder` on the CPU;
    ``weights`` is a file path or ``None`` (then the documented resolution applies).
    """

    name: str
    description: str
    outputs: Mapping[str, int]
    modes: tuple
    build: Callable[..., Encoder] = field(repr=False)
    #: the JSON key of the Fréchet distance in this encoder's space (``fid`` for Inception)
    fd_key: str = ""


def _build_inception(weights=None, mode=None):
    from .inception import build
    return build(weights, mode)


def _build_dinov2(weights=None, mode=None):
    from .dinov2 import build
    return build(weights, mode)


def _build_clip(weights=None, mode=None):
    from .clip import build
    return build(weights, mode)


#: name -> :class:`EncoderInfo`; the first is the default encoder. The first output of each is
#: its default feature (what FD, KID, precision/recall, FD∞ and the bootstrap read).
ENCODERS: Dict[str, EncoderInfo] = {e.name: e for e in [
    EncoderInfo("inception", "the FID Inception-v3 (TF graph of 2015-12-05): pool3, the sFID feature, the "
                "classifier's logits; FID, sFID, IS", {"pool3": 2048, "spatial": 2023, "logits": 1008},
                ("ttur", "pytorch-fid", "clean", "nvidia", "dgm-eval-clean"), _build_inception, "fid"),
    EncoderInfo("dinov2-vitl14", "DINOv2 ViT-L/14 (torch hub dinov2_vitl14), CLS token after the final norm; "
                "FD_DINOv2 of EDM2 and dgm-eval", {"cls": 1024}, ("edm2", "dgm-eval", "dgm-eval-clean"), _build_dinov2,
                "fd_dinov2"),
    EncoderInfo("clip-vitl14-336", "OpenAI CLIP ViT-L/14 at 336 px, projected and L2-normalised image "
                "embedding; CMMD", {"embedding": 768}, ("cmmd",), _build_clip, "fd_clip"),
]}
DEFAULT_ENCODER = next(iter(ENCODERS))


def get_info(name: Optional[str]) -> EncoderInfo:
    """The registry entry called ``name`` (``None``: the default, Inception); one line listing the
    known encoders otherwise."""
    name = DEFAULT_ENCODER if name is None else name
    if name not in ENCODERS:
        raise FidkitError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name]


def encoders_with(feature: str) -> list:
    """Names of the encoders that give the named feature."""
    return [e.name for e in ENCODERS.values() if feature in e.outputs]


def encoder_names() -> list:
    return list(ENCODERS)


def get_encoder(name: str, weights=None, mode: Optional[str] = None) -> Encoder:
    """The encoder called ``name`` with its weights (a path, or ``None`` for the documented
    resolution: environment variable, cache, download) and preprocessing ``mode`` (``None``:
    its default). Raises :class:`~fidkit.errors.FidkitError` for an unknown name or mode and
    :class:`~fidkit.errors.WeightsError` when the weights cannot be had."""
    info = get_info(name)
    if mode is not None and mode not in info.modes:
        raise FidkitError(f"encoder {name!r} has no preprocessing mode {mode!r}; choose one of {', '.join(info.modes)}")
    return info.build(weights, mode)
