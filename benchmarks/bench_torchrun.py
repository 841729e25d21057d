"""Wall time of ``fidkit stats`` on N images: torchrun with 2 CPU ranks against one process.

    python benchmarks/bench_torchrun.py [--images 64] [--repeats 3] [--batch-size 16]
                                        [--out benchmarks/results/torchrun_cpu.json]

The images are the 20 PNG files of tests/data (real_a, real_b: mixed sizes), copied in turn
under new names up to ``--images``. Three configurations, each a fresh process (or a fresh
torchrun with its two ranks), run in turn ``--repeats`` times, interleaved so that drifting
load from other jobs falls on all of them alike:

  one process, 2 threads   ``python -m fidkit stats DIR -o OUT --device cpu``, OMP_NUM_THREADS=2
                           (torch's intra-op threads = the 2 cores), 1 decoding worker (the default
                           on 2 cores);
  one process, 1 thread    the same with OMP_NUM_THREADS=1;
  torchrun, 2 ranks        ``python -m torch.distributed.run --nproc-per-node 2 -m fidkit stats ...``
                           with OMP_NUM_THREADS=1 per rank (what torchrun sets for several ranks)
                           and fidkit's per-rank default of decoding workers: cores / ranks − 1,
                           at least 1, so 1 per rank: 2 network threads on 2 cores, no oversubscription
                           beyond the two light decoding workers.

Times are whole commands (start-up, weights, rendezvous, writing the file); the median of
the repeats is reported with every run's time and the load average (1 minute) before each
run, since the machine is shared with other jobs. Also records whether the torchrun file equals the
one-thread process's byte for byte (the equality guarantee needs the same thread count).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return r.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/torchrun_cpu.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fidkit-bench-torchrun-"))
    src = tmp / "images"
    src.mkdir()
    pool = sorted((ROOT / "tests/data/real_a").glob("*.png")) + sorted((ROOT / "tests/data/real_b").glob("*.png"))
    for i in range(args.images):
        shutil.copy(pool[i % len(pool)], src / f"{i:05d}.png")

    common = ["stats", str(src), "--device", "cpu", "--batch-size", str(args.batch_size), "--no-progress"]
    env0 = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def torchrun(out):
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                "--master-port", str(free_port()), "-m", "fidkit", *common, "-o", str(out)]

    configs = {
        "one process, 2 threads": (lambda out: [sys.executable, "-m", "fidkit", *common, "-o", str(out)],
                                   {"OMP_NUM_THREADS": "2"}),
        "one process, 1 thread": (lambda out: [sys.executable, "-m", "fidkit", *common, "-o", str(out)],
                                  {"OMP_NUM_THREADS": "1"}),
        "torchrun, 2 ranks": (torchrun, {"OMP_NUM_THREADS": "1"}),
    }
    runs = {name: [] for name in configs}
    for rep in range(args.repeats):
        for name, (command, env) in configs.items():
            out = tmp / f"{name.replace(' ', '_').replace(',', '')}-{rep}.npz"
            cmd = command(out)
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env={**env0, **env})
            seconds = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"{name} failed:\n{r.stderr[-3000:]}")
            runs[name].append({"seconds": round(seconds, 3), "load_average_1min_before": round(load, 2)})
            print(f"{name:24s} repeat {rep}: {seconds:7.2f} s (load {load:.2f})", flush=True)
    same = all((tmp / f"torchrun_2_ranks-{i}.npz").read_bytes() == (tmp / f"one_process_1_thread-{i}.npz").read_bytes()
               for i in range(args.repeats))
    medians = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    result = {
        "what": "wall time of `fidkit stats` on N images: torchrun with 2 CPU ranks vs one process (fresh processes, "
                "configurations interleaved, median of the repeats)",
        "command": " ".join(["python", "benchmarks/bench_torchrun.py", *sys.argv[1:]]),
        "fidkit_commands": {name: " ".join(c(Path("OUT.npz"))).replace(str(src), "DIR").replace(sys.executable, "python")
                            + "  # " + " ".join(f"{k}={v}" for k, v in e.items())
                            for name, (c, e) in configs.items()},
        "git_commit": git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": __import__("torch").__version__,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "shared with other jobs: see each run's load average"},
        "images": args.images, "batch_size": args.batch_size, "repeats": args.repeats,
        "median_seconds": {k: round(v, 2) for k, v in medians.items()},
        "speedup_torchrun_vs_one_process_2_threads": round(medians["one process, 2 threads"]
                                                           / medians["torchrun, 2 ranks"], 3),
        "speedup_torchrun_vs_one_process_1_thread": round(medians["one process, 1 thread"]
                                                          / medians["torchrun, 2 ranks"], 3),
        "torchrun_file_equals_one_thread_process_file": same,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("median_seconds", "speedup_torchrun_vs_one_process_2_threads",
                                             "speedup_torchrun_vs_one_process_1_thread",
                                             "torchrun_file_equals_one_thread_process_file")}, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
