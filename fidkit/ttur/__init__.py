"""fidkit-ttur: a small GAN trainer that tracks FID with fidkit's public API.

DCGAN and WGAN-GP for 28×28 / 32×32 images, Adam with separate learning rates for the
discriminator and the generator (the two time-scale update rule, TTUR), FID (and KID)
during training through :class:`fidkit.FID`, checkpoints that resume exactly, and the
command line ``fidkit-ttur`` with three studies (time scales, critical batch size,
truncation). It uses only ``import fidkit``; fidkit itself never imports it.

Modules: :mod:`.models` (networks), :mod:`.data` (images in [-1, 1], batches),
:mod:`.train` (the loop, evaluation, checkpoints, :func:`~fidkit.ttur.train.sample`),
:mod:`.studies` (the studies as resumable plans of runs, each with its own result file),
:mod:`.cli` (the command line)::

    from fidkit.ttur.train import TrainConfig, sample, train
    result = train(TrainConfig(arch="dcgan", steps=500, eval_every=250, eval_n=2048), out="run")
    images = sample(result.generator, 64, truncation=0.5)   # uint8 (64, 3, 28, 28)
"""

from .models import Critic, Discriminator, Generator
from .train import FIDEvaluator, TrainConfig, TrainError, TrainResult, sample, truncated_normal

__all__ = ["TrainConfig", "TrainResult", "TrainError", "sample", "truncated_normal", "FIDEvaluator", "Generator",
           "Discriminator", "Critic"]
