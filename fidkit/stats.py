"""Streaming feature statistics and their ``.npz`` files.

:class:`Accumulator` keeps (n, mean, M2 = Σ (x−mean)(x−mean)ᵀ) in float64 and folds in
each batch with the pairwise update of Chan, Golub and LeVeque, so no features are kept
and no Σxxᵀ − nμμᵀ cancellation occurs. The same update merges shards exactly.

:class:`Statistics` is the result: mean ``mu`` (d,) and unbiased covariance ``sigma``
(d, d), float64, with the image count and the provenance (protocol, weights digest,
fidkit version). Files hold ``mu`` and ``sigma`` like pytorch-fid's and TTUR's, so those
tools read them, plus ``n`` and a JSON ``fidkit_meta``. Files are written to a temporary
name and renamed, so an interrupted write leaves no partial file, and with a fixed zip
timestamp, so the same statistics give the same bytes.

Statistics of further named features of the same pass ride along in ``Statistics.named``:
``spatial`` (the sFID feature, 2023 values) is saved as ``mu_s``/``sigma_s``, the names
OpenAI's guided-diffusion evaluator reads, so a fidkit file serves that evaluator too.
Reference files in the wild are read as statistics with unknown weights: ADM reference
batches (``arr_0`` with ``mu``/``sigma``/``mu_s``/``sigma_s``, extra keys ignored) of
protocol ``ttur``, and EDM2's pickles (``{'fid': {'mu', 'sigma'}, ...}``, read by an
unpickler that admits only dicts, lists, numbers, strings and numpy arrays), whose ``fid``
part is of protocol ``nvidia`` and ``fd_dinov2`` part of DINOv2's mode ``edm2``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write
from .encoders import DEFAULT_ENCODER
from .errors import FidkitWarning, StatsError
from .inception import FEATURES

ZIP_DATE = (1980, 1, 1, 0, 0, 0)

#: file keys of the mean and covariance of each named feature (ADM's names for ``spatial``)
FILE_KEYS = {"pool3": ("mu", "sigma"), "spatial": ("mu_s", "sigma_s")}
#: what each named feature is, recorded in the metadata of files that hold more than pool3
FEATURE_DESCRIPTIONS = {
    "pool3": "Inception pool3 (TF pool_3:0), 2048 values",
    "spatial": "Inception Mixed_6d.branch1x1 after batch norm and ReLU (TF mixed_6/conv:0), channels 0-6 of "
               "17x17x192, flattened in (H, W, C) order: 2023 values (sFID)",
}


def check_writable(path) -> None:
    """Raises StatsError unless a file can be created at ``path`` (checked before long work)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise StatsError(f"{path}: folder {parent} does not exist; create it or choose another output path")
    if not os.access(parent, os.W_OK) or path.is_dir():
        raise StatsError(f"{path}: cannot write there; choose another output path")


class Accumulator:
    """Streaming mean and covariance of feature vectors in float64, on any torch device.

    ``update(x)`` takes x of shape (n, d), any float dtype, on the accumulator's device.
    """

    def __init__(self, dim: int, device="cpu"):
        self.dim = dim
        self.n = 0
        self.mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (n, {self.dim}), got {tuple(x.shape)}")
        nb = x.shape[0]
        if nb == 0:
            return
        x = x.to(device=self.mean.device, dtype=torch.float64)
        mb = x.mean(0)
        xc = x - mb
        self.merge_moments(nb, mb, xc.T @ xc)

    def merge_moments(self, nb: int, mb: torch.Tensor, m2b: torch.Tensor) -> None:
        """Folds in another partial (count, mean, M2) with the Chan–Golub–LeVeque update."""
        na = self.n
        n = na + nb
        delta = mb - self.mean
        self.mean += delta * (nb / n)
        self.m2 += m2b
        self.m2 += torch.outer(delta, delta) * (na * nb / n)
        self.n = n

    def result(self, **meta) -> "Statistics":
        if self.n < 2:
            raise StatsError(f"{self.n} image{'s' if self.n != 1 else ''}: a covariance needs at least 2 images "
                             f"(a meaningful FID needs thousands); give more images")
        sigma = (self.m2 / (self.n - 1)).cpu().numpy()
        sigma = (sigma + sigma.T) / 2  # exact symmetry despite summation order
        return Statistics(self.mean.cpu().numpy().copy(), sigma, self.n, **meta)


@dataclass
class Statistics:
    """Gaussian statistics of a feature set.

    mu: float64 (d,); sigma: float64 (d, d), symmetric, unbiased (1/(n−1)); n: image count
    (None when a plain file did not record it); protocol and weights_digest: provenance
    (None when unknown); fidkit_version: the version that wrote it.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    protocol: str | None = None
    weights_digest: str | None = None
    fidkit_version: str | None = None
    extra: dict = field(default_factory=dict)
    source: str | None = None
    #: statistics of other named features of the same pass, e.g. ``{"spatial": Statistics}``
    named: dict = field(default_factory=dict)
    #: the encoder whose features these are (:data:`fidkit.encoders.ENCODERS`); files without the
    #: field are Inception's. ``protocol`` is that encoder's preprocessing mode.
    encoder: str = DEFAULT_ENCODER
    #: every image's feature vector, float32 (n, d) in reading order, when kept (``fidkit stats
    #: --features``; saved as ``features``): per-image metrics (KID, precision/recall, ...) then
    #: use it in place of the images. :meth:`load` leaves it None; :meth:`load_features` reads it.
    features: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def spatial(self) -> "Statistics | None":
        """The sFID statistics (``mu_s``/``sigma_s``), or None when not computed."""
        return self.named.get("spatial")

    def feature(self, name: str) -> "Statistics":
        """The statistics of the named feature (``pool3`` is this object itself)."""
        if name == "pool3":
            return self
        if name not in self.named:
            keys = FILE_KEYS.get(name, (name,))
            hint = (f"make one with `fidkit stats DIR --metrics fid,sfid -o FILE` (adds {keys[0]}/{keys[1]})"
                    if name == "spatial" else "recompute them with that feature")
            raise StatsError(f"{self.source or 'these statistics'} hold no {name} statistics "
                             f"({'/'.join(keys)}); {hint}")
        return self.named[name]

    @property
    def known_provenance(self) -> bool:
        return self.protocol is not None and self.weights_digest is not None

    def meta(self) -> dict:
        m = {"protocol": self.protocol, "weights_digest": self.weights_digest, "n": self.n,
             "fidkit_version": self.fidkit_version, "feature_dim": self.dim, **self.extra}
        if self.encoder != DEFAULT_ENCODER:  # only then: Inception files keep their bytes
            m["encoder"] = self.encoder
        if self.named:  # only then: files of pool3 alone keep their bytes
            m["features"] = {name: {"mu": FILE_KEYS[name][0], "sigma": FILE_KEYS[name][1], "dim": st.dim, "n": st.n,
                                    "what": FEATURE_DESCRIPTIONS.get(name, name)}
                             for name, st in [("pool3", self), *sorted(self.named.items())]}
        return m

    def save(self, path) -> Path:
        """Writes the statistics to ``path`` (.npz) atomically; returns the path."""
        path = Path(path)
        arrays = {"mu": np.asarray(self.mu, np.float64), "sigma": np.asarray(self.sigma, np.float64)}
        for name, st in sorted(self.named.items()):
            arrays[FILE_KEYS[name][0]] = np.asarray(st.mu, np.float64)
            arrays[FILE_KEYS[name][1]] = np.asarray(st.sigma, np.float64)
        meta = self.meta()
        if self.features is not None:
            feats = np.asarray(self.features, np.float32)
            if feats.shape != (self.n, self.dim):
                raise StatsError(f"per-image features of shape {tuple(feats.shape)} do not belong to statistics of "
                                 f"{self.n} images of {self.dim} dimensions")
            arrays["features"] = feats
            meta["per_image_features"] = {"rows": int(feats.shape[0]), "dtype": "float32"}
        arrays.update({"n": np.array(-1 if self.n is None else self.n, np.int64),
                       "fidkit_meta": np.array(json.dumps(meta, sort_keys=True))})
        check_writable(path)

        def write(f):
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
                for name, arr in arrays.items():
                    info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
                    info.external_attr = 0o644 << 16
                    with z.open(info, "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, arr, allow_pickle=False)

        try:
            atomic_write(path, write)
        except OSError as e:
            raise StatsError(f"{path}: cannot write there ({e.strerror or e}); nothing was written, choose "
                             f"another output path") from None
        return path

    @classmethod
    def load(cls, path, assume_protocol: str | None = None, encoder: str | None = None) -> "Statistics":
        """Reads statistics: a fidkit file, an ADM reference batch, an EDM2 ``.pkl``, or a plain
        ``mu``/``sigma`` file written by others.

        Plain files (pytorch-fid's, TTUR's, EDM's ``.npz`` look alike) get ``assume_protocol``
        (None: unknown, with a warning). ADM reference batches are ``ttur`` statistics with
        unknown weights, EDM2 pickles ``nvidia`` ones (``edm2`` for their DINOv2 part).
        ``mu_s``/``sigma_s`` become ``named["spatial"]``.
        ``encoder`` chooses among the feature spaces of a file that holds several (an EDM2 pickle
        holds Inception's and DINOv2's: ``encoder="dinov2-vitl14"`` gives its ``fd_dinov2``
        statistics, protocol ``edm2``); other files record one encoder, which callers check.
        """
        path = Path(path)
        if not path.is_file():
            raise StatsError(f"{path}: no such statistics file")
        if path.suffix.lower() == ".pkl":
            return _load_edm2_pickle(path, encoder)
        spatial = None
        try:
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                if not {"mu", "sigma"} <= files:
                    hint = (" (images only: a sample batch, not statistics)" if "arr_0" in files else "")
                    raise StatsError(f"{path}: a statistics file needs arrays 'mu' and 'sigma', found "
                                     f"{sorted(files)}{hint}")
                mu, sigma = z["mu"], z["sigma"]
                if {"mu_s", "sigma_s"} <= files:
                    spatial = z["mu_s"], z["sigma_s"]
                meta = json.loads(str(z["fidkit_meta"])) if "fidkit_meta" in files else None
                n = int(z["n"]) if "n" in files else None
                adm = meta is None and ("arr_0" in files or "mu_s" in files)
                if adm and "arr_0" in files and n is None:
                    n = _npz_array_shape(path, "arr_0")[0]
        except StatsError:
            raise
        except ValueError as e:
            if "pickle" in str(e).lower():
                raise StatsError(f"{path}: holds object arrays, which fidkit does not load (allow_pickle=False); "
                                 f"save mu and sigma as numeric arrays") from None
            raise StatsError(f"{path}: not a readable .npz ({e})") from None
        except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
            raise StatsError(f"{path}: not a readable .npz ({type(e).__name__}); the file may be truncated") from None
        st = cls._checked(path, mu, sigma)
        if spatial is not None:
            sp = cls._checked(path, *spatial, names=("mu_s", "sigma_s"))
            if sp.dim != FEATURES["spatial"]:
                raise StatsError(f"{path}: mu_s has {sp.dim} values, but sFID statistics have "
                                 f"{FEATURES['spatial']} (17x17x7 of mixed_6/conv); the file holds another feature")
            st.named["spatial"] = sp
        if meta is not None:
            st.n = meta.get("n", n)
            st.protocol = meta.get("protocol")
            st.weights_digest = meta.get("weights_digest")
            st.fidkit_version = meta.get("fidkit_version")
            st.encoder = meta.get("encoder", DEFAULT_ENCODER)
            st.extra = {k: v for k, v in meta.items() if k not in ("n", "protocol", "weights_digest", "fidkit_version",
                                                                   "feature_dim", "features", "encoder",
                                                                   "per_image_features")}
            spatial_meta = meta.get("features", {}).get("spatial", {})
            if st.spatial is not None:
                st.spatial.n = spatial_meta.get("n", st.n)
        elif adm:
            st.n = n if n is not None and n >= 0 else None
            st.protocol = "ttur"  # the TF graph's own resize: ADM's evaluator feeds it 0..255 images
            st.extra = {"format": "ADM reference batch"}
        else:
            st.n = n if n is not None and n >= 0 else None
            if assume_protocol is not None:
                st.protocol = assume_protocol
            else:
                warnings.warn(f"{path} is a plain mu/sigma file: its protocol and weights are unknown, so compare "
                              f"it only with statistics made the same way", FidkitWarning, stacklevel=2)
        for sub in st.named.values():
            sub.protocol, sub.weights_digest, sub.source = st.protocol, st.weights_digest, st.source
            sub.encoder = st.encoder
            sub.n = sub.n if sub.n is not None else st.n
        return st

    @staticmethod
    def keeps_features(path) -> bool:
        """Whether the fidkit file ``path`` keeps per-image features (``per_image_features`` in
        its ``fidkit_meta``, written beside them); False for unreadable files and other tools'."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return "fidkit_meta" in z.files and "per_image_features" in json.loads(str(z["fidkit_meta"]))
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            return False

    @staticmethod
    def load_features(path, st: "Statistics") -> np.ndarray:
        """The per-image features a fidkit file keeps (``features``, from ``fidkit stats
        --features``) of the statistics ``st`` loaded from ``path``: float32 (st.n, st.dim), in the
        order the images were read. Refused in one line when the file keeps none or they do not
        match ``st``."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if "features" not in z.files:
                    raise StatsError(f"{path}: keeps no per-image features; make it with fidkit stats --features, or "
                                     f"give the images")
                feats = z["features"]
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            raise StatsError(f"{path}: its per-image features are not readable ({type(e).__name__}); the file may "
                             f"be truncated") from None
        return st.checked_features(feats, str(path))

    def checked_features(self, feats, who: str | None = None) -> np.ndarray:
        """``feats`` when they can be these statistics' per-image features: finite float32
        (n, dim); refused in one line otherwise."""
        feats = np.asarray(feats)
        if feats.dtype != np.float32 or feats.shape != (self.n, self.dim) or not np.isfinite(feats).all():
            raise StatsError(f"{who or self.source or 'these statistics'}: its per-image features ({feats.dtype} "
                             f"{tuple(feats.shape)}) are not the finite float32 ({self.n}, {self.dim}) of its "
                             f"statistics; make it again")
        return feats

    @classmethod
    def _checked(cls, path, mu, sigma, names=("mu", "sigma")) -> "Statistics":
        for name, a in zip(names, (mu, sigma)):
            a = np.asarray(a)
            if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
                raise StatsError(f"{path}: {name} has dtype {a.dtype}; statistics must be real numbers")
        st = cls(np.asarray(mu, np.float64), np.asarray(sigma, np.float64), source=str(path))
        st.validate(str(path) if names[0] == "mu" else f"{path} ({names[0]}/{names[1]})")
        return st

    def validate(self, name: str = "statistics") -> None:
        """Checks shapes (d,) and (d, d), real finite values; raises StatsError otherwise."""
        mu, sigma = self.mu, self.sigma
        if np.iscomplexobj(mu) or np.iscomplexobj(sigma):
            raise StatsError(f"{name}: complex mu or sigma; statistics must be real")
        if mu.ndim != 1 or sigma.ndim != 2 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise StatsError(f"{name}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (d,) and (d, d)")
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
            raise StatsError(f"{name}: mu or sigma holds NaN or inf; recompute the statistics")


def merge(parts) -> "Statistics":
    """Statistics of the union of the image sets behind ``parts`` (exact up to rounding).

    Each part must record its image count (fidkit files do) and all must share protocol,
    weights and feature dimension. Uses M2 = Σ·(n − 1) of each part and the same pairwise
    update as :class:`Accumulator`, so merging shards equals computing the whole set at once
    to about 1e-13 relative.
    """
    from . import __version__

    parts = list(parts)
    if not parts:
        raise StatsError("nothing to merge; give two or more statistics files")
    first = parts[0]
    first_name = first.source or "the first statistics"
    for p in parts:
        name = p.source or "statistics"
        if p.n is None or p.n < 2:
            raise StatsError(f"{name}: its image count is unknown, so it cannot be merged exactly; merge only "
                             f"files written by fidkit")
        if p.dim != first.dim:
            raise StatsError(f"{name}: feature dimension {p.dim}, but {first_name} has {first.dim}")
        for attr in ("encoder", "protocol", "weights_digest"):
            if getattr(p, attr) != getattr(first, attr):
                raise StatsError(f"{name}: {attr} {getattr(p, attr)} differs from {getattr(first, attr)} in "
                                 f"{first_name}; only statistics made the same way can be merged")
    def merged(sts):
        acc = Accumulator(sts[0].dim)
        for p, st in zip(parts, sts):
            acc.merge_moments(p.n, torch.from_numpy(np.asarray(st.mu, np.float64)),
                              torch.from_numpy(np.asarray(st.sigma, np.float64) * (p.n - 1)))
        return acc

    # a shard's place and a dgm-eval cut describe one part, not the union
    extra = {k: v for k, v in first.extra.items() if k not in ("shard", "nsample", "nsample_seed", "nsample_from")}
    meta = dict(protocol=first.protocol, weights_digest=first.weights_digest, fidkit_version=__version__,
                encoder=first.encoder)
    out = merged(parts).result(**meta, extra=extra)
    for name in first.named:  # named features all parts hold (sFID statistics) are merged alike
        if all(name in p.named for p in parts):
            out.named[name] = merged([p.named[name] for p in parts]).result(**meta)
    return out


def _npz_array_shape(path, key: str) -> tuple:
    """Shape of one array of an ``.npz`` from its header, without reading its data."""
    with zipfile.ZipFile(path) as z, z.open(key + ".npy") as m:
        version = np.lib.format.read_magic(m)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return tuple(read(m)[0])


class _DataUnpickler(pickle.Unpickler):
    """Admits dicts, lists, tuples, numbers, strings, bytes and numpy arrays (with their dtypes and
    scalars); any other class is refused before it is called, so no code of the file runs."""

    _NUMPY = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self._NUMPY:
            return super().find_class(module, name)
        if module == "numpy" and name.endswith("DType"):  # numpy 2 pickles dtypes through their classes
            return super().find_class(module, name)
        if module.startswith("numpy.dtypes") and name.endswith("DType"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent id")


def _plain_data(x, where: str = "the pickle"):
    """Checks that a loaded object is made only of the admitted kinds (object arrays refused)."""
    if isinstance(x, dict):
        for k, v in x.items():
            _plain_data(k, where)
            _plain_data(v, where)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _plain_data(v, where)
    elif isinstance(x, np.ndarray):
        if x.dtype.hasobject:
            raise pickle.UnpicklingError("numpy.ndarray of dtype object")
    elif not isinstance(x, (str, bytes, int, float, bool, complex, type(None), np.generic)):
        raise pickle.UnpicklingError(type(x).__module__ + "." + type(x).__qualname__)


def load_data_pickle(path):
    """A pickle of plain data (EDM2's reference statistics), read without executing anything:
    dicts, lists, numbers, strings and numpy arrays only; one line naming any other class."""
    try:
        with open(path, "rb") as f:
            obj = _DataUnpickler(io.BytesIO(f.read())).load()
        _plain_data(obj)
        return obj
    except pickle.UnpicklingError as e:
        raise StatsError(f"{path}: the pickle holds {e}, which fidkit does not load (only dicts, lists, numbers, "
                         f"strings and numpy arrays); it is not a statistics file, or not a safe one") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OSError) as e:
        raise StatsError(f"{path}: not a readable pickle ({type(e).__name__}); the file may be truncated") from None


#: EDM2's detector keys -> (fidkit encoder, the preprocessing mode EDM2 computes them with)
EDM2_DETECTORS = {"fid": (DEFAULT_ENCODER, "nvidia"), "fd_dinov2": ("dinov2-vitl14", "edm2")}


def _load_edm2_pickle(path, encoder: str | None = None) -> Statistics:
    """EDM2's reference statistics: ``{'fid': {'mu', 'sigma'}, 'fd_dinov2': {...}, 'num_images'}``.
    ``encoder`` (None: Inception) picks the detector: ``fid`` is Inception's pool3 (protocol
    ``nvidia``: NVIDIA's TorchScript of the TF graph, with its own resize, on uint8 at native
    size), ``fd_dinov2`` is
    DINOv2 ViT-L/14's CLS token (mode ``edm2``: torch bicubic with antialias to 224). The weights
    are recorded as unknown (EDM2 uses the official files but stores no digest)."""
    obj = load_data_pickle(path)
    if not isinstance(obj, dict) or not any(isinstance(obj.get(k), dict) for k in EDM2_DETECTORS):
        keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise StatsError(f"{path}: not EDM2 reference statistics (expected a dict with 'fid': {{'mu', 'sigma'}}, "
                         f"found {keys})")
    want = encoder or DEFAULT_ENCODER
    key = next((k for k, (enc, _) in EDM2_DETECTORS.items() if enc == want), None)
    held = [k for k in obj if isinstance(obj.get(k), dict) and {"mu", "sigma"} <= set(obj[k])]
    if key is None or key not in held:
        have = ", ".join(f"{k} ({EDM2_DETECTORS[k][0]})" if k in EDM2_DETECTORS else k for k in held) or "none"
        raise StatsError(f"{path}: this EDM2 pickle holds no statistics for encoder {want!r} (it holds: {have}); "
                         f"use the matching --encoder or other reference statistics")
    st = Statistics._checked(path, obj[key]["mu"], obj[key]["sigma"])
    n = obj.get("num_images")
    st.n = int(n) if isinstance(n, (int, np.integer)) else None
    st.encoder, st.protocol = EDM2_DETECTORS[key]
    st.extra = {"format": "EDM2 reference pickle", "detector": key,
                "other_detectors": sorted(k for k in held if k != key)}
    return st
