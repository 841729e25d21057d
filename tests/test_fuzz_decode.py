"""Fuzzing the image decoder: valid PNG, JPEG, WebP, TIFF, BMP and GIF files, truncated,
bit-flipped, overwritten, with bytes inserted, deleted or repeated, headers of other
formats spliced in, PNG checksums made valid again. Every case must decode to uint8 (H, W, 3) or fail with fidkit's one-line
SourceError, within seconds; through the CLI with ``--skip-bad`` every file is decoded or
skipped, with no traceback and no worker crash.

The archive containers get the same treatment: a small valid zip, tar and tar.gz holding
a few seed images, damaged inside members (before archiving, so checksums stay valid) and
as a whole (the same mutations, archive headers spliced in, tar header checksums made
valid again). Reading each as a source either refuses the archive in one line, or gives
every member as an image or a one-line SourceError naming ``ARCHIVE:MEMBER``.

About 100 cases of each run by default; ``pytest -m slow tests/test_fuzz_decode.py`` runs
5,000 of each (``FIDKIT_FUZZ_EXAMPLES`` changes the number).
"""

import faulthandler
import io
import json
import os
import tarfile
import random
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

import fidkit
from fidkit.errors import SourceError
from fidkit.sources import as_images, decode

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


def _fix_tar_checksums(d: bytearray) -> None:
    """Recomputes the checksum of every block that looks like a tar header (``ustar`` at 257),
    so that damaged header fields get past tarfile's checksum into its field parsing."""
    for pos in range(0, len(d) - 511, 512):
        if d[pos + 257:pos + 262] == b"ustar":
            d[pos + 148:pos + 156] = b" " * 8
            d[pos + 148:pos + 156] = b"%06o\0 " % (sum(d[pos:pos + 512]) & 0o777777)


def mutate(data: bytes, ops, others: list | None = None) -> bytes:
    """Applies ``ops`` (kind, a, b, c) in turn; positions are taken modulo the current length.
    ``others``: the files whose starts ``splice`` puts in (default: the seed images)."""
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
            pool = others or [SEEDS[n][0] for n in NAMES]
            other = pool[b % len(pool)]
            head = other[: c % 64 + 1]
            if a % 2:
                d[: len(head)] = head
            else:
                d[0:0] = head
        elif kind == "fixcrc":
            _fix_png_crcs(d)
        elif kind == "fixtar":
            _fix_tar_checksums(d)
    return bytes(d)


KINDS = ["truncate", "flip", "overwrite", "insert", "delete", "duplicate", "splice", "fixcrc"]
ARCHIVE_KINDS = ["truncate", "flip", "overwrite", "insert", "delete", "duplicate", "splice", "fixtar"]
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

    def never(self, *a, **k):  # "before decoding", checked directly, not by a clock on a busy machine
        raise AssertionError("the pixels were decoded")
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        mp.setattr(Image.Image, "load", never)
        mp.setattr(ImageFile.ImageFile, "load", never)  # the JPEG plugin's own load
        mp.setattr(Image.Image, "convert", never)
        with pytest.raises(SourceError, match=r"bomb.jpg: image larger than PIL's decompression-bomb limit "
                                              r"\(10000×10000 pixels, PIL.Image.MAX_IMAGE_PIXELS = 89478485\)"):
            decode(tmp_path / "bomb.jpg")


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
    result = _stats_skipping_bad(folder, tmp_path / "s.npz")
    assert {Path(p).name for p in result["skipped"]} == expected_bad
    assert result["n"] == 26 - len(expected_bad)
    assert fidkit.Statistics.load(tmp_path / "s.npz").n == result["n"]


# ---------------------------------------------------------------- archives

#: the seed images archives hold (their names sort in this order)
ARCHIVE_MEMBERS = ["png-rgb", "jpeg", "webp-lossless", "bmp-p", "tiff-lzw"]
ARCHIVE_EXT = {"zip": ".zip", "tar": ".tar", "tar.gz": ".tar.gz"}


def build_archive(kind: str, images: list) -> bytes:
    """A zip (stored and deflated members), tar or tar.gz holding ``images`` (bytes, in
    ARCHIVE_MEMBERS' order) as ``d/00-png-rgb.png`` …, a directory entry, a text member
    and (tar) a hard link to the first image."""
    names = [f"d/{k:02d}-{n}{SEEDS[n][1]}" for k, n in enumerate(ARCHIVE_MEMBERS)]
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(zipfile.ZipInfo("d/"), b"")
            for k, (name, data) in enumerate(zip(names, images)):
                z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if k % 2 else zipfile.ZIP_STORED)
            z.writestr("d/README.txt", b"not an image")
        return buf.getvalue()
    with tarfile.open(fileobj=buf, mode="w:gz" if kind == "tar.gz" else "w") as t:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        t.addfile(info)
        for name, data in list(zip(names, images)) + [("d/README.txt", b"not an image")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("d/99-link.png")
        info.type, info.linkname = tarfile.LNKTYPE, names[0]
        t.addfile(info)
    return buf.getvalue()


ARCHIVE_SEEDS = {k: build_archive(k, [SEEDS[n][0] for n in ARCHIVE_MEMBERS]) for k in ARCHIVE_EXT}
#: what splice puts in: the start of the other archives and of the seed images
ARCHIVE_SPLICES = list(ARCHIVE_SEEDS.values()) + [SEEDS[n][0] for n in ARCHIVE_MEMBERS]
ARCHIVE_OPS = st.lists(st.tuples(st.sampled_from(ARCHIVE_KINDS),
                                 st.integers(0, 1 << 20), st.integers(0, 1 << 20), st.integers(0, 1 << 10)),
                       min_size=0, max_size=4)
#: damage inside members: (which member, the image mutations applied to it before archiving)
MEMBER_OPS = st.lists(st.tuples(st.integers(0, len(ARCHIVE_MEMBERS) - 1), OPS), max_size=2)


def archive_case(kind: str, member_ops, archive_ops) -> bytes:
    images = [SEEDS[n][0] for n in ARCHIVE_MEMBERS]
    for k, ops in member_ops:
        images[k] = mutate(images[k], ops)
    data = build_archive(kind, images) if member_ops else ARCHIVE_SEEDS[kind]
    return mutate(data, archive_ops, ARCHIVE_SPLICES) if archive_ops else data


def check_archive(path: Path) -> dict:
    """Reads ``path`` as a source and every item of it; returns counts of 'ok' items, 'error'
    items (one-line SourceError naming ARCHIVE:MEMBER) and 'refused' archives (one line
    naming the archive), failing on anything else."""
    outcomes = {"ok": 0, "error": 0, "refused": 0}
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                images = as_images(path)
            except SourceError as e:
                msg = str(e)
                assert msg.startswith(f"{path}: ") and "\n" not in msg and len(msg) < 600, msg
                outcomes["refused"] += 1
                return outcomes
            for i in range(len(images)):
                try:
                    arr = images[i]
                except SourceError as e:
                    msg = str(e)
                    assert msg.startswith(f"{images.label(i)}: ") and "\n" not in msg and len(msg) < 800, msg
                    assert images.label(i).startswith(f"{path}:")
                    outcomes["error"] += 1
                    continue
                assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and arr.flags.writeable
                assert arr.shape[0] * arr.shape[1] <= Image.MAX_IMAGE_PIXELS
                outcomes["ok"] += 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    return outcomes


def test_seed_archives_read_whole():
    with tempfile.TemporaryDirectory() as d:
        for kind, data in ARCHIVE_SEEDS.items():
            path = Path(d) / f"seed{ARCHIVE_EXT[kind]}"
            path.write_bytes(data)
            n = len(ARCHIVE_MEMBERS) + (kind != "zip")  # the tar's hard link is an image too
            assert check_archive(path) == {"ok": n, "error": 0, "refused": 0}, kind


@settings(max_examples=100, deadline=timedelta(seconds=10), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(ARCHIVE_EXT)), member_ops=MEMBER_OPS, archive_ops=ARCHIVE_OPS)
def test_mutated_archives_read_or_fail_in_one_line(workdir, kind, member_ops, archive_ops):
    path = workdir / f"case{ARCHIVE_EXT[kind]}"
    path.write_bytes(archive_case(kind, member_ops, archive_ops))
    check_archive(path)


@pytest.mark.slow
def test_mutated_archives_many(workdir):
    """The archive property on FIDKIT_FUZZ_EXAMPLES (5,000) cases; prints the count, time and outcomes."""
    n = int(os.environ.get("FIDKIT_FUZZ_EXAMPLES", "5000"))
    outcomes = {"ok": 0, "error": 0, "refused": 0}
    cases = [0]
    slowest = [0.0, None]

    @settings(max_examples=n, deadline=timedelta(seconds=10), database=None,
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(sorted(ARCHIVE_EXT)), member_ops=MEMBER_OPS, archive_ops=ARCHIVE_OPS)
    def run(kind, member_ops, archive_ops):
        path = workdir / f"case{ARCHIVE_EXT[kind]}"
        path.write_bytes(archive_case(kind, member_ops, archive_ops))
        t = time.perf_counter()
        for k, v in check_archive(path).items():
            outcomes[k] += v
        cases[0] += 1
        if time.perf_counter() - t > slowest[0]:
            slowest[:] = time.perf_counter() - t, (kind, member_ops, archive_ops)

    t0 = time.perf_counter()
    run()
    print(f"\nfuzzed {cases[0]} archives in {time.perf_counter() - t0:.0f} s: {outcomes['refused']} refused whole, "
          f"{outcomes['ok']} members decoded, {outcomes['error']} members refused in one line; slowest "
          f"{slowest[0]:.2f} s: {slowest[1]}")
    assert cases[0] >= n * 0.95


def test_fuzzed_archive_through_the_cli_with_skip_bad(tmp_path):
    """A zip of 16 members damaged before archiving, 2 intact ones and 2 whose stored bytes
    are flipped afterwards (bad CRC), through `fidkit stats --skip-bad` with 2 decoding
    workers: each member is used or skipped as reading it alone says, listed as ARCHIVE:MEMBER."""
    r = random.Random(17)
    path = tmp_path / "fuzzed.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(20):
            name = NAMES[i % len(NAMES)]
            data, ext = SEEDS[name]
            if i < 16:
                data = mutate(data, [(r.choice(KINDS), r.randrange(1 << 20), r.randrange(1 << 20),
                                      r.randrange(1 << 10)) for _ in range(r.randint(1, 4))])
            z.writestr(f"m{i:02d}-{name}{ext}", data, compress_type=zipfile.ZIP_DEFLATED if i % 3 else
                       zipfile.ZIP_STORED)
    d = bytearray(path.read_bytes())
    for info in zipfile.ZipFile(path).infolist()[18:]:
        d[info.header_offset + 30 + len(info.filename) + 5] ^= 0x40
    path.write_bytes(bytes(d))
    images = as_images(path)
    expected_bad = set()
    for i in range(len(images)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                images[i]
        except SourceError:
            expected_bad.add(images.label(i))
    assert 2 < len(expected_bad) < 20 and f"{path}:m19-{NAMES[19 % len(NAMES)]}{SEEDS[NAMES[19 % len(NAMES)]][1]}" \
        in expected_bad
    result = _stats_skipping_bad(path, tmp_path / "s.npz")
    assert set(result["skipped"]) == expected_bad
    assert result["n"] == 20 - len(expected_bad)


def _stats_skipping_bad(source, out) -> dict:
    """``fidkit stats SOURCE --skip-bad --json`` with 2 decoding workers: exits 0 with no traceback
    and no worker crash; returns its JSON."""
    res = subprocess.run([sys.executable, "-m", "fidkit", "stats", str(source), "-o", str(out), "--skip-bad",
                          "--json", "--device", "cpu", "--workers", "2", "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "unexpected" not in res.stderr and "worker" not in res.stderr
    return json.loads(res.stdout)
