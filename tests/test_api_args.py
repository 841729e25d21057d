"""The public functions' arguments: a value of the wrong kind is one line before anything is
read (never a raw TypeError from inside a pass, a bool taken as a number, "no" taken as True,
or a keyword silently dropped). Most cases need no pass; the few that do use a tiny encoder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fidkit
import fidkit.api
from fidkit.errors import FidkitError, SourceError, StatsError
from fidkit.stats import Statistics
from test_stats_metric_checks import TinyEncoder, one_line, stats, tiny_metric, tiny_reference, uint8_images


@pytest.fixture
def no_pass(monkeypatch):
    """Any pass through a network fails the test: the refusal must come first."""
    def refuse(*a, **k):
        raise AssertionError("a pass ran before the arguments were checked")
    monkeypatch.setattr(fidkit.api, "extract", refuse)


@pytest.fixture
def two_files(tmp_path):
    a, b = stats(seed=1, protocol="ttur", weights_digest="f" * 64), stats(seed=2, protocol="ttur",
                                                                          weights_digest="f" * 64)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    return str(tmp_path / "a.npz"), str(tmp_path / "b.npz")


@pytest.mark.parametrize("value", ["no", "False", 0, 1, None])
def test_allow_mismatch_takes_true_or_false_only(value, two_files, no_pass):
    a, b = two_files
    for call in (lambda: fidkit.compare(a, b, allow_mismatch=value),
                 lambda: fidkit.frechet_distance(Statistics.load(a), Statistics.load(b), allow_mismatch=value),
                 lambda: fidkit.compute_stats(a, allow_mismatch=value),
                 lambda: fidkit.adm_evaluate(a, b, allow_mismatch=value),
                 lambda: tiny_metric(allow_mismatch=value)):
        with pytest.raises(FidkitError, match=f"allow_mismatch must be True or False, got {value!r}") as e:
            call()
        one_line(e)


@pytest.mark.parametrize("kw,says", [
    (dict(frob=1), "compare() takes no keyword 'frob'"),
    (dict(keep_features=True), "compare() takes no keyword 'keep_features'"),
    (dict(dgm_eval_note=True), "compare() takes no keyword 'dgm_eval_note'"),
    (dict(spatial=True), "compare() takes no keyword 'spatial'"),
    (dict(label="x"), "compare() names its two sources itself"),
    (dict(precision="bogus"), "precision must be one of fp32, tf32, bf16, tf32x3, got 'bogus'"),
    (dict(batch_size=-1), "batch_size (images per network batch; None: the default) must be an integer of at least 1"),
    (dict(batch_size=True), "must be an integer of at least 1, got True"),
    (dict(workers=-3), "workers (decoding processes; None: the default) must be an integer of at least 0"),
    (dict(workers=2.5), "must be an integer of at least 0, got 2.5"),
    (dict(progress="no"), "progress (None: shown on a terminal) must be True or False"),
    (dict(skip_bad="x"), "skip_bad must be True or False"),
    (dict(device="gpu"), "device 'gpu' is not a device name torch reads"),
    (dict(bootstrap=-1), "bootstrap (resamples; 0: none) must be an integer of at least 0, got -1"),
    (dict(bootstrap=2.5), "bootstrap (resamples; 0: none) must be an integer of at least 0, got 2.5"),
    (dict(bootstrap=True), "bootstrap (resamples; 0: none) must be an integer of at least 0, got True"),
    (dict(seed=-1), "must be an integer from 0 to 2**32 - 1 (a numpy seed), got -1"),
    (dict(seed=1.5), "must be an integer from 0 to 2**32 - 1 (a numpy seed), got 1.5"),
    (dict(metrics=5), "metrics must be a comma-separated string or an iterable of metric names, got 5"),
    (dict(metrics=[1]), "metrics must be a comma-separated string or an iterable of metric names, got [1]"),
    (dict(bootstrap=1), "bootstrap must be 0 (none) or at least 2 resamples, got 1"),
    (dict(batch_size=np.ones((2, 2), int)), "got array([[1, 1], [1, 1]])"),
])
def test_compare_refuses_bad_arguments_even_for_two_statistics_files(kw, says, two_files, no_pass):
    # two statistics files: no pass would read the pass arguments, which were dropped unchecked
    with pytest.raises(FidkitError) as e:
        fidkit.compare(*two_files, **kw)
    assert says in one_line(e)


def test_metrics_may_be_any_iterable_of_names():
    assert fidkit.api.parse_metrics(m for m in ["kid", "pr"]) == ("fid", "kid", "pr")
    assert fidkit.api.parse_metrics(np.array(["kid"])) == ("fid", "kid")


def test_files_without_a_digest_build_no_network(tmp_path, monkeypatch):
    # nothing to check the weights against: the encoder (perhaps a download) is not built
    def refuse(*a, **k):
        raise AssertionError("the encoder was built with no digest to check")
    for name, seed in (("a", 1), ("b", 2)):
        stats(seed=seed, protocol="ttur").save(tmp_path / f"{name}.npz")
    monkeypatch.setattr(fidkit.api, "encoder_for", refuse)
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    assert fidkit.compare(a, b).fid > 0
    assert fidkit.compare(a, b, weights="/no/such/weights.pth").fid > 0  # given, but nothing recorded to check


def test_two_statistics_files_are_checked_against_weights_given_explicitly(two_files):
    in_use = fidkit.api.load_weights(None)
    with pytest.raises(StatsError, match="a.npz was made with weights ffffffffffff, but the weights in use are"):
        fidkit.compare(*two_files, weights=in_use)
    assert fidkit.compare(*two_files).fid > 0  # no weights given: the pair's own provenance decides
    assert fidkit.compare(*two_files, weights=in_use, allow_mismatch=True).fid > 0


def test_other_public_functions_refuse_keywords_they_would_drop(two_files, no_pass):
    a, b = two_files
    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    cases = [(lambda: fidkit.compute_stats(a, frob=1), "compute_stats() takes no keyword 'frob'"),
             (lambda: fidkit.compute_stats(a, spatial="no"), "spatial must be True or False"),
             (lambda: fidkit.features(a, spatial=True), "features() takes no keyword 'spatial'"),
             (lambda: fidkit.adm_evaluate(a, b, logits=True), "adm_evaluate() takes no keyword 'logits'"),
             (lambda: fidkit.adm_evaluate(a, b, distances="float8"),
              "distances must be one of float16, float32, float64, got 'float8'"),
             (lambda: fidkit.adm_evaluate(a, b, means="float16"), "means must be one of float32, float64, got "
                                                                  "'float16'"),
             (lambda: fidkit.compare(a, b, means="float16"), "means must be one of float32, float64, got 'float16'"),
             (lambda: fidkit.fid(a, b, frob=1), "compare() takes no keyword 'frob'"),
             (lambda: fidkit.kid(x, x, frob=1), "kid() takes no keyword 'frob'"),
             (lambda: fidkit.kid(x, x, device="cpu"), "kid() was given features (or logits) directly, which no "
                                                      "pass reads, and device for a pass"),
             (lambda: fidkit.kid(x, x, "clean"), "kid() was given features (or logits) directly, which no pass "
                                                 "reads, and protocol for a pass"),
             (lambda: fidkit.precision_recall(x, x, batch_size=4), "precision_recall() was given features"),
             (lambda: fidkit.inception_score(x, "clean"), "inception_score() was given features")]
    for call, says in cases:
        with pytest.raises(FidkitError) as e:
            call()
        assert says in one_line(e)


def test_functional_scores_check_their_parameters_before_any_pass(tmp_path, no_pass):
    images = uint8_images(6).transpose(0, 2, 3, 1).copy()  # NHWC: a source that would need a pass
    for call in (lambda: fidkit.kid(images, images, subsets=0),
                 lambda: fidkit.kid(images, images, seed=-1),
                 lambda: fidkit.precision_recall(images, images, k=0),
                 lambda: fidkit.precision_recall(images, images, k=2.5),
                 lambda: fidkit.inception_score(images, splits=True)):
        with pytest.raises(StatsError) as e:
            call()
        one_line(e)


def test_frechet_distance_takes_statistics_or_pairs():
    mu, sig = np.zeros(4), np.eye(4)
    for bad, says in (((mu,), "got a tuple of length 1"), ({"mu": mu}, "got dict"), ((mu, sig, 5), "got a tuple of length 3")):
        with pytest.raises(StatsError, match=f"statistics 1 must be a Statistics or a \\(mu, sigma\\) pair, {says}"):
            fidkit.frechet_distance(bad, (mu, sig))
    assert fidkit.frechet_distance(Statistics([0.0] * 4, sig.tolist()), Statistics(mu, sig)).fid == 0.0
    with pytest.raises(StatsError, match="statistics 2: mu or sigma holds NaN"):
        fidkit.frechet_distance(Statistics(mu, sig), Statistics(mu + np.nan, sig))


def test_messages_name_statistics_objects_without_their_arrays(no_pass):
    st = stats(d=2048, seed=1)
    with pytest.raises(StatsError, match=r"does not keep \(the Statistics given\)") as e:
        fidkit.kid(st, st)
    one_line(e)


def test_evaluate_generator_checks_its_counts_and_functions():
    m = tiny_metric()
    draw = lambda k: torch.from_numpy(uint8_images(k))  # noqa: E731
    for kw, says in ((dict(n=2.5), "n (images to draw) must be an integer of at least 2, got 2.5"),
                     (dict(n=True), "must be an integer of at least 2, got True"),
                     (dict(n=None), "must be an integer of at least 2, got None"),
                     (dict(batch_size=True), "batch_size (images per sample_fn call) must be an integer of at least "
                                             "1, got True"),
                     (dict(batch_size=1.5), "must be an integer of at least 1, got 1.5"),
                     (dict(sample_fn=5), "sample_fn must be a function of a batch size"),
                     (dict(sample_fn=lambda k: [0] * k), "sample_fn(2) returned a list"),
                     (dict(metric="x"), "metric must be a fidkit.FID, got str")):
        args = {**dict(sample_fn=draw, n=4, batch_size=2, metric=m), **kw}
        with pytest.raises(FidkitError) as e:
            fidkit.evaluate_generator(args.pop("sample_fn"), args.pop("n"), args.pop("batch_size"), **args)
        assert says in one_line(e)


def test_fid_metric_refuses_at_construction_what_would_fail_or_be_ignored_later():
    for kw, says in ((dict(precision="bogus"), "precision must be one of fp32, tf32, bf16, tf32x3, got 'bogus'"),
                     (dict(precision="tf32"), "precision tf32 needs a CUDA device; on cpu"),
                     (dict(keep_features="no"), "keep_features must be True or False"),
                     (dict(weights="w.npz"), "an Encoder instance brings its own weights"),
                     (dict(encoder_weights="e.pt"), "an Encoder instance brings its own weights")):
        with pytest.raises(FidkitError, match=says) as e:
            fidkit.FID(tiny_reference(), encoder=TinyEncoder(), device="cpu", **kw)
        one_line(e)


def test_images_without_pixels_are_one_line(tmp_path):
    for images in (np.zeros((3, 0, 32, 3), np.uint8), np.zeros((3, 32, 0, 3), np.uint8)):
        with pytest.raises(SourceError, match="have no pixels") as e:
            fidkit.compare(images, images, device="cpu", workers=0)
        one_line(e)
    np.save(tmp_path / "empty.npy", np.zeros((3, 0, 5, 3), np.uint8))
    with pytest.raises(SourceError, match="images without pixels") as e:
        fidkit.compare(str(tmp_path / "empty.npy"), str(tmp_path / "empty.npy"), device="cpu", workers=0)
    one_line(e)
    m = tiny_metric()
    with pytest.raises(SourceError, match="have no pixels"):
        m.update(torch.zeros(2, 3, 0, 0, dtype=torch.uint8))


def test_an_array_where_a_count_belongs_is_named_on_one_line(two_files, no_pass):
    """A value's repr that spans lines (a numpy array) is cut to one line in every count's refusal."""
    from fidkit import scores

    a, b = two_files
    arr = np.arange(60)
    x = np.random.default_rng(0).normal(size=(20, 8))
    cases = [(lambda: fidkit.compare(a, b, pr_k=arr, metrics="pr"), "pr_k must be a positive integer"),
             (lambda: fidkit.compare(a, b, subset=arr), "subset must be an image count of at least 2"),
             (lambda: fidkit.compare(a, b, subset_seed=arr), "subset_seed must be an integer"),
             (lambda: fidkit.compare(a, b, nsample=arr), "nsample must be an image count of at least 2"),
             (lambda: fidkit.compare(a, b, nsample_seed=arr), "nsample_seed must be an integer from 0"),
             (lambda: fidkit.api.pass_device("cpu", arr), "batch size must be an integer of at least 1"),
             (lambda: tiny_metric(batch_size=arr), "batch size must be an integer of at least 1"),
             (lambda: scores.fid_bootstrap(x, x, resamples=arr), "a bootstrap needs at least 2 resamples"),
             (lambda: scores.fid_bootstrap(x, x, level=arr), "confidence level must be a number in (0, 1)"),
             (lambda: scores.dgm_eval_prdc(x, x, np.random.RandomState(0), k=arr), "k must be a positive integer"),
             (lambda: fidkit.frechet_distance(Statistics(np.zeros(3), np.eye(3), n=arr),
                                              Statistics(np.zeros(3), np.eye(3), n=5)),
              "statistics 1: image count n=array([ 0, 1, 2,")]
    for call, says in cases:
        with pytest.raises(FidkitError) as e:
            call()
        msg = one_line(e)
        assert says in msg and "array([ 0, 1, 2," in msg and "..." in msg, msg  # named, cut to 80 characters


@pytest.mark.parametrize("n", [0, -3, 2.0, True, "10"])
def test_statistics_objects_with_a_bad_image_count_are_refused(n):
    with pytest.raises(StatsError, match=r"^statistics 1: image count n=.*; it must be a positive integer, or None"):
        fidkit.frechet_distance(Statistics(np.zeros(3), np.eye(3), n=n), Statistics(np.zeros(3), np.eye(3), n=5))
