"""Bad input: one clear line, a non-zero exit, nothing half-written. Each case through the API and the CLI.

The table in README.md ("Bad input") lists these cases with their messages.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import fidkit
from fidkit.errors import SourceError
from fidkit.sources import decode, list_images


def cli(*args):
    return subprocess.run([sys.executable, "-m", "fidkit", *map(str, args)], capture_output=True, text=True)


@pytest.fixture()
def good(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    folder = tmp_path / "imgs"
    folder.mkdir()
    img.save(folder / "a_good.png")
    return folder, img


def truncated(img, fmt):
    import io
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()
    return data[: len(data) // 2]


BAD_FILES = {
    "truncated PNG": ("b.png", lambda img: truncated(img, "PNG"), "cannot decode image.*truncated"),
    "truncated JPEG": ("b.jpg", lambda img: truncated(img, "JPEG"), "cannot decode image.*truncated"),
    "text file named .png": ("b.png", lambda img: b"hello, not an image", "cannot decode image.*cannot identify"),
    # libtiff prints its own account to stderr; fidkit keeps it off the terminal and puts it in its line
    "damaged deflate TIFF": ("b.tif", lambda img: damaged_tiff(img),
                             "cannot decode image.*libtiff: ZIPDecode: Decoding error"),
}


def damaged_tiff(img):
    import io
    buf = io.BytesIO()
    img.save(buf, format="TIFF", compression="tiff_deflate")  # noise: deflate stores it, checked by its adler32
    data = buf.getvalue()
    half = len(data) // 2
    return data[:half] + bytes(64) + data[half + 64:]  # the deflate stream's middle zeroed


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_undecodable_files_stop_with_the_file_named(good, tmp_path, case):
    folder, img = good
    name, make, message = BAD_FILES[case]
    (folder / name).write_bytes(make(img))
    with pytest.raises(SourceError, match=message) as e:
        fidkit.compute_stats(str(folder), device="cpu", workers=0)
    assert name in str(e.value) and "\n" not in str(e.value)
    r = cli("stats", folder, "-o", tmp_path / "out.npz", "--device", "cpu", "--workers", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("fidkit: error:") and name in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "out.npz").exists()


def test_sixteen_bit_png_is_refused_not_clipped(good):
    folder, _ = good
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(folder / "deep.png")
    with pytest.raises(SourceError, match="deep.png: I;16 image with more than 8 bits.*convert it to 8-bit"):
        fidkit.compute_stats(str(folder), device="cpu", workers=0)


def test_decompression_bomb_keeps_pils_limit(good, monkeypatch):
    folder, _ = good
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 40x50 image is then over twice the limit
    with pytest.raises(SourceError, match="decompression-bomb limit"):
        decode(folder / "a_good.png")


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "L", "CMYK", "1"])
def test_other_modes_are_converted_as_pil_convert_rgb_does(tmp_path, mode):
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    expected = np.asarray(Image.open(path).convert("RGB"))
    got = decode(path)
    assert got.dtype == np.uint8 and got.shape == (9, 7, 3) and np.array_equal(got, expected)


def test_tiny_and_mixed_sizes_work(tmp_path):
    rng = np.random.default_rng(2)
    for i, (h, w) in enumerate([(1, 1), (1, 5), (33, 17), (64, 64), (300, 20)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    st = fidkit.compute_stats(str(tmp_path), device="cpu", workers=0, batch_size=3)
    assert st.n == 5 and np.all(np.isfinite(st.sigma))


def test_a_missing_source_is_named_before_the_other_is_read(tmp_path, real_a, monkeypatch):
    """Every missing path gets the same line, whatever its name says (a statistics .npz, an
    EDM2 .pkl, a batch, an archive, a pattern), and a missing B is named before A is read."""
    import fidkit.api as api
    monkeypatch.setattr(api, "extract", lambda *a, **k: pytest.fail("a source was read"))
    for name in ("nope", "nope.npz", "nope.pkl", "nope.npy", "nope.zip"):
        missing = str(tmp_path / name)
        with pytest.raises(SourceError, match=f"^{re.escape(missing)}: no such file or folder; give an image folder"):
            fidkit.compare(real_a, missing)
        with pytest.raises(SourceError, match="no such file or folder"):
            fidkit.adm_evaluate(missing, real_a)
    for suffix in ("", ".npz", ".npy", ".zip", ".pkl"):  # a name too long for the file system: no OSError
        with pytest.raises(SourceError, match="no such file or folder"):
            fidkit.compare(real_a, str(tmp_path / ("y" * 300 + suffix)))
    with pytest.raises(SourceError, match="the pattern matches no files"):
        fidkit.compare(real_a, str(tmp_path / "*.tar"))
    (tmp_path / "s-0.tar").write_bytes(b"")
    with pytest.raises(SourceError, match=r"s-1.tar: no such file \(2 of the 3 that .*s-\{0..2\}.tar names"):
        fidkit.compare(real_a, str(tmp_path / "s-{0..2}.tar"))
    r = subprocess.run([sys.executable, "-m", "fidkit", "stats", str(tmp_path / "nope.npz"), "-o",
                        str(tmp_path / "out.npz")], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "nope.npz: no such file or folder" in r.stderr


def test_missing_empty_and_imageless_folders(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        fidkit.compute_stats(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images found"):
        fidkit.compute_stats(str(tmp_path / "empty"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="no images found"):
        list_images(tmp_path / "docs")
    r = cli("compute", tmp_path / "docs", tmp_path / "empty")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no images found" in r.stderr


def test_symlink_loops_are_not_followed_forever(good):
    folder, _ = good
    os.symlink(folder, folder / "loop")  # a folder link back to its parent
    os.symlink(folder / "self.png", folder / "self.png")  # a file link to itself
    files = list_images(folder)
    assert [f.name for f in files] == ["a_good.png", "self.png"]
    with pytest.raises(SourceError, match="self.png: cannot decode image"):
        fidkit.compute_stats(str(folder), device="cpu", workers=0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(good):
    folder, img = good
    img.save(folder / "secret.png")
    os.chmod(folder / "secret.png", 0)
    with pytest.raises(SourceError, match="secret.png: cannot decode image.*Permission"):
        fidkit.compute_stats(str(folder), device="cpu", workers=0)


def test_unwritable_output_leaves_nothing(good, tmp_path):
    folder, _ = good
    target = tmp_path / "missing_dir" / "out.npz"
    r = cli("stats", folder, "-o", target, "--device", "cpu", "--workers", "0")
    assert r.returncode == 1 and "does not exist" in r.stderr and not target.exists()


def test_usage_errors_exit_2_data_errors_exit_1(good, tmp_path):
    folder, _ = good
    for args, says in ((["compute", folder], "Missing argument 'B'. (see fidkit compute --help)"),
                       (["compute", folder, folder, "--batch-size", "0"], "'--batch-size': 0 is not in the range"),
                       (["frobnicate"], "No such command 'frobnicate'. (see fidkit --help)")):
        r = cli(*args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("fidkit: error: "), r.stderr
        assert says in r.stderr, r.stderr
    r = cli("--debug", "compute", tmp_path / "nope", folder)
    assert r.returncode == 1 and "Traceback" in r.stderr  # --debug shows the traceback


def test_skip_bad_leaves_out_counts_and_lists(good, tmp_path):
    folder, img = good
    img.save(folder / "c_good.png")
    (folder / "b_text.png").write_text("not an image")
    (folder / "d_trunc.jpg").write_bytes(truncated(img, "JPEG"))
    with pytest.warns(fidkit.FidkitWarning, match="skipped 2 file"):
        st = fidkit.compute_stats(str(folder), device="cpu", workers=0, skip_bad=True)
    assert st.n == 2 and [os.path.basename(p) for p in st.extra["skipped"]] == ["b_text.png", "d_trunc.jpg"]
    r = cli("stats", folder, "-o", tmp_path / "s.npz", "--skip-bad", "--json", "--device", "cpu", "--workers", "1")
    assert r.returncode == 0, r.stderr
    import json
    out = json.loads(r.stdout)
    assert out["n"] == 2 and len(out["skipped"]) == 2 and "skipped 2 file(s)" in r.stderr


def test_ctrl_c_exits_130_and_leaves_no_file(tmp_path, real_a):
    import shutil
    import signal
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(6):  # 60 images: long enough to interrupt in the middle
        for f in real_a.iterdir():
            if f.suffix == ".png":
                shutil.copy(f, folder / f"{k}_{f.name}")
    out = tmp_path / "out.npz"
    # Ctrl-C's own handling in the child: a test runner started in the background (`pytest &` in
    # a shell without job control) hands its children SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler, so fidkit would rightly run on to the end
    p = subprocess.Popen([sys.executable, "-m", "fidkit", "stats", str(folder), "-o", str(out), "--device", "cpu",
                          "--workers", "0", "--batch-size", "2", "--progress"],
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "images/s" not in seen:  # the network is running
        ch = p.stderr.read(1)
        assert ch, "fidkit ended before it could be interrupted"
        seen += ch
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    assert p.wait(timeout=60) == 130
    assert rest.endswith("\nfidkit: interrupted; no output was written\n") and "Traceback" not in rest, rest
    assert "\n\n" not in rest  # no blank line before it
    assert not out.exists() and [f.name for f in tmp_path.iterdir()] == ["many"]


def test_an_error_raised_between_batches_finds_the_progress_line_ended(real_a, capsys, monkeypatch):
    # Ctrl-C (or any error) landing in extract's own loop, not inside the feature generator: the
    # progress line must be ended before the exception reaches whoever reports it. Without the
    # generator closed on the way out, its newline came only when it was collected, after
    # "fidkit: interrupted" had been printed at the end of the bar's line
    from fidkit import api

    batches = -(-len(list_images(real_a)) // 2)
    calls = []

    def interrupted(self, x):  # at the last batch, whose progress line is always drawn
        calls.append(1)
        if len(calls) == batches:
            raise KeyboardInterrupt
    monkeypatch.setattr(api.Accumulator, "update", interrupted)
    try:
        api.extract(str(real_a), device="cpu", workers=0, batch_size=2, progress=True)
    except KeyboardInterrupt:
        err = capsys.readouterr().err  # read while the interrupted frames are still alive
    else:
        raise AssertionError("not interrupted")
    assert "images/s" in err and err.endswith("left\n"), err


@pytest.mark.parametrize("kind", ["16-bit", "self-link", "text"])
def test_bad_files_through_the_cli(good, tmp_path, kind):
    folder, _ = good
    if kind == "16-bit":
        Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(folder / "bad.png")
    elif kind == "self-link":
        os.symlink(folder / "bad.png", folder / "bad.png")
    else:
        (folder / "bad.png").write_text("text")
    r = cli("compute", folder, folder, "--device", "cpu", "--workers", "0")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "bad.png" in r.stderr and "Traceback" not in r.stderr


def test_statistics_made_with_other_weights_are_refused_before_any_work(tmp_path, real_b):
    from fidkit.errors import StatsError
    from fidkit.stats import Statistics
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 2048))
    Statistics(x.mean(0), np.cov(x, rowvar=False), 3000, protocol="ttur",
               weights_digest="f" * 64).save(tmp_path / "other.npz")
    (tmp_path / "unread").mkdir()  # a folder that cannot be read: the refusal comes before it is
    for name in ("x.png", "y.png"):  # two: one image would be refused by its count, before any weights check
        (tmp_path / "unread" / name).write_bytes(b"not a png")
    with pytest.raises(StatsError, match="made with weights ffffffffffff"):
        fidkit.fid(str(tmp_path / "other.npz"), str(tmp_path / "unread"), device="cpu")
    r = cli("compute", tmp_path / "other.npz", real_b)
    assert r.returncode == 1 and "--allow-mismatch" in r.stderr
    # as side B too: refused before A's images are read
    with pytest.raises(StatsError, match="other.npz was made with weights ffffffffffff"):
        fidkit.fid(str(tmp_path / "unread"), str(tmp_path / "other.npz"), device="cpu")


def test_two_statistics_files_of_other_weights_or_protocols_are_both_named(tmp_path):
    from fidkit.errors import StatsError
    from fidkit.stats import Statistics
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 8))
    for name, protocol, digest in (("a", "ttur", "a" * 64), ("b", "ttur", "b" * 64), ("c", "clean", "a" * 64)):
        Statistics(x.mean(0), np.cov(x, rowvar=False), 30, protocol=protocol,
                   weights_digest=digest).save(tmp_path / f"{name}.npz")
    a, b, c = (Statistics.load(tmp_path / f"{n}.npz") for n in "abc")
    with pytest.raises(StatsError, match=r"a\.npz was made with weights aaaaaaaaaaaa and .*b\.npz with weights "
                                         r"bbbbbbbbbbbb; recompute one"):
        fidkit.frechet_distance(a, b)
    with pytest.raises(StatsError, match=r"b\.npz was made with weights bbbbbbbbbbbb and .*a\.npz with weights "
                                         r"aaaaaaaaaaaa"):
        fidkit.frechet_distance(b, a)
    with pytest.raises(StatsError, match=r"a\.npz was made with protocol 'ttur' and .*c\.npz with 'clean'"):
        fidkit.frechet_distance(a, c)
    assert fidkit.frechet_distance(a, b, allow_mismatch=True).fid == pytest.approx(0, abs=1e-9)


def test_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno
    from fidkit.errors import StatsError
    from fidkit.stats import Statistics
    real_write = np.lib.format.write_array
    calls = []

    def failing(fp, arr, **kw):  # the second array hits a full disk
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fp, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    st = Statistics(np.zeros(4), np.eye(4), 10, protocol="ttur", weights_digest="a" * 64)
    with pytest.raises(StatsError, match="No space left on device.*nothing was written"):
        st.save(tmp_path / "s.npz")
    assert list(tmp_path.iterdir()) == []


def test_fid_is_the_same_across_batch_sizes_workers_and_order(real_a, real_b):
    files = sorted(p for p in real_a.iterdir() if p.suffix == ".png")[:7]  # 7 mixed-size images: quick
    ref = fidkit.compute_stats(str(real_b), device="cpu", workers=0)
    values = []
    for bs, workers, order in [(1, 0, files), (7, 2, files[3:] + files[:3]), (50, 2, files), (128, 0, files[::-1])]:
        st = fidkit.compute_stats([str(f) for f in order], device="cpu", batch_size=bs, workers=workers)
        values.append(float(fidkit.frechet_distance(st, ref)))
    assert max(values) - min(values) <= 1e-6 * min(values), values


@pytest.mark.parametrize("protocol", ["ttur", "pytorch-fid", "clean"])
def test_in_memory_images_equal_the_same_images_from_png_files(tmp_path, real_a, protocol):
    # one size, so the folder path stacks whole batches in its workers
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB").resize((40, 40)))
                     for f in sorted(real_a.glob("*.png"))[:6]])
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    kw = dict(protocol=protocol, device="cpu", batch_size=4, progress=False)
    from_memory = fidkit.compute_stats(imgs, **kw)
    from_files = fidkit.compute_stats(str(tmp_path), workers=2, **kw)
    np.testing.assert_allclose(from_memory.mu, from_files.mu, rtol=0, atol=1e-6 * np.abs(from_files.mu).max())
    np.testing.assert_allclose(from_memory.sigma, from_files.sigma, rtol=0,
                               atol=1e-6 * np.abs(from_files.sigma).max())


def test_statistics_in_memory_are_checked_as_files_are():
    """A Statistics object given as a source gets the checks a statistics file gets, and a
    (mu, sigma) pair that is complex or not numeric is refused in one line, not cut."""
    from fidkit.errors import StatsError
    from fidkit.stats import Statistics
    st = Statistics(np.zeros(3), np.eye(3), 10, "clean", None)
    with pytest.raises(StatsError, match="protocol 'clean', not 'ttur'"):
        fidkit.compute_stats(st, "ttur")
    assert fidkit.compute_stats(st, "ttur", allow_mismatch=True) is st
    with pytest.raises(StatsError, match="spatial"):
        fidkit.compute_stats(st, "clean", spatial=True)
    with pytest.raises(StatsError, match="mu1 has complex dtype"):
        fidkit.frechet_distance((np.zeros(3, complex), np.eye(3)), (np.zeros(3), np.eye(3)))
    with pytest.raises(StatsError, match="sigma2 has dtype"):
        fidkit.frechet_distance((np.zeros(3), np.eye(3)), (np.zeros(3), np.array([["a"] * 3] * 3)))
    assert float(fidkit.frechet_distance((np.ones(3), np.eye(3)), (np.zeros(3), np.eye(3)))) == pytest.approx(3.0)


def test_bare_command_shows_help_and_a_closed_pipe_is_quiet():
    r = subprocess.run([sys.executable, "-m", "fidkit"], capture_output=True, text=True)
    assert r.returncode == 2 and "Usage: fidkit" in r.stdout + r.stderr and "fidkit: error" not in r.stderr
    p = subprocess.Popen([sys.executable, "-m", "fidkit", "stats", "fetch"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.readline()
    p.stdout.close()  # the reader leaves, as `| head -1` does
    err = p.stderr.read()
    assert p.wait(timeout=60) in (0, 1) and err == "", err


def test_to_uint8_takes_numpy_views_and_refuses_integers_in_one_line():
    x = np.linspace(-1, 1, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    assert fidkit.to_uint8(x[..., ::-1], (-1, 1)).numpy().tolist() == fidkit.to_uint8(
        np.ascontiguousarray(x[..., ::-1]), (-1, 1)).numpy().tolist()
    assert fidkit.to_uint8(x.astype(">f4"), (-1, 1)).equal(fidkit.to_uint8(x, (-1, 1)))
    with pytest.raises(SourceError, match="floating-point"):
        fidkit.to_uint8(np.zeros(3, np.uint8), (0, 1))


def test_a_missing_archive_in_a_list_is_named_first(tmp_path, real_a, monkeypatch):
    import fidkit.api as api
    monkeypatch.setattr(api, "extract", lambda *a, **k: pytest.fail("a source was read"))
    (tmp_path / "s0.tar").write_bytes(b"")
    with pytest.raises(SourceError, match="s1.tar: no such file or folder"):
        fidkit.compare(real_a, [tmp_path / "s0.tar", tmp_path / "s1.tar"])



def test_one_image_is_refused_before_any_pass(tmp_path, real_a):
    import shutil
    (tmp_path / "one").mkdir()
    shutil.copy(sorted(real_a.iterdir())[0], tmp_path / "one")
    r = cli("compute", real_a, tmp_path / "one", "--progress")
    assert r.returncode == 1 and "B holds 1 image(s): the Fréchet distance needs at least 2 images" in r.stderr
    assert "A " not in r.stderr.split("error:")[0]  # A's images were not read
