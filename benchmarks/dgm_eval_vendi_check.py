"""Whether ``fidkit compute --metrics vendi-dgm-eval`` gives dgm-eval's ``vendi`` (its ``mean vendi
per class`` and the per-class scores it saves), by running dgm-eval's own code on the same features.

    PYTHONPATH=SKLEARN_AND_TQDM python benchmarks/dgm_eval_vendi_check.py DGM_EVAL_CHECKOUT [--dim 64]

dgm-eval's side, from the checkout: its ``DataLoader`` reads a generated folder of class folders
(cut by ``--nsample`` where a case says so) and gives its ``labels``; its
``__main__.compute_scores`` (the function's own source, run with ``metrics/vendi.py``'s
``compute_per_class_vendi_scores``, which needs scikit-learn and tqdm) computes ``vendi`` from the
features of the images it kept, in its row order, as float64. fidkit's side: the cut of
:func:`fidkit.sources.dgm_eval_subset`, the labels of :func:`fidkit.sources.dgm_eval_row_labels`
and ``fidkit.api._dgm_eval_vendi``, the function ``compare`` calls. The features stand in for an
encoder's (a float32 vector per image, drawn around one centre per class folder, so that the
per-class scores depend on which images share a label): the network pass is not what is
checked. ``torchvision``, which dgm-eval's loader imports, is stubbed as in
``dgm_eval_subset_check.py``.

Cases: named class folders (dgm-eval's labels are the folders), numbered class folders 0–11
(its labels, numbered in numeric order, fall on rows read in path order: they mix folders),
each with and without a ``--nsample`` cut, and the same numbered folders with fidkit's rows in
its own listing order (the labels follow the files, so the scores agree to rounding, not bit for
bit). Control: the folders' own labels instead of dgm-eval's, which must differ where dgm-eval's
mix folders. A folder with a stray top-level file (a label without images) is checked to stop
both. Prints one line per case and exits 1 on a difference.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    from PIL import Image

    from dgm_eval_subset_check import _compute_scores, _load_dataloaders, _module
    from fidkit.api import _dgm_eval_vendi
    from fidkit.errors import FidkitWarning
    from fidkit.sources import as_images, dgm_eval_row_labels, dgm_eval_subset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", type=Path, help="a clone of layer6ai-labs/dgm-eval")
    ap.add_argument("--dim", type=int, default=64, help="feature dimension")
    args = ap.parse_args()
    checkout = args.checkout.resolve()
    dl = _load_dataloaders(checkout)
    vendi = _module("dgm_eval_vendi", checkout / "dgm_eval" / "metrics" / "vendi.py")
    compute_scores = _compute_scores(checkout, compute_per_class_vendi_scores=vendi.compute_per_class_vendi_scores)

    def write(folder: Path, names: list, per: int) -> dict:
        """``per`` + (k mod 3) tiny images in the k-th class folder; returns path -> its feature."""
        feats = {}
        for k, name in enumerate(names):
            centre = np.random.default_rng(100 + k).normal(size=args.dim) * 2.0
            sub = folder / name
            sub.mkdir(parents=True)
            for j in range(per + k % 3):
                p = sub / f"im_{j:03d}.png"
                Image.fromarray(np.full((4, 4, 3), (k * 7 + j) % 256, np.uint8)).save(p)
                f = centre + np.random.default_rng(1000 * k + j).normal(size=args.dim)
                feats[str(p)] = f.astype(np.float32)
        return feats

    numbered = [str(k) for k in range(12)]
    named = ["apple", "banana", "cherry", "date", "elder"]
    cases = [  # name, class folders, images per class (at least), nsample, fidkit's rows in dgm-eval's order
        ("named class folders", named, 6, None, True),
        ("named class folders, cut to 25", named, 6, 25, True),
        ("numbered class folders 0-11", numbered, 5, None, True),
        ("numbered class folders 0-11, cut to 60", numbered, 5, 60, True),
        ("numbered class folders 0-11, fidkit's listing order", numbered, 5, None, False),
    ]
    ok = True
    for name, classes, per, nsample, their_order in cases:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp, "fake")
            feats = write(folder, classes, per)
            loader = dl.DataLoader(str(folder), nsample=nsample or -1, transform=lambda x: x, num_workers=0)
            ds = loader.data_set
            files = [ds.dataset.files[i] for i in ds.indices] if hasattr(ds, "indices") else list(ds.files)
            reps = np.stack([feats[str(f)] for f in files]).astype(np.float64)  # its reps: float64
            _, theirs = compute_scores(argparse.Namespace(metrics=["vendi"]), [reps, reps], None, loader.labels)
            images = as_images(str(folder))
            if their_order:
                images, note = dgm_eval_subset(images, nsample or len(images), 13579, str(folder))
                assert note is None, note
            rows = np.stack([feats[images.path(i)] for i in range(len(images))])
            labels, follows = dgm_eval_row_labels(str(folder), images)
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                ours = _dgm_eval_vendi(rows, labels, follows, images, [])
            warned = any(issubclass(w.category, FidkitWarning) for w in said)
            mine = np.array(ours["dgm_eval_vendi_per_class"])
            exact = their_order
            same = (np.array_equal(mine, theirs) and ours["dgm_eval_vendi_per_class_mean"] == float(theirs.mean())
                    if exact else np.allclose(mine, theirs, rtol=1e-12, atol=0))
            ok &= same and warned == (not follows)
            # control: the folders' own classes, which dgm-eval's labels are not where they mix folders
            own = np.array([classes.index(Path(images.path(i)).parent.name) for i in range(len(images))])
            control = not np.allclose(_dgm_eval_vendi(rows, own, True, images, [])["dgm_eval_vendi_per_class"],
                                      theirs, rtol=1e-9, atol=0)
            print(f"{name}: {'same' if same else 'DIFFERENT'}{' bit for bit' if same and exact else ''} "
                  f"(mean vendi per class {float(theirs.mean()):.12g}"
                  + ("" if same else f" vs {ours['dgm_eval_vendi_per_class_mean']:.12g}")
                  + f"; {len(theirs)} classes; labels {ours['dgm_eval_vendi_labels']}"
                  + f"{', warned' if warned else ''}; control with the folders' own labels: "
                  + f"{'differs' if control else 'the same'})")
            if follows == control:  # the control must differ exactly where dgm-eval's labels mix folders
                ok = False
                print(f"  the control contradicts the labels' own verdict (follows {follows})")
    with tempfile.TemporaryDirectory() as tmp:  # a stray file at the top: a label with no images
        folder = Path(tmp, "fake")
        feats = write(folder, named[:3], 4)
        (folder / "a-note.txt").write_text("not an image")
        loader = dl.DataLoader(str(folder), nsample=-1, transform=lambda x: x, num_workers=0)
        reps = np.stack([feats[str(f)] for f in loader.data_set.files]).astype(np.float64)
        try:
            compute_scores(argparse.Namespace(metrics=["vendi"]), [reps, reps], None, loader.labels)
            stops = "runs"
        except ValueError as e:
            stops = f"stops ({str(e).splitlines()[0][:60]})"
        labels, _ = dgm_eval_row_labels(str(folder), as_images(str(folder)))
        gap = sorted(set(range(len(set(labels.tolist()))))) != sorted(set(labels.tolist()))
        print(f"stray top-level file: dgm-eval {stops}; fidkit's labels {'leave a gap (refused before the pass)' if gap else 'have no gap'}")
        ok &= stops != "runs" and gap
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
