"""The study files: each study's run files aggregated into ``NAME.json|png``.

Reads the run files that :mod:`.studies` writes (whatever exists: a study file says
``INCOMPLETE`` and lists the missing and unfinished runs until all are in) and computes
what each paper asks of them:

- time scales: FID and KID per step (mean ± sample std over seeds, drawn as bands), each
  group's change over every interval and whether the latest is flat, and TTUR against each
  single time scale (final FID, Welch's test and the difference paired by seed, steps to a
  common level, and the same at every step);
- critical batch: steps K and SFO b·K to the target FID per batch size and seed (a run that
  never reaches it censored), the critical batch size (the SFO minimum) per seed or a bound
  where the minimum is at the grid's end, the paper's claims checked per seed and on
  the means, and K against b fitted to the form of the paper's bound and to the
  noise-scale law, per seed and on the means;
- truncation: FID, KID, precision, recall, density and coverage per threshold, and each
  generator's change from its own untruncated sample, tested against no change.

Nothing here trains or evaluates; ``fidkit-ttur aggregate`` runs only this.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from .studies import CRITICAL_IMAGES, THRESHOLDS, Plan, git_commit, is_done, load_run, now
from .train import new_figure, save_figure, write_json

#: a group's FID curve counts as flat when the mean over its runs (every planned seed) of each
#: run's own relative FID change over the last interval the runs have reached (a factor
#: 2.4-2.5 in steps) is smaller than this in size; fixed in advance
FLAT_CHANGE = 0.10


def _mean_std(values) -> tuple:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None)


def _status(plan: Plan, runs_dir) -> tuple:
    docs, missing, unfinished = {}, [], []
    for spec in plan.runs:
        d = load_run(runs_dir, spec)
        if d is None:
            missing.append(spec.name)
        else:
            docs[spec.name] = d
            if not is_done(spec, d):
                d["complete"] = False  # a schedule extended since the run finished
                unfinished.append(spec.name)
    return docs, missing, unfinished


def _recorded_costs(runs_dir) -> tuple:
    """From every run file under ``runs_dir`` (all studies): the median seconds of an
    evaluation that was not cached; training seconds per step per (arch, batch size), the
    median over runs of their latest evaluation's train_seconds / step; and the (seed, arch)
    pairs whose untrained generator is evaluated (cached for every run of that seed)."""
    evals, per_step, step0 = [], {}, set()
    for path in sorted(Path(runs_dir).glob("*/*.json")):
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        evals += [e["eval_seconds"] for e in d.get("evals", []) + d.get("results", [])
                  if not e.get("cached") and e.get("eval_seconds")]
        c = d.get("config") or {}
        if any(e.get("step") == 0 for e in d.get("evals", [])):
            step0.add(_untrained_key(d.get("seed"), c))
        trained = [e for e in d.get("evals", []) if e.get("step") and e.get("train_seconds")]
        if trained and c.get("arch") and d.get("study") != "truncation":
            e = max(trained, key=lambda e: e["step"])
            per_step.setdefault((c["arch"], c["batch_size"]), []).append(e["train_seconds"] / e["step"])
    return (float(np.median(evals)) if evals else None,
            {k: float(np.median(v)) for k, v in per_step.items()}, step0)


def _untrained_key(seed, config: dict) -> tuple:
    """What fixes a run's untrained generator: its seed and the generator's shape (the same
    for both architectures, which differ only in the discriminator)."""
    return (seed,) + tuple(config.get(k) for k in ("z_dim", "channels", "size", "width"))


def _latest_checkpoint(work, spec) -> int:
    """The step of ``spec``'s latest checkpoint in the work folder (0: none), where
    :func:`.studies.train_to` would continue training from."""
    folder = Path(work) / spec.study / spec.name / "checkpoints"
    steps = [int(p.stem.split("-")[1]) for p in folder.glob("step-*.pt")] if folder.is_dir() else []
    return max((s for s in steps if s <= max(spec.eval_steps)), default=0)


def remaining(plan: Plan, runs_dir, docs: dict, work=None) -> dict:
    """What the plan still needs: runs, evaluations and training steps left, and an estimate
    of one core's hours from the recorded costs (:func:`_recorded_costs`).

    With ``work`` (the studies' work folder) an unfinished run's training is counted from
    its latest checkpoint there, or from step 0 where it has none (a new machine: the run is
    retrained) and its evaluated steps past that checkpoint counted again in ``evaluations``
    and ``re_evaluations``: they are kept only where the retrained generator reproduces the
    recorded digest, which another CPU's kernels do not; without ``work``, from its last
    evaluated step, as if its checkpoints were there (``training_from`` says which).

    Training seconds per step of a batch size not yet run are scaled linearly from the
    nearest recorded batch size of the architecture (an upper bound for smaller batches);
    the training of an architecture with nothing recorded is left out of the estimate and
    named in ``not_estimated``. The untrained generator of a seed is evaluated once for all
    its runs. A critical-batch run stops at its crossing, so its counts are upper bounds
    (every grid point left, and the midpoint). A truncation run counts its thresholds left,
    not the training of a generator it would sample but finds missing."""
    eval_s, step_s, step0 = _recorded_costs(runs_dir)
    runs = evals = steps = again = 0
    train_s, not_estimated, upper = 0.0, set(), False
    for spec in plan.runs:
        d = docs.get(spec.name)
        if d is not None and is_done(spec, d):
            continue
        runs += 1
        if spec.thresholds:  # truncation: one evaluation per threshold left, no training
            done_t = {r["threshold"] for r in (d or {}).get("results", [])}
            evals += sum(t not in done_t for t in spec.thresholds)
            continue
        done = {e["step"] for e in (d or {}).get("evals", [])}
        key = _untrained_key(spec.seed, dataclasses.asdict(spec.config))
        left = [st for st in spec.eval_steps if st not in done and not (st == 0 and key in step0)]
        step0.add(key)
        upper = upper or spec.target_fid is not None
        evals += len(left) + (1 if spec.target_fid is not None else 0)
        start = max(done, default=0) if work is None else _latest_checkpoint(work, spec)
        redo = sum(st > start for st in done)
        evals += redo
        again += redo
        n = max(spec.eval_steps) - start
        steps += n
        known = {b: v for (a, b), v in step_s.items() if a == spec.config.arch}
        if not known:
            not_estimated.add(spec.config.arch)
            continue
        b = min(known, key=lambda b: abs(math.log(b / spec.config.batch_size)))
        train_s += n * known[b] * spec.config.batch_size / b
    return {"runs": runs, "evaluations": evals, "re_evaluations": again, "training_steps": steps,
            "upper_bounds": upper,
            "training_from": ("the last evaluated step (checkpoints not looked for)" if work is None else
                              f"the latest checkpoint in {work} (step 0 where a run has none)"),
            "core_hours": None if eval_s is None else (evals * eval_s + train_s) / 3600,
            "not_estimated": sorted(f"training of {a}" for a in not_estimated),
            "eval_seconds_recorded": eval_s,
            "train_seconds_per_step_recorded": {f"{a} b{b}": v for (a, b), v in sorted(step_s.items())}}


def _header(plan: Plan, runs_dir, docs, missing, unfinished, command, work=None) -> dict:
    complete = not missing and not unfinished
    left = remaining(plan, runs_dir, docs, work)
    estimate = ("" if left["core_hours"] is None else
                f", {'at most ' if left['upper_bounds'] else ''}about {left['core_hours']:.1f} core-hours"
                + (f" besides the {', '.join(left['not_estimated'])}" if left["not_estimated"] else ""))
    return {"study": plan.study, "complete": complete,
            "status": ("complete" if complete else
                       f"INCOMPLETE: {len(plan.runs) - len(missing) - len(unfinished)} of {len(plan.runs)} runs "
                       f"finished ({'at most ' if left['upper_bounds'] else ''}{left['evaluations']} evaluations "
                       f"left{estimate}); the numbers below use only what exists"),
            "remaining": left,
            "missing_runs": missing, "unfinished_runs": unfinished, "quick": plan.quick,
            "runs_folder": str(Path(runs_dir) / plan.study),
            "aggregated": now(), "aggregate_command": command, "aggregate_git_commit": git_commit(),
            "evaluation": plan.eval.as_dict(), "settings": plan.settings}


def _bands(ax, steps, mean, std, color, label):
    ax.plot(steps, mean, "o-", color=color, lw=1.8, ms=3.5, label=label)
    if std is not None and all(s is not None for s in std):
        m, s = np.array(mean, float), np.array(std, float)
        ax.fill_between(steps, m - s, m + s, color=color, alpha=0.2, lw=0)


def _incomplete_note(fig, header):
    if not header["complete"]:
        fig.text(0.5, 0.005, header["status"] + f"; missing {len(header['missing_runs'])}, unfinished "
                 f"{len(header['unfinished_runs'])}", ha="center", va="bottom", fontsize=7, color="C3")


def aggregate_timescales(plan: Plan, runs_dir, results_dir, command=None, name="ttur_timescales",
                         work=None) -> dict:
    docs, missing, unfinished = _status(plan, runs_dir)
    groups: dict = {}
    for spec in plan.runs:
        groups.setdefault(spec.group, []).append(spec)
    summary = {}
    for group, specs in groups.items():
        mine = [docs[s.name] for s in specs if s.name in docs]
        steps = list(specs[0].eval_steps)
        per_step = {}
        for st in steps:
            rows = [e for d in mine for e in d["evals"] if e["step"] == st]
            fm, fs = _mean_std([e["fid"] for e in rows])
            km, ks = _mean_std([e["kid_mean"] for e in rows])
            per_step[st] = {"seeds": len(rows), "fid_mean": fm, "fid_std": fs, "kid_mean": km, "kid_std": ks}
        done = [d for d in mine if d.get("complete")]
        finals = [d["evals"][-1]["fid"] for d in done]
        final_kids = [d["evals"][-1]["kid_mean"] for d in done]
        fm, fs = _mean_std(finals)
        km, ks = _mean_std(final_kids)
        c = specs[0].config
        by_seed = {sp.seed: docs[sp.name] for sp in specs if sp.name in docs}
        summary[group] = {"arch": c.arch, "lr_d": c.lr_d, "lr_g": c.lr_g, "batch_size": c.batch_size,
                          "seeds_planned": [s.seed for s in specs], "seeds_complete": [d["seed"] for d in done],
                          "steps": steps, "per_step": {str(k): v for k, v in per_step.items()},
                          "final_step": max(steps), "final_fid_per_seed": finals, "final_fid_mean": fm,
                          "final_fid_std": fs, "final_kid_per_seed": final_kids, "final_kid_mean": km,
                          "final_kid_std": ks, "intervals": _intervals(by_seed, steps, len(specs)),
                          "last_interval": _last_interval(by_seed, steps, len(specs))}
    header = _header(plan, runs_dir, docs, missing, unfinished, command, work)
    doc = {**header,
           "question": "TTUR paper (Heusel et al., 2017): with the same step budget, does lr_D > lr_G (TTUR) reach a "
                       "lower FID, or reach it sooner, than one time scale lr_D = lr_G (at either of TTUR's two "
                       "rates)?",
           "summary": summary,
           "comparisons": timescale_comparisons(plan, docs),
           "runs": {k: {"seed": v["seed"], "group": v["group"], "complete": v.get("complete"),
                        "evals": v["evals"]} for k, v in docs.items()}}
    archs = list(dict.fromkeys(s.config.arch for s in plan.runs))
    fig, axes = new_figure(ncols=len(archs) * 2, width=4.0, height=3.6)
    for i, arch in enumerate(archs):
        for j, (key, label) in enumerate((("fid", "FID"), ("kid", "KID"))):
            ax = axes[2 * i + j]
            for k, (group, s) in enumerate((g, s) for g, s in summary.items() if s["arch"] == arch):
                pts = [(int(st), v) for st, v in s["per_step"].items() if v[f"{key}_mean"] is not None]
                if not pts:
                    continue
                xs = [p[0] for p in pts]
                _bands(ax, xs, [p[1][f"{key}_mean"] for p in pts], [p[1][f"{key}_std"] for p in pts], f"C{k}",
                       f"{group.split('/')[1]}: lr_D {s['lr_d']:g}, lr_G {s['lr_g']:g} "
                       f"(n={min(p[1]['seeds'] for p in pts)}–{max(p[1]['seeds'] for p in pts)})")
            ax.set_xscale("symlog", linthresh=max(1, min((st for st in plan.runs[0].eval_steps if st), default=1)))
            ax.set_yscale("log")
            ax.set_xlabel("generator step")
            ax.set_ylabel(f"{label} ({plan.eval.n} images)" if key == "fid" else "KID")
            ax.set_title(f"{arch}: {label}, mean ± std over seeds", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            _legend(ax)
    _incomplete_note(fig, header)
    return _write(doc, fig, results_dir, name)


def _intervals(runs: dict, steps: list, planned: int | None = None) -> list:
    """How much the runs' FID changed over each interval of the schedule (consecutive
    evaluation steps after step 0), with every run that has been evaluated at both ends,
    finished or not (``runs``: {seed: run document}): per seed the relative change
    FID_to / FID_from − 1, its mean ± std, and ``flat`` (|mean| below :data:`FLAT_CHANGE`;
    None until all ``planned`` seeds have the interval). Only intervals that some run has
    reached the end of."""
    out = []
    after0 = sorted(s for s in steps if s > 0)
    for before, last in zip(after0, after0[1:]):
        fids = {seed: {e["step"]: e["fid"] for e in d["evals"]} for seed, d in runs.items()}
        reached = {seed: f for seed, f in fids.items() if f.get(last) is not None}
        if not reached:
            continue
        change = {seed: (f[last] / f[before] - 1.0 if f.get(before) else None) for seed, f in reached.items()}
        m, sd = _mean_std(change.values())
        out.append({"from_step": before, "to_step": last, "seeds": sorted(reached),
                    "fid_change_per_seed": {str(k): v for k, v in sorted(change.items())}, "fid_change_mean": m,
                    "fid_change_std": sd, "flat_below": FLAT_CHANGE,
                    "flat": None if m is None or (planned is not None and len(reached) < planned)
                    else abs(m) < FLAT_CHANGE})
    return out


def _last_interval(runs: dict, steps: list, planned: int | None = None) -> dict | None:
    """The last of :func:`_intervals` (the latest interval some run has reached the end of),
    or None before any run has two evaluations after step 0."""
    got = _intervals(runs, steps, planned)
    return got[-1] if got else None


def _welch(a: list, b: list) -> dict:
    """Welch's t-test of two samples' means (two-sided); None entries where a sample has < 2
    values or neither varies (no spread to read the difference against)."""
    va = np.var(a, ddof=1) / len(a) if len(a) > 1 else None
    vb = np.var(b, ddof=1) / len(b) if len(b) > 1 else None
    if va is None or vb is None or va + vb == 0:
        return {"t": None, "dof": None, "p": None}
    from scipy import stats as sps
    r = sps.ttest_ind(a, b, equal_var=False)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return {"t": float(r.statistic), "dof": float(dof), "p": float(r.pvalue)}


def timescale_comparisons(plan: Plan, docs: dict) -> dict:
    """Per architecture, TTUR against each single time scale, from the finished runs:

    - *final*: FID at the last step per seed, means, the difference (single − TTUR; positive:
      TTUR lower), the seeds' spread, and Welch's t-test (with 3 seeds a weak test: read the
      difference against the spread); and the same paired by seed on the seeds both groups
      have (a seed's runs share the untrained generator and the evaluation z), which also
      says when the two groups' means are over different seeds;
    - *arrival*: steps to reach a common level, the highest final FID of any finished run (so
      that every run reaches it: a level that some runs miss would average only the others),
      per seed interpolated in log step against log FID between the evaluations around the
      crossing (evaluations 2.4-3× apart in step, so a coarse estimate; the run that sets the
      level arrives at its last step by construction); the ratio of mean steps on the seeds
      both groups have (single / TTUR; > 1: TTUR arrives sooner), None if one of those runs
      has not reached it."""
    out: dict = {}
    for arch in dict.fromkeys(s.config.arch for s in plan.runs):
        groups: dict = {}
        for spec in plan.runs:
            if spec.config.arch == arch:
                d = docs.get(spec.name)
                if d is not None and d.get("complete"):
                    groups.setdefault(spec.group.split("/", 1)[1], {})[spec.seed] = d
        finals = {g: {seed: d["evals"][-1]["fid"] for seed, d in ds.items()} for g, ds in groups.items()}
        every = [f for v in finals.values() for f in v.values() if f is not None]
        level = max(every) if len(groups) > 1 and every else None
        arrival, reached = {}, {}
        for g, ds in groups.items():
            reached[g] = {seed: _steps_to(d["evals"], level)[0] if level is not None else None
                          for seed, d in ds.items()}
            m, sd = _mean_std(reached[g].values())
            arrival[g] = {"steps_per_seed": {str(k): v for k, v in reached[g].items()},
                          "seeds_not_reaching": None if level is None else sum(x is None for x in reached[g].values()),
                          "steps_mean": m, "steps_std": sd}
        entry = {"level_for_arrival": level, "arrival": arrival, "versus_ttur": {}}
        for g in groups:
            if g == "ttur" or "ttur" not in groups:
                continue
            shared = sorted(set(reached["ttur"]) & set(reached[g]))
            a = [reached["ttur"][k] for k in shared]
            b = [reached[g][k] for k in shared]
            ratio = (float(np.mean(b)) / float(np.mean(a)) if shared and None not in a + b and np.mean(a) > 0
                     else None)
            entry["versus_ttur"][g] = {**_versus(finals["ttur"], finals[g], "final_fid"),
                                       "arrival_seeds": shared, "arrival_steps_ratio": ratio}
        entry["by_step"] = _comparisons_by_step(plan, docs, arch)
        out[arch] = entry
    return out


def _paired(ttur: dict, single: dict) -> dict:
    """single − TTUR seed by seed on the seeds both have: the seeds, the differences, their
    mean ± std and a paired t-test (None entries with fewer than 2 seeds or no spread)."""
    shared = sorted(k for k in set(ttur) & set(single) if ttur[k] is not None and single[k] is not None)
    diff = [single[k] - ttur[k] for k in shared]
    m, sd = _mean_std(diff)
    p = None
    if len(diff) > 1 and sd:
        from scipy import stats as sps
        p = float(sps.ttest_1samp(diff, 0.0).pvalue)
    return {"seeds": shared, "difference_per_seed": diff, "difference_mean": m, "difference_std": sd, "p": p}


def _versus(ttur: dict, single: dict, key: str) -> dict:
    """One single time scale against TTUR on FIDs per seed ({seed: FID}): seeds, mean ± std
    of each (``KEY_ttur``, ``KEY_single``), the difference single − TTUR and Welch's test,
    and the paired comparison on the seeds both have (``paired``; ``same_seeds`` says whether
    the two means above are over the same seeds)."""
    a = [v for v in ttur.values() if v is not None]
    b = [v for v in single.values() if v is not None]
    (ma, sa), (mb, sb) = _mean_std(a), _mean_std(b)
    return {"seeds": [len(a), len(b)], "same_seeds": set(ttur) == set(single), f"{key}_ttur": [ma, sa],
            f"{key}_single": [mb, sb], f"{key}_difference": None if ma is None or mb is None else mb - ma,
            "welch": _welch(a, b), "paired": _paired(ttur, single)}


def _comparisons_by_step(plan: Plan, docs: dict, arch: str) -> dict:
    """At every evaluation step of ``arch``'s schedule after step 0, TTUR against each single
    time scale with the runs that have reached that step, finished or not (the step budget
    of that step): FID mean ± std per group, difference (single − TTUR), Welch's test and the
    paired comparison on the seeds both have."""
    fids: dict = {}
    for spec in plan.runs:
        d = docs.get(spec.name)
        if spec.config.arch != arch or d is None:
            continue
        g = spec.group.split("/", 1)[1]
        for e in d["evals"]:
            if e["step"] and e["fid"] is not None:
                fids.setdefault(e["step"], {}).setdefault(g, {})[spec.seed] = e["fid"]
    out = {}
    for step in sorted(fids):
        ttur = fids[step].get("ttur", {})
        row = {}
        for g, v in fids[step].items():
            if g == "ttur" or not ttur:
                continue
            row[g] = _versus(ttur, v, "fid")
        if row:
            out[str(step)] = row
    return out


def _steps_to(evals: list, threshold: float) -> tuple:
    """(steps at which FID first falls to ``threshold``, interpolated between the two
    evaluations around the crossing — log-log, linear from step 0 —, first evaluated step at
    or below it) or (None, None). Evaluations without a FID are passed over.

    From step 0 the straight line between the two evaluations lies above a falling convex
    curve, so a crossing in that first bracket is an upper bound (:func:`crossing_from_start`)."""
    prev = None
    for e in evals:
        if e["fid"] is None:
            continue
        if e["fid"] <= threshold:
            if prev is None:
                return float(e["step"]), e["step"]
            s0, f0, s1, f1 = prev["step"], prev["fid"], e["step"], e["fid"]
            if s0 > 0:
                w = (math.log(f0) - math.log(threshold)) / (math.log(f0) - math.log(f1))
                return float(math.exp(math.log(s0) + w * (math.log(s1) - math.log(s0)))), s1
            w = (f0 - threshold) / (f0 - f1)
            return float(s0 + w * (s1 - s0)), s1
        prev = e
    return None, None


def crossing_from_start(evals: list, first: int | None) -> bool:
    """Whether the crossing found by :func:`_steps_to` lies in the bracket that starts at step 0."""
    if first is None:
        return False
    before = [e["step"] for e in evals if e["fid"] is not None and e["step"] < first]
    return bool(before) and max(before) == 0


def paper_checks(bs: list, steps: list, sfo: list) -> dict:
    """The paper's three claims on one curve over increasing batch sizes ``bs``: the steps
    never rise with the batch (``steps_fall_with_batch``); SFO = b·K is convex in b, i.e.
    its slopes between neighbouring batch sizes never fall (``sfo_convex``, on the uneven
    grid as it is); its minimum lies inside the range, not at an end (``sfo_minimum_inside``).

    The first two are strict inequalities on noisy values, so each failure is listed with its
    size (``steps_rises``: the batch sizes where K rose and by what fraction;
    ``sfo_slope_drops``: the middle batch size where the slope fell and by what fraction of
    the larger slope's size), for a reader to tell noise from a refutation."""
    slopes = [(c - a) / (y - x) for a, c, x, y in zip(sfo, sfo[1:], bs, bs[1:])]
    rises = [{"from": x, "to": y, "relative": (k1 - k0) / k0 if k0 else None}
             for x, y, k0, k1 in zip(bs, bs[1:], steps, steps[1:]) if k1 > k0]
    drops = [{"at": bs[i + 1], "relative": (a - b) / max(abs(a), abs(b))}
             for i, (a, b) in enumerate(zip(slopes, slopes[1:])) if b < a]
    return {"steps_fall_with_batch": not rises, "sfo_convex": not drops,
            "sfo_minimum_inside": 0 < int(np.argmin(sfo)) < len(bs) - 1,
            "steps_rises": rises, "sfo_slope_drops": drops}


def _critical_from(bs: list, sfo: list) -> tuple:
    """(estimate, bound) of the critical batch size of one seed from its SFO over the batch
    sizes ``bs`` (ascending). ``sfo`` may hold ``math.inf`` for a run that never reached the
    threshold: its SFO exceeds the grid's last images seen, above every run that reached it,
    so it cannot be the minimum. The estimate is the argmin, refined by a parabola through
    log SFO against log2 batch at the minimum and its two (finite) neighbours; ``bound`` is
    None then. A minimum at an end of the grid is no estimate: (None, "<= 16") or
    (None, ">= 512"). Nothing reached: (None, None)."""
    if not any(math.isfinite(v) for v in sfo):
        return None, None
    i = int(np.argmin(sfo))
    if i == 0:
        return None, f"<= {bs[0]}"
    if i == len(bs) - 1:
        return None, f">= {bs[-1]}"
    if all(math.isfinite(v) for v in sfo[i - 1:i + 2]):
        x = np.log2(bs[i - 1:i + 2])
        y = np.log(sfo[i - 1:i + 2])
        a, b, _ = np.polyfit(x, y, 2)
        if a > 0:
            return float(2 ** float(np.clip(-b / (2 * a), x[0], x[2]))), None
    return float(bs[i]), None


def steps_model_fits(bs: list, steps: list) -> dict:
    """Two laws for the steps K to the threshold against the batch size b, each fitted by
    least squares in log K (the seeds' spread in K is roughly relative) over the batch sizes
    ``bs`` (ascending, every run reaching):

    - ``bound_form``: K = A·b / (b − B), 0 ≤ B < min(bs): the form of Sato & Iiduka's
      bound (from C1/K + C2/b ≤ ε², A = C1/ε², B = C2/ε²), whose SFO b·K = A·b²/(b − B) is
      convex with its minimum at ``critical_batch`` = 2B; ``B_at_limit`` when the fit runs
      into B's upper limit (K unbounded at the smallest batch), where 2B is no estimate.
    - ``noise_scale_form``: K = K_min·(1 + B/b) (McCandlish et al., 2018): steps fall to
      K_min for large batches and samples b·K = K_min·(b + B) rise at every b, so SFO has no
      minimum above 0; ``B`` (the noise scale) is the batch at which K is twice K_min and
      b·K twice its small-batch limit K_min·B, the critical batch in that paper's sense.

    Each gives ``rms_log_residual`` and ``max_relative_residual`` (fitted over measured K)
    so that the two can be told apart by how well they fit, against the seeds' spread.
    Fewer than three batch sizes (two parameters need a residual to judge them), or a K that
    is not a positive number (a crossing interpolated to step 0, as tiny --quick runs give):
    {}, nothing fitted."""
    if len(bs) < 3 or not all(k is not None and math.isfinite(k) and k > 0 for k in steps):
        return {}
    from scipy.optimize import least_squares
    b = np.asarray(bs, dtype=np.float64)
    logk = np.log(np.asarray(steps, dtype=np.float64))

    def result(model, params, names):
        r = model(params) - logk
        return {**{n: float(v) for n, v in zip(names, params)},
                "rms_log_residual": float(np.sqrt(np.mean(r ** 2))),
                "max_relative_residual": float(np.max(np.abs(np.expm1(r))))}

    # K_min (1 + B/b): a start from the linear fit K = K_min + K_min·B/b
    slope, icpt = np.polyfit(1 / b, np.exp(logk), 1)
    start = [max(icpt, float(np.exp(logk).min()) / 2), max(slope / max(icpt, 1e-9), 1.0)]
    noise = least_squares(lambda p: np.log(p[0] * (1 + p[1] / b)) - logk, start,
                          bounds=([1e-12, 0.0], [np.inf, np.inf]))
    noise_doc = result(lambda p: np.log(p[0] * (1 + p[1] / b)), noise.x, ("K_min", "B"))
    # A b / (b - B), B below the smallest batch (else K would be unbounded or negative there)
    limit = float(b[0]) * (1 - 1e-6)
    bound = least_squares(lambda p: np.log(p[0] * b / (b - p[1])) - logk, [float(np.exp(logk).min()), b[0] / 2],
                          bounds=([1e-12, 0.0], [np.inf, limit]))
    bound_doc = result(lambda p: np.log(p[0] * b / (b - p[1])), bound.x, ("A", "B"))
    at_limit = bool(bound.x[1] >= limit * (1 - 1e-3))
    bound_doc.update(critical_batch=None if at_limit else 2 * float(bound.x[1]), B_at_limit=at_limit)
    return {"bound_form": bound_doc, "noise_scale_form": noise_doc}


def _t_summary(values: list) -> dict:
    """mean, sample std and 95% t-interval of ``values`` (the seeds' estimates)."""
    m, s = _mean_std(values)
    ci = None
    if s is not None:
        from scipy import stats as sps
        half = s / math.sqrt(len(values)) * float(sps.t.ppf(0.975, len(values) - 1))
        ci = [m - half, m + half]
    return {"seeds": len(values), "mean": m, "std": s, "ci95": ci}


def aggregate_critical_batch(plan: Plan, runs_dir, results_dir, command=None, name="ttur_critical_batch",
                             threshold=None, work=None) -> dict:
    docs, missing, unfinished = _status(plan, runs_dir)
    done = {n: d for n, d in docs.items() if d.get("complete")}
    batch_sizes = sorted({s.config.batch_size for s in plan.runs})
    seeds = sorted({s.seed for s in plan.runs})
    target = next((r.target_fid for r in plan.runs if r.target_fid is not None), None)
    if threshold is None and target is not None:
        threshold = target
        threshold_rule = ("fixed before the runs (the study's target FID, --target-fid): each run is evaluated on "
                          "the images-seen grid until its FID first falls to it, then once more at the geometric "
                          "midpoint of the bracketing grid steps")
    elif threshold is None and done:  # runs made without a target: the lowest level every run reached
        worst_best = max(min((e["fid"] for e in d["evals"] if e["fid"] is not None), default=math.inf)
                         for d in done.values())
        threshold_rule = ("the largest over all finished runs of each run's lowest evaluated FID, rounded up to "
                          "0.1: the lowest level that every run reached")
        threshold = math.ceil(worst_best * 10) / 10 if math.isfinite(worst_best) else None
    else:
        threshold_rule = (("given (aggregate --threshold); the runs stopped at the target FID "
                           f"{target:g}, so a lower threshold is reached by none" if target is not None else "given")
                          if threshold is not None else "no finished runs")
    table = []
    for spec in plan.runs:
        d = done.get(spec.name)
        row = {"batch_size": spec.config.batch_size, "seed": spec.seed, "complete": d is not None}
        if d is not None and threshold is not None:
            steps, first = _steps_to(d["evals"], threshold)
            row.update(reached=steps is not None, steps=steps, first_eval_at_or_below=first,
                       steps_upper_bound=crossing_from_start(d["evals"], first),
                       sfo=None if steps is None else steps * spec.config.batch_size,
                       evaluations=len(d["evals"]),
                       best_fid=min((e["fid"] for e in d["evals"] if e["fid"] is not None), default=None),
                       final_fid=d["evals"][-1]["fid"], final_step=d["evals"][-1]["step"],
                       # evaluated to the grid's end: a miss means SFO above the grid's last images seen
                       whole_grid=max(e["step"] for e in d["evals"]) >= max(spec.eval_steps))
        table.append(row)
    per_batch = {}
    for b in batch_sizes:
        rows = [r for r in table if r["batch_size"] == b and r.get("steps") is not None]
        sm, ss = _mean_std([r["steps"] for r in rows])
        fm, fs = _mean_std([r["sfo"] for r in rows])
        missed = [r["seed"] for r in table if r["batch_size"] == b and r.get("reached") is False]
        per_batch[str(b)] = {"seeds": len(rows), "seeds_not_reaching": missed, "steps_mean": sm, "steps_std": ss,
                             "sfo_mean": fm, "sfo_std": fs}
    critical, excluded = {}, {}
    for seed in seeds:
        rows = sorted((r for r in table if r["seed"] == seed), key=lambda r: r["batch_size"])
        waiting = [r["batch_size"] for r in rows if not r["complete"]]
        if waiting or threshold is None:
            excluded[str(seed)] = (f"runs not finished at batch {', '.join(map(str, waiting))}" if waiting
                                   else "no threshold")
            continue
        bs = [r["batch_size"] for r in rows]
        short = [r["batch_size"] for r in rows if not r["reached"] and not r["whole_grid"]]
        if short:  # stopped at the target before a lower --threshold: how far beyond, unknown
            excluded[str(seed)] = (f"batch {', '.join(map(str, short))} stopped at the target before reaching the "
                                   "threshold")
            continue
        # a run that never reached the threshold has SFO above the grid's end: censored, not dropped
        sfo = [r["sfo"] if r["reached"] else math.inf for r in rows]
        estimate, bound = _critical_from(bs, sfo)
        if estimate is None and bound is None:
            excluded[str(seed)] = "no run of this seed reached the threshold"
            continue
        entry = {"critical_batch": estimate, "bound": bound, "argmin": bs[int(np.argmin(sfo))],
                 "not_reaching": [r["batch_size"] for r in rows if not r["reached"]]}
        if all(r["reached"] for r in rows):
            entry.update(paper_checks(bs, [r["steps"] for r in rows], sfo))
            entry["model_fits"] = steps_model_fits(bs, [r["steps"] for r in rows])
        else:  # the minimum is still known; rises and convexity are not
            entry.update(steps_fall_with_batch=None, sfo_convex=None, sfo_minimum_inside=bound is None)
        critical[str(seed)] = entry
    estimates = [v["critical_batch"] for v in critical.values()]
    in_mean = sorted(int(k) for k in critical) if estimates and None not in estimates else []
    if estimates and all(v is not None for v in estimates):  # every seed's minimum inside the grid
        logs = [math.log2(v) for v in estimates]
        lm, ls = _mean_std(logs)
        from scipy import stats as sps
        ci = (None if len(logs) < 2 else
              [lm + q * ls / math.sqrt(len(logs)) * float(sps.t.ppf(0.975, len(logs) - 1)) for q in (-1, 1)])
    else:  # a bound among them: a mean of values and bounds would be neither
        lm = ls = ci = None
    passing = {}
    for k in ("steps_fall_with_batch", "sfo_convex", "sfo_minimum_inside"):
        decided = [v.get(k) for v in critical.values() if v.get(k) is not None]
        passing[k] = (f"{sum(decided)} of {len(decided)} seeds"
                      + (f" ({len(critical) - len(decided)} undetermined: a run censored)"
                         if len(decided) < len(critical) else ""))
    # on the means only where every batch size has all planned seeds finished and reaching: a mean
    # over the seeds that happened to reach would favour the fast ones
    everyone = all(per_batch[str(b)]["seeds"] == len(seeds) for b in batch_sizes) and not excluded
    full = batch_sizes if everyone else []
    on_means = (paper_checks(full, [per_batch[str(b)]["steps_mean"] for b in full],
                             [per_batch[str(b)]["sfo_mean"] for b in full]) if everyone else None)
    fits_on_means = (steps_model_fits(full, [per_batch[str(b)]["steps_mean"] for b in full]) if everyone else None)
    fitted = [v["model_fits"] for v in critical.values() if v.get("model_fits")]
    fit_seeds = ({"seeds": sorted(int(k) for k, v in critical.items() if v.get("model_fits")),
                  "noise_scale_B": _t_summary([f["noise_scale_form"]["B"] for f in fitted]),
                  "noise_scale_rms_log_residual": _t_summary([f["noise_scale_form"]["rms_log_residual"]
                                                              for f in fitted]),
                  "bound_form_critical_batch": (_t_summary([f["bound_form"]["critical_batch"] for f in fitted])
                                                if all(f["bound_form"]["critical_batch"] is not None
                                                       for f in fitted) else None),
                  "bound_form_rms_log_residual": _t_summary([f["bound_form"]["rms_log_residual"]
                                                             for f in fitted])}
                 if len(fitted) == len(seeds) and fitted else None)
    header = _header(plan, runs_dir, docs, missing, unfinished, command, work)
    doc = {**header,
           "question": "Sato & Iiduka (2022): the steps K needed to reach a target fall as the batch size b grows, "
                       "and the SFO complexity b·K is convex in b with a minimum at the critical batch size.",
           "definition": "steps = the step at which the run's FID curve first reaches the threshold, interpolated "
                         "in log step against log FID between the evaluations around the crossing (linearly from "
                         "step 0); a run is evaluated at 0 and at the same images seen (batch × steps: "
                         f"{', '.join(str(n) for n in CRITICAL_IMAGES)}) for every batch size until it reaches the "
                         "target, then at the geometric midpoint of the bracket, so the crossing lies between "
                         "evaluations a factor √2 apart; SFO = batch size × steps (generator updates' samples; "
                         "the discriminator draws as many); a run that never reaches it within the grid has no "
                         "steps (reported, not extrapolated). Critical batch size per seed = argmin of SFO over the "
                         "batch sizes, refined by a parabola in (log2 b, log SFO) through the minimum and its two "
                         "neighbours, a run that did not reach the threshold counting as SFO above the grid's end "
                         "(censored, so it can never be the minimum); a minimum at an end of the batch grid is a "
                         "bound (<= smallest, >= largest), not an estimate; mean ± std over seeds in log2, with a "
                         "95% t-interval, only when every seed's minimum lies inside the grid. A crossing in the "
                         "first bracket (from step 0) is an upper bound on K (steps_upper_bound).",
           "threshold": threshold, "threshold_rule": threshold_rule, "batch_sizes": batch_sizes,
           "per_run": table, "per_batch": per_batch, "paper_checks_on_means": on_means,
           "paper_checks_on_means_rule": "only when every batch size has all seeds finished and reaching the "
                                         "threshold, so that every mean is over the same seeds",
           "paper_checks_seeds_passing": passing,
           "critical_batch_per_seed": critical, "seeds_excluded": excluded,
           "critical_batch_seeds_in_mean": in_mean,
           "critical_batch_log2_mean": lm, "critical_batch_log2_std": ls, "critical_batch_log2_ci95": ci,
           "critical_batch_ci95": None if ci is None else [2 ** v for v in ci],
           "critical_batch_geometric_mean": None if lm is None else 2 ** lm,
           "model_fits_rule": "K against b fitted per seed (model_fits in critical_batch_per_seed, every run of "
                              "the seed reaching the threshold) and on the means (only when paper_checks_on_means "
                              "is), by least squares in log K, to two laws: the form of the paper's bound, "
                              "K = A·b/(b − B) with 0 <= B < smallest batch, SFO minimum at 2B; and the "
                              "noise-scale law K = K_min·(1 + B/b) (McCandlish et al. 2018), SFO rising at every "
                              "b, B the batch where K is twice K_min; model_fits_over_seeds gives each law's "
                              "estimate as mean ± std over seeds with a 95% t-interval, only when every seed "
                              "has its fit",
           "model_fits_on_means": fits_on_means, "model_fits_over_seeds": fit_seeds,
           "runs": {k: {"seed": v["seed"], "group": v["group"], "complete": v.get("complete"),
                        "evals": v["evals"]} for k, v in docs.items()}}
    fig, axes = new_figure(ncols=3, width=4.0, height=3.6)
    for seed_i, seed in enumerate(seeds):
        for spec in (s for s in plan.runs if s.seed == seed and s.name in docs):
            ev = docs[spec.name]["evals"]
            k = batch_sizes.index(spec.config.batch_size)
            b = spec.config.batch_size
            axes[0].plot([max(e["step"] * b, b) for e in ev], [e["fid"] for e in ev], ".-", color=f"C{k}", alpha=0.6,
                         lw=1, ms=3, label=f"batch {b}" if seed_i == 0 else None)
    if threshold is not None:
        axes[0].axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("images seen (batch × steps; step 0 drawn at one batch)")
    axes[0].set_ylabel(f"FID ({plan.eval.n} images)")
    axes[0].set_title("FID curves (each seed)", fontsize=9)
    _legend(axes[0])
    for ax, key, label in ((axes[1], "steps", "steps to threshold"), (axes[2], "sfo", "SFO = batch × steps")):
        xs = [b for b in batch_sizes if per_batch[str(b)][f"{key}_mean"] is not None]
        _bands(ax, xs, [per_batch[str(b)][f"{key}_mean"] for b in xs],
               [per_batch[str(b)][f"{key}_std"] for b in xs] if xs and all(
                   per_batch[str(b)][f"{key}_std"] is not None for b in xs) else None, "C0", "mean ± std over seeds")
        for r in table:
            if r.get(key) is not None:
                ax.plot(r["batch_size"], r[key], ".", color="0.4", ms=4)
        if fits_on_means:
            nf = fits_on_means["noise_scale_form"]
            grid = np.geomspace(batch_sizes[0], batch_sizes[-1], 100)
            k_fit = nf["K_min"] * (1 + nf["B"] / grid)
            ax.plot(grid, k_fit if key == "steps" else grid * k_fit, "--", color="C2", lw=1,
                    label=f"K_min(1 + B/b), B ≈ {nf['B']:.1f} (means)")
        if lm is not None and key == "sfo":
            ax.axvline(2 ** lm, color="C3", ls="--", lw=1, label=f"critical batch ≈ {2 ** lm:.0f}")
            if ls:
                ax.axvspan(2 ** (lm - ls), 2 ** (lm + ls), color="C3", alpha=0.1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        _legend(ax)
    fig.suptitle(f"dcgan, lr_D {plan.runs[0].config.lr_d:g}, lr_G {plan.runs[0].config.lr_g:g}: steps and SFO to "
                 f"FID ≤ {threshold if threshold is not None else '?'}", fontsize=9)
    _incomplete_note(fig, header)
    return _write(doc, fig, results_dir, name)


def truncation_changes(docs, thresholds) -> list:
    """Per threshold, each generator's change from its own untruncated sample (paired, so that
    the generators' different levels drop out): mean ± std over generators of Δprecision,
    Δrecall, Δdensity, Δcoverage, ΔFID, ΔKID, a one-sample t-test of each mean change against
    0 (``delta_KEY_p``; None with fewer than 2 generators or no spread; with 3 generators a weak
    test), and how many generators moved as BigGAN reports (precision up, recall down)."""
    from scipy import stats as sps
    out = []
    for t in thresholds:
        if t is None:
            continue
        deltas: dict = {k: [] for k in ("precision", "recall", "density", "coverage", "fid", "kid_mean")}
        biggan = 0
        for d in docs:
            base = next((r for r in d["results"] if r["threshold"] is None), None)
            row = next((r for r in d["results"] if r["threshold"] == t), None)
            if base is None or row is None:
                continue
            for k in deltas:
                deltas[k].append(row[k] - base[k])
            biggan += row["precision"] > base["precision"] and row["recall"] < base["recall"]
        entry = {"threshold": t, "generators": len(deltas["fid"]), "precision_up_and_recall_down": biggan}
        for k, v in deltas.items():
            m, sd = _mean_std(v)
            entry[f"delta_{k}_mean"], entry[f"delta_{k}_std"] = m, sd
            entry[f"delta_{k}_p"] = float(sps.ttest_1samp(v, 0.0).pvalue) if len(v) > 1 and sd else None
        out.append(entry)
    return out


def aggregate_truncation(plan: Plan, runs_dir, results_dir, command=None, name="ttur_truncation",
                         work=None) -> dict:
    docs, missing, unfinished = _status(plan, runs_dir)
    thresholds = list(THRESHOLDS if not plan.runs else plan.runs[0].thresholds)
    per_t = []
    keys = ("fid", "kid_mean", "precision", "recall", "density", "coverage")
    for t in thresholds:
        rows = [r for d in docs.values() for r in d["results"] if r["threshold"] == t]
        entry = {"threshold": t, "generators": len(rows)}
        for k in keys:
            m, s = _mean_std([r[k] for r in rows])
            entry[k] = m
            entry[f"{k}_std"] = s
        per_t.append(entry)
    paired = truncation_changes(docs.values(), thresholds)
    header = _header(plan, runs_dir, docs, missing, unfinished, command, work)
    doc = {**header,
           "question": "BigGAN (Brock et al., 2019): sampling z from a truncated normal trades variety for fidelity: "
                       "as the threshold falls, precision (fidelity) rises and recall (variety) falls, and FID "
                       "rises once variety is lost.",
           "per_threshold": per_t,
           "change_from_untruncated": paired,
           "runs": {k: {"seed": v["seed"], "complete": v.get("complete"), "generator": v.get("generator"),
                        "generator_sha256": v.get("generator_sha256"), "results": v["results"]}
                    for k, v in docs.items()}}
    fig, (ax1, ax2, ax3) = new_figure(ncols=3, width=4.0, height=3.6)
    have = [e for e in per_t if e["fid"] is not None]

    def lab(t):
        return "∞" if t is None else f"{t:g}"

    for i, d in enumerate(docs.values()):  # along the thresholds: ∞, then falling
        rs = sorted(d["results"], key=lambda r: -math.inf if r["threshold"] is None else -r["threshold"])
        ax1.plot([r["recall"] for r in rs], [r["precision"] for r in rs], "o-", color=f"C{i}", ms=4,
                 label=f"generator seed {d['seed']}")
        for r in rs:
            ax1.annotate(lab(r["threshold"]), (r["recall"], r["precision"]), textcoords="offset points",
                         xytext=(3, 3), fontsize=6)
        ax3.plot([r["recall"] for r in rs], [r["coverage"] for r in rs], "s-", color=f"C{i}", ms=3,
                 label=f"seed {d['seed']}")
        ax3.plot([r["recall"] for r in rs], [r["density"] for r in rs], "^--", color=f"C{i}", ms=3, alpha=0.6)
    ax1.set_xlabel("recall (variety)")
    ax1.set_ylabel("precision (fidelity)")
    ax1.set_title("precision vs recall along thresholds", fontsize=9)
    ax1.grid(alpha=0.3)
    _legend(ax1)
    xs = [math.inf if e["threshold"] is None else e["threshold"] for e in have]
    finite = [(x, e) for x, e in zip(xs, have) if math.isfinite(x)]
    if finite:
        ax2.errorbar([x for x, _ in finite], [e["fid"] for _, e in finite],
                     yerr=[e["fid_std"] or 0 for _, e in finite], fmt="o-", color="C1", ms=4, label="truncated")
    for e in have:
        if e["threshold"] is None:
            ax2.axhline(e["fid"], color="0.4", ls="--", lw=1, label="untruncated (∞)")
    ax2.set_xscale("log")
    ticks = [t for t in thresholds if t is not None]
    if ticks:
        ax2.set_xticks(ticks)
        ax2.set_xticklabels([f"{t:g}" for t in ticks], fontsize=7)
        ax2.minorticks_off()
    ax2.set_xlabel("truncation threshold")
    ax2.set_ylabel(f"FID ({plan.eval.n} images)")
    ax2.set_title("FID vs threshold", fontsize=9)
    ax2.grid(alpha=0.3, which="both")
    _legend(ax2)
    ax3.set_xlabel("recall")
    ax3.set_ylabel("coverage (solid), density (dashed)")
    ax3.set_title("coverage and density", fontsize=9)
    ax3.grid(alpha=0.3)
    _incomplete_note(fig, header)
    return _write(doc, fig, results_dir, name)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _write(doc: dict, fig, results_dir, name: str) -> dict:
    for ax in fig.axes:
        if not any(len(line.get_xdata()) for line in ax.get_lines()) and not ax.collections:
            # nothing finished yet: no log scale on an empty axis
            ax.set_xscale("linear")
            ax.set_yscale("linear")
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json(results_dir / f"{name}.json", doc)
    save_figure(fig, results_dir / f"{name}.png")
    return doc


AGGREGATORS = {"timescales": aggregate_timescales, "truncation": aggregate_truncation,
               "critical-batch": aggregate_critical_batch}
RESULT_NAMES = {"timescales": "ttur_timescales", "truncation": "ttur_truncation",
                "critical-batch": "ttur_critical_batch"}
