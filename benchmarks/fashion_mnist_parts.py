"""Statistics of two disjoint parts of the Fashion-MNIST test set, for the singular-covariance
rows of ``sqrtm_vs_eig.py`` (500 images < 2048 dimensions: rank-deficient covariances).

    python benchmarks/fashion_mnist_parts.py OUT_DIR [--n 500]

Writes OUT_DIR/fm-test-0-N.npz (test images [0, N)) and OUT_DIR/fm-test-N-2N.npz ([N, 2N)),
protocol ttur, CPU, batch size 32. Needs ``apt-get install dataset-fashion-mnist``.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fidkit  # noqa: E402
from fidkit.sources import dataset_images  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--n", type=int, default=500)
    args = p.parse_args()
    out, n = Path(args.out_dir), args.n
    out.mkdir(parents=True, exist_ok=True)
    images = dataset_images("fashion-mnist-test")
    for lo in (0, n):
        st = fidkit.compute_stats(images[lo:lo + n], device="cpu", batch_size=32, progress=False)
        st.save(out / f"fm-test-{lo}-{lo + n}.npz")
        print(out / f"fm-test-{lo}-{lo + n}.npz")


if __name__ == "__main__":
    main()
