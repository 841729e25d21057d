"""Summary values of the first 500 Fashion-MNIST test images' statistics, to check in CI
that fidkit still reproduces reference_stats/fashion-mnist-test.npz's pipeline.

    python reference_stats/first500.py > reference_stats/fashion-mnist-test-first500.json

Values: image count, Σ mu, tr sigma, ‖sigma‖_F, and the FID of these 500 images against
the committed statistics of all 10,000 (protocol ttur, CPU, batch size 32).
"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import fidkit  # noqa: E402
from fidkit.sources import dataset_images  # noqa: E402

N = 500


def summary() -> dict:
    st = fidkit.compute_stats(dataset_images("fashion-mnist-test")[:N], device="cpu", batch_size=32,
                              progress=False)
    full = fidkit.Statistics.load(HERE / "fashion-mnist-test.npz")
    return {"n": st.n, "protocol": st.protocol, "weights_digest": st.weights_digest,
            "mu_sum": float(st.mu.sum()), "sigma_trace": float(np.trace(st.sigma)),
            "sigma_frobenius": float(np.linalg.norm(st.sigma)),
            "fid_to_full_test": float(fidkit.frechet_distance(st, full)),
            "command": "python reference_stats/first500.py > reference_stats/fashion-mnist-test-first500.json"}


if __name__ == "__main__":
    print(json.dumps(summary(), indent=2))
