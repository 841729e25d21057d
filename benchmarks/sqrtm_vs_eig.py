"""The Fréchet distance of two statistics files by fidkit and by the classic sqrtm formula.

    python benchmarks/sqrtm_vs_eig.py A.npz B.npz [--out RESULT.json]

Shows how much of a difference between fidkit and a reference implementation comes from
the matrix square root alone (the references compute ‖Δμ‖² + tr Σ₁ + tr Σ₂ − 2 tr
sqrtm(Σ₁Σ₂) with scipy). Also dgm-eval's ``fd_eff`` (``compute_efficient_FD_with_reps``):
the same terms with tr (Σ₁Σ₂)^½ taken as the sum of the real parts of the square roots of
``scipy.linalg.eigvals(Σ₁ @ Σ₂)``, the eigenvalues of the non-symmetric product in complex
arithmetic (A is dgm-eval's real set, its ``reps1``). Prints one JSON line; ``--out`` also
writes it to a file, with the command and the time.
"""
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fidkit.frechet import frechet_distance  # noqa: E402
from fidkit.stats import Statistics  # noqa: E402


def main():
    args = sys.argv[1:]
    out = None
    if "--out" in args:
        i = args.index("--out")
        out = args[i + 1]
        del args[i:i + 2]
    a, b = (Statistics.load(p) for p in args[:2])
    t = time.perf_counter()
    ours = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(a.sigma @ b.sigma)
    t_sqrtm = time.perf_counter() - t
    d = a.mu - b.mu
    classic = float(d @ d + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(root).real)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sqrt_trace = np.real(scipy.linalg.eigvals(a.sigma @ b.sigma) ** 0.5).sum()
    t_eigvals = time.perf_counter() - t
    fd_eff = float(((a.mu - b.mu) ** 2).sum() + a.sigma.trace() + b.sigma.trace() - 2 * sqrt_trace)
    record = {"a": args[0], "b": args[1], "n_a": a.n, "n_b": b.n, "fidkit": ours.fid, "sqrtm": classic,
              "relative_difference": abs(classic - ours.fid) / ours.fid,
              "sqrtm_trace_imaginary": float(abs(np.trace(root).imag)),
              "dgm_eval_fd_eff": fd_eff, "fd_eff_relative_difference": abs(fd_eff - ours.fid) / ours.fid,
              "fidkit_negative_eigenvalue_mass": ours.negative_eigenvalue_mass,
              "fidkit_s": round(t_ours, 3), "sqrtm_s": round(t_sqrtm, 3),
              "fd_eff_s": round(t_eigvals, 3)}
    print(json.dumps(record))
    if out:
        record.update(command="python benchmarks/sqrtm_vs_eig.py " + " ".join(sys.argv[1:]),
                      date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        Path(out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
