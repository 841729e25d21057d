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
    st.save(tmp_path / "b2.npz")
    r = run("stats", "merge", tmp_path / "b.npz", tmp_path / "b2.npz", "-o", tmp_path / "m.npz")
    assert "keep per-image features, which are not merged" in r.stderr
    with np.load(tmp_path / "m.npz") as z:
        assert "features" not in z.files
    r = run("stats", real_a, "--features", "--shard", "0/2", "-o", tmp_path / "s.npz", *RUN, check=False)
    assert r.returncode == 2 and "--features keeps the features of one whole pass" in r.stderr
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
