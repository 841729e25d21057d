"""The reference implementations the encoder tests compare against, imported without side effects.

dinov2==0.0.1.dev2 and open-clip-torch are in the ``test`` extra. open_clip's package
``__init__`` imports torchvision (its transforms, and ``FrozenBatchNorm2d`` in
``open_clip/utils.py``); PyPI's torchvision does not import beside torch 2.13's CPU build,
and fidkit never depends on it. The model code the tests need (``open_clip/model.py``,
``open_clip/transformer.py``) does not use torchvision, so when torchvision cannot be
imported, :func:`open_clip_model` loads those modules under a bare ``open_clip`` package
(its ``__init__`` not run) with a placeholder for the one name ``utils.py`` imports from
torchvision, and removes the placeholder again. Nothing of open_clip's transforms is used.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import pathlib
import sys
import types
import warnings


def dinov2_vision_transformer():
    """``dinov2.models.vision_transformer`` or None when dinov2 is not installed."""
    if importlib.util.find_spec("dinov2") is None:
        return None
    logging.getLogger("dinov2").setLevel(logging.ERROR)  # "xFormers not available": the plain-torch path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("dinov2.models.vision_transformer")


def dinov2_reference(depth: int, seed: int = 0):
    """The hub's ``dinov2_vitl14`` architecture (img 518, patch 14, LayerScale 1.0, MLP FFN,
    block_chunks 0) with ``depth`` blocks and seeded random weights, in eval mode."""
    import torch
    vt = dinov2_vision_transformer()
    torch.manual_seed(seed)
    if depth == 24:  # exactly what the hub's dinov2_vitl14 builds
        net = vt.vit_large(patch_size=14, img_size=518, init_values=1.0, ffn_layer="mlp", block_chunks=0)
    else:  # vit_large's arguments with fewer blocks
        from functools import partial
        net = vt.DinoVisionTransformer(img_size=518, patch_size=14, embed_dim=1024, depth=depth, num_heads=16,
                                       mlp_ratio=4, block_fn=partial(vt.Block, attn_class=vt.MemEffAttention),
                                       init_values=1.0, ffn_layer="mlp", block_chunks=0)
    with torch.no_grad():  # the init leaves biases 0, LayerScale 1, norms 1/0: perturb them all
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return net.eval()


@contextlib.contextmanager
def _torchvision_placeholder():
    try:
        import torchvision  # noqa: F401
        yield
        return
    except Exception:  # noqa: BLE001 - missing, or the 'torchvision::nms does not exist' mismatch
        pass
    saved = {k: sys.modules[k] for k in list(sys.modules) if k == "torchvision" or k.startswith("torchvision.")}
    tv, ops, misc = (types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.misc"))

    class FrozenBatchNorm2d:  # only named by open_clip/utils.py; ResNet towers are not built here
        def __init__(self, *a, **k):
            raise RuntimeError("placeholder: torchvision is not available")

    misc.FrozenBatchNorm2d, tv.ops, ops.misc = FrozenBatchNorm2d, ops, misc
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops, "torchvision.ops.misc": misc})
    try:
        yield
    finally:
        for k in ("torchvision", "torchvision.ops", "torchvision.ops.misc"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)


def open_clip_model():
    """``open_clip.model`` (for ``build_model_from_openai_state_dict``), or None when
    open-clip-torch is not installed. See the module docstring."""
    if "open_clip.model" in sys.modules:
        return sys.modules["open_clip.model"]
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        return None
    try:
        return importlib.import_module("open_clip.model")
    except Exception:  # noqa: BLE001 - its __init__ failed on torchvision: load the model modules alone
        for k in [k for k in sys.modules if k == "open_clip" or k.startswith("open_clip.")]:
            del sys.modules[k]
    pkg = types.ModuleType("open_clip")
    pkg.__path__ = [str(pathlib.Path(spec.origin).parent)]
    sys.modules["open_clip"] = pkg
    with _torchvision_placeholder(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("open_clip.model")
