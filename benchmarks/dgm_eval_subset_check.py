"""Whether ``fidkit compute/stats --nsample N --nsample-seed S`` reads the images that dgm-eval's
``--nsample N --seed S`` reads, by running dgm-eval's own ``DataLoader``.

    python benchmarks/dgm_eval_subset_check.py DGM_EVAL_CHECKOUT [--files 40] [--n 17] [--seeds 13579,0,4294967295]

Writes ``--files`` small images into folders of three layouts, then for each layout and seed
compares the relative paths that the checkout's ``dgm_eval.dataloaders.DataLoader(path,
nsample=n, seed=seed)`` keeps (``data_set.dataset.files[i]`` for ``i`` in ``data_set.indices``)
with the files of :func:`fidkit.sources.dgm_eval_subset`:

- ``flat``: every image at the top level, png, PNG and jpg;
- ``classes``: no top-level image, one level of class folders (``a``, ``a-b``, ``b``: ``Path``
  order puts ``a/`` before ``a-b/``, fidkit's path strings after, so the pick must follow
  dgm-eval's order);
- ``sample batch``: an ADM ``.npz`` (``arr_0``), compared by row index.

Also checks :func:`fidkit.sources.dgm_eval_listing` against the loader's file list, and that a
folder dgm-eval reads otherwise (a nested folder under the top-level images) gets fidkit's note.
dgm-eval's ``dataloaders`` module is loaded alone from the checkout (its package ``__init__`` is
not run); ``torchvision``, which it imports at module level and which does not import beside
this torch, is stubbed (nothing here uses it: the transform is the identity). Prints one line
per case and exits 1 on a difference.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load_dataloaders(checkout: Path):
    tv = types.ModuleType("torchvision")  # never the real one, which fails to import beside this torch
    tv.transforms = types.SimpleNamespace(ToTensor=lambda: (lambda x: x))
    tv.datasets = types.SimpleNamespace()
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tv.transforms
    spec = importlib.util.spec_from_file_location("dgm_eval_dataloaders", checkout / "dgm_eval" / "dataloaders.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _module(name: str, path: Path):
    """A module of the checkout loaded from its file (its package's imports pull in every model)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _compute_scores(checkout: Path, **functions):
    """dgm-eval's ``compute_scores``, its source taken from its ``__main__.py`` (whose imports pull
    in every model) and run beside ``functions``, the metric functions of its ``metrics/`` it calls
    (e.g. ``compute_mmd``), given by the caller."""
    import ast

    src = (checkout / "dgm_eval" / "__main__.py").read_text()
    fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "compute_scores")
    ns = {"np": np, "sys": sys, **functions}
    exec(compile(ast.Module([fn], []), "dgm_eval/__main__.py", "exec"), ns)
    return ns["compute_scores"]


def main() -> int:
    from PIL import Image

    from fidkit.sources import as_images, dgm_eval_listing, dgm_eval_subset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", type=Path, help="a clone of layer6ai-labs/dgm-eval")
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--n", type=int, default=17)
    ap.add_argument("--seeds", default="13579,0,4294967295")
    args = ap.parse_args()
    dl = _load_dataloaders(args.checkout.resolve())

    def theirs(path, seed, n=args.n):
        loader = dl.DataLoader(str(path), nsample=n, seed=seed, transform=lambda x: x, num_workers=0)
        ds = loader.data_set
        if hasattr(ds, "dataset") and getattr(ds.dataset, "files", None) is not None:
            return [Path(ds.dataset.files[i]).relative_to(path).as_posix() for i in ds.indices], ds.dataset.files
        return [int(i) for i in ds.indices], None

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        flat, classes, nested = Path(tmp, "flat"), Path(tmp, "classes"), Path(tmp, "nested")
        for i in range(args.files):
            img = Image.fromarray(np.full((8, 8, 3), i, np.uint8))
            ext = ("png", "PNG", "jpg")[i % 3]
            flat.mkdir(exist_ok=True)
            img.save(flat / f"im_{i:03d}.{ext}", format="PNG" if ext != "jpg" else "JPEG")
            sub = classes / ("a", "a-b", "b")[i % 3]
            sub.mkdir(parents=True, exist_ok=True)
            img.save(sub / f"im_{i:03d}.png")
        batch = Path(tmp, "batch.npz")
        np.savez(batch, arr_0=np.arange(args.files, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3),
                                                                                                np.uint8))
        for kind, path in (("flat", flat), ("classes", classes), ("sample batch", batch)):
            for seed in (int(s) for s in args.seeds.split(",")):
                want, files = theirs(path, seed)
                picked, note = dgm_eval_subset(as_images(str(path)), args.n, seed, str(path))
                if files is None:
                    got = [int(i) for i in picked.indices]
                else:
                    got = sorted(Path(picked.path(i)).relative_to(path).as_posix() for i in range(len(picked)))
                    want = sorted(want)
                    listed = dgm_eval_listing(path) == [Path(f).relative_to(path).as_posix() for f in files]
                    ok &= listed
                same = got == want and note is None
                ok &= same
                print(f"{kind}, seed {seed}: {len(got)} of {args.files}, {'same' if same else 'DIFFERENT'}"
                      f"{'' if files is None else ', listing ' + ('same' if listed else 'DIFFERENT')} "
                      f"(first: {got[:3]})")
        # a folder dgm-eval reads otherwise: top-level images and a nested folder it does not read
        for i in range(6):
            (nested / "deeper").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(nested / ("deeper" if i % 2 else "") / f"{i}.png")
        _, note = dgm_eval_subset(as_images(str(nested)), 2, 13579, str(nested))
        want, _ = theirs(nested, 13579, 2)
        noted = note is not None and "dgm-eval would read 3 files where fidkit reads 6" in note and len(want) == 2
        ok &= noted
        print(f"nested folder: {'noted' if noted else 'NOT NOTED'} ({note})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
