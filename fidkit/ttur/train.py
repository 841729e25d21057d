"""The training loop: two time-scale Adam, FID (and KID) during training, checkpoints, resumption.

One *step* is one generator update preceded by ``n_critic`` discriminator (critic)
updates (1 for DCGAN, 5 for WGAN-GP by default), each on a fresh batch of real images and
fresh z. D and G have separate Adam optimisers with their own learning rates ``lr_d``
and ``lr_g``: the two time-scale update rule (TTUR, Heusel et al., 2017) is lr_d > lr_g
with constant rates. Losses: DCGAN uses the logistic loss for D and the non-saturating
loss -log D(G(z)) for G; WGAN-GP uses the critic loss D(fake) − D(real) plus
λ·(‖∇D(x̂)‖₂ − 1)² on random interpolates x̂ (λ = ``gp_weight``, 10), and −D(G(z)) for G.

Evaluation goes through fidkit's public API only: a :class:`fidkit.FID` metric holds the
reference statistics (an ``.npz`` such as ``reference_stats/fashion-mnist-test.npz``, or
statistics of ``reference_n`` real images computed once) and is fed ``eval_n`` generated
images every ``eval_every`` steps, the first time at step 0 (the untrained generator).
The generated images come from the same fixed z every time (seeded by the run's seed), so
a curve shows the generator's change rather than the draw of z. With ``kid`` on, KID is
computed from the metric's kept features against reference features computed once with
:func:`fidkit.features`. The evaluation is pluggable (``evaluator=``): any callable
``evaluator(generator, step) -> dict`` with at least ``"fid"``.

Randomness: ``torch.manual_seed(seed)`` initialises the networks; the batches and the
noise (z, WGAN-GP's interpolation weights) come from private ``torch.Generator`` objects
derived from the seed, whose states are checkpointed, as are both networks (with their
batch-norm buffers), both optimisers, the step and the log. Resuming from a checkpoint
therefore continues exactly: on the CPU the weights after resuming from step k to 2k equal
those of an uninterrupted 2k-step run bit for bit (on CUDA, up to cuDNN's nondeterminism).

Files in ``out`` (all written atomically: a temporary file renamed over the target):
``log.json`` (after every evaluation and checkpoint), ``fid.png`` (FID against step),
``checkpoints/step-NNNNNNN.pt`` (every ``checkpoint_every`` steps and at the end).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import platform
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import fidkit

from . import models
from .data import BatchSampler, DataError, load_images, to_uint8_nhwc


class TrainError(fidkit.FidkitError):
    """A training run cannot start or resume as configured (one line: what and what to do)."""


#: Adam's (beta1, beta2) when ``betas`` is not given. DCGAN: (0.5, 0.999), the DCGAN
#: paper's setting, which TTUR's DCGAN code keeps; WGAN-GP: (0.0, 0.9), as in TTUR's
#: WGAN-GP code (inherited from Gulrajani et al.'s implementation).
DEFAULT_BETAS = {"dcgan": (0.5, 0.999), "wgan-gp": (0.0, 0.9)}
#: discriminator (critic) updates per generator update when ``n_critic`` is not given
DEFAULT_N_CRITIC = {"dcgan": 1, "wgan-gp": 5}


@dataclass
class TrainConfig:
    """Everything that defines a run; saved in the log and in every checkpoint.

    Data: ``data`` (a fidkit dataset name or an image folder), the first ``data_limit``
    images (None: all), resized to ``size``×``size`` with ``channels`` 1 or 3.
    Model: ``arch`` 'dcgan' or 'wgan-gp', ``z_dim``, ``width`` (see :mod:`.models`).
    Optimisation: ``batch_size``, ``steps`` (generator updates), ``lr_d``, ``lr_g``,
    ``betas`` (None: :data:`DEFAULT_BETAS`), ``n_critic`` (None: :data:`DEFAULT_N_CRITIC`),
    ``gp_weight`` (WGAN-GP's λ), ``seed``.
    Evaluation: every ``eval_every`` steps (0: never) and at the end, on ``eval_n``
    generated images (fidkit batches of ``eval_batch_size``); ``eval_start`` also at step 0.
    ``reference``: an ``.npz`` statistics file, or None for statistics of the first
    ``reference_n`` images of ``reference_data`` (None: the training data), computed once.
    ``kid``: also KID (``kid_subsets`` subsets of ``kid_subset_size``, reduced to the set
    sizes) against features of those ``reference_n`` images. ``stop_fid``: stop after the
    first evaluation with FID ≤ it. ``checkpoint_every``: steps between checkpoints
    (0: only at the end). ``device``: 'auto' (CUDA when available), 'cpu', 'cuda', ...
    """

    arch: str = "dcgan"
    data: str = "fashion-mnist-train"
    data_limit: int | None = None
    size: int = 28
    channels: int = 1
    z_dim: int = 64
    width: int = 32
    batch_size: int = 64
    steps: int = 2000
    lr_d: float = 4e-4
    lr_g: float = 1e-4
    betas: tuple | None = None
    n_critic: int | None = None
    gp_weight: float = 10.0
    seed: int = 0
    eval_every: int = 250
    eval_n: int = 500
    eval_batch_size: int = 64
    eval_start: bool = True
    reference: str | None = None
    reference_data: str | None = None
    reference_n: int = 1000
    kid: bool = False
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    stop_fid: float | None = None
    checkpoint_every: int = 0
    device: str = "auto"

    def resolved(self) -> "TrainConfig":
        """A copy with ``betas`` and ``n_critic`` filled in from the architecture's defaults."""
        c = dataclasses.replace(self)
        if c.betas is None:
            c.betas = DEFAULT_BETAS.get(c.arch)
        c.betas = tuple(float(b) for b in c.betas) if c.betas is not None else None
        if c.n_critic is None:
            c.n_critic = DEFAULT_N_CRITIC.get(c.arch)
        return c

    def validate(self) -> None:
        """Raises :class:`TrainError` (one line) for settings that cannot run."""
        c = self.resolved()
        if c.arch not in models.ARCHS:
            raise TrainError(f"unknown architecture {c.arch!r}; choose one of {', '.join(models.ARCHS)}")
        checks = [
            (c.size >= 8 and c.size % 4 == 0, f"size must be a multiple of 4 and at least 8 (28 or 32), got {c.size}"),
            (c.channels in (1, 3), f"channels must be 1 or 3, got {c.channels}"),
            (c.z_dim >= 1 and c.width >= 1, "z_dim and width must be at least 1"),
            (c.batch_size >= 2, f"batch size must be at least 2, got {c.batch_size}"),
            (c.steps >= 1, f"steps must be at least 1, got {c.steps}"),
            (c.seed >= 0, f"seed must be a non-negative integer, got {c.seed}"),
            (all(math.isfinite(v) and v > 0 for v in (c.lr_d, c.lr_g)),
             f"learning rates must be positive, got lr_d={c.lr_d}, lr_g={c.lr_g}"),
            (len(c.betas) == 2 and all(0 <= b < 1 for b in c.betas),
             f"betas must be two numbers in [0, 1), got {c.betas}"),
            (c.n_critic >= 1, f"n_critic must be at least 1, got {c.n_critic}"),
            (c.gp_weight >= 0, f"gp_weight must be non-negative, got {c.gp_weight}"),
            (c.eval_every >= 0, f"eval_every must be 0 (never) or positive, got {c.eval_every}"),
            (c.eval_n >= 2, f"eval_n must be at least 2 (a covariance needs 2 images), got {c.eval_n}"),
            (c.eval_batch_size >= 1, f"eval_batch_size must be at least 1, got {c.eval_batch_size}"),
            (c.reference_n >= 2, f"reference_n must be at least 2, got {c.reference_n}"),
            (c.checkpoint_every >= 0, f"checkpoint_every must be 0 (only at the end) or positive, got "
                                      f"{c.checkpoint_every}"),
            (c.data_limit is None or c.data_limit >= 1, f"data_limit must be at least 1, got {c.data_limit}"),
            (c.kid_subsets >= 1 and c.kid_subset_size >= 2, "kid_subsets must be ≥ 1 and kid_subset_size ≥ 2"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainError(message)
        if c.reference is not None and not Path(c.reference).is_file():
            raise TrainError(f"{c.reference}: no such statistics file; give an .npz (e.g. made with `fidkit stats`) "
                             f"or leave the reference out to compute it from {c.reference_n} real images")

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"]) if d["betas"] is not None else None
        return d


#: fields that may differ between a checkpoint's run and the run resuming it
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "device", "stop_fid")


# --------------------------------------------------------------------------- sampling

def truncated_normal(shape, threshold: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """float32 tensor of ``shape`` with N(0, 1) entries, on the CPU.

    With ``threshold`` t > 0, every entry with |z| > t is drawn again (from the same
    generator) until all satisfy |z| ≤ t: samples of the standard normal truncated to
    [−t, t], BigGAN's truncation trick. ``threshold=None`` leaves z untruncated. The result
    depends only on the shape, t and the generator's state.
    """
    z = torch.randn(shape, generator=generator)
    if threshold is None:
        return z
    t = float(threshold)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"truncation threshold must be a positive number, got {threshold!r}")
    out = z.abs() > t
    while bool(out.any()):
        z[out] = torch.randn(int(out.sum()), generator=generator)
        out = z.abs() > t
    return z


def sample(generator: torch.nn.Module, n: int, truncation: float | None = None, seed: int = 0,
           batch_size: int = 256, output: str = "uint8") -> torch.Tensor:
    """``n`` images of ``generator`` from z ~ N(0, I), optionally truncated at |z_i| ≤ ``truncation``.

    z is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` in one piece, so the
    same seed gives the same images whatever the batch size; the generator runs in eval
    mode (batch norm with its running statistics) under ``torch.no_grad()`` and its
    training mode is restored afterwards. ``output``: ``"uint8"`` gives uint8 (n, 3, H, W)
    0..255 (grayscale replicated; rounding as saving an image file), ``"float"`` float32
    (n, C, H, W) in [-1, 1] as the generator produced them. On the generator's device.
    """
    if output not in ("uint8", "float"):
        raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    z = truncated_normal((n, generator.z_dim), truncation, torch.Generator().manual_seed(seed))
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            parts = [generator(z[i:i + batch_size].to(device)) for i in range(0, n, batch_size)]
    finally:
        generator.train(was_training)
    x = torch.cat(parts)
    if output == "float":
        return x
    u = fidkit.to_uint8(x, (-1, 1))
    return u.expand(-1, 3, -1, -1).contiguous() if u.shape[1] == 1 else u


# --------------------------------------------------------------------------- evaluation

def stats_from_features(feats: np.ndarray, source: str) -> fidkit.Statistics:
    """fidkit Statistics (mean, unbiased covariance, float64) of pool3 features float32 (N, 2048).

    The features come from :func:`fidkit.features` with the default protocol, so the
    statistics record protocol ``ttur``; fidkit's public API gives no weights digest
    alongside features, so that stays unknown (None).
    """
    x = np.asarray(feats, np.float64)
    return fidkit.Statistics(x.mean(axis=0), np.cov(x, rowvar=False), n=int(x.shape[0]), protocol="ttur",
                             source=source)


def real_uint8(source: str, n: int, size: int, channels: int) -> np.ndarray:
    """The first ``n`` images of ``source`` as uint8 (N, H, W, 3), as the generator sees them
    (resized to ``size``, converted to ``channels``), for fidkit."""
    return to_uint8_nhwc(load_images(source, size, channels, limit=n))


class FIDEvaluator:
    """FID (and KID) of ``n`` generated images against fixed reference statistics.

    ``reference``: an ``.npz`` path or a :class:`fidkit.Statistics`; ``kid_features``:
    float32 (M, 2048) reference features for KID (None: no KID). Each call samples the
    same ``n`` images (z from ``seed``) from the generator's current weights, feeds them to
    one :class:`fidkit.FID` metric in float form with ``input_range=(-1, 1)`` and returns
    ``{"fid": float, "n": int}`` plus ``kid_mean``, ``kid_std`` when KID is on.

    The result is a function of the generator's weights and buffers alone (z is fixed), so
    it is remembered under their SHA-256: runs that share a starting point (the same seed
    with other learning rates or batch sizes) pay for its evaluation once.
    """

    def __init__(self, reference, n: int = 500, batch_size: int = 64, device="auto", seed: int = 0,
                 kid_features: np.ndarray | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.kid_features = kid_features
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.metric = fidkit.FID(reference, device=device, batch_size=batch_size,
                                 keep_features=kid_features is not None)
        self._memo: dict = {}

    def __call__(self, generator: torch.nn.Module, step: int) -> dict:
        key = weights_digest(generator)
        if key not in self._memo:
            self._memo[key] = self._evaluate(generator)
        return dict(self._memo[key])

    def _evaluate(self, generator: torch.nn.Module) -> dict:
        self.metric.reset()
        x = sample(generator, self.n, seed=self.seed, batch_size=self.batch_size, output="float")
        # uint8 first (n × C × H × W bytes; as update would map them), gray replicated as a view
        u = fidkit.to_uint8(x, (-1, 1))
        if u.shape[1] == 1:
            u = u.expand(-1, 3, -1, -1)
        # one call: the metric splits it into the same batches, and on the CPU reuses freed
        # activations across them (one call per batch is about 10% slower, the same FID)
        self.metric.update(u)
        result = {"fid": self.metric.compute(), "n": self.metric.n}
        if self.kid_features is not None:
            k = fidkit.kid(self.kid_features, self.metric.features(), subsets=self.kid_subsets,
                           subset_size=self.kid_subset_size)
            result.update(kid_mean=k.mean, kid_std=k.std)
        return result


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes of every tensor)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def prepare_reference(config: TrainConfig, device) -> tuple:
    """(reference, KID features or None, description) of a run, made once.

    The reference is ``config.reference`` loaded (an ``.npz``) or, without one, the
    statistics of the first ``reference_n`` images of ``reference_data`` (default: the
    training data) as the generator sees them; KID features (``config.kid``) come from those
    same images, and then the statistics are computed from them (one network pass).
    """
    c = config
    source = c.reference_data or c.data
    reference, feats, described = None, None, c.reference
    if c.reference is not None:
        reference = fidkit.Statistics.load(c.reference)
    if c.reference is None or c.kid:
        real = real_uint8(source, c.reference_n, c.size, c.channels)
        if c.reference is None:
            described = f"statistics of the first {len(real)} images of {source}"
        if c.kid:
            feats = fidkit.features(real, device=device, batch_size=c.eval_batch_size, progress=False)
            if reference is None:
                reference = stats_from_features(feats, described)
        elif reference is None:
            reference = fidkit.compute_stats(real, device=device, batch_size=c.eval_batch_size, progress=False)
    return reference, feats, described


def make_evaluator(config: TrainConfig, device, seed: int) -> FIDEvaluator:
    """The default evaluator of a run: reference statistics (and KID features) made once."""
    c = config
    reference, feats, _ = prepare_reference(c, device)
    return FIDEvaluator(reference, c.eval_n, c.eval_batch_size, device, seed, feats, c.kid_subsets,
                        c.kid_subset_size)


# --------------------------------------------------------------------------- files

def atomic_write_bytes(path, data: bytes) -> Path:
    """Writes ``data`` to a temporary file beside ``path`` and renames it over ``path``, with
    the permissions the umask gives a new file (not mkstemp's 0600: others read the logs and
    study files on a shared file system)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            try:  # on disk before the rename, or a crash can leave the target empty
                os.fsync(f.fileno())
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # file systems that cannot sync
                    raise
        mask = os.umask(0)  # a single-threaded trainer: no other thread creates files meanwhile
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path, obj) -> Path:
    """``obj`` as indented JSON (NaN and inf refused), written atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def new_figure(ncols: int = 1, width: float = 5.5, height: float = 3.8):
    """A matplotlib Figure with its own Agg canvas (pyplot and the global backend untouched)
    and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def save_figure(fig, path) -> Path:
    """Renders ``fig`` as PNG and writes it atomically."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


def plot_fid_curve(log: dict, path) -> Path:
    """PNG of FID (and KID, on a second axis, when present) against the step of a run's log."""
    evals = log["evals"]
    fig, (ax,) = new_figure()
    ax.plot([e["step"] for e in evals], [math.nan if e["fid"] is None else e["fid"] for e in evals], "o-",
            color="C0", label="FID")
    ax.set_xlabel("generator step")
    ax.set_ylabel(f"FID ({evals[0]['n'] if evals and 'n' in evals[0] else '?'} generated images)")
    cfg = log["config"]
    ax.set_title(f"{cfg['arch']} on {cfg['data']}: lr_D {cfg['lr_d']:g}, lr_G {cfg['lr_g']:g}, "
                 f"batch {cfg['batch_size']}", fontsize=9)
    ax.grid(alpha=0.3)
    kids = [(e["step"], e["kid_mean"]) for e in evals if e.get("kid_mean") is not None]
    if kids:
        ax2 = ax.twinx()
        ax2.plot(*zip(*kids), "s--", color="C1", label="KID")
        ax2.set_ylabel("KID")
    return save_figure(fig, path)


def save_checkpoint(path, state: dict) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path) -> dict:
    """A checkpoint written by :func:`train` (loaded on the CPU, tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one user-facing error
        raise TrainError(f"{path}: not a readable fidkit-ttur checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a fidkit-ttur checkpoint")
    return state


CHECKPOINT_FORMAT = "fidkit-ttur-checkpoint-1"


def config_from_checkpoint(path_or_state) -> TrainConfig:
    state = path_or_state if isinstance(path_or_state, dict) else load_checkpoint(path_or_state)
    d = dict(state["config"])
    if d.get("betas") is not None:
        d["betas"] = tuple(d["betas"])
    return TrainConfig(**d)


def generator_from_checkpoint(path, device="cpu") -> tuple[torch.nn.Module, TrainConfig, dict]:
    """(generator with the checkpoint's weights, in eval mode, its config, the checkpoint)."""
    state = load_checkpoint(path)
    c = config_from_checkpoint(state)
    g, _ = models.build(c.arch, c.z_dim, c.channels, c.size, c.width)
    g.load_state_dict(state["generator"])
    return g.to(device).eval(), c, state


# --------------------------------------------------------------------------- the loop

def resolve_device(device: str) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise TrainError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return dev


def _cpu_model() -> str | None:
    """The CPU's model name with its family and model numbers (``/proc/cpuinfo``; a virtual
    machine's name alone, such as "AMD EPYC", does not tell its generations apart), or None
    where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            fields = {}
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                k, _, v = line.partition(":")
                fields.setdefault(k.strip(), v.strip())
    except OSError:
        return None
    name = fields.get("model name")
    numbers = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields)
    return (f"{name}, {numbers}" if name and numbers else name or numbers) or None


def machine_description() -> str:
    """The CPU (its model and torch's vector width for it: float kernels, and so training's last
    bits, depend on them), torch and thread settings, for logs (timings depend on them)."""
    env = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
           if k in os.environ]
    model = _cpu_model()
    try:  # the vector width torch's CPU kernels use (e.g. AVX2, AVX512): it changes their last bits
        isa = f", torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
    except (AttributeError, RuntimeError):
        isa = ""
    return (f"{platform.machine()}{f' ({model})' if model else ''}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
            f"{isa}, {torch.get_num_threads()} torch threads" + (f", {' '.join(env)}" if env else ""))


def derived_seeds(seed: int) -> tuple[int, int, int]:
    """Independent seeds for the data sampler, the training noise and the evaluation z."""
    s = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    return tuple(int(v) & 0x7FFF_FFFF_FFFF_FFFF for v in s)


@dataclass
class TrainResult:
    """What :func:`train` returns: the networks (on the run's device), the log and the last step."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    log: dict
    step: int
    out: Path | None = None
    checkpoints: list = field(default_factory=list)


def _d_loss(arch: str, d, real, fake, noise: torch.Generator, gp_weight: float) -> torch.Tensor:
    if arch == "dcgan":
        return F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=noise).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    penalty = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
    return d(fake).mean() - d(real).mean() + gp_weight * penalty


def _g_loss(arch: str, d, fake) -> torch.Tensor:
    if arch == "dcgan":
        return F.softplus(-d(fake)).mean()
    return -d(fake).mean()


def train(config: TrainConfig, out=None, *, resume=None, evaluator: Callable | None = None,
          command: list | None = None, on_eval: Callable | None = None) -> TrainResult:
    """Trains a GAN as ``config`` says; returns a :class:`TrainResult`.

    ``out``: the run folder (created) for ``log.json``, ``fid.png`` and ``checkpoints/``;
    None keeps everything in memory (no files, no checkpoints). ``resume``: a checkpoint
    path; the run continues from its step with its weights, optimiser states, random states
    and log, to ``config.steps`` (which must be larger). ``config`` must then equal the
    checkpoint's except for :data:`RESUMABLE_CHANGES`. ``evaluator(generator, step) ->
    dict`` with ``"fid"`` replaces the default :class:`FIDEvaluator` (tests pass a cheap
    one). ``command``: the command line, recorded in the log. ``on_eval(record)`` is
    called after each evaluation (progress output).

    The log (``TrainResult.log``, ``log.json``): ``config``, ``fidkit_version``,
    ``torch_version``, ``device``, ``command``, ``evals`` (per evaluation: ``step``,
    ``fid``, ``kid_mean``/``kid_std`` with KID, ``n`` generated images, ``seconds`` of
    training so far excluding evaluations, ``eval_seconds``, ``images_seen`` real images
    drawn, mean ``loss_d``/``loss_g`` since the previous evaluation), ``warnings`` (fidkit's,
    e.g. fewer images than feature dimensions), ``resumes``, ``reached_stop_fid`` and
    ``finished``.
    """
    config.validate()
    c = config.resolved()
    device = resolve_device(c.device)
    out = Path(out) if out is not None else None
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        before = config_from_checkpoint(state).resolved()
        differ = [f.name for f in dataclasses.fields(TrainConfig)
                  if f.name not in RESUMABLE_CHANGES and getattr(before, f.name) != getattr(c, f.name)]
        if differ:
            raise TrainError(f"{resume}: the checkpoint's run has other settings ({', '.join(differ)}); resume with "
                             f"the same settings (only {', '.join(RESUMABLE_CHANGES)} may change)")
        if state["step"] >= c.steps:
            raise TrainError(f"{resume}: the checkpoint is at step {state['step']}, so steps must be larger than "
                             f"that to continue, got {c.steps}")
    if out is not None:
        if out.exists() and not out.is_dir():
            raise TrainError(f"{out}: exists and is not a folder; choose another output folder")
        if resume is None and (out / "log.json").exists():
            raise TrainError(f"{out}: holds a run already (log.json); choose another folder or resume it")

    try:
        data = load_images(c.data, c.size, c.channels, c.data_limit)
    except DataError as e:
        raise TrainError(str(e)) from None
    if c.batch_size > data.shape[0]:
        raise TrainError(f"batch size {c.batch_size} is larger than the {data.shape[0]} training images")
    data = data.to(device)
    sampler_seed, noise_seed, eval_seed = derived_seeds(c.seed)

    torch.manual_seed(c.seed)
    g, d = models.build(c.arch, c.z_dim, c.channels, c.size, c.width)
    g.to(device).train()
    d.to(device).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=c.lr_g, betas=c.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=c.lr_d, betas=c.betas)
    sampler = BatchSampler(data, c.batch_size, sampler_seed)
    noise = torch.Generator().manual_seed(noise_seed)
    step, train_seconds = 0, 0.0
    sums = {"loss_d": 0.0, "loss_g": 0.0, "count": 0}
    log = {"format": "fidkit-ttur-log-1", "config": c.as_dict(), "fidkit_version": fidkit.__version__,
           "torch_version": str(torch.__version__), "device": str(device),
           "machine": machine_description(),
           "command": command, "evals": [], "warnings": [], "resumes": [], "reached_stop_fid": None,
           "finished": False}

    if state is not None:
        g.load_state_dict(state["generator"])
        d.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sampler.load_state_dict(state["rng"]["sampler"])
        noise.set_state(state["rng"]["noise"])
        torch.set_rng_state(state["rng"]["torch"])
        step, train_seconds, sums = int(state["step"]), float(state["train_seconds"]), dict(state["loss_sums"])
        old = state["log"]
        on_schedule = [e for e in old["evals"]
                       if e["step"] == 0 or (c.eval_every and e["step"] % c.eval_every == 0)]
        dropped = [e for e in old["evals"] if e not in on_schedule]
        log["evals"], log["warnings"] = on_schedule, list(old.get("warnings", []))
        log["resumes"] = list(old.get("resumes", [])) + [
            {"from_step": step, "checkpoint": str(resume), "steps_before": old["config"]["steps"],
             "dropped_end_evals": dropped, "command": command}]
        log["command"] = old.get("command")

    if evaluator is None and (c.eval_every or c.eval_start or c.stop_fid is not None):
        evaluator = make_evaluator(c, device, eval_seed)
    if out is not None:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    plots = out is not None and have_matplotlib()
    if out is not None and not plots and "matplotlib" not in " ".join(log["warnings"]):
        log["warnings"].append("matplotlib is not installed: no fid.png (pip install 'fidkit[plot]')")
    checkpoints: list = []

    def evaluate() -> dict:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = dict(evaluator(g, step))
        for w in caught:
            msg = str(w.message)
            if msg not in log["warnings"]:
                log["warnings"].append(msg)
        record = {"step": step, **r, "seconds": round(train_seconds, 3),
                  "eval_seconds": round(time.perf_counter() - t0, 3),
                  "images_seen": step * c.n_critic * c.batch_size}
        if sums["count"]:
            record.update(loss_d=sums["loss_d"] / sums["count"], loss_g=sums["loss_g"] / sums["count"])
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        if step == 0 or (c.eval_every and step % c.eval_every == 0):
            # an end-of-run evaluation off the schedule keeps the sums, so that a resumed run
            # logs the same means as an uninterrupted one
            sums.update(loss_d=0.0, loss_g=0.0, count=0)
        log["evals"].append(record)
        if out is not None:
            write_json(out / "log.json", log)
            if plots:
                plot_fid_curve(log, out / "fid.png")
        if on_eval is not None:
            on_eval(record)
        return record

    def checkpoint() -> None:
        path = out / "checkpoints" / f"step-{step:07d}.pt"
        save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT, "config": c.as_dict(), "step": step, "train_seconds": train_seconds,
            "generator": g.state_dict(), "discriminator": d.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "loss_sums": dict(sums),
            "rng": {"torch": torch.get_rng_state(), "noise": noise.get_state(), "sampler": sampler.state_dict()},
            "log": log})
        checkpoints.append(path)
        write_json(out / "log.json", log)

    def reached(record) -> bool:
        if c.stop_fid is not None and record["fid"] is not None and record["fid"] <= c.stop_fid:
            log["reached_stop_fid"] = {"step": record["step"], "fid": record["fid"], "threshold": c.stop_fid}
            return True
        return False

    stop = False
    if state is None and c.eval_start and evaluator is not None:
        stop = reached(evaluate())
    while step < c.steps and not stop:
        t0 = time.perf_counter()
        for _ in range(c.n_critic):
            real = sampler.next()
            z = torch.randn(c.batch_size, c.z_dim, generator=noise).to(device)
            with torch.no_grad():
                fake = g(z)
            loss_d = _d_loss(c.arch, d, real, fake, noise, c.gp_weight)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        z = torch.randn(c.batch_size, c.z_dim, generator=noise).to(device)
        loss_g = _g_loss(c.arch, d, g(z))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        step += 1
        sums["loss_d"] += loss_d.item()
        sums["loss_g"] += loss_g.item()
        sums["count"] += 1
        if not (math.isfinite(sums["loss_d"]) and math.isfinite(sums["loss_g"])):
            log["warnings"].append(f"non-finite loss at step {step}; training stopped")
            break
        train_seconds += time.perf_counter() - t0
        if evaluator is not None and ((c.eval_every and step % c.eval_every == 0) or step == c.steps):
            stop = reached(evaluate())
        if out is not None and c.checkpoint_every and step % c.checkpoint_every == 0 and step < c.steps and not stop:
            checkpoint()
    log["finished"] = True
    log["steps_done"] = step
    if out is not None:
        checkpoint()
    return TrainResult(g, d, log, step, out, checkpoints)
