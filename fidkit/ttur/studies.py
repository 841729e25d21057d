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
from .train import (TrainConfig, TrainError, atomic_write_bytes, derived_seeds,
                    generator_from_checkpoint, load_checkpoint, machine_description, new_figure, real_uint8, sample,
                    save_figure, train, weights_digest, write_json)

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
#: 28% over the last interval there (not flat), so 60,000 was added
TIMESCALE_STEPS = {"dcgan": (0, 500, 1500, 4000, 10000, 25000, 60000), "wgan-gp": (0, 250, 750, 2000, 5000)}
#: a group's FID curve counts as flat when its mean FID changed by less than this fraction
#: over the last interval of its schedule (a factor 2.4-2.5 in steps), fixed in advance
FLAT_CHANGE = 0.10
#: the step of the time-scale study's DCGAN TTUR runs whose generators the truncation study samples
TRUNCATION_STEP = 10000
CRITICAL_BATCH_SIZES = (16, 32, 64, 128, 256, 512)
QUICK_BATCH_SIZES = (4, 8, 16, 32, 64)
#: the critical-batch study's evaluation grid in images seen (batch × steps), the same for
#: every batch size: 2^15 ... 2^21 (32,768 to 2,097,152), so steps = images / batch is exact
#: for every batch size 16-512; step 0 (the untrained generator, shared by a seed's runs) too
CRITICAL_IMAGES = tuple(2 ** k for k in range(15, 22))
QUICK_CRITICAL_IMAGES = (64, 128, 256)
#: the critical-batch study's target FID, fixed before any of its runs: the time-scale
#: study's DCGAN TTUR runs at batch 64 (the same configuration as this study's batch 64)
#: gave FID 170-183 at step 1500 (96k images) and 74-80 at step 4000 (256k images), so
#: 100 lies on the steep part of the curve, reached at about 200k images at batch 64,
#: within the grid's 2M images for batch sizes far from 64 unless they are 10x less
#: sample-efficient. A run stops at the grid point where it first reaches it.
CRITICAL_FID = 100.0


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
                                batch_size=16 if quick else 64, **base)
                out.append(RunSpec("timescales", f"{arch}-{setting}-s{seed}", f"{arch}/{setting}", c, steps))
    return out


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
    r = train(dataclasses.replace(c, steps=step), folder, resume=resume)
    state = load_checkpoint(r.checkpoints[-1])
    return r.generator.eval(), float(state["train_seconds"])


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
        src_doc = run_one(src, evals, runs_dir, work, command, say)
    path = run_path(runs_dir, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = load_run(runs_dir, spec)
    with RunLock(work / spec.study / f"{spec.name}.lock"):
        g, _ = train_to(src, final, work, say)
        digest = weights_digest(g)
        expected = next(e["generator_sha256"] for e in src_doc["evals"] if e["step"] == final)
        if digest != expected:
            say(f"  warning: the generator retrained for {spec.name} differs from the one evaluated in its run")
        z_seed = derived_seeds(src.seed)[2] + 1  # not the curve's z: a fresh draw for every threshold
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


# --------------------------------------------------------------------------- aggregation

def _mean_std(values) -> tuple:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None)


def _status(plan: Plan, runs_dir) -> tuple:
    docs, missing, unfinished = {}, [], []
    for spec in plan.runs:
        d = load_run(runs_dir, spec)
        if d is None:
            missing.append(spec.name)
        else:
            docs[spec.name] = d
            if not is_done(spec, d):
                d["complete"] = False  # a schedule extended since the run finished
                unfinished.append(spec.name)
    return docs, missing, unfinished


def _header(plan: Plan, runs_dir, docs, missing, unfinished, command) -> dict:
    complete = not missing and not unfinished
    return {"study": plan.study, "complete": complete,
            "status": ("complete" if complete else
                       f"INCOMPLETE: {len(plan.runs) - len(missing) - len(unfinished)} of {len(plan.runs)} runs "
                       f"finished; the numbers below use only what exists"),
            "missing_runs": missing, "unfinished_runs": unfinished, "quick": plan.quick,
            "runs_folder": str(Path(runs_dir) / plan.study),
            "aggregated": now(), "aggregate_command": command, "aggregate_git_commit": git_commit(),
            "evaluation": plan.eval.as_dict(), "settings": plan.settings}


def _bands(ax, steps, mean, std, color, label):
    ax.plot(steps, mean, "o-", color=color, lw=1.8, ms=3.5, label=label)
    if std is not None and all(s is not None for s in std):
        m, s = np.array(mean, float), np.array(std, float)
        ax.fill_between(steps, m - s, m + s, color=color, alpha=0.2, lw=0)


def _incomplete_note(fig, header):
    if not header["complete"]:
        fig.text(0.5, 0.005, header["status"] + f"; missing {len(header['missing_runs'])}, unfinished "
                 f"{len(header['unfinished_runs'])}", ha="center", va="bottom", fontsize=7, color="C3")


def aggregate_timescales(plan: Plan, runs_dir, results_dir, command=None, name="ttur_timescales") -> dict:
    docs, missing, unfinished = _status(plan, runs_dir)
    groups: dict = {}
    for spec in plan.runs:
        groups.setdefault(spec.group, []).append(spec)
    summary = {}
    for group, specs in groups.items():
        mine = [docs[s.name] for s in specs if s.name in docs]
        steps = list(specs[0].eval_steps)
        per_step = {}
        for st in steps:
            rows = [e for d in mine for e in d["evals"] if e["step"] == st]
            fm, fs = _mean_std([e["fid"] for e in rows])
            km, ks = _mean_std([e["kid_mean"] for e in rows])
            per_step[st] = {"seeds": len(rows), "fid_mean": fm, "fid_std": fs, "kid_mean": km, "kid_std": ks}
        done = [d for d in mine if d.get("complete")]
        finals = [d["evals"][-1]["fid"] for d in done]
        final_kids = [d["evals"][-1]["kid_mean"] for d in done]
        fm, fs = _mean_std(finals)
        km, ks = _mean_std(final_kids)
        c = specs[0].config
        last = _last_interval(done, steps)
        summary[group] = {"arch": c.arch, "lr_d": c.lr_d, "lr_g": c.lr_g, "batch_size": c.batch_size,
                          "seeds_planned": [s.seed for s in specs], "seeds_complete": [d["seed"] for d in done],
                          "steps": steps, "per_step": {str(k): v for k, v in per_step.items()},
                          "final_step": max(steps), "final_fid_per_seed": finals, "final_fid_mean": fm,
                          "final_fid_std": fs, "final_kid_per_seed": final_kids, "final_kid_mean": km,
                          "final_kid_std": ks, "last_interval": last}
    header = _header(plan, runs_dir, docs, missing, unfinished, command)
    doc = {**header,
           "question": "TTUR paper (Heusel et al., 2017): with the same step budget, does lr_D > lr_G (TTUR) reach a "
                       "lower FID, or reach it sooner, than one time scale lr_D = lr_G (at either of TTUR's two "
                       "rates)?",
           "summary": summary,
           "comparisons": timescale_comparisons(plan, docs),
           "runs": {k: {"seed": v["seed"], "group": v["group"], "complete": v.get("complete"),
                        "evals": v["evals"]} for k, v in docs.items()}}
    archs = list(dict.fromkeys(s.config.arch for s in plan.runs))
    fig, axes = new_figure(ncols=len(archs) * 2, width=4.0, height=3.6)
    for i, arch in enumerate(archs):
        for j, (key, label) in enumerate((("fid", "FID"), ("kid", "KID"))):
            ax = axes[2 * i + j]
            for k, (group, s) in enumerate((g, s) for g, s in summary.items() if s["arch"] == arch):
                pts = [(int(st), v) for st, v in s["per_step"].items() if v[f"{key}_mean"] is not None]
                if not pts:
                    continue
                xs = [p[0] for p in pts]
                _bands(ax, xs, [p[1][f"{key}_mean"] for p in pts], [p[1][f"{key}_std"] for p in pts], f"C{k}",
                       f"{group.split('/')[1]}: lr_D {s['lr_d']:g}, lr_G {s['lr_g']:g} "
                       f"(n={min(p[1]['seeds'] for p in pts)}–{max(p[1]['seeds'] for p in pts)})")
            ax.set_xscale("symlog", linthresh=max(1, min((st for st in plan.runs[0].eval_steps if st), default=1)))
            ax.set_yscale("log")
            ax.set_xlabel("generator step")
            ax.set_ylabel(f"{label} ({plan.eval.n} images)" if key == "fid" else "KID")
            ax.set_title(f"{arch}: {label}, mean ± std over seeds", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            _legend(ax)
    _incomplete_note(fig, header)
    return _write(doc, fig, results_dir, name)


def _last_interval(done: list, steps: list) -> dict | None:
    """How much the finished runs' FID still changed over the schedule's last interval (the
    last two evaluation steps): per seed the relative change FID_last / FID_before − 1, its
    mean ± std, and ``flat`` (mean |change| below :data:`FLAT_CHANGE`); None before a run is
    finished or with fewer than two steps after step 0."""
    before, last = (sorted(steps)[-2:] if len(steps) >= 2 else (None, None))
    if not done or not before:
        return None
    change = []
    for d in done:
        fid = {e["step"]: e["fid"] for e in d["evals"]}
        change.append(fid[last] / fid[before] - 1.0 if fid.get(before) and fid.get(last) is not None else None)
    got = [x for x in change if x is not None]
    m, sd = _mean_std(got)
    return {"from_step": before, "to_step": last, "fid_change_per_seed": change, "fid_change_mean": m,
            "fid_change_std": sd, "flat_below": FLAT_CHANGE, "flat": None if m is None else abs(m) < FLAT_CHANGE}


def _welch(a: list, b: list) -> dict:
    """Welch's t-test of two samples' means (two-sided); None entries where a sample has < 2."""
    if len(a) < 2 or len(b) < 2:
        return {"t": None, "dof": None, "p": None}
    from scipy import stats as sps
    r = sps.ttest_ind(a, b, equal_var=False)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else None
    return {"t": float(r.statistic), "dof": None if dof is None else float(dof), "p": float(r.pvalue)}


def timescale_comparisons(plan: Plan, docs: dict) -> dict:
    """Per architecture, TTUR against each single time scale, from the finished runs:

    - *final*: FID at the last step per seed, means, the difference (single − TTUR; positive:
      TTUR lower), the seeds' spread, and Welch's t-test (with 3 seeds a weak test: read the
      difference against the spread);
    - *arrival*: steps to reach a common level, the highest of the groups' mean final FIDs (so
      that every group reaches it on average), per seed interpolated as the critical-batch study
      does (log step against log FID between the evaluations around the crossing); a seed that
      never reaches it is counted, not extrapolated; the ratio of mean steps (single / TTUR; > 1:
      TTUR arrives sooner)."""
    out: dict = {}
    for arch in dict.fromkeys(s.config.arch for s in plan.runs):
        groups: dict = {}
        for spec in plan.runs:
            if spec.config.arch == arch:
                d = docs.get(spec.name)
                if d is not None and d.get("complete"):
                    groups.setdefault(spec.group.split("/", 1)[1], []).append(d)
        ttur = groups.get("ttur", [])
        finals = {g: [d["evals"][-1]["fid"] for d in ds] for g, ds in groups.items()}
        means = {g: float(np.mean(v)) for g, v in finals.items() if v}
        level = max(means.values()) if len(means) > 1 else None
        arrival = {}
        for g, ds in groups.items():
            steps = [_steps_to(d["evals"], level)[0] if level is not None else None for d in ds]
            got = [x for x in steps if x is not None]
            m, sd = _mean_std(got)
            arrival[g] = {"steps_per_seed": steps,
                          "seeds_not_reaching": None if level is None else sum(x is None for x in steps),
                          "steps_mean": m, "steps_std": sd}
        entry = {"level_for_arrival": level, "arrival": arrival, "versus_ttur": {}}
        for g in groups:
            if g == "ttur" or not ttur:
                continue
            a, b = finals["ttur"], finals[g]
            ma, sa = _mean_std(a)
            mb, sb = _mean_std(b)
            ra, rb = arrival["ttur"]["steps_mean"], arrival[g]["steps_mean"]
            entry["versus_ttur"][g] = {
                "seeds": [len(a), len(b)], "final_fid_ttur": [ma, sa], "final_fid_single": [mb, sb],
                "final_fid_difference": mb - ma, "welch": _welch(a, b),
                "arrival_steps_ratio": None if not ra or rb is None else rb / ra}
        entry["by_step"] = _comparisons_by_step(plan, docs, arch)
        out[arch] = entry
    return out


def _comparisons_by_step(plan: Plan, docs: dict, arch: str) -> dict:
    """At every evaluation step of ``arch``'s schedule after step 0, TTUR against each single
    time scale with the runs that have reached that step, finished or not (the step budget
    of that step): FID mean ± std per group, difference (single − TTUR) and Welch's test."""
    fids: dict = {}
    for spec in plan.runs:
        d = docs.get(spec.name)
        if spec.config.arch != arch or d is None:
            continue
        g = spec.group.split("/", 1)[1]
        for e in d["evals"]:
            if e["step"] and e["fid"] is not None:
                fids.setdefault(e["step"], {}).setdefault(g, []).append(e["fid"])
    out = {}
    for step in sorted(fids):
        ttur = fids[step].get("ttur", [])
        row = {}
        for g, v in fids[step].items():
            if g == "ttur" or not ttur:
                continue
            (ma, sa), (mb, sb) = _mean_std(ttur), _mean_std(v)
            row[g] = {"seeds": [len(ttur), len(v)], "fid_ttur": [ma, sa], "fid_single": [mb, sb],
                      "fid_difference": mb - ma, "welch": _welch(ttur, v)}
        if row:
            out[str(step)] = row
    return out


def _steps_to(evals: list, threshold: float) -> tuple:
    """(steps at which FID first falls to ``threshold``, interpolated between the two
    evaluations around the crossing — log-log, linear from step 0 —, first evaluated step at
    or below it) or (None, None)."""
    prev = None
    for e in evals:
        if e["fid"] is not None and e["fid"] <= threshold:
            if prev is None:
                return float(e["step"]), e["step"]
            s0, f0, s1, f1 = prev["step"], prev["fid"], e["step"], e["fid"]
            if s0 > 0:
                w = (math.log(f0) - math.log(threshold)) / (math.log(f0) - math.log(f1))
                return float(math.exp(math.log(s0) + w * (math.log(s1) - math.log(s0)))), s1
            w = (f0 - threshold) / (f0 - f1)
            return float(s0 + w * (s1 - s0)), s1
        prev = e
    return None, None


def _critical_from(bs: list, sfo: list) -> float:
    """The argmin of SFO over batch sizes, refined by a parabola through log SFO against
    log2 batch at the minimum and its neighbours (the discrete argmin at an end)."""
    i = int(np.argmin(sfo))
    if 0 < i < len(bs) - 1:
        x = np.log2(bs[i - 1:i + 2])
        y = np.log(sfo[i - 1:i + 2])
        a, b, _ = np.polyfit(x, y, 2)
        if a > 0:
            return float(2 ** float(np.clip(-b / (2 * a), x[0], x[2])))
    return float(bs[i])


def aggregate_critical_batch(plan: Plan, runs_dir, results_dir, command=None, name="ttur_critical_batch",
                             threshold=None) -> dict:
    docs, missing, unfinished = _status(plan, runs_dir)
    done = {n: d for n, d in docs.items() if d.get("complete")}
    batch_sizes = sorted({s.config.batch_size for s in plan.runs})
    seeds = sorted({s.seed for s in plan.runs})
    target = next((r.target_fid for r in plan.runs if r.target_fid is not None), None)
    if threshold is None and target is not None:
        threshold = target
        threshold_rule = ("fixed before the runs (the study's target FID, --target-fid): each run is evaluated on "
                          "the images-seen grid until its FID first falls to it, then once more at the geometric "
                          "midpoint of the bracketing grid steps")
    elif threshold is None and done:  # runs made without a target: the lowest level every run reached
        worst_best = max(min(e["fid"] for e in d["evals"]) for d in done.values())
        threshold_rule = ("the largest over all finished runs of each run's lowest evaluated FID, rounded up to "
                          "0.1: the lowest level that every run reached")
        threshold = math.ceil(worst_best * 10) / 10
    else:
        threshold_rule = (("given (aggregate --threshold); the runs stopped at the target FID "
                           f"{target:g}, so a lower threshold is reached by none" if target is not None else "given")
                          if threshold is not None else "no finished runs")
    table = []
    for spec in plan.runs:
        d = done.get(spec.name)
        row = {"batch_size": spec.config.batch_size, "seed": spec.seed, "complete": d is not None}
        if d is not None and threshold is not None:
            steps, first = _steps_to(d["evals"], threshold)
            row.update(reached=steps is not None, steps=steps, first_eval_at_or_below=first,
                       sfo=None if steps is None else steps * spec.config.batch_size,
                       evaluations=len(d["evals"]), best_fid=min(e["fid"] for e in d["evals"]),
                       final_fid=d["evals"][-1]["fid"], final_step=d["evals"][-1]["step"])
        table.append(row)
    per_batch = {}
    for b in batch_sizes:
        rows = [r for r in table if r["batch_size"] == b and r.get("steps") is not None]
        sm, ss = _mean_std([r["steps"] for r in rows])
        fm, fs = _mean_std([r["sfo"] for r in rows])
        missed = [r["seed"] for r in table if r["batch_size"] == b and r.get("reached") is False]
        per_batch[str(b)] = {"seeds": len(rows), "seeds_not_reaching": missed, "steps_mean": sm, "steps_std": ss,
                             "sfo_mean": fm, "sfo_std": fs}
    critical = {}
    for seed in seeds:
        rows = sorted((r for r in table if r["seed"] == seed and r.get("sfo") is not None),
                      key=lambda r: r["batch_size"])
        if len(rows) == len(batch_sizes):
            bs = [r["batch_size"] for r in rows]
            sfo = [r["sfo"] for r in rows]
            steps = [r["steps"] for r in rows]
            critical[str(seed)] = {"critical_batch": _critical_from(bs, sfo), "argmin": bs[int(np.argmin(sfo))],
                                   "steps_fall_with_batch": all(a >= b for a, b in zip(steps, steps[1:])),
                                   "sfo_minimum_inside": 0 < int(np.argmin(sfo)) < len(bs) - 1}
    logs = [math.log2(v["critical_batch"]) for v in critical.values()]
    lm, ls = _mean_std(logs)
    header = _header(plan, runs_dir, docs, missing, unfinished, command)
    doc = {**header,
           "question": "Sato & Iiduka (2022): the steps K needed to reach a target fall as the batch size b grows, "
                       "and the SFO complexity b·K is convex in b with a minimum at the critical batch size.",
           "definition": "steps = the step at which the run's FID curve first reaches the threshold, interpolated "
                         "in log step against log FID between the evaluations around the crossing (linearly from "
                         "step 0); a run is evaluated at 0 and at the same images seen (batch × steps: "
                         f"{', '.join(str(n) for n in CRITICAL_IMAGES)}) for every batch size until it reaches the "
                         "target, then at the geometric midpoint of the bracket, so the crossing lies between "
                         "evaluations a factor √2 apart; SFO = batch size × steps (generator updates' samples; "
                         "the discriminator draws as many); a run that never reaches it within the grid has no "
                         "steps (reported, not extrapolated). Critical batch size per seed = argmin of SFO over the "
                         "batch sizes, refined by a parabola in (log2 b, log SFO) through the minimum and its two "
                         "neighbours; mean ± std over seeds in log2.",
           "threshold": threshold, "threshold_rule": threshold_rule, "batch_sizes": batch_sizes,
           "per_run": table, "per_batch": per_batch, "critical_batch_per_seed": critical,
           "critical_batch_log2_mean": lm, "critical_batch_log2_std": ls,
           "critical_batch_geometric_mean": None if lm is None else 2 ** lm,
           "runs": {k: {"seed": v["seed"], "group": v["group"], "complete": v.get("complete"),
                        "evals": v["evals"]} for k, v in docs.items()}}
    fig, axes = new_figure(ncols=3, width=4.0, height=3.6)
    for seed_i, seed in enumerate(seeds):
        for spec in (s for s in plan.runs if s.seed == seed and s.name in docs):
            ev = docs[spec.name]["evals"]
            k = batch_sizes.index(spec.config.batch_size)
            b = spec.config.batch_size
            axes[0].plot([max(e["step"] * b, b) for e in ev], [e["fid"] for e in ev], ".-", color=f"C{k}", alpha=0.6,
                         lw=1, ms=3, label=f"batch {b}" if seed_i == 0 else None)
    if threshold is not None:
        axes[0].axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("images seen (batch × steps; step 0 drawn at one batch)")
    axes[0].set_ylabel(f"FID ({plan.eval.n} images)")
    axes[0].set_title("FID curves (each seed)", fontsize=9)
    _legend(axes[0])
    for ax, key, label in ((axes[1], "steps", "steps to threshold"), (axes[2], "sfo", "SFO = batch × steps")):
        xs = [b for b in batch_sizes if per_batch[str(b)][f"{key}_mean"] is not None]
        _bands(ax, xs, [per_batch[str(b)][f"{key}_mean"] for b in xs],
               [per_batch[str(b)][f"{key}_std"] for b in xs] if xs and all(
                   per_batch[str(b)][f"{key}_std"] is not None for b in xs) else None, "C0", "mean ± std over seeds")
        for r in table:
            if r.get(key) is not None:
                ax.plot(r["batch_size"], r[key], ".", color="0.4", ms=4)
        if lm is not None and key == "sfo":
            ax.axvline(2 ** lm, color="C3", ls="--", lw=1, label=f"critical batch ≈ {2 ** lm:.0f}")
            if ls:
                ax.axvspan(2 ** (lm - ls), 2 ** (lm + ls), color="C3", alpha=0.1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        _legend(ax)
    fig.suptitle(f"dcgan, lr_D {plan.runs[0].config.lr_d:g}, lr_G {plan.runs[0].config.lr_g:g}: steps and SFO to "
                 f"FID ≤ {threshold if threshold is not None else '?'}", fontsize=9)
    _incomplete_note(fig, header)
    return _write(doc, fig, results_dir, name)


def truncation_changes(docs, thresholds) -> list:
    """Per threshold, each generator's change from its own untruncated sample (paired, so that
    the generators' different levels drop out): mean ± std over generators of Δprecision,
    Δrecall, Δdensity, Δcoverage, ΔFID, and how many generators moved as BigGAN reports
    (precision up, recall down)."""
    out = []
    for t in thresholds:
        if t is None:
            continue
        deltas: dict = {k: [] for k in ("precision", "recall", "density", "coverage", "fid")}
        biggan = 0
        for d in docs:
            base = next((r for r in d["results"] if r["threshold"] is None), None)
            row = next((r for r in d["results"] if r["threshold"] == t), None)
            if base is None or row is None:
                continue
            for k in deltas:
                deltas[k].append(row[k] - base[k])
            biggan += row["precision"] > base["precision"] and row["recall"] < base["recall"]
        entry = {"threshold": t, "generators": len(deltas["fid"]), "precision_up_and_recall_down": biggan}
        for k, v in deltas.items():
            entry[f"delta_{k}_mean"], entry[f"delta_{k}_std"] = _mean_std(v)
        out.append(entry)
    return out


def aggregate_truncation(plan: Plan, runs_dir, results_dir, command=None, name="ttur_truncation") -> dict:
    docs, missing, unfinished = _status(plan, runs_dir)
    thresholds = list(THRESHOLDS if not plan.runs else plan.runs[0].thresholds)
    per_t = []
    keys = ("fid", "kid_mean", "precision", "recall", "density", "coverage")
    for t in thresholds:
        rows = [r for d in docs.values() for r in d["results"] if r["threshold"] == t]
        entry = {"threshold": t, "generators": len(rows)}
        for k in keys:
            m, s = _mean_std([r[k] for r in rows])
            entry[k] = m
            entry[f"{k}_std"] = s
        per_t.append(entry)
    paired = truncation_changes(docs.values(), thresholds)
    header = _header(plan, runs_dir, docs, missing, unfinished, command)
    doc = {**header,
           "question": "BigGAN (Brock et al., 2019): sampling z from a truncated normal trades variety for fidelity: "
                       "as the threshold falls, precision (fidelity) rises and recall (variety) falls, and FID "
                       "rises once variety is lost.",
           "per_threshold": per_t,
           "change_from_untruncated": paired,
           "runs": {k: {"seed": v["seed"], "complete": v.get("complete"), "generator": v.get("generator"),
                        "generator_sha256": v.get("generator_sha256"), "results": v["results"]}
                    for k, v in docs.items()}}
    fig, (ax1, ax2, ax3) = new_figure(ncols=3, width=4.0, height=3.6)
    have = [e for e in per_t if e["fid"] is not None]

    def lab(t):
        return "∞" if t is None else f"{t:g}"

    for i, d in enumerate(docs.values()):  # along the thresholds: ∞, then falling
        rs = sorted(d["results"], key=lambda r: -math.inf if r["threshold"] is None else -r["threshold"])
        ax1.plot([r["recall"] for r in rs], [r["precision"] for r in rs], "o-", color=f"C{i}", ms=4,
                 label=f"generator seed {d['seed']}")
        for r in rs:
            ax1.annotate(lab(r["threshold"]), (r["recall"], r["precision"]), textcoords="offset points",
                         xytext=(3, 3), fontsize=6)
        ax3.plot([r["recall"] for r in rs], [r["coverage"] for r in rs], "s-", color=f"C{i}", ms=3,
                 label=f"seed {d['seed']}")
        ax3.plot([r["recall"] for r in rs], [r["density"] for r in rs], "^--", color=f"C{i}", ms=3, alpha=0.6)
    ax1.set_xlabel("recall (variety)")
    ax1.set_ylabel("precision (fidelity)")
    ax1.set_title("precision vs recall along thresholds", fontsize=9)
    ax1.grid(alpha=0.3)
    _legend(ax1)
    xs = [math.inf if e["threshold"] is None else e["threshold"] for e in have]
    finite = [(x, e) for x, e in zip(xs, have) if math.isfinite(x)]
    if finite:
        ax2.errorbar([x for x, _ in finite], [e["fid"] for _, e in finite],
                     yerr=[e["fid_std"] or 0 for _, e in finite], fmt="o-", color="C1", ms=4, label="truncated")
    for e in have:
        if e["threshold"] is None:
            ax2.axhline(e["fid"], color="0.4", ls="--", lw=1, label="untruncated (∞)")
    ax2.set_xscale("log")
    ticks = [t for t in thresholds if t is not None]
    if ticks:
        ax2.set_xticks(ticks)
        ax2.set_xticklabels([f"{t:g}" for t in ticks], fontsize=7)
        ax2.minorticks_off()
    ax2.set_xlabel("truncation threshold")
    ax2.set_ylabel(f"FID ({plan.eval.n} images)")
    ax2.set_title("FID vs threshold", fontsize=9)
    ax2.grid(alpha=0.3, which="both")
    _legend(ax2)
    ax3.set_xlabel("recall")
    ax3.set_ylabel("coverage (solid), density (dashed)")
    ax3.set_title("coverage and density", fontsize=9)
    ax3.grid(alpha=0.3)
    _incomplete_note(fig, header)
    return _write(doc, fig, results_dir, name)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _write(doc: dict, fig, results_dir, name: str) -> dict:
    for ax in fig.axes:
        if not any(len(line.get_xdata()) for line in ax.get_lines()) and not ax.collections:
            # nothing finished yet: no log scale on an empty axis
            ax.set_xscale("linear")
            ax.set_yscale("linear")
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json(results_dir / f"{name}.json", doc)
    save_figure(fig, results_dir / f"{name}.png")
    return doc


AGGREGATORS = {"timescales": aggregate_timescales, "truncation": aggregate_truncation,
               "critical-batch": aggregate_critical_batch}
RESULT_NAMES = {"timescales": "ttur_timescales", "truncation": "ttur_truncation",
                "critical-batch": "ttur_critical_batch"}
