"""The committed reference statistics: their manifest, and a part regenerated from the dataset."""
import hashlib
import json
from pathlib import Path

import pytest

import fidkit

REF = Path(__file__).resolve().parents[1] / "reference_stats"
MANIFEST = json.loads((REF / "manifest.json").read_text())


@pytest.mark.parametrize("entry", MANIFEST["files"], ids=lambda e: e["file"])
def test_manifest_matches_the_files(entry):
    path = REF / entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    st = fidkit.Statistics.load(path)
    assert (st.n, st.protocol, st.weights_digest) == (entry["images"], entry["protocol"], entry["weights_digest"])
    assert entry["command"].startswith("fidkit stats --dataset " + entry["dataset"])


def test_folder_stays_under_100_mb():
    assert sum(f.stat().st_size for f in REF.iterdir()) < 100e6


@pytest.mark.dataset
def test_first_500_test_images_reproduce_the_committed_values():
    import sys
    sys.path.insert(0, str(REF))
    from first500 import summary
    expected = json.loads((REF / "fashion-mnist-test-first500.json").read_text())
    got = summary()
    assert (got["n"], got["protocol"], got["weights_digest"]) == (500, "ttur", expected["weights_digest"])
    for key in ("mu_sum", "sigma_trace", "sigma_frobenius"):
        assert got[key] == pytest.approx(expected[key], rel=1e-6), key
    # 500 < 2048 images: a singular covariance, where the distance itself is only defined to ~1e-6
    assert got["fid_to_full_test"] == pytest.approx(expected["fid_to_full_test"], rel=1e-5)
