"""The ``fidkit`` command line: ``compute``, ``stats``, ``adm``, ``is`` and ``weights``.

Errors are one line on stderr (``fidkit: error: …``) with exit status 1 for data errors,
2 for usage errors and 130 when interrupted; ``--debug`` shows the traceback instead.
Results go to stdout; progress, notes and warnings to stderr.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import warnings

import click

from . import __version__
from .api import (DGM_EVAL_MODES, _batch_images_of, _dgm_eval_cut_note, _is_stats_path, adm_evaluate,
                  check_metrics, compare, compute_stats, inception_score, load_weights, mode_of, parse_metrics)
from .encoders import ENCODERS, get_info
from .scores import ADM_DEFAULT_DISTANCES, ADM_DEFAULT_MEANS, ADM_DISTANCES, DEFAULT_MEANS, MEANS
from .errors import FidkitError, FidkitWarning
from .pipeline import BATCH_SIZE_CPU, BATCH_SIZE_CUDA, MAX_DEFAULT_WORKERS, PRECISIONS
from .preprocess import PROTOCOLS
from .sources import DATASETS, DGM_EVAL_SEED, DatasetImages, is_archive_source, npz_members, shardable
from .sources import shard as shard_files
from ._io import atomic_write
from .stats import Statistics, check_writable, merge, shard_order


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"fidkit: warning: {message}", file=sys.stderr, flush=True)


#: every encoder's preprocessing modes: ``--protocol`` names one of the chosen encoder's
_MODES = list(dict.fromkeys(list(PROTOCOLS) + [m for e in ENCODERS.values() for m in e.modes]))


def _encoder_options(f):
    """``--encoder`` and ``--encoder-weights`` (``compute`` and ``stats``), passed on in ``**run``."""
    f = click.option("--encoder-weights", type=click.Path(dir_okay=False), default=None,
                     help="Weights file of the encoder (DINOv2's .pth, OpenAI's CLIP .pt) [default: "
                          "FIDKIT_ENCODER_WEIGHTS_<NAME>, the cache, then the download]. Inception: --weights.")(f)
    f = click.option("--encoder", default=None, metavar="NAME",
                     help=f"Feature network: {', '.join(ENCODERS)} [default: inception].")(f)
    return f


def _nsample_options(f):
    """``--nsample`` and ``--nsample-seed`` (``compute`` and ``stats``), passed on in ``**run``."""
    f = click.option("--nsample-seed", type=click.IntRange(0, 2 ** 32 - 1), default=DGM_EVAL_SEED, show_default=True,
                     metavar="S", help="The seed of --nsample's choice (dgm-eval's --seed).")(f)
    f = click.option("--nsample", type=click.IntRange(min=2), default=None, metavar="N",
                     help="Cut each image set of more than N images to the N that dgm-eval's --nsample N --seed S "
                          "reads (its default: 50000).")(f)
    return f


def _check_nsample_seed(ctx, run: dict) -> None:
    if ctx.get_parameter_source("nsample_seed") == click.core.ParameterSource.COMMANDLINE and run["nsample"] is None:
        warnings.warn("--nsample-seed applies to --nsample, which was not given: it changes nothing", FidkitWarning)


def _run_options(f=None, *, inception_only: bool = False):
    """Options shared by the commands that run the network; the command gets them (but
    ``--protocol``) as ``**run``, the keyword arguments of :func:`fidkit.api.extract`.
    ``inception_only``: a command without ``--encoder`` (``is``): only Inception's modes."""
    if f is None:
        return lambda g: _run_options(g, inception_only=inception_only)
    protocol = (click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default=None,
                             help="Resize and scaling of the reference implementation to reproduce: one of "
                                  "Inception's preprocessing modes [default: ttur].")
                if inception_only else
                click.option("--protocol", type=click.Choice(_MODES), default=None,
                             help="Resize and scaling of the reference implementation to reproduce: the encoder's "
                                  "preprocessing mode [default: ttur for Inception, edm2 for DINOv2, cmmd for "
                                  "CLIP]."))
    opts = [
        protocol,
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help=f"Images per network batch [default: {BATCH_SIZE_CPU} on the CPU, {BATCH_SIZE_CUDA} on CUDA]."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--workers", type=click.IntRange(min=0), default=None,
                     help=f"Decoding worker processes [default: cores − 1, from 1 to {MAX_DEFAULT_WORKERS}]."),
        click.option("--weights", type=click.Path(dir_okay=False), default=None, envvar="FIDKIT_WEIGHTS",
                     help="Inception weights file (fidkit .npz, pytorch-fid .pth or NVIDIA TorchScript)."),
        click.option("--precision", type=click.Choice(list(PRECISIONS)), default=PRECISIONS[0], show_default=True,
                     help="Network arithmetic: strict fp32, or on CUDA tf32x3 (split TF32, fp32-grade: FID within "
                          "1e-6 when emulated) or the faster tf32 / bf16 (scores shift)."),
        click.option("--skip-bad", is_flag=True,
                     help="Leave out files that cannot be decoded (counted and listed) instead of stopping."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar on stderr [default: when stderr is a terminal]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fidkit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug):
    """FID and companions, reproducing the published reference implementations."""


@cli.command()
@click.argument("a")
@click.argument("b")
@_run_options
@_encoder_options
@click.option("--allow-mismatch", is_flag=True, help="Compare statistics made with different protocols or weights.")
@click.option("--metrics", default="fid", show_default=True,
              help="Comma-separated: fid (alias fd: the Fréchet distance in the encoder's space), kid, pr "
                   "(precision, recall, density, coverage; A is the real set), fd-inf (FD∞ of B), "
                   "is (Inception Score of B, the generated set), guided-diffusion's (ADM's) sfid, adm-pr "
                   "(its precision/recall), is-adm (its Inception Score), is-stylegan (StyleGAN2-ADA/3's "
                   "is50k; with --protocol nvidia) and is-dgm-eval (dgm-eval's is): Inception only; cmmd: "
                   "CLIP only; dgm-eval's kd-dgm-eval and prdc-dgm-eval (its kd and prdc, their subsets drawn as "
                   "it draws them after --nsample's cut), realism-dgm-eval (its realism, one score per image of B, "
                   "with prdc-dgm-eval; needs --per-image), ct-dgm-eval, ct-test-dgm-eval and ct-modified-dgm-eval "
                   "(its ct, ct_test and ct_modified; need --test and scikit-learn), fls-dgm-eval (its fls and "
                   "fls_overfit; needs --test), "
                   "authpct and sw-approx, vendi (the Vendi score of B) and "
                   "vendi-dgm-eval (dgm-eval's vendi: its mean per class folder of B): any encoder. "
                   "One pass over each source serves them all.")
@click.option("--biased-covariance", is_flag=True,
              help="Normalise both covariances by 1/N, as StyleGAN2-ADA/StyleGAN3 do (with --protocol nvidia: "
                   "their FID); the default is 1/(N-1), as TTUR, pytorch-fid and EDM.")
@click.option("--pr-k", type=click.IntRange(min=1), default=None, metavar="K",
              help="Nearest neighbours of the balls of pr (default 3, as torch-fidelity) and prdc-dgm-eval "
                   "(default 5, dgm-eval's --nearest_k).")
@click.option("--pr-distances", type=click.Choice(list(ADM_DISTANCES)), default=ADM_DEFAULT_DISTANCES,
              show_default=True, help="adm-pr's arithmetic, as for `fidkit adm`.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=0, metavar="B",
              help="Add a 95% confidence interval of the FID from B resamples of the images' features.")
@click.option("--subset", type=click.IntRange(min=2), default=None, metavar="N",
              help="Score N of B's images (the generated set), chosen as EDM's and EDM2's --num N --seed S "
                   "choose them (B with fewer, or B a statistics file, is refused).")
@click.option("--subset-seed", type=int, default=0, show_default=True, metavar="S",
              help="The seed of --subset's choice (EDM's and EDM2's --seed).")
@_nsample_options
@click.option("--reduced-n", type=click.IntRange(min=1), default=None, metavar="N",
              help="The subsample of prdc-dgm-eval and fls-dgm-eval (dgm-eval's --reduced_n) [default: 10000].")
@click.option("--test", "test", default=None, metavar="PATH",
              help="Real images the generator never saw (dgm-eval's --test_path), for --metrics fls-dgm-eval "
                   "and the ct metrics (A is then its train set); with kd-dgm-eval or prdc-dgm-eval alone it is only counted, as its "
                   "--nsample cut seeds their draws when B is not cut.")
@click.option("--means", type=click.Choice(list(MEANS)), default=DEFAULT_MEANS, show_default=True,
              help="How FID's and sFID's means are taken: float64 (fidkit's statistics, as TTUR, pytorch-fid, "
                   "torchmetrics, EDM and StyleGAN) or float32 (np.mean of the float32 features, as clean-fid, "
                   "torch-fidelity and ADM's evaluator).")
@click.option("--per-image", "per_image", default=None, type=click.Path(dir_okay=False), metavar="PATH",
              help="Write the scores of each image of B (realism-dgm-eval) to PATH as CSV: row, file, realism, "
                   "in B's rows as dgm-eval reads them (an exact copy of a real image scores huge, or inf).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def compute(a, b, protocol, allow_mismatch, metrics, biased_covariance, pr_k, pr_distances, bootstrap, subset,
            subset_seed, reduced_n, test, means, per_image, as_json, **run):
    """FID (and --metrics) between A and B: image folders, archives (.zip, .tar, .tar.gz, 'shards/*.tar'),
    sample batches (.npz with arr_0, .npy) or statistics files (.npz with mu/sigma, EDM2 .pkl: FID and sFID; with --features, from `fidkit stats --features`, also
    the metrics that read every image's features)."""
    ctx = click.get_current_context()
    wanted = parse_metrics(metrics)
    for option, name, needs in (("--pr-k", "pr_k", ("pr", "prdc-dgm-eval")), ("--pr-distances", "pr_distances",
                                                                               ("adm-pr",)),
                                ("--reduced-n", "reduced_n", ("prdc-dgm-eval", "fls-dgm-eval"))):
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE and not set(needs) & set(wanted):
            warnings.warn(f"{option} applies to --metrics {' and '.join(needs)}, which "
                          f"{'was' if len(needs) == 1 else 'were'} not asked for: it changes nothing", FidkitWarning)
    if ctx.get_parameter_source("subset_seed") == click.core.ParameterSource.COMMANDLINE and subset is None:
        warnings.warn("--subset-seed applies to --subset, which was not given: it changes nothing", FidkitWarning)
    _check_nsample_seed(ctx, run)
    if "realism-dgm-eval" in wanted and per_image is None:
        raise FidkitError("realism-dgm-eval gives one score per image of B: give --per-image PATH.csv to write them")
    if per_image is not None:
        if "realism-dgm-eval" not in wanted:
            raise FidkitError("--per-image writes realism-dgm-eval's scores, which were not asked for: add "
                              "prdc-dgm-eval,realism-dgm-eval to --metrics, or leave out --per-image")
        check_writable(per_image)  # before the long part, not after it
    r = compare(a, b, protocol, allow_mismatch=allow_mismatch, metrics=metrics, bootstrap=bootstrap, pr_k=pr_k,
                adm_distances=pr_distances, biased_covariance=biased_covariance, subset=subset,
                subset_seed=subset_seed, means=means, test=test,
                **({} if reduced_n is None else {"reduced_n": reduced_n}), **run)
    if per_image is not None:  # the per-image lists go to the file; the output says where
        _write_per_image(per_image, r.scores.pop("dgm_eval_realism"), r.scores.pop("dgm_eval_realism_files"))
        r.scores["per_image"] = str(per_image)
    if as_json:
        click.echo(json.dumps(r.as_dict()))
    else:
        label = "FID" if r.fd_key == "fid" else f"{r.fd_key} (Fréchet distance, {r.encoder})"
        click.echo(f"{label}: {r.fid:.6f}  (protocol {r.protocol}, {r.n_a} vs {r.n_b} images, "
                   f"{r.device} {r.network_precision}, {r.seconds:.1f} s)")
        for key, value in r.scores.items():
            if isinstance(value, (list, tuple)) and len(value) > 16:  # e.g. one Vendi score per class
                value = f"{len(value)} values (all of them with --json)"
            elif isinstance(value, (list, tuple)):  # e.g. statistics_from_file_a: the features a file held
                value = ", ".join(map(str, value))
            click.echo(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
        if r.frechet.clamping_matters():  # --json always has negative_eigenvalue_mass and clamped_sqrt
            click.echo(f"note: clamped negative eigenvalue mass {r.frechet.negative_eigenvalue_mass:.3g} "
                       f"(smallest {r.frechet.min_eigenvalue:.3g}): the FID may be off by up to "
                       f"{2 * r.frechet.clamped_sqrt:.3g}; a covariance is not positive semi-definite", err=True)


def _write_per_image(path, realism: list, files: list | None) -> None:
    """The realism score of each of B's rows as CSV (``row,file,realism``; ``file`` empty where B
    was not read as files), written whole or not at all. ``inf`` and ``nan`` as Python writes them."""
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(("row", "file", "realism"))
    for i, v in enumerate(realism):
        out.writerow((i, files[i] if files is not None else "", repr(float(v))))
    data = text.getvalue().encode()
    atomic_write(path, lambda f: f.write(data))


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Output .npz path (required, except for `fetch`).")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default=None,
              help="Read a known dataset from its own files instead of a folder.")
@_run_options
@_encoder_options
@click.option("--shard", default=None, metavar="I/K",
              help="Only the I-th of K equal parts of the folder's sorted files, the archive's members or the "
                   "sample batch's images (I from 0), to merge later.")
@click.option("--metrics", default="fid", show_default=True,
              help="fid, or fid,sfid to add the sFID statistics (mu_s, sigma_s, as ADM's evaluator reads them) "
                   "from the same pass.")
@click.option("--features", "keep_features", is_flag=True,
              help="Also keep every image's feature vector (float32: 8 KiB an image for Inception, 4 KiB for "
                   "DINOv2), so that the file serves `compute`'s per-image metrics (kid, pr, kd-dgm-eval, "
                   "prdc-dgm-eval, fd-inf, --bootstrap, ...) in place of the images.")
@_nsample_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def stats(sources, output, protocol, shard, dataset, metrics, keep_features, as_json, **run):
    """Statistics of an image folder or archive, computed once to compare against many times.

    \b
    fidkit stats DIR -o data.npz                    the whole folder
    fidkit stats data.zip -o data.npz               a .zip, .tar or .tar.gz, read without extracting
    fidkit stats 'shards/*.tar' -o data.npz         tar shards (webdataset), shard by shard
    fidkit stats DIR --shard 0/4 -o part0.npz       a quarter of it (on one of four machines)
    fidkit stats merge part*.npz -o data.npz        the exact statistics of the union
    fidkit stats --dataset fashion-mnist-test -o fm-test.npz
    fidkit stats ffhq/ --nsample 50000 -o ffhq.npz  the 50,000 of them dgm-eval reads
    fidkit stats samples.npz --metrics fid,sfid -o s.npz   a sample batch, with sFID statistics
    fidkit stats DIR --features -o data.npz         with every image's features (for kid, pr, ...)
    fidkit stats merge part*.npz --features -o data.npz   shards of --shard I/K --features, features kept
    fidkit stats fetch ttur-cifar10-train           published statistics, into fidkit's cache
    fidkit stats fetch                              the list of published statistics
    """
    _check_nsample_seed(click.get_current_context(), run)
    if sources and sources[0] == "fetch":
        return _fetch(sources[1:], output, as_json, dataset or shard or run["nsample"] or keep_features)
    if output is None:
        raise click.UsageError("give the output file with -o PATH")
    wanted = [m.strip().lower() for m in metrics.split(",") if m.strip()]
    bad = [m for m in wanted if m not in ("fid", "fd", "sfid")]
    if bad:
        raise click.UsageError(f"stats --metrics takes fid (alias fd) and sfid, not {', '.join(bad)}")
    check_metrics(wanted, run.get("encoder"))
    run["spatial"] = "sfid" in wanted
    run["keep_features"] = keep_features
    check_writable(output)  # before the long part, not after it
    if dataset:
        if sources or shard:
            raise click.UsageError("--dataset takes no folder and no --shard")
        st = compute_stats(DatasetImages(dataset), protocol, **run)
        st.extra["dataset"] = dataset
        st.source = dataset
    elif not sources:
        raise click.UsageError("give an image folder, `merge` and statistics files, or --dataset NAME")
    elif sources[0] == "merge":
        if len(sources) < 2:
            raise click.UsageError("stats merge needs statistics files: fidkit stats merge a.npz b.npz -o all.npz")
        if run["nsample"] is not None:
            raise click.UsageError("--nsample chooses images; stats merge merges statistics files whole")
        for k in ("spatial", "encoder", "encoder_weights", "nsample", "nsample_seed", "keep_features"):
            run.pop(k)
        parts = [Statistics.load(p) for p in sources[1:]]
        kept = [p for p in sources[1:] if p.lower().endswith(".npz") and "features" in npz_members(p)]
        if keep_features:  # every part's, joined in shard order (one pass's), else in the order given
            for path, part in zip(sources[1:], parts):  # a part without them: merge() says so
                if path in kept:
                    part.features = Statistics.load_features(path, part)
            parts = shard_order(parts)
        st = merge(parts, keep_features=keep_features)
        if kept and not keep_features:
            warnings.warn(f"{kept[0]}{f' and {len(kept) - 1} more' if len(kept) > 1 else ''} keep per-image "
                          f"features, which are not merged: {output} holds statistics only (merge with --features "
                          f"to keep them)", FidkitWarning)
    else:
        if len(sources) != 1 and not is_archive_source(list(sources)):
            raise click.UsageError("give one image folder or archive, or tar shards (or: fidkit stats merge A.npz "
                                   "B.npz … -o OUT.npz)")
        source = sources[0] if len(sources) == 1 else list(sources)  # several: tar shards (or zips)
        # an ADM reference batch's images serve another encoder and dgm-eval's cut (its statistics are Inception's)
        readable = _batch_images_of(source, get_info(run.get("encoder")).name, run["nsample"],
                                    mode_of(run.get("encoder"), protocol))
        if _is_stats_path(readable):
            raise FidkitError(f"{source} is already a statistics file; give an image folder or a sample batch")
        if shard and run["nsample"] is not None:
            raise click.UsageError("--nsample cuts the whole set, not a shard of it: leave out --shard")
        if shard:
            whole = shardable(readable)  # a folder's files, an archive's members or a batch's images
            mode = mode_of(run.get("encoder"), protocol)
            if mode in DGM_EVAL_MODES:  # dgm-eval would cut the whole set, not a shard
                _dgm_eval_cut_note({str(source): len(whole)}, {}, mode)
            files = shard_files(whole, shard)
            if not files:
                raise FidkitError(f"shard {shard} of {source} holds no images; use fewer shards")
            st = compute_stats(files, protocol, dgm_eval_note=False, **run)
            st.extra["shard"] = shard
        else:
            st = compute_stats(source, protocol, **run)
    path = st.save(output)
    info = {"path": str(path), "n": st.n, "encoder": st.encoder, "protocol": st.protocol,
            "weights_digest": st.weights_digest,
            "features": [st.extra.get("feature", "pool3")] + sorted(st.named)}
    for key in ("nsample", "nsample_seed", "nsample_from", "skipped"):
        if st.extra.get(key) not in (None, []):
            info[key] = st.extra[key]
    if st.features is not None:
        info["per_image_features"] = int(st.features.shape[0])
    click.echo(json.dumps(info) if as_json else f"wrote {path} ({st.n} images, encoder {st.encoder}, "
                                                 f"protocol {st.protocol}"
                                                 f"{', with their features' if st.features is not None else ''})")


def _fetch(names, output, as_json, other_options) -> None:
    from . import registry

    if other_options:
        raise click.UsageError("stats fetch takes a name and -o only")
    if not names:
        rows = [{"name": p.name, "protocol": p.protocol, "dataset": p.dataset, "url": p.url}
                for p in registry.PUBLISHED.values()]
        if as_json:
            click.echo(json.dumps(rows))
        else:
            width = max(len(r["name"]) for r in rows)
            for r in rows:
                click.echo(f"{r['name']:{width}s}  {r['protocol']:12s} {r['dataset']}")
        return
    if len(names) != 1:
        raise click.UsageError("stats fetch takes one name")
    if output is not None:
        check_writable(output)
    path = registry.fetch(names[0], say=lambda m: click.echo(m, err=True))
    st = Statistics.load(path)
    if output is not None:
        path = st.save(output)
    info = {"path": str(path), "name": names[0], "protocol": st.protocol, "n": st.n,
            "download_sha256": st.extra.get("download_sha256")}
    click.echo(json.dumps(info) if as_json else str(path))


@cli.command("adm")
@click.argument("ref")
@click.argument("sample")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help=f"Images per network batch [default: {BATCH_SIZE_CPU} on the CPU, {BATCH_SIZE_CUDA} on CUDA].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help=f"Decoding worker processes [default: cores − 1, from 1 to {MAX_DEFAULT_WORKERS}].")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, envvar="FIDKIT_WEIGHTS",
              help="Inception weights; the Inception Score needs pytorch-fid's .pth (with the classifier).")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=PRECISIONS[0], show_default=True,
              help="Network arithmetic: strict fp32, or on CUDA tf32x3 (split TF32, fp32-grade: FID within "
                   "1e-6 when emulated) or the faster tf32 / bf16 (scores shift).")
@click.option("--pr-distances", type=click.Choice(list(ADM_DISTANCES)), default=ADM_DEFAULT_DISTANCES,
              show_default=True,
              help="Arithmetic of precision/recall's squared distances: float16 emulates ADM's GPU step (its "
                   "rounding ties raise both scores a little); float32 gives the exact memberships.")
@click.option("--means", type=click.Choice(list(MEANS)), default=ADM_DEFAULT_MEANS, show_default=True,
              help="How FID's and sFID's means are taken: float32 as the evaluator does (a float32 sum of the "
                   "features in file order); float64 gives fidkit's own statistics, the digits of "
                   "`fidkit compute`.")
@click.option("--allow-mismatch", is_flag=True, help="Use statistics files made with other weights.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def adm_cmd(ref, sample, pr_distances, means, allow_mismatch, as_json, **run):
    """The table of guided-diffusion's evaluator (ADM): Inception Score, FID, sFID, precision, recall.

    \b
    REF and SAMPLE: batches (.npz whose arr_0 holds uint8 NHWC images, or .npy), image folders,
    or statistics files. A reference batch's mu/sigma/mu_s/sigma_s are used for FID and sFID,
    and its arr_0 still feeds precision/recall, as in the original; a file of `fidkit stats --features`
    feeds them from its kept features. Protocol ttur.
    """
    r = adm_evaluate(ref, sample, distances=pr_distances, means=means, allow_mismatch=allow_mismatch, **run)
    if as_json:
        click.echo(json.dumps(r.as_dict()))
        return

    def fmt(v):
        return "null" if v is None else repr(float(v))

    click.echo(f"Inception Score: {fmt(r.inception_score)}")
    click.echo(f"FID: {fmt(r.fid)}")
    click.echo(f"sFID: {fmt(r.sfid)}")
    click.echo(f"Precision: {fmt(r.precision)}")
    click.echo(f"Recall: {fmt(r.recall)}")
    used = ", ".join(f"{k} {v}" for k, v in r.ref_statistics.items())
    if "file" in r.sample_statistics.values():  # a statistics file as SAMPLE: say what it served
        used += "; sample statistics: " + ", ".join(f"{k} {v}" for k, v in r.sample_statistics.items())
    click.echo(f"({r.n_ref} reference, {r.n_sample} sample images; reference statistics: {used}; "
               f"{r.seconds:.1f} s)", err=True)


@cli.command("is")
@click.argument("source")
@_run_options(inception_only=True)
@click.option("--splits", type=click.IntRange(min=1), default=10, show_default=True, help="Number of splits.")
@click.option("--seed", type=int, default=2020, show_default=True, help="Seed of the shuffle before splitting.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def is_cmd(source, protocol, splits, seed, as_json, **run):
    """Inception Score of an image folder (needs weights with the 1008-way classifier)."""
    if _is_stats_path(source):
        raise FidkitError(f"the Inception Score needs the images, which a statistics file does not keep "
                          f"({source}); give the image folder")
    m = inception_score(source, protocol, splits=splits, seed=seed, **run)
    if as_json:
        click.echo(json.dumps({"isc_mean": m.mean, "isc_std": m.std, "splits": splits,
                               "protocol": protocol or "ttur"}))
    else:
        click.echo(f"isc_mean: {m.mean:.6f}\nisc_std: {m.std:.6f}")


@cli.command("weights")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, envvar="FIDKIT_WEIGHTS",
              help="A weights file to inspect instead of the default resolution.")
def weights_cmd(weights):
    """Find (and fetch, once) the Inception weights; print where they are and their digest."""
    w = load_weights(weights)
    click.echo(json.dumps({"origin": w.origin, "path": w.path, "digest": w.digest,
                           "has_classifier": w.has_classifier}))


def main(argv=None) -> None:
    """The ``fidkit`` command. Under torchrun (``WORLD_SIZE`` > 1), rank 0 runs it and the other
    ranks read their blocks of its sources (:mod:`fidkit.distributed`)."""
    from . import distributed

    if distributed.launched():
        distributed.run_command(lambda: _main(argv))
    else:
        _main(argv)


def _main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    warnings.showwarning = _show_warning
    try:
        # the command is invoked directly, not through cli.main(): that turns Ctrl-C into a blank
        # line on stderr and click's Abort, before the handler below could say what it means
        with cli.make_context("fidkit", list(argv)) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Abort:
        print("fidkit: interrupted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        if debug:
            raise
        print("fidkit: interrupted; no output was written", file=sys.stderr)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:  # `fidkit` alone: its help, as click shows it
        e.show()
        sys.exit(e.exit_code)
    except BrokenPipeError:  # stdout's reader left (`fidkit ... | head`): nothing more to say
        sys.stdout = open(os.devnull, "w")
        sys.exit(1)
    except click.UsageError as e:  # one line too, with where to read the usage
        where = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
        print(f"fidkit: error: {e.format_message()}{where}", file=sys.stderr)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        print(f"fidkit: error: {e.format_message()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except FidkitError as e:
        if debug:
            raise
        print(f"fidkit: error: {e}", file=sys.stderr)
        sys.exit(1)
    except MemoryError:
        if debug:
            raise
        print("fidkit: error: out of memory; lower --batch-size or --workers", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - one line for users, the traceback with --debug
        if debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"fidkit: error: unexpected {type(e).__name__}: {first} (run with --debug for the traceback)",
              file=sys.stderr)
        sys.exit(1)
