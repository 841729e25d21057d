"""Checks of fidkit.sources and fidkit._io on what a folder, an archive or a batch may hold:
unlistable subfolders, files whose content is another format, 16-bit PNGs, file descriptors
left open, FIFOs and devices named like images, Pillow warnings that do not name the file,
and atomic writes (fsync, umask). Tiny images, fidkit.sources called directly, no network
and no Inception network."""
import gc
import io
import os
import pickle
import socket
import stat
import struct
import tarfile
import threading
import warnings
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from fidkit import _io
from fidkit.errors import SourceError
from fidkit.sources import IMAGE_EXTENSIONS, Picked, Share, ZipImages, as_images, decode, decoded_formats, list_images


def _rgb(seed=0, h=8, w=8):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_bytes(arr=None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rgb() if arr is None else arr).save(buf, "PNG", **kw)
    return buf.getvalue()


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- 1. a subfolder that cannot be listed

def _tree(tmp_path):
    root = tmp_path / "imgs"
    for rel in ("a.png", "sub/b.png", "sub/deeper/c.png", "z/d.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_png_bytes())
    return root


def test_an_unlistable_subfolder_stops_the_listing_with_its_name(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    real = os.scandir

    def scandir(path="."):  # what a folder without read permission (or with EIO) gives a non-root user
        if os.path.basename(os.fspath(path)) == "sub":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(SourceError) as e:
        list_images(root)
    msg = _one_line(e)
    assert msg.startswith(f"{root / 'sub'}: cannot list this folder (Permission denied)"), msg
    assert "make it readable" in msg
    with pytest.raises(SourceError, match="cannot list this folder"):
        as_images(str(root))


def test_an_io_error_while_reading_a_folder_is_not_skipped(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    real = os.scandir

    class Failing:  # the listing breaks half-way (EIO from a failing disk)
        def __init__(self, it):
            self.it = it

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.it.close()

        def __iter__(self):
            return self

        def __next__(self):
            raise OSError(5, "Input/output error", self.path)

    def scandir(path="."):
        it = real(path)
        if os.path.basename(os.fspath(path)) == "deeper":
            f = Failing(it)
            f.path = os.fspath(path)
            return f
        return it

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(SourceError, match=r"deeper: cannot list this folder \(Input/output error\)"):
        list_images(root)


def test_the_listing_order_is_unchanged(tmp_path):
    root = _tree(tmp_path)
    (root / "a-b").mkdir()
    (root / "a-b" / "e.png").write_bytes(_png_bytes())
    got = [p.relative_to(root).as_posix() for p in list_images(root)]
    assert got == ["a-b/e.png", "a.png", "sub/b.png", "sub/deeper/c.png", "z/d.png"]


# ---------------------------------------------------------------- 2. content of another format

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n"


def _no_ghostscript(monkeypatch):
    from PIL import EpsImagePlugin

    def fail(*a, **k):
        raise AssertionError("Ghostscript was called")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", fail)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", fail)


def test_eps_named_png_is_refused_without_ghostscript(tmp_path, monkeypatch):
    _no_ghostscript(monkeypatch)
    path = tmp_path / "x.png"
    path.write_bytes(EPS)
    with pytest.raises(SourceError) as e:
        decode(path)
    msg = _one_line(e)
    assert msg.startswith(f"{path}: its first bytes mark it as EPS, a format fidkit does not decode"), msg
    assert "PNG" in msg and "convert it to PNG" in msg and "Ghostscript" not in msg


def test_eps_member_of_an_archive_is_refused_with_its_label(tmp_path, monkeypatch):
    _no_ghostscript(monkeypatch)
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("good.png", _png_bytes())
        f.writestr("evil.png", EPS)
    images = as_images(str(z))
    assert isinstance(images, ZipImages) and len(images) == 2
    with pytest.raises(SourceError, match=f"^{z}:evil.png: its first bytes mark it as EPS"):
        images[0]
    assert images[1].shape == (8, 8, 3)
    images.close()


@pytest.mark.parametrize("fmt", ["ICO", "QOI", "PCX", "SGI"])
def test_other_raster_formats_named_png_are_refused_naming_the_format(tmp_path, fmt):
    path = tmp_path / "x.png"
    buf = io.BytesIO()
    Image.fromarray(_rgb()).save(buf, fmt)
    path.write_bytes(buf.getvalue())
    with pytest.raises(SourceError, match=f"^{path}: its first bytes mark it as {fmt}, a format fidkit does not"):
        decode(path)


def test_text_named_png_still_says_it_cannot_be_identified(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"hello, not an image")
    with pytest.raises(SourceError, match=r"cannot decode image \(UnidentifiedImageError: cannot identify"):
        decode(path)


def test_the_decoded_formats_follow_the_accepted_extensions():
    Image.init()
    formats = decoded_formats()
    for ext in IMAGE_EXTENSIONS:
        assert Image.EXTENSION[ext] in formats, ext
    assert {"GIF", "PPM"} <= set(formats)
    assert not {"EPS", "PDF", "ICO", "CUR", "TGA", "JPEG2000", "PSD", "WMF"} & set(formats)
    assert all(f in Image.OPEN for f in formats)  # each one Pillow can open (MPO goes through JPEG's opener)


def _encoded(fmt, mode="RGB", **kw) -> bytes:
    im = Image.fromarray(_rgb(3, 9, 7)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


KEPT = {  # name: (file name, bytes) -- every format that decoded before must decode to the same pixels
    "png": ("x.png", lambda: _encoded("PNG")),
    "png-p": ("x.png", lambda: _encoded("PNG", "P")),
    "png-la": ("x.png", lambda: _encoded("PNG", "LA")),
    "png-as-jpg": ("x.jpg", lambda: _encoded("PNG")),  # a PNG named .jpg (ImageNet has such files)
    "apng": ("x.png", lambda: _encoded("PNG", save_all=True,
                                       append_images=[Image.fromarray(_rgb(4, 9, 7))])),
    "jpeg": ("x.jpg", lambda: _encoded("JPEG")),
    "jpeg-cmyk": ("x.jpeg", lambda: _encoded("JPEG", "CMYK")),
    "mpo": ("x.jpg", lambda: _encoded("MPO", save_all=True, append_images=[Image.fromarray(_rgb(4, 9, 7))])),
    "bmp": ("x.bmp", lambda: _encoded("BMP")),
    "webp": ("x.webp", lambda: _encoded("WEBP", lossless=True)),
    "tiff": ("x.tif", lambda: _encoded("TIFF", compression="tiff_lzw")),
    "gif-as-png": ("x.png", lambda: _encoded("GIF", "P")),
    "ppm": ("x.ppm", lambda: _encoded("PPM")),
    "pgm": ("x.pgm", lambda: _encoded("PPM", "L")),
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_the_listed_formats_decode_as_pil_convert_rgb(tmp_path, case):
    name, make = KEPT[case]
    path = tmp_path / name
    path.write_bytes(make())
    with Image.open(path) as im:  # Pillow as it opens any file
        want = np.asarray(im.convert("RGB"))
    got = decode(path)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert np.array_equal(decode("member.png", path.read_bytes()), want)  # the same from an archive's bytes


# ---------------------------------------------------------------- 3. 16-bit PNGs

def _png16(arr: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow does not write 16-bit RGB): ``arr`` uint16 (H, W, C)."""
    h, w = arr.shape[:2]

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("color_type, channels", [(2, 3), (6, 4), (4, 2)], ids=["rgb16", "rgba16", "gray-alpha16"])
def test_sixteen_bit_color_pngs_decode_to_the_high_byte_as_the_references_read_them(tmp_path, color_type, channels):
    """Pillow opens 16-bit RGB, RGBA and gray+alpha PNGs as 8-bit RGB(A), keeping each sample's
    high byte; pytorch-fid, clean-fid and torch-fidelity (PIL open + convert("RGB")) read them so."""
    rng = np.random.default_rng(color_type)
    arr = rng.integers(0, 65536, (8, 8, channels), dtype=np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(_png16(arr, color_type))
    high = (arr >> 8).astype(np.uint8)
    want = high[..., :3] if channels >= 3 else np.repeat(high[..., :1], 3, axis=2)
    assert np.array_equal(decode(path), want)


def test_sixteen_bit_gray_png_is_still_refused(tmp_path):
    path = tmp_path / "deep.png"
    path.write_bytes(_png16(np.full((8, 8, 1), 40000, np.uint16), 0))
    with pytest.raises(SourceError, match="deep.png: I;16 image with more than 8 bits per channel"):
        decode(path)


# ---------------------------------------------------------------- 4. file descriptors

def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture()
def sources(tmp_path):
    """One source of each kind that keeps something open while items are read."""
    png = _png_bytes()
    (tmp_path / "0.png").write_bytes(png)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("0.png", png)
        z.writestr("1.png", png)
    for name, mode in (("a.tar", "w"), ("a.tar.gz", "w:gz")):
        with tarfile.open(tmp_path / name, mode) as t:
            t.add(tmp_path / "0.png", "0.png")
            t.add(tmp_path / "0.png", "1.png")
    batch = np.stack([_rgb(i) for i in range(3)])
    np.save(tmp_path / "b.npy", batch)
    np.save(tmp_path / "f.npy", np.asfortranarray(batch))
    np.savez(tmp_path / "b.npz", arr_0=batch)
    np.savez_compressed(tmp_path / "c.npz", arr_0=batch)
    return {k: str(tmp_path / k) for k in ("a.zip", "a.tar", "a.tar.gz", "b.npy", "f.npy", "b.npz", "c.npz")}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
@pytest.mark.parametrize("kind", ["a.zip", "a.tar", "a.tar.gz", "b.npy", "f.npy", "b.npz", "c.npz"])
def test_reading_in_this_process_leaves_no_descriptor_open(sources, kind):
    src = sources[kind]
    gc.collect()
    before = _fds()
    for _ in range(50):
        images = as_images(src)
        images[0]
        images[1]
        del images  # no reference cycle: freed here, descriptors with it
    assert _fds() <= before, f"{kind}: {_fds() - before} descriptors left open"
    gc.collect()  # (before the fix not even a collection closed them; one is slow with torch loaded)
    assert _fds() <= before


@pytest.mark.parametrize("kind", ["a.zip", "a.tar", "a.tar.gz", "b.npy", "c.npz"])
def test_close_is_idempotent_and_the_set_reads_again(sources, kind):
    images = as_images(sources[kind])
    first = images[0].copy()
    before = _fds()
    images[1]
    images.close()
    images.close()
    assert _fds() <= before
    assert np.array_equal(images[0], first)  # reopened on the next item
    for part in (Share(images, 0, 2), Picked(images, np.array([0, 1]))):
        part[1]
        part.close()
        part.close()
    assert images._fd is None and images._stream is None
    images.close()


@pytest.mark.parametrize("kind", ["a.zip", "a.tar", "a.tar.gz", "b.npy", "c.npz"])
def test_a_copy_in_another_process_opens_its_own_and_closes_only_its_own(sources, kind):
    images = as_images(sources[kind])
    images[0]
    fd, stream = images._fd, images._stream
    assert fd is not None or stream is not None
    copy = pickle.loads(pickle.dumps(images))  # what a spawned worker or a torchrun rank receives
    assert copy._fd is None and copy._stream is None and copy._pid is None
    assert np.array_equal(copy[1], images[1])
    copy.close()
    if fd is not None:
        os.fstat(fd)  # still the original's
    # a forked worker's inherited state (another process's pid): close() drops it, closes nothing
    images._pid = -1
    images.close()
    if fd is not None:
        os.fstat(fd)
        os.close(fd)
    if stream is not None:
        for f in stream:
            if hasattr(f, "close"):
                f.close()
    assert images._fd is None and images._stream is None


def test_an_archive_subset_does_not_share_the_descriptor(sources):
    images = as_images(sources["a.zip"])
    images[0]
    part = images.subset(0, 1)
    assert part._fd is None
    part[0]
    assert part._fd != images._fd
    del part
    gc.collect()
    os.fstat(images._fd)  # the original's descriptor survives the part's collection
    images.close()


class _Protocol:
    resizes_on_device = False

    def prepare(self, img):
        return torch.from_numpy(np.array(img)).permute(2, 0, 1)

    def to_network(self, x):
        return x.float()


class _Net:
    input_format = torch.contiguous_format

    def forward_features(self, x, names):
        return {n: x.flatten(1).mean(1, keepdim=True) for n in names}


@pytest.mark.parametrize("kind", ["a.zip", "a.tar.gz", "b.npy", "c.npz"])
def test_iter_features_closes_what_the_main_process_opened(sources, kind):
    from fidkit.pipeline import iter_features

    images = as_images(sources[kind])
    images.close()  # what making the set opened (a batch's check of its first images)
    before = _fds()
    out = list(iter_features(images, _Protocol(), _Net(), torch.device("cpu"), batch_size=2, workers=0,
                             progress=False))
    assert sum(o["pool3"].shape[0] for o in out) == len(images)
    assert images._fd is None and images._stream is None and _fds() <= before


# ---------------------------------------------------------------- 5. not a regular file

def _decode_in_thread(path, timeout=10.0):
    """decode(path) in a thread; if it blocks (a FIFO without a writer), a writer is opened
    and closed to release it, and the test fails."""
    result = {}

    def run():
        try:
            result["value"] = decode(path)
        except Exception as e:  # noqa: BLE001 - handed back to the test
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        with open(path, "wb"):
            pass
        t.join(timeout)
        pytest.fail(f"decode({path}) blocked")
    return result


def test_a_fifo_named_png_is_refused_at_decode_not_left_out_of_the_listing(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "a.png").write_bytes(_png_bytes())
    os.mkfifo(root / "b.png")
    assert [p.name for p in list_images(root)] == ["a.png", "b.png"]  # the listing keeps its order
    result = _decode_in_thread(root / "b.png")
    e = result.get("error")
    assert isinstance(e, SourceError), result
    assert str(e) == (f"{root / 'b.png'}: a named pipe (FIFO), not a regular file; fidkit does not open it "
                      f"(reading it could block forever): remove it, or move it out of the images")
    assert as_images(str(root))[0].shape == (8, 8, 3)


def test_a_link_to_a_device_and_a_socket_are_refused(tmp_path, monkeypatch):
    (tmp_path / "z.png").symlink_to("/dev/null")
    with pytest.raises(SourceError, match="z.png: a character device, not a regular file"):
        decode(tmp_path / "z.png")
    s = socket.socket(socket.AF_UNIX)
    try:
        monkeypatch.chdir(tmp_path)  # a socket's path is limited to 107 bytes
        s.bind("s.png")
        assert stat.S_ISSOCK(os.stat(tmp_path / "s.png").st_mode)
        with pytest.raises(SourceError, match="s.png: a socket, not a regular file"):
            decode(tmp_path / "s.png")
    finally:
        s.close()
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(SourceError, match="dir.png: a folder, not a regular file"):
        decode(tmp_path / "dir.png")


def test_links_to_files_decode_and_a_link_loop_is_named(tmp_path):
    (tmp_path / "a.png").write_bytes(_png_bytes())
    (tmp_path / "l.png").symlink_to(tmp_path / "a.png")
    assert np.array_equal(decode(tmp_path / "l.png"), _rgb())
    os.symlink(tmp_path / "self.png", tmp_path / "self.png")
    with pytest.raises(SourceError, match=r"self.png: cannot decode image \(OSError: .*symbolic links"):
        decode(tmp_path / "self.png")
    with pytest.raises(SourceError, match=r"gone.png: cannot decode image \(FileNotFoundError"):
        decode(tmp_path / "gone.png")


# ---------------------------------------------------------------- 6. Pillow warnings that do not name the file

def _palette_with_transparency_bytes(path):
    im = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P")
    im.save(path, transparency=bytes([0, 128, 255]))
    with Image.open(path) as check:
        assert isinstance(check.info.get("transparency"), bytes)


def test_palette_transparency_bytes_decode_without_pillows_warning(tmp_path):
    path = tmp_path / "p.png"
    _palette_with_transparency_bytes(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            want = np.asarray(im.convert("RGB"))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        got = decode(path)
    assert np.array_equal(got, want)
    assert not [w for w in said if "Transparency" in str(w.message)], [str(w.message) for w in said]


def test_a_decompression_bomb_gives_fidkits_line_without_pillows_warning(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(_png_bytes())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # 64 pixels: over the limit, under twice it (a warning)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(SourceError, match="a.png: image larger than PIL's decompression-bomb limit"):
            decode(path)
    assert not [w for w in said if issubclass(w.category, Image.DecompressionBombWarning)]


def test_other_warnings_still_reach_the_user(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(_png_bytes())
    real = Image.Image.convert

    def convert(self, *a, **k):
        warnings.warn("some other Pillow warning", UserWarning)
        return real(self, *a, **k)

    monkeypatch.setattr(Image.Image, "convert", convert)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        decode(path)
    assert [str(w.message) for w in said] == ["some other Pillow warning"]


# ---------------------------------------------------------------- 7. atomic_write: fsync, umask

def test_atomic_write_syncs_the_bytes_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_size))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(b)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    _io.atomic_write(tmp_path / "out.bin", lambda f: f.write(b"x" * 1000))
    assert events == [("fsync", 1000), ("replace", "out.bin")]
    assert (tmp_path / "out.bin").read_bytes() == b"x" * 1000


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_write_never_sets_the_umask_and_keeps_its_mode(tmp_path, monkeypatch, mask):
    old = os.umask(mask)
    try:
        def no_umask(*a):
            raise AssertionError("atomic_write set the process umask")

        monkeypatch.setattr(os, "umask", no_umask)
        _io.atomic_write(tmp_path / "out.bin", lambda f: f.write(b"x"))
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode) == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_failed_sync_leaves_the_target_untouched(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        _io.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]

