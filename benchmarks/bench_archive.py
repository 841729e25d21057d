"""Images read from an archive against the same images in a folder: images/s and peak memory.

    python benchmarks/bench_archive.py [--images 300] [--read-images 5000] [--repeats 3]
                                       [--read-repeats 5] [--workers 1]
                                       [--data /tmp/fidkit-bench-archive]
                                       [--out benchmarks/results/archive_vs_folder.json]

The first N Fashion-MNIST test images (``fidkit.sources.dataset_images``; 28×28 grey,
written once as PNG files) sit in a folder, a zip (deflated, as ``zip -r`` writes), a tar
and a tar.gz. Two measures, each in a fresh process, in interleaved rounds (the order
rotates every round, since the machine is shared and noisy):

- ``read`` (``--read-images``, ``--read-repeats``): listing or indexing the source, then
  reading and decoding every image in order in one process (``as_images(src)[i]``): what
  the source itself costs. The listing alone is recorded too (``list_seconds``, and per
  member ``list_us_per_image`` in the summary).
- ``stats`` (``--images``, ``--repeats``): ``fidkit.compute_stats(src)`` on the CPU with
  ``--workers`` decoding processes: the whole pipeline with the Inception network (run on
  the folder and the zip only; a tar is read like a zip, by offset).

Times are measured inside the child, after its imports; peak memory is ``ru_maxrss`` of
the child itself and, separately, the largest of its decoding workers. Ratios are
archive ÷ folder of the medians.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agreement import machine_info  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, resource, sys, time
import fidkit
from fidkit.sources import as_images
what, src, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
listed = None
if what == "read":
    images = as_images(src)
    n = len(images)
    listed = time.perf_counter() - t  # listing or indexing alone
    for i in range(n):
        images[i]
else:
    n = fidkit.compute_stats(src, device="cpu", workers=workers, progress=False).n
seconds = time.perf_counter() - t
print(json.dumps({"n": n, "seconds": seconds, "images_per_s": n / seconds, "list_seconds": listed,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def write_sources(data: str, n: int) -> dict:
    """The folder, zip, tar and tar.gz of the first ``n`` Fashion-MNIST test images (written once)."""
    from PIL import Image

    from fidkit.sources import dataset_images

    folder = os.path.join(data, f"folder{n}")
    paths = {"folder": folder, "zip": folder + ".zip", "tar": folder + ".tar", "tar.gz": folder + ".tar.gz"}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    os.makedirs(folder, exist_ok=True)
    for i, im in enumerate(dataset_images("fashion-mnist-test", n)):
        Image.fromarray(im).save(os.path.join(folder, f"{i:05d}.png"))
    names = sorted(os.listdir(folder))
    with zipfile.ZipFile(paths["zip"], "w", zipfile.ZIP_DEFLATED) as z:
        for f in names:
            z.write(os.path.join(folder, f), f)
    for kind, mode in (("tar", "w"), ("tar.gz", "w:gz")):
        with tarfile.open(paths[kind], mode) as t:
            for f in names:
                t.add(os.path.join(folder, f), f)
    return paths


def run_child(what: str, src: str, workers: int) -> dict:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, what, src, str(workers)], capture_output=True, text=True,
                       env=env, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"{what} {src} failed: {r.stderr.strip().splitlines()[-1]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - t
    return out


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + ("+uncommitted changes" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=300, help="images of the stats runs")
    ap.add_argument("--read-images", type=int, default=5000, help="images of the read runs")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the stats runs")
    ap.add_argument("--read-repeats", type=int, default=5, help="rounds of the read runs")
    ap.add_argument("--workers", type=int, default=1, help="decoding workers of the stats runs")
    ap.add_argument("--data", default="/tmp/fidkit-bench-archive")
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "benchmarks", "results", "archive_vs_folder.json"))
    ap.add_argument("--skip-stats", action="store_true", help="only the read measure")
    args = ap.parse_args()

    sources = {"read": write_sources(args.data, args.read_images), "stats": write_sources(args.data, args.images)}
    sizes = {what: {k: (sum(os.path.getsize(os.path.join(p, f)) for f in os.listdir(p)) if os.path.isdir(p)
                        else os.path.getsize(p)) for k, p in paths.items()} for what, paths in sources.items()}
    plan = [("read", k) for k in sources["read"]] + ([] if args.skip_stats else [("stats", "folder"),
                                                                                   ("stats", "zip")])
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    runs = {f"{what} {k}": [] for what, k in plan}
    for rep in range(max(args.repeats, args.read_repeats)):
        order = plan[rep % len(plan):] + plan[:rep % len(plan)]
        for what, k in order:
            if rep >= (args.read_repeats if what == "read" else args.repeats):
                continue
            r = run_child(what, sources[what][k], args.workers)
            assert r["n"] == (args.read_images if what == "read" else args.images), r
            runs[f"{what} {k}"].append(r)
            print(f"round {rep + 1}: {what:5s} {k:7s} {r['images_per_s']:9.1f} images/s, "
                  f"peak {r['peak_rss_mib']:.0f} MiB (workers {r['workers_peak_rss_mib']:.0f} MiB)", flush=True)

    def med(key, field):
        return statistics.median(r[field] for r in runs[key])

    summary = {key: {"median_images_per_s": round(med(key, "images_per_s"), 2),
                     "median_seconds": round(med(key, "seconds"), 3),
                     "median_peak_rss_mib": round(med(key, "peak_rss_mib"), 1),
                     "median_workers_peak_rss_mib": round(med(key, "workers_peak_rss_mib"), 1)} for key in runs}
    for key in runs:
        if key.startswith("read "):
            listed = med(key, "list_seconds")
            summary[key].update(median_list_seconds=round(listed, 4),
                                list_us_per_image=round(listed / args.read_images * 1e6, 1))
    ratios = {}
    for what, k in plan:
        if k != "folder":
            a, f = summary[f"{what} {k}"], summary[f"{what} folder"]
            ratios[f"{what} {k} / folder"] = {
                "images_per_s": round(a["median_images_per_s"] / f["median_images_per_s"], 3),
                "peak_rss": round(a["median_peak_rss_mib"] / f["median_peak_rss_mib"], 3)}
    record = {
        "command": "python benchmarks/bench_archive.py " + " ".join(sys.argv[1:]),
        "git_commit": git_commit(),
        "date_utc": started.isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
                    "python": sys.version.split()[0], "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "images": {"stats": args.images, "read": args.read_images},
        "image_source": "Fashion-MNIST test, first N, 28×28 grey PNG",
        "bytes": sizes, "repeats": {"stats": args.repeats, "read": args.read_repeats}, "stats_workers": args.workers,
        "summary": summary, "ratios_archive_over_folder": ratios, "runs": runs,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(ratios, indent=1))


if __name__ == "__main__":
    main()
