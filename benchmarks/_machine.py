"""Facts about the machine a benchmark ran on, shared by the benchmark scripts (run as
``python benchmarks/NAME.py``, so this folder is on their import path)."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(script: str) -> dict:
    """``command`` (``python benchmarks/SCRIPT`` and this process's arguments), ``git_commit``
    (HEAD of the repository holding this folder), ``machine`` (:func:`cpu_model`) and ``date``
    (UTC), for a benchmark's result file."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    return {"command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]), "git_commit": commit,
            "machine": cpu_model(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
