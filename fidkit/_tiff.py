"""libtiff's own messages, kept out of the terminal and put into fidkit's one line.

Pillow decodes compressed TIFFs with libtiff, which prints its errors and warnings to stderr
itself (``ZIPDecode: Decoding error at scanline 0, incorrect data check.``), beside fidkit's
one-line error for the same file. :func:`capture` installs, once per process, libtiff error
and warning handlers that keep the last message instead; :func:`fidkit.sources.decode`
clears it before each file and appends it to its error. Best effort: where the library
cannot be found or a handler cannot be installed, libtiff prints as before and decoding is
unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["capture", "clear", "last"]

# void handler(const char *module, const char *fmt, va_list ap): va_list reaches a function as
# a pointer on x86-64, arm64 and Windows alike, and is handed on to vsnprintf as it came
_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_installed: bool | None = None
_keep: list = []       # the ctypes callbacks, alive as long as the process
_messages: list = []   # libtiff's messages since the last clear()
_vsnprintf = None      # the C library's, set by capture(); None: the format string unformatted


def _format(module, fmt, ap) -> str:
    text = (fmt or b"").decode("utf-8", "replace")
    if _vsnprintf is not None:
        buf = ctypes.create_string_buffer(1024)
        if _vsnprintf(buf, len(buf), fmt, ap) >= 0:
            text = buf.value.decode("utf-8", "replace")
    mod = (module or b"").decode("utf-8", "replace")
    return f"{mod}: {text}" if mod else text


def _on_message(module, fmt, ap) -> None:
    try:
        _messages.append(" ".join(_format(module, fmt, ap).split()))
        del _messages[:-4]
    except Exception:  # never raise into C
        pass


def _libraries():
    """Paths of the libtiff Pillow uses: the one mapped into this process (Linux), Pillow's
    bundled copies, the system's."""
    try:
        with open("/proc/self/maps") as f:
            yield from sorted({line.split()[-1] for line in f if "libtiff" in line and "/" in line})
    except OSError:
        pass
    try:
        import glob

        import PIL
        base = os.path.dirname(PIL.__file__)
        for pattern in (os.path.join(os.path.dirname(base), "pillow.libs", "libtiff*"),
                        os.path.join(base, ".dylibs", "libtiff*")):
            yield from sorted(glob.glob(pattern))
    except ImportError:
        pass
    name = ctypes.util.find_library("tiff")
    if name:
        yield name


def capture() -> bool:
    """Installs the handlers (once per process; a forked worker inherits them). Returns whether
    libtiff's messages are now captured."""
    global _installed, _vsnprintf
    if _installed is None:
        _installed = False
        try:
            import importlib
            importlib.import_module("PIL.Image")  # loads Pillow's extension, and with it libtiff
        except ImportError:
            return False
        try:
            _vsnprintf = ctypes.CDLL(None).vsnprintf
            _vsnprintf.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p)
        except (OSError, AttributeError):
            _vsnprintf = None
        for path in _libraries():
            try:
                lib = ctypes.CDLL(path)
                err, warn = _HANDLER(_on_message), _HANDLER(_on_message)
                for fn, cb in ((lib.TIFFSetErrorHandler, err), (lib.TIFFSetWarningHandler, warn)):
                    fn.restype, fn.argtypes = ctypes.c_void_p, (_HANDLER,)
                    fn(cb)
                _keep.extend([lib, err, warn])
                _installed = True
                break  # the first found is the one in use (mapped, or Pillow's own)
            except (OSError, AttributeError):
                continue
    return _installed


def clear() -> None:
    _messages.clear()


def last() -> str | None:
    """libtiff's last message since :func:`clear` (one line), or None."""
    return _messages[-1] if _messages else None
