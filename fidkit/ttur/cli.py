"""The ``fidkit-ttur`` command line: ``train``, three studies, ``studies`` and ``aggregate``.

- ``train``: one run (see :func:`fidkit.ttur.train.train`), files in ``--out``.
- ``compare-timescales``: TTUR (lr_D > lr_G) against one time scale (lr_D = lr_G at each
  of TTUR's two rates), DCGAN and WGAN-GP, the same step budget and seeds.
- ``critical-batch``: steps and samples (SFO = batch × steps) to reach a target FID fixed
  in advance, for batch sizes 4–512 with constant learning rates.
- ``truncation``: FID, KID, precision, recall, density, coverage of a trained generator
  sampled with truncated z.
- ``studies``: all three in order of value; ``aggregate``: the study files from the run
  files, training nothing.

The studies are plans of runs (see :mod:`fidkit.ttur.studies`): each run writes its own
result file after each evaluation and is skipped once complete, so a study can be stopped
and started again, across sessions; the study files (``NAME.json|png`` in ``--results``)
are aggregated from whatever runs exist and marked incomplete until all are in. Every
evaluation uses at least 2048 generated images (fewer are refused unless ``--quick``,
the mechanics check with tiny networks whose numbers mean nothing).

Errors are one line on stderr (``fidkit-ttur: error: …``): exit status 2 for bad usage (an
option's value malformed or out of range, whatever the files), 1 for inputs (a file or folder
missing, unreadable or wrong, as ``fidkit`` itself) and for settings that cannot run together,
130 when interrupted; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import click
import torch

import fidkit

from . import analysis, studies
from .data import count_images
from .models import ARCHS
from .train import (DEFAULT_BETAS, TrainConfig, TrainError, config_from_checkpoint, have_matplotlib, resolve_device,
                    train)

PROG = "fidkit-ttur"
#: the statistics ``--reference auto`` picks for Fashion-MNIST at 28×28 (run from the repository root)
DEFAULT_REFERENCE = Path("reference_stats") / "fashion-mnist-test.npz"
FASHION = ("fashion-mnist-train", "fashion-mnist-test")


# --------------------------------------------------------------------------- options

def _parse_floats(value, what: str, n: int | None = None) -> tuple:
    try:
        out = tuple(float(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated numbers ({what})") from None
    if not out or (n is not None and len(out) != n) or not all(math.isfinite(v) for v in out):
        raise click.BadParameter(f"{value!r}: expected {n or 'some'} finite comma-separated numbers ({what})")
    return out


def _betas(ctx, param, value):
    if value is None:
        return None
    b = _parse_floats(value, "beta1,beta2", 2)
    if not all(0 <= v < 1 for v in b):
        raise click.BadParameter(f"{value!r}: both betas must lie in [0, 1)")
    return b


class _InputError(click.BadParameter):
    """An option names a file or folder that is missing or wrong: exit status 1, as ``fidkit``
    gives for a missing input, not 2 (usage)."""

    exit_code = 1


class _FiniteRange(click.FloatRange):
    """click's FloatRange, which lets NaN through (every comparison with it is false), finite only."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value} is not a finite number", param, ctx)
        return value


_POS_FLOAT = _FiniteRange(min=0, min_open=True)


def _size(ctx, param, value):
    if value is not None and value % 4:
        raise click.BadParameter(f"{value}: the image side must be a multiple of 4 (28 or 32)")
    return value


def _option_table(d: dict) -> list:
    """(name, click option) pairs shared by every command that trains, with per-command defaults ``d``."""
    def opt(*decls, **kw):
        name = decls[0].split("/")[0].lstrip("-").replace("-", "_")
        return name, click.option(*decls, **kw)

    return [
        opt("--arch", type=click.Choice(ARCHS), default="dcgan", show_default=True,
            help="dcgan (logistic loss, batch norm) or wgan-gp (critic with gradient penalty)."),
        opt("--data", default="fashion-mnist-train", show_default=True,
            help=f"Training images: a dataset ({', '.join(fidkit.DATASETS)}) or an image folder."),
        opt("--data-limit", type=click.IntRange(min=1), default=None,
            help="Use only the first N training images [default: all]."),
        opt("--size", type=click.IntRange(min=8), callback=_size, default=28, show_default=True,
            help="Image side (a multiple of 4; 28 or 32)."),
        opt("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True,
            help="1: grayscale, 3: RGB."),
        opt("--z-dim", type=click.IntRange(min=1), default=64, show_default=True, help="Latent size."),
        opt("--width", type=click.IntRange(min=1), default=32, show_default=True,
            help="Feature maps of the full-resolution stage (the networks scale with it)."),
        opt("--batch-size", type=click.IntRange(min=2), default=64, show_default=True,
            help="Real (and generated) images per update."),
        opt("--steps", type=click.IntRange(min=1), default=d.get("steps", 1), show_default=True,
            help="Generator updates (each after --n-critic discriminator updates)."),
        opt("--lr-d", type=_POS_FLOAT, default=4e-4, show_default=True,
            help="Adam learning rate of the discriminator / critic."),
        opt("--lr-g", type=_POS_FLOAT, default=1e-4, show_default=True, help="Adam learning rate of the generator."),
        opt("--betas", callback=_betas, default=None, metavar="B1,B2",
            help=f"Adam betas [default: {','.join(map(str, DEFAULT_BETAS['dcgan']))} for dcgan, "
                 f"{','.join(map(str, DEFAULT_BETAS['wgan-gp']))} for wgan-gp]."),
        opt("--n-critic", type=click.IntRange(min=1), default=None,
            help="Discriminator updates per generator update [default: 1 for dcgan, 5 for wgan-gp]."),
        opt("--gp-weight", type=_FiniteRange(min=0), default=10.0, show_default=True,
            help="WGAN-GP gradient-penalty weight λ."),
        opt("--seed", type=click.IntRange(min=0), default=0, show_default=True,
            help="Seed of the initialisation, the batches and the noise (a study's first seed)."),
        opt("--eval-every", type=click.IntRange(min=0), default=d.get("eval_every", 0), show_default=True,
            help="Steps between evaluations (0: only at the start and the end)."),
        opt("--eval-n", type=click.IntRange(min=2), default=d.get("eval_n", 2), show_default=True,
            help="Generated images per evaluation (fewer than 2048 bias FID upward)."),
        opt("--eval-batch-size", type=click.IntRange(min=1), default=64, show_default=True,
            help="Images per generator and Inception batch during evaluation."),
        opt("--reference", default="auto", show_default=True,
            help="Reference statistics: an .npz; 'data' for statistics of --reference-n images of --reference-data; "
                 "'auto' is reference_stats/fashion-mnist-test.npz for Fashion-MNIST at size 28 when that file "
                 "exists here, else 'data'."),
        opt("--reference-data", default=None,
            help="Real images for computed reference statistics and KID [default: --data]."),
        opt("--reference-n", type=click.IntRange(min=2), default=d.get("reference_n", 1000), show_default=True,
            help="Real images for computed statistics and KID features."),
        opt("--kid/--no-kid", default=False, show_default=True,
            help="Also KID against features of --reference-n real images."),
        opt("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N."),
        opt("--threads", type=click.IntRange(min=1), default=None,
            help="torch CPU threads [default: torch's]; 1 is fastest on a busy machine."),
    ]


def train_options(skip=(), **defaults):
    """Decorator adding the shared training options (minus ``skip``) with ``defaults``."""
    table = [(name, make) for name, make in _option_table(defaults) if name not in skip]

    def deco(f):
        for _, make in reversed(table):
            f = make(f)
        return f
    return deco


def _resolve_reference(reference: str, data: str, size: int) -> str | None:
    """'auto' → the committed Fashion-MNIST statistics when they apply, else None (computed)."""
    if reference == "auto":
        if data in FASHION and size == 28 and DEFAULT_REFERENCE.is_file():
            return str(DEFAULT_REFERENCE)
        return None
    if reference == "data":
        return None
    if not Path(reference).is_file():
        raise _InputError(f"{reference}: no such statistics file (or use 'auto' or 'data')",
                          param_hint="'--reference'")
    return reference


def _config(p: dict, **overrides) -> TrainConfig:
    """A TrainConfig from the parsed shared options ``p`` (CLI names) and ``overrides``."""
    fields = {f for f in TrainConfig.__dataclass_fields__}
    kw = {k: v for k, v in p.items() if k in fields}
    kw["channels"] = int(kw.get("channels", 1))
    if "reference" in kw:
        kw["reference"] = _resolve_reference(kw["reference"], kw.get("data", "fashion-mnist-train"),
                                             kw.get("size", 28))
    kw.update(overrides)
    c = TrainConfig(**kw)
    c.validate()
    return c


def _setup(p: dict) -> None:
    if p.get("threads"):
        torch.set_num_threads(p["threads"])
    resolve_device(p.get("device", "auto"))


def _command(ctx) -> str:
    argv = (ctx.find_root().obj or {}).get("argv")
    return shlex.join([PROG] + list(argv if argv is not None else sys.argv[1:]))


def _say(message: str) -> None:
    click.echo(f"{PROG}: {message}", err=True)


def _progress(label: str):
    def show(record):
        extra = f", KID {record['kid_mean']:.4f}" if record.get("kid_mean") is not None else ""
        fid = "undefined" if record["fid"] is None else f"{record['fid']:.2f}"
        _say(f"{label}step {record['step']}: FID {fid}{extra} "
             f"(eval {record['eval_seconds']:.1f} s, training {record['seconds']:.1f} s so far)")
    return show


# --------------------------------------------------------------------------- commands

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(fidkit.__version__, prog_name=PROG)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug):
    """Train small GANs with FID tracked by fidkit, and run the TTUR studies."""


_GIVEN = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


@cli.command("train")
@train_options(steps=2000, eval_every=250, eval_n=2048)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: log.json, fid.png, checkpoints/.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue from this checkpoint (its settings; options given here override, and only "
                   "--steps, --checkpoint-every, --device, --stop-fid may differ).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps between checkpoints (0: only at the end).")
@click.option("--stop-fid", type=_FiniteRange(min=0), default=None,
              help="Stop after the first evaluation with FID ≤ this.")
@click.pass_context
def train_cmd(ctx, out, resume, checkpoint_every, stop_fid, **p):
    """Train one GAN; FID (and KID) every --eval-every steps, from step 0."""
    _setup(p)
    if resume is None:
        config = _config(p, checkpoint_every=checkpoint_every, stop_fid=stop_fid)
    else:
        # the checkpoint's settings, with the options given on this command line on top
        merged = config_from_checkpoint(resume).as_dict()
        given = {**p, "checkpoint_every": checkpoint_every, "stop_fid": stop_fid}
        for key, value in given.items():
            if key in merged and ctx.get_parameter_source(key) in _GIVEN:
                merged[key] = value
        if ctx.get_parameter_source("reference") in _GIVEN:
            merged["reference"] = _resolve_reference(p["reference"], merged["data"], merged["size"])
        merged["betas"] = tuple(merged["betas"]) if merged.get("betas") is not None else None
        merged["channels"] = int(merged["channels"])
        config = TrainConfig(**merged)
        config.validate()
    result = train(config, out, resume=resume, command=_command(ctx), on_eval=_progress(""))
    evals = result.log["evals"]
    last = f"; last FID {evals[-1]['fid']:.2f} at step {evals[-1]['step']}" if evals else ""
    n_warn = len(result.log["warnings"])
    _say(f"{result.step} steps done{last}; log {Path(out) / 'log.json'}"
         f"{f' ({n_warn} warning(s) recorded there)' if n_warn else ''}")


# --------------------------------------------------------------------------- studies

def _batch_sizes(ctx, param, value):
    try:
        sizes = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated powers of two, e.g. 16,32,64") from None
    bad = [b for b in sizes if b < 2 or b & (b - 1)]
    if not sizes or bad:
        raise click.BadParameter(f"{value!r}: every batch size must be a power of two 2^k ≥ 2"
                                 f"{f' (not {bad[0]})' if bad else ''}")
    if len(set(sizes)) != len(sizes):
        raise click.BadParameter(f"{value!r}: batch sizes repeat")
    return tuple(sorted(sizes))


def _archs(ctx, param, value):
    archs = tuple(a.strip() for a in str(value).split(",") if a.strip())
    bad = [a for a in archs if a not in ARCHS]
    if not archs or bad:
        raise click.BadParameter(f"{value!r}: choose from {', '.join(ARCHS)}")
    return archs


def study_options(seeds: int):
    """Options shared by the study commands."""
    table = [
        click.option("--seeds", type=click.IntRange(min=1), default=seeds, show_default=True,
                     help="Seeds per configuration: --first-seed, --first-seed+1, ..."),
        click.option("--first-seed", type=click.IntRange(min=0), default=0, show_default=True, help="First seed."),
        click.option("--eval-n", type=click.IntRange(min=2), default=studies.MIN_EVAL_N, show_default=True,
                     help=f"Generated images per evaluation; fewer than {studies.MIN_EVAL_N} (the feature "
                          f"dimension) bias FID and are refused unless --quick."),
        click.option("--eval-batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                     help="Images per generator and Inception batch during evaluation."),
        click.option("--real-n", type=click.IntRange(min=2), default=studies.MIN_EVAL_N, show_default=True,
                     help="Real images (the first of --real-data) whose features KID and precision/recall use."),
        click.option("--real-data", default="fashion-mnist-test", show_default=True,
                     help="Real images for KID and precision/recall."),
        click.option("--reference", default=str(DEFAULT_REFERENCE), show_default=True,
                     help="Reference statistics (.npz) for FID."),
        click.option("--data", default="fashion-mnist-train", show_default=True, help="Training images."),
        click.option("--data-limit", type=click.IntRange(min=1), default=None,
                     help="Use only the first N training images [default: all; 64 with --quick]."),
        click.option("--runs", "runs_dir", default=None,
                     help="Folder of the per-run result files [default: benchmarks/results/ttur_runs; "
                          "runs/ttur-quick/runs with --quick]."),
        click.option("--work", default=None,
                     help="Folder for checkpoints and caches (not committed) [default: runs/ttur; "
                          "runs/ttur-quick/work with --quick]."),
        click.option("--results", default=None,
                     help="Folder of the study files NAME.json/.png [default: benchmarks/results; "
                          "runs/ttur-quick with --quick]."),
        click.option("--quick", is_flag=True,
                     help="Tiny networks, 64 images and a few steps, to check the mechanics (numbers mean nothing)."),
        click.option("--max-runs", type=click.IntRange(min=0), default=None,
                     help="Stop after running this many runs (the rest stay missing) [default: all]."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="torch CPU threads [default: torch's]; 1 is fastest on a busy machine."),
    ]

    def deco(f):
        for make in reversed(table):
            f = make(f)
        return f
    return deco


def _study_setup(o: dict) -> dict:
    """Checks and fills the shared study options; returns them with ``eval`` (EvalSpec),
    ``folders`` and ``kw`` (plan keywords)."""
    if o.get("threads"):
        torch.set_num_threads(o["threads"])
    device = str(resolve_device(o["device"]))
    if o["eval_n"] < studies.MIN_EVAL_N and not o["quick"]:
        raise click.BadParameter(f"{o['eval_n']} generated images: a study evaluates at least {studies.MIN_EVAL_N} "
                                 f"(fewer bias FID upward, more than the scores differ); --quick for a mechanics "
                                 f"check", param_hint="'--eval-n'")
    if o["real_n"] < studies.MIN_EVAL_N and not o["quick"]:
        raise click.BadParameter(f"{o['real_n']} real images: a study uses at least {studies.MIN_EVAL_N}; --quick "
                                 f"for a mechanics check", param_hint="'--real-n'")
    if o["real_data"] not in fidkit.DATASETS and not Path(o["real_data"]).is_dir():
        raise _InputError(f"{o['real_data']}: neither a dataset ({', '.join(fidkit.DATASETS)}) nor an image "
                          f"folder", param_hint="'--real-data'")
    if not Path(o["reference"]).is_file():
        raise _InputError(f"{o['reference']}: no such statistics file", param_hint="'--reference'")
    quick_root = Path("runs") / "ttur-quick"
    runs_dir = Path(o["runs_dir"] or (quick_root / "runs" if o["quick"] else Path("benchmarks/results/ttur_runs")))
    work = Path(o["work"] or (quick_root / "work" if o["quick"] else Path("runs/ttur")))
    results = Path(o["results"] or (quick_root if o["quick"] else Path("benchmarks/results")))
    for folder in (runs_dir, work, results):
        if folder.exists() and not folder.is_dir():
            raise _InputError(f"{folder}: not a folder")
    if not have_matplotlib():
        raise TrainError("the studies plot with matplotlib, which is not installed: pip install 'fidkit[plot]'")
    spec = studies.EvalSpec(n=o["eval_n"], batch_size=o["eval_batch_size"], reference=o["reference"],
                            real_data=o["real_data"], real_n=o["real_n"])
    seeds = tuple(range(o["first_seed"], o["first_seed"] + o["seeds"]))
    kw = dict(quick=o["quick"], data=o["data"], data_limit=o["data_limit"], device=device)
    return {**o, "eval": spec, "runs_dir": runs_dir, "work": work, "results": results, "seeds": seeds, "kw": kw,
            "device": device}


def _execute(ctx, s: dict, plans: list, order: list) -> None:
    """Runs the runs of ``order`` (pairs of plan and run) that are not complete, in that
    order, aggregating a study after each of its runs; then aggregates every plan."""
    command = _command(ctx)
    def trained(spec):  # what a run trains: a truncation run, its source up to the step it samples
        return spec if spec.source is None else studies.up_to(spec.source, spec.at_step)
    pending = [t for _, spec in order if not studies.is_done(spec, studies.load_run(s["runs_dir"], spec))
               for t in [trained(spec)] if not studies.is_done(t, studies.load_run(s["runs_dir"], t))]
    for data, limit in dict.fromkeys((p.config.data, p.config.data_limit) for p in pending):
        # before any evaluation: a batch larger than the data would fail only when training begins
        n = count_images(data, limit)
        need = max(p.config.batch_size for p in pending if (p.config.data, p.config.data_limit) == (data, limit))
        if need > n:
            raise TrainError(f"the runs left train with batches of up to {need} images, but --data {data} gives "
                             f"{n}; give more training images")
    evals = studies.Evaluations(s["eval"], s["work"], s["device"])
    done = 0
    for plan, spec in order:
        if (s["max_runs"] is not None and done >= s["max_runs"]):
            break
        if studies.is_done(spec, studies.load_run(s["runs_dir"], spec)):
            continue
        _say(f"{plan.study}: run {spec.name}")
        t0 = time.perf_counter()
        try:
            studies.run_one(spec, evals, s["runs_dir"], s["work"], command, say=_say)
        except studies.RunBusy as e:  # another studies process holds it (or the run it samples)
            _say(f"{plan.study}: {spec.name} skipped: {e}")
            continue
        done += 1
        _say(f"{plan.study}: {spec.name} done ({time.perf_counter() - t0:.0f} s)")
        _aggregate(plan, s, command)
        if spec.source is not None:
            for other in plans:
                if other.study == spec.source.study:
                    _aggregate(other, s, command)
    for plan in plans:
        doc = _aggregate(plan, s, command)
        _say(f"{plan.study}: {doc['status']}; wrote {s['results'] / analysis.RESULT_NAMES[plan.study]}.json|png")


def _aggregate(plan, s: dict, command, **kw) -> dict:
    return analysis.AGGREGATORS[plan.study](plan, s["runs_dir"], s["results"], command,
                                           analysis.RESULT_NAMES[plan.study], work=s["work"], **kw)


def _timescale_plan(s: dict, archs) -> "studies.Plan":
    runs = studies.timescale_runs(archs=archs, seeds=s["seeds"], **s["kw"])
    # seeds outermost: one seed of every setting is finished before the next seed starts
    runs.sort(key=lambda r: (archs.index(r.config.arch), r.seed))
    return studies.Plan("timescales", runs, s["eval"], s["quick"],
                        {"ttur_rates": {a: studies.TTUR_RATES[a] for a in archs},
                         "eval_steps": {a: list(next(r.eval_steps for r in runs if r.config.arch == a))
                                        for a in archs if any(r.config.arch == a for r in runs)}})


def _truncation_plan(s: dict) -> "studies.Plan":
    return studies.Plan("truncation", studies.truncation_runs(seeds=s["seeds"], **s["kw"]), s["eval"], s["quick"],
                        {"thresholds": list(studies.THRESHOLDS), "generator": "the dcgan TTUR runs of the time-scale "
                                                                              f"study, at step {studies.TRUNCATION_STEP}"})


def _critical_plan(s: dict, batch_sizes, target_fid: float = studies.CRITICAL_FID) -> "studies.Plan":
    if s["quick"] and tuple(batch_sizes) == studies.CRITICAL_BATCH_SIZES:
        batch_sizes = studies.QUICK_BATCH_SIZES  # the quick runs have 64 training images
    runs = studies.critical_batch_runs(batch_sizes, s["seeds"], target_fid=target_fid, **s["kw"])
    grid = studies.QUICK_CRITICAL_IMAGES if s["quick"] else studies.CRITICAL_IMAGES
    return studies.Plan("critical-batch", runs, s["eval"], s["quick"],
                        {"batch_sizes": list(batch_sizes), "target_fid": target_fid, "images_grid": list(grid),
                         "eval_steps": {str(r.config.batch_size): list(r.eval_steps) for r in runs},
                         "lr_d": studies.TTUR_RATES["dcgan"][0], "lr_g": studies.TTUR_RATES["dcgan"][1]})


@cli.command("compare-timescales")
@click.option("--archs", callback=_archs, default="dcgan,wgan-gp", show_default=True,
              help="Architectures, comma-separated.")
@study_options(seeds=3)
@click.pass_context
def compare_timescales(ctx, archs, **o):
    """TTUR (lr_D > lr_G) against one time scale (lr_D = lr_G at each of the two rates);
    WGAN-GP with one critic update per step in every arm, as the TTUR paper ran its TTUR.

    Runs what is missing (each run's result file is written after each evaluation; finished
    runs are skipped, unfinished ones continue) and writes ttur_timescales.json|png."""
    s = _study_setup(o)
    plan = _timescale_plan(s, archs)
    _execute(ctx, s, [plan], [(plan, r) for r in plan.runs])


@cli.command("critical-batch")
@click.option("--batch-sizes", callback=_batch_sizes, default=",".join(map(str, studies.CRITICAL_BATCH_SIZES)),
              show_default=True, help="Batch sizes 2^k, comma-separated (with --quick: 4-64).")
@click.option("--target-fid", type=_POS_FLOAT, default=studies.CRITICAL_FID, show_default=True,
              help="The FID each run trains to (fix it before the runs; the study's threshold).")
@study_options(seeds=3)
@click.pass_context
def critical_batch(ctx, batch_sizes, target_fid, **o):
    """Steps and SFO (batch × steps) to a target FID fixed in advance, per batch size.

    Each run is evaluated at the same images seen (batch × steps, 2^15 ... 2^21) for every
    batch size until its FID reaches the target, then once inside the bracket. Resumable as
    compare-timescales; writes ttur_critical_batch.json|png."""
    s = _study_setup(o)
    plan = _critical_plan(s, batch_sizes, target_fid)
    _execute(ctx, s, [plan], [(plan, r) for r in plan.runs])


@cli.command("truncation")
@study_options(seeds=3)
@click.pass_context
def truncation(ctx, **o):
    """FID, KID, precision, recall, density and coverage against BigGAN's truncation threshold.

    The generators are the time-scale study's dcgan TTUR runs at step 10,000
    (studies.TRUNCATION_STEP; those runs are trained first where they lack it); resumable;
    writes ttur_truncation.json|png."""
    s = _study_setup(o)
    plan = _truncation_plan(s)
    _execute(ctx, s, [plan], [(plan, r) for r in plan.runs])


@cli.command("studies")
@study_options(seeds=3)
@click.pass_context
def all_studies(ctx, **o):
    """All three studies, in order of value: truncation on one trained DCGAN (seed 0), the
    other DCGAN TTUR runs to their first pass (60,000 steps), truncation on their generators,
    the DCGAN single time scales to their first pass, the critical batch size (a whole study
    in fewer core-hours), the WGAN-GP time scales (a step, one critic update with
    gradient penalty, costs about 2.2 DCGAN steps), then the rest of the DCGAN time scales' schedule (150,000 steps).
    The default paths (reference_stats/, benchmarks/results/, runs/) are relative to the
    current folder: run it from the repository root.
    Resumable: stop it at any time and start it again. Several processes may run it at once
    (one per core, each with --threads 1): each skips the runs another holds."""
    s = _study_setup(o)
    ts = _timescale_plan(s, ("dcgan", "wgan-gp"))
    tr = _truncation_plan(s)
    cb = _critical_plan(s, studies.CRITICAL_BATCH_SIZES)
    dcgan = [r for r in ts.runs if r.config.arch == "dcgan"]
    first_pass = (studies.QUICK_FIRST_PASS if s["quick"] else studies.TIMESCALE_FIRST_PASS)["dcgan"]
    first = [studies.up_to(r, first_pass) for r in dcgan]
    order = ([(tr, tr.runs[0])] + [(ts, r) for r in first if r.group == "dcgan/ttur"]
             + [(tr, r) for r in tr.runs[1:]] + [(ts, r) for r in first if r.group != "dcgan/ttur"]
             + [(cb, r) for r in cb.runs] + [(ts, r) for r in ts.runs if r.config.arch != "dcgan"]
             + [(ts, r) for r in dcgan])
    _execute(ctx, s, [ts, tr, cb], order)


@cli.command("aggregate")
@click.option("--study", "which", type=click.Choice(("all",) + studies.STUDIES), default="all", show_default=True)
@click.option("--archs", callback=_archs, default="dcgan,wgan-gp", show_default=True)
@click.option("--batch-sizes", callback=_batch_sizes, default=",".join(map(str, studies.CRITICAL_BATCH_SIZES)),
              show_default=True)
@click.option("--threshold", type=_POS_FLOAT, default=None,
              help="Critical batch: FID threshold [default: the target FID the runs trained to].")
@click.option("--target-fid", type=_POS_FLOAT, default=studies.CRITICAL_FID, show_default=True,
              help="Critical batch: the target FID the runs were made with.")
@study_options(seeds=3)
@click.pass_context
def aggregate(ctx, which, archs, batch_sizes, threshold, target_fid, **o):
    """Rewrites the study files from the per-run result files, training nothing; a study
    with runs missing or unfinished is marked incomplete. The plan's options (--seeds,
    --archs, --batch-sizes, ...) must be those the runs were made with."""
    s = _study_setup(o)
    command = _command(ctx)
    plans = {"timescales": _timescale_plan(s, archs), "truncation": _truncation_plan(s),
             "critical-batch": _critical_plan(s, batch_sizes, target_fid)}
    for name, plan in plans.items():
        if which not in ("all", name):
            continue
        doc = _aggregate(plan, s, command, **({"threshold": threshold} if name == "critical-batch" else {}))
        _say(f"{name}: {doc['status']}; wrote {s['results'] / analysis.RESULT_NAMES[name]}.json|png")


# --------------------------------------------------------------------------- entry point

def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def main(argv=None) -> None:
    """Entry point of ``fidkit-ttur``: one-line errors, exit 2 usage, 1 data, 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    warnings.showwarning = _show_warning
    try:
        # invoked directly, not through cli.main(): that turns Ctrl-C into a blank line on
        # stderr and click's Abort, before the handler below could say what it means
        with cli.make_context(PROG, list(argv), obj={"argv": argv}) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Abort:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted; files already written are complete (each is written atomically)",
              file=sys.stderr)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:  # `fidkit-ttur` alone: its help, as click shows it
        e.show()
        sys.exit(e.exit_code)
    except BrokenPipeError:  # stdout's reader left: nothing more to say
        sys.stdout = open(os.devnull, "w")
        sys.exit(1)
    except click.ClickException as e:
        print(f"{PROG}: error: {e.format_message()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except fidkit.FidkitError as e:
        if debug:
            raise
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - one line for users, the traceback with --debug
        if debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"{PROG}: error: unexpected {type(e).__name__}: {first} (run with --debug for the traceback)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
