"""dgm-eval's CT (``ct``, ``ct_test``, ``ct_modified``): against a transcription of its
``metrics/ct.py``, its draws replayed from numpy's global generator, and ``compare``'s test set.
Against dgm-eval's own ``compute_scores`` and ``metrics/ct.py``: benchmarks/dgm_eval_kd_prdc_check.py."""
import sys

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors as NN

import fidkit
from fidkit import scores as S
from fidkit.errors import FidkitError, StatsError


# --- dgm-eval's metrics/ct.py (from Meehan et al.'s data-copying repository), transcribed; its
# prints left out. It draws from numpy's global generator (PCA's and KMeans' random_state=None).

def _ref_preprcoess_ct(train_feat, test_feat, gen_feat):
    if train_feat.shape[1] > 64:
        pca_xf = PCA(n_components=64).fit(train_feat)
        train_feat = pca_xf.transform(train_feat)
        test_feat = pca_xf.transform(test_feat)
        gen_feat = pca_xf.transform(gen_feat)
        del pca_xf
    return train_feat, test_feat, gen_feat


def _ref_Zu(Pn, Qm, T):
    m = Qm.shape[0]
    n = Pn.shape[0]
    T_NN = NN(n_neighbors=1).fit(T)
    LQm, _ = T_NN.kneighbors(X=Qm, n_neighbors=1)
    LPn, _ = T_NN.kneighbors(X=Pn, n_neighbors=1)
    u, _ = mannwhitneyu(LQm, LPn, alternative="less")
    mean = (n * m / 2) - 0.5
    std = np.sqrt(n * m * (n + m + 1) / 12)
    Z_u = (u - mean) / std
    return Z_u


def _ref_Zu_cells(Pn, Pn_cells, Qm, Qm_cells, T, T_cells):
    k = len(np.unique(Pn_cells))
    Zu_cells = np.zeros(k)
    for i in range(k):
        Pn_cell_i = Pn[Pn_cells == i]
        Qm_cell_i = Qm[Qm_cells == i]
        T_cell_i = T[T_cells == i]
        if len(Pn_cell_i) * len(T_cell_i) == 0:
            raise ValueError("Cell {:n} lacks test samples and/or training samples.".format(i))
        if len(Qm_cell_i) > 0:
            Zu_cells[i] = _ref_Zu(Pn_cell_i, Qm_cell_i, T_cell_i)[0]  # its (1,) array, as its assignment takes it
        else:
            Zu_cells[i] = 0
    return Zu_cells


def _ref_C_T(Pn, Pn_cells, Qm, Qm_cells, T, T_cells, tau):
    m = Qm.shape[0]
    n = Pn.shape[0]
    k = np.max(np.unique(T_cells)) + 1
    labels, cts = np.unique(Qm_cells, return_counts=True)
    Qm_cts = np.zeros(k)
    Qm_cts[labels.astype(int)] = cts
    Qm_of_pi = Qm_cts / m
    Pi_tau = (Qm_of_pi > tau)
    labels, cts = np.unique(Pn_cells, return_counts=True)
    Pn_cts = np.zeros(k)
    Pn_cts[labels.astype(int)] = cts
    Pn_of_pi = Pn_cts / n
    Zu_scores = _ref_Zu_cells(Pn, Pn_cells, Qm, Qm_cells, T, T_cells)
    C_T = Pn_of_pi[Pi_tau].dot(Zu_scores[Pi_tau]) / np.sum(Pn_of_pi[Pi_tau])
    return C_T


def _ref_compute_CTscore(train_feat, test_feat, gen_feat):
    train_feat, test_feat, gen_feat = _ref_preprcoess_ct(train_feat, test_feat, gen_feat)
    km_clf = KMeans(n_clusters=3, n_init=10).fit(train_feat)
    T_labels = km_clf.predict(train_feat)
    Pn_labels = km_clf.predict(test_feat)
    Qm_labels = km_clf.predict(gen_feat)
    return _ref_C_T(test_feat, Pn_labels, gen_feat, Qm_labels, train_feat, T_labels, tau=20 / len(gen_feat))


def _ref_compute_CTscore_mem(train_feat, test_feat, gen_feat):
    return _ref_compute_CTscore(gen_feat, test_feat, train_feat)


def _ref_compute_CTscore_mode(train_feat, test_feat, gen_feat):
    test_feat1, test_feat2 = np.array_split(test_feat, 2)
    return _ref_compute_CTscore(test_feat1, test_feat2, gen_feat)


_REF = {"ct": _ref_compute_CTscore, "ct_test": _ref_compute_CTscore_mode, "ct_modified": _ref_compute_CTscore_mem}


def _sets(g, dim, n_train=300, n_test=200, n_gen=240, copies=0):
    centres = g.normal(size=(3, dim)) * 4
    def draw(n, spread):
        return (centres[np.arange(n) % 3] + g.normal(size=(n, dim)) * spread).astype(np.float32).astype(np.float64)
    train, test, gen = draw(n_train, 1.0), draw(n_test, 1.0), draw(n_gen, 1.1)
    gen[:copies] = train[:copies] + 1e-3 * g.normal(size=(copies, dim))  # near copies of train rows
    return train, test, gen


@pytest.mark.parametrize("dim", [16, 96])  # without and with its 64-component PCA (randomized solver)
def test_ct_equals_a_transcription_of_dgm_evals_code_draw_for_draw(dim):
    train, test, gen = _sets(np.random.default_rng(dim), dim)
    state = np.random.get_state()
    try:
        np.random.seed(2024)  # the global generator, in a known state, as dgm-eval's is after its cuts
        want = {v: _REF[v](train, test, gen) for v in S.DGM_EVAL_CT_VARIANTS}  # in its order
        after = np.random.randint(2 ** 31)
    finally:
        np.random.set_state(state)
    rng = np.random.RandomState(2024)
    got = {v: S.dgm_eval_ct(train, test, gen, rng, v) for v in S.DGM_EVAL_CT_VARIANTS}
    assert got == {v: float(w) for v, w in want.items()}
    assert rng.randint(2 ** 31) == after  # advanced as dgm-eval's generator is: fls's draws follow
    assert all(np.isfinite(list(got.values())))


def test_ct_says_copying_below_zero_and_refuses_what_dgm_eval_would_stop_on():
    g = np.random.default_rng(4)
    train, real, gen = _sets(g, 16, n_test=440, copies=240)  # every generated row a near copy of a train row
    test, held = real[:200], real[200:]  # and generated rows as new to the train set as the test rows
    copied = S.dgm_eval_ct(train, test, gen, np.random.RandomState(0))
    fresh = S.dgm_eval_ct(train, test, held, np.random.RandomState(0))
    assert copied < -5 and abs(fresh) < 3, (copied, fresh)
    wide = [np.repeat(f, 6, axis=1) for f in (train, test, gen)]  # 96-d: its 64-component PCA
    with pytest.raises(StatsError, match="ct fits its PCA and k-means to 50 row.*at least 64"):
        S.dgm_eval_ct(wide[0][:50], wide[1], wide[2], np.random.RandomState(0))
    with pytest.raises(StatsError, match="ct_modified fits its PCA and k-means to 50 row"):  # fitted on B
        S.dgm_eval_ct(wide[0], wide[1], wide[2][:50], np.random.RandomState(0), "ct_modified")
    with pytest.raises(StatsError, match="ct_test fits its PCA and k-means to 60 row"):  # half the test set
        S.dgm_eval_ct(wide[0], wide[1][:119], wide[2], np.random.RandomState(0), "ct_test")
    with pytest.raises(StatsError, match="no k-means cell holds more than 20 generated rows"):
        S.dgm_eval_ct(train, test, gen[:30], np.random.RandomState(0))
    with pytest.raises(StatsError, match="variant must be one of"):
        S.dgm_eval_ct(train, test, gen, np.random.RandomState(0), "ct-test")


def test_ct_without_scikit_learn_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.cluster", None)
    with pytest.raises(StatsError, match=r"install scikit-learn \(pip install 'fidkit\[ct\]'\)"):
        S.dgm_eval_ct(*_sets(np.random.default_rng(1), 8), np.random.RandomState(0))


def _features_file(path, f, **extra):
    """A statistics file that keeps per-image features ``f`` (float32), as fidkit stats --features writes."""
    f = np.asarray(f, np.float32)
    st = fidkit.Statistics(f.mean(axis=0, dtype=np.float64), np.cov(f.T.astype(np.float64)), n=len(f),
                           protocol="ttur", features=f, extra=extra)
    st.save(path)
    return path


def test_compare_reads_the_test_set_for_ct_and_replays_dgm_evals_draws(tmp_path):
    """A (train), B (generated) and the test set as feature files, A's of the 300 images of 330
    that --nsample 300 keeps; that cut, the only one, seeds kd's draws, then ct's, ct_test's and
    ct_modified's, in dgm-eval's order."""
    from fidkit.sources import dgm_eval_indices
    g = np.random.default_rng(8)
    wide = [np.tile(f, (1, 128)) + 0.01 * g.normal(size=(len(f), 2048)) for f in _sets(g, 16, 330, 200, 240)]
    wide[0] = wide[0][dgm_eval_indices(330, 300)]
    a = _features_file(tmp_path / "a.npz", wide[0], nsample=300, nsample_seed=13579, nsample_from=330)
    t, b = (_features_file(tmp_path / f"{n}.npz", f) for n, f in zip("tb", wide[1:]))
    metrics = "kd-dgm-eval,ct-dgm-eval,ct-test-dgm-eval,ct-modified-dgm-eval"
    r = fidkit.compare(a, b, metrics=metrics, test=t, nsample=300, device="cpu")
    assert r.scores["dgm_eval_draws"] == "replayed"
    assert r.scores["dgm_eval_draw_order"] == "kd,ct,ct_test,ct_modified" and r.scores["n_test"] == 200
    fa, ft, fb = (np.asarray(f, np.float32) for f in wide)
    rng = np.random.RandomState(13579)
    rng.choice(330, 300, replace=False)  # A's cut: the only one, so the last
    S.dgm_eval_kd(fa, fb, rng)
    want = {v: S.dgm_eval_ct(fa, ft, fb, rng, v) for v in S.DGM_EVAL_CT_VARIANTS}
    assert {v: r.scores[f"dgm_eval_{v}"] for v in want} == want
    with pytest.raises(FidkitError, match=r"ct-test-dgm-eval \(dgm-eval's ct_test\) needs a set of real images"):
        fidkit.compare(a, b, metrics="ct-test-dgm-eval", device="cpu")
    with pytest.raises(StatsError, match="the first half of the test set, which needs at least 64 images"):
        fidkit.compare(a, b, metrics="ct-test-dgm-eval", test=_features_file(tmp_path / "s.npz", ft[:100]),
                       device="cpu")


def test_compare_asks_for_scikit_learn_before_any_pass(monkeypatch, tmp_path):
    from fidkit import api
    monkeypatch.setitem(sys.modules, "sklearn.cluster", None)
    monkeypatch.setattr(api, "_one_pass", lambda *a, **k: pytest.fail("a pass ran before the refusal"))
    with pytest.raises(StatsError, match=r"install scikit-learn"):
        fidkit.compare(tmp_path, tmp_path, metrics="ct-modified-dgm-eval", test=tmp_path, device="cpu")
