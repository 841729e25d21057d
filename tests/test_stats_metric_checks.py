"""Input checks of fidkit.stats (Statistics.save/load, Accumulator, merge) and fidkit.metric (FID,
evaluate_generator): bad input is one line of fidkit's errors, never a raw exception, a silently
coerced value or a file that cannot be loaded again.

Metric tests use a tiny encoder (a linear map of the mean colour, 4 features) so no network runs;
one test builds the Inception metric, which loads its weights but runs no image.
"""

import json
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import fidkit
from fidkit.encoders import Encoder, Preprocess
from fidkit.errors import FidkitError, FidkitWarning, SourceError, StatsError
from fidkit.stats import Accumulator, Statistics, merge

D = 4


def one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def stats(n=50, d=D, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return Statistics(x.mean(0), np.cov(x, rowvar=False), n, **kw)


# ----------------------------------------------------------------------------- a tiny encoder

class RawPixels(Preprocess):
    name = "raw"
    size = 8
    resizes_on_device = True

    def to_network(self, batch):
        return batch.float() / 255


class TinyEncoder(Encoder):
    """4 features: a fixed linear map of each image's mean colour."""

    name = "tiny-test"
    outputs = {"feat": D}
    preprocessing = {"raw": RawPixels()}

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, D)
        with torch.no_grad():
            self.lin.weight.copy_(torch.arange(3 * D, dtype=torch.float32).view(D, 3) / 7 - 0.8)
            self.lin.bias.zero_()

    def forward(self, x):
        return {"feat": self.lin(x.mean((2, 3)))}


def tiny_reference(d=D, **kw):
    return stats(100, d, seed=3, protocol="raw", encoder="tiny-test", **kw)


def tiny_metric(**kw):
    return fidkit.FID(kw.pop("reference", None) or tiny_reference(), encoder=TinyEncoder(), device="cpu", **kw)


def uint8_images(n=6, seed=0):
    """uint8 (n, 3, 8, 8), C-contiguous."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)


# ----------------------------------------------------------------------------- 1. Statistics.save

@pytest.mark.parametrize("bad, message", [
    (dict(mu=np.zeros(D) + 1j), "complex"),
    (dict(mu=np.full(D, np.nan)), "NaN or inf"),
    (dict(sigma=np.eye(D + 1)), r"mu has shape \(4,\) and sigma \(5, 5\)"),
    (dict(sigma=np.full((D, D), np.inf)), "NaN or inf"),
])
def test_save_validates_before_writing_anything(tmp_path, bad, message):
    good = stats()
    st = Statistics(bad.get("mu", good.mu), bad.get("sigma", good.sigma), good.n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy ComplexWarning: a refusal, not a cast
        with pytest.raises(StatsError, match=message) as e:
            st.save(tmp_path / "s.npz")
    one_line(e)
    assert os.listdir(tmp_path) == []  # neither the file nor a temporary one


def test_save_validates_each_named_entry(tmp_path):
    st = stats()
    st.named["spatial"] = Statistics(np.full(2023, np.nan), np.eye(2023), 50)
    with pytest.raises(StatsError, match="spatial statistics: mu or sigma holds NaN") as e:
        st.save(tmp_path / "s.npz")
    one_line(e)
    st.named["spatial"] = Statistics(np.zeros(7), np.eye(7), 50)  # load would refuse mu_s of 7 values
    with pytest.raises(StatsError, match="spatial statistics have 7 values, but spatial has 2023"):
        st.save(tmp_path / "s.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("key", ["foo", "pool3"])
def test_save_refuses_named_keys_a_file_cannot_hold(tmp_path, key):
    st = stats()
    st.named[key] = stats(seed=1)
    with pytest.raises(StatsError, match=f"named statistics '{key}' cannot be saved") as e:
        st.save(tmp_path / "s.npz")
    one_line(e)
    assert os.listdir(tmp_path) == []


def test_save_writes_a_numpy_integer_count_as_a_plain_one(tmp_path):
    st = stats()
    plain = st.save(tmp_path / "plain.npz").read_bytes()
    for n in (np.int64(st.n), np.int32(st.n), np.uint16(st.n)):
        path = Statistics(st.mu, st.sigma, n).save(tmp_path / "numpy.npz")
        assert path.read_bytes() == plain  # the same bytes as with a Python int
        back = Statistics.load(path)
        assert back.n == st.n and type(back.n) is int


def test_save_writes_numpy_integer_counts_of_named_entries(tmp_path):
    rng = np.random.default_rng(0)
    st = stats(n=30)
    st.named["spatial"] = Statistics(rng.normal(size=2023), np.eye(2023), np.int64(30))
    back = Statistics.load(st.save(tmp_path / "s.npz"), assume_protocol="ttur")
    assert back.spatial.n == 30


@pytest.mark.parametrize("n", [10.5, 10.0, -3, 0, True, "10"])
def test_save_refuses_counts_that_are_not_positive_integers(tmp_path, n):
    st = stats()
    with pytest.raises(StatsError, match="image count n=") as e:
        Statistics(st.mu, st.sigma, n).save(tmp_path / "s.npz")
    one_line(e)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- 2. Accumulator.update

def _state(acc):
    return acc.n, acc.mean.clone(), acc.m2.clone()


@pytest.mark.parametrize("bad, message", [
    (torch.tensor([[0.0, 1.0, float("nan"), 2.0], [1.0, 1.0, 1.0, 1.0]]), "NaN or inf"),
    (torch.tensor([[0.0, 1.0, float("inf"), 2.0], [1.0, 1.0, 1.0, 1.0]]), "NaN or inf"),
    (torch.tensor([[0.0, 1.0, float("-inf"), 2.0], [1.0, 1.0, float("inf"), 1.0]]), "NaN or inf"),
    (torch.full((3, D), 1e200, dtype=torch.float64) * torch.tensor([[1.0], [-1.0], [1.0]], dtype=torch.float64),
     "too large to square"),
    (torch.ones(3, D, dtype=torch.complex64), "complex"),
    (torch.ones(3, D, dtype=torch.int64), "integer"),
    (torch.ones(3, D, dtype=torch.bool), "integer or bool"),
    (np.ones((3, D), np.float32), "torch tensor"),
    (torch.ones(3, D + 1), r"shape \(n, 4\)"),
])
def test_accumulator_refuses_what_would_make_unloadable_statistics(bad, message):
    acc = Accumulator(D)
    acc.update(torch.arange(2 * D, dtype=torch.float32).view(2, D))
    before = _state(acc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning about a dropped imaginary part
        with pytest.raises(StatsError, match=message) as e:
            acc.update(bad)
    one_line(e)
    n, mean, m2 = _state(acc)
    assert n == before[0] and torch.equal(mean, before[1]) and torch.equal(m2, before[2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_accumulator_of_finite_floats_is_the_plain_float64_moments(dtype):
    """One batch: mean and M2 are exactly the batch's float64 mean and centred Gram matrix."""
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(9, D))).to(dtype)
    acc = Accumulator(D)
    acc.update(x)
    x64 = x.double()
    mb = x64.mean(0)
    assert acc.n == 9 and torch.equal(acc.mean, mb) and torch.equal(acc.m2, (x64 - mb).T @ (x64 - mb))


# ----------------------------------------------------------------------------- 3. FID's reference

def test_fid_refuses_a_reference_of_another_dimension_at_construction():
    with pytest.raises(StatsError, match="5 dimensions, but encoder 'tiny-test' gives 4") as e:
        tiny_metric(reference=tiny_reference(d=5))
    one_line(e)


def test_fid_refuses_a_pytorch_fid_768_file_at_construction(tmp_path, real_weights):
    """A pytorch-fid --dims 768 file: unknown provenance passes check_provenance; the dimension does not."""
    path = tmp_path / "pfid768.npz"
    np.savez(path, mu=np.zeros(768), sigma=np.eye(768))
    with pytest.warns(FidkitWarning, match="plain mu/sigma file"):
        with pytest.raises(StatsError, match="768 dimensions, but encoder 'inception' gives 2048 .pool3.*--dims 768") as e:
            fidkit.FID(str(path), device="cpu")
    one_line(e)


@pytest.mark.parametrize("mu, sigma, message", [
    (np.full(D, np.nan), np.eye(D), "NaN or inf"),
    (np.zeros(D), np.eye(D) + 0j, "complex"),
    (np.zeros(D), np.eye(D)[:3], "expected .d,. and .d, d."),
])
def test_fid_validates_a_statistics_object_passed_in(mu, sigma, message):
    ref = Statistics(mu, sigma, 100, protocol="raw", encoder="tiny-test")
    with pytest.raises(StatsError, match=message) as e:
        tiny_metric(reference=ref)
    one_line(e)


# ----------------------------------------------------------------------------- 4. merge

def test_merge_refuses_parts_of_different_network_precision():
    a = stats(seed=0, source="a.npz", extra={"network_precision": "bf16"})
    b = stats(seed=1, source="b.npz")  # absent: fp32
    for parts, msg in (([a, b], "b.npz: network precision fp32 differs from bf16 in a.npz"),
                       ([b, a], "a.npz: network precision bf16 differs from fp32 in b.npz")):
        with pytest.raises(StatsError, match=msg) as e:
            merge(parts)
        one_line(e)
    same = merge([a, stats(seed=1, source="c.npz", extra={"network_precision": "bf16"})])
    assert same.extra["network_precision"] == "bf16"


def test_merge_refuses_parts_of_different_features():
    a = stats(seed=0, source="a.npz", encoder="dinov2-vitl14", extra={"feature": "cls"})
    b = stats(seed=1, source="b.npz", encoder="dinov2-vitl14", extra={"feature": "patch"})
    with pytest.raises(StatsError, match="b.npz: feature patch differs from cls in a.npz") as e:
        merge([a, b])
    one_line(e)
    unrecorded = stats(seed=2, source="c.npz", encoder="dinov2-vitl14")
    assert merge([a, unrecorded]).extra["feature"] == "cls"


def test_merge_unites_the_skipped_files_in_part_order():
    a = stats(seed=0, source="a.npz", extra={"skipped": ["a/1.png", "a/2.png"]})
    b = stats(seed=1, source="b.npz")
    c = stats(seed=2, source="c.npz", extra={"skipped": ["c/9.png", "a/2.png"]})
    assert merge([a, b, c]).extra["skipped"] == ["a/1.png", "a/2.png", "c/9.png"]
    assert merge([b, c, a]).extra["skipped"] == ["c/9.png", "a/2.png", "a/1.png"]
    assert "skipped" not in merge([b, stats(seed=3, source="d.npz")]).extra


@pytest.mark.parametrize("holders", [(0,), (1,)])
def test_merge_warns_when_it_drops_a_named_feature(holders):
    parts = [stats(seed=i, source=f"p{i}.npz") for i in range(2)]
    for i in holders:
        parts[i].named["spatial"] = stats(seed=10 + i, d=3)
    with pytest.warns(FidkitWarning, match=r"leaves out the spatial statistics \(mu_s/sigma_s\): only 1 of 2") as w:
        out = merge(parts)
    assert "spatial" not in out.named and all("\n" not in str(x.message) for x in w)
    for p in parts:
        p.named["spatial"] = stats(seed=20, d=3, source=p.source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert merge(parts).spatial.n == 100


def test_merge_refuses_a_part_given_twice(tmp_path):
    a = stats(seed=0)
    with pytest.raises(StatsError, match="given twice .as parts 1 and 2.*count its images twice") as e:
        merge([a, a])
    one_line(e)
    path = stats(seed=0, protocol="ttur", weights_digest="d" * 64).save(tmp_path / "a.npz")
    other = stats(seed=1, protocol="ttur", weights_digest="d" * 64).save(tmp_path / "b.npz")
    twice = [Statistics.load(path), Statistics.load(other), Statistics.load(tmp_path / "." / "a.npz")]
    with pytest.raises(StatsError, match="given twice .as parts 1 and 3."):
        merge(twice)
    # statistics of different images under one label (in-memory sources) are not the same part
    assert merge([stats(seed=0, source="NHWC array"), stats(seed=1, source="NHWC array")]).n == 100


# ----------------------------------------------------------------------------- 5. Statistics.load

@pytest.mark.parametrize("n, message", [
    (np.array([10, 20]), r"'n' is int64 of shape \(2,\)"),
    (np.array(10.5), "'n' is float64"),
    (np.array("10"), "'n' is <U2"),
])
def test_load_refuses_a_count_that_is_not_one_integer(tmp_path, n, message):
    path = tmp_path / "s.npz"
    np.savez(path, mu=np.zeros(D), sigma=np.eye(D), n=n)
    with pytest.raises(StatsError, match=message) as e:
        Statistics.load(path)
    one_line(e)


@pytest.mark.parametrize("meta, message", [
    ([1, 2], "fidkit_meta is a JSON list, not an object"),
    ("text", "fidkit_meta is a JSON str, not an object"),
    ({"n": "ten"}, "records n='ten'"),
    ({"n": 10, "features": [1]}, "'features' is not an object"),
])
def test_load_refuses_metadata_that_is_not_fidkits_object(tmp_path, meta, message):
    path = tmp_path / "s.npz"
    np.savez(path, mu=np.zeros(D), sigma=np.eye(D), n=np.array(10), fidkit_meta=np.array(json.dumps(meta)))
    with pytest.raises(StatsError, match=message) as e:
        Statistics.load(path)
    one_line(e)


def test_load_still_reads_integral_float_counts(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, mu=np.zeros(D), sigma=np.eye(D), n=np.array(12.0))
    with pytest.warns(FidkitWarning):
        assert Statistics.load(path).n == 12


# ----------------------------------------------------------------------------- 6. FID.update and friends

def test_update_takes_negative_strides_and_big_endian_arrays():
    a = uint8_images()
    flipped = a[:, ::-1]  # BGR -> RGB, a view with a negative stride
    m, ref = tiny_metric(), tiny_metric()
    m.update(flipped)
    ref.update(np.ascontiguousarray(flipped))
    s, r = m.compute_stats(), ref.compute_stats()
    assert m.n == 6 and np.array_equal(s.mu, r.mu) and np.array_equal(s.sigma, r.sigma)

    f = np.random.default_rng(1).random((5, 3, 8, 8))
    big = f.astype(">f4")
    m, ref = tiny_metric(), tiny_metric()
    m.update(big, input_range=(0, 1))
    ref.update(f.astype("=f4"), input_range=(0, 1))
    assert np.array_equal(m.compute_stats().mu, ref.compute_stats().mu)


@pytest.mark.parametrize("images", [uint8_images(), np.zeros((2, 3, 8, 8), np.float32),
                                    torch.zeros(2, 3, 8, 8)])
@pytest.mark.parametrize("rng", [5, "ab", (0,), (0, 1, 2)])
def test_update_refuses_an_input_range_that_is_not_a_pair(images, rng):
    m = tiny_metric()
    with pytest.raises(SourceError, match="input_range must be a pair") as e:
        m.update(images, input_range=rng)
    one_line(e)
    assert m.n == 0


def test_update_refuses_numpy_images_of_other_dtypes_in_one_line():
    m = tiny_metric()
    for dtype in (np.int32, np.complex64, np.bool_):
        with pytest.raises(SourceError, match="uint8 .0..255. or floating point") as e:
            m.update(np.zeros((2, 3, 8, 8), dtype))
        one_line(e)


@pytest.mark.parametrize("bs", [0, -1, 2.5, True, "16"])
def test_batch_size_below_one_or_not_an_integer_is_refused(bs):
    with pytest.raises(SourceError, match="batch size must be an integer of at least 1") as e:
        tiny_metric(batch_size=bs)
    one_line(e)


def test_batch_size_none_is_the_default_and_numpy_integers_are_taken():
    assert tiny_metric().batch_size == tiny_metric(batch_size=None).batch_size == 16
    m = tiny_metric(batch_size=np.int64(2))
    assert m.batch_size == 2 and type(m.batch_size) is int


def test_features_returns_a_copy():
    m = tiny_metric(keep_features=True)
    m.update(uint8_images(3, seed=0))
    m.update(uint8_images(2, seed=1))
    f = m.features()
    kept = f.copy()
    f[:] = 0
    again = m.features()
    assert again.shape == (5, D) and again.dtype == np.float32 and np.array_equal(again, kept)
    assert not np.shares_memory(again, m.features())


# ----------------------------------------------------------------------------- 7. an Encoder on another device

def test_encoder_on_another_device_is_refused_at_construction():
    enc = TinyEncoder().to("meta")
    with pytest.raises(FidkitError, match="encoder's weights are on meta, but the metric runs on cpu") as e:
        fidkit.FID(tiny_reference(), encoder=enc, device="cpu")
    one_line(e)
    assert next(enc.parameters()).device.type == "meta"  # the caller's module is left where it was


def test_encoder_on_the_metrics_device_runs():
    enc = TinyEncoder()
    m = fidkit.FID(tiny_reference(), encoder=enc, device="cpu")
    m.update(uint8_images())
    assert m.n == 6 and np.isfinite(m.compute()) and next(enc.parameters()).device.type == "cpu"


# ----------------------------------------------------------------------------- 8. evaluate_generator with a metric

@pytest.mark.parametrize("given", [dict(reference="ref.npz"), dict(protocol="raw"), dict(device="cpu"),
                                   dict(device=torch.device("cpu")), dict(weights="w.pth"),
                                   dict(precision="bf16"), dict(allow_mismatch=True), dict(encoder="tiny-test"),
                                   dict(encoder_weights="e.pth")])
def test_evaluate_generator_refuses_arguments_a_metric_would_ignore(given):
    m = tiny_metric()
    calls = []
    with pytest.raises(FidkitError, match=f"so {next(iter(given))} would be ignored") as e:
        fidkit.evaluate_generator(lambda k: calls.append(k) or torch.from_numpy(uint8_images(k)), 4, 2, metric=m,
                                  **given)
    one_line(e)
    assert calls == []


def test_evaluate_generator_with_a_metric_alone_runs():
    m = tiny_metric()
    r = fidkit.evaluate_generator(lambda k: torch.from_numpy(uint8_images(k)), 6, 3, metric=m)
    assert r.n == 6 and r.protocol == "raw" and np.isfinite(r.fid)


def test_fid_refuses_statistics_of_another_encoder_before_loading_its_weights(monkeypatch):
    # a ViT-L's weights may have to be downloaded first: the reference file is read before them
    import fidkit.api

    def no_weights(*args, **kw):
        raise AssertionError("the encoder was built before the reference was checked")

    monkeypatch.setattr(fidkit.api, "get_encoder", no_weights)
    ref = os.path.join(os.path.dirname(__file__), "..", "reference_stats", "fashion-mnist-test.npz")
    for reference in (ref, fidkit.Statistics.load(ref)):
        with pytest.raises(StatsError, match="was made with encoder 'inception', not 'dinov2-vitl14'"):
            fidkit.FID(reference, encoder="dinov2-vitl14", device="cpu")
