"""Small DCGAN and WGAN-GP networks for 28×28 and 32×32 images with 1 or 3 channels.

Shapes and ranges:

- generators take z: float32 (N, z_dim), z ~ N(0, I), and return float32 (N, C, H, W)
  with values in [-1, 1] (a final tanh);
- discriminators / critics take images float32 (N, C, H, W) in [-1, 1] and return one
  unbounded score per image, float32 (N,): a logit for DCGAN (real > 0), a critic value
  for WGAN-GP.

Both spatial sizes go through two stride-2 stages, so the image side must be a multiple
of 4 (7×7 → 14 → 28, 8×8 → 16 → 32). ``width`` is the channel count of the widest
full-resolution stage; the default 32 keeps one DCGAN step with batch 64 at a few tens of
milliseconds on two CPU cores.

The DCGAN pair follows Radford et al. (2016): transposed convolutions, batch norm in both
networks except the discriminator's input layer and the generator's output, ReLU in the
generator, LeakyReLU(0.2) in the discriminator, weights initialised from N(0, 0.02). The
WGAN-GP pair (Gulrajani et al., 2017) uses the same generator and a critic without batch
norm, because the gradient penalty is defined per sample and batch norm couples the
samples of a batch.
"""

from __future__ import annotations

import torch
from torch import nn

ARCHS = ("dcgan", "wgan-gp")


def _check_shape(size: int, channels: int, z_dim: int, width: int) -> None:
    if size < 8 or size % 4:
        raise ValueError(f"image size must be a multiple of 4 and at least 8 (28 or 32 are intended), got {size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if z_dim < 1 or width < 1:
        raise ValueError(f"z_dim and width must be positive, got z_dim={z_dim}, width={width}")


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv and linear weights N(0, 0.02), batch-norm scales N(1, 0.02),
    biases 0. Draws from torch's global generator (seed it first)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z float32 (N, z_dim) → images float32 (N, channels, size, size) in [-1, 1].

    Linear to (2·width, size/4, size/4), batch norm, ReLU; two stride-2 transposed
    convolutions (4×4 kernels) to width then ``channels`` feature maps; tanh. Used by both
    DCGAN and WGAN-GP.
    """

    def __init__(self, z_dim: int = 64, channels: int = 1, size: int = 28, width: int = 32):
        super().__init__()
        _check_shape(size, channels, z_dim, width)
        self.z_dim, self.channels, self.size, self.width = z_dim, channels, size, width
        base = size // 4
        self.project = nn.Sequential(
            nn.Linear(z_dim, 2 * width * base * base, bias=False),
            nn.BatchNorm1d(2 * width * base * base),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (2 * width, base, base)),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
            nn.Tanh(),
        )
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.project(z))


class _Scorer(nn.Module):
    """images (N, channels, size, size) → float32 (N,) scores; batch norm optional."""

    def __init__(self, channels: int, size: int, width: int, batch_norm: bool):
        super().__init__()
        _check_shape(size, channels, 1, width)
        self.channels, self.size, self.width = channels, size, width
        base = size // 4
        layers = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
                  nn.Conv2d(width, 2 * width, 4, 2, 1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(2 * width))
        layers += [nn.LeakyReLU(0.2, inplace=True), nn.Flatten(), nn.Linear(2 * width * base * base, 1)]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class Discriminator(_Scorer):
    """DCGAN discriminator: images (N, channels, size, size) in [-1, 1] → logits float32 (N,).

    Two stride-2 convolutions (width, 2·width maps; batch norm on the second),
    LeakyReLU(0.2), a linear layer to one logit (trained with the logistic loss).
    """

    def __init__(self, channels: int = 1, size: int = 28, width: int = 32):
        super().__init__(channels, size, width, batch_norm=True)


class Critic(_Scorer):
    """WGAN-GP critic: images (N, channels, size, size) in [-1, 1] → critic values float32 (N,).

    The DCGAN discriminator without batch norm (the gradient penalty needs per-sample
    gradients); its output is an unbounded Wasserstein potential, not a logit.
    """

    def __init__(self, channels: int = 1, size: int = 28, width: int = 32):
        super().__init__(channels, size, width, batch_norm=False)


def build(arch: str, z_dim: int = 64, channels: int = 1, size: int = 28, width: int = 32):
    """(generator, discriminator or critic) for ``arch`` 'dcgan' or 'wgan-gp', freshly
    initialised from torch's global generator."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    g = Generator(z_dim, channels, size, width)
    d = Discriminator(channels, size, width) if arch == "dcgan" else Critic(channels, size, width)
    return g, d
