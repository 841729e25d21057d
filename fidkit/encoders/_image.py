"""Image steps the encoders' preprocessing modes share (float32 throughout, as the references)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pil_bicubic_uint8(img: np.ndarray, size: int) -> np.ndarray:
    """``PIL.Image.fromarray(img).resize((size, size), BICUBIC)`` on uint8 (H, W, 3) RGB.

    PIL widens its kernel when shrinking (antialiased) and rounds the result back to uint8.
    torchvision's ``Resize((size, size), InterpolationMode.BICUBIC)`` on a PIL image calls
    exactly this: ``transforms.Resize.forward`` -> ``functional.resize`` -> for a PIL image
    ``_functional_pil.resize``, which for a 2-element size returns
    ``img.resize(size[::-1], interpolation)`` (pytorch/vision,
    ``torchvision/transforms/_functional_pil.py``, read at commit 08f6a9b5; its ``antialias``
    argument does not apply to PIL images). That is what dgm-eval's DINOv2 transform runs.
    """
    if img.shape[0] == size and img.shape[1] == size:
        # PIL's resize to the same size returns a copy unchanged; skip the round trip
        return np.ascontiguousarray(img)
    return np.asarray(Image.fromarray(img, "RGB").resize((size, size), Image.BICUBIC))


def centre_crop_square(img: np.ndarray) -> np.ndarray:
    """The largest centred square of uint8 (H, W, 3): side l = min(H, W), offsets
    ((H − l) // 2, (W − l) // 2), as google-research/cmmd's ``_center_crop_and_resize``."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return img[top:top + side, left:left + side]


def chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x/255 − mean)/std in float32, in that order (torchvision ToTensor + Normalize, EDM2)."""
    x = x.to(torch.float32) / 255
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
