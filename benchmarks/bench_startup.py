"""What a fidkit process costs before its first batch, in fresh processes.

    python benchmarks/bench_startup.py [--repeats 5] [--tree DIR ...] [--out benchmarks/results/startup_cpu.json]

Each stage is a fresh ``python`` process (wall time of the whole process, median and best of
``--repeats``), each doing a little more than the one before:

- ``python``: the interpreter alone (``-c pass``);
- ``import torch``;
- ``import fidkit``;
- ``fidkit compute --help`` (``python -m fidkit``);
- ``load weights``: ``fidkit.load_weights()`` (fidkit's cache: read, check, digest);
- ``build network``: the weights, then the CPU network as a pass builds it (``fidkit.api.network``);
- ``first batch``: the pipeline up to its first batch of features (``tests/data/real_a``, 10
  images in one batch, one decoding process, on ``--device``: the CPU by default).

One warm-up load per tree comes first (the page cache; fidkit's record of the weights digest,
which a new cache file gets at its first load). ``--tree`` runs the stages against other checkouts of fidkit (e.g. ``git archive COMMIT | tar
-x -C DIR``) with the same interpreter, to compare before and after a change. Also recorded:
the modules ``-X importtime`` shows as the largest parts of ``import fidkit``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOAD = "import fidkit; w = fidkit.load_weights()"
NETWORK = LOAD + "; import torch; from fidkit.api import network; network(w, torch.device('cpu'), 'fp32')"
FIRST = ("import torch, fidkit; from fidkit.api import encoder_for; from fidkit.pipeline import iter_features; "
         "from fidkit.sources import as_images; enc = encoder_for(device='DEVICE'); "
         "it = iter_features(as_images('tests/data/real_a'), enc.preprocess, enc, torch.device('DEVICE'), 16, 1); "
         "next(it); it.close()")
STAGES = {
    "python": ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "import fidkit": ["-c", "import fidkit"],
    "fidkit compute --help": ["-m", "fidkit", "compute", "--help"],
    "load weights": ["-c", LOAD],
    "build network": ["-c", NETWORK],
    "first batch": ["-c", FIRST],
}


def run(tree: Path, args: list) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{args} in {tree} failed:\n{r.stderr[-2000:]}")
    return dt


def import_breakdown(tree: Path, top: int = 12) -> list:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import fidkit"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        self_us, cum_us, name = [p.strip() for p in line.replace("import time:", "").split("|")]
        rows.append((name, int(cum_us) / 1e6))
    keep = [r for r in rows if r[0] in ("torch", "numpy", "scipy", "PIL", "PIL.Image", "fidkit", "click",
                                        "scipy.linalg", "fidkit.api", "fidkit.frechet", "fidkit.stats")]
    return [{"module": n, "cumulative_s": round(s, 3)} for n, s in sorted(keep, key=lambda r: -r[1])[:top]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="where the first batch runs (cpu, cuda)")
    ap.add_argument("--tree", action="append", default=[], help="LABEL=DIR: another checkout to measure too")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup_cpu.json"))
    args = ap.parse_args()
    STAGES["first batch"] = ["-c", FIRST.replace("DEVICE", args.device)]
    trees = [("this", ROOT)] + [(t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    out = {
        "command": "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}"] + sys.argv[1:]),
        "git_commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other work; load average "
                   f"{load:.1f} at the start" if load is not None else f"{os.cpu_count()} CPU cores",
        "python": sys.version.split()[0],
        "first_batch_device": args.device,
        "how": "wall time of fresh processes, seconds; median and best of the repeats; stages interleaved",
        "trees": {},
    }
    for _, tree in trees:  # warm-up: the page cache, and fidkit's record of the weights digest
        run(tree, STAGES["load weights"])
    times = {label: {s: [] for s in STAGES} for label, _ in trees}
    for _ in range(args.repeats):  # interleaved, so that a busy moment hits every stage and tree alike
        for stage, a in STAGES.items():
            for label, tree in trees:
                times[label][stage].append(run(tree, a))
    for label, tree in trees:
        out["trees"][label] = {
            "path": str(tree),
            "stages": {s: {"median_s": round(statistics.median(v), 3), "best_s": round(min(v), 3)}
                       for s, v in times[label].items()},
            "import_fidkit_breakdown": import_breakdown(tree),
        }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
