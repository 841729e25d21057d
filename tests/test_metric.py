"""fidkit.FID (the metric object), evaluate_generator, and the torch.distributed reduction.

The network runs at about 10 images/s on the test CPU, so real-network calls use a few
tiny batches of tests/data; the distributed test uses synthetic features.
"""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fidkit
from fidkit.errors import FidkitError, FidkitWarning, SourceError, StatsError
from fidkit.inception import FEATURE_DIM
from fidkit.metric import reduce_accumulator, to_uint8
from fidkit.stats import Accumulator

DATA = Path(__file__).parent / "data"
README = Path(__file__).parent.parent / "README.md"


def _images(folder, size=32):
    """The 10 images of a test folder as uint8 NCHW (RGB, resized to size×size with PIL)."""
    out = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR))
           for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def imgs():
    """6 images of real_a and 6 of real_b (few: each image costs a network pass)."""
    return _images(DATA / "real_a")[:6], _images(DATA / "real_b")[:6]


@pytest.fixture(scope="module")
def ref_stats(imgs):
    """Statistics of 6 images of real_a (as tensors), computed once."""
    return fidkit.compute_stats(imgs[0], device="cpu")


@pytest.fixture(scope="module")
def filled(ref_stats, imgs):
    """A metric fed 6 images of real_b in two updates, its FID, the accumulator sizes after
    each update and the statistics after the first."""
    m = fidkit.FID(ref_stats, device="cpu", batch_size=2)
    sizes = []
    m.update(imgs[1][:3])
    sizes.append(_state_bytes(m))
    first = m.compute_stats()
    m.update(imgs[1][3:])
    sizes.append(_state_bytes(m))
    return m, m.compute(), sizes, first


def _state_bytes(m):
    return sum(t.numel() * t.element_size() for t in vars(m._acc).values() if torch.is_tensor(t))


def test_compute_equals_fid_on_the_same_images(filled, imgs, ref_stats):
    m, value, _, _ = filled
    assert m.n == 6 and m.stats.n == 6 and m.stats.protocol == "ttur"
    # other batch sizes change the float32 features at rounding level only
    assert value == pytest.approx(fidkit.fid(ref_stats, imgs[1], device="cpu"), rel=1e-6)


def test_memory_is_constant_and_reset_keeps_the_reference(filled, imgs, ref_stats):
    _, value, sizes, first = filled
    fresh = fidkit.FID(ref_stats, device="cpu")
    assert sizes[0] == sizes[1] == _state_bytes(fresh) == 8 * (FEATURE_DIM ** 2 + FEATURE_DIM)
    m = fidkit.FID(ref_stats, device="cpu", batch_size=2)  # its own: the shared one stays as other tests read it
    m.update(imgs[1][:1])
    reference = m.reference
    m.reset()
    assert m.n == 0 and m.reference is reference
    with pytest.raises(StatsError, match="at least 2 images"):
        m.compute()
    m.update(imgs[1][:3])  # the first update again: the same statistics
    again = m.compute_stats()
    assert again.n == 3 and np.array_equal(again.mu, first.mu) and np.array_equal(again.sigma, first.sigma)


def test_kept_features_give_kid_and_match_fidkit_features(ref_stats, imgs):
    m = fidkit.FID(ref_stats, device="cpu", batch_size=2, keep_features=True)
    m.update(imgs[1][:2])
    m.update(imgs[1][2:3])
    kept = m.features()
    direct = fidkit.features(imgs[1][:3], device="cpu", batch_size=3)
    assert kept.shape == direct.shape == (3, FEATURE_DIM) and kept.dtype == direct.dtype == np.float32
    np.testing.assert_allclose(kept, direct, rtol=1e-4, atol=1e-5)  # batch sizes differ: rounding only
    # the kept features are those the statistics were accumulated from
    np.testing.assert_allclose(kept.astype(np.float64).mean(0), m.compute_stats().mu, rtol=1e-5, atol=1e-7)
    assert np.isfinite(fidkit.kid(kept, direct, subset_size=3, subsets=2).mean)
    m.reset()
    assert m.features().shape == (0, FEATURE_DIM)
    with pytest.raises(FidkitError, match="keep_features=True"):
        fidkit.FID(ref_stats, device="cpu").features()


def test_float_images_need_input_range_and_map_like_saved_images(ref_stats, imgs):
    u8 = imgs[1][:2]
    m_u8 = fidkit.FID(ref_stats, device="cpu")
    m_u8.update(u8)
    m_f = fidkit.FID(ref_stats, device="cpu")
    with pytest.raises(SourceError, match="input_range") as e:
        m_f.update(u8.float() / 255)
    assert "\n" not in str(e.value)
    m_f.update(u8.float() / 127.5 - 1, input_range=(-1, 1))
    a, b = m_u8.stats, m_f.stats
    assert np.array_equal(a.mu, b.mu) and np.array_equal(a.sigma, b.sigma)


@pytest.mark.parametrize("lo,hi", [(0, 1), (-1, 1), (0, 255), (-3.5, 7.25)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_to_uint8_inverts_every_linear_map(lo, hi, dtype):
    k = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    x = (k.double() / 255 * (hi - lo) + lo).to(dtype)
    assert torch.equal(to_uint8(x, (lo, hi)), k)


def test_to_uint8_clamps_and_rounds_half_up():
    x = torch.tensor([-2.0, 0.5 / 255, 0.49 / 255, 1.5 / 255, 2.0]).view(1, 1, 1, 5)
    assert to_uint8(x, (0, 1)).flatten().tolist() == [0, 1, 0, 2, 255]


def test_bad_updates_are_one_line_errors(ref_stats):
    m = fidkit.FID(ref_stats, device="cpu")
    bad = [(torch.zeros(2, 3, 8, 8), None, "input_range"),
           (torch.zeros(2, 3, 8, 8), (1, 1), "lo < hi"),
           (torch.full((2, 3, 8, 8), float("nan")), (0, 1), "NaN"),
           (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), None, "3 channels"),
           (torch.zeros(2, 3, 8, 8, dtype=torch.int32), None, "uint8"),
           (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), (-1, 1), "for float images")]
    for images, rng, msg in bad:
        with pytest.raises(FidkitError, match=msg) as e:
            m.update(images, input_range=rng)
        assert "\n" not in str(e.value)
    assert m.n == 0


def test_reference_from_npz_statistics_folder(tmp_path, ref_stats):
    path = ref_stats.save(tmp_path / "ref.npz")
    for ref in (path, str(path), ref_stats):
        m = fidkit.FID(ref, device="cpu")
        assert np.array_equal(m.reference.mu, ref_stats.mu) and m.reference.n == 6
    (tmp_path / "imgs").mkdir()
    for name in ("00006.png", "00007.png"):
        (tmp_path / "imgs" / name).write_bytes((DATA / "real_a" / name).read_bytes())
    folder = fidkit.FID(tmp_path / "imgs", device="cpu", workers=0)
    assert folder.reference.n == 2 and folder.reference.protocol == "ttur"
    assert folder.reference.weights_digest == fidkit.api.load_weights().digest


def test_mismatched_reference_is_refused(tmp_path, ref_stats):
    other = fidkit.Statistics(ref_stats.mu, ref_stats.sigma, 10, "clean", ref_stats.weights_digest)
    with pytest.raises(StatsError, match="protocol"):
        fidkit.FID(other.save(tmp_path / "clean.npz"), device="cpu")
    with pytest.raises(StatsError, match="protocol"):
        fidkit.FID(other, device="cpu")
    assert fidkit.FID(other, device="cpu", allow_mismatch=True).reference.protocol == "clean"
    # the same override for a file as for Statistics in memory
    assert fidkit.FID(tmp_path / "clean.npz", device="cpu", allow_mismatch=True).reference.protocol == "clean"
    alien = fidkit.Statistics(ref_stats.mu, ref_stats.sigma, 10, "ttur", "0" * 64)
    with pytest.raises(StatsError, match="weights"):
        fidkit.FID(alien, device="cpu")
    np.savez(tmp_path / "plain.npz", mu=ref_stats.mu, sigma=ref_stats.sigma)
    with pytest.warns(FidkitWarning, match="plain mu/sigma"):
        fidkit.FID(tmp_path / "plain.npz", device="cpu")


def test_evaluate_generator(ref_stats, imgs):
    pool = imgs[1].float() / 127.5 - 1
    drawn = []

    def sample(k):  # deterministic: the next k images of the pool, as floats in [-1, 1]
        out = pool[len(drawn):len(drawn) + k]
        drawn.extend(range(len(out)))
        return out

    r = fidkit.evaluate_generator(sample, 4, 3, ref_stats, input_range=(-1, 1), device="cpu")
    assert r.n == 4 and len(drawn) == 4 and r.protocol == "ttur" and float(r) == r.fid
    assert r.fid == pytest.approx(fidkit.fid(ref_stats, imgs[1][:4], device="cpu"), rel=1e-6)
    with pytest.raises(SourceError, match="input_range"):
        fidkit.evaluate_generator(lambda k: pool[:k], 4, 2, ref_stats, device="cpu")


def test_evaluate_generator_reuses_freed_memory_over_its_whole_draw(ref_stats, imgs):
    # each update's own span trims the heap when it ends; one span over the draw keeps the
    # freed activations between batches (benchmarks/metric_update_cpu.py: ~1.08x at batch 16)
    from fidkit import pipeline
    if pipeline._GLIBC is None:
        pytest.skip("heap reuse is glibc's; elsewhere it does nothing")
    depths = []

    def sample(k):
        depths.append(pipeline._heap_depth)
        return imgs[1][:k]

    r = fidkit.evaluate_generator(sample, 4, 2, ref_stats, device="cpu")
    assert depths == [1, 1] and pipeline._heap_depth == 0  # held while drawing, released after
    assert r.fid == pytest.approx(fidkit.fid(ref_stats, torch.cat([imgs[1][:2], imgs[1][:2]]), device="cpu"),
                                  rel=1e-6)


# --- torch.distributed -------------------------------------------------------------------------------

def _features(rank=None, world=2):
    """Fixed synthetic features in batches of uneven sizes; rank r gets the r-th contiguous part."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(300, FEATURE_DIM, generator=g, dtype=torch.float64) * 3 + 50
    x[:, :10] *= 1e3  # a spread of scales
    parts = torch.tensor_split(x, world) if rank is not None else [x]
    part = parts[rank or 0]
    return torch.split(part, [17, 40, 1, part.shape[0] - 58])


def _synthetic_reference():
    g = torch.Generator().manual_seed(8)
    y = torch.randn(400, FEATURE_DIM, generator=g, dtype=torch.float64) + 50
    acc = Accumulator(FEATURE_DIM)
    acc.update(y)
    return acc.result(protocol="ttur")


def _dist_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        acc = Accumulator(FEATURE_DIM)
        m = fidkit.FID(_synthetic_reference(), device="cpu")
        for batch in _features(rank, world):
            acc.update(batch)
            m._acc.update(batch)  # features straight in: the network stays out of this test
        red = reduce_accumulator(acc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FidkitWarning)
            value = m.compute()
        np.savez(out_dir / f"rank{rank}.npz", n=red.n, mean=red.mean.numpy(), m2=red.m2.numpy(),
                 local_n=acc.n, fid=value)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_reduction_equals_one_process(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_dist_worker, args=(2, tmp_path / "init", tmp_path), nprocs=2, join=True)
    whole = Accumulator(FEATURE_DIM)
    for batch in _features():
        whole.update(batch)
    ref = _synthetic_reference()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        expected = float(fidkit.frechet_distance(ref, whole.result(protocol="ttur")))
    results = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    assert [int(r["local_n"]) for r in results] == [150, 150]
    mean, m2 = whole.mean.numpy(), whole.m2.numpy()
    for r in results:
        assert int(r["n"]) == 300
        assert np.max(np.abs(r["mean"] - mean)) <= 1e-12 * np.max(np.abs(mean))
        assert np.max(np.abs(r["m2"] - m2)) <= 1e-12 * np.max(np.abs(m2))
        assert float(r["fid"]) == pytest.approx(expected, rel=1e-9)
    assert np.array_equal(results[0]["m2"], results[1]["m2"])  # the same fold on every rank


def test_reduce_accumulator_outside_distributed_is_the_identity():
    acc = Accumulator(4)
    assert reduce_accumulator(acc) is acc


# --- the README example ------------------------------------------------------------------------------

def test_readme_training_loop_runs(tmp_path, monkeypatch, capsys, ref_stats):
    text = README.read_text()
    section = text.split("## In a training loop", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    small = re.sub(r"STEPS, EVAL_EVERY, N_EVAL, BATCH = .*", "STEPS, EVAL_EVERY, N_EVAL, BATCH = 2, 1, 2, 2", code)
    assert small != code
    ref_stats.save(tmp_path / "ref.npz")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        exec(compile(small, "README.md", "exec"), {"__name__": "__readme__"})
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step")]
    assert len(lines) == 2 and all(re.fullmatch(r"step \d+: FID \d+\.\d+ \(2 images\)", ln) for ln in lines)
