"""What dgm-eval's FLS says on real Inception features: fresh images against memorised ones.

    python benchmarks/fls_memorisation.py FEATURES.npy [--out RESULT.json]

FEATURES: (N, D) per-image features of one real image set, N ≥ 4r (e.g. the pool3 features
``fidkit-ttur`` caches for the first 2048 Fashion-MNIST test images, r = 500). The rows are
split, in a seeded shuffle, into a train set of 2r, a test set of r and a held-out set of r,
and three "generated" sets of r rows are scored with ``fls-dgm-eval``'s arithmetic
(:func:`fidkit.scores.dgm_eval_fls_sets` with ``RandomState(13579)``, then
:func:`fidkit.scores.dgm_eval_fls`): held-out real images (a perfect generator that memorised
nothing), copies of train images (a generator that memorised), and half of each. Prints one
JSON line per set; ``--out`` writes them with the command, git commit, machine and date.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from fidkit import scores as S  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    x = np.load(args.features).astype(np.float64)
    r = len(x) // 4
    order = np.random.RandomState(0).permutation(len(x))
    train, test, held = x[order[:2 * r]], x[order[2 * r:3 * r]], x[order[3 * r:4 * r]]
    gens = {"held-out real images": held, "copies of train images": train[:r],
            "half copies, half held-out": np.concatenate([train[:r // 2], held[:r - r // 2]])}
    rows = []
    for name, gen in gens.items():
        t = time.perf_counter()
        out = S.dgm_eval_fls(*S.dgm_eval_fls_sets(train, test, gen, np.random.RandomState(13579)))
        row = {"generated": name, "r": out.reduced_n, "dim": x.shape[1], "fls": out.fls,
               "fls_overfit": out.fls_overfit, "seconds": round(time.perf_counter() - t, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        from _machine import provenance
        Path(args.out).write_text(json.dumps({**provenance("fls_memorisation.py"), "features": args.features,
                                              "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
