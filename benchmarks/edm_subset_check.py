"""Whether ``fidkit compute --subset N --subset-seed S`` picks the files that EDM's or EDM2's
metric scripts (``--num N --seed S``) pick, by running their own dataset class.

    python benchmarks/edm_subset_check.py EDM_OR_EDM2_CHECKOUT [--files 40] [--n 17] [--seeds 0,1,5,2147483649]

Writes ``--files`` small PNGs in nested folders (names chosen so that sorting by path and by
folder walk differ), and the same files in a zip, then for each source and seed compares the relative paths that the checkout's
``training.dataset.ImageFolderDataset(path, max_size=n, random_seed=seed)`` keeps with those of
:func:`fidkit.sources.seeded_subset` over :func:`fidkit.sources.list_images`. The checkout is
imported as it is (its ``dnnlib`` imports ``requests`` at module level; a stub stands in for it
when it is not installed, as nothing here downloads). Prints one line per seed and exits 1 on a
difference.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _relative(label: str, root: Path) -> str:
    """A folder image's path, or an archive member's label (``ARCHIVE:MEMBER``), relative to the root."""
    prefix = f"{root}:"
    return label[len(prefix):] if label.startswith(prefix) else Path(label).relative_to(root).as_posix()


def main() -> int:
    from PIL import Image

    from fidkit.sources import as_images, seeded_subset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", type=Path, help="a clone of NVlabs/edm or NVlabs/edm2")
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--n", type=int, default=17)
    ap.add_argument("--seeds", default="0,1,5,2147483649")
    args = ap.parse_args()
    sys.path.insert(0, str(args.checkout.resolve()))
    import importlib.util
    if importlib.util.find_spec("requests") is None:
        sys.modules["requests"] = types.ModuleType("requests")
    from training.dataset import ImageFolderDataset

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.files):  # 'a/…', 'a-b/…', 'a_…' and top-level files interleave differently
            sub = ("a", "a-b", "", "z")[i % 4]
            (root / sub).mkdir(exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(root / sub / f"a_{i:03d}.png")
        archive = Path(tmp + ".zip")  # the same files in a zip, members in walk order (not sorted)
        with zipfile.ZipFile(archive, "w") as z:
            for dirpath, _, names in os.walk(root):
                for name in names:
                    z.write(Path(dirpath) / name, (Path(dirpath) / name).relative_to(root).as_posix())
        try:
            for kind, path in (("folder", root), ("zip", archive)):
                for seed in (int(s) for s in args.seeds.split(",")):
                    ref = ImageFolderDataset(str(path), max_size=args.n, random_seed=seed)
                    theirs = [ref._image_fnames[i] for i in ref._raw_idx]
                    picked = seeded_subset(as_images(str(path)), args.n, seed)
                    ours = [_relative(picked.label(i), path) for i in range(len(picked))]
                    same = theirs == ours
                    ok &= same
                    print(f"{kind}, seed {seed}: {len(ours)} of {args.files} files, "
                          f"{'same' if same else 'DIFFERENT'} (first: {ours[:3]})")
        finally:
            archive.unlink()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
