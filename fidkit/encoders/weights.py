"""Where an encoder's weights come from, how they are checked, and how they are read.

Resolution, in this order (each step says on stderr what it does):

1. an explicit path (``weights=`` / ``--encoder-weights PATH``), else the environment
   variable of the encoder (``FIDKIT_ENCODER_WEIGHTS_DINOV2_VITL14``,
   ``FIDKIT_ENCODER_WEIGHTS_CLIP_VITL14_336``: ``FIDKIT_ENCODER_WEIGHTS_`` + the name in
   capitals with ``-`` as ``_``);
2. fidkit's cache, ``<cache>/encoders/<official file name>`` (the file as published);
3. the download from the official URL into the cache (``FIDKIT_NO_DOWNLOAD=1`` skips it).
   Offline, one line says which file to get and where to put it; a file put there by hand
   counts as a first download.

Digests. A file with a published digest (OpenAI's CLIP URLs carry the file's sha256) is
checked against it: a download or cached copy that differs is refused. A file without one
(DINOv2) is trusted on first use, as ``fidkit stats fetch`` does: the first download's
sha256 is recorded in ``<cache>/encoders/digests.json`` and a later download or cached copy
that differs is refused. An explicit file whose digest is not the official (or recorded)
one, e.g. fine-tuned weights, is used with one warning that its scores are not comparable
with published ones; its digest is what statistics record.

Formats, read without running code from the file: a torch state dict (DINOv2's ``.pth``)
with ``torch.load(weights_only=True)``; OpenAI's TorchScript archive (``.pt``) through a
restricted unpickler of its ``data.pkl`` that admits only tensors, their storages and
plain containers (TorchScript modules become attribute dictionaries), so the archive's
code is never compiled or run.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

from .._io import DigestRecord, DownloadFailed, cache_lock, download, file_sha256, remove_stale_temporaries, say
from ..errors import FidkitWarning, WeightsError
from ..weights import cache_dir


def _say(msg: str) -> None:
    say("encoder weights", msg)


@dataclass(frozen=True)
class WeightsSource:
    """Where an encoder's official weights are published.

    ``sha256``: the published digest, or ``None`` when none is published (trust on first use).
    """

    encoder: str
    url: str
    filename: str
    sha256: Optional[str] = None

    @property
    def env_var(self) -> str:
        return "FIDKIT_ENCODER_WEIGHTS_" + "".join(c if c.isalnum() else "_" for c in self.encoder.upper())


@dataclass(frozen=True)
class ResolvedFile:
    """A weights file found by :func:`resolve`: its path, sha256, whether it is the official
    file (``None``: nothing to compare with), and how it was found, in words."""

    path: Path
    sha256: str
    official: Optional[bool]
    origin: str


def encoders_cache() -> Path:
    return cache_dir() / "encoders"


#: official file name -> sha256 recorded at its first download (trust on first use)
DIGESTS = DigestRecord(lambda: encoders_cache(), WeightsError)


def recorded_digests() -> Dict[str, str]:
    """file name -> sha256 recorded at its first download (trust on first use)."""
    return DIGESTS.read()


def expected_digest(src: WeightsSource) -> Optional[str]:
    """The published sha256, else the one recorded at the first download, else ``None``."""
    return src.sha256 or recorded_digests().get(src.filename)


def _download(src: WeightsSource, dest: Path, final: Path, timeout: float) -> None:
    """Downloads ``src`` to ``dest`` (a temporary name); a failure names ``final``, where the
    user may put the file by hand."""
    hint = (f"get {src.url} and put it at {final}, or give it with --encoder-weights PATH "
            f"(or {src.env_var})")
    try:
        download(src.url, dest, timeout)
    except DownloadFailed as e:
        if e.http_code is not None:
            raise WeightsError(f"cannot download {src.url}: {e.reason}; {hint}") from None
        raise WeightsError(f"cannot download the {src.encoder} weights ({e.reason}); {hint}") from None


def resolve(src: WeightsSource, explicit=None, *, allow_download: bool = True, timeout: float = 60.0) -> ResolvedFile:
    """Finds the weights file of ``src`` in the documented order and checks its digest."""
    explicit = explicit or os.environ.get(src.env_var)
    expected = expected_digest(src)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist; give an existing file with --encoder-weights")
        digest = file_sha256(path)
        official = None if expected is None else digest == expected
        if official is False:
            warnings.warn(f"{path} is not the official {src.encoder} weights file (sha256 {digest[:16]}…, official "
                          f"{expected[:16]}…): scores made with it are not comparable with published ones",
                          FidkitWarning, stacklevel=3)
        return ResolvedFile(path, digest, official, f"{src.encoder} weights {path}")
    cached = encoders_cache() / src.filename
    if cached.is_file():
        return _from_cache(src, cached, expected)
    if not allow_download or os.environ.get("FIDKIT_NO_DOWNLOAD") == "1":
        raise WeightsError(f"no {src.encoder} weights in {encoders_cache()}; get {src.url} and put it at {cached}, "
                           f"or give it with --encoder-weights PATH (or {src.env_var})")
    with cache_lock(encoders_cache() / f".{src.filename}.lock", waiting=lambda: _say(  # one download per cache:
            f"waiting for another fidkit process that is downloading {src.filename}"),    # other processes wait
            unwritable=lambda e: WeightsError(f"cannot create the cache folder {encoders_cache()} ({e.strerror or e}); "
                                              f"set FIDKIT_CACHE to a writable folder or give --encoder-weights PATH")):
        expected = expected_digest(src)  # the first download's, if another process recorded one meanwhile
        if cached.is_file():  # downloaded by another process while this one waited
            return _from_cache(src, cached, expected)
        part = cached.with_name(cached.name + ".part")
        remove_stale_temporaries(encoders_cache(), [src.filename, part.name])  # what a killed download left
        part.unlink(missing_ok=True)
        _say(f"downloading {src.url}")
        _download(src, part, cached, timeout)
        try:
            digest = file_sha256(part)
            if expected is not None and digest != expected:
                what = "the published" if src.sha256 else "the first download's"
                raise WeightsError(f"{src.url} has sha256 {digest[:16]}…, not {what} {expected[:16]}…; refusing it"
                                   + ("" if src.sha256 else f" (delete {DIGESTS.path} to trust the new file)"))
            if expected is None:  # recorded before the file appears: a reader that sees the file sees its digest
                DIGESTS.add(src.filename, digest)
            part.replace(cached)
        finally:
            part.unlink(missing_ok=True)
    if expected is None:
        _say(f"first download of {src.filename}: recorded sha256 {digest}")
    else:
        _say(f"verified {src.filename} (sha256 {digest[:16]}…)")
    return ResolvedFile(cached, digest, True, f"{src.encoder} weights {src.url}")


def _from_cache(src: WeightsSource, cached: Path, expected: str | None) -> ResolvedFile:
    if expected is None:  # another process may have downloaded it and recorded its digest meanwhile
        expected = expected_digest(src)
    digest = file_sha256(cached)
    if expected is not None and digest != expected:
        raise WeightsError(f"{cached} has sha256 {digest[:16]}…, expected {expected[:16]}… (damaged, or not the "
                           f"official file); delete it and run again to download it anew")
    if expected is None:  # put there by hand (the offline instructions): trusted on first use, as a download
        DIGESTS.add(src.filename, digest)
        _say(f"first use of {cached}: recorded sha256 {digest}")
    return ResolvedFile(cached, digest, True, f"{src.encoder} weights {cached}")


# ---------------------------------------------------------------- reading files

def _truncated(path, e: Exception) -> WeightsError:
    first = (str(e).splitlines() or [""])[0][:120]
    return WeightsError(f"{path}: cannot read as weights ({type(e).__name__}: {first}); the file may be truncated "
                        f"or not a weights file")


def read_state_dict(path) -> Dict[str, torch.Tensor]:
    """Tensors of a weights file: a TorchScript archive (read by :func:`read_torchscript`) or
    a torch state dict (``torch.load(weights_only=True)``; a ``{"state_dict"|"model": ...}``
    wrapper is opened). Raises WeightsError for a truncated or foreign file."""
    path = Path(path)
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        raise _truncated(path, e) from None
    if is_zip and _torchscript_data_pkl(path) is not None:
        return read_torchscript(path)
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise _truncated(path, e) from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: holds a {type(sd).__name__}, not a state dict")
    return {k: v for k, v in sd.items() if torch.is_tensor(v)}


def _torchscript_data_pkl(path) -> Optional[str]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if not any("/code/" in n for n in names):
        return None
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    return pkls[0] if pkls else None


class _ScriptObject:
    """Stands for a TorchScript module in the pickle: keeps its attributes, runs nothing."""

    def __init__(self, *args):
        self.attributes = {}

    def __setstate__(self, state):
        self.attributes = dict(state) if isinstance(state, dict) else {}


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, zf: zipfile.ZipFile, prefix: str):
        super().__init__(f)
        self._zf, self._prefix = zf, prefix

    def find_class(self, module, name):
        if module == "__torch__" or module.startswith("__torch__."):
            return type(name, (_ScriptObject,), {})
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not admitted in a weights archive")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.60}")
        stype, key = pid[1], pid[2]
        dtype = stype.dtype if isinstance(stype, _StorageType) else None
        if dtype is None:
            raise pickle.UnpicklingError("storage of unknown type")
        raw = bytearray(self._zf.read(f"{self._prefix}/data/{key}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return flat


def read_torchscript(path) -> Dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive, named as its ``state_dict()`` would name them
    (``visual.conv1.weight``, ...), read from ``data.pkl`` with a restricted unpickler: only
    tensors, storages, ordered dicts and placeholder objects for TorchScript modules are
    admitted, so nothing from the archive is compiled or run."""
    path = Path(path)
    name = _torchscript_data_pkl(path)
    if name is None:
        raise WeightsError(f"{path}: not a TorchScript archive")
    prefix = name.rsplit("/", 1)[0]
    try:
        with zipfile.ZipFile(path) as zf:
            with zf.open(name) as f:
                root = _RestrictedUnpickler(f, zf, prefix).load()
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, OSError, RuntimeError, ValueError,
            TypeError, AttributeError) as e:
        raise _truncated(path, e) from None
    out: Dict[str, torch.Tensor] = {}

    def walk(obj, prefix_):
        for k, v in obj.attributes.items():
            if torch.is_tensor(v):
                out[prefix_ + k] = v
            elif isinstance(v, _ScriptObject):
                walk(v, prefix_ + k + ".")

    if not isinstance(root, _ScriptObject):
        raise WeightsError(f"{path}: the archive's data.pkl holds a {type(root).__name__}, not a module")
    walk(root, "")
    return out


def build_encoder(cls, config_of, load_into, source: WeightsSource, weights=None, mode=None, config=None):
    """An encoder of class ``cls`` with its weights resolved as this module describes.

    ``config`` (the architecture's sizes) defaults to ``config_of(state_dict)``, read from the
    file; ``load_into(net, state_dict, origin, assign=True)`` makes the file's tensors the
    parameters of a network built on the meta device, so no second copy is ever allocated.
    Returns the encoder in eval mode, in preprocessing ``mode`` (None: its default), with its
    digest, origin and whether the file is the official one recorded.
    """
    f = resolve(source, weights)
    sd = read_state_dict(f.path)
    with torch.device("meta"):  # no memory until the file's tensors become the parameters
        enc = cls(**(config or config_of(sd)))
    load_into(enc.net, sd, str(f.path), assign=True)
    enc.weights_digest, enc.weights_origin, enc.weights_official = f.sha256, f.origin, f.official
    return enc.set_mode(mode).eval().requires_grad_(False)
