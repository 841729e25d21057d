"""Inception Score, KID, precision/recall, density/coverage: against torch-fidelity and the papers."""
import json
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import fidkit
from fidkit import scores as S
from fidkit.api import extract
from fidkit.errors import FidkitError, StatsError, WeightsError
from fidkit.weights import Weights

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from scores_reference import CASES, synthetic_inputs  # noqa: E402

REFERENCE = json.loads((ROOT / "tests" / "data" / "scores_reference.json").read_text())
PEERS_PYTHON = pathlib.Path("/tmp/fidkit-peers/bin/python")


def fidkit_values(name: str) -> dict:
    p, x = CASES[name], synthetic_inputs(name)
    if name.startswith("isc"):
        m = S.inception_score(x["logits"], p["splits"], p["seed"])
        return {"isc_mean": m.mean, "isc_std": m.std}
    if name.startswith("kid"):
        m = S.kid(x["a"], x["b"], p["subsets"], p["subset_size"], seed=p["seed"])
        return {"kid_mean": m.mean, "kid_std": m.std}
    return S.precision_recall(x["real"], x["fake"], p["k"], block=128, chunk=200)


#: KID is made of float32 kernel sums (torch-fidelity's arithmetic, which fidkit keeps), whose
#: last bits depend on the CPU's float32 matrix product (OpenBLAS picks its kernels and blocking
#: by CPU): the recorded values, from another CPU, differ from an AMD EPYC's by 4.8e-8 in
#: kid_mean, and float32 from float64 by up to 7.5e-8 on these inputs. The bound is a few float32
#: ulps of the kernel values (about 4 here: ulp 4.8e-7); on one machine fidkit equals
#: torch-fidelity's arithmetic bit for bit (test_kid_is_torch_fidelitys_arithmetic_bit_for_bit).
KID_FLOAT32_ABS = 4e-7


def check_against(name: str, ref: dict) -> None:
    ours = fidkit_values(name)
    for key, value in ref.items():
        if key in ("precision", "recall"):
            # torch-fidelity reports the float32 mean of the same 0/1 indicators: identical counts
            assert np.float32(ours[key]) == np.float32(value), (key, ours[key], value)
        elif key.startswith("kid"):
            assert ours[key] == pytest.approx(value, rel=0, abs=KID_FLOAT32_ABS), (key, ours[key], value)
        else:
            assert ours[key] == pytest.approx(value, rel=1e-6, abs=0), (key, ours[key], value)


def _torch_fidelity_kid(f1, f2, subsets, subset_size, seed, degree=3, gamma=None, coef0=1):
    """torch-fidelity 0.4.0's kid_features_to_metric on float32 numpy features, transcribed
    (metric_kid.py: polynomial_kernel, mmd2 'unbiased', the RandomState draws)."""
    def kernel(x, y):
        g = 1.0 / x.shape[1] if gamma is None else gamma
        return (np.matmul(x, y.T) * g + coef0) ** degree

    def mmd2(k_xx, k_xy, k_yy):
        m = k_xx.shape[0]
        diag_x, diag_y = np.diagonal(k_xx), np.diagonal(k_yy)
        kt_xx_sum = (k_xx.sum(axis=1) - diag_x).sum()
        kt_yy_sum = (k_yy.sum(axis=1) - diag_y).sum()
        k_xy_sum = k_xy.sum(axis=0).sum()
        out = (kt_xx_sum + kt_yy_sum) / (m * (m - 1))
        out -= 2 * k_xy_sum / (m * m)
        return out

    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), subset_size, replace=False)]
        y = f2[rng.choice(len(f2), subset_size, replace=False)]
        mmds[i] = mmd2(kernel(x, x), kernel(x, y), kernel(y, y))
    return float(np.mean(mmds)), float(np.std(mmds))


@pytest.mark.parametrize("name", [n for n in sorted(CASES) if n.startswith("kid")])
def test_kid_is_torch_fidelitys_arithmetic_bit_for_bit(name):
    """On one machine (one float32 matrix product) fidkit's KID is torch-fidelity's to the bit."""
    p, x = CASES[name], synthetic_inputs(name)
    a, b = np.asarray(x["a"], np.float32), np.asarray(x["b"], np.float32)
    ours = S.kid(a, b, p["subsets"], p["subset_size"], seed=p["seed"])
    assert (ours.mean, ours.std) == _torch_fidelity_kid(a, b, p["subsets"], p["subset_size"], p["seed"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_fidelity_reference_values(name):
    """Values written by benchmarks/scores_reference.py with torch-fidelity 0.4.0 (tests/data/README.md)."""
    check_against(name, REFERENCE["cases"][name]["result"])


@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="the peers' environment (torch-fidelity) is not installed")
def test_matches_torch_fidelity_live():
    r = subprocess.run([str(PEERS_PYTHON), str(ROOT / "benchmarks" / "scores_reference.py")], capture_output=True,
                       text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    live = json.loads(r.stdout)
    for name in CASES:
        check_against(name, live["cases"][name]["result"])


# ------------------------------------------------------------------ density and coverage


def brute_force_prdc(real, fake, k):
    """Float64, full matrices, straight from the definitions of Kynkäänniemi 2019 and Naeem 2020."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)

    def dist(x, y):
        return np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))

    d_rr, d_ff, d_rf = dist(real, real), dist(fake, fake), dist(real, fake)
    r_real = np.sort(d_rr, axis=1)[:, k]  # index 0 is the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside_real_ball = d_rf < r_real[:, None]  # (real i, fake j): fake j inside the ball of real i
    return {
        "precision": (d_rf <= r_real[:, None]).any(axis=0).mean(),
        "recall": (d_rf <= r_fake[None, :]).any(axis=1).mean(),
        "density": inside_real_ball.sum() / (k * len(fake)),
        "coverage": (d_rf.min(axis=1) < r_real).mean(),
    }


@pytest.mark.parametrize("k, n_real, n_fake, shift", [(3, 200, 150, 0.3), (5, 120, 260, 0.0), (1, 90, 90, 1.0)])
def test_density_coverage_precision_recall_against_brute_force(k, n_real, n_fake, shift):
    rng = np.random.RandomState(k)
    real = rng.standard_normal((n_real, 24)).astype(np.float32)
    fake = (rng.standard_normal((n_fake, 24)) * 1.2 + shift).astype(np.float32)
    want = brute_force_prdc(real, fake, k)
    got = S.precision_recall(real, fake, k, block=37, chunk=50)  # blocks that do not divide N
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got == S.precision_recall(real, fake, k, block=10_000)  # blocking changes nothing
    assert 0 < got["precision"] < 1 or shift == 0


def test_identical_sets_score_perfectly():
    x = np.random.RandomState(0).standard_normal((100, 16)).astype(np.float32)
    r = S.precision_recall(x, x.copy())
    assert r["precision"] == r["recall"] == r["coverage"] == 1.0
    assert r["density"] == pytest.approx(1.0, abs=0.2)


def test_knn_radius_counts_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert S.knn_radii(x, k=1, block=3, chunk=2).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert S.knn_radii(x, k=3).tolist() == [7.0, 6.0, 4.0, 7.0]


# ------------------------------------------------------------------ KID and IS edge cases


def test_kid_subset_larger_than_the_sets_uses_the_sets():
    rng = np.random.RandomState(1)
    a = rng.gamma(0.5, 0.6, (50, 2048)).astype(np.float32)
    b = rng.gamma(0.6, 0.6, (40, 2048)).astype(np.float32)
    big = fidkit.kid(a, b, subsets=5, subset_size=1000)
    assert big == S.kid(a, b, subsets=5, subset_size=40)
    assert big.mean > 0 and np.isfinite(big.std)
    with pytest.raises(StatsError):
        S.kid(a[:1], b)


def test_kid_of_a_set_with_itself_is_about_zero():
    a = np.random.RandomState(2).gamma(0.5, 0.6, (300, 2048)).astype(np.float32)
    b = np.random.RandomState(3).gamma(0.5, 0.6, (300, 2048)).astype(np.float32)
    assert abs(S.kid(a, b, subsets=10, subset_size=100).mean) < 1e-3


def test_inception_score_bounds():
    uniform = np.zeros((100, 1008), np.float32)
    assert S.inception_score(uniform) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-12))
    confident = np.full((100, 10), -50.0)
    confident[np.arange(100), np.arange(100) % 10] = 50.0  # one-hot over 10 classes, balanced
    assert S.inception_score(confident, splits=1).mean == pytest.approx(10.0)
    with pytest.raises(StatsError):
        S.inception_score(uniform[:5])


def numpy_inception_score(logits, splits, seed):
    """Independent float64 computation (scipy's log-sum-exp), from the definition."""
    from scipy.special import logsumexp
    x = logits.astype(np.float64)[np.random.RandomState(seed).permutation(len(logits))]
    log_p = x - logsumexp(x, axis=1, keepdims=True)
    p = np.exp(log_p)
    scores = []
    for part_p, part_log in zip(np.array_split(p, splits), np.array_split(log_p, splits)):
        log_q = np.log(part_p.mean(axis=0))
        scores.append(np.exp(np.mean(np.sum(part_p * (part_log - log_q), axis=1))))
    return np.mean(scores), np.std(scores)


@pytest.fixture(scope="module")
def seeded_classifier_weights(real_weights):
    g = torch.Generator().manual_seed(1234)
    tensors = dict(real_weights.tensors)
    tensors["fc.weight"] = (torch.randn(1008, 2048, generator=g) * 0.1).numpy()
    tensors["fc.bias"] = (torch.randn(1008, generator=g) * 5).numpy()  # must not enter the logits
    return Weights(tensors, real_weights.digest, True, "seeded random classifier (test)")


def test_inception_score_end_to_end_with_a_seeded_classifier(real_a, seeded_classifier_weights):
    w = seeded_classifier_weights
    ex = extract(real_a, keep_features=True, logits=True, weights=w, device="cpu", workers=0)
    assert ex.logits.shape == (10, 1008) and ex.logits.dtype == np.float32
    # logits are pool3 features times the classifier weights, without the bias
    np.testing.assert_allclose(ex.logits, ex.features.astype(np.float64) @ w.tensors["fc.weight"].T.astype(np.float64),
                               rtol=1e-4, atol=1e-4)
    got = fidkit.inception_score(real_a, splits=2, weights=w, device="cpu", workers=0)
    want = numpy_inception_score(ex.logits, 2, 2020)
    assert got.mean == pytest.approx(want[0], rel=1e-9) and got.std == pytest.approx(want[1], rel=1e-6, abs=1e-12)
    assert got.mean > 1.0
    assert fidkit.inception_score(ex.logits, splits=2) == got  # logits given directly: the same score


def test_stylegan_inception_score_end_to_end(real_a, seeded_classifier_weights):
    """compare(metrics="is-stylegan") scores B's logits as StyleGAN's is50k does, from the same pass."""
    w = seeded_classifier_weights
    b = np.random.default_rng(11).integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
    r = fidkit.compare(real_a, b, "nvidia", metrics="is-stylegan,is-dgm-eval", weights=w, device="cpu", workers=0)
    logits = extract(b, "nvidia", logits=True, weights=w, device="cpu", workers=0).logits
    want = S.stylegan_inception_score(logits)
    assert (r.scores["stylegan_is_mean"], r.scores["stylegan_is_std"]) == tuple(want) and want.mean > 1.0
    # dgm-eval's from the same pass
    assert (r.scores["dgm_eval_is_mean"], r.scores["dgm_eval_is_std"]) == tuple(S.dgm_eval_inception_score(logits))
    with pytest.raises(StatsError, match="StyleGAN's Inception Score needs at least 10 images"):
        fidkit.compare(real_a, b[:9], "nvidia", metrics="is-stylegan", weights=w, device="cpu", workers=0)


def test_inception_score_needs_the_classifier(real_a, real_weights):
    if real_weights.has_classifier:
        pytest.skip("the installed weights carry a classifier")
    with pytest.raises(WeightsError) as e:
        fidkit.inception_score(real_a, weights=real_weights)
    msg = str(e.value)
    assert "\n" not in msg and "classifier" in msg and "--weights" in msg
    with pytest.raises(WeightsError):  # refused before any image is read
        fidkit.compare(real_a, "/nonexistent/folder", metrics="is", weights=real_weights)


@pytest.mark.parametrize("metrics", ["kid", "pr", "fid,is"])
def test_statistics_files_have_no_features(metrics, real_a, tmp_path):
    from fidkit.stats import Statistics
    for name in ("ref.npz", "gen.npz"):
        Statistics(np.zeros(4), np.eye(4), 10, "ttur", None).save(tmp_path / name)
    with pytest.raises(StatsError) as e:  # refused before anything is read
        fidkit.compare(tmp_path / "ref.npz", tmp_path / "gen.npz", metrics=metrics)
    assert "\n" not in str(e.value) and "statistics file" in str(e.value)
    with pytest.raises(FidkitError):
        fidkit.kid(tmp_path / "ref.npz", real_a)


def test_unknown_metric_is_refused():
    with pytest.raises(FidkitError, match="unknown metric"):
        fidkit.compare("a", "b", metrics="fid,foo")


# ------------------------------------------------------------------ one pass, CLI


def test_compare_runs_one_pass_per_source(real_a, real_b, monkeypatch):
    import fidkit.api as api
    calls = []
    real_extract = api.extract

    def counting(source, *a, **kw):  # a folder arrives listed (fidkit.sources.Images, named by its path)
        calls.append(getattr(source, "name", str(source)))
        return real_extract(source, *a, **kw)

    monkeypatch.setattr(api, "extract", counting)
    r = fidkit.compare(real_a, real_b, metrics=("fid", "kid", "pr"), device="cpu", workers=0)
    assert calls == [str(real_a), str(real_b)]
    assert set(r.scores) == {"kid_mean", "kid_std", "precision", "recall", "density", "coverage", "pr_k"}
    assert r.fid > 0 and r.n_a == r.n_b == 10 and r.scores["pr_k"] == 3  # torch-fidelity's k
    d = r.as_dict()
    assert d["precision"] == r.scores["precision"] and d["network_precision"] == "fp32"
    # dgm-eval's k = 5: the same definitions with five neighbours
    calls.clear()
    r5 = fidkit.compare(real_a, real_b, metrics="pr", pr_k=5, device="cpu", workers=0)
    fa, fb = (fidkit.features(s, device="cpu", workers=0) for s in (real_a, real_b))
    assert {k: r5.scores[k] for k in ("precision", "recall", "density", "coverage")} == \
        pytest.approx(S.precision_recall(fa, fb, k=5), abs=0) and r5.scores["pr_k"] == 5
    with pytest.raises(fidkit.FidkitError, match="pr_k must be a positive integer"):
        fidkit.compare(real_a, real_b, metrics="pr", pr_k=0, device="cpu", workers=0)


def test_cli_metrics_and_is(real_a, real_b, real_weights):
    cmd = [sys.executable, "-m", "fidkit"]
    r = subprocess.run(cmd + ["compute", str(real_a), str(real_b), "--metrics", "fid,kid,pr", "--json",
                              "--device", "cpu", "--workers", "1", "--pr-k", "5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["pr_k"] == 5
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
        assert isinstance(out[key], float), key
    assert 0 <= out["precision"] <= 1 and 0 <= out["coverage"] <= 1
    if not real_weights.has_classifier:
        r = subprocess.run(cmd + ["is", str(real_a), "--json"], capture_output=True, text=True,
                           env={**os.environ, "FIDKIT_WEIGHTS": real_weights.path or ""})
        assert r.returncode == 1 and r.stdout == ""
        assert len(r.stderr.strip().splitlines()) == 1 and "classifier" in r.stderr
    # `is` runs Inception only: its --protocol offers Inception's modes, not other encoders'
    r = subprocess.run(cmd + ["is", str(real_a), "--protocol", "edm2"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert "'edm2' is not one of 'ttur', 'pytorch-fid', 'clean', 'nvidia', 'dgm-eval-clean'." in r.stderr


def test_bootstrap_interval_covers_the_estimate_and_is_reproducible():
    from fidkit.frechet import frechet_distance
    from fidkit.scores import fid_bootstrap
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 4)), rng.normal(0.3, 1.2, size=(400, 4))
    ci = fid_bootstrap(a, b, 200, seed=1)
    again = fid_bootstrap(a, b, 200, seed=1)
    point = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)).fid
    assert ci == again and ci.resamples == 200
    assert ci.low < point < ci.high and ci.low < 0.52 < ci.high  # 0.52: the FID of the two true Gaussians
    assert 0 < ci.std < 0.5
    fixed = fid_bootstrap(None, b, 50, seed=1, reference=(np.zeros(4), np.eye(4)))
    assert fixed.low < fixed.high
    with pytest.raises(StatsError, match="at least 2 resamples"):
        fid_bootstrap(a, b, 1)


def test_cli_bootstrap(tmp_path, real_a, real_b):
    r = subprocess.run([sys.executable, "-m", "fidkit", "compute", str(real_a), str(real_b), "--bootstrap", "3",
                        "--json", "--device", "cpu", "--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["bootstrap_resamples"] == 3 and out["fid_ci_low"] <= out["fid_ci_high"] and out["fid_bootstrap_std"] > 0


def _dgm_eval_authpct(train_feat, gen_feat):
    """dgm-eval's metrics/authpct.py compute_authpct, verbatim."""
    with torch.no_grad():
        train_feat = torch.tensor(train_feat, dtype=torch.float32)
        gen_feat = torch.tensor(gen_feat, dtype=torch.float32)
        real_dists = torch.cdist(train_feat, train_feat)
        real_dists.fill_diagonal_(float("inf"))
        gen_dists = torch.cdist(train_feat, gen_feat)
        real_min_dists = real_dists.min(axis=0)
        gen_min_dists = gen_dists.min(dim=0)
        authen = real_min_dists.values[gen_min_dists.indices] < gen_min_dists.values
        authpct = (100 * torch.sum(authen) / len(authen)).item()
    return authpct


def test_authpct_is_dgm_evals_in_blocks():
    rng = np.random.default_rng(22)
    real = rng.normal(size=(400, 32))  # float64, as dgm-eval's representations
    fake = np.concatenate([rng.normal(size=(250, 32)) * 0.9, real[:50] + 1e-3])  # some copies: not authentic
    want = _dgm_eval_authpct(real, fake)
    assert 0 < want < 100
    for block in (7, 64, 1000):
        assert S.authpct(real, fake, block=block) == want, block
    assert S.authpct(real, real[:50] + 1e-3) == 0.0  # near-copies of real points
    assert S.authpct(real, fake[:1]) == _dgm_eval_authpct(real, fake[:1])  # one generated sample


@pytest.mark.parametrize("seed", range(8))
def test_authpct_equals_dgm_eval_where_duplicates_make_ties_of_rounding_noise(seed):
    """Duplicated real points and exact copies among the generated ones: d1 and d2 are then both
    float32 rounding noise of cdist's matrix-product path, so the blocks must give the original's
    last bits; 1,010 columns is a tail of 10 past a block of 1,000 (joined to it)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(1005, 32)).astype(np.float32)
    real = np.concatenate([base, base[:5]])  # 1,010: five points twice
    fake = np.concatenate([rng.normal(size=(990, 32)).astype(np.float32), np.repeat(base[:5], 4, axis=0)])
    assert S.authpct(real, fake) == _dgm_eval_authpct(real, fake)
    assert S._column_blocks(1010, 1000) == [(0, 1010)] and S._column_blocks(2100, 1000)[-1] == (2000, 2100)


def test_dgm_eval_authpct_and_sw_approx_from_one_pass(real_a, real_b):
    r = fidkit.compare(real_a, real_b, metrics="authpct,sw_approx", device="cpu", workers=0)
    fa, fb = (fidkit.features(x, device="cpu", workers=0) for x in (real_a, real_b))
    assert r.scores["authpct"] == S.authpct(fa, fb) and r.scores["sw_approx"] == fidkit.distances.sw_approx(fa, fb)
    assert 0 <= r.scores["authpct"] <= 100 and r.scores["sw_approx"] > 0


def _torch_fidelity_prc_counts(f1, f2, k=3, bs=10000):
    """torch-fidelity 0.4.0's calculate_precision_recall_full (its default): hit counts."""
    def cdist_full(a, b):
        return torch.cat([torch.cat([torch.cdist(x, y) for y in b.split(bs)], 1) for x in a.split(bs)], 0)
    nn1 = cdist_full(f1, f1).kthvalue(k + 1).values
    nn2 = cdist_full(f2, f2).kthvalue(k + 1).values
    d21 = cdist_full(f2, f1)
    return int((d21 <= nn1).any(dim=1).sum()), int((d21.T <= nn2).any(dim=1).sum())


@pytest.mark.parametrize("seed", range(3))
def test_precision_recall_counts_equal_torch_fidelity_at_near_ties(seed):
    """Generated points at exactly a real point's radius in exact arithmetic (the mirror image of
    its 3rd neighbour through it): float32 rounding decides them, so the distances must carry
    torch-fidelity's bits, i.e. its orientation (fake rows × real columns). Computed the other way
    round, 1 to 3 of 400 such points came out otherwise in 5 of 6 seeds."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(1200, 256)).astype(np.float32)
    t = torch.from_numpy(real)
    third = torch.cdist(t, t).topk(4, dim=1, largest=False).indices[:, 3].numpy()
    pick = rng.choice(1200, 400, replace=False)
    mirror = (2 * real[pick] - real[third[pick]]).astype(np.float32)
    fake = np.concatenate([mirror, (rng.normal(size=(400, 256)) * 3 + 5).astype(np.float32)])
    got = S.precision_recall(real, fake)
    want = _torch_fidelity_prc_counts(t, torch.from_numpy(fake))
    assert (round(got["precision"] * 800), round(got["recall"] * 1200)) == want


# ------------------------------------------------------------------ Vendi score


def _dgm_eval_vendi(x, q=1):
    """dgm-eval's metrics/vendi.py compute_vendi_score (linear kernel, normalize=True), transcribed
    with numpy for scikit-learn's normalize (rows divided by their L2 norm, a zero row kept)."""
    import scipy.linalg
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1)
    x = x / np.where(norms == 0, 1, norms)[:, None]
    w = scipy.linalg.eigvalsh(x @ x.T / x.shape[0])  # the N × N similarity matrix
    p = w[w > 0]
    if q == 1:
        h = -(p * np.log(p)).sum()
    elif q == "inf":
        h = -np.log(np.max(w))
    else:
        h = np.log((p ** q).sum()) / (1 - q)
    return float(np.exp(h))


@pytest.mark.parametrize("n, d", [(300, 64), (40, 64), (64, 64), (500, 16)])
@pytest.mark.parametrize("q", [1, 2, "inf"])
def test_vendi_score_is_dgm_evals_from_the_smaller_matrix(n, d, q):
    rng = np.random.default_rng(n + d)
    x = rng.normal(size=(n, d)) + rng.normal(size=d)  # correlated rows, as features are
    x[5] = 0  # a zero row stays zero, as scikit-learn's normalize leaves it
    x[7] = x[8] * 3  # a duplicate direction
    got = S.vendi_score(x.astype(np.float32), q=float("inf") if q == "inf" else q)
    assert got == pytest.approx(_dgm_eval_vendi(x.astype(np.float32), q), rel=1e-9)


def test_vendi_score_counts_distinct_samples():
    assert S.vendi_score(np.ones((50, 8), np.float32)) == pytest.approx(1.0, rel=1e-12)  # one sample 50 times
    assert S.vendi_score(np.eye(8, dtype=np.float32)) == pytest.approx(8.0, rel=1e-12)  # 8 orthogonal ones
    two = np.repeat(np.eye(2, 16, dtype=np.float32), 25, axis=0)  # two orthogonal samples, 25 copies each
    assert S.vendi_score(two) == pytest.approx(2.0, rel=1e-12)
    for q in (-1, 0, 0.5, True, "inf"):
        with pytest.raises(StatsError, match="order q must be"):
            S.vendi_score(two, q=q)
    assert S.vendi_score(two, q=np.int64(2)) == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(StatsError, match="at least one"):
        S.vendi_score(np.zeros((0, 4), np.float32))


def _dgm_eval_is(logits, splits=10, rng_seed=2020):
    """dgm-eval's metrics/inception_score.py calculate_score, transcribed, on its network's
    output: the float32 softmax of the bias-free logits, stored in a float64 array."""
    from scipy.stats import entropy
    preds = torch.from_numpy(logits).softmax(dim=1).numpy()
    pred_arr = np.empty(preds.shape)
    pred_arr[:] = preds
    n = len(pred_arr)
    preds = pred_arr[np.random.RandomState(rng_seed).permutation(n), :]
    split_scores = []
    for k in range(splits):
        part = preds[k * (n // splits): (k + 1) * (n // splits), :]
        py = np.mean(part, axis=0)
        scores = [entropy(part[i, :], py) for i in range(part.shape[0])]
        split_scores.append(np.exp(np.mean(scores)))
    return np.mean(split_scores), np.std(split_scores)


@pytest.mark.parametrize("n", [200, 203, 10])
def test_dgm_eval_inception_score_is_its_arithmetic(n):
    logits = (np.random.default_rng(n).normal(size=(n, 1008)) * 3).astype(np.float32)
    got = S.dgm_eval_inception_score(logits)
    mean, std = _dgm_eval_is(logits)
    assert (got.mean, got.std) == (mean, std)  # bit for bit (this numpy and scipy)
    if n % 10 == 0:  # equal parts: torch-fidelity's score but for the float32 softmax
        assert got.mean == pytest.approx(S.inception_score(logits).mean, rel=1e-5)
    with pytest.raises(StatsError, match="at least as many images as splits"):
        S.dgm_eval_inception_score(logits[:9])


# --- dgm-eval's kd and prdc: a transcription of its code (``__main__.compute_scores``,
# ``metrics/mmd.py``, ``metrics/prdc.py``) and of scikit-learn's float64 ``pairwise_distances(...,
# n_jobs=8)`` and ``polynomial_kernel``, drawing from numpy's global generator as dgm-eval does.
# Against dgm-eval's own code and scikit-learn: benchmarks/dgm_eval_kd_prdc_check.py.

def _sk_even_slices(n, packs):
    start = 0
    for i in range(packs):
        size = n // packs + (1 if i < n % packs else 0)
        if size > 0:
            yield slice(start, start + size)
            start += size


def _sk_pairwise_distances(x, y):
    ret = np.empty((x.shape[0], y.shape[0]), order="F")
    for s in _sk_even_slices(y.shape[0], 8):
        ys = y[s]
        d = -2 * (x @ ys.T)
        d += np.einsum("ij,ij->i", x, x)[:, None]
        d += np.einsum("ij,ij->i", ys, ys)[None, :]
        np.maximum(d, 0, out=d)
        ret[:, s] = np.sqrt(d)
    if x is y:
        np.fill_diagonal(ret, 0)
    return ret


def _dgm_eval_prdc(real, fake, k, realism=False):
    def radii(f):
        d = _sk_pairwise_distances(f, f)
        idx = np.argpartition(d, k + 1, axis=-1)[..., :k + 1]
        return np.take_along_axis(d, idx, axis=-1).max(axis=-1)
    rr, rf = radii(real), radii(fake)
    d = _sk_pairwise_distances(real, fake)
    out = {"precision": (d < rr[:, None]).any(axis=0).mean(), "recall": (d < rf[None, :]).any(axis=1).mean(),
           "density": (1. / float(k)) * (d < rr[:, None]).sum(axis=0).mean(),
           "coverage": (d.min(axis=1) < rr).mean()}
    if realism:
        mask = rr < np.median(rr)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["realism"] = (np.expand_dims(rr[mask], axis=1) / d[mask]).max(axis=0)
    return out


def _dgm_eval_mmd(real, fake):
    s = min(1000, real.shape[0], fake.shape[0])
    out = np.zeros(100)
    for i in range(100):
        g = real[np.random.choice(len(real), s, replace=False)]
        r = fake[np.random.choice(len(fake), s, replace=False)]
        kern = [(a @ b.T * (1.0 / a.shape[1]) + 1) ** 3 for a, b in ((g, g), (r, r), (g, r))]
        m = kern[0].shape[0]
        xx = (kern[0].sum(axis=1) - np.diagonal(kern[0])).sum()
        yy = (kern[1].sum(axis=1) - np.diagonal(kern[1])).sum()
        out[i] = (xx + yy) / (m * (m - 1)) - 2 * kern[2].sum(axis=0).sum() / (m * m)
    return out


def _dgm_eval_scores(real_all, fake_all, nsample, metrics, reduced_n, k=5):
    """dgm-eval from its cuts (real, then generated) to compute_scores' kd and prdc."""
    reps = []
    for feats in (real_all, fake_all):
        if len(feats) > nsample:
            np.random.seed(13579)
            feats = feats[sorted(np.random.choice(len(feats), nsample, replace=False))]
        reps.append(feats.astype(np.float64))
    out = {}
    if "kd" in metrics:
        v = _dgm_eval_mmd(*reps)
        out.update(kd_value=v.mean(), kd_variance=v.std())
    if "prdc" in metrics:
        r = min(reduced_n, reps[0].shape[0], reps[1].shape[0])
        i0 = np.random.choice(reps[0].shape[0], r, replace=False)
        i1 = np.arange(reps[1].shape[0])
        if "realism" not in metrics:
            i1 = np.random.choice(i1, min(reps[1].shape[0], r), replace=False)
        out.update(_dgm_eval_prdc(reps[0][i0], reps[1][i1], k, "realism" in metrics))
    return out


@pytest.mark.parametrize("n_a, n_b, nsample, metrics, reduced_n, k", [
    (70, 60, 50, ("kd", "prdc"), 30, 5),  # both cut: the generated set's cut seeds prdc's proper subsets
    (70, 40, 50, ("kd", "prdc"), 30, 5),  # the real set's cut seeds them; kd's subsets are proper
    (70, 60, 50, ("prdc",), 25, 3),  # prdc alone: no kd draws before it
    (1300, 1100, 1200, ("kd",), 10000, 5),  # kd's subsets of 1000 of 1200 and of 1100
])
def test_dgm_eval_kd_and_prdc_replay_its_global_generator_bit_for_bit(n_a, n_b, nsample, metrics, reduced_n, k):
    from fidkit.api import _dgm_eval_drawn
    from fidkit.sources import dgm_eval_indices

    g = np.random.default_rng(11)
    real = (g.normal(size=(n_a, 24)) + np.repeat(g.normal(size=(4, 24)), (n_a + 3) // 4, axis=0)[:n_a]).astype(np.float32)
    fake = (g.normal(size=(n_b, 24)) * 1.2 + 0.3).astype(np.float32)
    state = np.random.get_state()
    try:
        np.random.seed(99)  # whatever state it had: the cuts re-seed it
        want = _dgm_eval_scores(real, fake, nsample, metrics, reduced_n, k)
    finally:
        np.random.set_state(state)
    ra, rb = real[dgm_eval_indices(n_a, nsample)], fake[dgm_eval_indices(n_b, nsample)]
    got = _dgm_eval_drawn(tuple(f"{m}-dgm-eval" for m in metrics), ra, rb,
                            {"nsample_from_a": n_a, "nsample_from_b": n_b}, nsample, 13579, k, reduced_n)
    assert got["dgm_eval_draws"] == "replayed"
    assert {key: got[f"dgm_eval_{key}"] for key in want} == {key: float(v) for key, v in want.items()}
    if "prdc" in metrics:
        assert got["dgm_eval_nearest_k"] == k and 0 < got["dgm_eval_precision"] < 1


@pytest.mark.parametrize("n_a, n_b, nsample, metrics, reduced_n", [
    (70, 60, 50, ("kd", "prdc", "realism"), 30),  # fake rows not drawn: all 50 of its cut, 30 real rows
    (70, 40, 80, ("prdc", "realism"), 25),  # nothing cut: seeded here; all 40 fake rows
])
def test_dgm_eval_realism_keeps_every_fake_row_and_scores_each(n_a, n_b, nsample, metrics, reduced_n):
    from fidkit.api import _dgm_eval_drawn
    from fidkit.sources import dgm_eval_indices

    g = np.random.default_rng(12)
    real = (g.normal(size=(n_a, 16)) + np.repeat(g.normal(size=(4, 16)), (n_a + 3) // 4, axis=0)[:n_a]).astype(np.float32)
    fake = (g.normal(size=(n_b, 16)) * 1.1 + 0.2).astype(np.float32)
    fake[: n_b // 2] = real[: n_b // 2]  # exact copies: realism inf where the copied row's ball is small
    state = np.random.get_state()
    try:
        np.random.seed(99)
        cut = nsample < max(n_a, n_b)
        if not cut:  # dgm-eval then draws from its unseeded generator: fidkit from RandomState(seed)
            np.random.seed(13579)
        want = _dgm_eval_scores(real, fake, nsample, metrics, reduced_n)
    finally:
        np.random.set_state(state)
    ra, rb = real[dgm_eval_indices(n_a, nsample)], fake[dgm_eval_indices(n_b, nsample)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)  # the unseeded draws, where nothing is cut
        got = _dgm_eval_drawn(tuple(f"{m}-dgm-eval" for m in metrics), ra, rb,
                              {"nsample_from_a": n_a, "nsample_from_b": n_b}, nsample, 13579, 5, reduced_n)
    realism = np.asarray(got["dgm_eval_realism"])
    assert realism.shape == (min(n_b, nsample),) and np.isinf(realism).any() and np.isfinite(realism).any()
    assert np.array_equal(realism, want.pop("realism"))
    assert {key: got[f"dgm_eval_{key}"] for key in want} == {key: float(v) for key, v in want.items()}
    assert got["dgm_eval_draw_order"] == ",".join(m if m != "prdc" else "prdc+realism" for m in metrics
                                                  if m != "realism")


def test_dgm_eval_prdc_slices_radii_as_the_full_matrix():
    # the radii merged over sklearn's 8 column slices equal argpartition over whole rows, including
    # sets smaller than 8 slices' worth and ties (repeated rows)
    g = np.random.default_rng(5)
    for n in (7, 9, 17, 64):
        x = g.normal(size=(n, 6))
        x[3] = x[1]
        full = _sk_pairwise_distances(x, x)
        want = np.take_along_axis(full, np.argpartition(full, 6, axis=-1)[..., :6], axis=-1).max(axis=-1)
        assert np.array_equal(S._dgm_eval_radii(x, 5), want)
    with pytest.raises(StatsError, match="needs at least 7 feature vectors"):
        S.dgm_eval_prdc(g.normal(size=(6, 4)), g.normal(size=(9, 4)), np.random.RandomState(0))


def test_dgm_eval_draws_without_a_cut_are_warned_of():
    from fidkit.api import _dgm_eval_drawn

    g = np.random.default_rng(3)
    fa, fb = g.normal(size=(60000, 4)).astype(np.float32), g.normal(size=(500, 4)).astype(np.float32)
    with pytest.warns(fidkit.FidkitWarning, match="dgm-eval's default --nsample 50000 would cut a set of 60000 "
                                                  "images, which seeds the draws of its kd: give --nsample 50000"):
        out = _dgm_eval_drawn(("kd-dgm-eval",), fa, fb, {}, None, 13579, 5)
    assert out["dgm_eval_draws"] == "seeded here" and out["dgm_eval_draw_order"] == "kd"
    want = S.kid(fa.astype(np.float64), fb.astype(np.float64), seed=13579, dtype=np.float64)
    assert (out["dgm_eval_kd_value"], out["dgm_eval_kd_variance"]) == want


def test_realism_per_image_through_compare_and_the_cli(real_a, real_b, tmp_path):
    """``--metrics prdc-dgm-eval,realism-dgm-eval --per-image F.csv``: one realism score per image
    of B, in its rows, written whole to the CSV (huge, or inf, for an exact copy of a real image), and strict
    JSON on stdout; the options that make no sense alone are refused before any pass."""
    import csv
    import shutil
    gen = tmp_path / "gen"
    gen.mkdir()
    for i, f in enumerate(sorted(real_a.iterdir())[:4] + sorted(real_b.iterdir())[:5]):
        shutil.copy(f, gen / f"{i}{f.suffix}")  # 4 exact copies of A's images, 5 others
    kw = dict(pr_k=3, device="cpu", workers=0, nsample=20)  # nothing cut: seeded here (warned)
    with pytest.warns(fidkit.FidkitWarning, match="numpy's global generator"):
        r = fidkit.compare(real_a, gen, metrics="prdc-dgm-eval,realism-dgm-eval", **kw)
    realism, files = r.scores["dgm_eval_realism"], r.scores["dgm_eval_realism_files"]
    assert len(realism) == len(files) == 9 and files == sorted(str(p) for p in gen.iterdir())
    assert r.scores["dgm_eval_draw_order"] == "prdc+realism"
    # a copy's distance, sqrt(|x|² + |y|² − 2x·y) as scikit-learn computes it, rounds to about
    # 1e-8 of the norms, or to 0 (then inf): a realism far above any other image's
    assert r.scores["dgm_eval_realism_infinite"] == sum(np.isinf(realism))
    assert max(realism[:4]) > 1e4 * max(realism[4:]) and all(np.isfinite(realism[4:]))
    fa, fb = (fidkit.features(p, device="cpu", workers=0) for p in (real_a, gen))
    want = S.dgm_eval_prdc(fa, fb, np.random.RandomState(13579), k=3, realism=True)
    assert np.array_equal(realism, want["realism"]) and r.scores["dgm_eval_density"] == want["density"]
    with pytest.raises(FidkitError, match="realism-dgm-eval is computed by dgm-eval's prdc"):
        fidkit.compare(real_a, gen, metrics="realism-dgm-eval", **kw)

    out = tmp_path / "realism.csv"
    base = [sys.executable, "-m", "fidkit", "compute", str(real_a), str(gen), "--device", "cpu", "--workers", "0",
            "--pr-k", "3", "--nsample", "20", "--metrics", "prdc-dgm-eval,realism-dgm-eval"]
    p = subprocess.run(base + ["--per-image", str(out), "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert result["per_image"] == str(out) and "dgm_eval_realism" not in result
    assert result["dgm_eval_realism_infinite"] == r.scores["dgm_eval_realism_infinite"]
    rows = list(csv.DictReader(out.open()))
    assert [row["file"] for row in rows] == files and [float(row["realism"]) for row in rows] == realism
    for extra, says in ((["--json"], "give --per-image PATH.csv"),
                        (["--per-image", str(tmp_path / "none" / "r.csv")], "does not exist")):
        p = subprocess.run(base + extra, capture_output=True, text=True)
        assert p.returncode == 1 and p.stdout == "" and says in p.stderr.strip().splitlines()[-1], p.stderr
    p = subprocess.run(base[:-1] + ["prdc-dgm-eval", "--per-image", str(tmp_path / "x.csv")], capture_output=True,
                       text=True)
    assert p.returncode == 1 and "which were not asked for" in p.stderr and not (tmp_path / "x.csv").exists()
