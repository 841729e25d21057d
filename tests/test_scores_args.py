"""Arguments of fidkit.scores' functions: a bad count, seed or kernel parameter is one StatsError
line, never a raw TypeError/ValueError, a bool taken as a number, or a NaN score returned."""
import numpy as np
import pytest
import torch

from fidkit import scores as S
from fidkit.errors import StatsError

_rs = np.random.RandomState(0)
FA = _rs.randn(20, 8).astype(np.float32)
FB = _rs.randn(20, 8).astype(np.float32)
LG = _rs.randn(20, 16).astype(np.float32)
NAN, INF = float("nan"), float("inf")


def refused(fn, *args, match: str | None = None, **kw) -> str:
    """``fn(*args, **kw)`` raises a StatsError whose message is one line (holding ``match``)."""
    with pytest.raises(StatsError, match=match) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.strip(), msg
    return msg


# ----------------------------------------------------------------------------- non-finite scores

def test_inception_score_refuses_underflow_instead_of_nan():
    msg = refused(S.inception_score, LG * 1000, splits=2, match="not finite")
    assert "underflowed" in msg and "logits" in msg


@pytest.mark.parametrize("kw", [dict(degree=2.5), dict(degree=0), dict(degree=True), dict(degree=np.float64(3)),
                                dict(gamma=NAN), dict(gamma=INF), dict(gamma=0.0), dict(gamma=-0.5),
                                dict(gamma="0.1"), dict(gamma=True), dict(coef0=INF), dict(coef0=NAN),
                                dict(coef0="1"), dict(coef0=True)], ids=str)
def test_kid_refuses_bad_kernel_parameters(kw):
    name = next(iter(kw))
    assert name in refused(S.kid, FA, FB, subsets=3, **kw)


@pytest.mark.parametrize("case", ["gamma", "features"])
def test_kid_refuses_a_non_finite_score(case):
    args = (FA, FB, dict(gamma=1e30)) if case == "gamma" else (FA * 1e20, FB * 1e20, {})
    msg = refused(S.kid, args[0], args[1], subsets=3, **args[2], match="KID is not finite")
    assert "overflowed float32" in msg and "too large" in msg


# ----------------------------------------------------------------------------- counts and seeds

@pytest.mark.parametrize("kw", [dict(subsets=2.5), dict(subsets=True), dict(subsets="5"), dict(subsets=0),
                                dict(subset_size=2.5), dict(subset_size=None), dict(subset_size=True),
                                dict(subset_size=-3), dict(subset_size=1), dict(seed=-1), dict(seed=2 ** 40),
                                dict(seed=1.5), dict(seed=True), dict(seed=None)], ids=str)
def test_kid_refuses_bad_counts_and_seeds(kw):
    name = next(iter(kw))
    msg = refused(S.kid, FA, FB, **{"subsets": 3, **kw})
    assert msg.startswith(name) and "integer" in msg


@pytest.mark.parametrize("kw", [dict(splits=2.5), dict(splits=None), dict(splits="2"), dict(splits=True),
                                dict(seed=-1), dict(seed=1.5), dict(seed="a"), dict(seed=2 ** 32)], ids=str)
def test_inception_score_refuses_bad_splits_and_seeds(kw):
    assert refused(S.inception_score, LG, **kw).startswith(next(iter(kw)))


@pytest.mark.parametrize("kw", [dict(k=True), dict(k=2.5), dict(k=None), dict(block="x"),
                                dict(block=0), dict(block=-5), dict(block=2.5), dict(block=True),
                                dict(chunk=0), dict(chunk=1.5)], ids=str)
def test_precision_recall_refuses_bad_k_block_and_chunk(kw):
    assert refused(S.precision_recall, FA, FB, **kw).startswith(next(iter(kw)))


# ----------------------------------------------------------------------------- the feature-free checks

def test_check_kid_args():
    assert S.check_kid_args(100, 1000, 3, None, 1, 2020) is None
    assert S.check_kid_args(np.int64(5), np.int32(50), np.int64(2), np.float32(0.5), 0, np.uint32(7)) is None
    assert S.check_kid_args(1, 2, 1, 1e-3, -1.0, 2 ** 32 - 1) is None
    for bad, name in [((0, 1000, 3, None, 1, 2020), "subsets"), ((100, 1.0, 3, None, 1, 2020), "subset_size"),
                      ((100, 1000, 3.0, None, 1, 2020), "degree"), ((100, 1000, 3, NAN, 1, 2020), "gamma"),
                      ((100, 1000, 3, None, INF, 2020), "coef0"), ((100, 1000, 3, None, 1, None), "seed")]:
        assert refused(S.check_kid_args, *bad).startswith(name)


def test_check_pr_args():
    assert S.check_pr_args(3, 1000) is None and S.check_pr_args(np.int64(1), np.int32(1)) is None
    assert refused(S.check_pr_args, np.True_, 1000).startswith("k")
    assert refused(S.check_pr_args, 3, 0).startswith("block")


def test_check_is_args():
    assert S.check_is_args(10, 2020) is None and S.check_is_args(1, None) is None  # None: no shuffle
    assert S.check_is_args(np.int64(2), np.int64(0)) is None
    assert refused(S.check_is_args, 0, 2020).startswith("splits")
    assert refused(S.check_is_args, 10, -1).startswith("seed")


def test_valid_arguments_still_accepted():
    """A guard, not a fix (it passes on the code before the checks too): numpy integers and
    reals stay valid, and seed=None stays inception_score's unshuffled score."""
    got = S.kid(FA, FB, subsets=np.int64(4), subset_size=np.int64(10), degree=np.int64(3), gamma=np.float64(0.1),
                coef0=np.float32(1), seed=np.uint32(5))
    assert np.isfinite(got.mean) and np.isfinite(got.std)
    assert S.inception_score(LG, splits=np.int64(2), seed=None) == S.inception_score(LG.copy(), splits=2, seed=None)
    assert S.inception_score(LG, splits=2, seed=np.int64(3)) == S.inception_score(LG, splits=2, seed=3)
    out = S.precision_recall(FA, FB, k=np.int32(2), block=np.int64(64), chunk=np.int64(7))
    assert out == S.precision_recall(FA, FB, k=2, block=64, chunk=7)


# ----------------------------------------------------------------------------- precision/recall's results

def test_precision_recall_returns_python_floats():
    out = S.precision_recall(FA, FB, k=np.int64(3))
    assert all(type(v) is float for v in out.values()), {k: type(v) for k, v in out.items()}
    assert out == S.precision_recall(FA, FB, k=3)


@pytest.mark.parametrize("scale", [1e30, 1e20])
def test_precision_recall_refuses_overflowing_distances(scale):
    msg = refused(S.precision_recall, FA * scale, FB * scale, match="not finite")
    assert "float32 distances" in msg


def test_precision_recall_refuses_nan_distances_of_huge_equal_points():
    # 30 rows (cdist's matrix-product path): ‖x‖² overflows, inf − inf is NaN where the true distance is 0
    same = np.full((30, 8), 1e20, np.float32)
    refused(S.precision_recall, same, same.copy(), match="not finite")


def test_knn_radii_checks_its_arguments():
    x = torch.from_numpy(FA)
    assert refused(S.knn_radii, x, k=True).startswith("k")
    assert refused(S.knn_radii, x, chunk=0).startswith("chunk")
    refused(S.knn_radii, x * 1e30, match="not finite")


# ----------------------------------------------------------------------------- the other scores

@pytest.mark.parametrize("case", [
    ("adm_inception_score", dict(chunk=2.5)), ("adm_inception_score", dict(chunk=True)),
    ("stylegan_inception_score", dict(splits=True)), ("stylegan_inception_score", dict(splits=2.0)),
    ("dgm_eval_inception_score", dict(seed=None)), ("dgm_eval_inception_score", dict(seed=-1)),
    ("dgm_eval_inception_score", dict(splits=2.5)),
], ids=str)
def test_other_inception_scores_refuse_bad_counts_and_seeds(case):
    name, kw = case
    assert refused(getattr(S, name), LG, **kw).startswith(next(iter(kw)))


@pytest.mark.parametrize("case", [
    ("adm_precision_recall", dict(block=0)), ("adm_precision_recall", dict(block=2.5)),
    ("adm_precision_recall", dict(k=True)), ("adm_precision_recall", dict(chunk="x")),
    ("authpct", dict(block="x")), ("authpct", dict(block=True)),
    ("dgm_eval_prdc", dict(reduced_n=2.5)), ("dgm_eval_prdc", dict(reduced_n=3)),
], ids=str)
def test_other_feature_scores_refuse_bad_counts(case):
    name, kw = case
    fn = getattr(S, name)
    args = (FA, FB, np.random.RandomState(0)) if name == "dgm_eval_prdc" else (FA, FB)
    assert refused(fn, *args, **kw).startswith(next(iter(kw)))


def test_adm_radii_checks_its_arguments():
    x = torch.from_numpy(FA)
    assert refused(S.adm_radii, x, k=2.5).startswith("k")
    refused(S.adm_radii, x, distances="float8", match="distances must be one of")


@pytest.mark.parametrize("kw", [dict(resamples=2.5), dict(seed=-1), dict(seed=1.5), dict(seed=None),
                                dict(level="x"), dict(level=None)], ids=str)
def test_fid_bootstrap_refuses_bad_resamples_seed_and_level(kw):
    args = {"resamples": 3, **kw}
    msg = refused(S.fid_bootstrap, FA[:, :4], FB[:, :4], **args)
    assert next(iter(kw)) in msg
