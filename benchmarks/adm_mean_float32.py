"""How far ADM's float32 feature mean moves its FID from fidkit's float64 statistics.

    python benchmarks/adm_mean_float32.py [--features POOL.npy|STATS.npz] [--n 10000,50000]
                                          [--seeds 0,1,2] [--batch 16] [--perturb 1e-7,1e-6]
                                          [--out benchmarks/results/adm_mean_float32.json]

guided-diffusion's evaluator takes ``mu = np.mean(activations, axis=0)`` of the float32
pool3 activations (numpy keeps float32 there, adding the rows in order) and ``np.cov`` (which
works in float64), and its ``frechet_distance`` takes ``diff = mu1 - mu2`` and
``diff.dot(diff)`` in the means' dtype. fidkit's :class:`fidkit.stats.Accumulator` folds the
same float32 rows into float64 statistics. The covariances and the trace term are then the
same arithmetic up to float64 rounding (and the matrix square root: ``sqrtm_vs_eig.py``), so
the difference between the two FIDs is the mean term's: this script measures it.

Two sets of ``n`` rows are drawn (per seed) from a pool of pool3 feature rows: rows drawn
with replacement, each entry scaled by a lognormal factor (σ 0.1); the second set's rows are
also shifted by 1% of each dimension's mean, so the FID between them is that of two close
models. The pool is ``--features`` (an ``.npy`` of (M, 2048) rows, or a statistics file kept
with ``fidkit stats --features``), else a synthetic one (gamma entries of Fashion-MNIST's
pool3 mean). Records, per n and seed: the largest |mu32 − mu64| of each set, the mean term
and FID both ways (the trace term from fidkit's :func:`fidkit.frechet.frechet_distance`),
the absolute and relative FID differences, and fidkit's Accumulator mean (fed in batches of
``--batch``) against the float64 mean, and whether its float32 mean (``float32_sum``, what
``fidkit adm`` uses) equals ``np.mean``'s bit for bit.

fidkit's features are not TF's bit for bit, so its float32 sums round like the evaluator's
only as far as the inputs agree. ``--perturb`` takes relative feature errors: for each, both
sets are perturbed entry by entry (a factor 1 + N(0, level)) and taken as "the evaluator's
features"; the row records how far fidkit's FID with float32 means and with float64 means lies
from the evaluator's arithmetic (float32 means) on the perturbed features, and how far the
float64 FIDs of the two feature sets lie apart (the part no choice of means removes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pool_of(path: str | None) -> tuple:
    """(float32 (M, 2048) rows, a description)."""
    if path is None:
        rng = np.random.default_rng(12345)
        scale = rng.gamma(2.0, 0.14, size=2048)  # per-dimension means about 0.28, Inception pool3's scale
        return rng.gamma(0.5, 2 * scale, size=(4096, 2048)).astype(np.float32), "synthetic gamma pool, 4096 rows"
    if path.endswith(".npz"):
        with np.load(path) as z:
            return np.asarray(z["features"], dtype=np.float32), f"{path} (features)"
    return np.load(path).astype(np.float32), path


def draw(pool: np.ndarray, n: int, rng: np.random.Generator, shift: np.ndarray | None) -> np.ndarray:
    x = pool[rng.integers(0, len(pool), size=n)]
    x = x * rng.lognormal(0.0, 0.1, size=x.shape).astype(np.float32)
    if shift is not None:
        x = x + shift
    return np.ascontiguousarray(x, dtype=np.float32)


def accumulator_means(x: np.ndarray, batch: int) -> tuple:
    """(float64 mean, float32 mean of ``float32_sum``) of fidkit's Accumulator fed in batches."""
    from fidkit.stats import Accumulator

    acc = Accumulator(x.shape[1], float32_sum=True)
    for lo in range(0, len(x), batch):
        acc.update(torch.from_numpy(x[lo:lo + batch]))
    return acc.mean.numpy().copy(), acc.mean_float32()


def fids(a: np.ndarray, b: np.ndarray) -> tuple:
    """(FID with float64 means, FID with the evaluator's float32 means) of two float32 sets."""
    from fidkit.frechet import frechet_distance

    mu32 = [np.mean(x, axis=0) for x in (a, b)]  # ADM's: float32, rows added in order
    mu64 = [x.mean(axis=0, dtype=np.float64) for x in (a, b)]
    sig = [np.cov(x, rowvar=False) for x in (a, b)]  # ADM's np.cov: float64 either way
    d32, d64 = mu32[0] - mu32[1], mu64[0] - mu64[1]
    term32, term64 = float(d32.dot(d32)), float(d64.dot(d64))
    fid64 = frechet_distance(mu64[0], sig[0], mu64[1], sig[1]).fid
    return fid64, fid64 - term64 + term32, mu32, mu64, term32, term64


def perturbed(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(x)
    for lo in range(0, len(x), 4096):  # in slices: a float64 copy of 50,000 rows would be 800 MB
        blk = x[lo:lo + 4096].astype(np.float64)
        out[lo:lo + 4096] = blk * (1.0 + rng.normal(0.0, level, size=blk.shape))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", default=None)
    ap.add_argument("--n", default="10000,50000")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--perturb", default="1e-7,1e-6", help="relative feature errors to try ('' for none)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adm_mean_float32.json"))
    args = ap.parse_args()
    pool, about = pool_of(args.features)
    shift = (0.01 * pool.mean(axis=0)).astype(np.float32)
    rows = []
    for n in (int(s) for s in args.n.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            rng = np.random.default_rng(seed)
            a, b = draw(pool, n, rng, None), draw(pool, n, rng, shift)
            fid64, fid32, mu32, mu64, term32, term64 = fids(a, b)
            acc, acc32 = accumulator_means(a, args.batch)
            perturbations = []
            for level in (float(s) for s in args.perturb.split(",") if s):
                prng = np.random.default_rng([seed, n, int(round(-np.log10(level) * 100))])
                p64, p32 = fids(perturbed(a, level, prng), perturbed(b, level, prng))[:2]
                perturbations.append({"level": level, "evaluator_fid": p32,
                                      "float32_means_error": abs(fid32 - p32),
                                      "float64_means_error": abs(fid64 - p32),
                                      "float64_fids_apart": abs(fid64 - p64)})
            rows.append({"n": n, "seed": seed,
                         "max_abs_mu32_minus_mu64": float(max(np.abs(m3 - m6).max() for m3, m6 in zip(mu32, mu64))),
                         "mean_term_float32": term32, "mean_term_float64": term64,
                         "fid_float64_means": fid64, "fid_float32_means": fid32,
                         "fid_abs_difference": abs(fid32 - fid64),
                         "fid_relative_difference": abs(fid32 - fid64) / fid64,
                         "max_abs_accumulator_minus_mu64": float(np.abs(acc - mu64[0]).max()),
                         "accumulator_float32_mean_equals_np_mean": bool(np.array_equal(acc32, mu32[0])),
                         "perturbed": perturbations})
            print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    rec = {"command": "python benchmarks/adm_mean_float32.py " + " ".join(sys.argv[1:]),
           "commit": commit, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "numpy": np.__version__, "pool": about, "batch": args.batch, "rows": rows,
           "max_fid_abs_difference": max(r["fid_abs_difference"] for r in rows),
           "max_fid_relative_difference": max(r["fid_relative_difference"] for r in rows),
           "accumulator_float32_mean_always_np_mean": all(r["accumulator_float32_mean_equals_np_mean"] for r in rows)}
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(f"max FID difference {rec['max_fid_abs_difference']:.2e} "
          f"({rec['max_fid_relative_difference']:.2e} relative); wrote {args.out}")


if __name__ == "__main__":
    main()
