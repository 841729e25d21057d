"""Streaming statistics, exact merging, and .npz files that other tools read."""
import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fidkit.errors import FidkitWarning, StatsError
from fidkit.stats import Accumulator, Statistics


def reference(x):
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x, rowvar=False, ddof=1)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)  # the same draws every run
@given(n=st.integers(2, 60), d=st.integers(1, 9), cuts=st.lists(st.integers(1, 59), max_size=5),
       seed=st.integers(0, 2**31 - 1))
def test_streaming_equals_two_pass_for_any_batching(n, d, cuts, seed):
    x = np.random.default_rng(seed).normal(3.0, 2.0, (n, d)).astype(np.float32)
    acc = Accumulator(d)
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(torch.from_numpy(x[a:b]))
    r = acc.result()
    mu, sigma = reference(x)
    assert r.n == n
    np.testing.assert_allclose(r.mu, mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.sigma, sigma, rtol=1e-10, atol=1e-12)
    assert np.array_equal(r.sigma, r.sigma.T)


def test_accumulation_is_float64_and_avoids_cancellation():
    # features with a large common offset: a float32 or Σxxᵀ − nμμᵀ accumulation loses the variance
    rng = np.random.default_rng(0)
    x = (1e4 + rng.normal(0, 1e-2, (20000, 3))).astype(np.float64)
    acc = Accumulator(3)
    for i in range(0, len(x), 128):
        acc.update(torch.from_numpy(x[i:i + 128]))
    np.testing.assert_allclose(acc.result().sigma, np.cov(x, rowvar=False), rtol=1e-9)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(n=st.integers(1, 400), d=st.integers(2, 40), cuts=st.lists(st.integers(1, 399), max_size=6),
       seed=st.integers(0, 2**31 - 1))
def test_float32_mean_is_numpys_mean_of_float32_rows_for_any_batching(n, d, cuts, seed):
    # guided-diffusion's evaluator takes np.mean(x, axis=0) of float32 features: a float32 sum, row
    # after row; wide magnitudes make float32's rounding show, so a float64 mean rounded would differ.
    # (d = 1 is a plain column, which numpy sums pairwise instead: not the evaluator's 2048 or 2023)
    rng = np.random.default_rng(seed)
    x = (rng.gamma(0.5, 2.0, (n, d)) * rng.lognormal(0.0, 3.0, d)).astype(np.float32)
    acc = Accumulator(d, float32_sum=True)
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(torch.from_numpy(x[a:b]))
    got = acc.mean_float32()
    assert got.dtype == np.float32 and np.array_equal(got, np.mean(x, axis=0))


def test_float32_mean_differs_from_the_rounded_float64_one_and_needs_its_sum():
    x = (np.random.default_rng(1).gamma(0.5, 2.0, (5000, 64))).astype(np.float32)
    acc = Accumulator(64, float32_sum=True)
    for i in range(0, len(x), 16):
        acc.update(torch.from_numpy(x[i:i + 16]))
    assert np.array_equal(acc.mean_float32(), np.mean(x, axis=0))
    assert not np.array_equal(acc.mean_float32(), x.astype(np.float64).mean(0).astype(np.float32))
    np.testing.assert_allclose(acc.result().mu, x.astype(np.float64).mean(0), rtol=1e-13)  # float64 as ever
    plain = Accumulator(64)
    plain.update(torch.from_numpy(x[:16]))
    acc.merge_moments(16, torch.zeros(64, dtype=torch.float64), torch.zeros(64, 64, dtype=torch.float64))
    for a in (plain, acc):  # no sum kept, or rows merged that it does not hold
        with pytest.raises(StatsError, match="no float32 running sum of these rows"):
            a.mean_float32()


def test_fewer_than_two_images_is_reported():
    acc = Accumulator(4)
    acc.update(torch.zeros(1, 4))
    with pytest.raises(StatsError, match="at least 2 images"):
        acc.result()


def make_stats(n=50, d=6, seed=0, **meta):
    x = np.random.default_rng(seed).normal(size=(n, d))
    mu, sigma = reference(x)
    return Statistics(mu, sigma, n, **meta)


def test_npz_round_trip_is_exact_and_deterministic(tmp_path):
    s = make_stats(protocol="ttur", weights_digest="ab" * 32, fidkit_version="0.1.0")
    p1, p2 = s.save(tmp_path / "a.npz"), s.save(tmp_path / "b.npz")
    assert hashlib.sha256(p1.read_bytes()).digest() == hashlib.sha256(p2.read_bytes()).digest()
    t = Statistics.load(p1)
    assert np.array_equal(t.mu, s.mu) and np.array_equal(t.sigma, s.sigma)
    assert (t.n, t.protocol, t.weights_digest, t.fidkit_version) == (50, "ttur", "ab" * 32, "0.1.0")
    # what pytorch-fid and TTUR do with a statistics file
    with np.load(p1) as f:
        mu, sigma = f["mu"][:], f["sigma"][:]
    assert np.array_equal(mu, s.mu) and np.array_equal(sigma, s.sigma)
    with zipfile.ZipFile(p1) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert json.loads(str(np.load(p1)["fidkit_meta"]))["protocol"] == "ttur"


def test_plain_mu_sigma_file_is_read_with_a_warning(tmp_path):
    s = make_stats()
    np.savez(tmp_path / "plain.npz", mu=s.mu, sigma=s.sigma)
    with pytest.warns(FidkitWarning, match="protocol and weights are unknown"):
        t = Statistics.load(tmp_path / "plain.npz")
    assert t.protocol is None and t.n is None and np.array_equal(t.sigma, s.sigma)


@pytest.mark.parametrize("arrays, message", [
    ({"mu": np.zeros(3)}, "needs arrays 'mu' and 'sigma'"),
    ({"mu": np.zeros(3), "sigma": np.zeros((3, 4))}, "expected \\(d,\\) and \\(d, d\\)"),
    ({"mu": np.zeros((3, 1)), "sigma": np.eye(3)}, "expected \\(d,\\) and \\(d, d\\)"),
    ({"mu": np.array([0, np.nan, 0]), "sigma": np.eye(3)}, "NaN or inf"),
    ({"mu": np.zeros(3), "sigma": np.eye(3) * np.inf}, "NaN or inf"),
    ({"mu": np.zeros(3, complex), "sigma": np.eye(3)}, "complex128; statistics must be real"),
    ({"mu": np.array([None, 1, 2], dtype=object), "sigma": np.eye(3)}, "object arrays"),
])
def test_bad_statistics_files_get_one_clear_line(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(StatsError, match=message) as e:
        Statistics.load(p)
    assert "\n" not in str(e.value)


def test_truncated_and_missing_files(tmp_path):
    p = make_stats().save(tmp_path / "s.npz")
    data = p.read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(StatsError, match="truncated|not a readable"):
        Statistics.load(tmp_path / "t.npz")
    with pytest.raises(StatsError, match="no such statistics file"):
        Statistics.load(tmp_path / "missing.npz")


def test_save_is_atomic_and_reports_bad_paths(tmp_path):
    s = make_stats()
    with pytest.raises(StatsError, match="does not exist"):
        s.save(tmp_path / "no" / "such" / "dir.npz")
    s.save(tmp_path / "ok.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.npz"]  # no temporary file left behind


def test_merging_shards_equals_the_union(tmp_path):
    from fidkit.stats import merge
    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 1.5, (900, 16))
    parts = []
    for i, (a, b) in enumerate([(0, 250), (250, 251 + 300), (551, 900)]):
        acc = Accumulator(16)
        acc.update(torch.from_numpy(x[a:b]))
        parts.append(acc.result(protocol="ttur", weights_digest="d" * 64).save(tmp_path / f"p{i}.npz"))
    whole = Accumulator(16)
    whole.update(torch.from_numpy(x))
    w = whole.result()
    m = merge([Statistics.load(p) for p in parts])
    assert m.n == 900 and m.protocol == "ttur"
    np.testing.assert_allclose(m.mu, w.mu, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(m.sigma, w.sigma, rtol=1e-12, atol=1e-13)


def test_merge_refuses_unknown_counts_and_mismatches(tmp_path):
    from fidkit.stats import merge
    a = make_stats(protocol="ttur", weights_digest="a" * 64)
    with pytest.raises(StatsError, match="protocol clean differs from ttur"):
        merge([make_stats(protocol="clean", weights_digest="a" * 64), a][::-1])
    with pytest.raises(StatsError, match="image count is unknown"):
        merge([a, Statistics(a.mu, a.sigma, None)])


def test_merge_keeps_the_parts_features_in_their_order_when_asked():
    from fidkit.stats import merge

    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(n, 4)).astype(np.float32) for n in (5, 7)]
    parts = []
    for x in xs:
        st = Statistics(x.mean(0, dtype=np.float64), np.cov(x, rowvar=False), len(x), protocol="ttur",
                        weights_digest="f" * 64)
        st.features = x
        parts.append(st)
    out = merge(parts, keep_features=True)
    assert np.array_equal(out.features, np.concatenate(xs)) and out.n == 12
    np.testing.assert_allclose(out.mu, np.concatenate(xs).astype(np.float64).mean(0), rtol=1e-12)
    assert merge(parts).features is None  # statistics only, unless asked
    parts[1].features = None
    with pytest.raises(StatsError, match="keeps no per-image features, so the merge cannot keep them"):
        merge(parts, keep_features=True)
    with pytest.raises(StatsError, match="keep_features must be True or False, got 'yes'"):
        merge(parts, keep_features="yes")
