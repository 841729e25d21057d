"""Encoder weights: resolution order, digests (published / trust on first use), the official
file formats written with random tensors, and damaged files. No network: downloads are served
from local files."""

import io
import json
import pickle
import urllib.request
import zipfile

import pytest
import torch

from fidkit._io import file_sha256
from fidkit.encoders import clip as fclip
from fidkit.encoders import get_encoder
from fidkit.encoders import dinov2 as fdino
from fidkit.encoders import weights as ew
from fidkit.errors import FidkitWarning, WeightsError

# random files are not the official ones (warned about: tested once below); torch.jit.save/load
# are deprecated in favour of torch.export, but OpenAI's archive is TorchScript
pytestmark = [pytest.mark.filterwarnings("ignore:.*is not the official:fidkit.errors.FidkitWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")]

SMALL_DINO = dict(dim=64, depth=2, heads=4, mlp=128)  # grid 37, patch 14 as the real one
SMALL_CLIP = dict(width=64, layers=2, heads=4, output_dim=32)  # patch 14, 336 px as the real one


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FIDKIT_CACHE", str(tmp_path / "cache"))
    for var in ("FIDKIT_NO_DOWNLOAD", fdino.SOURCE.env_var, fclip.SOURCE.env_var):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache"


def serve(monkeypatch, path):
    """urlopen answers with the bytes of ``path`` (None: the network is unreachable)."""
    calls = []

    def fake(url, timeout=None):
        calls.append(url)
        if path is None:
            raise urllib.error.URLError("network unreachable")
        return io.BytesIO(path.read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return calls


def dino_pth(path, seed=0):
    """A random state dict in the layout of dinov2_vitl14_pretrain.pth (mask_token included)."""
    torch.manual_seed(seed)
    net = fdino.DINOv2ViT(**SMALL_DINO)
    sd = {k: torch.randn_like(v) * 0.02 for k, v in net.state_dict().items()}
    sd["mask_token"] = torch.zeros(1, SMALL_DINO["dim"])
    torch.save(sd, path)
    return sd


class _Tree(torch.nn.Module):
    """A module whose attribute tree spells the given state dict's names; forward touches one
    tensor so that it can be traced, as OpenAI's archive is a traced/scripted CLIP."""

    def __init__(self, sd):
        super().__init__()
        for name, t in sd.items():
            mod = self
            *path, leaf = name.split(".")
            for p in path:
                if not hasattr(mod, p):
                    mod.add_module(p, torch.nn.Module())
                mod = getattr(mod, p)
            mod.register_parameter(leaf, torch.nn.Parameter(t.clone(), requires_grad=False))

    def forward(self, x):
        return x + self.visual.proj.float().sum()


def openai_archive(path, seed=0, **config):
    """A random CLIP state dict in OpenAI's names (visual float16, a token text part), saved
    as a TorchScript archive with torch.jit.save, as OpenAI's ViT-L-14-336px.pt is."""
    torch.manual_seed(seed)
    net = fclip.CLIPVisual(**{**SMALL_CLIP, **config})
    sd = {"visual." + k: (torch.randn_like(v) * 0.02).half() for k, v in net.state_dict().items()}
    sd.update({"positional_embedding": torch.randn(8, 16), "ln_final.weight": torch.ones(16),
               "logit_scale": torch.tensor(4.6)})
    traced = torch.jit.trace(_Tree(sd), torch.zeros(1), check_trace=False)
    torch.jit.save(traced, str(path))
    return sd


# ---------------------------------------------------------------- formats

def test_dinov2_state_dict_file_loads(tmp_path):
    sd = dino_pth(tmp_path / "w.pth")
    enc = fdino.build(tmp_path / "w.pth", **SMALL_DINO)
    got = enc.net.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in got)
    assert enc.weights_digest == file_sha256(tmp_path / "w.pth") and enc.weights_official is None
    assert enc(torch.zeros(1, 3, 224, 224))["cls"].shape == (1, 64)


def test_a_clip_tower_for_another_image_size_is_refused(tmp_path):
    """The architecture is read from the file, but CMMD's preprocessing gives 336-pixel images:
    a tower for 224 (ViT-L/14 without -336) is refused in one line when loaded, not in forward."""
    openai_archive(tmp_path / "ViT-L-14.pt", image_size=224)
    with pytest.raises(WeightsError, match=r"ViT-L-14.pt: a CLIP image tower for 224-pixel images .* 336-pixel") as e:
        get_encoder("clip-vitl14-336", weights=tmp_path / "ViT-L-14.pt")
    assert "\n" not in str(e.value)


def test_openai_torchscript_archive_read_without_running_it(tmp_path):
    sd = openai_archive(tmp_path / "ViT.pt")
    got = ew.read_torchscript(tmp_path / "ViT.pt")
    # the same names and values as torch.jit.load(...).state_dict(), which the test may run
    ts = torch.jit.load(str(tmp_path / "ViT.pt")).state_dict()
    assert set(got) == set(ts) == set(sd)
    for k in sd:
        assert got[k].dtype == sd[k].dtype and torch.equal(got[k], sd[k]) and torch.equal(got[k], ts[k])
    enc = fclip.build(tmp_path / "ViT.pt", **SMALL_CLIP)
    assert all(torch.equal(v, sd["visual." + k].float()) for k, v in enc.net.state_dict().items())
    e = enc(torch.zeros(2, 3, 336, 336))["embedding"]
    assert e.shape == (2, 32) and torch.allclose(e.norm(dim=1), torch.ones(2))


def test_torchscript_reader_admits_no_code(tmp_path):
    """A data.pkl naming anything but tensors and module placeholders is refused unexecuted."""
    openai_archive(tmp_path / "ok.pt")
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    with zipfile.ZipFile(tmp_path / "ok.pt") as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = pickle.dumps(Boom(), protocol=2) if item.filename.endswith("/data.pkl") else src.read(item)
            dst.writestr(item, data)
    with pytest.raises(WeightsError, match="cannot read as weights .*not admitted"):
        ew.read_torchscript(evil)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["dinov2", "clip"])
def test_truncated_file(tmp_path, kind):
    f = tmp_path / "w.bin"
    dino_pth(f) if kind == "dinov2" else openai_archive(f)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    build = fdino.build if kind == "dinov2" else fclip.build
    cfg = SMALL_DINO if kind == "dinov2" else SMALL_CLIP
    with pytest.raises(WeightsError, match="may be truncated"):
        build(f, **cfg)


def test_wrong_layout(tmp_path):
    dino_pth(tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="not the OpenAI CLIP ViT layout"):
        fclip.build(tmp_path / "w.pth", **SMALL_CLIP)
    with pytest.raises(WeightsError, match="has shape"):
        fdino.build(tmp_path / "w.pth", **dict(SMALL_DINO, mlp=256))


# ---------------------------------------------------------------- resolution and digests

def test_clip_download_checked_against_the_published_digest(tmp_path, monkeypatch, cache):
    openai_archive(tmp_path / "ViT.pt")
    digest = file_sha256(tmp_path / "ViT.pt")
    serve(monkeypatch, tmp_path / "ViT.pt")
    # the real source: the file is not OpenAI's, so the download is refused and nothing is cached
    with pytest.raises(WeightsError, match=f"has sha256 {digest[:16]}…, not the published 3035c92b35095992…"):
        fclip.build(**SMALL_CLIP)
    assert not (cache / "encoders" / "ViT-L-14-336px.pt").exists()
    # a source whose published digest is this file's: downloaded, verified, cached, then read from the cache
    src = ew.WeightsSource(fclip.NAME, "https://example.invalid/ViT-L-14-336px.pt", "ViT-L-14-336px.pt", digest)
    enc = fclip.build(source=src, **SMALL_CLIP)
    assert enc.weights_official is True and enc.weights_digest == digest
    calls = serve(monkeypatch, None)
    assert fclip.build(source=src, **SMALL_CLIP).weights_digest == digest and calls == []
    # a damaged cached copy is refused
    cached = cache / "encoders" / "ViT-L-14-336px.pt"
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsError, match="delete it and run again"):
        fclip.build(source=src, **SMALL_CLIP)


def test_explicit_file_with_another_digest_warns_once(tmp_path):
    openai_archive(tmp_path / "finetuned.pt", seed=3)
    with pytest.warns(FidkitWarning, match="not the official clip-vitl14-336 weights.*not comparable") as rec:
        enc = fclip.build(tmp_path / "finetuned.pt", **SMALL_CLIP)
    assert len(rec) == 1
    assert enc.weights_official is False and enc.weights_digest == file_sha256(tmp_path / "finetuned.pt")


def test_environment_variable(tmp_path, monkeypatch):
    dino_pth(tmp_path / "w.pth")
    assert fdino.SOURCE.env_var == "FIDKIT_ENCODER_WEIGHTS_DINOV2_VITL14"
    monkeypatch.setenv(fdino.SOURCE.env_var, str(tmp_path / "w.pth"))
    assert fdino.build(**SMALL_DINO).weights_origin.endswith("w.pth")


def test_dinov2_trust_on_first_use(tmp_path, monkeypatch, cache):
    dino_pth(tmp_path / "first.pth", seed=0)
    dino_pth(tmp_path / "other.pth", seed=1)
    first = file_sha256(tmp_path / "first.pth")
    serve(monkeypatch, tmp_path / "first.pth")
    enc = fdino.build(**SMALL_DINO)
    assert enc.weights_digest == first and enc.weights_official is True
    assert json.loads((cache / "encoders" / "digests.json").read_text()) == {"dinov2_vitl14_pretrain.pth": first}
    # the cached copy is checked against the record
    cached = cache / "encoders" / "dinov2_vitl14_pretrain.pth"
    cached.write_bytes((tmp_path / "other.pth").read_bytes())
    with pytest.raises(WeightsError, match="expected " + first[:16]):
        fdino.build(**SMALL_DINO)
    # a later download that differs from the first is refused
    cached.unlink()
    serve(monkeypatch, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not the first download's " + first[:16]):
        fdino.build(**SMALL_DINO)
    assert not cached.exists()
    # an explicit file that differs is used, with the warning
    with pytest.warns(FidkitWarning, match="not comparable"):
        assert fdino.build(tmp_path / "other.pth", **SMALL_DINO).weights_official is False


def test_offline_says_what_to_get_and_where(monkeypatch, cache):
    serve(monkeypatch, None)
    with pytest.raises(WeightsError) as e:
        fdino.build(**SMALL_DINO)
    msg = str(e.value)
    # the file's own name in the cache, where resolve looks, not the download's temporary .part
    assert "\n" not in msg and fdino.SOURCE.url in msg and ".part" not in msg
    assert f"put it at {cache / 'encoders' / 'dinov2_vitl14_pretrain.pth'}," in msg
    assert "--encoder-weights" in msg
    monkeypatch.setenv("FIDKIT_NO_DOWNLOAD", "1")
    with pytest.raises(WeightsError, match=r"no clip-vitl14-336 weights in .*get https://openaipublic"):
        fclip.build(**SMALL_CLIP)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        fdino.build(tmp_path / "nope.pth", **SMALL_DINO)


def test_file_put_in_the_cache_by_hand_is_trusted_on_first_use(tmp_path, cache):
    """What the offline message asks for: the file put at the cache path counts as a first download."""
    dino_pth(tmp_path / "w.pth")
    (cache / "encoders").mkdir(parents=True)
    placed = cache / "encoders" / "dinov2_vitl14_pretrain.pth"
    placed.write_bytes((tmp_path / "w.pth").read_bytes())
    enc = fdino.build(**SMALL_DINO)
    assert enc.weights_official is True
    assert ew.recorded_digests() == {"dinov2_vitl14_pretrain.pth": file_sha256(placed)}
    placed.write_bytes(placed.read_bytes()[:-4] + b"XXXX")
    with pytest.raises(WeightsError, match="delete it and run again"):
        fdino.build(**SMALL_DINO)
