"""The disturbances of benchmarks/baselines.py: seeded, nested across levels, and stronger
at each level (pixel distance to the clean images grows), without the network."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import baselines  # noqa: E402


@pytest.fixture(scope="module")
def disturber():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:28, 0:28]
    base = ((yy * 9 + xx * 5) % 256).astype(np.uint8)
    images = np.stack([np.roll(base, k, axis=1) for k in range(20)])[..., None].repeat(3, axis=3)
    other = rng.integers(0, 256, (20, 28, 28, 3), dtype=np.uint8)
    return baselines.Disturber(images, other, seed=0)


KINDS = [k for k in baselines.LEVELS if k != "swirl"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_level_moves_the_images_further(disturber, kind):
    clean = disturber.images.astype(np.float64)
    dist = [np.abs(disturber(kind, a).astype(np.float64) - clean).mean() for a in baselines.LEVELS[kind]]
    assert all(d > 0 for d in dist) and all(b > a for a, b in zip(dist, dist[1:])), dist
    out = disturber(kind, baselines.LEVELS[kind][0])
    assert out.dtype == np.uint8 and out.shape == disturber.images.shape


@pytest.mark.parametrize("kind", KINDS)
def test_disturbances_are_deterministic(disturber, kind):
    a = baselines.LEVELS[kind][2]
    again = baselines.Disturber(disturber.images, disturber.other, seed=0)
    assert np.array_equal(disturber(kind, a), again(kind, a))


def test_salt_pepper_rectangles_and_contamination_are_nested(disturber):
    x = disturber.images
    for kind in ("salt_and_pepper", "black_rectangles", "contamination"):
        changed = [np.any(disturber(kind, a) != x, axis=3) for a in baselines.LEVELS[kind]]
        for lo, hi in zip(changed, changed[1:]):
            assert not np.any(lo & ~hi), kind  # what a level changes stays changed at the next
    k = int(round(0.5 * len(x)))
    out = disturber("contamination", 0.5)
    replaced = [i for i in range(len(x)) if not np.array_equal(out[i], x[i])]
    assert len(replaced) == k


def test_swirl_strength_orders_the_distance(disturber):
    pytest.importorskip("skimage")
    clean = disturber.images.astype(np.float64)
    dist = [np.abs(disturber("swirl", a).astype(np.float64) - clean).mean() for a in baselines.LEVELS["swirl"]]
    assert all(b > a for a, b in zip(dist, dist[1:])), dist
