"""Benchmark fidkit.frechet against the classic scipy.linalg.sqrtm evaluation of the FID.

Builds covariance matrices of dimension d from synthetic features shaped like Inception
pool features (a power-law spectrum in a random basis, two slightly different
distributions), then times on the same matrices:

  * ``fidkit.frechet.frechet_distance`` (float64, NumPy/SciPy; best and median of --repeats),
  * the classic formula ‖Δμ‖² + tr Σ₁ + tr Σ₂ − 2 tr sqrtm(Σ₁Σ₂).real with scipy.linalg.sqrtm,
  * with ``--device cuda``: ``fidkit.frechet.frechet_distance_torch`` on the GPU as well,

and prints the speedup and the relative difference of the two values. Cases:

  full           N = --samples for both sets (full-rank covariances: Cholesky path)
  one-singular   N₁ = --singular-samples < d, N₂ = --samples (roles exchanged)
  both-singular  N₁ = N₂ = --singular-samples (eigendecomposition path)

Usage::

    python benchmarks/bench_frechet.py                      # d = 2048, all cases
    python benchmarks/bench_frechet.py --dim 512 --cases full --json /tmp/f.json
    python benchmarks/bench_frechet.py --device cuda        # adds the torch GPU timing

Results go to ``benchmarks/results/frechet_<device>.json`` unless --json says otherwise
(``--json -`` writes none). fidkit is run once untimed before its timed runs (sqrtm is not:
one run of it is long enough). Thread count is whatever the BLAS uses by default; set
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` (and ``taskset``) to fix it. On a machine
whose cores are busy with other work, OpenBLAS threads wait for each other for whole
scheduler time slices and every timing here can grow by an order of magnitude: the JSON
records the load average for that reason.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _machine import cpu_model

import numpy as np
import scipy
import scipy.linalg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fidkit.frechet import frechet_distance, frechet_distance_torch  # noqa: E402

CASES = ("full", "one-singular", "both-singular")


# ------------------------------------------------------------------------------- data


def random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def feature_stats(rng, n: int, basis: np.ndarray, decay: float, shift: float):
    """Mean (d,) and covariance (d, d) of n synthetic features with a power-law spectrum.

    Inception pool features have a covariance spectrum spanning several orders of magnitude;
    λ_k ∝ k^(-2·decay) in a random basis reproduces that. Non-negative offsets mimic the
    post-ReLU means. Generated in chunks to bound memory.
    """
    d = basis.shape[0]
    scale = 1.0 / np.arange(1, d + 1) ** decay
    offset = shift + np.abs(rng.standard_normal(d)) * 0.1
    total = np.zeros(d)
    gram = np.zeros((d, d))
    chunk = 4096
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = (rng.standard_normal((m, d)) * scale) @ basis.T + offset
        total += x.sum(axis=0)
        gram += x.T @ x
    mu = total / n
    sigma = (gram - n * np.outer(mu, mu)) / (n - 1)
    return mu, (sigma + sigma.T) / 2


def build_case(name: str, d: int, samples: int, singular_samples: int, seed: int):
    rng = np.random.default_rng(seed)
    basis = random_rotation(rng, d)
    n1, n2 = {"full": (samples, samples), "one-singular": (singular_samples, samples),
              "both-singular": (singular_samples, singular_samples)}[name]
    # the second set: a slightly rotated basis, slower decay, shifted mean ("generated images")
    tilted, _ = np.linalg.qr(basis + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d))
    mu1, s1 = feature_stats(rng, n1, basis, decay=0.80, shift=0.00)
    mu2, s2 = feature_stats(rng, n2, tilted, decay=0.75, shift=0.02)
    return (n1, n2), (mu1, s1, mu2, s2)


# ---------------------------------------------------------------------------- timings


def sqrtm_fid(mu1, s1, mu2, s2) -> float:
    """The classic evaluation (pytorch-fid, TTUR): real part of scipy.linalg.sqrtm(Σ₁Σ₂)."""
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def timed(fn, repeats: int, sync=None, warmup: bool = False):
    if warmup:
        fn()
        if sync:
            sync()
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return value, {"best_s": min(times), "median_s": statistics.median(times), "times_s": times}


# --------------------------------------------------------------------------- machine




def blas_info() -> dict:
    info = {}
    for mod in (np, scipy):
        try:
            cfg = mod.show_config(mode="dicts")
            deps = cfg.get("Build Dependencies", {})
            info[mod.__name__] = {k: {f: deps[k].get(f) for f in ("name", "version", "openblas configuration")
                                      if deps[k].get(f) is not None}
                                  for k in ("blas", "lapack") if k in deps}
        except Exception as exc:  # older versions have no mode="dicts"
            info[mod.__name__] = f"unavailable ({type(exc).__name__})"
    try:
        import threadpoolctl
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version", "filepath")}
                               for p in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    info["env"] = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                   if k in os.environ}
    return info


def machine(device: str) -> dict:
    out = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": blas_info(),
    }
    if device == "cuda":
        import torch
        out["torch"] = torch.__version__
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cuda"] = torch.version.cuda
    return out


# ------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=2048, help="feature dimension d (default 2048)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per method (default 3)")
    p.add_argument("--samples", type=int, default=5000, help="N for full-rank covariances (default 5000)")
    p.add_argument("--singular-samples", type=int, default=None,
                   help="N < d for the singular cases (default d // 2)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic features (default 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: also time frechet_distance_torch on the GPU")
    p.add_argument("--json", default=None,
                   help="output path (default benchmarks/results/frechet_<device>.json; '-' for none)")
    args = p.parse_args(argv)

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    singular = args.singular_samples if args.singular_samples is not None else max(args.dim // 2, 2)
    if singular >= args.dim and any(c != "full" for c in cases):
        p.error(f"--singular-samples ({singular}) must be smaller than --dim ({args.dim})")

    sync = None
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA device")
        sync = torch.cuda.synchronize

    desc = machine(args.device)
    print(f"fidkit.frechet benchmark: d = {args.dim}, repeats = {args.repeats}, seed = {args.seed}")
    print(f"CPU: {desc['cpu_model']} ({desc['cpus_usable']} usable of {desc['cpu_count']}); "
          f"numpy {np.__version__}, scipy {scipy.__version__}"
          + (f"; GPU: {desc['gpu']}" if args.device == "cuda" else ""))

    results = []
    for i, name in enumerate(cases):
        t0 = time.perf_counter()
        (n1, n2), stats = build_case(name, args.dim, args.samples, singular, args.seed + i)
        print(f"\n[{name}] N1 = {n1}, N2 = {n2} (built in {time.perf_counter() - t0:.1f} s)")

        ours, t_ours = timed(lambda: frechet_distance(*stats), args.repeats, warmup=True)
        print(f"  fidkit   best {t_ours['best_s']:8.4f} s  median {t_ours['median_s']:8.4f} s  "
              f"FID {ours.fid:.15g}  (neg. mass {ours.negative_eigenvalue_mass:.2g})")
        ref, t_ref = timed(lambda: sqrtm_fid(*stats), args.repeats)
        print(f"  sqrtm    best {t_ref['best_s']:8.4f} s  median {t_ref['median_s']:8.4f} s  FID {ref:.15g}")
        rel = abs(ours.fid - ref) / abs(ref)
        row = {
            "case": name, "n1": n1, "n2": n2,
            "fidkit": t_ours, "sqrtm": t_ref,
            "fid_fidkit": ours.fid, "fid_sqrtm": ref, "relative_difference": rel,
            "speedup_best": t_ref["best_s"] / t_ours["best_s"],
            "speedup_median": t_ref["median_s"] / t_ours["median_s"],
            "fidkit_result": ours.as_dict(),
        }
        print(f"  speedup  best {row['speedup_best']:.1f}x  median {row['speedup_median']:.1f}x   "
              f"relative difference {rel:.2e}")
        if args.device == "cuda":
            import torch
            tensors = [torch.from_numpy(a).cuda() for a in stats]
            gpu, t_gpu = timed(lambda: frechet_distance_torch(*tensors), args.repeats, sync=sync, warmup=True)
            row["torch_cuda"] = t_gpu
            row["fid_torch_cuda"] = gpu.fid
            row["relative_difference_torch_cuda"] = abs(gpu.fid - ref) / abs(ref)
            row["speedup_torch_cuda_best"] = t_ref["best_s"] / t_gpu["best_s"]
            print(f"  torch/cuda best {t_gpu['best_s']:8.4f} s  median {t_gpu['median_s']:8.4f} s  "
                  f"FID {gpu.fid:.15g}  rel. diff. {row['relative_difference_torch_cuda']:.2e}")
        results.append(row)

    out = {
        "benchmark": "fidkit.frechet vs scipy.linalg.sqrtm",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dim": args.dim, "samples": args.samples, "singular_samples": singular,
        "repeats": args.repeats, "seed": args.seed, "device": args.device,
        "machine": desc, "cases": results,
    }
    target = args.json if args.json is not None else str(ROOT / "benchmarks" / "results" /
                                                          f"frechet_{args.device}.json")
    if target != "-":
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
