"""dgm-eval's Feature Likelihood Score (``fls``, ``fls_overfit``): against a transcription of its
code, its draws replayed, what the scores say about memorisation, and ``compare``'s test set.
Against dgm-eval's own ``compute_scores`` and ``metrics/fls.py``: benchmarks/dgm_eval_kd_prdc_check.py."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import fidkit
from fidkit import scores as S
from fidkit.errors import FidkitError, StatsError


# --- dgm-eval's metrics/fls.py (from the FLS repository), transcribed with its ``.cuda()`` and
# ``device="cuda"`` made the CPU; otherwise verbatim.

def _ref_preprocess_fls(train_feat, baseline_feat, test_feat, gen_feat):
    train_feat = torch.tensor(train_feat, dtype=torch.float32)
    baseline_feat = torch.tensor(baseline_feat, dtype=torch.float32)
    test_feat = torch.tensor(test_feat, dtype=torch.float32)
    gen_feat = torch.tensor(gen_feat, dtype=torch.float32)
    all_features = torch.cat((train_feat, baseline_feat, test_feat, gen_feat), dim=0)
    mean = all_features.mean(dim=0)
    std = all_features.std(dim=0)

    def normalize(feat):
        return (feat - mean) / std

    return normalize(train_feat), normalize(baseline_feat), normalize(test_feat), normalize(gen_feat)


def _ref_compute_dists(x_data, x_kernel):
    dists = (torch.cdist(x_data, x_kernel)) ** 2
    return dists.detach()


def _ref_get_pairwise_likelihood(x_data, x_kernel, log_sigmas):
    dists = _ref_compute_dists(x_data, x_kernel)
    exponent_term = (-0.5 * dists) / torch.exp(log_sigmas)
    exponent_term -= (x_kernel.shape[1] / 2) * log_sigmas
    exponent_term += torch.log(torch.tensor(1 / dists.shape[1]))
    return exponent_term


def _ref_nll(dists, log_sigmas, dim, lambd=0, detailed=False):
    exponent_term = (-0.5 * dists) / torch.exp(log_sigmas)
    exponent_term -= (dim / 2) * log_sigmas
    exponent_term += torch.log(torch.tensor(1 / dists.shape[1]))
    inner_term = torch.logsumexp(exponent_term, dim=1)
    total_nll = torch.mean(-inner_term)
    reg_term = lambd / 2 * torch.norm(torch.exp(-log_sigmas)) ** 2
    final_nll = total_nll + reg_term
    if detailed:
        return final_nll, -inner_term
    return final_nll


def _ref_optimize_sigmas(x_data, x_kernel, init_val=1):
    log_sigmas = torch.ones(x_kernel.shape[0], requires_grad=True, device="cpu")
    log_sigmas.data = init_val * log_sigmas
    optim = torch.optim.Adam([log_sigmas], lr=0.5)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=[50], gamma=0.1)
    dim = x_data.shape[1]
    dists = _ref_compute_dists(x_data, x_kernel)
    for i in range(100):
        loss = _ref_nll(dists, log_sigmas, dim)
        optim.zero_grad()
        loss.backward()
        optim.step()
        scheduler.step()
        with torch.no_grad():
            log_sigmas.data = log_sigmas.clamp(-100, 20).data
    return log_sigmas


def _ref_evaluate_set(evaluated_set, x_kernel, log_sigmas):
    dists = _ref_compute_dists(evaluated_set, x_kernel)
    nlls = _ref_nll(dists, log_sigmas, x_kernel.shape[1], detailed=True)
    return nlls[0].detach().cpu().numpy(), nlls[1]


def _ref_compute_fls(train_feat, baseline_feat, test_feat, gen_feat):
    train_feat, baseline_feat, test_feat, gen_feat = _ref_preprocess_fls(train_feat, baseline_feat, test_feat,
                                                                         gen_feat)
    gen_log_sigmas = _ref_optimize_sigmas(train_feat, gen_feat, init_val=0)
    gen_nll = _ref_evaluate_set(test_feat, gen_feat, gen_log_sigmas)[0].item()
    base_log_sigmas = _ref_optimize_sigmas(train_feat, baseline_feat, init_val=0)
    baseline_nll = _ref_evaluate_set(test_feat, baseline_feat, base_log_sigmas)[0].item()
    diff = 2 * (gen_nll - baseline_nll) / train_feat.shape[1]
    return math.e ** (-diff) * 100


def _ref_compute_fls_overfit(train_feat, baseline_feat, test_feat, gen_feat):
    train_feat, baseline_feat, test_feat, gen_feat = _ref_preprocess_fls(train_feat, baseline_feat, test_feat,
                                                                         gen_feat)
    gen_log_sigmas = _ref_optimize_sigmas(train_feat, gen_feat, init_val=0)
    size = min(test_feat.shape[0], train_feat.shape[0])
    train_lls = _ref_get_pairwise_likelihood(train_feat[:size], gen_feat, gen_log_sigmas)
    test_lls = _ref_get_pairwise_likelihood(test_feat[:size], gen_feat, gen_log_sigmas)
    ll_diff = train_lls.logsumexp(axis=0) - test_lls.logsumexp(axis=0)
    return ((ll_diff > 0).sum().item() / ll_diff.shape[0]) * 100 - 50


def _sets(seed, n_train=120, n_test=50, n_gen=60, d=16, copies=0):
    """A train set of clusters, a test set from the same clusters, and a generated set whose first
    ``copies`` rows are near-copies of train rows (memorised), the rest new draws."""
    g = np.random.default_rng(seed)
    centres = g.normal(size=(5, d)) * 2

    def draw(n):
        return centres[g.integers(0, 5, n)] + g.normal(size=(n, d))

    train, test = draw(n_train), draw(n_test)
    gen = np.concatenate([train[:copies] + 1e-3 * g.normal(size=(copies, d)), draw(n_gen - copies)])
    return train, test, gen


def _dgm_eval_fls_draws(train, test, gen, reduced_n):
    """compute_scores' fls block: its draws from numpy's global generator, then its split."""
    train_reps, gen_reps, test_reps = train, gen, test
    reduced_n = min(reduced_n, train_reps.shape[0] // 2, test_reps.shape[0], gen_reps.shape[0])
    test_reps = test_reps[np.random.choice(test_reps.shape[0], reduced_n, replace=False)]
    gen_reps = gen_reps[np.random.choice(gen_reps.shape[0], reduced_n, replace=False)]
    train_reps = train_reps[np.random.choice(train_reps.shape[0], 2 * reduced_n, replace=False)]
    return train_reps[:reduced_n], train_reps[reduced_n:], test_reps, gen_reps


@pytest.mark.parametrize("seed, copies, reduced_n", [(0, 0, 10000), (1, 30, 10000), (2, 10, 25)])
def test_fls_is_dgm_evals_bit_for_bit(seed, copies, reduced_n):
    train, test, gen = _sets(seed, copies=copies)
    state = np.random.get_state()
    try:
        np.random.seed(seed + 100)
        want_sets = _dgm_eval_fls_draws(train, test, gen, reduced_n)
    finally:
        np.random.set_state(state)
    sets = S.dgm_eval_fls_sets(train, test, gen, np.random.RandomState(seed + 100), reduced_n)
    assert all(np.array_equal(x, y) for x, y in zip(sets, want_sets))
    got = S.dgm_eval_fls(*sets)
    assert got.fls == _ref_compute_fls(*want_sets)
    assert got.fls_overfit == _ref_compute_fls_overfit(*want_sets)
    assert got.reduced_n == min(reduced_n, 60, 50, 60)


def test_fls_tells_memorised_samples_from_new_ones():
    # new draws from the data's distribution: about as likely on unseen real images as real
    # images are (fls near 100), and no preference for the train set (overfit near 0); near-
    # copies of train rows: the KDE fits the train set, the overfit score climbs towards +50
    train, test, gen = _sets(3, n_train=400, n_test=200, n_gen=200, copies=0)
    fresh = S.dgm_eval_fls(*S.dgm_eval_fls_sets(train, test, gen, np.random.RandomState(0)))
    train, test, gen = _sets(3, n_train=400, n_test=200, n_gen=200, copies=200)
    memorised = S.dgm_eval_fls(*S.dgm_eval_fls_sets(train, test, gen, np.random.RandomState(0)))
    assert 80 < fresh.fls < 125 and abs(fresh.fls_overfit) < 15
    assert memorised.fls_overfit > 20 > fresh.fls_overfit
    # a generated set far from the data explains the test set worse than real images do
    train, test, gen = _sets(4, n_train=400, n_test=200, n_gen=200)
    far = S.dgm_eval_fls(*S.dgm_eval_fls_sets(train, test, gen * 3 + 5, np.random.RandomState(0)))
    assert far.fls < 50 < fresh.fls


def test_fls_refuses_what_dgm_eval_would_print_as_nan():
    train, test, gen = _sets(5)
    train[:, 3] = test[:, 3] = gen[:, 3] = 1.0  # a feature constant over every set: std 0
    with pytest.raises(StatsError, match="fls is not a finite number"):
        S.dgm_eval_fls(*S.dgm_eval_fls_sets(train, test, gen, np.random.RandomState(0)))
    with pytest.raises(StatsError, match="at least 4 train, 2 test and 2 generated"):
        S.dgm_eval_fls_sets(train[:3], test, gen, np.random.RandomState(0))
    with pytest.raises(StatsError, match="different dimensions"):
        S.dgm_eval_fls_sets(train, test[:, :8], gen, np.random.RandomState(0))


def test_fls_draws_follow_kd_and_prdc_and_replay_the_test_sets_cut():
    # dgm-eval reads the real set, the test set, then the generated set, each cut by --nsample
    # (re-seeding numpy's global generator); compute_scores then draws kd's, prdc's and fls's
    # subsets in that order. Here the generated set is not cut, so the test set's cut seeds them.
    from fidkit.api import _dgm_eval_drawn
    from fidkit.sources import dgm_eval_indices

    train, test, gen = _sets(6, n_train=90, n_test=80, n_gen=40)
    nsample = 60
    state = np.random.get_state()
    try:
        reps = {}
        for name, feats in (("train", train), ("test", test), ("gen", gen)):
            if len(feats) > nsample:
                np.random.seed(13579)
                feats = feats[sorted(np.random.choice(len(feats), nsample, replace=False))]
            reps[name] = feats
        for _ in range(100):  # kd: 100 × (a real subset, a fake subset) of min(1000, 60, 40) rows
            np.random.choice(60, 40, replace=False)
            np.random.choice(40, 40, replace=False)
        want = _ref_compute_fls(*_dgm_eval_fls_draws(reps["train"], reps["test"], reps["gen"], 10000))
    finally:
        np.random.set_state(state)
    ra, rt = train[dgm_eval_indices(90, nsample)], test[dgm_eval_indices(80, nsample)]
    got = _dgm_eval_drawn(("kd-dgm-eval", "fls-dgm-eval"), ra, gen,
                          {"nsample_from_a": 90, "nsample_from_b": 40, "nsample_from_t": 80}, nsample, 13579, 5,
                          ft=rt)
    assert got["dgm_eval_draws"] == "replayed" and got["dgm_eval_draw_order"] == "kd,fls"
    assert got["dgm_eval_fls"] == want and got["dgm_eval_fls_reduced_n"] == 30


def test_compare_reads_the_test_set_for_fls(real_a, real_b, tmp_path):
    with pytest.warns(fidkit.FidkitWarning, match="its fls from numpy's global generator"):
        r = fidkit.compare(real_a, real_b, metrics="fls-dgm-eval", test=real_b, device="cpu", workers=0)
    fa, fb = (fidkit.features(p, device="cpu", workers=0) for p in (real_a, real_b))
    want = S.dgm_eval_fls(*S.dgm_eval_fls_sets(fa, fb, fb, np.random.RandomState(13579)))
    assert (r.scores["dgm_eval_fls"], r.scores["dgm_eval_fls_overfit"]) == (want.fls, want.fls_overfit)
    assert r.scores["n_test"] == 10 and r.scores["dgm_eval_draws"] == "seeded here"
    with pytest.raises(FidkitError, match="needs a set of real images the generator never saw"):
        fidkit.compare(real_a, real_b, metrics="fls-dgm-eval", device="cpu")
    with pytest.raises(FidkitError, match="is dgm-eval's --test_path set, read by fls-dgm-eval and"):
        fidkit.compare(real_a, real_b, test=real_b, device="cpu")
    with pytest.raises(FidkitError, match="none: no such file or folder"):
        fidkit.compare(real_a, real_b, metrics="fls-dgm-eval", test=tmp_path / "none", device="cpu")
    stats = tmp_path / "b.npz"
    fidkit.compute_stats(real_b, device="cpu", workers=0).save(stats)
    with pytest.raises(StatsError, match="dgm-eval's fls needs the features of every image"):
        fidkit.compare(real_a, real_b, metrics="fls-dgm-eval", test=stats, device="cpu")


def test_a_test_set_cut_without_fls_is_counted_and_seeds_kds_and_prdcs_draws(real_a, real_b, tmp_path, monkeypatch):
    """dgm-eval reads and cuts a --test_path set whatever its metrics: where it cuts the test set
    and not the generated one, that cut leaves the generator kd's and prdc's draws start from.
    fidkit lists and counts the test set then, without a pass through the network."""
    import shutil
    from fidkit import api
    test = tmp_path / "test"
    test.mkdir()
    for i, f in enumerate(sorted(real_a.iterdir()) + sorted(real_b.iterdir())[:2]):
        shutil.copy(f, test / f"{i:02d}{f.suffix}")
    passes = []
    one_pass = api._one_pass
    monkeypatch.setattr(api, "_one_pass", lambda src, *a, **k: passes.append(src) or one_pass(src, *a, **k))
    wanted = "kd-dgm-eval,prdc-dgm-eval"
    kw = dict(nsample=10, pr_k=3, reduced_n=8, device="cpu", workers=0)  # prdc draws 8 of each set's 10 rows
    r = fidkit.compare(real_a, real_b, metrics=wanted, test=test, **kw)
    assert len(passes) == 2 and test not in passes  # A's and B's passes only
    assert r.scores["test_read"] == "count only" and r.scores["n_test"] == 10 and r.scores["nsample_from_t"] == 12
    assert r.scores["dgm_eval_draws"] == "replayed"
    fa, fb = (fidkit.features(p, device="cpu", workers=0) for p in (real_a, real_b))
    rng = np.random.RandomState(13579)
    rng.choice(12, 10, replace=False)  # the test set's cut: the last one, as A and B hold 10 images each
    kd = S.dgm_eval_kd(fa, fb, rng)
    prdc = S.dgm_eval_prdc(fa, fb, rng, k=3, reduced_n=8)
    assert (r.scores["dgm_eval_kd_value"], r.scores["dgm_eval_kd_variance"]) == (kd.mean, kd.std)
    assert r.scores["dgm_eval_precision"] == prdc["precision"] and r.scores["dgm_eval_coverage"] == prdc["coverage"]
    # without the test set, nothing is cut: the draws are fidkit's own, and warned of
    with pytest.warns(fidkit.FidkitWarning, match="from numpy's global generator"):
        alone = fidkit.compare(real_a, real_b, metrics=wanted, **kw)
    assert alone.scores["dgm_eval_draws"] == "seeded here" and "n_test" not in alone.scores
    assert alone.scores["dgm_eval_density"] != r.scores["dgm_eval_density"]  # here the test set's cut tells
    # a statistics file serves as the test set by its recorded count, features or not
    stats = tmp_path / "t.npz"
    fidkit.compute_stats(test, device="cpu", workers=0).save(stats)
    by_file = fidkit.compare(real_a, real_b, metrics=wanted, test=stats, **kw)
    assert by_file.scores["dgm_eval_precision"] == prdc["precision"] and by_file.scores["n_test"] == 10
    assert by_file.scores["dgm_eval_recall"] == prdc["recall"]


def test_cli_fls_needs_a_test_set_and_reports_it(real_a, real_b):
    base = [sys.executable, "-m", "fidkit", "compute", str(real_a), str(real_b), "--device", "cpu",
            "--workers", "0", "--metrics", "fls-dgm-eval"]
    p = subprocess.run(base, capture_output=True, text=True)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip().splitlines()[-1].startswith("fidkit: error: fls-dgm-eval (dgm-eval's fls) needs a set")
    p = subprocess.run(base + ["--test", str(real_a), "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["n_test"] == 10 and out["dgm_eval_fls_reduced_n"] == 5 and out["dgm_eval_fls"] > 0


def test_reduced_n_is_dgm_evals_subsample_and_checked_before_any_pass(real_a, real_b):
    with pytest.raises(FidkitError, match=r"reduced_n \(dgm-eval's --reduced_n\) is 6, but dgm-eval's prdc needs at "
                                          r"least 7 rows"):
        fidkit.compare(real_a, "no/such/folder", metrics="prdc-dgm-eval", reduced_n=6, device="cpu")
    with pytest.raises(FidkitError, match=r"reduced_n \(dgm-eval's --reduced_n, 10000\) must be an integer of at "
                                          r"least 1, got 0"):
        fidkit.compare(real_a, real_b, metrics="prdc-dgm-eval", reduced_n=0, device="cpu")
    with pytest.warns(fidkit.FidkitWarning, match="its prdc and fls from numpy's global generator"):
        r = fidkit.compare(real_a, real_b, metrics="prdc-dgm-eval,fls-dgm-eval", test=real_b, reduced_n=7,
                           device="cpu", workers=0)
    assert r.scores["dgm_eval_reduced_n"] == 7 and r.scores["dgm_eval_fls_reduced_n"] == 5
    assert r.scores["dgm_eval_draw_order"] == "prdc,fls"


def test_fls_counts_are_refused_before_any_pass(real_a, real_b, tmp_path):
    import shutil
    small = tmp_path / "three"
    small.mkdir()
    for p in sorted(real_a.iterdir())[:3]:
        shutil.copy(p, small / p.name)
    with pytest.raises(StatsError, match=r"^A holds 3 image\(s\): dgm-eval's fls needs at least 4 images in A"):
        fidkit.compare(small, real_b, metrics="fls-dgm-eval", test=real_b, device="cpu")
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(real_b.iterdir())[0], one / "x.png")
    with pytest.raises(StatsError, match=r"^the test set holds 1 image\(s\): dgm-eval's fls needs"):
        fidkit.compare(real_a, real_b, metrics="fls-dgm-eval", test=one, device="cpu")
