"""The command line end to end with the real weights on a small set of real images."""
import json
import pathlib

import numpy as np
import pytest
import torch

import fidkit
from conftest import run_fidkit as run
from fidkit.stats import Statistics

# FID of tests/data/real_a vs real_b from the reference implementations with the same
# weights (values and how they were obtained: tests/data/README.md)
REFERENCE = {"ttur": 275.9083691694693,         # torch-fidelity 0.4.0
             "pytorch-fid": 279.7848234423883,  # pytorch-fid 0.3.0
             "clean": 313.70841684569416}       # clean-fid 0.1.35, mode clean




@pytest.fixture(scope="module")
def folder_result(real_a, real_b, real_weights):
    r = run("compute", real_a, real_b, "--json", "--device", "cpu", "--workers", "1")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout  # exactly one JSON object on stdout
    return json.loads(lines[0]), r.stderr


def test_compute_two_folders_prints_one_json_object(folder_result, real_weights):
    out, stderr = folder_result
    assert out["protocol"] == "ttur" and out["n_a"] == 10 and out["n_b"] == 10
    assert out["weights_digest"] == real_weights.digest
    assert out["fid"] == pytest.approx(REFERENCE["ttur"], rel=1e-5)
    assert "fewer than" in stderr or "not more than" in stderr  # 10 images << 2048 dimensions: warned
    assert out["negative_eigenvalue_mass"] >= 0 and "clamped_sqrt" in out  # always in --json


def test_plain_output_has_no_rounding_note(real_a, real_b):
    r = run("compute", real_a, real_b, "--device", "cpu", "--workers", "1")
    assert r.stdout.startswith("FID: ") and "eigenvalue" not in r.stderr, r.stderr


def test_stats_then_compare_equals_folder_to_folder(tmp_path, real_a, real_b, folder_result):
    r = run("stats", real_a, "-o", tmp_path / "a.npz", "--json", "--device", "cpu", "--batch-size", "3")
    info = json.loads(r.stdout)
    assert info["n"] == 10 and info["protocol"] == "ttur"
    st = Statistics.load(tmp_path / "a.npz")
    assert st.n == 10 and st.weights_digest == folder_result[0]["weights_digest"]
    r = run("compute", tmp_path / "a.npz", real_b, "--json", "--device", "cpu", "--workers", "0")
    value = json.loads(r.stdout)["fid"]
    assert value == pytest.approx(folder_result[0]["fid"], rel=1e-6)  # batch size 3 vs 32, workers 0 vs 1
    # the Python API gives the same number
    assert fidkit.fid(str(tmp_path / "a.npz"), str(real_b), device="cpu") == pytest.approx(value, rel=1e-9)


def test_protocols_differ_and_mismatch_is_refused(tmp_path, real_a, real_b):
    run("stats", real_a, "-o", tmp_path / "clean.npz", "--protocol", "clean", "--device", "cpu")
    r = run("compute", tmp_path / "clean.npz", real_b, "--device", "cpu", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("fidkit: error:") and "protocol 'clean'" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("compute", tmp_path / "clean.npz", tmp_path / "clean.npz", "--allow-mismatch", "--json")
    out = json.loads(r.stdout)
    assert out["fid"] == pytest.approx(0, abs=1e-6)  # the flag lets another protocol through
    assert out["protocol"] == "clean"  # what was compared, not the default asked for
    run("stats", real_a, "-o", tmp_path / "ttur.npz", "--device", "cpu")
    r = run("compute", tmp_path / "clean.npz", tmp_path / "ttur.npz", "--allow-mismatch")
    assert "(protocol clean for A, ttur for B, 10 vs 10 images" in r.stdout
    assert "statistics_from_file_a: pool3\n" in r.stdout  # a plain line, not a Python list
    r = run("compute", tmp_path / "clean.npz", real_b, "--protocol", "clean", "--json", "--device", "cpu")
    out = json.loads(r.stdout)
    assert out["protocol"] == "clean" and out["fid"] == pytest.approx(REFERENCE["clean"], rel=1e-5)


def test_pytorch_fid_protocol_matches_its_reference(real_a, real_b):
    r = fidkit.compare(str(real_a), str(real_b), protocol="pytorch-fid", device="cpu", workers=0)
    assert (r.protocol, r.n_a, r.n_b) == ("pytorch-fid", 10, 10)
    assert r.fid == pytest.approx(REFERENCE["pytorch-fid"], rel=1e-5)


def test_errors_are_one_line_with_exit_codes(tmp_path, real_a):
    r = run("compute", tmp_path / "missing", real_a, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no such file or folder" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run("compute", tmp_path / "empty", real_a, check=False)
    assert r.returncode == 1 and "no images found" in r.stderr
    r = run("compute", real_a, check=False)  # usage error
    assert r.returncode == 2
    r = run("compute", real_a, real_a, "--protocol", "nope", check=False)
    assert r.returncode == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("not an image")
    r = run("stats", tmp_path / "bad", "-o", tmp_path / "out.npz", check=False)
    assert r.returncode == 1 and "x.png: cannot decode image" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.npz").exists()


def test_shards_merge_into_the_whole(tmp_path, real_a):
    for i in (0, 1):
        run("stats", real_a, "--shard", f"{i}/2", "-o", tmp_path / f"s{i}.npz", "--device", "cpu", "--workers", "0")
    assert Statistics.load(tmp_path / "s0.npz").n == 5 and Statistics.load(tmp_path / "s0.npz").extra["shard"] == "0/2"
    run("stats", "merge", tmp_path / "s0.npz", tmp_path / "s1.npz", "-o", tmp_path / "all.npz")
    run("stats", real_a, "-o", tmp_path / "whole.npz", "--device", "cpu", "--workers", "0")
    m, w = Statistics.load(tmp_path / "all.npz"), Statistics.load(tmp_path / "whole.npz")
    assert m.n == w.n == 10 and "shard" not in m.extra
    np.testing.assert_allclose(m.mu, w.mu, rtol=1e-6, atol=1e-9)  # same features up to batch composition
    np.testing.assert_allclose(m.sigma, w.sigma, rtol=1e-5, atol=1e-9)
    r = run("stats", real_a, "--shard", "2/2", "-o", tmp_path / "x.npz", check=False)
    assert r.returncode == 1 and "0 ≤ i < k" in r.stderr


def test_shards_of_a_sample_batch_merge_into_the_whole(tmp_path):
    """--shard splits a sample batch's images as it splits a folder's files (a compressed
    .npz: streamed in order; an .npy: read at offsets)."""
    from fidkit.sources import shard, shardable
    images = np.random.default_rng(0).integers(0, 256, (9, 24, 24, 3), dtype=np.uint8)
    np.savez_compressed(tmp_path / "b.npz", arr_0=images)
    np.save(tmp_path / "b.npy", images)
    for name in ("b.npz", "b.npy"):
        parts = [shard(shardable(str(tmp_path / name)), f"{i}/2") for i in (0, 1)]
        assert [len(p) for p in parts] == [4, 5] and parts[1].name.endswith("(shard 1/2)")
        assert np.array_equal(np.stack([p[i] for p in parts for i in range(len(p))]), images)
        assert parts[1].label(0) == shardable(str(tmp_path / name)).label(4)
    for i in (0, 1):
        run("stats", tmp_path / "b.npz", "--shard", f"{i}/2", "-o", tmp_path / f"s{i}.npz", "--device", "cpu",
            "--workers", "1", "--batch-size", "2")
    run("stats", "merge", tmp_path / "s0.npz", tmp_path / "s1.npz", "-o", tmp_path / "all.npz")
    run("stats", tmp_path / "b.npz", "-o", tmp_path / "whole.npz", "--device", "cpu", "--workers", "1",
        "--batch-size", "2")
    m, w = Statistics.load(tmp_path / "all.npz"), Statistics.load(tmp_path / "whole.npz")
    assert m.n == w.n == 9
    np.testing.assert_allclose(m.mu, w.mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m.sigma, w.sigma, rtol=1e-5, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("protocol", sorted(REFERENCE))
def test_cuda_strict_fp32_matches_the_references(real_a, real_b, protocol):
    # on CUDA the network runs with batch norm folded and fused convolution + ReLU
    r = fidkit.compare(str(real_a), str(real_b), protocol=protocol, device="cuda", workers=2)
    assert r.fid == pytest.approx(REFERENCE[protocol], rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_fast_modes_run_and_stay_close(real_a, real_b):
    for precision in ("tf32", "bf16"):
        r = fidkit.compare(str(real_a), str(real_b), device="cuda", workers=2, precision=precision)
        assert r.fid == pytest.approx(REFERENCE["ttur"], rel=2e-2)


def test_every_precision_has_its_convolution_arithmetic_and_the_fast_ones_need_cuda(real_a, tmp_path):
    # the CUDA tests above skip without a GPU; the network each precision builds must not
    from fidkit.api import conv_arithmetic
    from fidkit.pipeline import PRECISIONS
    assert conv_arithmetic("fp32") is None and conv_arithmetic("tf32") is None and conv_arithmetic("bf16") is None
    assert conv_arithmetic("tf32x3") is not None and conv_arithmetic("tf32", "nearest") is not None
    for precision in PRECISIONS[1:]:
        out = tmp_path / f"{precision}.npz"
        r = run("stats", real_a, "-o", out, "--precision", precision, "--device", "cpu", check=False)
        assert r.returncode == 1 and not out.exists()
        assert r.stderr.strip() == (f"fidkit: error: precision {precision} needs a CUDA device; on cpu fidkit "
                                    f"computes in fp32")


def test_a_device_torch_does_not_know_is_one_line(real_a, real_b, tmp_path):
    for device, said in (("gpu", "device 'gpu' is not a device name torch reads; use auto, cpu, cuda or cuda:N"),
                         ("cuda:x", "device 'cuda:x' is not a device name torch reads")):
        r = run("compute", real_a, real_b, "--device", device, check=False)
        assert r.returncode == 1 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert "unexpected" not in r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tf32x3_stays_within_1e6_of_strict_fp32(real_a, real_b):
    # emulated on the CPU (tests/test_precision_emulation.py) it moves this FID by ~2e-7
    fp32 = fidkit.compare(str(real_a), str(real_b), device="cuda", workers=2)
    r = fidkit.compare(str(real_a), str(real_b), device="cuda", workers=2, precision="tf32x3")
    assert r.network_precision == "tf32x3" and r.as_dict()["network_precision"] == "tf32x3"
    assert abs(r.fid - fp32.fid) / fp32.fid < 1e-6


def test_help_defaults_come_from_the_code_constants():
    from click.testing import CliRunner

    from fidkit import pipeline
    from fidkit.cli import cli
    text = " ".join(CliRunner().invoke(cli, ["compute", "--help"], terminal_width=400).output.split())
    assert f"default: {pipeline.BATCH_SIZE_CPU} on the CPU, {pipeline.BATCH_SIZE_CUDA} on CUDA" in text
    assert f"from 1 to {pipeline.MAX_DEFAULT_WORKERS}" in text
    assert f"default: {pipeline.PRECISIONS[0]}" in text


def test_a_pr_option_without_its_metric_is_a_warning():
    # two statistics files: FID only, no image read; --pr-k / --pr-distances would change nothing
    ref = str(pathlib.Path(__file__).resolve().parents[1] / "reference_stats" / "fashion-mnist-test.npz")
    r = run("compute", ref, ref, "--pr-k", "5", "--pr-distances", "float32", "--json")
    assert json.loads(r.stdout)["fid"] == pytest.approx(0, abs=1e-6)
    warned = [line for line in r.stderr.splitlines() if line.startswith("fidkit: warning:")]
    assert any("--pr-k applies to --metrics pr" in w for w in warned), r.stderr
    assert any("--pr-distances applies to --metrics adm-pr" in w for w in warned), r.stderr


def test_nvidia_protocol_end_to_end(tmp_path, real_a, real_b, folder_result):
    run("stats", real_a, "-o", tmp_path / "a.npz", "--protocol", "nvidia", "--device", "cpu", "--workers", "0")
    assert fidkit.Statistics.load(tmp_path / "a.npz").protocol == "nvidia"
    r = run("compute", tmp_path / "a.npz", real_b, "--protocol", "nvidia", "--json", "--device", "cpu",
            "--workers", "0")
    out = json.loads(r.stdout)
    assert out["protocol"] == "nvidia"
    # NVIDIA's resize moves the last digits only (tests/data: 32x32 images)
    assert out["fid"] == pytest.approx(folder_result[0]["fid"], rel=1e-4) and out["fid"] != folder_result[0]["fid"]
    r = run("compute", tmp_path / "a.npz", real_b, "--device", "cpu", "--workers", "0", check=False)
    assert r.returncode == 1 and "protocol 'nvidia'" in r.stderr


def test_biased_covariance_is_stylegans_fid():
    # StyleGAN2-ADA/StyleGAN3: cov = E[x xᵀ] − μμᵀ (1/N); fidkit's files hold 1/(N−1) and N
    ref = pathlib.Path(__file__).resolve().parents[1] / "reference_stats"
    a, b = str(ref / "fashion-mnist-test.npz"), str(ref / "fashion-mnist-train.npz")
    out = json.loads(run("compute", a, b, "--biased-covariance", "--json").stdout)
    sa, sb = fidkit.Statistics.load(a), fidkit.Statistics.load(b)
    want = fidkit.frechet_distance((sa.mu, sa.sigma * (sa.n - 1) / sa.n), (sb.mu, sb.sigma * (sb.n - 1) / sb.n))
    assert out["fid"] == pytest.approx(float(want), rel=1e-9) and out["covariance"] == "1/N"
    plain = json.loads(run("compute", a, b, "--json").stdout)
    assert "covariance" not in plain and plain["fid"] != out["fid"]
    # only the Fréchet distance: refused with what no evaluator computes that way
    r = run("compute", a, b, "--biased-covariance", "--metrics", "sfid", check=False)
    assert r.returncode == 1 and "applies to the Fréchet distance alone" in r.stderr


def test_biased_covariance_refuses_a_file_without_an_image_count_before_reading_images(tmp_path, real_b):
    np.savez(tmp_path / "plain.npz", mu=np.zeros(2048), sigma=np.eye(2048))  # as EDM's and pytorch-fid's files
    r = run("compute", tmp_path / "plain.npz", real_b, "--biased-covariance", "--progress", check=False)
    assert r.returncode == 1 and "do not record an image count" in r.stderr
    assert "B " not in r.stderr.split("error:")[0]  # no progress of B's images before the error
    assert r.stderr.count("\n") == 1 and "warning" not in r.stderr  # the refusal alone, not the file's warning first


def test_subset_indices_are_nvidias_dataset_max_size():
    from fidkit.sources import subset_indices
    # EDM/EDM2 training/dataset.py: RandomState(seed % (1 << 31)).shuffle(arange), then
    # sort(idx[:max_size]); numpy's RandomState stream is frozen (NEP 19), so these stay. Against
    # EDM's and EDM2's own dataset class: python benchmarks/edm_subset_check.py CHECKOUT
    assert subset_indices(10, 4, 0).tolist() == [2, 4, 8, 9]
    assert subset_indices(10, 4, 1).tolist() == [2, 4, 6, 9]
    assert subset_indices(10, 4, (1 << 31) + 1).tolist() == [2, 4, 6, 9]  # the seed taken modulo 2**31
    assert subset_indices(10, 10, 3).tolist() == list(range(10))  # all, unshuffled, when none are left out
    big = subset_indices(100_000, 50_000, 7)
    assert big.dtype == np.int64 and big.size == 50_000 and np.all(np.diff(big) > 0)


def test_subset_scores_the_picked_files_of_b_and_refuses_a_short_b(real_a, real_b, tmp_path):
    import shutil

    from fidkit.sources import list_images, subset_indices
    out = json.loads(run("compute", real_a, real_b, "--subset", "6", "--subset-seed", "3", "--json",
                         "--device", "cpu", "--workers", "0").stdout)
    files = list_images(real_b)
    picked = [files[i] for i in subset_indices(len(files), 6, 3)]
    want = fidkit.compare(real_a, picked, device="cpu", workers=0)
    # B only, as EDM's --num picks generated images only: A is read whole
    assert out["n_a"] == 10 and out["n_b"] == 6 and out["fid"] == pytest.approx(want.fid, rel=1e-9)
    assert (out["subset_n"], out["subset_seed"], out["subset_from"]) == (6, 3, 10)
    # real_b holds 10: a subset of 11 is refused in one line before A's images are read
    r = run("compute", real_a, real_b, "--subset", "11", "--progress", check=False)
    assert r.returncode == 1 and "fewer than the subset of 11" in r.stderr and "A " not in r.stderr.split("error:")[0]
    assert r.stderr.startswith(f"fidkit: error: B {real_b}"), r.stderr
    # a statistics file A is used whole; a statistics file B has no images to pick from
    stats = pathlib.Path(__file__).resolve().parents[1] / "reference_stats" / "fashion-mnist-test.npz"
    out = json.loads(run("compute", stats, real_b, "--subset", "10", "--json", "--device", "cpu",
                         "--workers", "0").stdout)
    assert out["n_a"] == 10000 and out["n_b"] == 10 and out["subset_from"] == 10
    r = run("compute", real_a, stats, "--subset", "10", check=False)
    assert r.returncode == 1 and "picks images of B" in r.stderr and "put the reference first" in r.stderr
    r = run("compute", real_a, real_b, "--subset-seed", "1", "--device", "cpu", "--workers", "0")
    assert "--subset-seed applies to --subset" in r.stderr
    # a folder that EDM and EDM2 would number otherwise (they count macOS metadata files): warned
    shutil.copytree(real_b, tmp_path / "b")
    (tmp_path / "b" / "._0000.png").write_bytes(b"\x00\x05\x16\x07")
    r = run("compute", real_a, tmp_path / "b", "--subset", "6", "--device", "cpu", "--workers", "0")
    assert "EDM would number 11 and EDM2 would number 11 files where fidkit reads 10 (EDM2 counts ._0000.png, " \
           "which fidkit does not read), so this subset is not the one they would pick" in r.stderr, r.stderr
    # B holding exactly the subset: still checked, as EDM would then pick 6 of its 11
    r = run("compute", real_a, tmp_path / "b", "--subset", "10", "--device", "cpu", "--workers", "0")
    assert "would number 11" in r.stderr
    r = run("compute", real_a, real_b, "--subset", "6", "--device", "cpu", "--workers", "0")
    assert "would number" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (("--metrics", "pr", "--pr-k", "10"), "A holds 10 image(s): pr with k = 10 (--pr-k, pr_k=) needs more than 10"),
    (("--metrics", "adm-pr", "--subset", "3"), "B's subset holds 3 image(s): adm-pr (k = 3) needs more than 3"),
    (("--metrics", "kid,fd-inf"), "10 generated images are too few for FD∞"),
])
def test_a_source_too_small_for_a_metric_is_refused_before_any_pass(real_a, real_b, args, message):
    r = run("compute", real_a, real_b, *args, "--progress", check=False)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "A " not in r.stderr.split("error:")[0]  # A's images were not read


def test_subset_of_in_memory_images_is_the_picked_rows(real_a):
    from fidkit.sources import subset_indices
    b = np.random.default_rng(12).integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    idx = subset_indices(12, 5, 2)
    got = fidkit.compare(real_a, b, subset=5, subset_seed=2, device="cpu", workers=0)
    want = fidkit.compare(real_a, b[idx], device="cpu", workers=0)
    assert got.n_b == 5 and got.fid == want.fid and got.scores["subset_from"] == 12
    nchw = torch.from_numpy(b).permute(0, 3, 1, 2)  # torch (N, 3, H, W): the same rows
    assert fidkit.compare(real_a, nchw, subset=5, subset_seed=2, device="cpu", workers=0).fid == want.fid


def test_subset_with_skipped_files_says_it_is_no_longer_edms(real_a, real_b, tmp_path):
    import shutil

    from fidkit.sources import subset_indices
    shutil.copytree(real_b, tmp_path / "b")
    (tmp_path / "b" / "zz_bad.png").write_bytes(b"not a png")  # the 11th file in fidkit's order
    seed = next(s for s in range(100) if 10 in subset_indices(11, 10, s))  # a subset that holds it
    r = run("compute", real_a, tmp_path / "b", "--subset", "10", "--subset-seed", seed, "--skip-bad", "--json",
            "--device", "cpu", "--workers", "0")
    assert json.loads(r.stdout)["n_b"] == 9
    assert "B: scored 9 of the 10 images of the subset (1 skipped as undecodable); EDM and EDM2 would stop" in r.stderr


def test_a_picked_array_stays_a_view_until_its_pass(monkeypatch):
    """A subset of in-memory images holds indices, not a copy, until the pass gathers the rows
    (a CUDA array's copy is not held through A's pass); a torchrun block of it is still a view."""
    import pickle

    from fidkit.sources import ArrayImages, DatasetImages, Picked, as_images, seeded_subset, share_of
    arr = np.random.default_rng(13).integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    p = seeded_subset(as_images(arr), 7, 1)
    assert isinstance(p, Picked) and p.base.array is arr
    g = p.gathered()
    assert isinstance(g, ArrayImages) and np.array_equal(g.array, arr[p.indices])
    part = share_of(p, 2, 5)
    assert isinstance(part, Picked) and np.array_equal(part.gathered().array, arr[p.indices[2:5]])
    from conftest import FASHION_MNIST_MINI
    monkeypatch.setenv("FIDKIT_DATASETS", str(FASHION_MNIST_MINI))  # the clone's 256 test images
    named = seeded_subset(DatasetImages("fashion-mnist-test", 50), 10, 0)  # travels as its name and 10 indices
    assert len(pickle.dumps(named)) < 2000 and isinstance(share_of(named, 0, 5), Picked)


def test_vendi_is_of_bs_features(real_a, real_b, tmp_path):
    out = json.loads(run("compute", real_a, real_b, "--metrics", "vendi", "--json", "--device", "cpu",
                         "--workers", "0").stdout)
    from fidkit.scores import vendi_score
    want = vendi_score(fidkit.features(real_b, device="cpu", workers=0))
    assert out["vendi"] == pytest.approx(want, rel=1e-9) and 1 <= out["vendi"] <= 10
    stats = pathlib.Path(__file__).resolve().parents[1] / "reference_stats" / "fashion-mnist-test.npz"
    r = run("compute", real_a, stats, "--metrics", "vendi", check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "vendi" in r.stderr.lower()
