"""fidkit stats fetch: the registry of published statistics, trust on first download.

A local HTTP server stands in for the publishers (these machines have no internet): it
serves plain mu/sigma files as TTUR and clean-fid publish them.
"""

import hashlib
import http.server
import json
import threading

import numpy as np
import pytest

import fidkit
from fidkit import registry
from fidkit.cli import main
from fidkit.errors import StatsError
from fidkit.registry import Published


@pytest.fixture()
def server(tmp_path):
    """An HTTP server on localhost serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def entry(server, tmp_path, monkeypatch):
    """A registry entry 'test-stats' (protocol ttur) published by the local server; the cache in tmp_path."""
    www, base = server
    monkeypatch.setenv("FIDKIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8))
    mu, sigma = x.mean(0).astype(np.float32), np.cov(x, rowvar=False).astype(np.float32)
    np.savez(www / "stats.npz", mu=mu, sigma=sigma)  # as TTUR publishes them: float32, no metadata
    e = Published("test-stats", base + "stats.npz", "ttur", "a test set", "tests")
    monkeypatch.setitem(registry.PUBLISHED, e.name, e)
    return e, www / "stats.npz", mu, sigma


def test_first_download_records_the_digest_and_keeps_mu_sigma(entry):
    e, published, mu, sigma = entry
    said = []
    path = registry.fetch(e.name, say=said.append)
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert registry.recorded_digests() == {e.name: digest, f"{e.name}#cached": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert any("recorded sha256" in m for m in said)
    st = fidkit.Statistics.load(path)  # a fidkit file: no provenance warning
    assert np.array_equal(st.mu, mu.astype(np.float64)) and np.array_equal(st.sigma, sigma.astype(np.float64))
    assert st.protocol == "ttur" and st.weights_digest is None
    assert st.extra["url"] == e.url and st.extra["download_sha256"] == digest
    kept = sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock"))  # lock files stay
    assert kept == ["digests.json", "test-stats.npz"]  # no leftovers


def test_later_fetches_use_the_cache_and_check_the_record(entry):
    e, published, _, _ = entry
    first = registry.fetch(e.name, say=lambda m: None)
    published.unlink()  # the publisher is gone: the cached copy still serves
    assert registry.fetch(e.name, say=lambda m: None) == first
    record = registry.stats_dir() / "digests.json"
    record.write_text(json.dumps({e.name: "0" * 64}))
    with pytest.raises(StatsError, match="does not match the digest recorded"):
        registry.fetch(e.name)


def test_a_cached_copy_changed_since_it_was_written_is_refused(entry):
    """The converted file's own bytes are recorded: a copy rewritten with other numbers and the
    same metadata (which the download digest alone would let pass) is refused."""
    e, *_ = entry
    path = registry.fetch(e.name, say=lambda m: None)
    st = fidkit.Statistics.load(path)
    fidkit.Statistics(st.mu + 1, st.sigma, st.n, st.protocol, st.weights_digest, extra=st.extra).save(path)
    with pytest.raises(StatsError, match="has changed since it was written"):
        registry.fetch(e.name, say=lambda m: None)
    record = json.loads((registry.stats_dir() / "digests.json").read_text())
    del record[f"{e.name}#cached"]  # a cache written before the bytes were recorded: trusted on its next use
    (registry.stats_dir() / "digests.json").write_text(json.dumps(record))
    assert registry.fetch(e.name, say=lambda m: None) == path
    assert f"{e.name}#cached" in registry.recorded_digests()


def test_a_changed_upstream_file_is_refused(entry):
    e, published, mu, sigma = entry
    path = registry.fetch(e.name, say=lambda m: None)
    path.unlink()  # fetch again: the publisher now serves other numbers
    np.savez(published, mu=mu + 1, sigma=sigma)
    with pytest.raises(StatsError, match="first download had"):
        registry.fetch(e.name, say=lambda m: None)
    assert not path.exists()


def test_fetched_statistics_are_checked_for_their_protocol(entry):
    e, *_ = entry
    st = fidkit.Statistics.load(registry.fetch(e.name, say=lambda m: None))
    other = fidkit.Statistics(st.mu + 0.1, st.sigma, 50, "clean", None)
    with pytest.raises(StatsError, match="protocol"):
        fidkit.frechet_distance(st, other)
    same = fidkit.Statistics(st.mu + 0.1, st.sigma, 50, "ttur", "f" * 64)
    assert float(fidkit.frechet_distance(st, same)) == pytest.approx(0.08, rel=1e-9)


def fidkit_cli(capsys, *args):
    """Runs the fidkit command line in-process: (exit status, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_fetch_list_output_and_errors(entry, tmp_path, capsys):
    e, *_ = entry
    code, out, _ = fidkit_cli(capsys, "stats", "fetch", "--json")
    assert code == 0
    names = [row["name"] for row in json.loads(out)]
    assert "ttur-cifar10-train" in names and "cleanfid-cifar10-train-32-clean" in names and e.name in names
    mine = tmp_path / "mine.npz"
    code, out, err = fidkit_cli(capsys, "stats", "fetch", e.name, "-o", str(mine), "--json")
    assert code == 0, err
    assert json.loads(out)["protocol"] == "ttur" and mine.is_file()
    code, out, err = fidkit_cli(capsys, "stats", "fetch", "no-such-stats")
    assert code == 1 and err.count("\n") == 1 and "no published statistics named 'no-such-stats'" in err
    code, _, _ = fidkit_cli(capsys, "stats", "fetch", "a", "b")
    assert code == 2


def test_offline_fetch_fails_in_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIDKIT_CACHE", str(tmp_path / "cache"))
    # a port nothing listens on: the connection is refused, as without internet
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    e = Published("offline-stats", f"http://127.0.0.1:{port}/x.npz", "ttur", "x", "tests")
    monkeypatch.setitem(registry.PUBLISHED, e.name, e)
    code, out, err = fidkit_cli(capsys, "stats", "fetch", e.name)
    assert code == 1 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("fidkit: error:")]
    assert len(errors) == 1 and "needs the internet" in errors[0]
    left = list((tmp_path / "cache").rglob("*")) if (tmp_path / "cache").exists() else []
    assert all(p.is_dir() or p.name.endswith(".lock") for p in left)  # lock files stay, empty


def test_registry_names_and_protocols_are_consistent():
    for name, p in registry.PUBLISHED.items():
        assert name == p.name and p.protocol in ("ttur", "pytorch-fid", "clean")
        assert p.url.startswith(("http://", "https://")) and p.url.endswith(".npz")
    assert registry.PUBLISHED["cleanfid-cifar10-train-32-legacy-tensorflow"].protocol == "ttur"
    assert registry.PUBLISHED["cleanfid-cifar10-train-32-legacy-pytorch"].protocol == "pytorch-fid"
    assert registry.PUBLISHED["cleanfid-cifar10-train-32-legacy-pytorch"].url.endswith(
        "cifar10_legacy_pytorch_train_32.npz")
