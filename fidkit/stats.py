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
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write
from .errors import FidkitWarning, StatsError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


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

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def known_provenance(self) -> bool:
        return self.protocol is not None and self.weights_digest is not None

    def meta(self) -> dict:
        return {"protocol": self.protocol, "weights_digest": self.weights_digest, "n": self.n,
                "fidkit_version": self.fidkit_version, "feature_dim": self.dim, **self.extra}

    def save(self, path) -> Path:
        """Writes the statistics to ``path`` (.npz) atomically; returns the path."""
        path = Path(path)
        arrays = {"mu": np.asarray(self.mu, np.float64), "sigma": np.asarray(self.sigma, np.float64),
                  "n": np.array(-1 if self.n is None else self.n, np.int64),
                  "fidkit_meta": np.array(json.dumps(self.meta(), sort_keys=True))}
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
    def load(cls, path) -> "Statistics":
        """Reads a fidkit file, or a plain ``mu``/``sigma`` file written by others (provenance unknown)."""
        path = Path(path)
        if not path.is_file():
            raise StatsError(f"{path}: no such statistics file")
        try:
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                if not {"mu", "sigma"} <= files:
                    raise StatsError(f"{path}: a statistics file needs arrays 'mu' and 'sigma', found "
                                     f"{sorted(files)}")
                mu, sigma = z["mu"], z["sigma"]
                meta = json.loads(str(z["fidkit_meta"])) if "fidkit_meta" in files else None
                n = int(z["n"]) if "n" in files else None
        except StatsError:
            raise
        except ValueError as e:
            if "pickle" in str(e).lower():
                raise StatsError(f"{path}: holds object arrays, which fidkit does not load (allow_pickle=False); "
                                 f"save mu and sigma as numeric arrays") from None
            raise StatsError(f"{path}: not a readable .npz ({e})") from None
        except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
            raise StatsError(f"{path}: not a readable .npz ({type(e).__name__}); the file may be truncated") from None
        for name, a in (("mu", mu), ("sigma", sigma)):
            if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
                raise StatsError(f"{path}: {name} has dtype {a.dtype}; statistics must be real numbers")
        st = cls(np.asarray(mu, np.float64), np.asarray(sigma, np.float64), source=str(path))
        st.validate(str(path))
        if meta is not None:
            st.n = meta.get("n", n)
            st.protocol = meta.get("protocol")
            st.weights_digest = meta.get("weights_digest")
            st.fidkit_version = meta.get("fidkit_version")
            st.extra = {k: v for k, v in meta.items()
                        if k not in ("n", "protocol", "weights_digest", "fidkit_version", "feature_dim")}
        else:
            st.n = n if n is not None and n >= 0 else None
            warnings.warn(f"{path} is a plain mu/sigma file: its protocol and weights are unknown, so compare "
                          f"it only with statistics made the same way", FidkitWarning, stacklevel=2)
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
        for attr in ("protocol", "weights_digest"):
            if getattr(p, attr) != getattr(first, attr):
                raise StatsError(f"{name}: {attr} {getattr(p, attr)} differs from {getattr(first, attr)} in "
                                 f"{first_name}; only statistics made the same way can be merged")
    acc = Accumulator(first.dim)
    for p in parts:
        acc.merge_moments(p.n, torch.from_numpy(np.asarray(p.mu, np.float64)),
                          torch.from_numpy(np.asarray(p.sigma, np.float64) * (p.n - 1)))
    extra = {k: v for k, v in first.extra.items() if k != "shard"}
    return acc.result(protocol=first.protocol, weights_digest=first.weights_digest, fidkit_version=__version__,
                      extra=extra)
