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

from . import _args
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


#: the ``fidkit_meta`` keys :meth:`Statistics.save` writes from the statistics themselves (and
#: :meth:`Statistics.load` reads back into attributes, not into ``extra``): an ``extra`` key
#: among them is refused, as it would overwrite what the file records
META_KEYS = ("n", "protocol", "weights_digest", "fidkit_version", "feature_dim", "features", "encoder",
             "per_image_features")


def _file_path(path, what: str) -> Path:
    """``path`` (a str or an os.PathLike such as :class:`pathlib.Path`) as a Path; anything else
    (None, a number, bytes) refused in one line."""
    if not isinstance(path, (str, os.PathLike)):
        raise StatsError(f"{what} must be a file path (str or pathlib.Path), got {type(path).__name__} {path!r:.60}")
    try:
        return Path(path)
    except TypeError:  # an os.PathLike whose __fspath__ gives no str
        raise StatsError(f"{what} must be a file path (str or pathlib.Path), got {type(path).__name__}") from None


def _check_count(n, name: str) -> None:
    """Refuses, in one line, an image count ``n`` that is neither None nor a positive integer."""
    if n is not None and not (_args.is_int(n) and n >= 1):
        raise StatsError(f"{name}: image count n={_args.shown(n)} ({type(n).__name__}); it must be a positive "
                         f"integer, or None when unknown")


def _plain_count(n):
    """``n`` as a plain int for JSON (numpy integers are not serialisable); None stays None."""
    return int(n) if _args.is_int(n) else n


def _file_count(path, a) -> int | None:
    """The image count of a file's ``n`` array: one positive integer (integer dtype, or a float of
    integral value), or -1, which fidkit writes for an unknown count (None); refused in one line
    otherwise (0 and other negative values included)."""
    a = np.asarray(a)
    ok = a.shape == () and (a.dtype.kind in "iu" or (a.dtype.kind == "f" and np.isfinite(a) and a == np.round(a)))
    if not ok:
        raise StatsError(f"{path}: its 'n' is {a.dtype} of shape {a.shape}, not one integer image count; the file "
                         f"was not written by fidkit or is damaged: save n as a scalar integer, or leave it out")
    n = int(a)
    if n == -1:
        return None
    if n < 1:
        raise StatsError(f"{path}: its 'n' is {n}, not a positive image count (or -1 for unknown); the file is "
                         f"damaged: save n as the number of images, or leave it out")
    return n


def _check_meta(path, meta) -> None:
    """Refuses, in one line, a ``fidkit_meta`` that is not the JSON object fidkit writes."""
    if not isinstance(meta, dict):
        raise StatsError(f"{path}: its fidkit_meta is a JSON {type(meta).__name__}, not an object; the file was not "
                         f"written by fidkit or is damaged: remove fidkit_meta to read it as a plain mu/sigma file")
    n = meta.get("n")
    if n is not None and not (_args.is_int(n) and n >= 1):
        raise StatsError(f"{path}: its fidkit_meta records n={n!r}, not a positive integer image count; the file is "
                         f"damaged: make it again")
    for key in ("protocol", "weights_digest", "fidkit_version", "encoder"):
        value = meta.get(key)
        if key in meta and not (isinstance(value, str) or (value is None and key != "encoder")):
            raise StatsError(f"{path}: its fidkit_meta records {key}={value!r}, not a string; the file is damaged: "
                             f"make it again")
    features = meta.get("features", {})
    if not isinstance(features, dict) or not all(isinstance(v, dict) for v in features.values()):
        raise StatsError(f"{path}: its fidkit_meta 'features' is not an object of objects; the file is damaged")
    spatial_n = features.get("spatial", {}).get("n")
    if spatial_n is not None and not (_args.is_int(spatial_n) and spatial_n >= 1):
        raise StatsError(f"{path}: its fidkit_meta records spatial n={spatial_n!r}, not a positive integer image "
                         f"count; the file is damaged: make it again")


class Accumulator:
    """Streaming mean and covariance of feature vectors in float64, on any torch device.

    ``update(x)`` takes a torch tensor x of shape (n, d) (d = ``dim``), any real floating dtype,
    finite values, on any device (it is moved to the accumulator's); anything else is refused.
    """

    def __init__(self, dim: int, device="cpu", float32_sum: bool = False):
        self.dim = dim
        self.n = 0
        self.mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        #: with ``float32_sum``: the float32 sum of the rows :meth:`update` folded in, added one row
        #: after another in the order given, as ``np.mean(x, axis=0)`` of a float32 (n, d) array adds
        #: them; :meth:`mean_float32` divides it. ``_rows32``: the rows it holds.
        self.sum32 = torch.zeros(dim, dtype=torch.float32, device=device) if float32_sum else None
        self._rows32 = 0

    def update(self, x: torch.Tensor) -> None:
        """Folds in a batch x: torch tensor (n, dim) of a real floating dtype (float16, bfloat16,
        float32, float64), finite values. Refused in one line (:class:`StatsError`, the
        accumulator unchanged): other types, complex or integer dtypes, NaN or inf. The
        finiteness check reads the batch's mean and the diagonal of its M2, which NaN or inf
        anywhere (or values too large to square) make non-finite; on the CPU it is made per
        batch, on other devices (where reading it would wait for the device every batch) once,
        in :meth:`result`."""
        if not torch.is_tensor(x):
            raise StatsError(f"features must be a torch tensor of shape (n, {self.dim}), got {type(x).__name__}")
        if x.is_complex() or not x.is_floating_point():
            raise StatsError(f"features have dtype {x.dtype}; they must be real floating point (e.g. torch.float32), "
                             f"not {'complex' if x.is_complex() else 'integer or bool'}")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise StatsError(f"expected features of shape (n, {self.dim}), got {tuple(x.shape)}; give one "
                             f"{self.dim}-value feature vector per row")
        nb = x.shape[0]
        if nb == 0:
            return
        x32 = x.to(device=self.mean.device, dtype=torch.float32) if self.sum32 is not None else None
        x = x.to(device=self.mean.device, dtype=torch.float64)
        mb = x.mean(0)
        xc = x - mb
        m2b = xc.T @ xc
        if x.device.type == "cpu" and not torch.isfinite(torch.cat((mb, m2b.diagonal()))).all():
            raise StatsError(f"a batch of {nb} feature vectors holds NaN or inf (or values too large to square); "
                             f"the network's input or arithmetic went wrong: check the images and the precision")
        if x32 is not None:
            for row in x32:  # one correctly rounded float32 add per row, in order (no tree, no wider sum)
                self.sum32.add_(row)
            self._rows32 += nb
        self.merge_moments(nb, mb, m2b)

    def merge_moments(self, nb: int, mb: torch.Tensor, m2b: torch.Tensor) -> None:
        """Folds in another partial (count, mean, M2) with the Chan–Golub–LeVeque update (not into
        ``sum32``: rows merged so have no order to add them in, and :meth:`mean_float32` refuses)."""
        na = self.n
        n = na + nb
        delta = mb - self.mean
        self.mean += delta * (nb / n)
        self.m2 += m2b
        self.m2 += torch.outer(delta, delta) * (na * nb / n)
        self.n = n

    def mean_float32(self) -> np.ndarray:
        """The mean as numpy's ``np.mean(x, axis=0)`` gives it for the float32 rows folded in, in
        their order: float32 (d,), ``sum32`` divided by n (computed in float64 and rounded once to
        float32, as numpy 2 does, which for n < 2²⁴ is float32's own correctly rounded quotient).
        guided-diffusion's evaluator takes its means so. Needs ``float32_sum`` and rows folded in
        by :meth:`update` only. (For d ≥ 2: a single column, d = 1, numpy sums pairwise instead.)"""
        if self.sum32 is None or self._rows32 != self.n or self.n == 0:
            raise StatsError("no float32 running sum of these rows: make the Accumulator with float32_sum=True "
                             "and fold every row in with update()")
        return (self.sum32.cpu().numpy().astype(np.float64) / self.n).astype(np.float32)

    def result(self, **meta) -> "Statistics":
        if self.n < 2:
            raise StatsError(f"{self.n} image{'s' if self.n != 1 else ''}: a covariance needs at least 2 images "
                             f"(a meaningful FID needs thousands); give more images")
        sigma = (self.m2 / (self.n - 1)).cpu().numpy()
        mean = self.mean.cpu().numpy().copy()
        if not (np.isfinite(mean).all() and np.isfinite(sigma.diagonal()).all()):  # batches on a GPU: checked here
            raise StatsError(f"the features of {self.n} images hold NaN or inf (or values too large to square); the "
                             f"network's input or arithmetic went wrong: check the images and the precision")
        sigma = (sigma + sigma.T) / 2  # exact symmetry despite summation order
        return Statistics(mean, sigma, self.n, **meta)


@dataclass
class Statistics:
    """Gaussian statistics of a feature set.

    mu: float64 (d,); sigma: float64 (d, d), symmetric, unbiased (1/(n−1)); n: image count, a
    positive integer (None when a plain file did not record it); protocol and weights_digest: provenance
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
        return int(np.shape(self.mu)[0])  # np.shape: mu given as a list too

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
        m = {"protocol": self.protocol, "weights_digest": self.weights_digest, "n": _plain_count(self.n),
             "fidkit_version": self.fidkit_version, "feature_dim": self.dim, **self.extra}
        if self.encoder != DEFAULT_ENCODER:  # only then: Inception files keep their bytes
            m["encoder"] = self.encoder
        if self.named:  # only then: files of pool3 alone keep their bytes
            m["features"] = {name: {"mu": FILE_KEYS[name][0], "sigma": FILE_KEYS[name][1], "dim": st.dim,
                                    "n": _plain_count(st.n),
                                    "what": FEATURE_DESCRIPTIONS.get(name, name)}
                             for name, st in [("pool3", self), *sorted(self.named.items())]}
        return m

    def save(self, path) -> Path:
        """Writes the statistics to ``path`` (a str or pathlib.Path, .npz) atomically; returns the path.

        Checked first, before anything is written (:class:`StatsError`, one line): ``path`` a
        str or os.PathLike; what :meth:`validate` checks, of these statistics and of each entry
        of ``named`` (mu and sigma may be numpy arrays or lists, written as float64); ``n`` None
        or a positive integer (a numpy integer is written as a plain one); ``protocol``,
        ``weights_digest`` and ``fidkit_version`` strings or None, ``encoder`` a string;
        ``named`` keys that a file can hold (``spatial``, of 2023 values); ``extra`` a dict of
        string keys, none of them one that save records itself (:data:`META_KEYS`: ``n``,
        ``protocol``, ``weights_digest``, ...), with values JSON can write (plain str, int,
        float, bool, None, list, dict: a numpy number is refused, not converted);
        ``features`` (when kept) finite float32 of shape (n, dim), as fidkit computes them:
        other dtypes are refused, not cast. So a saved file can always be loaded again."""
        path = _file_path(path, "the path to save statistics to")
        self._check_savable(path)
        arrays = {"mu": np.asarray(self.mu, np.float64), "sigma": np.asarray(self.sigma, np.float64)}
        for name, st in sorted(self.named.items()):
            arrays[FILE_KEYS[name][0]] = np.asarray(st.mu, np.float64)
            arrays[FILE_KEYS[name][1]] = np.asarray(st.sigma, np.float64)
        meta = self.meta()
        if self.features is not None:
            feats = np.asarray(self.features)  # float32 (n, dim), finite: checked in _check_savable
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

    def _check_savable(self, path) -> None:
        """Refuses, in one line, statistics that :meth:`save` would write as a file :meth:`load`
        refuses (or could not write at all)."""
        self.validate(f"{path}: these statistics")
        _check_count(self.n, f"{path}: these statistics")
        for attr in ("protocol", "weights_digest", "fidkit_version", "encoder"):
            value = getattr(self, attr)
            if not (isinstance(value, str) or (value is None and attr != "encoder")):
                kind = "a string" if attr == "encoder" else "a string, or None when unknown"
                raise StatsError(f"{path}: these statistics have {attr}={value!r} ({type(value).__name__}); it must "
                                 f"be {kind} (load would refuse the file as damaged)")
        self._check_extra(path)
        if not isinstance(self.named, dict):
            raise StatsError(f"{path}: named is a {type(self.named).__name__}, not a dict of Statistics "
                             f"(e.g. {{'spatial': Statistics}}); give a dict, or an empty one")
        for name, st in sorted(self.named.items(), key=lambda kv: str(kv[0])):
            if name not in FILE_KEYS or name == "pool3":
                saved = [n for n in FILE_KEYS if n != "pool3"]
                raise StatsError(f"{path}: named statistics {name!r} cannot be saved: a statistics file holds only "
                                 f"{', '.join(repr(n) for n in saved)} beside pool3; remove it from .named")
            if not isinstance(st, Statistics):
                raise StatsError(f"{path}: named[{name!r}] is a {type(st).__name__}, not Statistics")
            st.validate(f"{path}: the {name} statistics")
            _check_count(st.n, f"{path}: the {name} statistics")
            if name in FEATURES and st.dim != FEATURES[name]:
                raise StatsError(f"{path}: the {name} statistics have {st.dim} values, but {name} has "
                                 f"{FEATURES[name]} ({FEATURE_DESCRIPTIONS.get(name, name)}); they are another "
                                 f"feature's, remove them from .named")
        if self.features is not None:
            self._check_savable_features(path)

    def _check_extra(self, path) -> None:
        """Refuses, in one line, an ``extra`` that :meth:`save` cannot write as it is: not a dict,
        a key that is not a string or that save records itself (:data:`META_KEYS`), a value
        JSON cannot write (named by its key)."""
        if not isinstance(self.extra, dict):
            raise StatsError(f"{path}: extra is a {type(self.extra).__name__}, not a dict; give a dict of "
                             f"JSON-writable values, or an empty one")
        for key in self.extra:
            if not isinstance(key, str):
                raise StatsError(f"{path}: extra has the key {key!r} ({type(key).__name__}); the keys of extra "
                                 f"must be strings")
        taken = [key for key in META_KEYS if key in self.extra]
        if taken:
            raise StatsError(f"{path}: extra holds {', '.join(map(repr, taken))}, which save records itself "
                             f"({', '.join(META_KEYS)}) and extra would overwrite; remove "
                             f"{'them' if len(taken) > 1 else 'it'} from extra (set the attribute, e.g. "
                             f"Statistics.n, instead) or use another name")
        for key, value in self.extra.items():
            try:
                json.dumps(value, sort_keys=True)
            except (TypeError, ValueError, RecursionError) as e:
                raise StatsError(f"{path}: extra[{key!r}] cannot be written to the file's JSON metadata "
                                 f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); give plain str, "
                                 f"int, float, bool, None, lists and dicts (e.g. float(x) for a numpy number)") from None

    def _check_savable_features(self, path) -> None:
        """Refuses, in one line, per-image ``features`` that :meth:`load_features` would refuse:
        anything but finite float32 of shape (n, dim), as fidkit computes them (not cast)."""
        try:
            feats = np.asarray(self.features)
        except (TypeError, ValueError, RuntimeError) as e:
            raise StatsError(f"{path}: per-image features of type {type(self.features).__name__} are not an "
                             f"array ({str(e).splitlines()[0] if str(e) else type(e).__name__}); give a numpy "
                             f"float32 array of shape (n, dim)") from None
        if feats.shape != (self.n, self.dim):
            raise StatsError(f"{path}: per-image features of shape {tuple(feats.shape)} do not belong to statistics of "
                             f"{self.n} images of {self.dim} dimensions; keep the features of the pass that made "
                             f"them, or set features to None")
        if feats.dtype != np.float32:
            raise StatsError(f"{path}: per-image features have dtype {feats.dtype}; a statistics file keeps float32, "
                             f"as fidkit computes them: convert them yourself (.astype(np.float32)) if that rounding "
                             f"is meant, or set features to None")
        if not np.isfinite(feats).all():
            raise StatsError(f"{path}: per-image features hold NaN or inf; the pass that made them went wrong: "
                             f"compute them again, or set features to None")

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

        Refused in one line (:class:`StatsError`): a ``path`` that is not a str or os.PathLike;
        a file that is not a ``.npz`` (a ``.npy``, an image); an image count that is not a
        positive integer (the ``n`` array: -1, which fidkit writes for an unknown count, reads
        as None; ``fidkit_meta``'s ``n``: null reads as None); a ``fidkit_meta`` whose
        ``protocol``, ``weights_digest`` or ``fidkit_version`` is neither a string nor null, or
        whose ``encoder`` is not a string. An ADM batch whose ``arr_0`` holds no images has an
        unknown count (None).
        """
        path = _file_path(path, "the statistics file")
        if not path.is_file():
            raise StatsError(f"{path}: no such statistics file")
        if path.suffix.lower() == ".pkl":
            return _load_edm2_pickle(path, encoder)
        spatial = None
        try:
            try:
                z = np.load(path, allow_pickle=False)
            except ValueError as e:
                said = str(e).lower()  # numpy's words differ by version; an object .npy says "object arrays"
                if "pickle" in said and "object arrays" not in said:  # neither a zip nor a .npy header
                    raise StatsError(f"{path}: not a statistics .npz (not a numpy file at all); give a .npz with "
                                     f"arrays mu and sigma, as fidkit stats writes (EDM2's pickles: .pkl)") from None
                raise
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise StatsError(f"{path}: a .npy (one numpy array of shape {getattr(z, 'shape', '?')}), not a "
                                 f"statistics .npz; save mu and sigma together: np.savez(path, mu=mu, sigma=sigma)")
            with z:
                files = set(z.files)
                if not {"mu", "sigma"} <= files:
                    hint = (" (images only: a sample batch, not statistics)" if "arr_0" in files else "")
                    raise StatsError(f"{path}: a statistics file needs arrays 'mu' and 'sigma', found "
                                     f"{sorted(files)}{hint}")
                mu, sigma = z["mu"], z["sigma"]
                if {"mu_s", "sigma_s"} <= files:
                    spatial = z["mu_s"], z["sigma_s"]
                meta = json.loads(str(z["fidkit_meta"])) if "fidkit_meta" in files else None
                if meta is not None:
                    _check_meta(path, meta)
                n = _file_count(path, z["n"]) if "n" in files else None
                adm = meta is None and ("arr_0" in files or "mu_s" in files)
                if adm and "arr_0" in files and n is None:
                    images = _npz_array_shape(path, "arr_0")
                    n = images[0] if images and images[0] > 0 else None  # no images: count unknown
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
            st.extra = {k: v for k, v in meta.items() if k not in META_KEYS}
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
        """Checks that mu and sigma are real numeric arrays (float, integer) of shapes (d,) and
        (d, d) with finite values (numpy arrays, or lists numpy reads as such), and that n is a
        positive integer or None; raises StatsError (one line starting with ``name``) otherwise."""
        _check_count(self.n, name)
        try:
            mu, sigma = np.asarray(self.mu), np.asarray(self.sigma)
        except (TypeError, ValueError, RuntimeError) as e:  # ragged lists, a CUDA tensor
            raise StatsError(f"{name}: mu or sigma is not a numeric array "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); give numpy arrays of "
                             f"shapes (d,) and (d, d)") from None
        if np.iscomplexobj(mu) or np.iscomplexobj(sigma):
            raise StatsError(f"{name}: complex mu or sigma; statistics must be real")
        for key, a in (("mu", mu), ("sigma", sigma)):
            if a.dtype.kind not in "fiu":
                raise StatsError(f"{name}: {key} has dtype {a.dtype}; statistics must be real numbers")
        if mu.ndim != 1 or sigma.ndim != 2 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise StatsError(f"{name}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (d,) and (d, d)")
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
            raise StatsError(f"{name}: mu or sigma holds NaN or inf; recompute the statistics")


def merge(parts, keep_features: bool = False) -> "Statistics":
    """Statistics of the union of the image sets behind ``parts`` (exact up to rounding).

    Each part must record its image count (fidkit files do), hold valid statistics
    (:meth:`Statistics.validate`) and all must share encoder, protocol, weights, feature
    dimension, network precision (``extra["network_precision"]``, absent: fp32) and feature
    (``extra["feature"]``, where recorded); a part given twice (the same object, or the same
    file or folder as ``source``) is refused, as it would count its images twice. Uses
    M2 = Σ·(n − 1) of each part and the same pairwise update as :class:`Accumulator`, so
    merging shards equals computing the whole set at once to about 1e-13 relative.

    The result's ``extra`` is the first part's, less what describes one part (``shard``,
    ``nsample*``), with ``skipped`` the union of the parts' skipped files in part order.
    Named features (sFID's ``spatial``) are merged when every part holds them; when only
    some do they are left out, with a :class:`FidkitWarning`. ``keep_features``: the result
    also keeps the per-image features, every part's (``features``, which each must hold:
    :meth:`load_features`) one after another in the parts' order; refused in one line when a
    part holds none.
    """
    from . import __version__

    keep_features = _args.flag(keep_features, "keep_features", StatsError)
    parts = list(parts)
    if not parts:
        raise StatsError("nothing to merge; give two or more statistics files")
    first = parts[0]
    first_name = first.source or "the first statistics"
    seen: dict = {}
    for i, p in enumerate(parts):
        if not isinstance(p, Statistics):
            raise StatsError(f"part {i + 1} of the merge is a {type(p).__name__}, not Statistics; load files with "
                             f"Statistics.load")
        name = p.source or f"statistics {i + 1} of {len(parts)}"
        p.validate(name)
        for sub_name, sub in p.named.items():
            sub.validate(f"{name} ({sub_name})")
        for key in _part_identities(p):
            if key in seen:
                raise StatsError(f"{p.source or 'the same statistics'} is given twice (as parts {seen[key] + 1} and "
                                 f"{i + 1}); merging it twice would count its images twice: give each part once")
            seen[key] = i
        if not _args.is_int(p.n) or p.n < 2:
            raise StatsError(f"{name}: its image count is unknown, so it cannot be merged exactly; merge only "
                             f"files written by fidkit")
        if keep_features and p.features is None:
            raise StatsError(f"{name}: keeps no per-image features, so the merge cannot keep them; make every part "
                             f"with fidkit stats --features, or merge without keeping them")
        if p.dim != first.dim:
            raise StatsError(f"{name}: feature dimension {p.dim}, but {first_name} has {first.dim}")
        for attr in ("encoder", "protocol", "weights_digest"):
            if getattr(p, attr) != getattr(first, attr):
                raise StatsError(f"{name}: {attr} {getattr(p, attr)} differs from {getattr(first, attr)} in "
                                 f"{first_name}; only statistics made the same way can be merged")
        precision, first_precision = (q.extra.get("network_precision", "fp32") for q in (p, first))
        if precision != first_precision:
            raise StatsError(f"{name}: network precision {precision} differs from {first_precision} in {first_name}; "
                             f"only statistics made the same way can be merged (recompute one with --precision "
                             f"{first_precision})")
    features = [(p, p.extra["feature"]) for p in parts if p.extra.get("feature") is not None]
    for p, feature in features[1:]:
        if feature != features[0][1]:
            raise StatsError(f"{p.source or 'statistics'}: feature {feature} differs from {features[0][1]} in "
                             f"{features[0][0].source or 'the first statistics'}; only statistics of one feature can "
                             f"be merged")
    def merged(sts):
        acc = Accumulator(sts[0].dim)
        for p, st in zip(parts, sts):
            acc.merge_moments(p.n, torch.from_numpy(np.asarray(st.mu, np.float64)),
                              torch.from_numpy(np.asarray(st.sigma, np.float64) * (p.n - 1)))
        return acc

    # a shard's place and a dgm-eval cut describe one part, not the union
    extra = {k: v for k, v in first.extra.items() if k not in ("shard", "nsample", "nsample_seed", "nsample_from")}
    skipped = list(dict.fromkeys(path for p in parts for path in p.extra.get("skipped") or ()))
    if skipped:  # every part's undecodable files, not the first's alone
        extra["skipped"] = skipped
    meta = dict(protocol=first.protocol, weights_digest=first.weights_digest, fidkit_version=__version__,
                encoder=first.encoder)
    out = merged(parts).result(**meta, extra=extra)
    for name in dict.fromkeys(name for p in parts for name in p.named):
        holders = [p for p in parts if name in p.named]
        if len(holders) == len(parts):  # named features all parts hold (sFID statistics) are merged alike
            out.named[name] = merged([p.named[name] for p in parts]).result(**meta)
            continue
        lacking = next(p for p in parts if name not in p.named)
        keys = "/".join(FILE_KEYS.get(name, (name,)))
        warnings.warn(f"the merge leaves out the {name} statistics ({keys}): only {len(holders)} of {len(parts)} parts "
                      f"hold them ({lacking.source or 'a part'} does not), and a part's images cannot be left out; "
                      f"compute every part with them (--metrics fid,sfid) to keep them", FidkitWarning, stacklevel=2)
    if keep_features:
        out.features = np.concatenate([p.checked_features(p.features, p.source) for p in parts])
    return out


def shard_order(parts) -> list:
    """``parts`` (:class:`Statistics`) in the order of the shards they record (``extra["shard"]``,
    "I/K" of ``fidkit stats --shard``) when every part records one of the same K, so that their
    per-image features join in the order one pass reads them; as given otherwise."""
    parts = list(parts)
    specs = [p.extra.get("shard") for p in parts]
    try:
        ik = [tuple(int(x) for x in spec.split("/")) for spec in specs]
    except (AttributeError, ValueError):  # a part without a shard record (or not one fidkit writes)
        return parts
    if len({k for _, k in ik}) != 1:
        return parts
    return [p for _, p in sorted(zip((i for i, _ in ik), parts), key=lambda t: t[0])]


def _part_identities(p: Statistics) -> list:
    """What makes two merge parts the same: the object itself, and its source when that names an
    existing file or folder (resolved, so ``a.npz`` and ``./a.npz`` are one). Other sources are
    labels (``NHWC array``, ``fidkit.FID``) that statistics of different images share."""
    keys: list = [("object", id(p))]
    if p.source and os.path.exists(p.source):
        keys.append(("path", os.path.realpath(p.source)))
    return keys


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
