"""The ``fidkit`` command line: ``compute``, ``stats`` and ``weights``.

Errors are one line on stderr (``fidkit: error: …``) with exit status 1 for data errors,
2 for usage errors and 130 when interrupted; ``--debug`` shows the traceback instead.
Results go to stdout; progress, notes and warnings to stderr.
"""

from __future__ import annotations

import json
import sys
import warnings

import click

from . import __version__
from .api import compare, compute_stats, load_weights
from .errors import FidkitError
from .preprocess import PROTOCOLS
from .stats import check_writable


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"fidkit: warning: {message}", file=sys.stderr, flush=True)


def _run_options(f):
    """Options shared by the commands that run the network."""
    opts = [
        click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default="ttur", show_default=True,
                     help="Resize and scaling of the reference implementation to reproduce."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Images per network batch [default: 32 on the CPU, 200 on CUDA]."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--workers", type=click.IntRange(min=0), default=None,
                     help="Decoding worker processes [default: cores − 1, at least 1]."),
        click.option("--weights", type=click.Path(dir_okay=False), default=None, envvar="FIDKIT_WEIGHTS",
                     help="Inception weights file (fidkit .npz, pytorch-fid .pth or NVIDIA TorchScript)."),
        click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True,
                     help="Network arithmetic: strict fp32, or on CUDA the faster tf32 / bf16 (scores shift)."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar on stderr [default: when stderr is a terminal]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _kw(batch_size, device, workers, weights, precision, progress):
    return {"batch_size": batch_size, "device": device, "workers": workers, "weights": weights,
            "precision": precision, "progress": progress}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fidkit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug):
    """FID and companions, reproducing the published reference implementations."""


@cli.command()
@click.argument("a")
@click.argument("b")
@_run_options
@click.option("--allow-mismatch", is_flag=True, help="Compare statistics made with different protocols or weights.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def compute(a, b, protocol, batch_size, device, workers, weights, precision, progress, allow_mismatch, as_json):
    """FID between A and B, each an image folder or a statistics .npz."""
    r = compare(a, b, protocol, allow_mismatch=allow_mismatch,
                **_kw(batch_size, device, workers, weights, precision, progress))
    if as_json:
        click.echo(json.dumps(r.as_dict()))
    else:
        click.echo(f"FID: {r.fid:.6f}  (protocol {r.protocol}, {r.n_a} vs {r.n_b} images, "
                   f"{r.device} {r.precision}, {r.seconds:.1f} s)")
        if r.frechet.negative_eigenvalue_mass > 0:
            click.echo(f"note: clamped negative eigenvalue mass {r.frechet.negative_eigenvalue_mass:.3g} "
                       f"(rounding in the matrix square root)", err=True)


@cli.command()
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .npz path.")
@_run_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def stats(source, output, protocol, batch_size, device, workers, weights, precision, progress, as_json):
    """Compute the statistics of an image folder once, to compare against many times."""
    if str(source).lower().endswith(".npz"):
        raise FidkitError(f"{source} is already a statistics file; give an image folder")
    check_writable(output)  # before the long part, not after it
    st = compute_stats(source, protocol, **_kw(batch_size, device, workers, weights, precision, progress))
    path = st.save(output)
    info = {"path": str(path), "n": st.n, "protocol": st.protocol, "weights_digest": st.weights_digest}
    click.echo(json.dumps(info) if as_json else f"wrote {path} ({st.n} images, protocol {st.protocol})")


@cli.command("weights")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, envvar="FIDKIT_WEIGHTS",
              help="A weights file to inspect instead of the default resolution.")
def weights_cmd(weights):
    """Find (and fetch, once) the Inception weights; print where they are and their digest."""
    w = load_weights(weights)
    click.echo(json.dumps({"origin": w.origin, "path": w.path, "digest": w.digest,
                           "has_classifier": w.has_classifier}))


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="fidkit", standalone_mode=False)
    except click.exceptions.Abort:
        print("fidkit: interrupted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        if debug:
            raise
        print("fidkit: interrupted; no output was written", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except FidkitError as e:
        if debug:
            raise
        print(f"fidkit: error: {e}", file=sys.stderr)
        sys.exit(1)
    except MemoryError:
        print("fidkit: error: out of memory; lower --batch-size or --workers", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - one line for users, the traceback with --debug
        if debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"fidkit: error: unexpected {type(e).__name__}: {first} (run with --debug for the traceback)",
              file=sys.stderr)
        sys.exit(1)
