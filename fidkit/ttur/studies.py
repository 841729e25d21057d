"""The three studies as resumable plans of small runs, each with its own result file.

A study is a list of runs (a configuration and a seed). Each run trains a generator with
:func:`~fidkit.ttur.train.train` in segments up to the steps of its evaluation schedule,
and after each segment evaluates it and rewrites its own JSON file (atomically) in the
runs folder (default ``benchmarks/results/ttur_runs/STUDY/NAME.json``): per evaluation
the step, FID, KID, generated images, training and evaluation seconds, with the command,
git commit, machine and start/end times. A finished run has ``"complete": true`` and is
skipped when the study runs again; an unfinished one continues from its last checkpoint
(in the work folder, default ``runs/ttur``, not committed), or starts again without one.
The study files (``ttur_timescales.json|png`` ...) are aggregated from whatever run files
exist, and say which runs are missing or unfinished.

Evaluation protocol (every study number): FID of ``eval_n`` (≥ 2048) generated images
against the statistics of the full Fashion-MNIST test set (``reference_stats/``); KID
(100 subsets of 1000) against the pool3 features of the first ``real_n`` test images,
computed once and cached in the work folder; the same z for every evaluation of a run
(seeded by the run's seed). An evaluation is a function of the generator's weights, so it
is cached under their SHA-256 (the untrained generator of a seed is shared by every
configuration with that seed).

Nothing here is specific to Fashion-MNIST except the defaults; ``quick=True`` plans tiny
runs (mechanics only: their numbers mean nothing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import fidkit

from . import models
from .train import (TrainConfig, TrainError, atomic_write_bytes, derived_seeds, generator_from_checkpoint,
                    load_checkpoint, machine_description, real_uint8, sample, train, weights_digest, write_json)

#: the fewest generated images a study evaluation may use (the feature dimension); fewer bias FID
MIN_EVAL_N = 2048
STUDIES = ("timescales", "truncation", "critical-batch")
#: truncation thresholds of the study (None: untruncated), as in BigGAN's figures
THRESHOLDS = (None, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3)
#: learning rates (lr_d, lr_g) of TTUR per architecture, and the single-time-scale rates
#: built from them (lr_d = lr_g at each of the two)
TTUR_RATES = {"dcgan": (4e-4, 1e-4), "wgan-gp": (3e-4, 1e-4)}
#: evaluation steps (step 0 = the untrained generator) per architecture for the time scales,
#: about a factor 2.5 apart; DCGAN's went to 25,000 until its runs showed FID still falling
#: 28% over the last interval there (not flat), so 60,000 was added; at 60,000 TTUR still fell
#: 13% and single-slow 18% over the interval (not flat by the rule fixed before), so 150,000
TIMESCALE_STEPS = {"dcgan": (0, 500, 1500, 4000, 10000, 25000, 60000, 150000),
                   "wgan-gp": (0, 500, 1500, 4000, 10000, 25000)}
#: critic updates per generator update in the time-scale runs (None: the architecture's
#: default). The TTUR paper ran WGAN-GP's TTUR with one critic update per generator update
#: (its code: CRITIC_ITERS = 1 with TTUR, 5 for the original WGAN-GP): the faster time scale
#: is the discriminator's learning rate, not extra critic updates. With 1 in every arm the
#: time scales differ only in their rates, at DCGAN's schedule (a step costs about a fifth of
#: a 5-update step); chosen before any WGAN-GP run trained
TIMESCALE_N_CRITIC = {"dcgan": None, "wgan-gp": 1}
#: the step to which `fidkit-ttur studies` takes an architecture's time-scale runs before the
#: other plans; the rest of their schedule (DCGAN's 150,000, about 20 core-hours for its nine
#: runs) comes after every other plan
TIMESCALE_FIRST_PASS = {"dcgan": 60000}
#: the same for --quick, whose schedule is (0, 1, 2)
QUICK_FIRST_PASS = {"dcgan": 1}
#: the step of the time-scale study's DCGAN TTUR runs whose generators the truncation study samples
TRUNCATION_STEP = 10000
#: the critical-batch study's batch sizes. Planned as 16-512; 4 and 8 were added once seed 0's
#: first runs put the SFO minimum at the smallest, 16 (b*K about 70k images at 16, 116k at 32;
#: batch 64 crossed between 131k and 262k), where the study could only bound the critical batch
#: size (<= 16). Not below 4: the generator's first batch norm (1-d, after its linear layer)
#: normalises each feature over the batch alone, and over 2 images leaves each at ±1
CRITICAL_BATCH_SIZES = (4, 8, 16, 32, 64, 128, 256, 512)
QUICK_BATCH_SIZES = (4, 8, 16, 32, 64)
#: the critical-batch study's evaluation grid in images seen (batch × steps), the same for
#: every batch size: 2^15 ... 2^21 (32,768 to 2,097,152), so steps = images / batch is exact
#: for every batch size 4-512; step 0 (the untrained generator, shared by a seed's runs) too
CRITICAL_IMAGES = tuple(2 ** k for k in range(15, 22))
QUICK_CRITICAL_IMAGES = (64, 128, 256)
#: the critical-batch study's target FID, fixed before any of its runs: the time-scale
#: study's DCGAN TTUR runs at batch 64 (the same configuration as this study's batch 64)
#: gave FID 170-183 at step 1500 (96k images) and 75-80 at step 4000 (256k images), so
#: 100 lies on the steep part of the curve, reached at about 200k images at batch 64,
#: within the grid's 2M images for batch sizes far from 64 unless they are 10x less
#: sample-efficient. A run stops at the grid point where it first reaches it.
CRITICAL_FID = 100.0
#: images seen (batch × critic updates) between the checkpoints a study leaves while it
#: trains towards its next evaluation step (about 5 minutes on one core at batch 64), so that
#: a stopped worker loses at most that much; they are removed once the step is reached
SAFETY_CHECKPOINT_IMAGES = 2 ** 18


@dataclass
class EvalSpec:
    """How every evaluation of a study is made."""

    n: int = MIN_EVAL_N
    batch_size: int = 16
    reference: str = "reference_stats/fashion-mnist-test.npz"
    real_data: str = "fashion-mnist-test"
    real_n: int = MIN_EVAL_N
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["reference_sha256"] = file_sha256(self.reference) if Path(self.reference).is_file() else None
        return d


@dataclass
class RunSpec:
    """One run of a study: a training configuration, its seed and its evaluation steps."""

    study: str
    name: str
    group: str
    config: TrainConfig
    eval_steps: tuple
    thresholds: tuple = ()          # truncation only: evaluated on the generator of ``source``
    source: "RunSpec | None" = None  # at its step ``at_step``
    at_step: int | None = None
    #: critical batch only: the run stops once an evaluation reaches FID ≤ target_fid, after
    #: one more evaluation at the geometric midpoint of the bracketing grid steps
    target_fid: float | None = None

    @property
    def seed(self) -> int:
        return self.config.seed


@dataclass
class Plan:
    study: str
    runs: list
    eval: EvalSpec
    quick: bool = False
    settings: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- plans

def base_config(quick: bool, data: str, data_limit: int | None, device: str) -> dict:
    if quick:
        return dict(data=data, data_limit=data_limit or 64, z_dim=8, width=4, device=device, eval_every=0,
                    eval_start=False, reference=None)
    return dict(data=data, data_limit=data_limit, device=device, eval_every=0, eval_start=False, reference=None)


def timescale_runs(archs=("dcgan", "wgan-gp"), seeds=(0, 1, 2), quick=False, data="fashion-mnist-train",
                   data_limit=None, device="cpu", only=None) -> list:
    """TTUR (lr_d > lr_g) and the single time scales lr_d = lr_g at each of TTUR's two rates."""
    out = []
    base = base_config(quick, data, data_limit, device)
    for arch in archs:
        lr_d, lr_g = TTUR_RATES[arch]
        settings = {"ttur": (lr_d, lr_g), "single-slow": (lr_g, lr_g), "single-fast": (lr_d, lr_d)}
        steps = (0, 1, 2) if quick else TIMESCALE_STEPS[arch]
        for setting, (a, b) in settings.items():
            if only is not None and setting not in only:
                continue
            for seed in seeds:
                c = TrainConfig(arch=arch, lr_d=a, lr_g=b, seed=seed, steps=max(steps),
                                batch_size=16 if quick else 64, n_critic=TIMESCALE_N_CRITIC[arch], **base)
                out.append(RunSpec("timescales", f"{arch}-{setting}-s{seed}", f"{arch}/{setting}", c, steps))
    return out


def up_to(spec: RunSpec, step: int) -> RunSpec:
    """``spec`` with its schedule cut at ``step``: the same run (name, file, checkpoints),
    finished once it has been evaluated there; the whole ``spec`` continues it later.
    ``step`` must be one of ``spec.eval_steps``: a step between two would silently cut the run
    at the one below it (ValueError)."""
    if step not in spec.eval_steps:
        raise ValueError(f"{spec.name}: step {step} is not one of its evaluation steps {spec.eval_steps}")
    steps = tuple(s for s in spec.eval_steps if s <= step)
    return dataclasses.replace(spec, eval_steps=steps, config=dataclasses.replace(spec.config, steps=max(steps)))


def truncation_runs(seeds=(0,), quick=False, **kw) -> list:
    """BigGAN's truncation on the DCGAN generators of the time-scale study's TTUR runs."""
    out = []
    for src in timescale_runs(archs=("dcgan",), seeds=seeds, quick=quick, only=("ttur",), **kw):
        at = (2 if quick else TRUNCATION_STEP)
        out.append(RunSpec("truncation", src.name, "dcgan/ttur", src.config, (), THRESHOLDS, src, at))
    return out


def critical_grid_steps(batch_size: int, quick: bool = False) -> tuple:
    """The evaluation steps of a critical-batch run: 0 and images / batch for each grid point
    of :data:`CRITICAL_IMAGES` (the same images seen at every batch size)."""
    images = QUICK_CRITICAL_IMAGES if quick else CRITICAL_IMAGES
    return (0,) + tuple(sorted({max(1, n // batch_size) for n in images}))


def critical_batch_runs(batch_sizes=CRITICAL_BATCH_SIZES, seeds=(0, 1, 2), quick=False, data="fashion-mnist-train",
                        data_limit=None, device="cpu", target_fid=CRITICAL_FID) -> list:
    """DCGAN with TTUR's constant rates at each batch size (seeds outermost), evaluated on the
    images-seen grid until FID ≤ ``target_fid`` (then once more inside the bracket)."""
    base = base_config(quick, data, data_limit, device)
    lr_d, lr_g = TTUR_RATES["dcgan"]
    out = []
    for seed in seeds:
        for b in batch_sizes:
            steps = critical_grid_steps(b, quick)
            c = TrainConfig(arch="dcgan", lr_d=lr_d, lr_g=lr_g, seed=seed, steps=max(steps), batch_size=b, **base)
            out.append(RunSpec("critical-batch", f"dcgan-b{b}-s{seed}", f"b{b}", c, steps, target_fid=target_fid))
    return out


# --------------------------------------------------------------------------- provenance

#: TrainConfig fields of train()'s own evaluation, unused by the studies (which evaluate
#: as their EvalSpec says) and left out of the run files
_UNUSED_FIELDS = ("eval_every", "eval_n", "eval_batch_size", "eval_start", "reference", "reference_data",
                  "reference_n", "kid", "kid_subsets", "kid_subset_size", "stop_fid", "checkpoint_every")


def train_dict(c: TrainConfig) -> dict:
    """The training settings of a run (``c`` resolved, without train()'s evaluation fields)."""
    return {k: v for k, v in c.resolved().as_dict().items() if k not in _UNUSED_FIELDS}


def same_training(a: dict | None, b: dict) -> bool:
    """Whether two runs' training settings give the same trajectory: equal but for ``steps``,
    which only says where training stops (it is trained in segments, so the weights at a
    step do not depend on it); a schedule extended later keeps the evaluations it has."""
    return a is not None and {k: v for k, v in a.items() if k != "steps"} == {
        k: v for k, v in b.items() if k != "steps"}


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str | None:
    """HEAD of the checkout fidkit runs from, with ``-dirty`` when tracked files differ."""
    root = Path(__file__).resolve().parent.parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                "fidkit"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("-dirty" if dirty else "")) or None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def provenance(command: str | None) -> dict:
    return {"command": command, "git_commit": git_commit(), "host": platform.node(),
            "machine": machine_description(), "fidkit_version": fidkit.__version__,
            "torch_version": str(torch.__version__)}


# --------------------------------------------------------------------------- evaluation

class Evaluations:
    """Evaluations of generators under one :class:`EvalSpec`, with caches in ``work``.

    Reference statistics are loaded once; the pool3 features of the first ``real_n`` real
    images (KID, precision/recall) are computed once and kept in ``work/cache``; every
    result is kept in ``work/cache/evals`` under the generator's weights digest, the z seed
    and the truncation, so it is computed once.
    """

    def __init__(self, spec: EvalSpec, work: Path, device="cpu", size=28, channels=1):
        self.spec, self.work, self.device = spec, Path(work), device
        self.size, self.channels = size, channels
        self._reference = None
        self._real = None
        self._metrics: dict = {}

    def reference(self):
        if self._reference is None:
            self._reference = fidkit.Statistics.load(self.spec.reference)
        return self._reference

    def real_features(self) -> np.ndarray:
        if self._real is None:
            s = self.spec
            name = f"real-features-{Path(s.real_data).name}-first{s.real_n}-{self.size}px{self.channels}ch.npy"
            path = self.work / "cache" / name
            if path.is_file():
                self._real = np.load(path)
            else:
                real = real_uint8(s.real_data, s.real_n, self.size, self.channels)
                feats = fidkit.features(real, device=self.device, batch_size=s.batch_size, progress=False)
                path.parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                np.save(buf, feats)
                atomic_write_bytes(path, buf.getvalue())
                self._real = feats
        return self._real

    def _cache_path(self, generator, z_seed: int, truncation) -> Path:
        s = self.spec
        key = json.dumps([weights_digest(generator), z_seed, truncation, s.n, s.reference, s.real_data, s.real_n,
                          s.kid_subsets, s.kid_subset_size, s.pr_k])
        return self.work / "cache" / "evals" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def evaluate(self, generator, z_seed: int, truncation=None, pr: bool = False) -> dict:
        """FID, KID (and with ``pr`` precision, recall, density, coverage) of ``n`` images of
        ``generator`` from z seeded by ``z_seed``, truncated at ``truncation`` (None: not)."""
        path = self._cache_path(generator, z_seed, truncation)
        if path.is_file():
            cached = json.loads(path.read_text())
            if not pr or "precision" in cached:
                return {**cached, "cached": True}
        s = self.spec
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metric = fidkit.FID(self.reference(), device=self.device, batch_size=s.batch_size, keep_features=True)
            images = sample(generator, s.n, truncation=truncation, seed=z_seed, batch_size=s.batch_size)
            for i in range(0, s.n, s.batch_size):
                metric.update(images[i:i + s.batch_size])
            feats = metric.features()
            k = fidkit.kid(self.real_features(), feats, subsets=s.kid_subsets, subset_size=s.kid_subset_size)
            r = {"fid": metric.compute(), "n": metric.n, "kid_mean": k.mean, "kid_std": k.std}
            if pr:
                r.update({k: float(v) for k, v in
                          fidkit.precision_recall(self.real_features(), feats, k=s.pr_k).items()})
        r = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()}
        r["eval_seconds"] = round(time.perf_counter() - t0, 1)
        r["generator_sha256"] = weights_digest(generator)
        r["warnings"] = sorted({str(w.message) for w in caught})
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, r)
        return {**r, "cached": False}


# --------------------------------------------------------------------------- running

class RunBusy(TrainError):
    """The run is being run by another live process (``pid``)."""

    def __init__(self, message: str, pid: int):
        super().__init__(message)
        self.pid = pid


class RunLock:
    """An exclusive lock file per run (its holder's pid), so that two processes never run
    the same run; a lock whose process is gone is taken over. A live holder raises
    :class:`RunBusy`, so that several ``fidkit-ttur studies`` processes (one per core) share
    a plan: each skips the runs another holds."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return self
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                    os.kill(pid, 0)
                except (ValueError, ProcessLookupError, PermissionError, OSError):
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunBusy(f"{self.path.stem}: already being run by process {pid}", pid)
        raise TrainError(f"{self.path}: cannot take the lock")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def run_path(runs_dir, spec: RunSpec) -> Path:
    return Path(runs_dir) / spec.study / f"{spec.name}.json"


def load_run(runs_dir, spec: RunSpec) -> dict | None:
    p = run_path(runs_dir, spec)
    return json.loads(p.read_text()) if p.is_file() else None


def _checkpoints(folder: Path) -> dict:
    return {int(p.stem.split("-")[1]): p for p in sorted((folder / "checkpoints").glob("step-*.pt"))}


def train_to(spec: RunSpec, step: int, work: Path, say=print) -> tuple:
    """(generator at ``step`` of ``spec``'s run, seconds of training so far): trained with
    :func:`train` from its latest checkpoint at or before ``step`` (or from scratch); a
    checkpoint is left at ``step``."""
    c = spec.config
    folder = work / spec.study / spec.name
    if step == 0:
        torch.manual_seed(c.seed)  # exactly train()'s initialisation
        g, _ = models.build(c.arch, c.z_dim, c.channels, c.size, c.width)
        return g.eval(), 0.0
    ckpts = _checkpoints(folder)
    if step in ckpts:
        g, _, state = generator_from_checkpoint(ckpts[step])
        return g, float(state["train_seconds"])
    before = [s for s in ckpts if s < step]
    if not before and folder.exists():
        shutil.rmtree(folder)
    resume = ckpts[max(before)] if before else None
    say(f"  training {spec.name} to step {step}" + (f" from step {max(before)}" if before else ""))
    every = safety_checkpoint_every(c)
    r = train(dataclasses.replace(c, steps=step, checkpoint_every=every), folder, resume=resume)
    state = load_checkpoint(r.checkpoints[-1])
    keep = set(spec.eval_steps) | {m for s in spec.eval_steps if (m := _bracket(spec, s)[1]) is not None}
    for s, p in _checkpoints(folder).items():
        if s < step and s % every == 0 and s not in keep:  # interim: this segment's or a stopped one's
            p.unlink()
    return r.generator.eval(), float(state["train_seconds"])


def safety_checkpoint_every(c: TrainConfig) -> int:
    """Steps between the interim checkpoints of a study's training segment:
    :data:`SAFETY_CHECKPOINT_IMAGES` images seen, at least 1 step."""
    r = c.resolved()
    return max(1, SAFETY_CHECKPOINT_IMAGES // (r.batch_size * r.n_critic))


def next_step(spec: RunSpec, evals: list) -> int | None:
    """The next step of ``spec`` to evaluate given its evaluations so far, or None when the
    run is finished.

    Without a target: the first step of the schedule not yet evaluated. With ``target_fid``:
    the grid steps in order until one reaches FID ≤ target; then, once, the geometric
    midpoint of that step and the grid step before it (the midpoint of 0 and s is s / 2),
    so that the crossing is bracketed within a factor √2 in steps; finished then, or when
    the whole grid is evaluated without reaching the target."""
    done = {e["step"]: e["fid"] for e in evals}
    if spec.target_fid is None:
        return next((s for s in spec.eval_steps if s not in done), None)
    for s in sorted(spec.eval_steps):
        if s not in done:
            return s
        if done[s] is not None and done[s] <= spec.target_fid:
            lo, mid = _bracket(spec, s)
            if mid is None:
                return None  # reached before training, or no step between: nothing to refine
            return None if any(lo < t < s for t in done) else mid
    return None


def _bracket(spec: RunSpec, step: int) -> tuple:
    """(the grid step before grid step ``step``, the refining step strictly between them: their
    geometric midpoint, or ``step // 2`` from step 0), with None for what does not exist."""
    grid = sorted(spec.eval_steps)
    i = grid.index(step)
    if i == 0:
        return None, None
    lo = grid[i - 1]
    mid = int(round(math.sqrt(lo * step))) if lo > 0 else step // 2
    return lo, (mid if lo < mid < step else None)


def is_done(spec: RunSpec, doc: dict | None) -> bool:
    """Whether the result document ``doc`` of ``spec`` is finished for ``spec``'s schedule: a
    run marked complete whose schedule was extended since (more eval steps) is not."""
    if doc is None or not doc.get("complete"):
        return False
    return spec.source is not None or next_step(spec, doc["evals"]) is None


def run_one(spec: RunSpec, evals: Evaluations, runs_dir, work, command=None, say=print) -> dict:
    """Runs (or continues) one run of a study, rewriting its result file after each
    evaluation; returns the result document. A complete result is returned as it is."""
    runs_dir, work = Path(runs_dir), Path(work)
    doc = load_run(runs_dir, spec)
    if is_done(spec, doc):
        return doc
    if spec.source is not None:
        return _run_truncation(spec, evals, runs_dir, work, command, say)
    path = run_path(runs_dir, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with RunLock(work / spec.study / f"{spec.name}.lock"):
        doc = load_run(runs_dir, spec)  # again, under the lock: another process may have run it meanwhile
        if is_done(spec, doc):
            return doc
        z_seed = derived_seeds(spec.seed)[2]
        if doc is None or not same_training(doc.get("config"), train_dict(spec.config)):
            doc = {"format": "fidkit-ttur-study-run-1", "study": spec.study, "name": spec.name,
                   "group": spec.group, "seed": spec.seed, "config": train_dict(spec.config),
                   "eval_steps": list(spec.eval_steps), "evaluation": {**evals.spec.as_dict(), "z_seed": z_seed},
                   "sessions": [], "evals": [], "complete": False}
        doc["config"] = train_dict(spec.config)  # its steps: the (possibly extended) schedule's end
        doc["eval_steps"] = list(spec.eval_steps)
        doc["complete"] = False  # until every step of the (possibly extended) schedule is evaluated
        doc["sessions"].append({**provenance(command), "started": now(), "finished": None})
        _keep_reproduced(spec, doc, work, say)
        while (step := next_step(spec, doc["evals"])) is not None:
            _leave_midpoint_checkpoint(spec, step, work, say)
            g, train_seconds = train_to(spec, step, work, say)
            r = evals.evaluate(g, z_seed)
            rec = {"step": step, "fid": r["fid"], "kid_mean": r.get("kid_mean"), "kid_std": r.get("kid_std"),
                   "n": r["n"], "train_seconds": round(train_seconds, 1), "eval_seconds": r["eval_seconds"],
                   "images_seen": step * spec.config.resolved().n_critic * spec.config.batch_size,
                   "generator_sha256": r["generator_sha256"], "cached": r["cached"], "evaluated": now()}
            for w in r.get("warnings", []):
                doc.setdefault("warnings", [])
                if w not in doc["warnings"]:
                    doc["warnings"].append(w)
            doc["evals"].append(rec)
            doc["evals"].sort(key=lambda e: e["step"])
            doc["sessions"][-1]["finished"] = now()
            write_json(path, doc)
            took = "cached" if r["cached"] else f"{r['eval_seconds']:.0f} s"
            say(f"  {spec.name} step {step}: FID {r['fid']:.2f}, KID {r['kid_mean']:.4f} ({took})")
        doc["complete"] = True
        doc["sessions"][-1]["finished"] = now()
        write_json(path, doc)
    return doc


def _keep_reproduced(spec: RunSpec, doc: dict, work: Path, say) -> None:
    """Keeps in ``doc`` only the evaluations of generators this machine's training reproduces.

    Training is deterministic on one machine, but its float kernels, and so its last bits, differ
    between CPUs; a GAN's trajectory then drifts apart. A run continued after its checkpoints
    were lost (a new machine) is retrained from step 0: at each evaluated step the retrained
    generator's digest is compared with the recorded one, and each evaluation whose generator
    differs is moved to ``doc["superseded_evals"]`` (with why) and made again, so that a run's
    evaluations all come from this machine's one trajectory (those that match are of it).
    Costs the training to the last evaluated step, which continuing needs anyway; digests only."""
    for e in sorted((e for e in doc["evals"] if e["step"] > 0), key=lambda e: e["step"]):
        g, _ = train_to(spec, e["step"], work, say)
        digest = weights_digest(g)
        if digest == e["generator_sha256"]:
            continue
        doc["evals"].remove(e)
        why = (f"the generator retrained to step {e['step']} on {machine_description()} differs from the one "
               f"evaluated (digest {digest[:12]} against {e['generator_sha256'][:12]}): another trajectory, so "
               f"this evaluation was made again ({now()})")
        doc.setdefault("superseded_evals", []).append({**e, "why": why})
        say(f"  {spec.name}: step {e['step']}'s generator is not reproduced here; its evaluation is made again")


def _leave_midpoint_checkpoint(spec: RunSpec, step: int, work: Path, say) -> None:
    """For a run with a target: before training to grid step ``step``, stop once at the
    midpoint of the bracket it would close and leave a checkpoint there, so that the
    refining evaluation (if this step reaches the target) needs no retraining. Segments
    continue exactly, so this does not change the weights at ``step``."""
    if spec.target_fid is None or step not in spec.eval_steps:
        return
    _, mid = _bracket(spec, step)
    if mid is not None and not any(s >= mid for s in _checkpoints(Path(work) / spec.study / spec.name)):
        train_to(spec, mid, Path(work), say)


def _run_truncation(spec: RunSpec, evals: Evaluations, runs_dir, work, command, say) -> dict:
    src = spec.source
    final = spec.at_step if spec.at_step is not None else max(src.eval_steps)
    src_doc = load_run(runs_dir, src)
    if src_doc is None or not any(e["step"] == final for e in src_doc["evals"]):
        # only as far as this needs: the source's own plan takes it further, in its turn
        src_doc = run_one(up_to(src, final), evals, runs_dir, work, command, say)
    path = run_path(runs_dir, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = load_run(runs_dir, spec)
    with RunLock(work / spec.study / f"{spec.name}.lock"):
        g, _ = train_to(src, final, work, say)
        digest = weights_digest(g)
        expected = next(e["generator_sha256"] for e in src_doc["evals"] if e["step"] == final)
        if digest != expected:
            say(f"  warning: the generator retrained for {spec.name} differs from the one evaluated in its run")
        z_seed = derived_seeds(src.seed)[2] + 1  # not the curve's z; the same seed at every threshold
        if doc is None or doc.get("generator_sha256") != digest:
            doc = {"format": "fidkit-ttur-study-run-1", "study": spec.study, "name": spec.name,
                   "group": spec.group, "seed": src.seed, "generator": {
                       "run": f"{src.study}/{src.name}", "step": final, "config": train_dict(src.config),
                       "fid_at_step": next(e["fid"] for e in src_doc["evals"] if e["step"] == final)},
                   "generator_sha256": digest, "thresholds": list(spec.thresholds),
                   "evaluation": {**evals.spec.as_dict(), "z_seed": z_seed},
                   "method": "z ~ N(0, I), every entry |z_i| > threshold drawn again until none is (BigGAN's "
                             "truncation trick); threshold null = untruncated; the same z seed at every threshold",
                   "sessions": [], "results": [], "complete": False}
        doc["sessions"].append({**provenance(command), "started": now(), "finished": None})
        for t in spec.thresholds:
            if any(r["threshold"] == t for r in doc["results"]):
                continue
            r = evals.evaluate(g, z_seed, truncation=t, pr=True)
            row = {"threshold": t, **{k: r[k] for k in ("fid", "kid_mean", "kid_std", "n", "precision", "recall",
                                                         "density", "coverage", "eval_seconds", "cached")},
                   "evaluated": now()}
            doc["results"].append(row)
            doc["results"].sort(key=lambda x: math.inf if x["threshold"] is None else -x["threshold"])
            doc["sessions"][-1]["finished"] = now()
            write_json(path, doc)
            say(f"  truncation {t if t is not None else 'none'}: FID {r['fid']:.2f}, KID {r['kid_mean']:.4f}, "
                f"precision {r['precision']:.3f}, recall {r['recall']:.3f}")
        doc["complete"] = True
        doc["sessions"][-1]["finished"] = now()
        write_json(path, doc)
    return doc
