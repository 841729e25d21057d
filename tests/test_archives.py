"""Archives as image sources: zip, tar, tar.gz and tar shards read without extracting, in the
folder's order, to the same features bit for bit; damaged and hostile archives refused in
one line, per member (``--skip-bad`` skips it) or whole."""

import gzip
import io
import json
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fidkit
from fidkit.errors import SourceError
from fidkit.sources import (ArchiveImages, FileImages, TarImages, ZipImages, as_images, expand_pattern, shard,
                            shardable)

from fidkit.stats import merge

from conftest import DATA, run_fidkit


def _folder(root: Path) -> Path:
    """tests/data/real_a's 10 PNGs in nested folders, an upper-case extension, and members
    that are not images (ignored: other extensions, macOS's ``._NAME`` and ``__MACOSX/``): the
    tree every archive below holds."""
    src = sorted((DATA / "real_a").glob("*.png"))
    d = root / "imgs"
    (d / "b" / "deep").mkdir(parents=True)
    (d / "a").mkdir()
    for k, p in enumerate(src):
        where = [d, d / "a", d / "b", d / "b" / "deep"][k % 4]
        name = p.name.replace(".png", ".PNG") if k == 3 else p.name
        shutil.copy(p, where / name)
    (d / "notes.txt").write_text("not an image")
    (d / "a" / "labels.json").write_text("{}")
    # macOS metadata named like images (an AppleDouble header, no image): ignored as well
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        " + bytes(64)
    (d / ("._" + src[0].name)).write_bytes(apple_double)
    (d / "__MACOSX" / "b").mkdir(parents=True)
    (d / "__MACOSX" / "b" / ("._" + src[1].name)).write_bytes(apple_double)
    (d / "__MACOSX" / "b" / "plain.png").write_bytes(apple_double)
    return d


def _files(folder: Path) -> list:
    return sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def make_zip(folder: Path, out: Path, prefix: str = "") -> Path:
    """Members in shuffled order (fidkit sorts them), deflated and stored alternately, with directory entries."""
    files = _files(folder)
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(zipfile.ZipInfo(prefix + "a/"), b"")
        for k in rng.permutation(len(files)):
            p = files[k]
            z.write(p, prefix + p.relative_to(folder).as_posix(),
                    compress_type=zipfile.ZIP_DEFLATED if k % 2 else zipfile.ZIP_STORED)
    return out


def make_tar(folder: Path, out: Path, files=None, mode: str = "w") -> Path:
    """As ``tar -C folder -cf out .`` writes it: names ``./a/x.png``, directories included."""
    with tarfile.open(out, mode) as t:
        if files is None:
            t.add(folder, arcname=".")
        else:
            for p in files:
                t.add(p, arcname="./" + p.relative_to(folder).as_posix())
    return out


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("archives")
    folder = _folder(root)
    images = [p for p in _files(folder) if p.suffix.lower() == ".png"]
    shards = root / "shards"
    shards.mkdir()
    make_tar(folder, shards / "train-000001.tar", images[5:])  # sorted by name, not by when written
    make_tar(folder, shards / "train-000000.tar", images[:5])
    return {"root": root, "folder": folder, "zip": make_zip(folder, root / "imgs.zip"),
            "tar": make_tar(folder, root / "imgs.tar"), "tgz": make_tar(folder, root / "imgs.tar.gz", mode="w:gz"),
            "shards": str(shards / "*.tar")}


KINDS = ["zip", "tar", "tgz", "shards"]


@pytest.mark.parametrize("kind", KINDS)
def test_archive_items_are_the_folders_images_in_its_order(tree, kind):
    folder = as_images(tree["folder"])
    arch = as_images(tree[kind])
    assert isinstance(arch, ZipImages if kind == "zip" else TarImages)
    assert len(arch) == len(folder) == 10
    assert arch.sequential == (kind == "tgz")
    members = [arch.label(i).split(":", 1)[1].removeprefix("./") for i in range(len(arch))]
    assert members == [Path(folder.path(i)).relative_to(tree["folder"]).as_posix() for i in range(10)]
    for i in range(len(arch)):
        x = arch[i]
        assert x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3
        assert np.array_equal(x, folder[i])
    if kind != "tgz":  # random access, in any order
        assert np.array_equal(arch[7], folder[7]) and np.array_equal(arch[2], folder[2])
    else:  # going back reopens the stream
        assert np.array_equal(arch[2], folder[2])


def test_archive_statistics_and_features_are_bitwise_the_folders(tree, real_weights):
    kw = dict(device="cpu", batch_size=4, workers=1, keep_features=True, progress=False)
    ref = fidkit.api.extract(tree["folder"], **kw)
    for kind in KINDS:
        ex = fidkit.api.extract(tree[kind], **kw)
        assert np.array_equal(ex.features, ref.features), kind
        assert np.array_equal(ex.stats.mu, ref.stats.mu) and np.array_equal(ex.stats.sigma, ref.stats.sigma), kind
        assert ex.stats.n == 10


def test_a_pickled_archive_opens_its_file_itself(tree):
    arch = as_images(tree["zip"])
    arch[0]
    assert arch._fd is not None
    other = pickle.loads(pickle.dumps(arch))
    assert other._fd is None and other._pid is None
    assert np.array_equal(other[4], arch[4])


def test_shards_patterns_and_lists(tree):
    root = tree["root"] / "shards"
    assert expand_pattern(str(root / "train-{000000..000001}.tar")) == sorted(str(p) for p in root.glob("*.tar"))
    by_list = as_images([root / "train-000001.tar", root / "train-000000.tar"])  # shards sorted by path
    by_brace = as_images(str(root / "train-{000000..000001}.tar"))
    assert [by_list.label(i) for i in range(10)] == [by_brace.label(i) for i in range(10)]
    assert by_list.label(0).startswith(str(root / "train-000000.tar") + ":")
    # --shard splits an archive's members as it splits a folder's files
    parts = [shard(shardable(tree["zip"]), f"{i}/3") for i in range(3)]
    assert [len(p) for p in parts] == [3, 3, 4] and all(isinstance(p, ArchiveImages) for p in parts)
    assert [p.label(i) for p in parts for i in range(len(p))] == [as_images(tree["zip"]).label(i) for i in range(10)]
    assert np.array_equal(parts[2][0], as_images(tree["folder"])[6])
    assert isinstance(as_images(str(tree["folder"] / "a" / "*.png")), FileImages)  # a pattern of images
    with pytest.raises(SourceError, match=r"train-000002.tar: no such file; give an existing tar archive"):
        as_images(str(root / "train-{000000..000002}.tar"))  # a missing shard is named, not left out
    assert expand_pattern("s-{8..10}.tar") == ["s-10.tar", "s-8.tar", "s-9.tar"]
    assert expand_pattern("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]
    with pytest.raises(SourceError, match=r"shards/nothing-\*.tar: the pattern matches no files"):
        as_images(str(root / "nothing-*.tar"))
    with pytest.raises(SourceError, match="give archives of one kind"):
        as_images([tree["zip"], tree["tar"]])


# ---------------------------------------------------------------- refusals

def _one_line(e, start: str) -> str:
    msg = str(e.value)
    assert msg.startswith(start) and "\n" not in msg and len(msg) < 600, msg
    return msg


def _png(seed: int = 0, size=(12, 9)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _central(data: bytes, name: str) -> int:
    """Offset of ``name``'s central directory entry."""
    pos = data.index(b"PK\x01\x02")
    while True:
        n = int.from_bytes(data[pos + 28:pos + 30], "little")
        if data[pos + 46:pos + 46 + n] == name.encode():
            return pos
        pos = data.index(b"PK\x01\x02", pos + 4)


def _zip(path: Path, members: dict, method=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_zip_members_refused_one_by_one(tmp_path, monkeypatch):
    good = _png(0)
    path = _zip(tmp_path / "z.zip", {"ok.png": good, "crc.png": _png(1), "enc.png": _png(2), "size.png": _png(3)})
    d = bytearray(path.read_bytes())
    infos = {i.filename: i for i in zipfile.ZipFile(path).infolist()}
    # a flipped byte inside the stored member
    d[infos["crc.png"].header_offset + 30 + len("crc.png") + 40] ^= 0x10
    # the encryption flag, in the local header and the directory
    d[infos["enc.png"].header_offset + 6] |= 1
    d[_central(d, "enc.png") + 8] |= 1
    # a declared size of 4 GB
    d[_central(d, "size.png") + 24:_central(d, "size.png") + 28] = (0xF0000000).to_bytes(4, "little")
    path.write_bytes(bytes(d))
    arch = as_images(path)
    labels = [arch.label(i) for i in range(len(arch))]
    assert labels == [f"{path}:{n}" for n in ("crc.png", "enc.png", "ok.png", "size.png")]
    with pytest.raises(SourceError) as e:
        arch[0]
    _one_line(e, f"{path}:crc.png: bad CRC-32")
    with pytest.raises(SourceError) as e:
        arch[1]
    _one_line(e, f"{path}:enc.png: encrypted member, which fidkit does not read")
    assert np.array_equal(arch[2], np.asarray(Image.open(io.BytesIO(good)).convert("RGB")))
    with pytest.raises(SourceError) as e:
        arch[3]
    assert "declares 4,026,531,840 bytes" in _one_line(e, f"{path}:size.png: member declares")
    # the limit follows PIL's
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    small = as_images(_zip(tmp_path / "s.zip", {"big.bmp": b"\0" * (2 << 20)}))
    with pytest.raises(SourceError) as e:
        small[0]
    assert "(1,048,616 = 4 × PIL.Image.MAX_IMAGE_PIXELS + 1 MiB)" in _one_line(e, f"{tmp_path / 's.zip'}:big.bmp")


def test_zip_bomb_and_other_methods_refused(tmp_path):
    bomb = as_images(_zip(tmp_path / "bomb.zip", {"zeros.bmp": b"\0" * (40 << 20)}, zipfile.ZIP_DEFLATED))
    with pytest.raises(SourceError) as e:
        bomb[0]
    assert "over 1000:1" in _one_line(e, f"{tmp_path / 'bomb.zip'}:zeros.bmp: member would expand 41,943,040 bytes")
    lz = as_images(_zip(tmp_path / "lzma.zip", {"x.png": _png()}, zipfile.ZIP_LZMA))
    with pytest.raises(SourceError) as e:
        lz[0]
    _one_line(e, f"{tmp_path / 'lzma.zip'}:x.png: compression method 14, which fidkit does not read")
    bz = as_images(_zip(tmp_path / "bz.zip", {"x.png": _png()}, zipfile.ZIP_BZIP2))
    assert bz[0].shape == (12, 9, 3)


def test_a_truncated_zip_is_refused_whole(tmp_path):
    path = _zip(tmp_path / "t.zip", {"a.png": _png(0), "b.png": _png(1)})
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(SourceError) as e:
        as_images(path)
    _one_line(e, f"{path}: cannot read the zip archive (BadZipFile")


def _tar(path: Path, members: dict, mode="w") -> Path:
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_damaged_tars_are_refused_whole(tmp_path):
    members = {"a.png": _png(0, (40, 40)), "b.png": _png(1, (40, 40)), "c.png": _png(2, (40, 40))}
    data = _tar(tmp_path / "t.tar", members).read_bytes()
    cases = {
        "mid-member": (data[:1800], "cannot read the tar archive (ReadError: unexpected end of data)"),
        "no-end-blocks": (data[:data.index(b"b.png") - 0], "ends without tar's end-of-archive blocks"),
        "bad-header": (data[:data.index(b"b.png")] + b"garbage" + data[data.index(b"b.png") + 7:],
                       f"bad tar header at byte {data.index(b'b.png'):,}"),
    }
    for what, (damaged, says) in cases.items():
        path = tmp_path / f"{what}.tar"
        path.write_bytes(damaged)
        with pytest.raises(SourceError) as e:
            as_images(path)
        assert says in _one_line(e, f"{path}: "), what
    gz = gzip.compress(data)
    for what, damaged in {"truncated": gz[:-20], "flipped": gz[:60] + bytes([gz[60] ^ 4]) + gz[61:]}.items():
        path = tmp_path / f"{what}.tar.gz"
        path.write_bytes(damaged)
        with pytest.raises(SourceError) as e:
            as_images(path)
        _one_line(e, f"{path}: ")


def test_tar_members_refused_one_by_one_and_links_followed(tmp_path, monkeypatch):
    a = _png(0)
    path = tmp_path / "l.tar"
    with tarfile.open(path, "w") as t:
        for name, data in {"a.png": a, "big.bmp": b"\0" * (2 << 20)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, kind, target in (("hard.png", tarfile.LNKTYPE, "a.png"), ("sub/sym.png", tarfile.SYMTYPE, "../a.png"),
                                   ("gone.png", tarfile.SYMTYPE, "missing.png")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            t.addfile(info)
    arch = as_images(path)
    assert [arch.label(i) for i in range(len(arch))] == [f"{path}:{n}" for n in
                                                          ("a.png", "big.bmp", "gone.png", "hard.png", "sub/sym.png")]
    assert np.array_equal(arch[3], arch[0]) and np.array_equal(arch[4], arch[0])
    with pytest.raises(SourceError) as e:
        arch[2]
    _one_line(e, f"{path}:gone.png: a link to a member the archive does not hold")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(SourceError) as e:
        arch[1]
    _one_line(e, f"{path}:big.bmp: member declares 2,097,152 bytes")


def test_archives_through_the_cli(tree, tmp_path):
    """compute with an archive on one side; stats of shards given as several arguments (a
    shell-expanded pattern), one of two parts of them, merged with the other."""
    r = run_fidkit("compute", tree["zip"], tree["folder"], "--device", "cpu", "--workers", "1", "--json",
                   "--no-progress")
    out = json.loads(r.stdout)
    assert out["n_a"] == out["n_b"] == 10 and abs(out["fid"]) < 1e-6
    shards = sorted(Path(tree["shards"]).parent.glob("*.tar"))
    for i in range(2):
        run_fidkit("stats", *shards, "--shard", f"{i}/2", "-o", tmp_path / f"p{i}.npz", "--device", "cpu",
                   "--workers", "1", "--no-progress")
    parts = [fidkit.Statistics.load(tmp_path / f"p{i}.npz") for i in range(2)]
    assert [p.n for p in parts] == [5, 5] and parts[1].extra["shard"] == "1/2"
    whole = fidkit.compute_stats(tree["tgz"], device="cpu", progress=False)
    merged = merge(parts)
    assert np.allclose(merged.mu, whole.mu, rtol=0, atol=1e-12)
    assert np.allclose(merged.sigma, whole.sigma, rtol=0, atol=1e-12)


def test_skip_bad_leaves_out_bad_members_with_their_labels(tmp_path):
    """Through `fidkit stats --skip-bad` with 2 decoding workers: a member with a bad CRC, an
    encrypted one and a damaged PNG with a valid CRC are skipped and listed as ARCHIVE:MEMBER."""
    broken = bytearray(_png(5))
    broken[40:60] = b"\xff" * 20
    path = _zip(tmp_path / "mixed.zip", {"d/ok1.png": _png(0), "d/ok2.png": _png(1), "ok3.png": _png(2),
                                         "d/crc.png": _png(3), "enc.png": _png(4), "broken.png": bytes(broken)})
    d = bytearray(path.read_bytes())
    infos = {i.filename: i for i in zipfile.ZipFile(path).infolist()}
    d[infos["d/crc.png"].header_offset + 30 + len("d/crc.png") + 50] ^= 1
    d[infos["enc.png"].header_offset + 6] |= 1
    d[_central(d, "enc.png") + 8] |= 1
    path.write_bytes(bytes(d))
    out = tmp_path / "s.npz"
    r = run_fidkit("stats", path, "-o", out, "--skip-bad", "--json", "--device", "cpu", "--workers", "2",
                   "--no-progress")
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    assert f"fidkit: warning: {path}: skipped 3 file(s)" in r.stderr
    res = json.loads(r.stdout)
    assert res["n"] == 3
    assert sorted(res["skipped"]) == sorted(f"{path}:{n}" for n in ("d/crc.png", "enc.png", "broken.png"))
    r = run_fidkit("stats", path, "-o", tmp_path / "t.npz", "--device", "cpu", "--workers", "2", "--no-progress",
                   check=False)
    assert r.returncode == 1 and r.stderr.startswith(f"fidkit: error: {path}:broken.png: cannot decode image")
    assert r.stderr.count("\n") == 1



@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_direct_tar_scan_equals_tarfile(tmp_path, fmt):
    """Plain tars are indexed from their headers directly; the index must equal tarfile's on
    every kind of member each format can hold, and anything unusual must go to tarfile."""
    from fidkit.sources import TarImages, _scan_plain_tar
    png = io.BytesIO()
    Image.new("RGB", (3, 2), (9, 8, 7)).save(png, format="PNG")
    data = png.getvalue()
    path = tmp_path / "t.tar"

    def add(tf, name, kind=tarfile.REGTYPE, payload=data, link="", uid=0):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.uid = kind, link, uid
        ti.size = len(payload) if kind == tarfile.REGTYPE else 0
        tf.addfile(ti, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)

    long_dir = "d" * 120 if fmt == tarfile.USTAR_FORMAT else "d" * 300  # ustar splits at most 155 + 100
    with tarfile.open(path, "w", format=fmt) as tf:
        add(tf, "a.png")
        add(tf, "./b.png")
        add(tf, "sub", tarfile.DIRTYPE)
        add(tf, "sub/c.png")
        add(tf, f"{long_dir}/e.png")
        add(tf, "empty.png", payload=b"")
        add(tf, "hard.png", tarfile.LNKTYPE, link="a.png")
        add(tf, "sub/sym.png", tarfile.SYMTYPE, link="c.png")
        add(tf, "dangling.png", tarfile.SYMTYPE, link="nowhere.png")
        add(tf, "fifo.png", tarfile.FIFOTYPE)
        add(tf, "a.png")  # a later member of the same name wins
        if fmt != tarfile.USTAR_FORMAT:
            add(tf, "ünïcode-" + "n" * 110 + ".png")
            add(tf, "l.png", tarfile.SYMTYPE, link="sub/" + "x" * 120 + ".png")
    scanned = _scan_plain_tar(path)
    assert scanned is not None
    assert scanned == TarImages([str(path)])._index_with_tarfile(str(path), False)
    images = TarImages([str(path)])
    # a, b, c, e, empty, hard, sym, dangling (and the two long names): the fifo is no member
    assert len(images) == 8 + (fmt != tarfile.USTAR_FORMAT) * 2 and images[0].shape == (2, 3, 3)
    # what the scan leaves to tarfile: a global header, base-256, a damaged header, a truncated file
    with tarfile.open(tmp_path / "g.tar", "w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "x"}) as tf:
        add(tf, "a.png")
    assert _scan_plain_tar(tmp_path / "g.tar") is None
    if fmt == tarfile.GNU_FORMAT:
        with tarfile.open(tmp_path / "big.tar", "w", format=fmt) as tf:
            add(tf, "a.png", uid=8 ** 8)  # beyond 7 octal digits: base-256, which tarfile reads
        assert _scan_plain_tar(tmp_path / "big.tar") is None
        assert len(TarImages([str(tmp_path / "big.tar")])) == 1
    raw = bytearray(path.read_bytes())
    raw[0] ^= 1  # the first header's checksum no longer holds
    (tmp_path / "bad.tar").write_bytes(bytes(raw))
    assert _scan_plain_tar(tmp_path / "bad.tar") is None
    (tmp_path / "cut.tar").write_bytes(path.read_bytes()[:1024 + 100])
    assert _scan_plain_tar(tmp_path / "cut.tar") is None


def _tar_header(name, typ=b"0", size=0, sizefield=None, magic=b"ustar\x0000"):
    """One hand-written 512-byte tar header with a correct checksum."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108], h[108:116], h[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    h[124:136] = sizefield if sizefield is not None else b"%011o\0" % size
    h[136:148] = b"00000000000\0"
    h[156:157], h[257:265] = typ, magic
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _tar_member(name, data=b"DATA", typ=b"0"):
    return _tar_header(name, typ, len(data)) + data + b"\0" * (-len(data) % 512)


def test_hand_written_tars_the_scan_leaves_to_tarfile(tmp_path):
    """Archives the scan could read otherwise than tarfile go to tarfile (the same index), and
    a negative size field, on which tarfile itself would loop forever, is refused in one line."""
    from fidkit.sources import TarImages, _scan_plain_tar
    end = b"\0" * 1024

    def pax(path):
        body = b"%d path=%s\n" % (len(path) + 8 + len(str(len(path) + 8)) - 1, path)
        assert int(body.split(b" ")[0]) == len(body)
        return _tar_member(b"PaxHeader", body, b"x")

    cases = {
        "stacked": pax(b"first.png") + pax(b"second.png") + _tar_member(b"short.png") + end,
        "dir-with-data": _tar_header(b"d/", b"5", 512) + _tar_member(b"hidden.png") + end,
        "plain": _tar_member(b"a.png") + end,
    }
    for name, blob in cases.items():
        (tmp_path / f"{name}.tar").write_bytes(blob)
        p = str(tmp_path / f"{name}.tar")
        scanned = _scan_plain_tar(p)
        assert (scanned is not None) == (name == "plain"), name
        assert len(TarImages([p])) == 1  # first.png, hidden.png, a.png: tarfile's reading
    (tmp_path / "neg.tar").write_bytes(_tar_member(b"a.png") + _tar_header(b"b.png", sizefield=b"-0000001000\0")
                                       + end)
    with pytest.raises(SourceError, match="neg.tar: bad tar header .*negative size"):
        TarImages([str(tmp_path / "neg.tar")])
