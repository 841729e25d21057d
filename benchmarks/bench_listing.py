"""How long listing a large folder takes: fidkit's own listing (``list_images``), the check
of EDM's and EDM2's listing that ``compute --subset`` adds (``nvidia_listing_note``), and
dgm-eval's listing and cut that ``--nsample`` adds (``dgm_eval_subset``, to half the files).

    python benchmarks/bench_listing.py [--files 200000] [--per-folder 1000]

Writes ``--files`` empty ``.png`` names in folders of ``--per-folder`` (nothing is decoded:
both only list), then times each step once and prints seconds. The folder is removed after.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from fidkit.sources import as_images, dgm_eval_subset, nvidia_listing_note

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--per-folder", type=int, default=1000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        for i in range(args.files):
            sub = tmp / f"{i // args.per_folder:05d}"
            if i % args.per_folder == 0:
                sub.mkdir()
            (sub / f"{i:08d}.png").touch()
        t0 = time.perf_counter()
        images = as_images(str(tmp))
        t1 = time.perf_counter()
        note = nvidia_listing_note(str(tmp), images, args.files)
        t2 = time.perf_counter()
        _, dgm_note = dgm_eval_subset(images, args.files // 2, 13579, str(tmp))
        t3 = time.perf_counter()
        print(f"{len(images)} files: list_images {t1 - t0:.2f} s, nvidia_listing_note {t2 - t1:.2f} s "
              f"(note: {note}), dgm_eval_subset {t3 - t2:.2f} s (note: {dgm_note})")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
