"""dgm-eval's ``--nsample N --seed S`` (``fidkit compute/stats --nsample``): which images each set
is cut to, and the command line end to end with the real weights on tests/data's 10 + 10 images.
Against dgm-eval's own DataLoader: ``python benchmarks/dgm_eval_subset_check.py CHECKOUT``; its kd
and prdc after the cut: ``benchmarks/dgm_eval_kd_prdc_check.py``."""
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fidkit
from conftest import run_fidkit as run
from fidkit.errors import FidkitError, StatsError
from fidkit.api import extract
from fidkit.sources import (as_images, dgm_eval_generator, dgm_eval_indices, dgm_eval_listing, dgm_eval_subset,
                            list_images)
from fidkit.stats import Statistics

pytestmark = pytest.mark.filterwarnings("ignore:.*feature dimensions:fidkit.errors.FidkitWarning")

RUN = ("--device", "cpu", "--workers", "0")


def test_dgm_eval_indices_are_its_seeded_choice():
    state = np.random.get_state()
    try:
        for total, n, seed in ((10, 4, 13579), (1000, 999, 0), (70000, 50000, 13579), (12, 5, 2 ** 32 - 1)):
            np.random.seed(seed)  # dgm-eval's DataLoader.subsample_dataset, on numpy's global state
            want = sorted(np.random.choice(total, n, replace=False))
            got = dgm_eval_indices(total, n, seed)
            assert got.dtype == np.int64 and got.tolist() == [int(i) for i in want]
    finally:
        np.random.set_state(state)
    assert dgm_eval_indices(10, 4, 13579).tolist() == [3, 5, 7, 8]  # numpy's RandomState stream is frozen (NEP 19)
    assert dgm_eval_indices(5, 5, 1).tolist() == dgm_eval_indices(5, 9, 1).tolist() == [0, 1, 2, 3, 4]


def _dgm_eval_files(root: Path) -> list:
    """dgm-eval's dataloaders.py, transcribed: get_files_at_path on the top level, else on each
    entry one level down (its class folders), then ImagePathDataset's sorted(files)."""
    exts = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}
    exts |= {e.upper() for e in exts}

    def at(path):
        return sorted([f for ext in exts for f in path.glob(f"*.{ext}")])

    files = at(root)
    if not files:
        for d in sorted(root.glob("*")):
            files += at(d)
    return sorted(files)


def _write(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path, format="PNG")


def test_a_folders_cut_follows_dgm_evals_order_of_class_folders(tmp_path):
    # class folders a, a-b, b: Path order puts a/ before a-b/, fidkit's path strings after
    for i in range(30):
        _write(tmp_path / ("a", "a-b", "b")[i % 3] / f"{i:02d}.png", i)
    theirs = _dgm_eval_files(tmp_path)
    assert dgm_eval_listing(tmp_path) == [f.relative_to(tmp_path).as_posix() for f in theirs]
    images = as_images(str(tmp_path))
    assert [Path(images.path(i)) for i in range(30)] != theirs  # the orders differ ...
    picked, note = dgm_eval_subset(images, 11, 13579, str(tmp_path))
    want = sorted(theirs[i] for i in dgm_eval_indices(30, 11, 13579))
    assert note is None and sorted(Path(picked.path(i)) for i in range(len(picked))) == want  # ... dgm-eval's wins
    naive = sorted(Path(images.path(int(i))) for i in dgm_eval_indices(30, 11, 13579))
    assert naive != want  # (what a pick in fidkit's order would have read)
    same, note = dgm_eval_subset(images, 30, 13579, str(tmp_path))
    assert note is None and [Path(same.path(i)) for i in range(30)] == theirs  # not more than n: the whole set,
    # in dgm-eval's row order, which the subsets of its kd and prdc index
    picked_rows = [Path(picked.path(i)) for i in range(len(picked))]
    assert picked_rows == [theirs[i] for i in dgm_eval_indices(30, 11, 13579)]  # cut: its rows too


@pytest.mark.parametrize("layout, message", [
    ({"0.png": 0, "1.png": 1, "sub/2.png": 2}, "dgm-eval would read 2 files where fidkit reads 3 (fidkit reads "
                                               "sub/2.png, which dgm-eval does not list"),
    ({"0.png": 0, "1.ppm": 1}, "dgm-eval would read 2 files where fidkit reads 1 (dgm-eval reads 1.ppm, which "
                               "fidkit does not"),
    ({"0.png": 0, "._0.png": 1}, "dgm-eval would read 2 files where fidkit reads 1 (dgm-eval reads ._0.png"),
    ({"0.png": 0, "1.Png": 1}, "fidkit reads 1.Png, which dgm-eval does not list"),
])
def test_a_folder_dgm_eval_reads_otherwise_is_noted(tmp_path, layout, message):
    for name, v in layout.items():
        if name.endswith("ppm") or name.startswith("._"):
            (tmp_path / name).write_bytes(b"P6\n4 4\n255\n" + bytes(48) if name.endswith("ppm") else b"\x00\x05")
        else:
            _write(tmp_path / name, v)
    assert dgm_eval_listing(tmp_path) == [f.relative_to(tmp_path).as_posix() for f in _dgm_eval_files(tmp_path)]
    _, note = dgm_eval_subset(as_images(str(tmp_path)), 1, 13579, str(tmp_path))
    assert note is not None and message in note and note.endswith("not the images dgm-eval would score")


def test_arrays_and_sample_batches_are_cut_by_row(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
    picked, note = dgm_eval_subset(as_images(arr), 5, 7)
    assert note is None and np.array_equal(picked.gathered().array, arr[dgm_eval_indices(12, 5, 7)])
    np.savez(tmp_path / "samples.npz", arr_0=arr)  # an ADM sample batch: dgm-eval's NpzDataset, row order
    picked, note = dgm_eval_subset(as_images(str(tmp_path / "samples.npz")), 5, 7, str(tmp_path / "samples.npz"))
    assert note is None and picked.indices.tolist() == dgm_eval_indices(12, 5, 7).tolist()


def test_compute_cuts_both_sets_and_records_it(real_a, real_b, tmp_path):
    out = json.loads(run("compute", real_a, real_b, "--nsample", "6", "--json", *RUN).stdout)
    fa, fb = list_images(real_a), list_images(real_b)
    want = fidkit.compare([fa[i] for i in dgm_eval_indices(10, 6, 13579)],
                          [fb[i] for i in dgm_eval_indices(10, 6, 13579)], device="cpu", workers=0)
    assert (out["n_a"], out["n_b"]) == (6, 6) and out["fid"] == pytest.approx(want.fid, rel=1e-9)
    assert (out["nsample"], out["nsample_seed"], out["nsample_from_a"], out["nsample_from_b"]) == (6, 13579, 10, 10)
    # a set of at most N is read whole; the seed is numpy's (no modulo)
    r = fidkit.compare(real_a, real_b, nsample=10, nsample_seed=2 ** 32 - 1, device="cpu", workers=0)
    assert (r.n_a, r.n_b, r.scores["nsample_from_a"]) == (10, 10, 10)
    # statistics made with the same cut serve the comparison, without a warning
    info = json.loads(run("stats", real_a, "--nsample", "6", "-o", tmp_path / "a6.npz", "--json", *RUN).stdout)
    assert (info["n"], info["nsample"], info["nsample_seed"], info["nsample_from"]) == (6, 6, 13579, 10)
    st = Statistics.load(tmp_path / "a6.npz")
    assert (st.extra["nsample"], st.extra["nsample_seed"], st.extra["nsample_from"]) == (6, 13579, 10)
    r = run("compute", tmp_path / "a6.npz", real_b, "--nsample", "6", "--json", *RUN)
    assert json.loads(r.stdout)["fid"] == pytest.approx(out["fid"], rel=1e-9) and "nsample" not in r.stderr
    # statistics of every image, or cut otherwise, are not what dgm-eval compares against: warned
    run("stats", real_a, "-o", tmp_path / "a.npz", *RUN)
    r = run("compute", tmp_path / "a.npz", real_b, "--nsample", "6", *RUN)
    assert "A: the statistics" in r.stderr and "are of 10 images, more than nsample 6: dgm-eval would read a " \
                                               "seeded 6 of them; make them with fidkit stats --nsample 6" in r.stderr
    r = run("compute", tmp_path / "a6.npz", real_b, "--nsample", "6", "--nsample-seed", "1", *RUN)
    assert "were made with nsample 6 and seed 13579, not 6 and 1" in r.stderr
    r = run("compute", tmp_path / "a6.npz", real_b, "--nsample", "20", *RUN)  # 6 of 10 vs all 10: other images
    assert "were made with nsample 6 and seed 13579, not 20 and 13579" in r.stderr


def test_nsample_refusals_and_notes(real_a, real_b, tmp_path):
    r = run("compute", real_a, real_b, "--nsample", "6", "--subset", "6", check=False)
    assert r.returncode == 1 and "give one of them" in r.stderr and r.stderr.count("\n") == 1
    r = run("compute", real_a, real_b, "--nsample-seed", "3", *RUN)
    assert "--nsample-seed applies to --nsample, which was not given" in r.stderr
    r = run("stats", real_a, "--nsample", "6", "--shard", "0/2", "-o", tmp_path / "x.npz", check=False)
    assert r.returncode == 2 and "not a shard of it" in r.stderr and not (tmp_path / "x.npz").exists()
    r = run("compute", real_a, real_b, "--nsample", "1", check=False)
    assert r.returncode == 2 and "--nsample" in r.stderr
    with pytest.raises(FidkitError, match="nsample_seed must be an integer from 0 to 2\\*\\*32 - 1"):
        fidkit.compare(real_a, real_b, nsample=5, nsample_seed=-1)
    with pytest.raises(FidkitError, match="nsample must be an image count of at least 2"):
        fidkit.compute_stats(real_a, nsample=True)
    # a folder dgm-eval reads otherwise is named in the warning (here a nested folder it does not list)
    shutil.copytree(real_b, tmp_path / "b" / "nested")
    _write(tmp_path / "b" / "top.png")
    r = run("compute", real_a, tmp_path / "b", "--nsample", "6", "--metrics", "fid", *RUN)
    assert "B: " in r.stderr and "dgm-eval would read 1 file where fidkit reads 11" in r.stderr


def test_an_adm_reference_batch_is_cut_as_its_images(real_b, tmp_path):
    """dgm-eval reads an ADM reference batch's arr_0 and ignores its mu/sigma: with nsample the
    file's images are read and cut, for FID and the per-image metrics alike."""
    from fidkit.sources import decode
    arr = np.stack([np.asarray(Image.fromarray(decode(f)).resize((32, 32))) for f in list_images(real_b)])
    np.savez(tmp_path / "ref.npz", arr_0=arr, mu=np.zeros(2048), sigma=np.eye(2048))  # statistics of nothing
    r = fidkit.compare(str(tmp_path / "ref.npz"), real_b, nsample=6, metrics="fid,kid", device="cpu", workers=0)
    want = fidkit.compare(arr[dgm_eval_indices(10, 6, 13579)], [list_images(real_b)[i] for i in
                                                                dgm_eval_indices(10, 6, 13579)],
                          metrics="fid,kid", device="cpu", workers=0)
    assert (r.n_a, r.n_b, r.scores["nsample_from_a"]) == (6, 6, 10)
    assert r.fid == pytest.approx(want.fid, rel=1e-9) and r.scores["kid_mean"] == want.scores["kid_mean"]
    assert "statistics_from_file_a" not in r.scores
    r = fidkit.compare(str(tmp_path / "ref.npz"), str(tmp_path / "ref.npz"), nsample=6, bootstrap=3, device="cpu",
                       workers=0)  # both are images then: a bootstrap resamples them
    assert (r.n_a, r.n_b, r.scores["bootstrap_resamples"]) == (6, 6, 3)
    # another protocol than the batch's statistics' (TF's resize, ttur) reads its images too
    r = fidkit.compare(str(tmp_path / "ref.npz"), real_b, protocol="pytorch-fid", device="cpu", workers=0)
    assert r.n_a == 10 and r.fid == fidkit.compare(arr, real_b, protocol="pytorch-fid", device="cpu", workers=0).fid
    info = json.loads(run("stats", tmp_path / "ref.npz", "--nsample", "6", "-o", tmp_path / "r6.npz", "--json",
                          *RUN).stdout)
    assert (info["n"], info["nsample_from"]) == (6, 10)
    r = run("stats", tmp_path / "ref.npz", "-o", tmp_path / "r.npz", check=False)  # without: it is statistics
    assert r.returncode == 1 and "already a statistics file" in r.stderr


def test_dgm_eval_generator_is_the_state_after_the_last_cut():
    def after(total, n, seed=13579):
        g = np.random.RandomState(seed)
        g.choice(total, n, replace=False)
        return g.randint(2 ** 31, size=4).tolist()

    assert dgm_eval_generator(10, 10, None) is None and dgm_eval_generator(10, 12, 12) is None  # nothing cut
    assert dgm_eval_generator(30, 20, 10).randint(2 ** 31, size=4).tolist() == after(20, 10)  # B's cut, last
    assert dgm_eval_generator(30, 8, 10).randint(2 ** 31, size=4).tolist() == after(30, 10)  # A's alone
    assert dgm_eval_generator(30, 8, 10, 7).randint(2 ** 31, size=4).tolist() == after(30, 10, 7)


def test_compute_gives_dgm_evals_kd_and_prdc_of_the_cut(real_a, real_b, tmp_path):
    # A: 10 images cut to 9 (its cut seeds the draws), B: 8, not cut; kd's subsets of 8 and prdc's
    # subsample of 8 are proper subsets of A, so the draws decide the values
    from test_scores import _dgm_eval_scores  # dgm-eval transcribed: its cuts and compute_scores

    for f in list_images(real_b)[:8]:
        shutil.copy(f, tmp_path / Path(f).name)
    out = json.loads(run("compute", real_a, tmp_path, "--metrics", "kd-dgm-eval,prdc-dgm-eval", "--nsample", "9",
                         "--json", *RUN).stdout)
    fa, fb = (extract(list_images(p), keep_features=True, device="cpu", workers=0).features for p in (real_a, tmp_path))
    state = np.random.get_state()
    try:
        want = _dgm_eval_scores(fa, fb, 9, ("kd", "prdc"), 10000, 5)
    finally:
        np.random.set_state(state)
    assert {k: out[f"dgm_eval_{k}"] for k in want} == {k: float(v) for k, v in want.items()}
    assert (out["dgm_eval_nearest_k"], out["dgm_eval_draws"], out["dgm_eval_draw_order"]) == (5, "replayed", "kd,prdc")
    assert (out["nsample_from_a"], out["nsample_from_b"], out["n_a"], out["n_b"]) == (10, 8, 9, 8)


def test_skipped_images_shift_dgm_evals_draws_and_say_so(real_b, tmp_path):
    for f in list_images(real_b)[:9]:
        shutil.copy(f, tmp_path / Path(f).name)
    (tmp_path / "zz_broken.png").write_bytes(b"not an image")
    with pytest.warns(fidkit.FidkitWarning, match="the features hold 10 and 9 rows where dgm-eval would hold 10 and 10 "
                                                  r"\(images skipped as undecodable"):
        r = fidkit.compare(real_b, tmp_path, metrics="kd-dgm-eval", skip_bad=True, device="cpu", workers=0)
    assert r.scores["dgm_eval_draws"] == "not dgm-eval's"


def test_dgm_eval_kd_and_prdc_without_a_cut_are_seeded_here_and_say_so(real_a, real_b):
    fb = list_images(real_b)[:8]
    with pytest.warns(fidkit.FidkitWarning, match=r"its kd and prdc from numpy's global generator, which it seeds "
                                                  r"only when "
                                                  r"--nsample cuts a set, and neither set is cut here \(10 and 8 "
                                                  r"images\): its own values vary from run to run; these draw from "
                                                  r"RandomState\(13579\)"):
        r = fidkit.compare(real_a, fb, metrics="kd-dgm-eval,prdc-dgm-eval", pr_k=3, device="cpu", workers=0)
    assert r.scores["dgm_eval_draws"] == "seeded here" and r.scores["dgm_eval_nearest_k"] == 3
    assert 0 <= r.scores["dgm_eval_coverage"] <= 1 and "pr_k" not in r.scores
    # equal sets of at most --reduced_n: prdc's draws only permute them, so nothing to warn of
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        r = fidkit.compare(real_a, real_b, metrics="prdc-dgm-eval", device="cpu", workers=0)
    assert not [w for w in said if "global generator" in str(w.message)] and r.scores["dgm_eval_nearest_k"] == 5
    with pytest.raises(FidkitError, match="dgm-eval's prdc with k = 5 .* needs at least 7 images in each set"):
        fidkit.compare(real_a, fb[:6], metrics="prdc-dgm-eval", device="cpu", workers=0)


def _dgm_eval_labels_transcribed(root: Path) -> tuple:
    """dgm-eval's DataLoader.get_local_dataset and ImagePathDataset, transcribed: (its labels in its
    listing order, its feature rows' files in the sorted order it reads them)."""
    exts = ["bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"]
    exts += [e.upper() for e in exts]

    def files_at(path):
        return sorted(f for ext in exts for f in path.glob(f"*.{ext}"))

    def get_order(file):
        stem = os.path.splitext(os.path.basename(file))[0]
        return int(stem) if stem.isnumeric() else stem

    files, labels = [], []
    for k, d in enumerate(sorted(root.glob("*"), key=get_order)):
        got = files_at(d)
        files += got
        labels += [k] * len(got)
    return np.array(labels), sorted(files)


def _class_folders(src: Path, root: Path, names: list) -> None:
    """The images of ``src`` dealt into class folders ``names`` (1 + k mod 2 images in the k-th)."""
    images = list_images(src)
    at = 0
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for j in range(1 + k % 2):
            shutil.copy(images[at % len(images)], root / name / f"im_{j}.png")
            at += 1


@pytest.mark.parametrize("names,follows", [([str(k) for k in range(12)], False), (["cat", "dog", "emu"], True)])
def test_dgm_evals_class_labels_fall_on_its_rows(real_b, tmp_path, names, follows):
    from fidkit.sources import dgm_eval_labels, dgm_eval_row_labels

    _class_folders(real_b, tmp_path, names)
    want_labels, want_rows = _dgm_eval_labels_transcribed(tmp_path)
    labels, order = dgm_eval_labels(tmp_path)
    assert labels.tolist() == want_labels.tolist() and order == sorted(names, key=lambda n: int(n) if n.isdigit() else n)
    # the r-th label falls on the r-th sorted file, whatever order fidkit lists them in
    images = as_images(str(tmp_path))
    row_labels, ok = dgm_eval_row_labels(str(tmp_path), images)
    at = {str(f): r for r, f in enumerate(want_rows)}
    assert row_labels.tolist() == [int(want_labels[at[images.path(i)]]) for i in range(len(images))]
    assert ok is follows  # numbered past 9: "10/" is read before "2/" but numbered after it
    if not follows:
        own = [order.index(Path(images.path(i)).parent.name) for i in range(len(images))]
        assert row_labels.tolist() != own
    # one scan of the folder, handed on, gives what each function reads for itself
    from fidkit.sources import dgm_eval_scan, dgm_eval_unread
    scan = dgm_eval_scan(tmp_path)
    assert dgm_eval_listing(tmp_path, scan) == dgm_eval_listing(tmp_path)
    got_labels, got_order = dgm_eval_labels(tmp_path, scan)
    assert got_labels.tolist() == labels.tolist() and got_order == order
    got_rows, got_ok = dgm_eval_row_labels(str(tmp_path), images, scan)
    assert got_rows.tolist() == row_labels.tolist() and got_ok is ok
    assert dgm_eval_unread(tmp_path, images, scan) == []
    with pytest.raises(ValueError, match="a scan of"):
        dgm_eval_listing(real_b, scan)


def test_vendi_dgm_eval_reads_bs_names_once(real_a, real_b, tmp_path, monkeypatch):
    import fidkit.sources as sources

    names = [str(k) for k in range(11)]
    _class_folders(real_b, tmp_path / "gen", names)
    want = fidkit.compare(real_a, tmp_path / "gen", metrics="vendi-dgm-eval", nsample=16, device="cpu", workers=0)
    looked = []
    names_in = sources._names_in
    monkeypatch.setattr(sources, "_names_in", lambda folder: looked.append(folder) or names_in(folder))
    got = fidkit.compare(real_a, tmp_path / "gen", metrics="vendi-dgm-eval", nsample=16, device="cpu", workers=0)
    assert got.scores["dgm_eval_vendi_per_class"] == want.scores["dgm_eval_vendi_per_class"]
    looked_b = [f for f in looked if f.startswith(str(tmp_path))]  # A is listed dgm-eval's way too, for its cut
    assert sorted(looked_b) == sorted([str(tmp_path / "gen")] + [str(tmp_path / "gen" / n) for n in names])


def test_dgm_evals_class_labels_refused_where_it_has_none_or_stops(real_b, tmp_path):
    from fidkit.errors import SourceError
    from fidkit.sources import dgm_eval_labels, dgm_eval_row_labels

    assert dgm_eval_labels(real_b) == (None, [])
    with pytest.raises(SourceError, match="holds images at its top level, so dgm-eval gives it no classes"):
        dgm_eval_row_labels(str(real_b), as_images(str(real_b)))
    _class_folders(real_b, tmp_path, ["3", "cat"])
    with pytest.raises(SourceError, match=r"names that are numbers beside names that are not \('3' and 'cat'\)"):
        dgm_eval_labels(tmp_path)


def test_dgm_eval_vendi_per_class_is_the_vendi_score_of_each_labelled_class():
    from fidkit.scores import dgm_eval_vendi_per_class, vendi_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 16))
    labels = np.array([0] * 10 + [1] * 15 + [2] * 5)[rng.permutation(30)]
    x[labels == 2] = x[labels == 2][0]  # class 2: five copies of one vector, whose score is 1
    got = dgm_eval_vendi_per_class(x, labels)
    want = [vendi_score(x[labels == i]) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert abs(got[2] - 1) < 1e-9 and 1 < got[0] < 10 and 1 < got[1] < 15
    with pytest.raises(StatsError, match="class 1 of the 2 dgm-eval counts holds no image"):
        dgm_eval_vendi_per_class(x[:4], np.array([0, 2, 2, 0]))


def test_compute_gives_dgm_evals_vendi_per_class(real_a, real_b, tmp_path):
    from fidkit.scores import dgm_eval_vendi_per_class
    from fidkit.sources import dgm_eval_row_labels

    names = [str(k) for k in range(11)]  # 16 images; "10/" sorts between "1/" and "2/"
    _class_folders(real_b, tmp_path / "gen", names)
    r = run("compute", real_a, tmp_path / "gen", "--metrics", "vendi-dgm-eval", "--json", *RUN)
    out = json.loads(r.stdout)
    assert "mix images of different folders" in r.stderr
    images = as_images(str(tmp_path / "gen"))
    fb = extract(images, keep_features=True, device="cpu", workers=0).features
    labels, follows = dgm_eval_row_labels(str(tmp_path / "gen"), images)
    want = dgm_eval_vendi_per_class(fb, labels)
    assert not follows and out["dgm_eval_vendi_labels"] == "dgm-eval's, not its folders"
    assert out["dgm_eval_vendi_per_class"] == [float(v) for v in want]
    assert out["dgm_eval_vendi_per_class_mean"] == float(want.mean())
    text = run("compute", real_a, tmp_path / "gen", "--metrics", "vendi-dgm-eval", *RUN).stdout
    line = next(x for x in text.splitlines() if x.startswith("dgm_eval_vendi_per_class: "))
    assert line.count(", ") == 10  # 11 classes: listed in the text output too (over 16: counted)


def test_vendi_dgm_eval_refusals_come_before_any_pass(real_a, real_b, tmp_path):
    r = run("compute", real_a, real_b, "--metrics", "vendi-dgm-eval", *RUN, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "holds images at its top level" in r.stderr
    _class_folders(real_b, tmp_path / "gen", ["cat", "dog"])
    (tmp_path / "gen" / "a-note.txt").write_text("not an image")  # numbered 0 by dgm-eval, with no images
    r = run("compute", real_a, tmp_path / "gen", "--metrics", "vendi-dgm-eval", *RUN, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "none of B's images is labelled 0" in r.stderr, r.stderr
    assert "images/s" not in r.stderr
    np.savez(tmp_path / "b.npz", arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    r = run("compute", real_a, tmp_path / "b.npz", "--metrics", "vendi-dgm-eval", *RUN, check=False)
    assert r.returncode == 1 and "needs B as a folder of class folders" in r.stderr
    r = run("compute", real_a, tmp_path / "gen", "--metrics", "vendi-dgm-eval", "--subset", "2", *RUN, check=False)
    assert r.returncode == 1 and "not EDM's subset" in r.stderr
    (tmp_path / "gen" / "a-note.txt").unlink()
    Image.new("RGB", (8, 8)).save(tmp_path / "gen" / "dog" / "x.ppm")  # dgm-eval globs .ppm, fidkit does not list it
    r = run("compute", real_a, tmp_path / "gen", "--metrics", "vendi-dgm-eval", *RUN, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "images/s" not in r.stderr
    assert "dgm-eval reads 1 file(s) of B that fidkit does not, the first dog/x.ppm" in r.stderr, r.stderr
