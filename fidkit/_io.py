"""Atomic file writes and the lock that guards fidkit's cache.

Atomic writes: a temporary file beside the target, flushed to disk (``fsync``) and renamed
over it when complete, so that after a power loss the target holds the old bytes or the new,
never a renamed but empty file. An interrupted run (Ctrl-C, a full disk, a crash) leaves the
target untouched and no temporary file behind; a process killed outright (SIGKILL, power
loss) can leave a ``.NAME.*.tmp`` file, which :func:`remove_stale_temporaries` deletes under
the lock.

The cache lock (:func:`cache_lock`) is ``flock`` on a lock file in the cache folder. The
kernel releases it when its holder exits, however it exits, so a killed process never
leaves a lock that blocks the next run. The lock file itself stays (deleting it would let
two processes lock two different files of the same name).

:func:`say` prints what the cache code does (``fidkit: weights: …``) on stderr, except on
torchrun's ranks > 0 (:data:`quiet`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; atomic renames still keep readers safe
    fcntl = None



#: True on torchrun ranks > 0 (set by :mod:`fidkit.distributed`): there rank 0 alone says
#: what fidkit does (fetching weights, waiting for a lock), as it alone shows warnings
quiet = False


def say(topic: str, msg: str) -> None:
    """``fidkit: TOPIC: MSG`` on stderr, unless :data:`quiet`."""
    if not quiet:
        print(f"fidkit: {topic}: {msg}", file=sys.stderr, flush=True)


def _read_umask() -> int | None:
    """The process umask read without changing it (Linux 4.7+: ``Umask:`` in
    ``/proc/self/status``); None where it cannot be read so."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _import_umask() -> int:
    """The umask at import: read without changing it where possible, else by setting it and
    putting it back, once, at import (setting it while other threads create files would give
    their files the wrong mode)."""
    mask = _read_umask()
    if mask is None:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _import_umask()


def _umask() -> int:
    """The current umask where it can be read without changing it, else the umask at import;
    never sets it (setting and restoring it races with threads creating files)."""
    mask = _read_umask()
    return _UMASK_AT_IMPORT if mask is None else mask


def _fsync(fd: int) -> None:
    """``os.fsync``, except on file systems that cannot sync (EINVAL, ENOTSUP: nothing to wait for);
    any other failure (EIO, ENOSPC) is raised, since the bytes may not be on disk."""
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def atomic_write(path, write: Callable[[BinaryIO], None]) -> Path:
    """Calls ``write(f)`` on a temporary binary file, then renames it to ``path``.

    Raises OSError (the target untouched) when the folder is missing or unwritable or
    the write fails.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            _fsync(f.fileno())  # the bytes on disk before the rename makes them the target's
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def cache_lock(path, waiting: Callable[[], None] | None = None,
               unwritable: Callable[[OSError], Exception] | None = None) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (created if missing, with its folder) for the
    ``with`` block.

    Blocks while another process holds it, calling ``waiting()`` once first so that the
    user learns why nothing happens. Released on exit from the block and, by the kernel,
    when the process dies. An OSError while creating the folder or taking the lock is
    raised as ``unwritable(error)`` when given (the caller's one-line message); errors in
    the block itself pass unchanged. Without ``fcntl`` (Windows) it does not lock:
    concurrent runs may then repeat a download, but still never read a half-written file.
    """
    path, fd = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
        if fd is not None:
            os.close(fd)
        if unwritable is None:
            raise
        raise unwritable(e) from None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the lock


def remove_stale_temporaries(folder, names) -> None:
    """Deletes what killed writers of ``names`` left in ``folder``: :func:`atomic_write`'s
    ``.NAME.*.tmp`` files and ``NAME.download`` files. Call it only while holding the lock
    under which those files are written, so that none of them can still be in use."""
    folder = Path(folder)
    for name in names:
        for p in [*folder.glob(f".{name}.*.tmp"), folder / f"{name}.download"]:
            with contextlib.suppress(FileNotFoundError):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()


class DigestRecord:
    """Digests trusted on first use: a JSON ``{name: sha256}`` file in a cache folder.

    A file without a published digest is recorded at its first download; later files of
    that name must match. ``read()`` gives the record ({} when there is none); ``add`` reads,
    changes and writes it under a lock, so concurrent first downloads of different names
    keep each other's entries. ``error`` is the exception class an unreadable record raises.
    """

    def __init__(self, folder: Callable[[], Path], error: type, filename: str = "digests.json"):
        self._folder, self.error, self.filename = folder, error, filename

    @property
    def path(self) -> Path:
        return self._folder() / self.filename

    def read(self) -> dict:
        path = self.path
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise self.error(f"{path}: unreadable digest record ({e}); delete it to trust the next downloads "
                             f"anew") from None

    def add(self, name: str, digest: str) -> None:
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        with cache_lock(folder / f".{self.filename}.lock"):  # read, change, write: one process at a time
            remove_stale_temporaries(folder, [self.filename])
            record = self.read()
            record[name] = digest
            text = json.dumps(record, indent=1, sort_keys=True).encode()
            atomic_write(self.path, lambda f: f.write(text))


class DownloadFailed(Exception):
    """A download that did not complete: ``url``, ``reason`` in words, ``http_code`` (None when
    the server was not reached). Callers turn it into their own one-line error."""

    def __init__(self, url: str, reason: str, http_code: int | None = None):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.http_code = url, reason, http_code


def download(url: str, dest: Path, timeout: float) -> None:
    """Downloads ``url`` to ``dest`` through ``dest.download`` beside it, renamed over ``dest``
    only when complete (no half-written ``dest``, the temporary removed on any failure).
    Raises :class:`DownloadFailed`."""
    import urllib.error
    import urllib.request

    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".download")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        tmp.replace(dest)
    except urllib.error.HTTPError as e:
        raise DownloadFailed(url, f"HTTP {e.code} {e.reason}", e.code) from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DownloadFailed(url, str(getattr(e, "reason", None) or e)) from None
    finally:
        tmp.unlink(missing_ok=True)
