"""The encoders through the pipeline, the API and the command line, end to end, with reduced
random DINOv2 and CLIP weights written in the official formats (Meta's state dict, OpenAI's
TorchScript archive): the architecture is read from the file, so a 2-block network of width 64
runs in CI where ViT-L would take minutes an image. The scores of such weights mean nothing;
what is checked is the wiring: JSON keys, that the pipeline's numbers equal those of the
encoder called directly, provenance in statistics files, and the one-line refusals."""

import json

import numpy as np
import pytest
from PIL import Image

import fidkit
from fidkit import distances
from fidkit.cli import main
from fidkit.encoders import ENCODERS, get_encoder
from fidkit.encoders import clip as fclip
from fidkit.encoders import dinov2 as fdino
from fidkit.errors import StatsError
from fidkit.frechet import frechet_distance
from fidkit.sources import decode, list_images
from fidkit.stats import Statistics

from conftest import DATA
from test_encoder_weights import dino_pth, openai_archive

pytestmark = [pytest.mark.filterwarnings("ignore:.*is not the official:fidkit.errors.FidkitWarning"),
              pytest.mark.filterwarnings("ignore:.*feature dimensions:fidkit.errors.FidkitWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")]

RUN = ["--device", "cpu", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("encoders")
    dino_pth(d / "dinov2.pth")
    openai_archive(d / "clip.pt")
    # 30 + 30 small images from tests/data (crops and flips), enough for FD∞'s smallest subset of 3
    for side, name in (("a", "real_a"), ("b", "real_b")):
        out = d / side
        out.mkdir()
        for i, f in enumerate(list_images(DATA / name)):
            img = decode(f)
            for j, v in enumerate((img, img[:, ::-1], img[::-1])):
                Image.fromarray(np.ascontiguousarray(v)).resize((40 + 4 * j, 40)).save(out / f"{i:02d}_{j}.png")
    return d


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FIDKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FIDKIT_NO_DOWNLOAD", "1")
    for var in (fdino.SOURCE.env_var, fclip.SOURCE.env_var):
        monkeypatch.delenv(var, raising=False)


def cli(capsys, monkeypatch, *args):
    """Runs ``fidkit ARGS`` in this process; returns (exit status, stdout, stderr)."""
    import warnings
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def direct(name, weights, folder, mode=None):
    """Features of a folder from the encoder called directly (no pipeline)."""
    enc = get_encoder(name, weights=weights, mode=mode)
    return enc.encode([decode(f) for f in list_images(folder)])[enc.default_feature].astype(np.float64)


def fd_of(fa, fb):
    return frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False)).fid


def test_architecture_read_from_the_file(files):
    assert fdino.config_of(__import__("torch").load(files / "dinov2.pth"))["depth"] == 2
    enc = get_encoder("clip-vitl14-336", weights=files / "clip.pt")
    assert enc.outputs == {"embedding": 32} and len(enc.net.transformer.resblocks) == 2


def test_cli_dinov2_fd_kid_pr_fd_inf(files, capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "compute", files / "a", files / "b", "--encoder", "dinov2-vitl14",
                         "--encoder-weights", files / "dinov2.pth", "--metrics", "fd,kid,pr,fd-inf", "--bootstrap", 5, "--json", *RUN)
    assert code == 0, err
    r = json.loads(out)
    assert r["fd_dinov2_ci_low"] <= r["fd_dinov2_ci_high"] and r["fd_dinov2_bootstrap_std"] > 0
    assert not [k for k in r if k.startswith("fid")], r  # no Inception-named key in DINOv2's JSON
    assert r["encoder"] == "dinov2-vitl14" and r["protocol"] == "edm2" and r["fd_dinov2_raw"] >= r["fd_dinov2"]
    for key in ("fd_dinov2", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
                "fd_dinov2_inf", "fd_dinov2_inf_slope", "fd_dinov2_inf_sizes", "fd_dinov2_inf_values"):
        assert key in r, key
    assert r["n_a"] == r["n_b"] == 30 and len(r["fd_dinov2_inf_sizes"]) == 15
    fa, fb = direct("dinov2-vitl14", files / "dinov2.pth", files / "a"), \
        direct("dinov2-vitl14", files / "dinov2.pth", files / "b")
    assert r["fd_dinov2"] == pytest.approx(fd_of(fa, fb), rel=1e-5)
    inf = distances.fd_infinity(fa, fb)  # the Python default seed is the CLI's: the same subsets
    assert r["fd_dinov2_inf"] == pytest.approx(inf.value, rel=1e-4) and r["fd_dinov2_inf_seed"] == inf.seed == 2020


def test_dgm_eval_mode_says_when_dgm_eval_would_cut_the_sets(files, monkeypatch):
    """dgm-eval reads a seeded 50,000 of each larger set (its --nsample default): with its resize
    and a larger set, fidkit says so unless nsample is given (here the limit is lowered to 20)."""
    import fidkit.api
    monkeypatch.setattr(fidkit.api, "DGM_EVAL_NSAMPLE", 20)
    kw = dict(encoder="dinov2-vitl14", encoder_weights=files / "dinov2.pth", protocol="dgm-eval", device="cpu",
              workers=0)
    with pytest.warns(fidkit.FidkitWarning, match="A holds 30 images and B holds 30 images; dgm-eval, whose resize "
                                                  "--protocol dgm-eval reproduces, reads a seeded 20 of each set"):
        r = fidkit.compare(files / "a", files / "b", **kw)
    assert (r.n_a, r.n_b) == (30, 30)
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*reads a seeded", category=fidkit.FidkitWarning)
        r = fidkit.compare(files / "a", files / "b", nsample=20, **kw)
    assert (r.n_a, r.n_b, r.scores["nsample_from_a"]) == (20, 20, 30)
    # statistics of more images: from fidkit stats (warned there too), then in a comparison
    with pytest.warns(fidkit.FidkitWarning, match="holds 30 images; dgm-eval"):
        st = fidkit.compute_stats(files / "a", **kw)
    with pytest.warns(fidkit.FidkitWarning, match="A's statistics file is of 30 images; dgm-eval"):
        fidkit.compare(st, files / "b", nsample=None, **kw)
    from fidkit.sources import as_images
    with pytest.warns(fidkit.FidkitWarning, match="is of 30 images; dgm-eval"):  # statistics loaded in stats' way
        fidkit.compute_stats(st, **kw)
    with pytest.warns(fidkit.FidkitWarning, match="holds 30 images; dgm-eval"):  # images already listed
        fidkit.compute_stats(as_images(str(files / "a")), **kw)
    with pytest.warns(fidkit.FidkitWarning, match="whose resize --protocol dgm-eval-clean reproduces"):
        fidkit.compute_stats(files / "a", **{**kw, "protocol": "dgm-eval-clean"})


def test_an_adm_reference_batch_gives_its_images_to_another_encoder(files, tmp_path, capsys, monkeypatch):
    """An ADM reference batch holds Inception's statistics and its images: DINOv2 reads the images."""
    arr = np.stack([np.asarray(Image.open(f).convert("RGB").resize((40, 40))) for f in list_images(files / "a")])
    np.savez(tmp_path / "ref.npz", arr_0=arr, mu=np.zeros(2048), sigma=np.eye(2048))
    kw = dict(encoder="dinov2-vitl14", encoder_weights=files / "dinov2.pth", device="cpu", workers=0)
    r = fidkit.compare(str(tmp_path / "ref.npz"), files / "b", **kw)
    assert r.n_a == 30 and r.fid == pytest.approx(fidkit.compare(arr, files / "b", **kw).fid, rel=1e-9)
    assert fidkit.compute_stats(str(tmp_path / "ref.npz"), **kw).n == 30
    st = fidkit.compute_stats(str(tmp_path / "ref.npz"), **kw)
    assert st.n == 30 and st.encoder == "dinov2-vitl14"
    code, out, err = cli(capsys, monkeypatch, "stats", tmp_path / "ref.npz", "--shard", "0/2", "--encoder",
                         "dinov2-vitl14", "--encoder-weights", files / "dinov2.pth", "-o", tmp_path / "part.npz",
                         "--json", *RUN)
    assert code == 0 and json.loads(out)["n"] == 15, err  # the first half of its images
    # two reference batches are images for DINOv2: a bootstrap resamples them
    r = fidkit.compare(str(tmp_path / "ref.npz"), str(tmp_path / "ref.npz"), bootstrap=3, **kw)
    assert r.scores["bootstrap_resamples"] == 3


def test_cli_clip_cmmd(files, capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "compute", str(DATA / "real_a"), str(DATA / "real_b"), "--encoder",
                         "clip-vitl14-336", "--encoder-weights", files / "clip.pt", "--metrics", "cmmd", "--json",
                         *RUN)
    assert code == 0, err
    r = json.loads(out)
    assert r["protocol"] == "cmmd" and "fd_clip" in r and "fid" not in r
    ea = direct("clip-vitl14-336", files / "clip.pt", str(DATA / "real_a"))
    eb = direct("clip-vitl14-336", files / "clip.pt", str(DATA / "real_b"))
    assert r["cmmd"] == pytest.approx(distances.cmmd(ea, eb), rel=1e-5, abs=1e-9)


def test_api_and_statistics_files(files, tmp_path, capsys, monkeypatch):
    w = files / "dinov2.pth"
    r = fidkit.compare(files / "a", files / "b", encoder="dinov2-vitl14", encoder_weights=w, metrics="fd,kid",
                       device="cpu", workers=0, protocol="dgm-eval")
    assert r.fd_key == "fd_dinov2" and r.protocol == "dgm-eval" and "kid_mean" in r.scores
    fa = direct("dinov2-vitl14", w, files / "a", "dgm-eval")
    fb = direct("dinov2-vitl14", w, files / "b", "dgm-eval")
    assert r.fid == pytest.approx(fd_of(fa, fb), rel=1e-5)
    # statistics record encoder, mode and weights digest, and serve a later comparison
    code, out, err = cli(capsys, monkeypatch, "stats", files / "a", "-o", tmp_path / "a.npz", "--encoder",
                         "dinov2-vitl14", "--encoder-weights", w, "--protocol", "dgm-eval", "--json", *RUN)
    assert code == 0, err
    info = json.loads(out)
    st = Statistics.load(tmp_path / "a.npz")
    assert (st.encoder, st.protocol, st.dim, st.n) == ("dinov2-vitl14", "dgm-eval", 64, 30)
    assert info["encoder"] == "dinov2-vitl14" and info["features"] == ["cls"]
    from fidkit._io import file_sha256
    assert st.weights_digest == file_sha256(w)
    r2 = fidkit.compare(tmp_path / "a.npz", files / "b", encoder="dinov2-vitl14", encoder_weights=w,
                        protocol="dgm-eval", device="cpu", workers=0)
    assert r2.fid == pytest.approx(r.fid, rel=1e-9)
    assert r2.scores["statistics_from_file_a"] == ["cls"]  # DINOv2's feature, not Inception's pool3
    # the file is refused for another encoder or mode, and beside another encoder's statistics
    with pytest.raises(StatsError, match="made with encoder 'dinov2-vitl14', not 'inception'"):
        fidkit.compare(tmp_path / "a.npz", files / "b", device="cpu", workers=0)
    with pytest.raises(StatsError, match="protocol 'dgm-eval', not 'edm2'"):
        fidkit.compute_stats(tmp_path / "a.npz", encoder="dinov2-vitl14")
    Statistics(np.zeros(2048), np.eye(2048), 5).save(tmp_path / "inception.npz")
    code, out, err = cli(capsys, monkeypatch, "compute", tmp_path / "a.npz", tmp_path / "inception.npz",
                         "--encoder", "dinov2-vitl14", "--protocol", "dgm-eval", "--allow-mismatch")
    assert code == 1 and err.count("\n") == 1
    assert "inception.npz was made with encoder 'inception', not 'dinov2-vitl14'" in err
    with pytest.raises(StatsError, match="statistics of two encoders"):  # in memory: no encoder to check against
        fidkit.frechet_distance(Statistics.load(tmp_path / "a.npz"), Statistics.load(tmp_path / "inception.npz"),
                                allow_mismatch=True)
    import fidkit.api as api
    monkeypatch.setattr(api, "extract", lambda *a, **k: pytest.fail("an image was read"))
    code, out, err = cli(capsys, monkeypatch, "compute", tmp_path / "a.npz", files / "b", "--allow-mismatch", *RUN)
    assert code == 1 and "made with encoder 'dinov2-vitl14', not 'inception'" in err  # before B is read
    code, out, err = cli(capsys, monkeypatch, "compute", tmp_path / "a.npz", files / "b", "--encoder",
                         "clip-vitl14-336", "--metrics", "cmmd")
    assert code == 1 and "CMMD needs the features of every image" in err


def test_old_files_are_inception():
    st = Statistics.load(sorted((DATA.parent.parent / "reference_stats").glob("*.npz"))[0])
    assert st.encoder == "inception"
    assert "encoder" not in st.meta()  # Inception files keep their bytes


@pytest.mark.parametrize("args, says", [
    (["--encoder", "nope"], "unknown encoder 'nope'; choose one of " + ", ".join(ENCODERS)),
    (["--encoder", "dinov2-vitl14", "--metrics", "sfid"], "needs the 'spatial' feature, which encoder "
                                                          "'dinov2-vitl14' does not give; use --encoder inception"),
    (["--encoder", "dinov2-vitl14", "--metrics", "is"], "use --encoder inception"),
    (["--encoder", "clip-vitl14-336", "--metrics", "adm-pr"], "use --encoder inception"),
    (["--metrics", "cmmd"], "needs the 'embedding' feature, which encoder 'inception' does not give; "
                            "use --encoder clip-vitl14-336"),
    (["--encoder", "dinov2-vitl14", "--protocol", "ttur"], "encoder 'dinov2-vitl14' has no preprocessing mode "
                                                           "'ttur' (ttur is a mode of inception: leave out --encoder); "
                                                           "choose one of edm2, dgm-eval, dgm-eval-clean"),
    (["--protocol", "edm2"], "encoder 'inception' has no preprocessing mode 'edm2' (edm2 is a mode of dinov2-vitl14: "
                             "add --encoder dinov2-vitl14); choose one of ttur, pytorch-fid, clean, nvidia"),
])
def test_refused_in_one_line(args, says, capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "compute", str(DATA / "real_a"), str(DATA / "real_b"), *args)
    assert code == 1 and err.count("\n") == 1 and says in err, err


def test_fd_inf_and_bootstrap_keep_a_statistics_file_fixed(files, tmp_path, capsys, monkeypatch):
    """FD∞ needs only B's features and the bootstrap resamples only the side with images: a
    statistics file's mean and covariance stand in for its images (on either side for the
    bootstrap, as A for FD∞)."""
    w = ["--encoder", "dinov2-vitl14", "--encoder-weights", files / "dinov2.pth"]
    code, out, err = cli(capsys, monkeypatch, "stats", files / "a", "-o", tmp_path / "a.npz", *w, *RUN)
    assert code == 0, err
    code, out, err = cli(capsys, monkeypatch, "compute", tmp_path / "a.npz", files / "b", *w, "--metrics",
                         "fd,fd-inf", "--bootstrap", 20, "--json", *RUN)
    assert code == 0, err
    r = json.loads(out)
    st = Statistics.load(tmp_path / "a.npz")
    fb = direct("dinov2-vitl14", files / "dinov2.pth", files / "b")
    inf = distances.fd_infinity((st.mu, st.sigma), fb, seed=2020)
    assert r["fd_dinov2_inf"] == pytest.approx(inf.value, rel=1e-5)
    assert r["fd_dinov2_ci_low"] <= r["fd_dinov2"] * 1.5 and r["fd_dinov2_ci_low"] <= r["fd_dinov2_ci_high"]
    code, out, err = cli(capsys, monkeypatch, "compute", files / "b", tmp_path / "a.npz", *w, "--bootstrap", 20,
                         "--json", *RUN)
    assert code == 0, err
    swapped = json.loads(out)
    assert swapped["fd_dinov2"] == pytest.approx(r["fd_dinov2"], rel=1e-9)
    assert (swapped["fd_dinov2_ci_low"], swapped["fd_dinov2_ci_high"]) == pytest.approx(
        (r["fd_dinov2_ci_low"], r["fd_dinov2_ci_high"]), rel=1e-9)  # the same resamples of b's features
    code, out, err = cli(capsys, monkeypatch, "compute", files / "b", tmp_path / "a.npz", *w, "--metrics", "fd-inf",
                         *RUN)
    assert code == 1 and "statistics file" in err and err.count("\n") == 1, err  # B's images are what FD∞ fits
    code, out, err = cli(capsys, monkeypatch, "adm", tmp_path / "a.npz", tmp_path / "a.npz", *RUN)
    assert code == 1 and "made with encoder 'dinov2-vitl14', not 'inception'" in err, err  # ADM's is Inception's


def test_fd_inf_refused_when_too_few_images(files, capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "compute", str(DATA / "real_a"), str(DATA / "real_b"), "--encoder",
                         "dinov2-vitl14", "--encoder-weights", files / "dinov2.pth", "--metrics", "fd-inf", *RUN)
    assert code == 1 and "fidkit: error:" in err and "FD" in err
    assert len([l for l in err.splitlines() if l.startswith("fidkit: error")]) == 1


def test_edm2_pickle_gives_each_encoder_its_detector(files, tmp_path, capsys, monkeypatch):
    """EDM2's reference pickle holds Inception's ``fid`` and DINOv2's ``fd_dinov2``: with
    ``--encoder dinov2-vitl14`` the second is the reference (mode edm2), without it the first."""
    import pickle
    w = files / "dinov2.pth"
    fa = direct("dinov2-vitl14", w, files / "a")  # mode edm2, EDM2's own
    fb = direct("dinov2-vitl14", w, files / "b")
    rng = np.random.default_rng(3)
    pool = rng.normal(size=(40, 2048))
    ref = {"num_images": 30, "fid": {"mu": pool.mean(0), "sigma": np.cov(pool, rowvar=False)},
           "fd_dinov2": {"mu": fa.mean(0), "sigma": np.cov(fa, rowvar=False)}}
    (tmp_path / "ref.pkl").write_bytes(pickle.dumps(ref))
    st = Statistics.load(tmp_path / "ref.pkl", encoder="dinov2-vitl14")
    assert (st.encoder, st.protocol, st.dim, st.n, st.extra["detector"]) == ("dinov2-vitl14", "edm2", 64, 30,
                                                                            "fd_dinov2")
    assert Statistics.load(tmp_path / "ref.pkl").encoder == "inception"
    code, out, err = cli(capsys, monkeypatch, "compute", tmp_path / "ref.pkl", files / "b", "--encoder",
                         "dinov2-vitl14", "--encoder-weights", w, "--json", *RUN)
    assert code == 0, err
    r = json.loads(out)
    assert r["fd_dinov2"] == pytest.approx(fd_of(fa, fb), rel=1e-5) and r["n_a"] == 30
    # the other mode is refused as for any statistics of another protocol
    code, out, err = cli(capsys, monkeypatch, "compute", tmp_path / "ref.pkl", files / "b", "--encoder",
                         "dinov2-vitl14", "--encoder-weights", w, "--protocol", "dgm-eval", *RUN)
    assert code == 1 and "protocol 'edm2', not 'dgm-eval'" in err
    # a pickle without DINOv2 statistics says what it holds
    del ref["fd_dinov2"]
    (tmp_path / "fid_only.pkl").write_bytes(pickle.dumps(ref))
    code, out, err = cli(capsys, monkeypatch, "compute", tmp_path / "fid_only.pkl", files / "b", "--encoder",
                         "dinov2-vitl14", "--encoder-weights", w, *RUN)
    assert code == 1 and err.count("\n") == 1
    assert "no statistics for encoder 'dinov2-vitl14' (it holds: fid (inception))" in err


def test_fid_metric_object_in_dinov2_space(files, tmp_path):
    """fidkit.FID(encoder=...) in a training loop: FD_DINOv2 of updates equals the pipeline's on
    the same images, the reference's provenance is checked, and keep_features keeps the CLS token."""
    import torch
    w = files / "dinov2.pth"
    imgs = np.stack([decode(f) for f in list_images(files / "b") if f.name.endswith("_0.png")])  # one size
    ref = fidkit.compute_stats(files / "a", encoder="dinov2-vitl14", encoder_weights=w, device="cpu", workers=0)
    metric = fidkit.FID(ref, encoder="dinov2-vitl14", encoder_weights=w, device="cpu", keep_features=True)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    metric.update(x[:4])
    metric.update(x[4:])
    direct_b = fidkit.compute_stats(imgs, encoder="dinov2-vitl14", encoder_weights=w, device="cpu")
    got = metric.compute_stats()
    assert (got.encoder, got.protocol, got.n, got.dim) == ("dinov2-vitl14", "edm2", len(imgs), 64)
    np.testing.assert_allclose(got.mu, direct_b.mu, rtol=1e-12, atol=1e-12)
    assert metric.compute() == pytest.approx(fidkit.frechet_distance(ref, direct_b).fid, rel=1e-9)
    assert metric.features().shape == (len(imgs), 64)
    assert "encoder='dinov2-vitl14'" in repr(metric)
    # an Inception reference, or the other mode's, is refused
    with pytest.raises(StatsError, match="made with encoder 'inception', not 'dinov2-vitl14'"):
        fidkit.FID(Statistics(np.zeros(64), np.eye(64), 100), encoder="dinov2-vitl14", encoder_weights=w,
                   device="cpu")
    with pytest.raises(StatsError, match="protocol 'edm2', not 'dgm-eval'"):
        fidkit.FID(ref, encoder="dinov2-vitl14", encoder_weights=w, protocol="dgm-eval", device="cpu")
