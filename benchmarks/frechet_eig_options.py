"""Could the eigenvalue step of the Fréchet distance be faster on this CPU? Times, at d = 2048
on the same matrix, the pieces of fidkit's evaluation and the alternatives tried:

    python benchmarks/frechet_eig_options.py [--dim 2048] [--repeats 3]
                                             [--out benchmarks/results/frechet_eig_options.json]

  potrf, sygst             fidkit's first two steps (SciPy's OpenBLAS)
  scipy_evr, scipy_evd     eigenvalues only, SciPy (fidkit uses evr)
  torch_eigvalsh           eigenvalues only through torch's LAPACK (MKL on x86-64)
  lapacke_dsyevd_2stage    LAPACK's two-stage tridiagonal reduction, from the OpenBLAS
                           inside SciPy's wheel (skipped where that library is not found)
  fidkit_now               potrf + sygst + scipy_evr, as fidkit.frechet does it
  hybrid_torch             potrf + sygst (OpenBLAS), then torch_eigvalsh (MKL)

Mean seconds over --repeats after one untimed run, with the thread counts of the libraries'
defaults; writes JSON.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.linalg
import torch
from scipy.linalg import lapack

ROOT = Path(__file__).resolve().parents[1]


def timed(f, repeats):
    f()
    t = time.perf_counter()
    for _ in range(repeats):
        f()
    return round((time.perf_counter() - t) / repeats, 4)


def two_stage():
    libs = glob.glob(os.path.join(os.path.dirname(scipy.__file__), "..", "scipy.libs", "libscipy_openblas*.so"))
    if not libs:
        return None
    fn = getattr(ctypes.CDLL(libs[0]), "scipy_LAPACKE_dsyevd_2stage", None)
    if fn is None:
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                   ctypes.c_void_p]

    def eig(m):
        a, w = np.array(m, order="C"), np.empty(m.shape[0])
        if fn(101, b"N", b"L", m.shape[0], a.ctypes.data, m.shape[0], w.ctypes.data) != 0:
            raise RuntimeError("dsyevd_2stage failed")
        return w
    return eig


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "frechet_eig_options.json"))
    args = ap.parse_args()
    d, r = args.dim, args.repeats
    x = np.random.default_rng(0).standard_normal((max(5000, 2 * d), d))
    s = x.T @ x / x.shape[0]
    L, _ = lapack.dpotrf(s, lower=1, clean=0)
    a, _ = lapack.dsygst(s, L, itype=2, lower=1)
    ref = np.sort(scipy.linalg.eigvalsh(a, lower=True))
    out = {"potrf": timed(lambda: lapack.dpotrf(s, lower=1, clean=0), r),
           "sygst": timed(lambda: lapack.dsygst(s, L, itype=2, lower=1), r),
           "scipy_evr": timed(lambda: scipy.linalg.eigvalsh(a, lower=True, check_finite=False, driver="evr"), r),
           "scipy_evd": timed(lambda: scipy.linalg.eigvalsh(a, lower=True, check_finite=False, driver="evd"), r),
           "torch_eigvalsh": timed(lambda: torch.linalg.eigvalsh(torch.from_numpy(a), UPLO="L"), r)}
    eig2 = two_stage()
    if eig2 is not None:
        out["lapacke_dsyevd_2stage"] = timed(lambda: eig2(a), r)
        out["two_stage_max_relative_difference"] = float(np.abs(np.sort(eig2(a)) - ref).max() / ref.max())

    def now():
        L, _ = lapack.dpotrf(s, lower=1, clean=0)
        b, _ = lapack.dsygst(s, L, itype=2, lower=1)
        return scipy.linalg.eigvalsh(b, lower=True, overwrite_a=True, check_finite=False, driver="evr")

    def hybrid():
        L, _ = lapack.dpotrf(s, lower=1, clean=0)
        b, _ = lapack.dsygst(s, L, itype=2, lower=1)
        return torch.linalg.eigvalsh(torch.from_numpy(b), UPLO="L")

    out["fidkit_now"] = timed(now, r)
    out["hybrid_torch"] = timed(hybrid, r)
    rec = {"command": "python benchmarks/frechet_eig_options.py " + " ".join(f"--{k} {v}" for k, v in
                                                                             (("dim", d), ("repeats", r))),
           "dim": d, "repeats": r, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "platform": platform.platform(), "numpy": np.__version__, "scipy": scipy.__version__,
           "torch": torch.__version__, "seconds": out}
    Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(rec["seconds"], indent=1))


if __name__ == "__main__":
    main()
