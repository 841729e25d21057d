import torch

from fidkit import pipeline as features
from fidkit.api import network


class RecordingLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_heap_reuse_is_set_for_the_outermost_pass_and_restored(monkeypatch):
    libc = RecordingLibc()
    monkeypatch.setattr(features, "_GLIBC", libc)
    cpu = torch.device("cpu")
    with features.reuse_freed_memory(cpu):
        assert libc.calls == [("mallopt", -4, 0), ("mallopt", -1, 1 << 30)]
        with features.reuse_freed_memory(cpu):  # nested: no change
            pass
        assert len(libc.calls) == 2
    assert libc.calls[2:] == [("mallopt", -4, 65536), ("mallopt", -1, 128 * 1024), ("malloc_trim", 0)]


def test_heap_reuse_restores_on_error_and_skips_other_devices(monkeypatch):
    libc = RecordingLibc()
    monkeypatch.setattr(features, "_GLIBC", libc)
    try:
        with features.reuse_freed_memory(torch.device("cpu")):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert libc.calls[-1] == ("malloc_trim", 0) and features._heap_depth == 0
    libc.calls.clear()
    with features.reuse_freed_memory(torch.device("meta")):
        pass
    assert libc.calls == []


def test_heap_reuse_leaves_features_bit_identical(real_weights):
    cpu = torch.device("cpu")
    net = network(real_weights, cpu, "fp32")
    x = (torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        plain = net(x)
        with features.reuse_freed_memory(cpu):
            reused = net(x)
    assert torch.equal(plain, reused)


def test_folded_batch_norm_gives_the_same_features(real_weights):
    from fidkit.weights import build_network
    net = build_network(real_weights)
    folded = build_network(real_weights).fold_batch_norm()
    assert all(m.bn is None for m in folded.modules() if hasattr(m, "bn"))
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.inference_mode():
        a, b = net(x), folded(x)
    assert float((a - b).norm() / a.norm()) < 1e-5


def test_the_cpu_network_keeps_its_batch_norms(real_weights):
    # folding would move every CPU statistics file (the committed ones too) by ~1e-6
    net = network(real_weights, torch.device("cpu"), "fp32")
    assert all(m.bn is not None for m in net.modules() if hasattr(m, "bn"))


def test_progress_line_names_the_source_and_the_time_left(capsys, monkeypatch):
    clock = [1000.0]  # a clock of the test's own: a busy machine's pauses do not change the rate shown
    monkeypatch.setattr(features.time, "perf_counter", lambda: clock[0])
    bar = features.Progress(250, "A " + "x/" * 40 + "real", enabled=True)
    clock[0] += 10.0  # 160 images in 10 s: 16 images/s, 90 left: 0:06
    bar.update(160)
    line = capsys.readouterr().err.strip("\r")
    assert line.startswith("fidkit …") and line.split(" [")[0].endswith("x/real")
    assert len(line.split(" [")[0]) == len("fidkit ") + features.Progress.LABEL_CHARS
    assert "160/250" in line and "16.0 images/s, 0:06 left" in line
    short = features.Progress(4, "B samples/", enabled=True)
    assert short.line(short.t0).startswith("fidkit B samples/ [") and short.line(short.t0).endswith("--:-- left")


def test_an_unknown_precision_reads_as_the_apis_refusal():
    import pytest

    from fidkit.errors import SourceError

    for call in (lambda: features.check_precision(torch.device("cpu"), "fp8"),
                 lambda: features.precision(torch.device("cpu"), "fp8").__enter__()):
        with pytest.raises(SourceError, match=r"^precision must be one of fp32, tf32, bf16, tf32x3, got 'fp8'$"):
            call()
