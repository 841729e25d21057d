"""The FID Inception-v3 as an :class:`~fidkit.encoders.Encoder`: a thin adapter.

The network (:class:`fidkit.inception.FIDInception`), its weights (:mod:`fidkit.weights`) and
its protocols (:mod:`fidkit.preprocess`: ``ttur``, ``pytorch-fid``, ``clean``, ``nvidia``,
``dgm-eval-clean``, which already
have the two steps of a :class:`~fidkit.encoders.Preprocess`) stay where they were; this module
only presents them through the encoder interface, so that the pipeline sees one kind of
object. Outputs: ``pool3`` (2048, the default feature), ``spatial`` (2023, the sFID feature)
and ``logits`` (1008, weights with the classifier only). :meth:`forward_features` is the
network's own, which computes only what is asked for, in the memory layout the network was
built in: the numbers are those of the network called directly, to the last bit.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..inception import FEATURES, FIDInception
from ..preprocess import PROTOCOLS
from ..weights import Weights, build_network, load_file, resolve
from . import Encoder

NAME = "inception"


class InceptionEncoder(Encoder):
    """``inception``: outputs ``pool3``, ``spatial``, ``logits``; modes ``ttur`` (default),
    ``pytorch-fid``, ``clean``, ``nvidia``, ``dgm-eval-clean``. Wraps a built :class:`FIDInception` and its :class:`Weights`."""

    name = NAME
    outputs = dict(FEATURES)
    preprocessing = dict(PROTOCOLS)

    def __init__(self, net: FIDInception, weights: Weights, mode: Optional[str] = None,
                 input_format: torch.memory_format = torch.contiguous_format):
        super().__init__()
        self.net = net
        self.weights = weights
        self.input_format = input_format
        self.weights_digest, self.weights_origin = weights.digest, weights.origin
        self.weights_official = None
        if not weights.has_classifier:
            self.outputs = {k: v for k, v in FEATURES.items() if k != "logits"}
        self.set_mode(mode)

    def forward_features(self, x: torch.Tensor, names=("pool3",)) -> dict:
        return self.net.forward_features(x, tuple(names))

    def forward(self, x):
        return self.forward_features(x, tuple(self.outputs))


def build(weights=None, mode: Optional[str] = None) -> InceptionEncoder:
    """The Inception encoder on the CPU with ``weights`` (a path, or ``None``: fidkit's
    resolution of the Inception weights, see :mod:`fidkit.weights`)."""
    w = weights if isinstance(weights, Weights) else (load_file(weights) if weights is not None else resolve())
    return InceptionEncoder(build_network(w), w, mode)
