"""Statistics files that keep every image's features (``fidkit stats --features``,
``compute_stats(keep_features=True)``): they stand in for their images in the per-image metrics,
with the same numbers, and are refused where the images' logits are needed. tests/data's
10 + 10 images, the real weights."""
import json

import numpy as np
import pytest

import fidkit
from conftest import run_fidkit as run
from fidkit.stats import Statistics

pytestmark = pytest.mark.filterwarnings("ignore:.*feature dimensions:fidkit.errors.FidkitWarning")

RUN = ("--device", "cpu", "--workers", "0")
KEYS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "dgm_eval_kd_value",
        "dgm_eval_kd_variance", "dgm_eval_precision", "dgm_eval_recall", "dgm_eval_density", "dgm_eval_coverage",
        "authpct", "fid_ci_low", "fid_ci_high", "fid_bootstrap_std")


def test_a_file_with_features_gives_the_numbers_of_its_images(real_a, real_b, tmp_path):
    info = json.loads(run("stats", real_a, "--features", "-o", tmp_path / "a.npz", "--json", *RUN).stdout)
    assert info["per_image_features"] == 10
    with np.load(tmp_path / "a.npz") as z:
        kept = z["features"]
    assert kept.dtype == np.float32 and kept.shape == (10, 2048)
    assert np.array_equal(kept, fidkit.features(tmp_path / "a.npz"))  # the functional API reads them too
    metrics = ("--metrics", "kid,pr,kd-dgm-eval,prdc-dgm-eval,authpct", "--bootstrap", "5")
    images = json.loads(run("compute", real_a, real_b, *metrics, "--json", *RUN).stdout)
    stored = json.loads(run("compute", tmp_path / "a.npz", real_b, *metrics, "--json", *RUN).stdout)
    assert {k: stored[k] for k in KEYS} == {k: images[k] for k in KEYS}
    assert stored["statistics_from_file_a"] == ["pool3", "features"]
    # a statistics file without them is still refused, naming the way to keep them
    run("stats", real_a, "-o", tmp_path / "plain.npz", *RUN)
    r = run("compute", tmp_path / "plain.npz", real_b, "--metrics", "kid", *RUN, check=False)
    assert r.returncode != 0 and "make the file with fidkit stats --features" in r.stderr
    # the images' logits are not kept: refused in one line
    r = run("compute", real_a, tmp_path / "a.npz", "--metrics", "is", *RUN, check=False)
    assert r.returncode != 0 and "needs the logits of every image, which a statistics file does not keep" in r.stderr
    assert "(its per-image features are not logits)" in r.stderr


def test_features_in_python_and_their_refusals(real_a, real_b, tmp_path):
    st = fidkit.compute_stats(real_b, keep_features=True, device="cpu", workers=0)
    assert st.features.shape == (10, 2048) and st.features.dtype == np.float32
    want = fidkit.compare(real_a, real_b, metrics="kid", device="cpu", workers=0).scores["kid_mean"]
    assert fidkit.compare(real_a, st, metrics="kid", device="cpu", workers=0).scores["kid_mean"] == want
    st.save(tmp_path / "b.npz")
    assert Statistics.load(tmp_path / "b.npz").features is None  # read only when a metric needs them
    # the functional API, as a training loop calls it with FID(keep_features=True).features()
    fa = fidkit.features(real_a, device="cpu", workers=0)
    assert fidkit.kid(fa, tmp_path / "b.npz") == fidkit.kid(fa, real_b, device="cpu", workers=0)
    st.save(tmp_path / "b2.npz")
    r = run("stats", "merge", tmp_path / "b.npz", tmp_path / "b2.npz", "-o", tmp_path / "m.npz")
    assert "keep per-image features, which are not merged" in r.stderr and "(merge with --features" in r.stderr
    with np.load(tmp_path / "m.npz") as z:
        assert "features" not in z.files
    # features that do not belong to the statistics: refused, not used
    with np.load(tmp_path / "b.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["features"] = arrays["features"][:9]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(fidkit.FidkitError, match=r"per-image features \(float32 \(9, 2048\)\) are not the finite "
                                                 r"float32 \(10, 2048\) of its statistics"):
        fidkit.compare(real_a, tmp_path / "bad.npz", metrics="kid", device="cpu", workers=0)
    with pytest.raises(fidkit.FidkitError, match="per-image features of shape"):
        Statistics(st.mu, st.sigma, 9, features=st.features).save(tmp_path / "x.npz")


def test_a_cut_file_as_b_replays_dgm_evals_draws(real_a, real_b, tmp_path):
    info = json.loads(run("stats", real_b, "--features", "--nsample", "8", "-o", tmp_path / "b8.npz", "--json",
                          *RUN).stdout)
    assert (info["n"], info["per_image_features"], info["nsample_from"]) == (8, 8, 10)
    m = ("--metrics", "kd-dgm-eval,prdc-dgm-eval,vendi,kid", "--nsample", "8", "--json", *RUN)
    images = json.loads(run("compute", real_a, real_b, *m).stdout)
    stored = json.loads(run("compute", real_a, tmp_path / "b8.npz", *m).stdout)
    keys = [k for k in images if k.startswith("dgm_eval_") or k in ("fid", "vendi", "kid_mean", "kid_std")]
    assert len(keys) > 10 and {k: stored[k] for k in keys} == {k: images[k] for k in keys}
    assert stored["dgm_eval_draws"] == "replayed" and stored["statistics_from_file_b"] == ["pool3", "features"]


def test_only_fidkits_own_files_keep_features(tmp_path):
    from fidkit.api import _holds_features

    g = np.random.default_rng(0)
    x = g.normal(size=(5, 4))
    np.savez(tmp_path / "other.npz", mu=x.mean(0), sigma=np.cov(x, rowvar=False), features=x)  # another tool's
    assert not _holds_features(tmp_path / "other.npz")
    st = Statistics(x.mean(0), np.cov(x, rowvar=False), 5, features=x.astype(np.float32))
    st.save(tmp_path / "ours.npz")
    assert _holds_features(tmp_path / "ours.npz") and _holds_features(st)
    assert np.array_equal(Statistics.load_features(tmp_path / "ours.npz", Statistics.load(tmp_path / "ours.npz")),
                          x.astype(np.float32))
    st.features = x  # float64 in memory: refused, not cast
    with pytest.raises(fidkit.FidkitError, match=r"per-image features \(float64 \(5, 4\)\) are not the finite"):
        fidkit.api._file_features(st, st)
    r = run("stats", "fetch", "ttur-cifar10-train", "--features", check=False)
    assert r.returncode == 2 and "stats fetch takes a name and -o only" in r.stderr


def test_shards_kept_with_features_merge_into_the_whole_sets_file(real_a, real_b, tmp_path):
    """`stats --shard I/K --features` on each machine, then `stats merge --features`: the features
    join in shard order whatever order the parts are given in, and the file serves the per-image
    metrics as the whole pass's does (to float32 rounding: a shard's network batches differ)."""
    whole = tmp_path / "whole.npz"
    run("stats", real_a, "--features", "-o", whole, *RUN)
    parts = [tmp_path / f"part{i}.npz" for i in range(3)]
    for i in (2, 0, 1):
        run("stats", real_a, "--features", "--shard", f"{i}/3", "-o", parts[i], *RUN)
    merged = tmp_path / "merged.npz"
    info = json.loads(run("stats", "merge", parts[2], parts[0], parts[1], "--features", "-o", merged,
                          "--json").stdout)
    assert (info["n"], info["per_image_features"]) == (10, 10)
    with np.load(whole) as z, np.load(merged) as m:
        assert m["features"].dtype == np.float32 and m["features"].shape == (10, 2048)
        np.testing.assert_allclose(m["features"], z["features"], rtol=1e-4, atol=1e-5)  # row for row: in order
        np.testing.assert_allclose(m["mu"], z["mu"], rtol=1e-5, atol=1e-6)
    metrics = ("--metrics", "kid,pr", "--json", *RUN)
    got = json.loads(run("compute", merged, real_b, *metrics).stdout)
    want = json.loads(run("compute", whole, real_b, *metrics).stdout)
    assert got["statistics_from_file_a"] == ["pool3", "features"]
    for key in ("fid", "kid_mean", "precision", "recall", "density", "coverage"):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
    # a part without features: the merge cannot keep them, in one line
    run("stats", real_b, "-o", tmp_path / "plain.npz", *RUN)
    r = run("stats", "merge", parts[0], tmp_path / "plain.npz", "--features", "-o", tmp_path / "x.npz", check=False)
    assert r.returncode == 1 and not (tmp_path / "x.npz").exists()
    assert r.stderr.strip().endswith("plain.npz: keeps no per-image features, so the merge cannot keep them; make "
                                     "every part with fidkit stats --features, or merge without keeping them"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_shard_order_sorts_by_the_recorded_shard_only_when_every_part_has_one():
    from fidkit.stats import shard_order

    def part(shard):
        st = Statistics(np.zeros(2), np.eye(2), 5)
        if shard:
            st.extra["shard"] = shard
        return st

    a, b, c = part("2/3"), part("0/3"), part("1/3")
    assert shard_order([a, b, c]) == [b, c, a]
    d = part(None)
    assert shard_order([a, d, b]) == [a, d, b]  # one part records no shard: as given
    e = part("0/4")
    assert shard_order([a, e]) == [a, e]  # shards of different K: as given
