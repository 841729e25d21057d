"""Argument checks of Statistics.save and Statistics.load: a bad value is one line (StatsError)
saying what is wrong and what to do, never a raw TypeError/AttributeError, a silently coerced
value, or a saved file that load refuses later. Valid files keep their bytes through a
load -> save round trip (the committed reference statistics included)."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from fidkit.errors import StatsError
from fidkit.stats import META_KEYS, Statistics
from test_stats_metric_checks import one_line, stats as _stats

REF = Path(__file__).resolve().parents[1] / "reference_stats"
D = 4
DIGEST = "a" * 64


def stats(n=12, d=D, seed=0, **kw):
    """test_stats_metric_checks' statistics, with a protocol and a weights digest by default."""
    kw.setdefault("protocol", "ttur")
    kw.setdefault("weights_digest", DIGEST)
    return _stats(n, d, seed, **kw)


def fidkit_file(path, mu=np.zeros(D), sigma=np.eye(D), n=12, **meta):
    """A file as fidkit writes it, with ``meta`` overriding fields of its fidkit_meta."""
    m = {"protocol": "ttur", "weights_digest": DIGEST, "n": n, "fidkit_version": "0.1.0", "feature_dim": D}
    m.update(meta)
    np.savez(path, mu=mu, sigma=sigma, n=np.int64(-1 if n is None else n), fidkit_meta=np.array(json.dumps(m)))
    return path


# ----------------------------------------------------------------------------- 1. extra vs recorded meta

@pytest.mark.parametrize("key", META_KEYS)
def test_save_refuses_extra_keys_that_save_records_itself(tmp_path, key):
    st = stats(extra={key: "ab" * 32, "dataset": "x"})
    with pytest.raises(StatsError, match=f"extra holds '{key}', which save records itself") as e:
        st.save(tmp_path / "s.npz")
    one_line(e)
    assert os.listdir(tmp_path) == []


def test_extra_can_no_longer_overwrite_the_count_and_digest(tmp_path):
    st = stats(extra={"weights_digest": "ab" * 32, "n": 50000})
    with pytest.raises(StatsError, match="extra holds 'n', 'weights_digest', which save records itself"):
        st.save(tmp_path / "s.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path", sorted(REF.glob("*.npz")), ids=lambda p: p.name)
def test_committed_reference_stats_keep_their_bytes_through_load_and_save(tmp_path, path):
    st = Statistics.load(path)
    assert st.extra  # e.g. the dataset: round-trips through extra
    assert st.save(tmp_path / path.name).read_bytes() == path.read_bytes()


def test_files_with_every_entry_keep_their_bytes_through_load_and_save(tmp_path):
    rng = np.random.default_rng(1)
    n = 12
    x = rng.normal(size=(n, D)).astype(np.float32)
    st = Statistics(x.mean(0, dtype=np.float64), np.cov(x, rowvar=False), n, "clip", DIGEST, "0.1.0",
                    encoder="dinov2-vitl14", features=x,
                    extra={"dataset": "d", "feature": "cls", "network_precision": "fp32", "shard": "0/2",
                           "skipped": ["a/1.png"], "nsample": 12, "nsample_seed": 13579, "nsample_from": 20,
                           "registry_name": "r", "nested": {"a": [1, 2.5, None, True]}})
    st.named["spatial"] = Statistics(rng.normal(size=2023), np.eye(2023), n)
    first = st.save(tmp_path / "a.npz")
    back = Statistics.load(first)
    assert back.extra == st.extra and back.n == n and back.encoder == "dinov2-vitl14"
    back.features = Statistics.load_features(first, back)
    assert back.save(tmp_path / "b.npz").read_bytes() == first.read_bytes()
    back.features = None  # without the features: loads back the same statistics again
    again = Statistics.load(back.save(tmp_path / "c.npz"))
    for attr in ("n", "protocol", "weights_digest", "fidkit_version", "encoder", "extra"):
        assert getattr(again, attr) == getattr(back, attr), attr
    assert np.array_equal(again.mu, back.mu) and np.array_equal(again.spatial.sigma, back.spatial.sigma)


def test_a_file_of_unknown_count_keeps_its_bytes(tmp_path):
    st = stats()
    st.n = None
    first = st.save(tmp_path / "a.npz")
    back = Statistics.load(first)
    assert back.n is None
    assert back.save(tmp_path / "b.npz").read_bytes() == first.read_bytes()


# ----------------------------------------------------------------------------- 2. image counts

@pytest.mark.parametrize("n", [-4, 0, -1])
def test_load_refuses_a_meta_count_that_is_not_positive(tmp_path, n):
    path = fidkit_file(tmp_path / "s.npz", n=n)
    with pytest.raises(StatsError, match=f"fidkit_meta records n={n}, not a positive integer image count") as e:
        Statistics.load(path)
    one_line(e)


def test_load_refuses_a_spatial_meta_count_that_is_not_positive(tmp_path):
    st = stats()
    st.named["spatial"] = Statistics(np.zeros(2023), np.eye(2023), 12)
    path = st.save(tmp_path / "s.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["fidkit_meta"]))
    meta["features"]["spatial"]["n"] = 0
    arrays["fidkit_meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(StatsError, match="spatial n=0, not a positive integer image count") as e:
        Statistics.load(tmp_path / "bad.npz")
    one_line(e)


@pytest.mark.parametrize("n", [0, -4])
def test_load_refuses_a_plain_files_count_that_is_not_positive(tmp_path, n):
    np.savez(tmp_path / "p.npz", mu=np.zeros(D), sigma=np.eye(D), n=np.int64(n))
    with pytest.raises(StatsError, match=f"its 'n' is {n}, not a positive image count") as e:
        Statistics.load(tmp_path / "p.npz")
    one_line(e)


def test_a_plain_files_count_of_minus_one_is_still_unknown(tmp_path):
    np.savez(tmp_path / "p.npz", mu=np.zeros(D), sigma=np.eye(D), n=np.int64(-1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Statistics.load(tmp_path / "p.npz").n is None
    np.savez(tmp_path / "q.npz", mu=np.zeros(D), sigma=np.eye(D), n=np.int64(7))
    assert Statistics.load(tmp_path / "q.npz", assume_protocol="ttur").n == 7


def test_an_adm_batch_without_images_has_an_unknown_count(tmp_path):
    np.savez(tmp_path / "ref.npz", arr_0=np.zeros((0, 8, 8, 3), np.uint8), mu=np.zeros(D), sigma=np.eye(D))
    st = Statistics.load(tmp_path / "ref.npz")
    assert st.n is None and st.protocol == "ttur"  # not 0, which save and merge refuse
    np.savez(tmp_path / "ref3.npz", arr_0=np.zeros((3, 8, 8, 3), np.uint8), mu=np.zeros(D), sigma=np.eye(D))
    assert Statistics.load(tmp_path / "ref3.npz").n == 3


# ----------------------------------------------------------------------------- 3. save writes only loadable files

@pytest.mark.parametrize("attr, value", [("weights_digest", 5), ("protocol", 5), ("encoder", 7), ("encoder", None),
                                         ("fidkit_version", 0.1)])
def test_save_refuses_provenance_that_is_not_a_string(tmp_path, attr, value):
    st = stats()
    setattr(st, attr, value)
    with pytest.raises(StatsError, match=f"{attr}={value!r} .*; it must be a string") as e:
        st.save(tmp_path / "s.npz")
    one_line(e)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad, message", [
    ("nan", "per-image features hold NaN or inf"),
    ("inf", "per-image features hold NaN or inf"),
    ("float64", "per-image features have dtype float64; a statistics file keeps float32"),
    ("float16", "per-image features have dtype float16"),
    ("int32", "per-image features have dtype int32"),
])
def test_save_refuses_features_that_are_not_finite_float32(tmp_path, bad, message):
    st = stats()
    feats = np.full((st.n, D), 0.1, np.float32)
    if bad in ("nan", "inf"):
        feats[3, 1] = float(bad)
    else:
        feats = feats.astype(bad)
    st.features = feats
    with pytest.raises(StatsError, match=message) as e:
        st.save(tmp_path / "s.npz")
    one_line(e)
    assert os.listdir(tmp_path) == []


def test_save_takes_mu_and_sigma_as_lists(tmp_path):
    st = stats()
    want = st.save(tmp_path / "arrays.npz").read_bytes()
    lists = Statistics(st.mu.tolist(), st.sigma.tolist(), st.n, st.protocol, st.weights_digest)
    assert lists.save(tmp_path / "lists.npz").read_bytes() == want


def test_save_refuses_ragged_lists_in_one_line(tmp_path):
    st = Statistics([0.0, 1.0], [[1.0, 0.0], [0.0]], 12)
    with pytest.raises(StatsError, match="mu or sigma is not a numeric array") as e:
        st.save(tmp_path / "s.npz")
    one_line(e)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("extra, message", [
    ({"x": np.float32(1)}, r"extra\['x'\] cannot be written .*float32"),
    ({"y": [1, np.int64(2)]}, r"extra\['y'\] cannot be written"),
    ({"z": {"a": object()}}, r"extra\['z'\] cannot be written"),
    ({1: "a"}, "extra has the key 1 .*must be strings"),
    (None, "extra is a NoneType, not a dict"),
])
def test_save_refuses_extra_that_json_cannot_write(tmp_path, extra, message):
    st = stats(extra=extra)
    with pytest.raises(StatsError, match=message) as e:
        st.save(tmp_path / "s.npz")
    one_line(e)
    assert os.listdir(tmp_path) == []


def test_save_refuses_named_that_is_not_a_dict(tmp_path):
    st = stats(named=None)
    with pytest.raises(StatsError, match="named is a NoneType, not a dict") as e:
        st.save(tmp_path / "s.npz")
    one_line(e)


@pytest.mark.parametrize("path", [None, 5, b"s.npz"])
def test_save_refuses_a_path_that_is_not_a_path(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StatsError, match="must be a file path") as e:
        stats().save(path)
    one_line(e)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- 4. load

@pytest.mark.parametrize("path", [None, 5])
def test_load_refuses_a_path_that_is_not_a_path(path):
    with pytest.raises(StatsError, match="the statistics file must be a file path") as e:
        Statistics.load(path)
    one_line(e)


def test_load_refuses_a_npy_in_one_line(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(D))
    with pytest.raises(StatsError, match=r"a \.npy \(one numpy array of shape \(4,\)\), not a statistics \.npz") as e:
        Statistics.load(tmp_path / "x.npy")
    one_line(e)


@pytest.mark.parametrize("name, data", [("image.png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
                                        ("notes.txt", b"mu sigma\n")], ids=["png", "txt"])
def test_load_says_other_files_are_not_statistics(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(StatsError, match=r"not a statistics \.npz \(not a numpy file at all\)") as e:
        Statistics.load(tmp_path / name)
    assert "object arrays" not in one_line(e)


def test_load_still_names_object_arrays(tmp_path):
    np.savez(tmp_path / "o.npz", mu=np.array([None] * D, dtype=object), sigma=np.eye(D))
    with pytest.raises(StatsError, match="holds object arrays"):
        Statistics.load(tmp_path / "o.npz")


@pytest.mark.parametrize("key, value", [("protocol", 5), ("encoder", 7), ("weights_digest", 7),
                                        ("fidkit_version", 1), ("encoder", None)])
def test_load_refuses_meta_provenance_that_is_not_a_string(tmp_path, key, value):
    path = fidkit_file(tmp_path / "s.npz", **{key: value})
    with pytest.raises(StatsError, match=f"fidkit_meta records {key}={value!r}, not a string; the file is "
                                         f"damaged") as e:
        Statistics.load(path)
    one_line(e)


def test_load_keeps_unknown_provenance_as_none(tmp_path):
    st = Statistics.load(fidkit_file(tmp_path / "s.npz", protocol=None, weights_digest=None, fidkit_version=None))
    assert (st.protocol, st.weights_digest, st.fidkit_version, st.n) == (None, None, None, 12)
