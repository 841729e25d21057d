"""The resumable TTUR studies (fidkit.ttur.studies and its commands), mechanics only.

Tiny generators trained on a few images written to a temporary folder (no dataset
needed) and a stand-in for the Inception evaluation: what is checked is that each run
writes its own result file after each evaluation with its provenance, that finished runs
are skipped and unfinished ones continue exactly, that the study files say what is
missing, and that fewer than 2048 images are refused outside --quick. The findings are
in benchmarks/results, not here.
"""

import json
import math
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from fidkit.ttur import cli as ttur_cli
from fidkit.ttur import analysis, studies
from fidkit.ttur.train import weights_digest

ROOT = pathlib.Path(__file__).parent.parent
REFERENCE = ROOT / "reference_stats" / "fashion-mnist-test.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def images(tmp_path):
    """64 random 28×28 grayscale PNGs."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


class StubEvaluate:
    """Stands in for Evaluations.evaluate: a "FID" from the weights (distinct per generator,
    the same for the same weights), counting its calls; ``fail_at`` raises on that call."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, evals, generator, z_seed, truncation=None, pr=False):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt
        digest = weights_digest(generator)
        fid = 50.0 + int(digest[:6], 16) % 1000 / 10.0 + (0 if truncation is None else 10.0 / truncation)
        r = {"fid": fid, "n": 4, "kid_mean": fid / 1000, "kid_std": 0.001, "eval_seconds": 0.0,
             "generator_sha256": digest, "warnings": [], "cached": False}
        if pr:
            t = 10.0 if truncation is None else truncation
            r.update(precision=1 - t / 20, recall=t / 20, density=1.0, coverage=t / 30)
        return r


@pytest.fixture
def stub(monkeypatch):
    s = StubEvaluate()
    monkeypatch.setattr(studies.Evaluations, "evaluate", lambda self, *a, **k: s(self, *a, **k))
    return s


def _run(capsys, *args):
    with pytest.raises(SystemExit) as e:
        ttur_cli.main([str(a) for a in args])
        raise SystemExit(0)
    err = capsys.readouterr().err
    return e.value.code, [line for line in err.splitlines() if line.strip()]


def _quick(tmp_path, images):
    return ["--quick", "--eval-n", 4, "--real-n", 4, "--eval-batch-size", 4, "--data", images, "--device", "cpu",
            "--reference", REFERENCE, "--runs", tmp_path / "runs", "--work", tmp_path / "work", "--results",
            tmp_path / "res"]


@pytest.mark.parametrize("command", ["compare-timescales", "critical-batch", "truncation", "studies"])
def test_studies_refuse_fewer_than_2048_images(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, command, "--eval-n", 500)
    assert code == 2 and len(err) == 1 and "2048" in err[0] and "--quick" in err[0], err
    code, err = _run(capsys, command, "--real-n", 1000)
    assert code == 2 and "2048" in err[0], err
    assert not any(tmp_path.iterdir())


def test_timescales_runs_files_skip_and_incomplete(tmp_path, images, capsys, stub):
    args = ["compare-timescales", "--archs", "dcgan", "--seeds", 2, *_quick(tmp_path, images)]
    code, err = _run(capsys, *args, "--max-runs", 2)
    assert code == 0, err
    doc = json.loads((tmp_path / "res" / "ttur_timescales.json").read_text())
    assert doc["complete"] is False and "INCOMPLETE" in doc["status"] and len(doc["missing_runs"]) == 4
    assert (tmp_path / "res" / "ttur_timescales.png").read_bytes()[:8] == PNG_MAGIC
    first = sorted((tmp_path / "runs" / "timescales").glob("*.json"))
    assert [p.stem for p in first] == ["dcgan-single-slow-s0", "dcgan-ttur-s0"]  # seeds outermost
    run = json.loads(first[0].read_text())
    assert run["complete"] and [e["step"] for e in run["evals"]] == [0, 1, 2]
    s = run["sessions"][0]
    assert s["command"].startswith("fidkit-ttur compare-timescales") and s["started"] and s["finished"]
    assert {"git_commit", "machine", "host"} <= set(s) and "torch CPU capability" in s["machine"]
    assert run["evaluation"]["n"] == 4 and run["evaluation"]["reference_sha256"]
    before = {p.name: p.read_text() for p in first}
    calls = stub.calls
    code, err = _run(capsys, *args)
    assert code == 0, err
    assert all((tmp_path / "runs" / "timescales" / n).read_text() == t for n, t in before.items())  # skipped
    assert stub.calls - calls == 4 * 3  # four new runs, three evaluations each
    doc = json.loads((tmp_path / "res" / "ttur_timescales.json").read_text())
    assert doc["complete"] is True and doc["missing_runs"] == [] and doc["unfinished_runs"] == []
    ttur = doc["summary"]["dcgan/ttur"]
    assert ttur["seeds_complete"] == [0, 1] and ttur["lr_d"] > ttur["lr_g"]
    assert ttur["final_fid_mean"] == pytest.approx(np.mean(ttur["final_fid_per_seed"]))
    assert ttur["final_fid_std"] == pytest.approx(np.std(ttur["final_fid_per_seed"], ddof=1))
    last = ttur["last_interval"]
    assert (last["from_step"], last["to_step"]) == (1, 2)
    assert list(last["fid_change_per_seed"].values()) == pytest.approx(
        [r["evals"][2]["fid"] / r["evals"][1]["fid"] - 1 for n, r in sorted(doc["runs"].items()) if "-ttur-" in n])
    slow, fast = doc["summary"]["dcgan/single-slow"], doc["summary"]["dcgan/single-fast"]
    assert slow["lr_d"] == slow["lr_g"] == ttur["lr_g"] and fast["lr_d"] == fast["lr_g"] == ttur["lr_d"]
    # the untrained generator of a seed is the same for every setting
    step0 = {r["evals"][0]["generator_sha256"] for n, r in doc["runs"].items() if n.endswith("s0")}
    assert len(step0) == 1


def test_timescale_comparisons_read_the_difference_against_the_spread():
    """Synthetic finished runs: TTUR ends 10 lower than the slow single time scale with a spread
    of 1, and arrives at the common level (the highest final FID of any run, 42) in fewer steps."""
    runs = studies.timescale_runs(archs=("dcgan",), seeds=(0, 1, 2), quick=True, only=("ttur", "single-slow"))
    plan = studies.Plan("timescales", runs, studies.EvalSpec())
    docs = {}
    for spec in runs:
        final = (30.0 if spec.group.endswith("ttur") else 40.0) + spec.seed
        mid = 60.0 if spec.group.endswith("ttur") else 200.0
        docs[spec.name] = {"complete": True, "seed": spec.seed,
                           "evals": [{"step": 0, "fid": 400.0}, {"step": 100, "fid": mid}, {"step": 1000, "fid": final}]}
    c = analysis.timescale_comparisons(plan, docs)["dcgan"]
    assert c["level_for_arrival"] == pytest.approx(42.0)
    v = c["versus_ttur"]["single-slow"]
    assert v["final_fid_difference"] == pytest.approx(10.0) and v["final_fid_ttur"] == pytest.approx([31.0, 1.0])
    assert v["welch"]["p"] < 0.001 and v["welch"]["t"] < 0
    # every run reaches the level, so no mean of arrivals is over the fast seeds alone
    assert c["arrival"]["single-slow"]["seeds_not_reaching"] == 0 == c["arrival"]["ttur"]["seeds_not_reaching"]
    assert v["arrival_steps_ratio"] > 1  # TTUR arrives sooner
    assert v["same_seeds"] and v["paired"]["seeds"] == [0, 1, 2]
    assert v["paired"]["difference_per_seed"] == pytest.approx([10.0] * 3) and v["paired"]["p"] is None
    by = c["by_step"]
    assert set(by) == {"100", "1000"} and by["1000"]["single-slow"]["fid_difference"] == pytest.approx(10.0)
    assert by["100"]["single-slow"]["fid_difference"] == pytest.approx(140.0)
    assert by["100"]["single-slow"]["seeds"] == [3, 3]
    assert by["100"]["single-slow"]["welch"]["p"] is None  # every seed at 60 and at 200: no spread, no test
    # an unfinished run counts at the steps it has reached, not in the final comparison
    docs["dcgan-ttur-s2"] = {"complete": False, "evals": docs["dcgan-ttur-s2"]["evals"][:2]}
    c2 = analysis.timescale_comparisons(plan, docs)["dcgan"]
    assert c2["by_step"]["1000"]["single-slow"]["seeds"] == [2, 3] and c2["by_step"]["100"]["single-slow"]["seeds"] == [3, 3]
    assert c2["versus_ttur"]["single-slow"]["seeds"] == [2, 3]
    # whose means are then over different seeds, as the file says; the paired test keeps to seeds 0 and 1
    assert not c2["versus_ttur"]["single-slow"]["same_seeds"]
    assert c2["versus_ttur"]["single-slow"]["paired"]["seeds"] == [0, 1]
    assert c2["by_step"]["1000"]["single-slow"]["paired"]["seeds"] == [0, 1]
    assert c2["versus_ttur"]["single-slow"]["arrival_seeds"] == [0, 1]  # arrivals too, on the shared seeds
    # a finished run whose last evaluation has no FID is left out of every comparison, without an error
    docs["dcgan-single-slow-s1"] = {**docs["dcgan-single-slow-s1"], "evals": docs["dcgan-single-slow-s1"]["evals"][:2]
                                    + [{"step": 1000, "fid": None}]}
    c3 = analysis.timescale_comparisons(plan, docs)["dcgan"]["versus_ttur"]["single-slow"]
    assert c3["paired"]["seeds"] == [0] and c3["seeds"] == [2, 2]
    # only one finished seed per group: no test, no spread, still the difference
    one = {k: v for k, v in docs.items() if k.endswith("s0")}
    v1 = analysis.timescale_comparisons(plan, one)["dcgan"]["versus_ttur"]["single-slow"]
    assert v1["welch"]["p"] is None and v1["final_fid_difference"] == pytest.approx(10.0)


def test_the_last_interval_says_whether_the_curve_is_flat():
    """FID 44 → 31.5 over the last interval (−28%) is not flat; 31.5 → 30 (−5%) is; a seed
    without the step before the last counts as missing, not as zero change; an unfinished run
    counts over the intervals it has reached."""
    def run(*fids):
        return {"evals": [{"step": s, "fid": f} for s, f in zip((0, 10, 25), fids)]}
    falling = analysis._last_interval({0: run(400, 44.0, 31.68), 1: run(400, 44.0, 31.68)}, [0, 10, 25])
    assert falling["from_step"] == 10 and falling["to_step"] == 25 and falling["seeds"] == [0, 1]
    assert falling["fid_change_mean"] == pytest.approx(-0.28) and falling["flat"] is False
    flat = analysis._last_interval({0: run(400, 31.5, 30.0), 1: run(400, 32.0, 30.0)}, [0, 10, 25])
    assert flat["flat"] is True and flat["fid_change_std"] > 0
    gap = analysis._last_interval({0: {"evals": [{"step": 0, "fid": 400}, {"step": 25, "fid": 30.0}]}}, [0, 10, 25])
    assert gap["fid_change_per_seed"] == {"0": None} and gap["flat"] is None
    assert analysis._last_interval({}, [0, 10, 25]) is None and analysis._last_interval({0: run(1, 2, 3)}, [0, 25]) is None
    # a schedule extended to 60: the last interval is the latest one any run has reached
    runs = {0: {"evals": run(400, 44.0, 31.68)["evals"] + [{"step": 60, "fid": 30.0}]}, 1: run(400, 44.0, 31.68)}
    both = analysis._intervals(runs, [0, 10, 25, 60])
    assert [(i["from_step"], i["to_step"], i["seeds"]) for i in both] == [(10, 25, [0, 1]), (25, 60, [0])]
    assert analysis._last_interval(runs, [0, 10, 25, 60]) == both[-1]
    # the rule waits for every planned seed: one seed past 25 decides nothing
    assert both[-1]["flat"] is True and analysis._last_interval(runs, [0, 10, 25, 60], planned=2)["flat"] is None


def test_remaining_work_counts_what_is_left_and_prices_it_from_the_run_files(tmp_path):
    """Synthetic run files: one finished run, one halfway; each evaluation recorded at 10 s and
    training at 1 s per step. A seed's untrained generator is evaluated once for all its runs."""
    runs = studies.timescale_runs(archs=("dcgan",), seeds=(0, 1), quick=True)  # steps 0, 1, 2
    plan = studies.Plan("timescales", runs, studies.EvalSpec())
    folder = tmp_path / "timescales"
    folder.mkdir()

    def write(name, steps, complete):
        doc = {"study": "timescales", "seed": 0, "config": studies.train_dict(runs[0].config),
               "complete": complete, "evals": [{"step": st, "fid": 100.0, "train_seconds": float(st),
                                                "eval_seconds": 10.0, "cached": False} for st in steps]}
        (folder / f"{name}.json").write_text(json.dumps(doc))
        return doc

    docs = {"dcgan-ttur-s0": write("dcgan-ttur-s0", (0, 1, 2), True),
            "dcgan-single-slow-s0": write("dcgan-single-slow-s0", (0, 1), False)}
    left = analysis.remaining(plan, tmp_path, docs)
    # slow-s0: step 2; fast-s0: steps 1, 2 (step 0 shared); seed 1: 0, 1, 2 once, then 1, 2 twice
    assert left["runs"] == 5 and left["evaluations"] == 1 + 2 + 3 + 2 + 2
    assert left["training_steps"] == 1 + 2 + 2 * 3 and left["not_estimated"] == []
    assert left["core_hours"] == pytest.approx((10 * 10 + 9 * 1.0) / 3600)
    assert left["upper_bounds"] is False
    # with the work folder: slow-s0 has no checkpoint there (a new machine) and is retrained from step 0
    work = tmp_path / "work"
    left = analysis.remaining(plan, tmp_path, docs, work)
    assert left["training_steps"] == 2 + 2 + 2 * 3 and "latest checkpoint" in left["training_from"]
    # its evaluated step 1 is made again unless the retrained generator reproduces it
    assert left["re_evaluations"] == 1 and left["evaluations"] == 1 + 2 + 3 + 2 + 2 + 1
    ckpts = work / "timescales" / "dcgan-single-slow-s0" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "step-1.pt").write_bytes(b"")  # from its checkpoint at step 1
    left = analysis.remaining(plan, tmp_path, docs, work)
    assert left["training_steps"] == 1 + 2 + 2 * 3 and left["re_evaluations"] == 0
    # a batch size never run is priced from the nearest one, scaled by the batch
    crit = studies.critical_batch_runs((32,), (0,), quick=True)
    cplan = studies.Plan("critical-batch", crit, studies.EvalSpec())
    c = analysis.remaining(cplan, tmp_path, {})
    assert c["upper_bounds"] is True and c["evaluations"] == len(crit[0].eval_steps) - 1 + 1  # step 0 shared
    assert c["core_hours"] == pytest.approx((c["evaluations"] * 10 + max(crit[0].eval_steps) * 2.0) / 3600)
    # nothing recorded for an architecture: its training is named, not guessed; its seed-0 runs
    # share the untrained generator of the dcgan runs (the architectures differ only in D)
    wruns = studies.timescale_runs(archs=("wgan-gp",), seeds=(0,), quick=True)
    w = analysis.remaining(studies.Plan("timescales", wruns, studies.EvalSpec()), tmp_path, {})
    assert w["not_estimated"] == ["training of wgan-gp"] and w["evaluations"] == 3 * 2
    assert w["core_hours"] == pytest.approx(w["evaluations"] * 10 / 3600)


def test_an_interrupted_run_continues_exactly(tmp_path, images, capsys, monkeypatch):
    args = ["compare-timescales", "--archs", "dcgan", "--seeds", 1, "--max-runs", 1, *_quick(tmp_path, images)]
    stub = StubEvaluate(fail_at=3)  # interrupted at the evaluation of step 2
    monkeypatch.setattr(studies.Evaluations, "evaluate", lambda self, *a, **k: stub(self, *a, **k))
    with pytest.raises(SystemExit) as e:
        ttur_cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert e.value.code == 130 and "\n\n" not in err
    assert err.endswith("\nfidkit-ttur: interrupted; files already written are complete (each is written atomically)\n")
    path = tmp_path / "runs" / "timescales" / "dcgan-ttur-s0.json"
    run = json.loads(path.read_text())
    assert run["complete"] is False and [e["step"] for e in run["evals"]] == [0, 1]
    assert not list((tmp_path / "work").rglob("*.lock"))
    code, err = _run(capsys, *args)
    assert code == 0, err
    resumed = json.loads(path.read_text())
    assert resumed["complete"] and len(resumed["sessions"]) == 2 and resumed["evals"][:2] == run["evals"]
    # the same weights at step 2 as a run that was never interrupted
    monkeypatch.setattr(studies.Evaluations, "evaluate", lambda self, *a, **k: StubEvaluate()(self, *a, **k))
    other = tmp_path / "again"
    code, err = _run(capsys, *args, "--runs", other / "runs", "--work", other / "work", "--results", other)
    assert code == 0, err
    fresh = json.loads((other / "runs" / "timescales" / "dcgan-ttur-s0.json").read_text())
    assert [e["generator_sha256"] for e in fresh["evals"]] == [e["generator_sha256"] for e in resumed["evals"]]


def test_truncation_trains_its_generator_and_reports_every_threshold(tmp_path, images, capsys, stub):
    code, err = _run(capsys, "truncation", *_quick(tmp_path, images))
    assert code == 0, err
    gen = json.loads((tmp_path / "runs" / "timescales" / "dcgan-ttur-s0.json").read_text())
    assert gen["complete"]
    doc = json.loads((tmp_path / "res" / "ttur_truncation.json").read_text())
    assert [e["threshold"] for e in doc["per_threshold"]] == [None, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3]
    run = doc["runs"]["dcgan-ttur-s0"]
    assert run["generator_sha256"] == gen["evals"][-1]["generator_sha256"]
    assert all({"fid", "kid_mean", "precision", "recall", "density", "coverage"} <= set(r) for r in run["results"])
    assert doc["complete"] and (tmp_path / "res" / "ttur_truncation.png").read_bytes()[:8] == PNG_MAGIC
    # the stub's precision is 1 - t/20 and recall t/20 (untruncated: t = 10): every threshold
    # below 10 raises precision and lowers recall, by exactly that much
    change = {e["threshold"]: e for e in doc["change_from_untruncated"]}
    assert sorted(change) == [0.3, 0.5, 0.7, 1.0, 1.5, 2.0]
    assert change[2.0]["precision_up_and_recall_down"] == change[2.0]["generators"] == len(doc["runs"])
    assert change[2.0]["delta_recall_mean"] == pytest.approx(2.0 / 20 - 10.0 / 20)
    assert change[2.0]["delta_precision_mean"] == pytest.approx(10.0 / 20 - 2.0 / 20)


def test_truncation_changes_are_paired_and_tested_against_zero():
    def doc(base_fid, fid_at_1, kid_at_1):
        row = dict(precision=0.5, recall=0.4, density=1.0, coverage=0.8)
        return {"results": [{"threshold": None, "fid": base_fid, "kid_mean": 0.03, **row},
                            {"threshold": 1.0, "fid": fid_at_1, "kid_mean": kid_at_1, **row}]}
    # three generators whose FIDs differ by 20 but each drops by 2 ± 1 with truncation
    docs = [doc(40.0, 37.0, 0.029), doc(60.0, 58.0, 0.0295), doc(80.0, 79.0, 0.028)]
    (c,) = analysis.truncation_changes(docs, [None, 1.0])
    assert c["delta_fid_mean"] == pytest.approx(-2.0) and c["delta_fid_std"] == pytest.approx(1.0)
    assert c["delta_fid_p"] == pytest.approx(0.0742, abs=1e-4)  # t = -2 / (1 / sqrt 3) = -3.46, 2 dof
    assert c["delta_kid_mean_mean"] == pytest.approx(-0.0035 / 3)
    assert c["delta_precision_p"] is None  # no change at all: no spread to test against


class UntrainedHigh(StubEvaluate):
    """The stub, but FID 500 for the untrained generator (the first one evaluated: every run of
    one seed starts from it), 50-150 after any training."""

    def __call__(self, evals, generator, z_seed, truncation=None, pr=False):
        r = super().__call__(evals, generator, z_seed, truncation, pr)
        self.first = getattr(self, "first", r["generator_sha256"])
        return {**r, "fid": 500.0} if r["generator_sha256"] == self.first else r


def test_critical_batch_quick_and_aggregate(tmp_path, images, capsys, monkeypatch):
    stub = UntrainedHigh()
    monkeypatch.setattr(studies.Evaluations, "evaluate", lambda self, *a, **k: stub(self, *a, **k))
    # a target every run reaches at its first grid point: then one refining evaluation at half of it
    code, err = _run(capsys, "critical-batch", "--seeds", 1, "--batch-sizes", "4,8,16", "--target-fid", 200,
                     *_quick(tmp_path, images))
    assert code == 0, err
    doc = json.loads((tmp_path / "res" / "ttur_critical_batch.json").read_text())
    assert doc["batch_sizes"] == [4, 8, 16] and doc["complete"] and doc["threshold"] == 200
    assert "fixed before the runs" in doc["threshold_rule"]
    for r in doc["per_run"]:
        grid = studies.critical_grid_steps(r["batch_size"], quick=True)  # 0, 64/b, 128/b, 256/b
        steps = [e["step"] for e in doc["runs"][f"dcgan-b{r['batch_size']}-s0"]["evals"]]
        assert steps == [0, grid[1] // 2, grid[1]]  # stopped at the first grid step, refined once
        assert r["reached"] and r["steps"] is not None and r["first_eval_at_or_below"] == steps[1]
    assert doc["settings"]["target_fid"] == 200 and doc["settings"]["images_grid"] == [64, 128, 256]
    code, err = _run(capsys, "aggregate", "--study", "critical-batch", "--seeds", 1, "--batch-sizes", "4,8,16",
                     "--target-fid", 200, "--threshold", 2000, *_quick(tmp_path, images))
    assert code == 0, err
    doc = json.loads((tmp_path / "res" / "ttur_critical_batch.json").read_text())
    assert doc["threshold"] == 2000 and all(r["steps"] == 0 for r in doc["per_run"])


def test_critical_batch_run_that_never_reaches_its_target(tmp_path, images, capsys, stub):
    code, err = _run(capsys, "critical-batch", "--seeds", 1, "--batch-sizes", "8", "--target-fid", 1,
                     *_quick(tmp_path, images))
    assert code == 0, err
    doc = json.loads((tmp_path / "res" / "ttur_critical_batch.json").read_text())
    run = doc["runs"]["dcgan-b8-s0"]
    assert run["complete"] and [e["step"] for e in run["evals"]] == [0, 8, 16, 32]  # the whole grid, no refinement
    assert doc["per_run"][0]["reached"] is False and doc["per_run"][0]["steps"] is None
    assert doc["per_batch"]["8"]["seeds_not_reaching"] == [0] and doc["critical_batch_per_seed"] == {}
    assert doc["seeds_excluded"] == {"0": "no run of this seed reached the threshold"}


def test_next_step_brackets_the_crossing_once():
    spec = studies.RunSpec("critical-batch", "x", "b", None, (0, 100, 200, 400, 800), target_fid=50.0)

    def ev(pairs):
        return [{"step": s, "fid": f} for s, f in pairs]
    assert studies.next_step(spec, []) == 0
    assert studies.next_step(spec, ev([(0, 400), (100, 90)])) == 200
    assert studies.next_step(spec, ev([(0, 400), (100, 90), (200, 60), (400, 40)])) == 283  # √(200·400)
    assert studies.next_step(spec, ev([(0, 400), (100, 90), (200, 60), (283, 45), (400, 40)])) is None
    assert studies.next_step(spec, ev([(0, 400), (100, 40)])) == 50  # from step 0: the midpoint s / 2
    assert studies.next_step(spec, ev([(0, 40)])) is None  # reached untrained: nothing to bracket
    assert studies.next_step(spec, ev([(s, 99) for s in (0, 100, 200, 400, 800)])) is None  # never reached
    plain = studies.dataclasses.replace(spec, target_fid=None)
    assert studies.next_step(plain, ev([(0, 400), (100, 40)])) == 200  # no target: the whole schedule


def test_the_midpoint_checkpoint_leaves_the_weights_unchanged(tmp_path, images, capsys, stub):
    """A refining evaluation trains nothing again, and stopping at the midpoint on the way does
    not change the weights at the grid step (segments continue exactly)."""
    args = ["critical-batch", "--seeds", 1, "--batch-sizes", "8", *_quick(tmp_path, images)]
    code, err = _run(capsys, *args, "--target-fid", 1)  # never reached: every grid step, midpoints on the way
    assert code == 0, err
    ckpts = sorted(p.name for p in (tmp_path / "work" / "critical-batch" / "dcgan-b8-s0" / "checkpoints").glob("*.pt"))
    assert ckpts == [f"step-{s:07d}.pt" for s in (4, 8, 11, 16, 23, 32)]
    walked = json.loads((tmp_path / "runs" / "critical-batch" / "dcgan-b8-s0.json").read_text())["evals"]
    other = tmp_path / "straight"
    spec = studies.critical_batch_runs((8,), (0,), quick=True, data=str(images), target_fid=None)[0]
    g, _ = studies.train_to(spec, 32, other, say=lambda *a: None)  # one segment 0 -> 32
    assert weights_digest(g) == walked[-1]["generator_sha256"]


def test_a_stopped_segment_continues_from_its_interim_checkpoint(tmp_path, images, monkeypatch):
    """A worker stopped while training towards an evaluation step loses at most the steps since
    the last interim checkpoint; the segment continues from it to the same weights, and the
    interim checkpoints are gone once the step is reached (the grid's stay)."""
    from fidkit.ttur import train as train_module
    spec = studies.critical_batch_runs((8,), (0,), quick=True, data=str(images), target_fid=None)[0]
    monkeypatch.setattr(studies, "SAFETY_CHECKPOINT_IMAGES", 8 * 5)  # every 5 steps at batch 8
    assert studies.safety_checkpoint_every(spec.config) == 5
    quiet = lambda *a: None  # noqa: E731
    straight, _ = studies.train_to(spec, 32, tmp_path / "straight", say=quiet)
    folder = tmp_path / "work" / spec.study / spec.name / "checkpoints"
    studies.train_to(spec, 16, tmp_path / "work", say=quiet)
    assert sorted(p.name for p in folder.glob("*.pt")) == ["step-0000016.pt"]  # 5, 10, 15 removed
    real, saved = train_module.save_checkpoint, []

    def stop_after_two(path, state):
        real(path, state)
        saved.append(state["step"])
        if len(saved) == 2:
            raise KeyboardInterrupt  # the session stops

    monkeypatch.setattr(train_module, "save_checkpoint", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        studies.train_to(spec, 32, tmp_path / "work", say=quiet)
    assert saved == [20, 25]
    monkeypatch.setattr(train_module, "save_checkpoint", real)
    said = []
    g, _ = studies.train_to(spec, 32, tmp_path / "work", say=said.append)
    assert said == [f"  training {spec.name} to step 32 from step 25"]
    assert weights_digest(g) == weights_digest(straight)
    assert sorted(p.name for p in folder.glob("*.pt")) == ["step-0000016.pt", "step-0000032.pt"]


def test_steps_to_threshold_interpolates():
    evals = [{"step": 0, "fid": 400.0}, {"step": 100, "fid": 200.0}, {"step": 400, "fid": 50.0}]
    assert analysis._steps_to(evals, 300.0) == (50.0, 100)
    steps, first = analysis._steps_to(evals, 100.0)
    assert first == 400 and steps == pytest.approx(200.0)  # halfway in log FID is halfway in log step
    assert analysis._steps_to(evals, 10.0) == (None, None)


def test_the_papers_claims_are_checked_on_each_curve():
    bs = [16, 32, 64, 128, 256]
    steps = [8000, 4200, 2400, 1600, 1400]  # falling: SFO 128k, 134k, 154k, 205k, 358k, convex, minimum at 16
    c = analysis.paper_checks(bs, steps, [b * k for b, k in zip(bs, steps)])
    assert c == {"steps_fall_with_batch": True, "sfo_convex": True, "sfo_minimum_inside": False,
                 "steps_rises": [], "sfo_slope_drops": []}
    steps = [12000, 5000, 2000, 1100, 900]  # SFO 192k, 160k, 128k, 141k, 230k: minimum inside, convex
    c = analysis.paper_checks(bs, steps, [b * k for b, k in zip(bs, steps)])
    assert c["steps_fall_with_batch"] and c["sfo_convex"] and c["sfo_minimum_inside"]
    steps = [12000, 5000, 2000, 2100, 900]  # a rise at 128 and a kink: neither falling nor convex
    c = analysis.paper_checks(bs, steps, [b * k for b, k in zip(bs, steps)])
    assert c["steps_fall_with_batch"] is False and c["sfo_convex"] is False
    assert c["steps_rises"] == [{"from": 64, "to": 128, "relative": pytest.approx(0.05)}]  # its size, for noise
    assert [d["at"] for d in c["sfo_slope_drops"]] == [128]


def test_critical_batch_is_the_sfo_minimum_or_a_bound():
    bs = [16, 32, 64, 128, 256]
    sfo = [b * 1000 / b + b * 10 for b in bs]  # 1000 + 10 b: increasing, minimum at the smallest
    assert analysis._critical_from(bs, sfo) == (None, "<= 16")  # a bound, not an estimate of 16
    assert analysis._critical_from(bs, sfo[::-1]) == (None, ">= 256")
    sfo = list(np.exp([(math.log2(b) - 6) ** 2 + 5 for b in bs]))  # a parabola in log2 b, minimum at 64
    est, bound = analysis._critical_from(bs, sfo)
    assert est == pytest.approx(64) and bound is None
    # a run that never reached the threshold is censored (SFO above the grid's end), not dropped
    assert analysis._critical_from(bs, sfo[:4] + [math.inf])[0] == pytest.approx(64)
    est, bound = analysis._critical_from(bs, sfo[:3] + [math.inf, math.inf])
    assert est == 64 and bound is None  # no parabola through a censored neighbour: the grid's argmin
    assert analysis._critical_from(bs, [math.inf] * 5) == (None, None)


def test_steps_model_fits_recover_each_law_and_tell_them_apart():
    bs = [4, 8, 16, 32, 64, 128, 256, 512]
    noise = [2500 * (1 + 10 / b) for b in bs]  # K_min (1 + B/b): SFO rises at every b
    f = analysis.steps_model_fits(bs, noise)
    assert f["noise_scale_form"]["K_min"] == pytest.approx(2500, rel=1e-6)
    assert f["noise_scale_form"]["B"] == pytest.approx(10, rel=1e-6)
    assert f["noise_scale_form"]["rms_log_residual"] < 1e-6
    assert f["bound_form"]["rms_log_residual"] > 0.05  # the other law does not fit it
    bound = [3000 * b / (b - 3) for b in bs]  # A b / (b - B): SFO convex, minimum at 2B = 6
    f = analysis.steps_model_fits(bs, bound)
    assert f["bound_form"]["critical_batch"] == pytest.approx(6, rel=1e-6) and not f["bound_form"]["B_at_limit"]
    assert f["bound_form"]["rms_log_residual"] < 1e-6 < f["noise_scale_form"]["rms_log_residual"]
    # K at the smallest batch far above the rest: B runs into its limit, and 2B is no estimate
    f = analysis.steps_model_fits(bs, [1e7] + [3000] * 7)
    assert f["bound_form"]["B_at_limit"] and f["bound_form"]["critical_batch"] is None
    assert analysis.steps_model_fits(bs[:2], noise[:2]) == {}  # two parameters, two points: nothing to judge
    assert analysis.steps_model_fits(bs[:3], [0.0, 5.0, 2.0]) == {}  # a crossing at step 0: no log


def test_steps_to_threshold_skips_missing_fids_and_flags_the_first_bracket():
    evals = [{"step": 0, "fid": 400.0}, {"step": 100, "fid": None}, {"step": 200, "fid": 80.0}]
    steps, first = analysis._steps_to(evals, 100.0)
    assert first == 200 and steps == pytest.approx(200 * 300 / 320)  # from step 0, linear
    assert analysis.crossing_from_start(evals, first)  # the chord over a convex fall: an upper bound
    evals = [{"step": 0, "fid": 400.0}, {"step": 100, "fid": 150.0}, {"step": 200, "fid": 80.0}]
    assert not analysis.crossing_from_start(evals, analysis._steps_to(evals, 100.0)[1])


def _fake_critical_runs(runs_dir, sfo_of, seeds=(0, 1, 2), batch_sizes=(16, 32, 64, 128, 256, 512)):
    """Run files of the full critical-batch plan as the workers would leave them, for FID curves
    FID(step) = 100 (step / K)^-1/2 that cross 100 exactly at K = sfo_of(b, seed) / b (a power
    law, so the log-log interpolation is exact), evaluated where next_step says."""
    plan = studies.Plan("critical-batch", studies.critical_batch_runs(batch_sizes, seeds=seeds), studies.EvalSpec())
    for spec in plan.runs:
        k = sfo_of(spec.config.batch_size, spec.seed) / spec.config.batch_size
        evals = []
        while (step := studies.next_step(spec, evals)) is not None:
            evals.append({"step": step, "fid": 400.0 if step == 0 else 100.0 * (step / k) ** -0.5})
        path = studies.run_path(runs_dir, spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"seed": spec.seed, "group": spec.group, "complete": True, "evals": evals}))
    return plan


def test_critical_batch_aggregate_censors_bounds_and_compares_like_with_like(tmp_path):
    # SFO quadratic in log2 b with its minimum at 64; at 512 it is 2.98M images, beyond the 2M grid
    def sfo_of(b, seed):
        return 2e5 * math.exp(0.3 * (math.log2(b) - 6) ** 2) * (1 + 0.05 * seed)
    plan = _fake_critical_runs(tmp_path / "runs", sfo_of)
    doc = analysis.aggregate_critical_batch(plan, tmp_path / "runs", tmp_path / "res")
    assert doc["complete"] and doc["seeds_excluded"] == {}
    assert doc["per_batch"]["512"]["seeds_not_reaching"] == [0, 1, 2]
    for seed, v in doc["critical_batch_per_seed"].items():
        # the run at 512 that never reached 100 stays in as censored, the seed is not dropped
        assert v["critical_batch"] == pytest.approx(64, rel=1e-6) and v["bound"] is None
        assert v["not_reaching"] == [512] and v["steps_fall_with_batch"] is None and v["sfo_minimum_inside"]
    assert doc["critical_batch_geometric_mean"] == pytest.approx(64, rel=1e-6)
    assert doc["critical_batch_ci95"] == pytest.approx([64, 64], rel=1e-6)
    # means over the seeds that reached would compare 512's survivors with everyone elsewhere
    assert doc["paper_checks_on_means"] is None
    assert doc["model_fits_on_means"] is None and doc["model_fits_over_seeds"] is None  # censored runs: no fit
    row = next(r for r in doc["per_run"] if r["batch_size"] == 64 and r["seed"] == 1)
    assert row["steps"] == pytest.approx(sfo_of(64, 1) / 64, rel=1e-9) and not row["steps_upper_bound"]

    # seed 2's SFO rises from the smallest batch: its minimum is a bound, and no mean is taken
    def rising(b, seed):
        return sfo_of(b, seed) if seed < 2 else 1e5 + 1500 * b + 0.5 * b * b  # strictly convex, rising
    plan = _fake_critical_runs(tmp_path / "runs2", rising)
    doc = analysis.aggregate_critical_batch(plan, tmp_path / "runs2", tmp_path / "res")
    assert doc["critical_batch_per_seed"]["2"]["critical_batch"] is None
    assert doc["critical_batch_per_seed"]["2"]["bound"] == "<= 16"
    assert doc["critical_batch_log2_mean"] is None and doc["critical_batch_ci95"] is None
    assert doc["paper_checks_seeds_passing"]["sfo_minimum_inside"] == "2 of 3 seeds"
    # two seeds' runs at 512 are censored: their rise and convexity checks are undetermined, not failed
    assert doc["paper_checks_seeds_passing"]["sfo_convex"] == "1 of 1 seeds (2 undetermined: a run censored)"

    # every run reaching: the checks on the means are made, over the same seeds at every batch
    plan = _fake_critical_runs(tmp_path / "runs3", lambda b, seed: 1e5 + 1500 * b + 1e6 * 16 / b)
    doc = analysis.aggregate_critical_batch(plan, tmp_path / "runs3", tmp_path / "res")
    assert doc["paper_checks_on_means"]["steps_fall_with_batch"] is True
    assert doc["paper_checks_seeds_passing"]["steps_fall_with_batch"] == "3 of 3 seeds"
    assert set(doc["model_fits_on_means"]) == {"bound_form", "noise_scale_form"}
    over = doc["model_fits_over_seeds"]
    assert over["seeds"] == [0, 1, 2] and over["noise_scale_B"]["seeds"] == 3
    assert over["noise_scale_B"]["ci95"][0] <= over["noise_scale_B"]["mean"] <= over["noise_scale_B"]["ci95"][1]
    # SFO 1e5 + 1500 b + 1.6e7 / b has its minimum at b = 103: inside, on every seed
    assert doc["critical_batch_seeds_in_mean"] == [0, 1, 2] and 64 < doc["critical_batch_geometric_mean"] < 128
    # a --threshold below the target: the runs stopped at the target, so a miss is not censored at 2M
    doc = analysis.aggregate_critical_batch(plan, tmp_path / "runs3", tmp_path / "res", threshold=50.0)
    assert doc["critical_batch_per_seed"] == {} and doc["seeds_excluded"]["0"].endswith(
        "stopped at the target before reaching the threshold")


def test_aggregate_with_nothing_finished_writes_incomplete_studies(tmp_path, images, capsys):
    code, err = _run(capsys, "aggregate", *_quick(tmp_path, images))
    assert code == 0, err
    for name in ("ttur_timescales", "ttur_truncation", "ttur_critical_batch"):
        doc = json.loads((tmp_path / "res" / f"{name}.json").read_text())
        assert doc["complete"] is False and doc["missing_runs"] and doc["unfinished_runs"] == []
        assert (tmp_path / "res" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC


def test_a_longer_schedule_extends_a_finished_run(tmp_path, images, stub):
    spec = studies.timescale_runs(archs=("dcgan",), seeds=(0,), quick=True, data=str(images), only=("ttur",))[0]
    evals = studies.Evaluations(studies.EvalSpec(n=4, real_n=4), tmp_path / "work")
    short = studies.dataclasses.replace(spec, eval_steps=(0, 1))
    doc = studies.run_one(short, evals, tmp_path / "runs", tmp_path / "work", say=lambda m: None)
    assert doc["complete"] and [e["step"] for e in doc["evals"]] == [0, 1]
    calls = stub.calls
    doc = studies.run_one(spec, evals, tmp_path / "runs", tmp_path / "work", say=lambda m: None)
    assert doc["complete"] and [e["step"] for e in doc["evals"]] == [0, 1, 2] and stub.calls - calls == 1


def test_studies_take_dcgan_to_its_first_pass_before_the_other_plans(tmp_path, images, capsys, stub):
    # --quick as it is: its schedule is 0, 1, 2 and its first pass step 1 (QUICK_FIRST_PASS)
    code, err = _run(capsys, "studies", "--seeds", 1, *_quick(tmp_path, images))
    assert code == 0, err
    started = [line.split(": run ")[1] for line in err if ": run " in line]
    slow = [i for i, name in enumerate(started) if name == "dcgan-single-slow-s0"]
    assert len(slow) == 2  # to step 1, then, after every other plan, to step 2
    between = started[slow[0] + 1:slow[1]]
    assert any(n.startswith("dcgan-b") for n in between) and "wgan-gp-ttur-s0" in between
    run = json.loads((tmp_path / "runs" / "timescales" / "dcgan-single-slow-s0.json").read_text())
    assert run["complete"] and [e["step"] for e in run["evals"]] == [0, 1, 2]
    doc = json.loads((tmp_path / "res" / "ttur_timescales.json").read_text())
    assert doc["complete"]


def test_a_run_held_by_another_process_is_skipped(tmp_path, images, capsys, monkeypatch):
    """Two studies processes share a plan: a run whose lock a live process holds is skipped
    with one line, the others are run; a lock left by a dead process is taken over."""
    import os
    import subprocess
    import sys
    stub = StubEvaluate()
    monkeypatch.setattr(studies.Evaluations, "evaluate", lambda self, *a, **k: stub(self, *a, **k))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = tmp_path / "work" / "timescales" / "dcgan-ttur-s0.lock"
        lock.parent.mkdir(parents=True)
        lock.write_text(str(holder.pid))
        code, err = _run(capsys, "compare-timescales", "--archs", "dcgan", "--seeds", 1, *_quick(tmp_path, images))
        assert code == 0, err
        assert any("dcgan-ttur-s0 skipped" in line and f"process {holder.pid}" in line for line in err), err
        runs = tmp_path / "runs" / "timescales"
        assert not (runs / "dcgan-ttur-s0.json").exists()
        assert (runs / "dcgan-single-slow-s0.json").exists() and (runs / "dcgan-single-fast-s0.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is taken over and the run done
    code, err = _run(capsys, "compare-timescales", "--archs", "dcgan", "--seeds", 1, *_quick(tmp_path, images))
    assert code == 0, err
    assert json.loads((tmp_path / "runs" / "timescales" / "dcgan-ttur-s0.json").read_text())["complete"]
    assert not lock.exists() and os.path.isdir(tmp_path / "res")


def test_a_finished_run_whose_schedule_grew_is_continued(tmp_path, images, capsys, monkeypatch):
    """A run file marked complete but lacking a step the schedule now has (a schedule extended
    since it ran) is continued by the command, not skipped."""
    stub = StubEvaluate()
    monkeypatch.setattr(studies.Evaluations, "evaluate", lambda self, *a, **k: stub(self, *a, **k))
    args = ["compare-timescales", "--archs", "dcgan", "--seeds", 1, "--max-runs", 1, *_quick(tmp_path, images)]
    code, err = _run(capsys, *args)
    assert code == 0, err
    path = tmp_path / "runs" / "timescales" / "dcgan-ttur-s0.json"
    full = json.loads(path.read_text())
    short = {**full, "evals": full["evals"][:-1], "eval_steps": full["eval_steps"][:-1],
             "config": {**full["config"], "steps": full["eval_steps"][-2]}}
    path.write_text(json.dumps(short))  # as written before the last step was added to the schedule
    calls = stub.calls
    code, err = _run(capsys, *args)
    assert code == 0, err
    again = json.loads(path.read_text())
    assert again["complete"] and [e["step"] for e in again["evals"]] == [e["step"] for e in full["evals"]]
    assert stub.calls == calls + 1 and again["evals"][:-1] == short["evals"]  # only the new step evaluated
    assert again["config"] == full["config"] and len(again["sessions"]) == 2
    assert again["evals"][-1]["generator_sha256"] == full["evals"][-1]["generator_sha256"]


def test_too_few_training_images_are_refused_before_any_evaluation(tmp_path, images, capsys, stub):
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted(images.iterdir())[:10]:
        (few / f.name).write_bytes(f.read_bytes())
    args = list(_quick(tmp_path, images))
    args[args.index("--data") + 1] = few
    calls = stub.calls
    code, err = _run(capsys, "compare-timescales", "--archs", "dcgan", "--seeds", 1, *args)
    assert code == 1 and stub.calls == calls  # nothing evaluated, no run file
    assert err[-1] == (f"fidkit-ttur: error: the runs left train with batches of up to 16 images, but --data {few} "
                       "gives 10; give more training images")
    assert not (tmp_path / "runs" / "timescales").exists()
    # a truncation run trains its source generator: the same check
    code, err = _run(capsys, "truncation", *args)
    assert code == 1 and stub.calls == calls and "gives 10; give more training images" in err[-1]
    code, err = _run(capsys, "aggregate", "--study", "timescales", "--archs", "dcgan", "--seeds", 1, *args)
    assert code == 0, err
    doc_settings = json.loads((tmp_path / "res" / "ttur_timescales.json").read_text())["settings"]
    assert doc_settings["eval_steps"] == {"dcgan": [0, 1, 2]}  # the schedule the quick runs have


def test_wgan_gp_time_scales_run_one_critic_update_per_step_as_the_ttur_paper():
    # the paper's TTUR replaces WGAN-GP's 5 critic updates by the critic's faster rate; every arm
    # has one, so that the arms differ in their rates only; DCGAN's runs keep their settings
    runs = studies.timescale_runs(archs=("dcgan", "wgan-gp"), seeds=(0,))
    assert {r.config.resolved().n_critic for r in runs if r.config.arch == "wgan-gp"} == {1}
    assert {studies.train_dict(r.config)["n_critic"] for r in runs if r.config.arch == "dcgan"} == {1}
    assert all(r.eval_steps == studies.TIMESCALE_STEPS["wgan-gp"] for r in runs if r.config.arch == "wgan-gp")


def test_up_to_cuts_a_schedule_at_one_of_its_steps_and_refuses_any_other():
    spec = studies.timescale_runs(archs=("dcgan",), seeds=(0,), only=("ttur",))[0]
    cut = studies.up_to(spec, 60000)
    assert cut.eval_steps == (0, 500, 1500, 4000, 10000, 25000, 60000) and cut.config.steps == 60000
    assert cut.name == spec.name  # the same run, continued later by the whole spec
    with pytest.raises(ValueError, match="50000 is not one of its evaluation steps"):
        studies.up_to(spec, 50000)  # would have cut at 25000, below the step asked for


def test_first_pass_steps_lie_on_their_schedules():
    assert studies.TIMESCALE_FIRST_PASS["dcgan"] in studies.TIMESCALE_STEPS["dcgan"]
    quick = studies.timescale_runs(archs=("dcgan",), seeds=(0,), quick=True, only=("ttur",))[0]
    assert studies.QUICK_FIRST_PASS["dcgan"] in quick.eval_steps


def test_a_run_retrained_elsewhere_keeps_only_the_evaluations_it_reproduces(tmp_path, images, stub):
    """A run continued without its checkpoints is retrained from step 0; each evaluation whose
    generator this machine does not reproduce (another CPU's float kernels) is superseded and
    made again, so all of a run's come from one trajectory."""
    import shutil
    spec = studies.timescale_runs(archs=("dcgan",), seeds=(0,), quick=True, data=str(images), only=("ttur",))[0]
    evals = studies.Evaluations(studies.EvalSpec(n=4, real_n=4), tmp_path / "work")
    short = studies.dataclasses.replace(spec, eval_steps=(0, 1))
    doc = studies.run_one(short, evals, tmp_path / "runs", tmp_path / "work", say=lambda m: None)
    kept = {e["step"]: e["generator_sha256"] for e in doc["evals"]}
    # the same machine, checkpoints lost: retraining reproduces step 1, nothing is made again
    shutil.rmtree(tmp_path / "work" / spec.study)
    calls = stub.calls
    doc = studies.run_one(spec, evals, tmp_path / "runs", tmp_path / "work", say=lambda m: None)
    assert [e["step"] for e in doc["evals"]] == [0, 1, 2] and stub.calls - calls == 1  # step 2 only
    assert {e["step"]: e["generator_sha256"] for e in doc["evals"] if e["step"] < 2} == kept
    assert "superseded_evals" not in doc
    # as if step 1 had been evaluated on another CPU: its digest differs from this machine's
    path = studies.run_path(tmp_path / "runs", spec)
    doc["evals"][1]["generator_sha256"] = "0" * 64
    doc["evals"][1]["fid"] = 123.0
    doc["complete"] = False
    path.write_text(json.dumps(doc))
    shutil.rmtree(tmp_path / "work" / spec.study)
    said = []
    calls = stub.calls
    doc = studies.run_one(spec, evals, tmp_path / "runs", tmp_path / "work", say=said.append)
    assert [e["step"] for e in doc["evals"]] == [0, 1, 2] and stub.calls - calls == 1  # step 1 again, 2 is this one's
    assert doc["evals"][1]["generator_sha256"] == kept[1] and doc["evals"][1]["fid"] != 123.0
    gone = doc["superseded_evals"]
    assert [e["step"] for e in gone] == [1] and gone[0]["fid"] == 123.0 and "another trajectory" in gone[0]["why"]
    assert any("step 1's generator is not reproduced here" in m for m in said)
