"""Whether ``fidkit compute --metrics kd-dgm-eval,prdc-dgm-eval,fls-dgm-eval --nsample N`` gives
dgm-eval's ``kd``, ``prdc``, ``fls`` and ``fls_overfit`` values bit for bit, by running dgm-eval's
own code on the same features.

    PYTHONPATH=SKLEARN_AND_TQDM python benchmarks/dgm_eval_kd_prdc_check.py DGM_EVAL_CHECKOUT [--dim 64]

dgm-eval's side, from the checkout: its ``DataLoader`` reads a real folder, then a generated
one (and, for ``fls``, its ``--test_path`` folder between them, as its ``main`` reads them),
each cut by ``--nsample`` (seeding numpy's global generator as it does), and its
``__main__.compute_scores`` (the function's own source, executed with its ``metrics/mmd.py``,
``metrics/prdc.py`` and ``metrics/fls.py``, which need scikit-learn and tqdm; ``fls.py`` with its
``.cuda()`` calls made the CPU, its only change) computes ``kd``, ``prdc`` and ``fls`` from the
features of the images it kept, in its row order, as float64. fidkit's side: the cut and
row order of :func:`fidkit.sources.dgm_eval_subset` and the draws and arithmetic of
``fidkit.api._dgm_eval_drawn``, the function ``compare`` calls. The features stand in for an
encoder's (a fixed float32 vector per image, clustered so that the balls overlap): the network
pass is not what is checked. ``torchvision``, which dgm-eval's loader imports, is stubbed as in
``dgm_eval_subset_check.py``.

Cases: both sets cut (the generated set's cut seeds the draws), only the real set cut, each
with ``kd`` before ``prdc`` or ``prdc`` alone, ``--reduced_n`` below and above the sets, a
generated set of class folders whose ``Path`` order is not fidkit's, and neither set cut with
equal sets of at most ``reduced_n`` (dgm-eval's draws are then unseeded but only permute); for
``fls``, a test set whose cut seeds the draws (the generated set not cut) after ``kd``'s and
``prdc``'s, and a generated set whose cut does; and a test set read with ``kd`` and ``prdc`` alone
(dgm-eval reads it whatever its metrics), whose cut seeds their draws: fidkit counts it; and
``realism`` (its ``--metrics prdc,realism``: every fake row kept, one score each), alone and
with ``fls``'s draws after it; and ``ct``, ``ct_test`` and ``ct_modified`` (its
``metrics/ct.py``: scikit-learn's PCA and k-means drawing from the global generator between
``prdc``'s draws and ``fls``'s), in ``--ct-dim`` dimensions so that its 64-component PCA runs.
Prints one line per case and exits 1 on a difference.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    from PIL import Image

    from dgm_eval_subset_check import _compute_scores, _load_dataloaders, _module
    from fidkit.api import _dgm_eval_drawn
    from fidkit.sources import as_images, dgm_eval_subset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", type=Path, help="a clone of layer6ai-labs/dgm-eval")
    ap.add_argument("--dim", type=int, default=64, help="feature dimension")
    ap.add_argument("--ct-dim", type=int, default=96, help="feature dimension of the ct cases (above 64: its PCA)")
    args = ap.parse_args()
    checkout = args.checkout.resolve()
    dl = _load_dataloaders(checkout)
    metrics = checkout / "dgm_eval" / "metrics"
    fls_src = (metrics / "fls.py").read_text().replace(".cuda()", "").replace('device="cuda"', 'device="cpu"')
    fls = {}
    exec(compile(fls_src, str(metrics / "fls.py"), "exec"), fls)
    ct = _module("dgm_eval_ct", metrics / "ct.py")
    compute_scores = _compute_scores(checkout,
                                     compute_mmd=_module("dgm_eval_mmd", metrics / "mmd.py").compute_mmd,
                                     compute_prdc=_module("dgm_eval_prdc", metrics / "prdc.py").compute_prdc,
                                     compute_fls=fls["compute_fls"], compute_fls_overfit=fls["compute_fls_overfit"],
                                     **{name: getattr(ct, name) for name in ("compute_CTscore", "compute_CTscore_mode",
                                                                             "compute_CTscore_mem")})
    table = np.random.default_rng(7)
    centres = table.normal(size=(6, args.dim)).astype(np.float32) * 1.5
    centres_ct = np.random.default_rng(8).normal(size=(6, args.ct_dim)).astype(np.float32) * 1.5
    fidkit_names = {"ct_test": "ct-test-dgm-eval", "ct_modified": "ct-modified-dgm-eval", "fls_overfit": "fls-dgm-eval"}

    def write(folder: Path, n: int, classes: bool, base: int) -> dict:
        """n tiny images, the i-th holding its number; returns path -> its feature (float32)."""
        feats = {}
        for i in range(n):
            sub = folder / ("a", "a-b", "b")[i % 3] if classes else folder
            sub.mkdir(parents=True, exist_ok=True)
            p = sub / f"im_{i:03d}.png"
            Image.fromarray(np.full((4, 4, 3), i % 256, np.uint8)).save(p)
            c = centres_ct if ct_case else centres
            f = c[(base + i) % 6] + np.random.default_rng(base + i).normal(size=c.shape[1]).astype(np.float32)
            feats[str(p)] = f.astype(np.float32)
        return feats

    cases = [  # name, real images, generated images, generated in class folders, nsample, reduced_n, metrics,
        # test images (fls)
        ("both cut, kd then prdc", 130, 120, False, 100, 10000, ["kd", "prdc"], 0),
        ("both cut, prdc alone, reduced_n 60", 130, 120, False, 100, 60, ["prdc"], 0),
        ("real cut only, kd then prdc, reduced_n 50", 130, 80, False, 100, 50, ["kd", "prdc"], 0),
        ("both cut, class folders, kd then prdc, reduced_n 70", 130, 125, True, 100, 70, ["kd", "prdc"], 0),
        ("real cut only, class folders, prdc alone, reduced_n 40", 110, 90, True, 100, 40, ["prdc"], 0),
        ("neither cut, equal sets, prdc alone", 90, 90, True, 100, 10000, ["prdc"], 0),
        ("test cut, fake not, kd, prdc then fls, reduced_n 30", 130, 80, False, 100, 30,
         ["kd", "prdc", "fls", "fls_overfit"], 120),
        ("all cut, fls alone", 130, 110, False, 100, 10000, ["fls", "fls_overfit"], 105),
        ("test cut, fake not, kd then prdc, no fls, reduced_n 30", 130, 80, False, 100, 30, ["kd", "prdc"], 120),
        ("both cut, kd, prdc with realism, reduced_n 40", 130, 120, False, 100, 40, ["kd", "prdc", "realism"], 0),
        ("test cut, fake not, kd, prdc with realism, then fls, reduced_n 30", 130, 80, True, 100, 30,
         ["kd", "prdc", "realism", "fls", "fls_overfit"], 120),
        ("real and fake cut, kd, prdc, ct, ct_test, ct_modified, then fls, reduced_n 30", 170, 160, False, 150, 30,
         ["kd", "prdc", "ct", "ct_test", "ct_modified", "fls", "fls_overfit"], 140),
        ("test cut, fake not, ct alone", 130, 120, False, 150, 10000, ["ct"], 160),
        ("test cut, fake not, prdc, ct_test, ct_modified", 130, 120, True, 150, 40, ["prdc", "ct_test", "ct_modified"],
         160),
    ]
    ok = True
    for name, n_a, n_b, classes, nsample, reduced_n, metrics, n_t in cases:
        ct_case = any(m.startswith("ct") for m in metrics)
        reads_t = "fls" in metrics or ct_case  # the test set's features, not its count alone
        with tempfile.TemporaryDirectory() as tmp:
            fa = write(Path(tmp, "real"), n_a, False, 0)
            fb = write(Path(tmp, "fake"), n_b, classes, 1000)
            ft = write(Path(tmp, "test"), n_t, False, 2000) if n_t else None
            np.random.seed(12345)  # whatever state the process had: dgm-eval's cuts re-seed it
            real = dl.DataLoader(str(Path(tmp, "real")), nsample=nsample, transform=lambda x: x, num_workers=0)
            test = (dl.DataLoader(str(Path(tmp, "test")), nsample=nsample, transform=lambda x: x, num_workers=0)
                    if n_t else None)  # main() reads it after the real set, before the generated one
            fake = dl.DataLoader(str(Path(tmp, "fake")), nsample=nsample, transform=lambda x: x, num_workers=0)

            def rows(loader, feats):
                ds = loader.data_set
                files = [ds.dataset.files[i] for i in ds.indices] if hasattr(ds, "indices") else list(ds.files)
                return np.stack([feats[str(f)] for f in files]).astype(np.float64)  # its reps: float64

            reps = [rows(real, fa), rows(fake, fb)]
            try:
                theirs, _ = compute_scores(argparse.Namespace(metrics=metrics, reduced_n=reduced_n, nearest_k=5),
                                           reps, rows(test, ft) if n_t else None, None)
            except ValueError as e:  # its ct.py assigns a (1,) array to an array element: numpy 2.4 refuses
                if not ct_case:
                    raise
                print(f"{name}: not compared: dgm-eval's own code stops under numpy {np.__version__} ({e})")
                continue
            ours_rows, info = [], {}
            for side, folder, feats, total in (("a", "real", fa, n_a), ("b", "fake", fb, n_b),
                                               ("t", "test", ft, n_t)):
                if not total:
                    continue
                picked, note = dgm_eval_subset(as_images(str(Path(tmp, folder))), nsample, 13579,
                                               str(Path(tmp, folder)))
                assert note is None, note
                ours_rows.append(np.stack([feats[picked.path(i)] for i in range(len(picked))]))
                if side == "b":
                    picked_b = picked
                info[f"nsample_from_{side}"] = total
            wanted = tuple(dict.fromkeys(fidkit_names.get(m, f"{m}-dgm-eval") for m in metrics))
            ours = _dgm_eval_drawn(wanted, ours_rows[0], ours_rows[1], info, nsample, 13579, 5, reduced_n,
                                   ft=ours_rows[2] if reads_t else None)  # else counted only
            keys = (["kd_value", "kd_variance"] if "kd" in metrics else []) + \
                (["precision", "recall", "density", "coverage"] if "prdc" in metrics else []) + \
                (["fls", "fls_overfit"] if "fls" in metrics else []) + \
                [m for m in ("ct", "ct_test", "ct_modified") if m in metrics]
            same = all(float(theirs[k]) == ours[f"dgm_eval_{k}"] for k in keys)
            if "realism" in metrics:  # one score per fake row, in its rows
                same &= np.array_equal(np.asarray(theirs["realism"], np.float64), ours["dgm_eval_realism"],
                                       equal_nan=True)
            ok &= same
            # controls, to show the comparison can fail: prdc without kd's 200 draws before it, and
            # the generated rows in fidkit's path order instead of dgm-eval's
            controls = []
            pk = ["precision", "recall", "density", "coverage"]
            if metrics[:2] == ["kd", "prdc"]:
                alone = _dgm_eval_drawn(("prdc-dgm-eval",) + (("realism-dgm-eval",) if "realism" in metrics else ()),
                                        ours_rows[0], ours_rows[1], info, nsample, 13579, 5, reduced_n)
                controls.append(("without kd's draws", any(alone[f"dgm_eval_{k}"] != float(theirs[k]) for k in pk)))
            if "realism" in metrics:  # prdc as without realism: its fake rows drawn
                drawn = _dgm_eval_drawn(tuple(m for m in wanted if m != "realism-dgm-eval"), ours_rows[0], ours_rows[1],
                                        info, nsample, 13579, 5, reduced_n, ft=ours_rows[2] if reads_t else None)
                controls.append(("with the fake rows drawn", any(drawn[f"dgm_eval_{k}"] != float(theirs[k])
                                                                   for k in pk)))
            if ct_case:  # the CT variants from a generator in another state: does their value hang on the draws?
                other = dict(info, nsample_from_a=nsample + 1, nsample_from_b=nsample + 1, nsample_from_t=nsample + 1)
                moved = _dgm_eval_drawn(wanted, ours_rows[0], ours_rows[1], other, nsample, 13579, 5, reduced_n,
                                        ft=ours_rows[2])
                cts = [m for m in ("ct", "ct_test", "ct_modified") if m in metrics]
                controls.append(("of ct from other draws", any(moved[f"dgm_eval_{k}"] != float(theirs[k]) for k in cts)))
            if n_t and not reads_t:  # the test set's count left out, as if it had not been given
                untold = {k: v for k, v in info.items() if k != "nsample_from_t"}
                blind = _dgm_eval_drawn(wanted, ours_rows[0], ours_rows[1], untold, nsample, 13579, 5, reduced_n)
                controls.append(("without the test set's cut", any(blind[f"dgm_eval_{k}"] != float(theirs[k])
                                                                     for k in keys)))
            if classes:
                as_strings = np.argsort([picked_b.path(i) for i in range(len(picked_b))], kind="stable")
                shuffled = _dgm_eval_drawn(wanted, ours_rows[0], ours_rows[1][as_strings], info, nsample, 13579, 5,
                                           reduced_n, ft=ours_rows[2] if reads_t else None)
                controls.append(("in fidkit's row order", any(shuffled[f"dgm_eval_{k}"] != float(theirs[k])
                                                                for k in keys)))
            told = ([f"realism of {len(theirs['realism'])} rows, median {np.median(theirs['realism']):.6g}"]
                    if "realism" in metrics else [])
            print(f"{name}: {'same' if same else 'DIFFERENT'} ({ours['dgm_eval_draws']}; "
                  + ", ".join(told + [f"{k} {float(theirs[k]):.6g}" + ("" if float(theirs[k]) == ours[f"dgm_eval_{k}"]
                                                                else f" vs {ours[f'dgm_eval_{k}']:.6g}")
                                    for k in keys]) + ")"
                  + "".join(f"; control {c}: {'differs' if d else 'the same'}" for c, d in controls))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
