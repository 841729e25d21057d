"""fidkit's DINOv2 and CLIP towers against the official model code, and their preprocessing modes.

The references (``dinov2==0.0.1.dev2``, ``open-clip-torch``; the ``test`` extra) are built
with random weights; the real weights cannot be downloaded on the build machines. CI runs
reduced-depth towers at full width; ``-m slow`` runs the full-size ones.
"""

import glob
import platform

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from _references import dinov2_reference, dinov2_vision_transformer, open_clip_model
from conftest import DATA
from fidkit.encoders import ENCODERS, Encoder, _linear, get_encoder
from fidkit.encoders import clip as fclip
from fidkit.encoders import dinov2 as fdino
from fidkit.errors import FidkitError
from fidkit.sources import decode

RTOL = 1e-5


def rel(a, b):
    return float((a - b).norm() / b.norm())


def need_dinov2():
    if dinov2_vision_transformer() is None:
        pytest.skip("reference not installed: pip install --no-deps -r tests/requirements-references.txt; "
                    "fidkit's DINOv2 is NOT checked")


def need_open_clip():
    if open_clip_model() is None:
        pytest.skip("reference not installed: pip install --no-deps -r tests/requirements-references.txt; "
                    "fidkit's CLIP is NOT checked")


def test_registry_and_unknown_name():
    assert list(ENCODERS) == ["inception", "dinov2-vitl14", "clip-vitl14-336"]  # Inception first: the default
    assert ENCODERS["inception"].outputs == {"pool3": 2048, "spatial": 2023, "logits": 1008}
    assert ENCODERS["dinov2-vitl14"].outputs == {"cls": 1024}
    assert ENCODERS["clip-vitl14-336"].outputs == {"embedding": 768}
    with pytest.raises(FidkitError, match="unknown encoder 'inception-x'; choose one of inception, dinov2-vitl14, clip-vitl14-336"):
        get_encoder("inception-x")
    with pytest.raises(FidkitError, match="no preprocessing mode 'clean'; choose one of edm2, dgm-eval"):
        get_encoder("dinov2-vitl14", mode="clean")


def test_encoder_interface():
    enc = fdino.DINOv2Encoder(dim=64, depth=1, heads=4, mlp=128).eval()
    assert isinstance(enc, Encoder) and enc.mode == "edm2" and enc.default_feature == "cls"
    assert list(enc.preprocessing) == ["edm2", "dgm-eval", "dgm-eval-clean"]
    assert enc.set_mode("dgm-eval").preprocess.name == "dgm-eval"
    imgs = [decode(p) for p in sorted(glob.glob(str(DATA / "real_a" / "*.png")))[:3]]
    out = enc.encode(imgs)
    assert set(out) == {"cls"} and out["cls"].shape == (3, 64) and out["cls"].dtype == np.float32
    d = enc.describe()
    assert d["encoder"] == "dinov2-vitl14" and d["preprocessing"] == "dgm-eval" and d["weights_digest"] is None


# ---------------------------------------------------------------- DINOv2 against the official code

def _dino_pair(depth):
    need_dinov2()
    ref = dinov2_reference(depth)
    ours = fdino.DINOv2Encoder(depth=depth).eval()
    fdino.load_state_dict_into(ours.net, ref.state_dict(), "reference")
    return ref, ours


def test_dinov2_position_embedding_interpolation_is_the_official_one():
    ref, ours = _dino_pair(1)
    with torch.no_grad():
        tokens = torch.zeros(1, 1 + 16 * 16, 1024)
        a = ref.interpolate_pos_encoding(tokens, 224, 224)
        b = ours.net.position_embedding(224, 224)
        assert torch.equal(a, b)  # bit for bit: same call, same scale factors (16.1/37)
        assert torch.equal(ours.net.position_embedding(518, 518), ref.pos_embed)


def need_onednn(onednn):
    if onednn and not _linear.onednn_available():
        pytest.skip("oneDNN's linear op is not in this torch build: only the plain path can be tested")


@pytest.mark.parametrize("sdpa,onednn", [(True, True), (True, False), (False, True)])
def test_dinov2_matches_official_reduced_depth(sdpa, onednn):
    need_onednn(onednn)
    ref, ours = _dino_pair(2)
    ours.net.sdpa, ours.net.onednn = sdpa, onednn
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = ref(x), ours(x)["cls"]
        again = ours(x)["cls"]
    assert b.shape == (2, 1024) and b.dtype == torch.float32
    assert rel(b, a) < RTOL
    assert torch.equal(again, b)  # the same input gives the same features, bit for bit


@pytest.mark.slow
def test_dinov2_matches_official_full_size():
    ref, ours = _dino_pair(24)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert rel(ours(x)["cls"], ref(x)) < RTOL


# ---------------------------------------------------------------- CLIP against open_clip

def openai_state_dict(layers: int, width: int = 1024, seed: int = 0, output_dim: int = 768, image_size: int = 336):
    """A random state dict in OpenAI's layout (open_clip names its CLIP's tensors as OpenAI
    does), with a one-layer text tower; the visual tensors in float16 as OpenAI stores them."""
    ocm = open_clip_model()
    torch.manual_seed(seed)
    vis = ocm.CLIPVisionCfg(layers=layers, width=width, patch_size=14, image_size=image_size)
    txt = ocm.CLIPTextCfg(context_length=8, vocab_size=64, width=64, heads=1, layers=1)
    m = ocm.CLIP(output_dim, vision_cfg=vis, text_cfg=txt, quick_gelu=True)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return {k: (v.half() if k.startswith("visual.") else v) for k, v in m.state_dict().items()}


def _clip_pair(layers):
    need_open_clip()
    sd = openai_state_dict(layers)
    ocm = open_clip_model()
    ref = ocm.build_model_from_openai_state_dict(dict(sd)).float().eval()  # as open_clip loads OpenAI's on the CPU
    ours = fclip.CLIPEncoder(layers=layers).eval()
    fclip.load_state_dict_into(ours.net, sd, "reference")
    return ref, ours


@pytest.mark.parametrize("onednn", [True, False])
def test_clip_matches_open_clip_reduced_depth(onednn):
    need_onednn(onednn)
    ref, ours = _clip_pair(2)
    ours.net.onednn = onednn
    x = torch.randn(2, 3, 336, 336, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        a = ref.encode_image(x, normalize=True)
        b = ours(x)["embedding"]
    assert b.shape == (2, 768) and b.dtype == torch.float32
    assert torch.allclose(b.norm(dim=1), torch.ones(2), atol=1e-6)
    assert rel(b, a) < RTOL


@pytest.mark.slow
def test_clip_matches_open_clip_full_size():
    ref, ours = _clip_pair(24)
    x = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert rel(ours(x)["embedding"], ref.encode_image(x, normalize=True)) < RTOL


def test_onednn_linear_is_the_plain_product_and_only_at_inference():
    """The x86 wheels carry oneDNN: there the fast path must exist (else the encoders silently lose
    their speed); its results equal F.linear's to float rounding; with autograd on, or with
    ``onednn=False``, the plain in-place path runs (the residual stream is updated in place)."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert _linear.onednn_available()
    need_onednn(True)
    g = torch.Generator().manual_seed(3)
    x, h = torch.randn(2, 5, 16, generator=g), torch.randn(2, 5, 32, generator=g)
    w, b, w2 = torch.randn(32, 16, generator=g), torch.randn(32, generator=g), torch.randn(16, 32, generator=g)
    with torch.inference_mode():
        assert torch.allclose(_linear.linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
        assert torch.allclose(_linear.linear(x, w, b, gelu=True), F.gelu(F.linear(x, w, b)), rtol=1e-5, atol=1e-5)
        want = x + F.linear(h, w2, b[:16])
        x1 = x.clone()
        y = _linear.residual_(x1, h, w2, b[:16])
        assert torch.equal(x1, x) and torch.allclose(y, want, rtol=1e-5, atol=1e-5)  # fused, new tensor
        x2 = x.clone()
        y2 = _linear.residual_(x2, h, w2, b[:16], onednn=False)
        assert y2 is x2 and torch.allclose(y2, want, rtol=1e-5, atol=1e-5)  # plain path: in place
    assert torch.is_grad_enabled()
    x3 = x.clone()
    y3 = _linear.residual_(x3, h, w2, b[:16])  # autograd on: the plain path, in place
    assert y3 is x3 and torch.allclose(y3, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- preprocessing modes

def _test_images():
    """tests/data (small, non-square, RGB and L) plus a large non-square photo-like image, so
    that both upscaling and antialiased downscaling are covered."""
    paths = sorted(glob.glob(str(DATA / "real_*" / "*.png")))[::3]
    rng = np.random.default_rng(0)
    big = (rng.random((301, 417, 3)) * 255).astype(np.uint8)
    return [(p, decode(p)) for p in paths] + [(None, big)]


def _pil(path, arr):
    return Image.open(path) if path else Image.fromarray(arr)


def test_edm2_mode_is_edm2s_call():
    mode = fdino.EDM2Resize()
    for _, img in _test_images():
        x = torch.from_numpy(img).permute(2, 0, 1)[None]  # NCHW uint8, as EDM2's loader gives it
        # EDM2 calculate_metrics.py DINOv2Detector.__call__, resize_mode 'torch'
        r = F.interpolate(x.to(torch.float32), size=(224, 224), mode="bicubic", antialias=True)
        r = r.to(torch.float32) / 255
        r = r - torch.tensor([0.485, 0.456, 0.406], dtype=torch.float32).reshape(1, -1, 1, 1)
        r = r / torch.tensor([0.229, 0.224, 0.225], dtype=torch.float32).reshape(1, -1, 1, 1)
        assert torch.equal(mode(img[None]), r)


def _to_tensor_normalize(pil_img, mean, std):
    """torchvision ToTensor (uint8 HWC -> float CHW / 255) and Normalize (sub_(mean).div_(std),
    mean/std as tensors of the image's dtype), written out: torchvision does not import here."""
    t = torch.from_numpy(np.array(pil_img, dtype=np.uint8)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    m = torch.as_tensor(np.array(mean), dtype=t.dtype).view(-1, 1, 1)
    s = torch.as_tensor(np.array(std), dtype=t.dtype).view(-1, 1, 1)
    return t.sub_(m).div_(s)


def test_dgm_eval_mode_is_torchvision_resize_on_pil():
    mode = fdino.PILResize()
    for path, img in _test_images():
        pil = _pil(path, img).convert("RGB")  # dgm-eval's loader converts to RGB
        # torchvision Resize((224, 224), BICUBIC) on a PIL image = PIL resize((224, 224), BICUBIC)
        ref = _to_tensor_normalize(pil.resize((224, 224), Image.BICUBIC), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        assert torch.equal(mode([img])[0], ref)


def test_cmmd_mode_is_cmmds_crop_and_resize():
    mode = fclip.CMMDCropResize()
    mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
    for path, img in _test_images():
        im = _pil(path, img)  # cmmd io_util._read_image: no convert; grayscale tiled after the resize
        w, h = im.size
        side = min(w, h)
        top, left = (h - side) // 2, (w - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((336, 336), resample=Image.BICUBIC)
        x = np.asarray(im).astype(np.float32)
        if x.ndim == 2:
            x = np.tile(x[..., None], (1, 1, 3))
        x = x / 255.0
        x = (x - mean) / std  # scenic clip.normalize_image in float32
        ours = mode([img])[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, x)


def test_encoders_import_nothing_from_the_pipeline_above_them():
    """fidkit/encoders is a stage below the pipeline: no imports of api, cli, pipeline or metric."""
    import ast
    import pathlib

    import fidkit.encoders
    above = {"api", "cli", "pipeline", "metric"}
    for f in pathlib.Path(fidkit.encoders.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[-1]} | {a.name for a in node.names}
                assert not (node.level >= 2 and names & above) and not (node.module or "").startswith("fidkit.api")
            elif isinstance(node, ast.Import):
                assert not any(a.name.split(".")[1:2] and a.name.split(".")[1] in above for a in node.names)


def _dgm_eval_pil_resize(img: np.ndarray, side: int) -> torch.Tensor:
    """dgm-eval's resizer.pil_resize, transcribed (torchvision's to_tensor of a float32 HWC array
    is its CHW tensor, unscaled): per channel PIL "F" bicubic, clip, then /255."""
    x = img.astype(np.float32)
    chans = [np.asarray(Image.fromarray(x[:, :, c], mode="F").resize((side, side), resample=Image.BICUBIC))
             .clip(0, 255).reshape(side, side, 1) for c in range(3)]
    x = np.concatenate(chans, axis=2).astype(np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy()) / 255


@pytest.mark.parametrize("shape", [(17, 23), (224, 224), (300, 300), (384, 512)])
def test_dgm_eval_clean_resize_modes_are_its_transforms_bit_for_bit(shape):
    """dgm-eval with --clean_resize: DINOv2's transform is pil_resize to 224 then Normalize
    (ImageNet); Inception's is pil_resize to 299, then its network's 2x - 1."""
    from fidkit.preprocess import get_protocol
    img = np.random.default_rng(shape[0]).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    mode = fdino.DINOv2Encoder.preprocessing["dgm-eval-clean"]
    ours = mode.to_network(mode.prepare(img)[None])
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float32).view(3, 1, 1)
    theirs = (_dgm_eval_pil_resize(img, 224) - mean) / std  # torchvision Normalize: sub_(mean).div_(std)
    assert torch.equal(ours[0], theirs)
    proto = get_protocol("dgm-eval-clean")
    assert torch.equal(proto.to_network(proto.prepare(img)[None])[0], 2 * _dgm_eval_pil_resize(img, 299) - 1)
