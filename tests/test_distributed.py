"""fidkit under torchrun: 2 gloo ranks on the CPU against one process, on a few images of tests/data.

Each run is ``python -m torch.distributed.run --nproc-per-node 2 -m fidkit ...`` in a subprocess
with the ranks' output redirected to files (``--log-dir``, ``-r 3``), so that what each rank
printed can be read apart. Both sides run with one torch thread (``OMP_NUM_THREADS=1``, what
torchrun sets for several ranks): the CPU's convolutions give other float32 features with
other thread counts, and the guarantee is equality with one process of the same settings.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import DATA, run_fidkit
from fidkit.distributed import share_bounds
from fidkit.stats import Statistics

TIMEOUT = 300  # seconds: a hang fails the test instead of holding up the run
ENV = {"OMP_NUM_THREADS": "1", "FIDKIT_DISTRIBUTED_TIMEOUT": "120", "PYTHONWARNINGS": "default"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_command(logs, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
            "--master-port", str(_free_port()), "--log-dir", str(logs), "-r", "3", "-m", "fidkit", *map(str, args)]


def _rank_output(logs) -> dict:
    """{local rank: (stdout, stderr)} from torchrun's log folder (one attempt)."""
    out = {}
    for rank in (0, 1):
        found = list(logs.glob(f"*/attempt_0/{rank}"))
        assert len(found) == 1, list(logs.rglob("*"))
        out[rank] = ((found[0] / "stdout.log").read_text(), (found[0] / "stderr.log").read_text())
    return out


def torchrun(logs, *args):
    """Runs fidkit on 2 ranks; returns (exit status, {rank: (stdout, stderr)}, torchrun's own output)."""
    r = subprocess.run(_torchrun_command(logs, *args), capture_output=True, text=True, timeout=TIMEOUT,
                       env={**os.environ, **ENV})
    return r.returncode, _rank_output(logs), r.stdout + r.stderr


@pytest.fixture(scope="module")
def with_bad(tmp_path_factory):
    """The 10 images of real_a and, sorted last, a file that is not an image: with batches of 4,
    rank 0 reads items 0..3 and rank 1 items 4..10, the bad file among them."""
    folder = tmp_path_factory.mktemp("with_bad")
    for p in sorted((DATA / "real_a").glob("*.png")):
        shutil.copy(p, folder / p.name)
    (folder / "zz_bad.png").write_bytes(b"not an image")
    return folder


@pytest.fixture(scope="module")
def b6(tmp_path_factory):
    """The first 6 images of real_b."""
    folder = tmp_path_factory.mktemp("b6")
    for p in sorted((DATA / "real_b").glob("*.png"))[:6]:
        shutil.copy(p, folder / p.name)
    return folder


def test_share_bounds_cut_at_batches_and_cover_everything_in_rank_order():
    for n in (0, 1, 5, 10, 11, 16, 17, 100):
        for bs in (1, 3, 4, 16):
            for world in (1, 2, 3, 8):
                blocks = [share_bounds(n, bs, r, world) for r in range(world)]
                assert blocks[0][0] == 0 and blocks[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))  # contiguous, in rank order
                assert all(lo % bs == 0 or lo == n for lo, _ in blocks)       # every batch as in one process
                sizes = [hi - lo for lo, hi in blocks]
                assert max(sizes) - min(sizes) <= bs                          # nearly equal


def test_stats_equal_one_process_and_skipped_files_are_merged(tmp_path, with_bad, real_weights):
    args = ("stats", with_bad, "--skip-bad", "--batch-size", "4", "--workers", "1", "--device", "cpu", "--json")
    code, out, _ = torchrun(tmp_path / "logs", *args, "-o", tmp_path / "two.npz")
    assert code == 0, out
    one = run_fidkit(*args, "-o", tmp_path / "one.npz", env=ENV)
    d, s = Statistics.load(tmp_path / "two.npz"), Statistics.load(tmp_path / "one.npz")
    assert d.n == s.n == 10
    np.testing.assert_allclose(d.mu, s.mu, rtol=1e-12, atol=0)
    np.testing.assert_allclose(d.sigma, s.sigma, rtol=1e-12, atol=0)
    assert np.array_equal(d.mu, s.mu) and np.array_equal(d.sigma, s.sigma)  # in fact bit for bit
    assert d.extra["skipped"] == s.extra["skipped"] == [str(with_bad / "zz_bad.png")]
    # rank 0 alone prints: the same JSON line as one process (but the path) and the warning, once
    info_two, info_one = json.loads(out[0][0]), json.loads(one.stdout)
    assert {**info_two, "path": None} == {**info_one, "path": None}
    assert out[0][1].count("fidkit: warning:") == 1 and "skipped 1 file(s)" in out[0][1]
    assert out[1] == ("", "")


@pytest.mark.parametrize("subset", [(), ("--subset", "4"), ("--nsample", "5")], ids=["all", "subset", "nsample"])
def test_compute_json_equals_one_process(tmp_path, real_a, b6, real_weights, subset):
    args = ("compute", real_a, b6, "--json", "--metrics", "fid,kid,pr", "--batch-size", "3", "--workers", "0",
            "--device", "cpu", *subset)
    code, out, _ = torchrun(tmp_path / "logs", *args)
    assert code == 0, out
    one = run_fidkit(*args, env=ENV)
    two, one_out = json.loads(out[0][0]), json.loads(one.stdout)
    # the ranks share B's picked images (and A's, cut by nsample)
    assert (two["n_a"], two["n_b"]) == {(): (10, 6), ("--subset", "4"): (10, 4), ("--nsample", "5"): (5, 5)}[subset]
    assert set(two) == set(one_out)
    for key in two:
        if isinstance(two[key], float) and key != "seconds":
            assert two[key] == pytest.approx(one_out[key], rel=1e-12, abs=0), key
        elif key != "seconds":
            assert two[key] == one_out[key], key
    assert {k: v for k, v in two.items() if k != "seconds"} == {k: v for k, v in one_out.items() if k != "seconds"}
    assert out[0][1] == one.stderr  # the same warnings (few images), once
    assert out[1] == ("", "")


def test_inception_score_from_the_gathered_logits_equals_one_process(tmp_path, b6, real_weights):
    """The logits (1008 per image) travel too: ``fidkit is`` with a seeded random classifier on top
    of the real weights (the real classifier is not downloadable here)."""
    import torch

    from fidkit.weights import Weights, save

    g = torch.Generator().manual_seed(1234)
    tensors = dict(real_weights.tensors)
    tensors["fc.weight"] = (torch.randn(1008, 2048, generator=g) * 0.1).numpy()
    tensors["fc.bias"] = torch.zeros(1008).numpy()
    save(Weights(tensors, real_weights.digest, True, "seeded random classifier (test)"), tmp_path / "w.npz")
    args = ("is", b6, "--splits", "2", "--json", "--batch-size", "2", "--workers", "0", "--device", "cpu",
            "--weights", tmp_path / "w.npz")
    code, out, _ = torchrun(tmp_path / "logs", *args)
    assert code == 0, out
    two, one = json.loads(out[0][0]), json.loads(run_fidkit(*args, env=ENV).stdout)
    assert two["isc_mean"] > 1 and two == one
    assert out[1] == ("", "")


def test_sample_batch_with_sfid_statistics_equal_one_process(tmp_path, real_weights):
    """A compressed sample batch (read forward only: rank 1 skips to its block) with sFID statistics."""
    from PIL import Image

    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((48, 48)))
                  for p in sorted((DATA / "real_b").glob("*.png"))[:7]])
    np.savez_compressed(tmp_path / "batch.npz", arr_0=x)
    args = ("stats", tmp_path / "batch.npz", "--metrics", "fid,sfid", "--batch-size", "2", "--device", "cpu")
    code, out, _ = torchrun(tmp_path / "logs", *args, "-o", tmp_path / "two.npz")
    assert code == 0, out
    run_fidkit(*args, "-o", tmp_path / "one.npz", env=ENV)
    d, s = Statistics.load(tmp_path / "two.npz"), Statistics.load(tmp_path / "one.npz")
    assert d.n == s.n == 7 and d.spatial.n == 7
    for a, b in ((d, s), (d.spatial, s.spatial)):
        np.testing.assert_allclose(a.mu, b.mu, rtol=1e-12, atol=0)
        np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-12, atol=0)
    assert (tmp_path / "two.npz").read_bytes() == (tmp_path / "one.npz").read_bytes()  # the same file


def test_adm_float32_means_equal_one_process(tmp_path, real_weights):
    """`fidkit adm`'s float32 means add the rows one after another in file order: rank 0 folds
    every rank's rows in that order, so FID and sFID are one process's to the bit."""
    from PIL import Image

    for name, folder, n in (("ref", "real_a", 6), ("sample", "real_b", 7)):
        x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((40, 40)))
                      for p in sorted((DATA / folder).glob("*.png"))[:n]])
        np.savez(tmp_path / f"{name}.npz", arr_0=x)
    args = ("adm", tmp_path / "ref.npz", tmp_path / "sample.npz", "--json", "--batch-size", "2", "--workers", "0",
            "--device", "cpu")
    code, out, _ = torchrun(tmp_path / "logs", *args)
    assert code == 0, out
    two, one = json.loads(out[0][0]), json.loads(run_fidkit(*args, env=ENV).stdout)
    assert two["means"] == "float32" and (two["n_ref"], two["n_sample"]) == (6, 7)
    assert {k: v for k, v in two.items() if k != "seconds"} == {k: v for k, v in one.items() if k != "seconds"}
    assert out[1] == ("", "")


def test_an_error_on_one_rank_ends_both_naming_it(tmp_path, with_bad, real_weights):
    t0 = time.monotonic()
    code, out, agent = torchrun(tmp_path / "logs", "stats", with_bad, "--batch-size", "4", "--workers", "0",
                                "--device", "cpu", "-o", tmp_path / "out.npz")
    assert code != 0 and time.monotonic() - t0 < TIMEOUT
    lines = out[0][1].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fidkit: error: rank 1 of 2: ")
    assert f"{with_bad / 'zz_bad.png'}: cannot decode image" in lines[0] and "Traceback" not in out[0][1]
    assert out[1] == ("", "")  # rank 1 exits with rank 0's status, silently
    assert agent.count("exitcode  : 1") == 2  # torchrun's report: both ranks ended with status 1
    root = agent.split("Root Cause", 1)[1]
    assert "rank      : 0 (local_rank: 0)" in root.split("====", 1)[0]  # rank 0, which said why, is the cause
    assert not (tmp_path / "out.npz").exists()


def _rank_pid(parent: int, rank: int) -> int | None:
    """The process below ``parent`` whose environment says RANK=rank (torchrun's worker)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if f"RANK={rank}".encode() in env:
            return int(entry)
    return None


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the rank's process through /proc")
def test_a_killed_rank_does_not_hang_the_other(tmp_path, real_a, real_weights):
    proc = subprocess.Popen(_torchrun_command(tmp_path / "logs", "stats", real_a, "--batch-size", "1", "--workers",
                                              "0", "--device", "cpu", "-o", tmp_path / "out.npz"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **ENV})
    try:
        deadline = time.monotonic() + 60
        pid = None
        while pid is None and time.monotonic() < deadline and proc.poll() is None:
            pid = _rank_pid(proc.pid, 1)
            time.sleep(0.05)
        assert pid is not None, "rank 1 never started"
        time.sleep(1.0)  # joined the group, reading its images
        os.kill(pid, signal.SIGKILL)
        agent, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "Signal 9 (SIGKILL)" in agent or "SIGKILL" in agent, agent
    assert not (tmp_path / "out.npz").exists()


def test_archives_under_torchrun_equal_one_process_on_the_folder(tmp_path, real_weights):
    """Each rank opens the archive itself and reads its block: a zip (random access) and a
    .tar.gz (read in order by each rank) give the folder's statistics, bit for bit."""
    import tarfile
    import zipfile
    files = sorted((DATA / "real_a").glob("*.png"))
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        for p in files:
            z.write(p, f"nested/{p.name}")
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as t:
        for p in files:
            t.add(p, f"./{p.name}")
    common = ("--batch-size", "4", "--workers", "1", "--device", "cpu")
    run_fidkit("stats", DATA / "real_a", "-o", tmp_path / "folder.npz", *common, env=ENV)
    folder = Statistics.load(tmp_path / "folder.npz")
    for name in ("a.zip", "a.tar.gz"):
        code, out, _ = torchrun(tmp_path / f"logs-{name}", "stats", tmp_path / name, "-o", tmp_path / f"{name}.npz",
                                *common)
        assert code == 0, out
        st = Statistics.load(tmp_path / f"{name}.npz")
        assert st.n == 10 and np.array_equal(st.mu, folder.mu) and np.array_equal(st.sigma, folder.sigma), name


def test_a_named_dataset_travels_as_its_name(tmp_path, real_weights):
    """``--dataset``: each rank reads the dataset file itself (what travels through the store is
    its name, not the array: 141 MB for Fashion-MNIST's training set), with the statistics of
    one process, bit for bit."""
    import pickle
    from conftest import FASHION_MNIST_MINI
    from fidkit.sources import DatasetImages
    env = {**ENV, "FIDKIT_DATASETS": str(FASHION_MNIST_MINI)}
    os.environ["FIDKIT_DATASETS"], before = str(FASHION_MNIST_MINI), os.environ.get("FIDKIT_DATASETS")
    try:
        images = DatasetImages("fashion-mnist-test", 200)
        sent = pickle.dumps(images)
        assert len(sent) < 1000 and np.array_equal(pickle.loads(sent).array, images.array)
    finally:
        if before is None:
            del os.environ["FIDKIT_DATASETS"]
        else:
            os.environ["FIDKIT_DATASETS"] = before
    common = ("stats", "--dataset", "fashion-mnist-test", "--batch-size", "64", "--device", "cpu")
    r = subprocess.run(_torchrun_command(tmp_path / "logs", *common, "-o", tmp_path / "two.npz"), capture_output=True,
                       text=True, timeout=TIMEOUT, env={**os.environ, **env})
    assert r.returncode == 0, _rank_output(tmp_path / "logs")
    run_fidkit(*common, "-o", tmp_path / "one.npz", env=env)
    two, one = Statistics.load(tmp_path / "two.npz"), Statistics.load(tmp_path / "one.npz")
    assert two.n == one.n == 256 and np.array_equal(two.mu, one.mu) and np.array_equal(two.sigma, one.sigma)
