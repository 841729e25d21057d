"""Fuzzing the image decoder: valid PNG, JPEG, WebP, TIFF, BMP and GIF files, truncated,
bit-flipped, overwritten, with bytes inserted, deleted or repeated, headers of other
formats spliced in, PNG checksums made valid again. Every case must decode to uint8 (H, W, 3) or fail with fidkit's one-line
SourceError, within seconds; through the CLI with ``--skip-bad`` every file is decoded or
skipped, with no traceback and no worker crash.

About 100 cases run by default; ``pytest -m slow tests/test_fuzz_decode.py`` runs 5,000
(``FIDKIT_FUZZ_EXAMPLES`` changes the number).
"""

import faulthandler
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import fidkit
from fidkit.errors import SourceError
from fidkit.sources import decode

HANG_S = 120  # a decode running this long kills the test run with every thread's traceback


def _seed_files() -> dict:
    """name -> (bytes, extension): small valid images in the six formats, several modes and options each."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (13, 19, 3), dtype=np.uint8))
    cases = {
        "png-rgb": (rgb, "PNG", {}), "png-rgba": (rgb.convert("RGBA"), "PNG", {}),
        "png-p": (rgb.convert("P"), "PNG", {}), "png-l-interlaced": (rgb.convert("L"), "PNG", {"interlace": 1}),
        "jpeg": (rgb, "JPEG", {"quality": 90}), "jpeg-progressive": (rgb, "JPEG", {"progressive": True}),
        "jpeg-gray": (rgb.convert("L"), "JPEG", {}), "jpeg-cmyk": (rgb.convert("CMYK"), "JPEG", {}),
        "webp-lossy": (rgb, "WEBP", {"quality": 80}), "webp-lossless": (rgb.convert("RGBA"), "WEBP", {"lossless": True}),
        "tiff-raw": (rgb, "TIFF", {}), "tiff-lzw": (rgb, "TIFF", {"compression": "tiff_lzw"}),
        "tiff-packbits": (rgb.convert("L"), "TIFF", {"compression": "packbits"}),
        "bmp-rgb": (rgb, "BMP", {}), "bmp-p": (rgb.convert("P"), "BMP", {}),
        "gif": (rgb.convert("P"), "GIF", {}),
        "gif-animated": (rgb.convert("P"), "GIF", {"save_all": True, "append_images": [rgb.rotate(90).convert("P")]}),
    }
    out = {}
    for name, (im, fmt, kw) in cases.items():
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        # GIF is not among the extensions fidkit lists in folders; decoding reads the content, not the name
        out[name] = (buf.getvalue(), ".png" if fmt == "GIF" else "." + fmt.lower().replace("jpeg", "jpg"))
    return out


SEEDS = _seed_files()
NAMES = sorted(SEEDS)


def _fix_png_crcs(d: bytearray) -> None:
    """Recomputes the CRC of every whole PNG chunk, so that damage gets past PIL's CRC check
    into the decoder itself."""
    if d[:8] != b"\x89PNG\r\n\x1a\n":
        return
    pos = 8
    while pos + 8 <= len(d):
        end = pos + 8 + int.from_bytes(d[pos:pos + 4], "big")
        if end + 4 > len(d):
            return
        d[end:end + 4] = zlib.crc32(d[pos + 4:end]).to_bytes(4, "big")
        pos = end + 4


def mutate(data: bytes, ops) -> bytes:
    """Applies ``ops`` (kind, a, b, c) in turn; positions are taken modulo the current length."""
    d = bytearray(data)
    for kind, a, b, c in ops:
        n = max(len(d), 1)
        if kind == "truncate":
            d = d[: a % n]
        elif kind == "flip":  # c bits flipped from position a on, every b+1 bytes
            for k in range(c % 8 + 1):
                if d:
                    d[(a + k * (b % 64 + 1)) % len(d)] ^= 1 << ((b + k) % 8)
        elif kind == "overwrite":  # bytes that decoders treat specially: 0x00, 0xff, 0x7f, and random
            fill = bytes([(0, 0xff, 0x7f, b % 256)[c % 4]]) * (c % 16 + 1)
            d[a % n: a % n + len(fill)] = fill
        elif kind == "insert":
            d[a % n: a % n] = random.Random(b).randbytes(c % 64 + 1)
        elif kind == "delete":
            del d[a % n: a % n + c % 64 + 1]
        elif kind == "duplicate":  # a region repeated: chunks and segments appearing twice
            region = d[a % n: a % n + c % 256 + 1]
            d[b % n: b % n] = region
        elif kind == "splice":  # the start of another format's file over or before this one
            other = SEEDS[NAMES[b % len(NAMES)]][0]
            head = other[: c % 64 + 1]
            if a % 2:
                d[: len(head)] = head
            else:
                d[0:0] = head
        elif kind == "fixcrc":
            _fix_png_crcs(d)
    return bytes(d)


KINDS = ["truncate", "flip", "overwrite", "insert", "delete", "duplicate", "splice", "fixcrc"]
OPS = st.lists(st.tuples(st.sampled_from(KINDS),
                         st.integers(0, 1 << 20), st.integers(0, 1 << 20), st.integers(0, 1 << 10)),
               min_size=1, max_size=5)


def check_decode(path: Path) -> str:
    """Decodes ``path``; returns 'ok' or 'error', failing on anything but an image or a one-line SourceError."""
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's warnings about damaged metadata; fidkit shows them as one line
            arr = decode(path)
    except SourceError as e:
        msg = str(e)
        assert msg.startswith(f"{path}: ") and "\n" not in msg and len(msg) < 600, msg
        return "error"
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and arr.flags.writeable
    assert arr.shape[0] * arr.shape[1] <= Image.MAX_IMAGE_PIXELS
    return "ok"


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="fidkit-fuzz-") as d:
        yield Path(d)


def _property(workdir, name, ops):
    data, ext = SEEDS[name]
    path = workdir / f"case{ext}"
    path.write_bytes(mutate(data, ops))
    check_decode(path)


def test_seed_files_decode():
    with tempfile.TemporaryDirectory() as d:
        for name, (data, ext) in SEEDS.items():
            (Path(d) / f"{name}{ext}").write_bytes(data)
            assert check_decode(Path(d) / f"{name}{ext}") == "ok", name


@settings(max_examples=100, deadline=timedelta(seconds=10), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(NAMES), ops=OPS)
def test_mutated_images_decode_or_fail_in_one_line(workdir, name, ops):
    _property(workdir, name, ops)


@pytest.mark.slow
def test_mutated_images_many(workdir):
    """The same property on FIDKIT_FUZZ_EXAMPLES (5,000) cases; prints the count, time and outcomes."""
    n = int(os.environ.get("FIDKIT_FUZZ_EXAMPLES", "5000"))
    outcomes = {"ok": 0, "error": 0}
    slowest = [0.0, None]

    @settings(max_examples=n, deadline=timedelta(seconds=10), database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(NAMES), ops=OPS)
    def run(name, ops):
        data, ext = SEEDS[name]
        path = workdir / f"case{ext}"
        path.write_bytes(mutate(data, ops))
        t = time.perf_counter()
        outcomes[check_decode(path)] += 1
        if time.perf_counter() - t > slowest[0]:
            slowest[:] = time.perf_counter() - t, (name, ops)

    t0 = time.perf_counter()
    run()
    total = sum(outcomes.values())
    print(f"\nfuzzed {total} cases in {time.perf_counter() - t0:.0f} s: {outcomes['ok']} decoded, "
          f"{outcomes['error']} refused in one line; slowest decode {slowest[0]:.2f} s: {slowest[1]}")
    assert total >= n * 0.95  # hypothesis may skip a few duplicates


def test_a_header_claiming_a_huge_image_is_refused_quickly(tmp_path):
    """A few hundred bytes of JPEG whose header says 10000×10000: PIL only warns (below twice
    its limit) and libjpeg decodes 300 MB of grey; fidkit refuses it before decoding."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "JPEG")
    d = bytearray(buf.getvalue())
    sof = d.index(b"\xff\xc0")
    d[sof + 5: sof + 9] = (10000).to_bytes(2, "big") * 2
    (tmp_path / "bomb.jpg").write_bytes(bytes(d))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(SourceError, match=r"bomb.jpg: image larger than PIL's decompression-bomb limit "
                                              r"\(10000×10000 pixels, PIL.Image.MAX_IMAGE_PIXELS = 89478485\)"):
            decode(tmp_path / "bomb.jpg")
    assert time.perf_counter() - t < 1


def test_fuzzed_folder_through_the_cli_with_skip_bad(tmp_path):
    """24 mutated files and 2 intact ones through `fidkit stats --skip-bad` with 2 decoding
    workers: every file is used or skipped as decode() alone says, no traceback, no crash."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    r = random.Random(16)
    expected_bad = set()
    for i in range(24):
        name = NAMES[i % len(NAMES)]
        data, ext = SEEDS[name]
        ops = [(r.choice(KINDS), r.randrange(1 << 20), r.randrange(1 << 20), r.randrange(1 << 10))
               for _ in range(r.randint(1, 4))]
        path = folder / f"m{i:02d}-{name}{ext}"
        path.write_bytes(mutate(data, ops))
        if check_decode(path) == "error":
            expected_bad.add(path.name)
    for name in ("png-rgb", "jpeg"):
        data, ext = SEEDS[name]
        (folder / f"good-{name}{ext}").write_bytes(data)
    assert 0 < len(expected_bad) < 24  # the mix holds both kinds
    out = tmp_path / "s.npz"
    res = subprocess.run([sys.executable, "-m", "fidkit", "stats", str(folder), "-o", str(out), "--skip-bad",
                          "--json", "--device", "cpu", "--workers", "2", "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "unexpected" not in res.stderr and "worker" not in res.stderr
    result = json.loads(res.stdout)
    assert {Path(p).name for p in result["skipped"]} == expected_bad
    assert result["n"] == 26 - len(expected_bad)
    assert fidkit.Statistics.load(out).n == result["n"]
