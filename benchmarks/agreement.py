"""Checks that each fidkit protocol gives the FID of its reference implementation on the
same two image folders, with the same Inception weights, and records wall time, images/s
and peak memory of every run (the speed table of the README).

    python benchmarks/agreement.py [--a DIR --b DIR] [--peers-python PY] [--peers-dir DIR]
                                   [--fidkit-python PY] [--out benchmarks/results/agreement.json]

Comparisons (fidkit protocol -> reference, run through ``run_peer.py`` of the peers'
environment that ``shared/peers/setup.sh`` builds):

    ttur         -> torch-fidelity
    pytorch-fid  -> pytorch-fid
    clean        -> clean-fid:clean
    ttur         -> torchmetrics   (only with --torchmetrics)

A comparison passes when |fidkit - reference| / |reference| <= 1e-5. Every run is a
separate process, one after another (never in parallel, so that the times are
comparable); the peers get THREADS=2. fidkit is run as

    FIDKIT_PYTHON -m fidkit compute A B --protocol P --json --device cpu

from the repository root and must print one JSON object with at least ``fid``; its wall
time is measured here. A failing run (fidkit or a peer) is recorded with its error line
and the benchmark goes on to the next comparison.

Without --a/--b, two sets of 250 real 64x64 images are written once with
``benchmarks/make_images.py`` (split a and split b, seed 0) into
/tmp/fidkit-agreement/a and /tmp/fidkit-agreement/b, and reused afterwards.

Writes a JSON record (values, times, the machine, the versions of both environments and
the command line) and a Markdown table next to it. Exit status: 0 when every comparison
passes (or when the peers' environment is absent: the check is then skipped with one
line), 1 when one fails, 2 on a usage or setup error. ``--peers-only`` runs only the
references, to learn their values and times (exit status 0 when they all ran);
``--protocols`` picks a subset.

pytorch-fid, torch-fidelity and torchmetrics, as run_peer.py runs them (batches of 50,
no resize before batching), need all images of a folder to have one size; on folders of
mixed sizes only clean-fid gives a reference value.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PEERS_PYTHON = "/tmp/fidkit-peers/bin/python"
DEFAULT_PEERS_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "peers")
DEFAULT_OUT = os.path.join(REPO_ROOT, "benchmarks", "results", "agreement.json")
DEFAULT_DATA = "/tmp/fidkit-agreement"
TOLERANCE = 1e-5
PEER_THREADS = "2"

# (fidkit protocol, reference implementation as run_peer.py names it)
COMPARISONS = [
    ("ttur", "torch-fidelity"),
    ("pytorch-fid", "pytorch-fid"),
    ("clean", "clean-fid:clean"),
]
OPTIONAL_COMPARISONS = [("ttur", "torchmetrics")]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm", ".gif"}

ENV_INFO_SNIPPET = r"""
import json, platform, sys
from importlib import metadata
out = {"python": platform.python_version(), "executable": sys.executable}
for dist in %r:
    try:
        out[dist] = metadata.version(dist)
    except Exception:
        pass
try:
    import torch
    out["torch"] = torch.__version__
    out["torch_default_threads"] = torch.get_num_threads()
except Exception as exc:
    out["torch_error"] = repr(exc)
print(json.dumps(out))
"""
FIDKIT_DISTS = ["fidkit", "numpy", "scipy", "pillow"]
PEER_DISTS = ["pytorch-fid", "torch-fidelity", "clean-fid", "torchmetrics", "numpy", "scipy",
              "pillow"]


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def parse_json_object(stdout: str):
    """Returns (object, exact): the JSON object printed on stdout and whether stdout was
    exactly that one object. Falls back to the last line that parses as an object."""
    text = (stdout or "").strip()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj, True
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj, False
    return None, False


def _children_map():
    """pid -> list of child pids, from /proc (Linux)."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _pss_bytes(pid):
    """Proportional set size of a process (shared pages divided among their sharers), or
    its RSS where smaps_rollup is not readable; 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss_bytes(pid):
    """Memory of a process and all its descendants (bytes; 0 when gone): the sum of their
    proportional set sizes, so that pages a worker shares with its parent after fork()
    count once."""
    kids = _children_map()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss_bytes(p)
        todo.extend(kids.get(p, []))
    return total


def run_timed(cmd, env=None, cwd=None, timeout=None, rss=None):
    """Runs cmd, returns (returncode or None on timeout, stdout, stderr, wall seconds).

    With a dict ``rss``, the memory of the process tree (the process and its worker
    processes together, as the sum of their proportional set sizes) is sampled every 0.1 s
    and its peak stored as ``rss["peak_bytes"]``."""
    import threading

    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=cwd)
    except OSError as exc:
        return -1, "", f"cannot run {cmd[0]}: {exc}", time.perf_counter() - t0
    stop = threading.Event()
    peak = [0]

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True) if rss is not None else None
    if sampler:
        sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        rc, err = None, (err or "") + f"\ntimed out after {timeout} s"
    seconds = time.perf_counter() - t0
    if sampler:
        stop.set()
        sampler.join()
        rss["peak_bytes"] = peak[0]
    return rc, out or "", err or "", seconds


def finite_float(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def run_peer(peers_python, run_peer_py, impl, a, b, timeout):
    cmd = [peers_python, run_peer_py, impl, a, b]
    env = dict(os.environ, THREADS=PEER_THREADS)
    print(f"[peer]   {impl} ...", flush=True)
    rss = {}
    rc, out, err, seconds = run_timed(cmd, env=env, timeout=timeout, rss=rss)
    rec = {"command": "THREADS=%s %s" % (PEER_THREADS, shlex.join(cmd)),
           "returncode": rc, "wall_seconds": round(seconds, 2),
           "peak_rss_mib": round(rss["peak_bytes"] / 2**20, 1),
           "fid": None, "seconds": None, "error": None}
    obj, _ = parse_json_object(out)
    if rc != 0 or obj is None or finite_float(obj.get("fid")) is None:
        rec["error"] = last_line(err) or last_line(out) or f"exit status {rc}, no output"
    else:
        rec["fid"] = float(obj["fid"])
        rec["seconds"] = finite_float(obj.get("seconds"))
    status = (f"FID {rec['fid']:.6f} in {rec['wall_seconds']:.1f} s" if rec["error"] is None
              else f"FAILED: {rec['error']}")
    print(f"[peer]   {impl}: {status}", flush=True)
    return rec


def run_fidkit(fidkit_python, protocol, a, b, timeout):
    cmd = [fidkit_python, "-m", "fidkit", "compute", a, b, "--protocol", protocol, "--json",
           "--device", "cpu"]
    print(f"[fidkit] {protocol} ...", flush=True)
    rss = {}
    rc, out, err, seconds = run_timed(cmd, cwd=REPO_ROOT, timeout=timeout, rss=rss)
    rec = {"command": shlex.join(cmd), "cwd": REPO_ROOT, "returncode": rc,
           "wall_seconds": round(seconds, 2), "peak_rss_mib": round(rss["peak_bytes"] / 2**20, 1), "fid": None, "output": None, "error": None,
           "notes": []}
    obj, exact = parse_json_object(out)
    if rc != 0 or obj is None or finite_float(obj.get("fid")) is None:
        rec["error"] = last_line(err) or last_line(out) or f"exit status {rc}, no output"
        if obj is not None:
            rec["output"] = obj
    else:
        rec["fid"] = float(obj["fid"])
        rec["output"] = obj
        if not exact:
            rec["notes"].append("stdout was not exactly one JSON object")
        if obj.get("protocol") is not None and obj.get("protocol") != protocol:
            rec["error"] = f"fidkit reported protocol {obj.get('protocol')!r}, asked {protocol!r}"
    status = (f"FID {rec['fid']:.6f} in {rec['wall_seconds']:.1f} s" if rec["error"] is None
              else f"FAILED: {rec['error']}")
    print(f"[fidkit] {protocol}: {status}", flush=True)
    return rec


def count_images(folder):
    return sum(1 for f in os.listdir(folder)
               if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
               and os.path.isfile(os.path.join(folder, f)))


def image_sizes(folder):
    """The distinct (width, height) of the images in folder (headers only), or None when
    PIL is not available."""
    try:
        from PIL import Image
    except ImportError:
        return None
    sizes = set()
    for f in sorted(os.listdir(folder)):
        if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
            try:
                with Image.open(os.path.join(folder, f)) as im:
                    sizes.add(im.size)
            except OSError:
                pass
    return sizes


def describe_folder(folder):
    sizes = image_sizes(folder)
    desc = {"path": folder, "n_images": count_images(folder)}
    if sizes is not None:
        desc["sizes"] = ("%dx%d" % next(iter(sizes)) if len(sizes) == 1
                         else f"mixed ({len(sizes)} sizes)" if sizes else "none")
    return desc


# run_peer.py batches 50 images at a time without resizing them first, so these
# references need every image of a folder to have one size.
SAME_SIZE_PEERS = ("pytorch-fid", "torch-fidelity", "torchmetrics")


def machine_info():
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}
    model = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu_model"] = model or platform.processor() or "unknown"
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return info


def env_info(python, dists):
    rc, out, err, _ = run_timed([python, "-c", ENV_INFO_SNIPPET % (dists,)], cwd=REPO_ROOT,
                                timeout=300)
    obj, _ = parse_json_object(out)
    if rc != 0 or obj is None:
        return {"executable": python, "error": last_line(err) or f"exit status {rc}"}
    return obj


def ensure_default_folders(data_dir, python):
    """Writes the default 250 + 250 image folders with make_images.py if absent."""
    script = os.path.join(REPO_ROOT, "benchmarks", "make_images.py")
    folders = {}
    for split in ("a", "b"):
        folder = os.path.join(data_dir, split)
        folders[split] = folder
        if os.path.isdir(folder) and count_images(folder) > 0:
            continue
        tmp = folder + ".partial"
        if os.path.isdir(tmp):
            for f in os.listdir(tmp):
                os.remove(os.path.join(tmp, f))
        cmd = [python, script, tmp, "--n", "250", "--size", "64", "--split", split,
               "--seed", "0"]
        print(f"generating {folder}: {shlex.join(cmd)}", flush=True)
        rc, out, err, _ = run_timed(cmd)
        sys.stdout.write(out)
        if rc != 0:
            raise RuntimeError(f"make_images.py failed: {last_line(err) or rc} "
                               f"(it needs scikit-image: pip install scikit-image)")
        if os.path.isdir(folder):  # an empty leftover
            os.rmdir(folder)
        os.replace(tmp, folder)
    return folders["a"], folders["b"]


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def markdown(record):
    m, envs = record["machine"], record["environments"]
    fk, pe = envs.get("fidkit", {}), envs.get("peers", {})
    lines = [
        "# fidkit agreement with the reference implementations",
        "",
        f"- date: {record['date']}",
        f"- command: `{record['command']}`",
        f"- folders: A = `{record['a']['path']}` ({record['a']['n_images']} images, "
        f"{record['a'].get('sizes', '?')}), B = `{record['b']['path']}` "
        f"({record['b']['n_images']} images, {record['b'].get('sizes', '?')})",
        f"- machine: {m.get('cpu_model')}, {m.get('usable_cores', m.get('cpu_count'))} usable "
        f"cores, {m.get('memory_gib', '?')} GiB, {m.get('platform')}",
        "- fidkit: not run (--peers-only)" if not fk else
        f"- fidkit environment: `{fk.get('executable')}` failed: {fk['error']}" if "error" in fk else
        f"- fidkit environment: python {fk.get('python', '?')}, torch {fk.get('torch', '?')}, "
        f"fidkit {fk.get('fidkit', '?')}",
        f"- peers' environment: `{pe.get('executable')}` failed: {pe['error']}" if "error" in pe else
        f"- peers' environment: python {pe.get('python', '?')}, torch {pe.get('torch', '?')}, "
        f"pytorch-fid {pe.get('pytorch-fid', '?')}, torch-fidelity {pe.get('torch-fidelity', '?')}, "
        f"clean-fid {pe.get('clean-fid', '?')}, torchmetrics {pe.get('torchmetrics', '?')} "
        f"(THREADS={PEER_THREADS})",
        f"- pass: relative difference ≤ {record['tolerance']:g}",
        "",
        "| fidkit protocol | reference | reference FID | reference s | fidkit FID | fidkit s "
        "| relative difference | pass |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in record["comparisons"]:
        passed = {True: "yes", False: "**no**", None: "—"}[c["pass"]]
        lines.append(
            f"| `{c['protocol']}` | {c['peer']} | {fmt(c['peer_fid'], '.6f')} "
            f"| {fmt(c['peer_seconds'], '.1f')} | {fmt(c['fidkit_fid'], '.6f')} "
            f"| {fmt(c['fidkit_seconds'], '.1f')} | {fmt(c['rel_diff'], '.2e')} | {passed} |")
    errors = [(c["protocol"], c["peer"], who, c[f"{who}_error"]) for c in record["comparisons"]
              for who in ("peer", "fidkit") if c.get(f"{who}_error")]
    if errors:
        lines += ["", "Errors:", ""]
        lines += [f"- `{p}` / {peer}, {who}: `{err}`" for p, peer, who, err in errors]
        if any(record[side].get("sizes", "").startswith("mixed") for side in ("a", "b")):
            lines += ["", "The folders hold images of mixed sizes: " + ", ".join(SAME_SIZE_PEERS)
                      + " (run in batches by run_peer.py) need images of one size."]
    lines += ["", "Seconds are wall times of the whole process (start-up, weights, decoding, "
                  "network, statistics), measured by the benchmark.", ""]
    if record.get("speed"):
        lines += ["## Speed and memory", "",
                  "| implementation | protocol | FID | wall s | images/s | peak RSS MiB | time ÷ fidkit's |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in record["speed"]:
            lines.append(f"| {r['implementation']} | `{r['protocol']}` | {fmt(r['fid'], '.6f')} "
                         f"| {fmt(r['wall_seconds'], '.1f')} | {fmt(r['images_per_second'], '.2f')} "
                         f"| {fmt(r['peak_rss_mib'], '.0f')} | {fmt(r['time_ratio_to_fidkit'], '.2f')} |")
        lines += ["", "images/s = images of both folders ÷ wall seconds. Peak RSS: the resident memory of the "
                      "process and its worker processes together (sum of proportional set sizes, so that "
                      "pages shared after fork count once), sampled every 0.1 s. time ÷ fidkit's: the "
                      "implementation's wall time over fidkit's with the same protocol (above 1: fidkit is "
                      "faster).", ""]
        fastest = record.get("fastest_peer")
        if fastest:
            lines += [f"Fastest peer: {fastest['implementation']} ({fastest['wall_seconds']:.1f} s); fidkit "
                      f"is {fastest['speedup']:.2f}× faster than it (ttur protocol).", ""]
    return "\n".join(lines)


def speed_table(record):
    """One row per run (fidkit per protocol, each peer): FID, time, images/s, memory, ratio."""
    n = record["a"]["n_images"] + record["b"]["n_images"]
    rows, fidkit_s = [], {}
    for c in record["comparisons"]:
        if c["fidkit_seconds"] is not None and c["protocol"] not in fidkit_s:
            fidkit_s[c["protocol"]] = c["fidkit_seconds"]
            rows.append({"implementation": "fidkit", "protocol": c["protocol"], "fid": c["fidkit_fid"],
                         "wall_seconds": c["fidkit_seconds"], "peak_rss_mib": c["fidkit_peak_rss_mib"]})
    for c in record["comparisons"]:
        rows.append({"implementation": c["peer"], "protocol": c["protocol"], "fid": c["peer_fid"],
                     "wall_seconds": c["peer_seconds"] if c["peer_error"] is None else None,
                     "peak_rss_mib": c["peer_peak_rss_mib"]})
    for r in rows:
        s, ref = r["wall_seconds"], fidkit_s.get(r["protocol"])
        r["images_per_second"] = n / s if s else None
        r["time_ratio_to_fidkit"] = s / ref if s and ref else None
    peers = [r for r in rows if r["implementation"] != "fidkit" and r["wall_seconds"]]
    fastest = None
    if peers and fidkit_s.get("ttur"):
        best = min(peers, key=lambda r: r["wall_seconds"])
        fastest = {"implementation": best["implementation"], "wall_seconds": best["wall_seconds"],
                   "speedup": best["wall_seconds"] / fidkit_s["ttur"]}
    return rows, fastest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare each fidkit protocol with its reference implementation.")
    parser.add_argument("--peers-python", default=DEFAULT_PEERS_PYTHON,
                        help=f"python of the peers' environment (default {DEFAULT_PEERS_PYTHON})")
    parser.add_argument("--peers-dir", default=DEFAULT_PEERS_DIR,
                        help="folder holding run_peer.py (default ../shared/peers from the "
                             "repository root)")
    parser.add_argument("--a", help="first image folder (default: generated 250 images in "
                                    f"{DEFAULT_DATA}/a)")
    parser.add_argument("--b", help="second image folder (default: generated 250 images in "
                                    f"{DEFAULT_DATA}/b)")
    parser.add_argument("--fidkit-python", default=sys.executable,
                        help="python that runs `-m fidkit` (default: this python)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="JSON record to write; a .md table is written next to it "
                             "(default benchmarks/results/agreement.json)")
    parser.add_argument("--protocols", default=",".join(p for p, _ in COMPARISONS),
                        help="comma-separated subset of the protocols to compare "
                             "(default ttur,pytorch-fid,clean)")
    parser.add_argument("--torchmetrics", action="store_true",
                        help="also compare fidkit's ttur with torchmetrics (antialias=False)")
    parser.add_argument("--peers-only", action="store_true",
                        help="run only the reference implementations (no fidkit)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds allowed to each run (default 3600)")
    args = parser.parse_args(argv)

    run_peer_py = os.path.join(os.path.abspath(args.peers_dir), "run_peer.py")
    if not os.path.isfile(args.peers_python) or not os.path.isfile(run_peer_py):
        missing = args.peers_python if not os.path.isfile(args.peers_python) else run_peer_py
        print(f"agreement: the peers' environment is absent ({missing} not found); build it "
              f"with `bash ../shared/peers/setup.sh` from the repository root; skipped.")
        return 0

    wanted = [p.strip() for p in args.protocols.split(",") if p.strip()]
    known = {p for p, _ in COMPARISONS}
    unknown = [p for p in wanted if p not in known]
    if unknown:
        parser.error(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    comparisons = [(p, peer) for p, peer in COMPARISONS if p in wanted]
    if args.torchmetrics:
        comparisons += [(p, peer) for p, peer in OPTIONAL_COMPARISONS if p in wanted]

    if (args.a is None) != (args.b is None):
        parser.error("give both --a and --b, or neither")
    if args.a is None:
        try:
            a, b = ensure_default_folders(DEFAULT_DATA, sys.executable)
        except (RuntimeError, OSError) as exc:
            print(f"agreement: {exc}", file=sys.stderr)
            return 2
    else:
        a, b = os.path.abspath(args.a), os.path.abspath(args.b)
        for folder in (a, b):
            if not os.path.isdir(folder):
                print(f"agreement: {folder} is not a folder", file=sys.stderr)
                return 2

    record = {
        "command": shlex.join([sys.executable] + (sys.argv if argv is None
                                                  else [sys.argv[0]] + list(argv))),
        "cwd": os.getcwd(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tolerance": TOLERANCE,
        "a": describe_folder(a),
        "b": describe_folder(b),
        "machine": machine_info(),
        "environments": {},
        "peer_threads": int(PEER_THREADS),
        "peers_only": args.peers_only,
        "comparisons": [],
    }
    for side in ("a", "b"):
        d = record[side]
        print(f"{side.upper()} = {d['path']} ({d['n_images']} images, {d.get('sizes', '?')})")
    if any(record[side].get("sizes", "").startswith("mixed") for side in ("a", "b")):
        print("note: images of mixed sizes: " + ", ".join(SAME_SIZE_PEERS) + " (as run_peer.py "
              "runs them, in batches) need images of one size and will fail")
    record["environments"]["peers"] = env_info(args.peers_python, PEER_DISTS)
    if not args.peers_only:
        record["environments"]["fidkit"] = env_info(args.fidkit_python, FIDKIT_DISTS)

    fidkit_runs = {}
    for protocol, peer in comparisons:
        peer_rec = run_peer(args.peers_python, run_peer_py, peer, a, b, args.timeout)
        if args.peers_only:
            fk_rec = None
        elif protocol not in fidkit_runs:
            fk_rec = fidkit_runs[protocol] = run_fidkit(args.fidkit_python, protocol, a, b,
                                                        args.timeout)
        else:
            fk_rec = fidkit_runs[protocol]
        c = {
            "protocol": protocol,
            "peer": peer,
            "peer_fid": peer_rec["fid"],
            "peer_seconds": peer_rec["wall_seconds"],
            "peer_seconds_self_reported": peer_rec["seconds"],
            "peer_peak_rss_mib": peer_rec["peak_rss_mib"],
            "peer_command": peer_rec["command"],
            "peer_error": peer_rec["error"],
            "fidkit_fid": None, "fidkit_seconds": None, "fidkit_peak_rss_mib": None, "fidkit_command": None,
            "fidkit_error": None, "fidkit_output": None, "fidkit_notes": [],
            "rel_diff": None,
            "pass": None,
        }
        if fk_rec is not None:
            c.update(fidkit_fid=fk_rec["fid"], fidkit_seconds=fk_rec["wall_seconds"],
                     fidkit_peak_rss_mib=fk_rec["peak_rss_mib"],
                     fidkit_command=fk_rec["command"], fidkit_error=fk_rec["error"],
                     fidkit_output=fk_rec["output"], fidkit_notes=fk_rec["notes"])
            out = fk_rec["output"] or {}
            for key, side in (("n_a", "a"), ("n_b", "b")):
                n_files = record[side]["n_images"]
                if isinstance(out.get(key), int) and out[key] != n_files:
                    c["fidkit_notes"].append(f"fidkit {key}={out[key]}, folder has {n_files} images")
            if peer_rec["error"] is None and fk_rec["error"] is None:
                ref, got = peer_rec["fid"], fk_rec["fid"]
                c["rel_diff"] = abs(got - ref) / abs(ref) if ref != 0 else (0.0 if got == 0 else math.inf)
                c["pass"] = c["rel_diff"] <= TOLERANCE
            else:
                c["pass"] = False
        record["comparisons"].append(c)

    if args.peers_only:
        ok = all(c["peer_error"] is None for c in record["comparisons"])
    else:
        ok = all(c["pass"] for c in record["comparisons"])
    record["all_pass"] = None if args.peers_only else ok
    record["speed"], record["fastest_peer"] = speed_table(record)

    out_json = os.path.abspath(args.out)
    out_md = os.path.splitext(out_json)[0] + ".md"
    os.makedirs(os.path.dirname(out_json), exist_ok=True)
    with open(out_json, "w") as fh:
        json.dump(record, fh, indent=2)
        fh.write("\n")
    with open(out_md, "w") as fh:
        fh.write(markdown(record))
    print()
    print(markdown(record))
    print(f"wrote {out_json} and {out_md}")
    if args.peers_only:
        print("agreement: peers only, " + ("all ran" if ok else "a peer FAILED"))
    else:
        print("agreement: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
