"""Published reference statistics: a registry of the files papers compare against, fetched
once into fidkit's cache (``fidkit stats fetch NAME``).

Each entry names where the file is published, the dataset, and the protocol it was made
with: TTUR's files (the original TF FID) and clean-fid's ``legacy_tensorflow`` files
belong to protocol ``ttur``, clean-fid's ``legacy_pytorch`` files to ``pytorch-fid``, its
``clean`` files to ``clean``. All of them come from the same TF Inception-v3 graph of
2015-12-05 that fidkit's weights reproduce.

Digests. fidkit cannot know the digests of files it has never been able to download (the
machines it is built on have no internet), so it trusts the first download: the sha256 of
the file as published is recorded in ``stats/digests.json`` in the cache, and every later
download, and the download digest a cached copy records, is checked against it; the sha256
of the converted file is recorded too (``NAME#cached``) and checked on every use. A changed
file upstream, or a cached copy changed or damaged since it was written, is then reported
instead of silently giving other scores.

The cached file is a fidkit statistics file (``mu``, ``sigma``, metadata): the published
``mu``/``sigma`` unchanged (float64), with the protocol, the registry name, the URL and the
download's sha256 recorded. Its weights digest is left unknown (the published files were
computed with TensorFlow, not with a weights file fidkit can hash), so only the protocol is
checked when it is compared.

Concurrency: processes fetching into one cache at once take an exclusive lock per name
(``stats/.NAME.lock``; :func:`fidkit._io.cache_lock`), look in the cache again once they
hold it, and so download each file once; the digest record is updated under its own lock
(``stats/.digests.lock``), so concurrent first downloads of different names keep every
record. Files appear by atomic rename; a killed process's lock dies with it, and its
partial download is deleted by the next holder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._io import DigestRecord, DownloadFailed, cache_lock, download, file_sha256, remove_stale_temporaries
from .errors import StatsError
from .stats import Statistics
from .weights import cache_dir

TTUR_BASE = "http://bioinf.jku.at/research/ttur/ttur_stats/"
CLEANFID_BASE = "https://www.cs.cmu.edu/~clean-fid/stats/"
CLEANFID_PROTOCOL = {"clean": "clean", "legacy_tensorflow": "ttur", "legacy_pytorch": "pytorch-fid"}


@dataclass(frozen=True)
class Published:
    """One published statistics file: registry name, URL, fidkit protocol, what it describes."""

    name: str
    url: str
    protocol: str
    dataset: str
    publisher: str


def _ttur(name: str, file: str, dataset: str) -> Published:
    return Published(name, TTUR_BASE + file, "ttur", dataset, "TTUR (bioinf-jku)")


def _cleanfid(dataset: str, split: str, res: int, modes, about: str) -> list[Published]:
    out = []
    for mode in modes:
        name = f"cleanfid-{dataset}-{split}-{res}-{mode}".replace("_", "-")
        out.append(Published(name, f"{CLEANFID_BASE}{dataset}_{mode}_{split}_{res}.npz", CLEANFID_PROTOCOL[mode],
                             f"{about}, {split} split, {res}×{res}", f"clean-fid ({mode})"))
    return out


_ALL_MODES = ("clean", "legacy_tensorflow", "legacy_pytorch")
PUBLISHED: dict[str, Published] = {p.name: p for p in [
    _ttur("ttur-cifar10-train", "fid_stats_cifar10_train.npz", "CIFAR-10 training set, 32×32"),
    _ttur("ttur-celeba", "fid_stats_celeba.npz", "CelebA, cropped and resized to 64×64"),
    _ttur("ttur-svhn-train", "fid_stats_svhn_train.npz", "SVHN training set, 32×32"),
    _ttur("ttur-lsun-bedroom-train", "fid_stats_lsun_train.npz", "LSUN bedrooms training set, 64×64"),
    _ttur("ttur-imagenet-train", "fid_stats_imagenet_train.npz", "ImageNet training set, 64×64"),
    _ttur("ttur-imagenet-valid", "fid_stats_imagenet_valid.npz", "ImageNet validation set, 64×64"),
    *_cleanfid("cifar10", "train", 32, _ALL_MODES, "CIFAR-10"),
    *_cleanfid("cifar10", "test", 32, _ALL_MODES, "CIFAR-10"),
    *_cleanfid("ffhq", "trainval70k", 1024, ("clean", "legacy_tensorflow"), "FFHQ"),
    *_cleanfid("ffhq", "trainval70k", 256, ("clean", "legacy_tensorflow"), "FFHQ"),
    *_cleanfid("lsun_church", "train", 256, ("clean", "legacy_tensorflow"), "LSUN churches"),
    *_cleanfid("afhq_cat", "train", 512, ("clean",), "AFHQ cats"),
    *_cleanfid("afhq_dog", "train", 512, ("clean",), "AFHQ dogs"),
    *_cleanfid("afhq_wild", "train", 512, ("clean",), "AFHQ wild animals"),
    *_cleanfid("metfaces", "train", 1024, ("clean",), "MetFaces"),
]}


def stats_dir() -> Path:
    """Where fetched statistics live: ``<fidkit cache>/stats``."""
    return cache_dir() / "stats"


#: name -> sha256 of each published file, recorded at its first download
DIGESTS = DigestRecord(lambda: stats_dir(), StatsError)  # a function: FIDKIT_CACHE is read at use


def recorded_digests() -> dict:
    """name -> sha256 of the published file, as recorded at its first download; and
    ``name#cached`` -> sha256 of the converted file in the cache, as written."""
    return DIGESTS.read()


def _cached_key(name: str) -> str:
    return f"{name}#cached"


def lookup(name: str) -> Published:
    if name not in PUBLISHED:
        close = [n for n in PUBLISHED if name.lower() in n]
        hint = f"; did you mean {', '.join(close[:4])}?" if close else "; `fidkit stats fetch` lists them"
        raise StatsError(f"no published statistics named {name!r}{hint}")
    return PUBLISHED[name]


def cached_path(name: str) -> Path:
    """The path of the fidkit statistics file for ``name`` in the cache (may not exist yet)."""
    return stats_dir() / f"{lookup(name).name}.npz"


def _download(url: str, dest: Path, timeout: float) -> None:
    try:
        download(url, dest, timeout)
    except DownloadFailed as e:
        if e.http_code is not None:
            raise StatsError(f"cannot download {url}: {e.reason}; the file may have moved") from None
        raise StatsError(f"cannot download {url} ({e.reason}); fetching published statistics needs the internet, "
                         f"or put the file there yourself and pass its path instead") from None


def fetch(name: str, *, timeout: float = 30.0, say=print) -> Path:
    """The cached fidkit statistics file of the published statistics ``name``, downloaded
    and converted on first use. The download's sha256 is recorded at the first download
    and checked on every later one; the cached file's recorded sha256 is checked on every
    call. Raises :class:`~fidkit.errors.StatsError` (one line) when offline, on a digest
    mismatch, or when the file is not a statistics file."""
    entry = lookup(name)
    out = cached_path(name)
    if out.is_file():
        return _checked(out, entry)
    with cache_lock(stats_dir() / f".{entry.name}.lock", waiting=lambda: say(
            f"fidkit: stats: waiting for another fidkit process that is fetching {entry.name}"),
            unwritable=lambda e: StatsError(f"cannot write to {stats_dir()} ({e.strerror or e}); set FIDKIT_CACHE "
                                            f"to a writable folder")):
        if out.is_file():  # fetched by another process while this one waited
            return _checked(out, entry)
        remove_stale_temporaries(stats_dir(), [out.name, f"{entry.name}.published.npz", f"{entry.name}.converted.npz"])
        return _fetch_locked(entry, out, timeout, say)


def _checked(out: Path, entry: Published) -> Path:
    record = recorded_digests()
    recorded = record.get(entry.name)
    st = Statistics.load(out)
    if recorded is None or st.extra.get("download_sha256") != recorded:
        raise StatsError(f"{out} does not match the digest recorded at the first download; delete it and "
                         f"fetch again")
    digest = file_sha256(out)
    if _cached_key(entry.name) not in record:  # a cache written before its bytes were recorded: trusted now
        DIGESTS.add(_cached_key(entry.name), digest)
    elif record[_cached_key(entry.name)] != digest:
        raise StatsError(f"{out} has changed since it was written (its sha256 is not the one recorded then); "
                         f"delete it and fetch again")
    return out


def _fetch_locked(entry: Published, out: Path, timeout: float, say) -> Path:
    """Downloads and converts ``entry`` into ``out``; the caller holds the name's lock."""
    recorded = recorded_digests().get(entry.name)
    raw = stats_dir() / f"{entry.name}.published.npz"
    say(f"fidkit: stats: downloading {entry.url}")
    _download(entry.url, raw, timeout)
    try:
        digest = file_sha256(raw)
        if recorded is not None and digest != recorded:
            raise StatsError(f"{entry.url} has sha256 {digest[:12]}…, but the first download had {recorded[:12]}…; "
                             f"the published file changed or the download is damaged. Delete {DIGESTS.path} "
                             f"to trust the new file")
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a plain mu/sigma file, as expected: provenance is added below
            published = Statistics.load(raw)
        st = Statistics(published.mu, published.sigma, published.n, entry.protocol, None,
                        extra={"registry_name": entry.name, "dataset": entry.dataset, "publisher": entry.publisher,
                               "url": entry.url, "download_sha256": digest,
                               "network": "TF Inception-v3 2015-12-05 (the graph the publisher ran)"},
                        source=str(out))
        if recorded is None:  # recorded before the file appears: a reader that sees the file sees its digest
            DIGESTS.add(entry.name, digest)
            say(f"fidkit: stats: first download of {entry.name}: recorded sha256 {digest}")
        converted = Path(st.save(raw.with_name(f"{entry.name}.converted.npz")))
        DIGESTS.add(_cached_key(entry.name), file_sha256(converted))  # before the file appears, as above
        converted.replace(out)
    finally:
        raw.unlink(missing_ok=True)
        raw.with_name(f"{entry.name}.converted.npz").unlink(missing_ok=True)
    return out
