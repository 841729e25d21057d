"""The ``fidkit-ttur`` command line: ``train`` and three studies.

- ``train``: one run (see :func:`fidkit.ttur.train.train`), files in ``--out``.
- ``compare-timescales``: TTUR (lr_D = ratio·lr_G) against one time scale (lr_D = lr_G)
  with the same budget and seeds.
- ``critical-batch``: steps and samples (SFO = batch × steps) to reach an FID threshold
  for batch sizes 2^k with constant learning rates.
- ``truncation``: FID, precision and recall of a generator sampled with truncated z.

Each study writes ``NAME.json`` (settings, exact command line, every run's evaluations)
and ``NAME.png`` into ``--results`` (default ``benchmarks/results``), both at the end and
atomically, so an interrupted or failed study leaves no partial file. The small defaults
finish in minutes on two CPU cores; the options take GPU-sized runs.

Errors are one line on stderr (``fidkit-ttur: error: …``): exit status 2 for bad usage
(options), 1 for bad data or settings, 130 when interrupted; ``--debug`` shows tracebacks.
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
import numpy as np
import torch

import fidkit

from .models import ARCHS
from .train import (DEFAULT_BETAS, FIDEvaluator, TrainConfig, TrainError, config_from_checkpoint, derived_seeds,
                    generator_from_checkpoint, have_matplotlib, machine_description, new_figure, prepare_reference,
                    real_uint8, resolve_device, sample, save_figure, stats_from_features, train, write_json)

PROG = "fidkit-ttur"
#: the statistics ``--reference auto`` picks for Fashion-MNIST at 28×28 (run from the repository root)
DEFAULT_REFERENCE = Path("reference_stats") / "fashion-mnist-test.npz"
FASHION = ("fashion-mnist-train", "fashion-mnist-test")
DEFAULT_THRESHOLDS = (2.0, 1.0, 0.5, 0.25, 0.04)


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


_POS_FLOAT = click.FloatRange(min=0, min_open=True)


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
        opt("--size", type=click.IntRange(min=8), default=28, show_default=True,
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
        opt("--gp-weight", type=click.FloatRange(min=0), default=10.0, show_default=True,
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
        raise click.BadParameter(f"{reference}: no such statistics file (or use 'auto' or 'data')",
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


def _results_paths(results: str, name: str) -> tuple[Path, Path]:
    """(NAME.json, NAME.png) in ``results``, created if needed and checked writable before any work."""
    folder = Path(results)
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{results}: not a folder", param_hint="'--results'")
    if not name or "/" in name or name.startswith("."):
        raise click.BadParameter(f"{name!r}: give a plain file name stem", param_hint="'--name'")
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"{results}: cannot write there", param_hint="'--results'")
    if not have_matplotlib():
        raise TrainError("the studies plot with matplotlib, which is not installed: pip install 'fidkit[plot]'")
    return folder / f"{name}.json", folder / f"{name}.png"


def _say(message: str) -> None:
    click.echo(f"{PROG}: {message}", err=True)


def _progress(label: str):
    def show(record):
        extra = f", KID {record['kid_mean']:.4f}" if record.get("kid_mean") is not None else ""
        fid = "undefined" if record["fid"] is None else f"{record['fid']:.2f}"
        _say(f"{label}step {record['step']}: FID {fid}{extra} "
             f"(eval {record['eval_seconds']:.1f} s, training {record['seconds']:.1f} s so far)")
    return show


class _Shared:
    """The reference of a study, prepared once: statistics (loaded or computed) and, with KID,
    reference features; hands out one :class:`FIDEvaluator` per seed."""

    def __init__(self, c: TrainConfig, device: torch.device):
        self.c, self.device = c, device
        self.reference, self.kid_features, self.described = prepare_reference(c, device)
        self._evaluators: dict = {}

    def evaluator(self, seed: int) -> FIDEvaluator:
        if seed not in self._evaluators:
            c = self.c
            self._evaluators[seed] = FIDEvaluator(self.reference, c.eval_n, c.eval_batch_size, self.device,
                                                  derived_seeds(seed)[2], self.kid_features, c.kid_subsets,
                                                  c.kid_subset_size)
        return self._evaluators[seed]


def _header(ctx, study: str, device) -> dict:
    return {"study": study, "command": _command(ctx), "fidkit_version": fidkit.__version__,
            "torch_version": str(torch.__version__), "device": str(device), "machine": machine_description(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# --------------------------------------------------------------------------- commands

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(fidkit.__version__, prog_name=PROG)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug):
    """Train small GANs with FID tracked by fidkit, and run the TTUR studies."""


_GIVEN = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


@cli.command("train")
@train_options(steps=2000, eval_every=250, eval_n=500)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: log.json, fid.png, checkpoints/.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue from this checkpoint (its settings; options given here override, and only "
                   "--steps, --checkpoint-every, --device, --stop-fid may differ).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps between checkpoints (0: only at the end).")
@click.option("--stop-fid", type=float, default=None, help="Stop after the first evaluation with FID ≤ this.")
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


@cli.command("compare-timescales")
@train_options(skip=("lr_d",), steps=300, eval_every=100, eval_n=64)
@click.option("--ratio", type=click.FloatRange(min=1, min_open=True), default=4.0, show_default=True,
              help="TTUR's lr_D / lr_G (the single time scale uses lr_D = lr_G).")
@click.option("--seeds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Runs per setting, with seeds --seed, --seed+1, ...")
@click.option("--results", default="benchmarks/results", show_default=True, help="Folder for NAME.json/.png.")
@click.option("--name", default="ttur_timescales", show_default=True, help="File name stem of the results.")
@click.pass_context
def compare_timescales(ctx, ratio, seeds, results, name, **p):
    """TTUR (lr_D = ratio·lr_G) against one time scale (lr_D = lr_G): same budget, same seeds."""
    _setup(p)
    json_path, png_path = _results_paths(results, name)
    lr_g = p["lr_g"]
    settings = {"ttur": {"lr_d": ratio * lr_g, "lr_g": lr_g}, "single": {"lr_d": lr_g, "lr_g": lr_g}}
    seed_list = [p["seed"] + i for i in range(seeds)]
    configs = {(s, k): _config(p, seed=s, **v) for s in seed_list for k, v in settings.items()}
    device = resolve_device(p["device"])
    t0 = time.perf_counter()
    shared = _Shared(next(iter(configs.values())), device)
    runs = []
    for (seed, setting), c in configs.items():
        _say(f"{setting} (lr_D {c.lr_d:g}, lr_G {c.lr_g:g}), seed {seed}")
        r = train(c, evaluator=shared.evaluator(seed), on_eval=_progress("  "))
        runs.append({"setting": setting, "seed": seed, "lr_d": c.lr_d, "lr_g": c.lr_g, "evals": r.log["evals"],
                     "final_fid": r.log["evals"][-1]["fid"], "warnings": r.log["warnings"]})
    summary = {}
    for setting in settings:
        mine = [r for r in runs if r["setting"] == setting]
        steps = [e["step"] for e in mine[0]["evals"]]
        curves = np.array([[e["fid"] for e in r["evals"]] for r in mine])
        finals = curves[:, -1]
        summary[setting] = {"steps": steps, "fid_mean": curves.mean(0).tolist(),
                            "fid_std": curves.std(0).tolist() if len(mine) > 1 else None,
                            "final_fid_per_seed": finals.tolist(), "final_fid_mean": float(finals.mean()),
                            "final_fid_std": float(finals.std()) if len(mine) > 1 else None}
    c0 = next(iter(configs.values()))
    doc = {**_header(ctx, "compare-timescales", device),
           "question": "With the same steps, batch size, seeds and generator learning rate, how does FID evolve "
                       "with lr_D = ratio·lr_G (TTUR) and with lr_D = lr_G (one time scale)?",
           "settings": settings, "ratio": ratio, "seeds": seed_list,
           "evaluation": {"eval_n": c0.eval_n, "eval_every": c0.eval_every, "reference": shared.described,
                          "note": "FID of eval_n generated images (fixed z per seed) against the reference; with "
                                  "fewer than 2048 images it is biased upward, so compare only these runs' "
                                  "values with each other"},
           "config": {k: v for k, v in c0.as_dict().items() if k not in ("lr_d", "lr_g", "seed")},
           "summary": summary,
           "final_fid_difference_ttur_minus_single": summary["ttur"]["final_fid_mean"]
           - summary["single"]["final_fid_mean"],
           "runs": runs, "seconds": round(time.perf_counter() - t0, 1)}
    fig, (ax,) = new_figure(width=6.5, height=4.2)
    for i, setting in enumerate(settings):
        color = f"C{i}"
        for r in (r for r in runs if r["setting"] == setting):
            ax.plot([e["step"] for e in r["evals"]], [e["fid"] for e in r["evals"]], "-", color=color, alpha=0.3,
                    lw=1)
        s = summary[setting]
        lab = settings[setting]
        ax.plot(s["steps"], s["fid_mean"], "o-", color=color, lw=2,
                label=f"{setting}: lr_D {lab['lr_d']:g}, lr_G {lab['lr_g']:g} (mean of {len(seed_list)})")
    ax.set_xlabel("generator step")
    ax.set_ylabel(f"FID ({c0.eval_n} generated images)")
    ax.set_title(f"{c0.arch}, batch {c0.batch_size}: two time scales vs one (thin: each seed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    write_json(json_path, doc)
    save_figure(fig, png_path)
    for setting in settings:
        s = summary[setting]
        _say(f"{setting}: final FID per seed {', '.join(f'{v:.2f}' for v in s['final_fid_per_seed'])} "
             f"(mean {s['final_fid_mean']:.2f})")
    _say(f"wrote {json_path} and {png_path} ({doc['seconds']:.0f} s)")


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
    return sorted(sizes)


def _critical_note(critical, batch_sizes) -> str | None:
    if critical is None:
        return "no run reached the threshold; raise --max-steps or the threshold"
    if len(batch_sizes) > 1 and critical == batch_sizes[0]:
        return ("the argmin is the smallest batch size tried: the critical batch size may be smaller still; "
                "add smaller batch sizes")
    if len(batch_sizes) > 1 and critical == batch_sizes[-1]:
        return ("the argmin is the largest batch size tried: the critical batch size may be larger still; "
                "add larger batch sizes")
    return None


@cli.command("critical-batch")
@train_options(skip=("batch_size", "steps"), eval_every=50, eval_n=48)
@click.option("--batch-sizes", callback=_batch_sizes, default="16,32,64,128", show_default=True,
              help="Batch sizes 2^k, comma-separated.")
@click.option("--threshold", type=_POS_FLOAT, default=320.0, show_default=True,
              help="Target FID (of --eval-n images; its level depends on --eval-n and the reference).")
@click.option("--max-steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Step cap of each run; a run that never reaches the threshold is recorded as such.")
@click.option("--results", default="benchmarks/results", show_default=True, help="Folder for NAME.json/.png.")
@click.option("--name", default="ttur_critical_batch", show_default=True, help="File name stem of the results.")
@click.pass_context
def critical_batch(ctx, batch_sizes, threshold, max_steps, results, name, **p):
    """Steps and samples (SFO = batch × steps) to reach an FID threshold, for batch sizes 2^k."""
    _setup(p)
    json_path, png_path = _results_paths(results, name)
    configs = {b: _config(p, batch_size=b, steps=max_steps, stop_fid=threshold) for b in batch_sizes}
    device = resolve_device(p["device"])
    t0 = time.perf_counter()
    shared = _Shared(configs[batch_sizes[0]], device)
    runs = []
    for b, c in configs.items():
        _say(f"batch {b}")
        r = train(c, evaluator=shared.evaluator(c.seed), on_eval=_progress("  "))
        hit = r.log["reached_stop_fid"]
        runs.append({"batch_size": b, "reached": hit is not None, "steps": hit["step"] if hit else None,
                     "sfo": b * hit["step"] if hit else None, "steps_run": r.step,
                     "best_fid": min(e["fid"] for e in r.log["evals"]), "final_fid": r.log["evals"][-1]["fid"],
                     "seconds": r.log["evals"][-1]["seconds"], "evals": r.log["evals"],
                     "warnings": r.log["warnings"]})
    reached = [r for r in runs if r["reached"]]
    critical = min(reached, key=lambda r: (r["sfo"], r["batch_size"]))["batch_size"] if reached else None
    c0 = configs[batch_sizes[0]]
    doc = {**_header(ctx, "critical-batch", device),
           "definition": "steps = the first evaluated step whose FID is at or below the threshold (resolution "
                         "eval_every); SFO complexity (stochastic first-order oracle calls: samples the updates of G used) = batch_size × steps; the critical batch size "
                         "is the argmin of SFO over the runs that reached the threshold (ties: the smaller batch), "
                         "the batch beyond which reaching the threshold costs more samples. Runs that never "
                         "reached it within max_steps have reached=false and steps=sfo=null. With n_critic > 1 "
                         "the discriminator draws n_critic × SFO real images (images_seen in each run's evals).",
           "threshold": threshold, "max_steps": max_steps, "batch_sizes": batch_sizes,
           "learning_rates": {"lr_d": c0.lr_d, "lr_g": c0.lr_g, "note": "constant, the same for every batch size"},
           "evaluation": {"eval_n": c0.eval_n, "eval_every": c0.eval_every, "reference": shared.described},
           "config": {k: v for k, v in c0.as_dict().items() if k not in ("batch_size", "steps", "stop_fid")},
           "critical_batch_size": critical,
           "critical_batch_note": _critical_note(critical, batch_sizes),
           "runs": runs, "seconds": round(time.perf_counter() - t0, 1)}
    fig, (ax1, ax2) = new_figure(ncols=2, width=4.6, height=3.8)
    for ax, key, label in ((ax1, "steps", "steps to FID ≤ threshold"), (ax2, "sfo", "SFO = batch × steps")):
        xs = [r["batch_size"] for r in reached]
        ax.plot(xs, [r[key] for r in reached], "o-", color="C0", label="reached")
        miss = [r for r in runs if not r["reached"]]
        if miss:
            ys = [max_steps * (r["batch_size"] if key == "sfo" else 1) for r in miss]
            ax.plot([r["batch_size"] for r in miss], ys, "x", color="C3", ms=9,
                    label=f"not reached within {max_steps} steps (plotted at the cap)")
        if critical is not None:
            ax.axvline(critical, color="0.5", ls="--", lw=1, label=f"critical batch {critical}")
        ax.set_xscale("log", base=2)
        if key == "sfo":
            ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=7)
    fig.suptitle(f"{c0.arch}: FID ≤ {threshold:g} ({c0.eval_n} images), lr_D {c0.lr_d:g}, lr_G {c0.lr_g:g}",
                 fontsize=9)
    write_json(json_path, doc)
    save_figure(fig, png_path)
    for r in runs:
        _say(f"batch {r['batch_size']}: " + (f"FID ≤ {threshold:g} at step {r['steps']} (SFO {r['sfo']})"
                                             if r["reached"] else f"not reached in {r['steps_run']} steps "
                                                                  f"(best FID {r['best_fid']:.2f})"))
    _say(f"critical batch size: {critical}; wrote {json_path} and {png_path} ({doc['seconds']:.0f} s)")


def _thresholds(ctx, param, value):
    t = _parse_floats(value, "truncation thresholds")
    if not all(v > 0 for v in t):
        raise click.BadParameter(f"{value!r}: thresholds must be positive")
    return t


@cli.command("truncation")
@train_options(skip=("eval_every", "eval_n", "kid", "reference_data", "reference_n"), steps=400)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Generator checkpoint from `fidkit-ttur train` [default: train one first with the options].")
@click.option("--thresholds", callback=_thresholds, default=",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS),
              show_default=True, help="Truncation thresholds |z_i| ≤ t (untruncated z is always added).")
@click.option("--n", "n_samples", type=click.IntRange(min=4), default=128, show_default=True,
              help="Generated images per threshold.")
@click.option("--real-data", default="fashion-mnist-test", show_default=True,
              help="Real images for precision/recall (and computed reference statistics).")
@click.option("--real-n", type=click.IntRange(min=4), default=256, show_default=True,
              help="Real images for precision/recall.")
@click.option("--pr-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Nearest neighbours that set the manifold radii of precision/recall.")
@click.option("--sample-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of z (the same z before truncation for every threshold).")
@click.option("--results", default="benchmarks/results", show_default=True, help="Folder for NAME.json/.png.")
@click.option("--name", default="ttur_truncation", show_default=True, help="File name stem of the results.")
@click.pass_context
def truncation(ctx, checkpoint, thresholds, n_samples, real_data, real_n, pr_k, sample_seed, results, name, **p):
    """FID, precision and recall against the truncation threshold (the variety–fidelity trade-off).

    The generator comes from --checkpoint, or is trained first (without evaluations) with the
    training options, which are ignored when --checkpoint is given."""
    _setup(p)
    if real_data not in fidkit.DATASETS and not Path(real_data).is_dir():
        raise click.BadParameter(f"{real_data}: neither a dataset ({', '.join(fidkit.DATASETS)}) nor an image folder",
                                 param_hint="'--real-data'")
    json_path, png_path = _results_paths(results, name)
    device = resolve_device(p["device"])
    t0 = time.perf_counter()
    if checkpoint is not None:
        g, c, state = generator_from_checkpoint(checkpoint, device)
        trained = {"checkpoint": checkpoint, "step": int(state["step"]), "config": c.as_dict()}
        reference = _resolve_reference(p["reference"], c.data, c.size)
        _say(f"generator of {checkpoint} (step {state['step']})")
    else:
        c = _config(p, eval_every=0, eval_start=False, reference=None)
        reference = _resolve_reference(p["reference"], c.data, c.size)
        _say(f"training a {c.arch} generator for {c.steps} steps (no evaluation during training)")
        r = train(c)
        g = r.generator.eval()
        trained = {"checkpoint": None, "step": r.step, "config": c.as_dict(),
                   "training_seconds": round(time.perf_counter() - t0, 1)}
    real = real_uint8(real_data, real_n, c.size, c.channels)
    _say(f"features of {len(real)} real images of {real_data}")
    caught_all: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        real_feats = fidkit.features(real, device=device, batch_size=p["eval_batch_size"], progress=False)
        ref = fidkit.Statistics.load(reference) if reference else stats_from_features(
            real_feats, f"{len(real)} images of {real_data}")
        metric = fidkit.FID(ref, device=device, batch_size=p["eval_batch_size"], keep_features=True)
        rows = []
        is_unavailable = None
        for t in (None,) + tuple(thresholds):
            images = sample(g, n_samples, truncation=t, seed=sample_seed, batch_size=p["eval_batch_size"])
            metric.reset()
            metric.update(images)
            row = {"threshold": t, "n": metric.n, "fid": metric.compute()}
            row.update({k: float(v) for k, v in fidkit.precision_recall(real_feats, metric.features(), k=pr_k).items()})
            if is_unavailable is None:
                try:
                    m = fidkit.inception_score(images, device=device, batch_size=p["eval_batch_size"],
                                               progress=False, splits=min(10, n_samples))
                    row["inception_score"] = {"mean": m.mean, "std": m.std}
                except fidkit.FidkitError as e:
                    is_unavailable = str(e)
            if is_unavailable is not None:
                row["inception_score"] = None
            rows.append(row)
            _say(f"threshold {t if t is not None else 'none'}: FID {row['fid']:.2f}, precision "
                 f"{row['precision']:.3f}, recall {row['recall']:.3f}")
        caught_all = list(dict.fromkeys(str(w.message) for w in caught))
    doc = {**_header(ctx, "truncation", device),
           "method": "z ~ N(0, I) with every entry |z_i| > threshold drawn again until none is (BigGAN's truncation "
                     "trick); threshold null = untruncated. The same seed for every threshold.",
           "generator": trained, "n": n_samples, "sample_seed": sample_seed,
           "reference": reference or f"statistics of the {len(real)} real images below",
           "real": {"data": real_data, "n": len(real)},
           "precision_recall": f"fidkit.precision_recall(real features, generated features, k={pr_k})",
           "inception_score": {"available": is_unavailable is None,
                               "reason": is_unavailable},
           "results": rows, "warnings": caught_all, "seconds": round(time.perf_counter() - t0, 1)}
    fig, (ax1, ax2) = new_figure(ncols=2, width=4.6, height=3.8)
    ax1.plot([r["recall"] for r in rows], [r["precision"] for r in rows], "o-", color="C0")
    for r in rows:
        ax1.annotate("none" if r["threshold"] is None else f"{r['threshold']:g}", (r["recall"], r["precision"]),
                     textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax1.set_xlabel("recall (variety)")
    ax1.set_ylabel("precision (fidelity)")
    ax1.grid(alpha=0.3)
    trunc = [r for r in rows if r["threshold"] is not None]
    ax2.plot([r["threshold"] for r in trunc], [r["fid"] for r in trunc], "o-", color="C1", label="truncated")
    ax2.axhline(rows[0]["fid"], color="0.4", ls="--", lw=1, label="untruncated")
    ax2.set_xscale("log")
    ax2.set_xlabel("truncation threshold")
    ax2.set_ylabel(f"FID ({n_samples} images)")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=7)
    fig.suptitle(f"{c.arch} generator, step {trained['step']}: truncation trick", fontsize=9)
    write_json(json_path, doc)
    save_figure(fig, png_path)
    _say(f"wrote {json_path} and {png_path} ({doc['seconds']:.0f} s)")


# --------------------------------------------------------------------------- entry point

def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def main(argv=None) -> None:
    """Entry point of ``fidkit-ttur``: one-line errors, exit 2 usage, 1 data, 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False, obj={"argv": argv})
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
