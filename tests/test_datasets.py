"""Datasets read from their own files (IDX), equal to the same images read from PNG files."""
import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import fidkit
from fidkit.errors import SourceError
from fidkit.sources import dataset_images, read_idx_images


def write_idx(path, images):
    n, h, w = images.shape
    header = b"\x00\x00\x08\x03" + b"".join(int(v).to_bytes(4, "big") for v in (n, h, w))
    with gzip.open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


@pytest.fixture()
def fake_fashion(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    monkeypatch.setenv("FIDKIT_DATASETS", str(tmp_path))
    return imgs


def test_idx_images_equal_the_same_images_as_png_files(tmp_path, fake_fashion):
    x = dataset_images("fashion-mnist-test")
    assert x.shape == (6, 28, 28, 3) and x.dtype == np.uint8
    assert np.array_equal(x[..., 0], fake_fashion) and np.array_equal(x[..., 2], fake_fashion)
    folder = tmp_path / "png"
    folder.mkdir()
    for i, im in enumerate(fake_fashion):
        Image.fromarray(im, mode="L").save(folder / f"{i}.png")
    a = fidkit.compute_stats(x, device="cpu")
    b = fidkit.compute_stats(str(folder), device="cpu", workers=0)
    np.testing.assert_allclose(a.mu, b.mu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-5, atol=1e-7)
    r = subprocess.run([sys.executable, "-m", "fidkit", "stats", "--dataset", "fashion-mnist-test", "-o",
                        str(tmp_path / "fm.npz"), "--json", "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 6
    assert fidkit.Statistics.load(tmp_path / "fm.npz").extra["dataset"] == "fashion-mnist-test"


def test_bad_idx_files_and_missing_datasets(tmp_path, monkeypatch):
    (tmp_path / "x.idx").write_bytes(b"\x00\x00\x08\x01" + bytes(12))
    with pytest.raises(SourceError, match="not an IDX file of uint8 images"):
        read_idx_images(tmp_path / "x.idx")
    write_idx(tmp_path / "t.gz", np.zeros((3, 4, 4)))
    data = gzip.open(tmp_path / "t.gz").read()
    (tmp_path / "short.idx").write_bytes(data[:-5])
    with pytest.raises(SourceError, match="truncated or damaged"):
        read_idx_images(tmp_path / "short.idx")
    monkeypatch.setenv("FIDKIT_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match="apt-get install dataset-fashion-mnist"):
        dataset_images("fashion-mnist-train")
    with pytest.raises(SourceError, match="unknown dataset"):
        dataset_images("cifar-10")


def test_first_n_images_of_a_dataset(fake_fashion):
    assert np.array_equal(dataset_images("fashion-mnist-test", 4), dataset_images("fashion-mnist-test")[:4])
    assert dataset_images("fashion-mnist-test", 0).shape == (0, 28, 28, 3)
    with pytest.raises(SourceError, match="n must be at least 0"):
        dataset_images("fashion-mnist-test", -1)
