"""Reference IS, KID and precision/recall from torch-fidelity 0.4.0 on seeded synthetic inputs.

Run with the peers' Python (torch-fidelity installed), from the repository root:

    /tmp/fidkit-peers/bin/python benchmarks/scores_reference.py > tests/data/scores_reference.json

The inputs come from ``synthetic_inputs()`` (numpy ``RandomState``, so identical in every
environment); ``tests/test_scores.py`` regenerates them with the same function and checks
fidkit's values against the JSON written here. Only numpy is needed to import this module;
torch-fidelity is imported in ``main()``.
"""

from __future__ import annotations

import json
import sys

import numpy as np

# Each case: name -> parameters. Kept small so the fidkit side runs in seconds.
CASES = {
    "isc": {"n": 1000, "classes": 1008, "splits": 10, "seed": 2020},
    "isc_uneven": {"n": 997, "classes": 1008, "splits": 7, "seed": 123},
    "kid": {"n_a": 400, "n_b": 350, "dim": 2048, "subsets": 30, "subset_size": 300, "seed": 2020},
    "kid_same": {"n_a": 300, "n_b": 320, "dim": 2048, "subsets": 20, "subset_size": 250, "seed": 7, "same": True},
    "prc": {"n_real": 600, "n_fake": 500, "dim": 2048, "k": 3},
    "prc_k5": {"n_real": 300, "n_fake": 400, "dim": 64, "k": 5},
}


def synthetic_inputs(name: str) -> dict:
    """Seeded float32 inputs of case ``name``: pool3-like non-negative features, or logits."""
    p = CASES[name]
    rng = np.random.RandomState(sum(map(ord, name)))
    if name.startswith("isc"):
        logits = (rng.standard_normal((p["n"], p["classes"])) * 2.5).astype(np.float32)
        logits[:, : p["classes"] // 4] += rng.standard_normal((p["n"], 1)).astype(np.float32) * 3
        return {"logits": logits}
    if name.startswith("kid"):
        a = rng.gamma(0.5, 0.6, (p["n_a"], p["dim"])).astype(np.float32)
        shape_b = 0.5 if p.get("same") else 0.6
        b = rng.gamma(shape_b, 0.6, (p["n_b"], p["dim"])).astype(np.float32)
        return {"a": a, "b": b}
    # points near a 16-d subspace, the fake set shifted and wider: precision and recall both
    # strictly between 0 and 1
    w = rng.standard_normal((16, p["dim"])) / 4
    z_real = rng.standard_normal((p["n_real"], 16))
    z_fake = rng.standard_normal((p["n_fake"], 16)) * 1.3 + 0.4
    real = np.maximum(z_real @ w + 0.1 * rng.standard_normal((p["n_real"], p["dim"])), 0).astype(np.float32)
    fake = np.maximum(z_fake @ w + 0.1 * rng.standard_normal((p["n_fake"], p["dim"])), 0).astype(np.float32)
    return {"real": real, "fake": fake}


def main() -> None:
    import torch
    import torch_fidelity
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    out = {"torch_fidelity": torch_fidelity.__version__, "torch": torch.__version__, "numpy": np.__version__,
           "command": "/tmp/fidkit-peers/bin/python benchmarks/scores_reference.py > tests/data/scores_reference.json",
           "cases": {}}
    for name, p in CASES.items():
        x = synthetic_inputs(name)
        if name.startswith("isc"):
            r = isc_features_to_metric(torch.from_numpy(x["logits"]), p["splits"], True, p["seed"])
            res = {"isc_mean": r["inception_score_mean"], "isc_std": r["inception_score_std"]}
        elif name.startswith("kid"):
            r = kid_features_to_metric(torch.from_numpy(x["a"]), torch.from_numpy(x["b"]), kid_subsets=p["subsets"],
                                       kid_subset_size=p["subset_size"], rng_seed=p["seed"], verbose=False)
            res = {"kid_mean": r["kernel_inception_distance_mean"], "kid_std": r["kernel_inception_distance_std"]}
        else:
            # torch-fidelity's convention: input 1 is generated, input 2 is real
            r = prc_features_to_metric(torch.from_numpy(x["fake"]), torch.from_numpy(x["real"]),
                                       prc_neighborhood=p["k"], verbose=False)
            res = {"precision": r["precision"], "recall": r["recall"]}
        out["cases"][name] = {"params": p, "result": res}
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
