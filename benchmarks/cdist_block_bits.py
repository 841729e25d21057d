"""Whether ``torch.cdist`` on a block of columns (or rows) gives the same bits as the same entries of
one wide call, by block width; and how many entries differ between the two orientations
(``cdist(a, b)`` against ``cdist(b, a).T``). Blocked metrics that promise a reference's exact
arithmetic (AuthPct, precision/recall) depend on it.

    python benchmarks/cdist_block_bits.py [--rows 1010] [--cols 3000] [--dim 2048]

Prints, per width, whether the column block and the row block equal the wide call's entries,
then the share of entries that differ between orientations. The result belongs to this torch
build and its BLAS (matrix-product path: more than 25 rows or columns).
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1010)
    ap.add_argument("--cols", type=int, default=3000)
    ap.add_argument("--dim", type=int, default=2048)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(args.rows, args.dim, generator=g)
    b = torch.randn(args.cols, args.dim, generator=g)
    full = torch.cdist(a, b)
    print(f"torch {torch.__version__}, {args.rows} x {args.cols} x {args.dim}")
    for w in (1, 5, 11, 12, 16, 25, 26, 64, 256, 1000):
        cols = all(torch.equal(full[:, lo:lo + w], torch.cdist(a, b[lo:lo + w])) for lo in (0, 7, 1000))
        rows = all(torch.equal(full[lo:lo + w], torch.cdist(a[lo:lo + w], b)) for lo in (0, 7, 500))
        print(f"width {w:5d}: column block {'equal' if cols else 'DIFFERS'}, row block {'equal' if rows else 'DIFFERS'}")
    other = torch.cdist(b, a).T
    print(f"orientation: {(full != other).float().mean().item():.4f} of the entries differ in their bits")


if __name__ == "__main__":
    main()
