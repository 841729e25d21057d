"""fidkit under torchrun: every rank reads a block of each source, rank 0 merges and reports.

``torchrun --nproc-per-node K -m fidkit stats SRC -o OUT`` (or ``compute A B ...``) starts K
processes; this module makes them one run:

- :func:`run_command` (called by :func:`fidkit.cli.main`) sees torchrun by its environment
  (``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``) and joins the process group: gloo on a
  machine without CUDA; with CUDA, ``cuda:LOCAL_RANK`` (modulo the GPU count) is the rank's
  GPU and the group is ``cpu:gloo,cuda:nccl`` (features travel GPU to GPU), or gloo alone
  where ranks share GPUs (nccl refuses two ranks on one GPU). Rank 0 runs the command as
  one process would; the other ranks only :meth:`Session.serve`: they wait for rank 0's
  passes and exit with rank 0's exit status, printing nothing but errors of their own (no
  progress bars, no warnings).
- Every pass over images (:func:`fidkit.api.extract`) becomes a *job*: rank 0 sends the
  source as one :class:`~fidkit.sources.Images` (pickled, through the rendezvous store: a
  file list, an archive's member table, a named dataset's name, each rank reading the files
  itself; in-memory arrays travel whole) with the pass's options, and each rank reads its
  block of it (:func:`share_bounds`: contiguous
  blocks in rank order, cut at multiples of the batch size, so that every network batch
  holds the images it holds in one process). No collective runs during the pass.
- Then one all-gather of each rank's outcome: ok (image counts per batch, files skipped
  with ``--skip-bad``) or its error. If any rank failed, every rank ends: rank 0 raises the
  lowest failing rank's error, named ``rank R of K: ...`` (one line, exit 1), the others
  exit 1 silently. A rank that fails also tells the others through the store, so that they
  stop after their current batch instead of finishing their blocks first.
- Otherwise the ranks send rank 0 their features (float32), and rank 0 folds them into the
  float64 statistics batch by batch in the order one process would (rank 0's batches, then
  rank 1's, ...), so the statistics are *identical*, bit for bit, to one process's with the
  same batch size, device and torch thread count; metrics that need every feature (KID,
  precision/recall, FD∞, CMMD, bootstrap, IS from the logits) get them in the same order.

Collectives wait at most ``FIDKIT_DISTRIBUTED_TIMEOUT`` seconds (default 1800): a rank that
finished its block waits there for the slowest one. A rank killed outright closes its
connections, so the others fail at once, and torchrun's agent ends the rest of the group.
Waiting for rank 0's next job (while it computes scores or writes the file) has no limit
but ends when rank 0 ends.

Memory: each rank keeps its block's features until it sends them (float32, 8 KiB per image
for Inception's pool3, plus 8 KiB with ``--metrics fid,sfid`` and 4 KiB with ``is``); rank 0
receives one rank's block at a time but keeps every feature when a metric needs them all.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import time
import warnings
from datetime import timedelta
from typing import Callable

import numpy as np
import torch

from . import _io, api
from .errors import FidkitError
from . import errors as _errors
from .pipeline import BadFile, MAX_DEFAULT_WORKERS, iter_features
from .sources import as_images, share_of
from .stats import Accumulator

TIMEOUT_ENV = "FIDKIT_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800
#: the longest pause between two looks for rank 0's next job (seconds)
_JOB_POLL_S = 0.5
#: how long rank 0 waits, at its end, for the other ranks to read that it ended (seconds)
_DONE_WAIT_S = 10
#: seconds a rank > 0 under torchrun waits, after rank 0 ended the run with an error, for the
#: agent to see rank 0's exit first (see :func:`_outlast_rank0`)
_EXIT_GRACE_S = 5.0


def launched() -> bool:
    """True when this process is one of several started by torchrun: ``WORLD_SIZE`` > 1 with
    ``RANK`` and ``LOCAL_RANK`` set."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return False
    return world > 1 and "RANK" in os.environ and "LOCAL_RANK" in os.environ


def share_bounds(n: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """The block ``[lo, hi)`` of items 0..n−1 that ``rank`` of ``world`` reads.

    The ⌈n / batch_size⌉ batches are dealt out in contiguous, nearly equal runs in rank order
    (rank r gets batches ⌊r·B/K⌋ .. ⌊(r+1)·B/K⌋ − 1), so ``lo`` is a multiple of ``batch_size``
    and the blocks, concatenated in rank order, are 0..n−1. A rank may get none (lo == hi)
    when there are fewer batches than ranks.
    """
    batches = -(-n // batch_size)
    lo = rank * batches // world * batch_size
    hi = (rank + 1) * batches // world * batch_size
    return min(lo, n), min(hi, n)


def default_workers() -> int:
    """Decoding workers per rank: the cores divided among the node's ranks (``LOCAL_WORLD_SIZE``),
    less one for the rank itself, at least 1 and at most :data:`~fidkit.pipeline.MAX_DEFAULT_WORKERS`."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 2) // local - 1))


class _Stopped(Exception):
    """Another rank failed: this one stopped its block early."""


def _timeout() -> timedelta:
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        raise FidkitError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds") from None
    if not seconds > 0:
        raise FidkitError(f"{TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


def _error_of(e: BaseException) -> tuple[str, str]:
    """(class name, one-line message) of an exception, as the CLI would print it."""
    if isinstance(e, FidkitError):
        return type(e).__name__, str(e)
    first = str(e).splitlines()[0] if str(e) else ""
    return "FidkitError", f"unexpected {type(e).__name__}: {first}"


class Session:
    """This process's place in a torchrun group: ``rank``, ``world`` (ranks in all), ``local_rank``.

    Made by :meth:`start`. Rank 0 hands passes to the others with :meth:`extract` (installed
    as :func:`fidkit.api.extract`'s distributed hook) and ends the run with :meth:`finish`;
    the other ranks run :meth:`serve`.
    """

    def __init__(self, rank: int, world: int, local_rank: int, store, backend: str):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.store, self.backend = store, backend
        self.jobs = 0  # jobs sent (rank 0) or done (others)

    @classmethod
    def start(cls) -> "Session":
        """Joins the group torchrun described in the environment (rendezvous through its store)."""
        import torch.distributed as dist

        timeout = _timeout()
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ["LOCAL_RANK"])
        try:
            store, rank, world = next(dist.rendezvous("env://", rank, world, timeout=timeout))
            store.set_timeout(timeout)
            backend = "gloo"
            if torch.cuda.is_available():
                gpus = torch.cuda.device_count()
                torch.cuda.set_device(local_rank % gpus)
                if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= gpus:  # nccl needs a GPU per rank
                    backend = "cpu:gloo,cuda:nccl"
            dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=rank,
                                    world_size=world, timeout=timeout)
        except (RuntimeError, ValueError, OSError) as e:
            raise FidkitError(f"rank {rank} of {world}: cannot join the torchrun group ({_error_of(e)[1]}); check "
                              f"--master-addr/--master-port and that every node can reach them") from None
        return cls(rank, world, local_rank, dist.PrefixStore("fidkit", store), backend)

    # ---------------------------------------------------------------- rank 0

    def extract(self, source, protocol=None, **kw) -> "api.Extraction":
        """:func:`fidkit.api.extract` over all ranks (rank 0 only): same arguments, same result.

        Sends the job, reads rank 0's block, gathers every rank's outcome, then the features
        in rank order, and folds them batch by batch as one process would.
        """
        images = as_images(source)
        if kw.get("logits"):  # refused before any rank starts, as in one process
            api.check_classifier(kw.get("encoder"), kw.get("weights"), kw.get("encoder_weights"))
        job = {"images": images, "protocol": protocol, "kw": kw}
        self._post(job)
        outcome = self._run(job)
        dev = api.resolve_device(kw.get("device", "auto"))
        net = api.encoder_for(kw.get("encoder"), protocol, weights=kw.get("weights"),
                              encoder_weights=kw.get("encoder_weights"), device=dev,
                              precision=kw.get("precision", "fp32"))
        names = outcome["names"]
        main = net.default_feature
        accs = {k: Accumulator(net.outputs[k], dev, float32_sum=bool(kw.get("float32_means"))) for k in names
                if k != "logits"}
        # every rank's features straight into arrays of the final size, as api.extract keeps them
        total = sum(status["shapes"][main][0] for status in outcome["statuses"])
        kept = {k: np.empty((total, net.outputs[k]), np.float32)
                for k in names if k == main and kw.get("keep_features") or k == "logits"}
        filled = 0
        for r, status in enumerate(outcome["statuses"]):
            if r == 0:
                feats = outcome["own"]
            else:
                with self._contact(r):
                    feats = self._receive(r, status)
            for k, acc in accs.items():
                x = torch.from_numpy(feats[k])
                s = 0
                for c in status["counts"]:  # the batches as this rank's pass yielded them
                    acc.update(x[s:s + c].to(dev))
                    s += c
            n_r = feats[main].shape[0]
            for k, arr in kept.items():
                arr[filled:filled + n_r] = feats[k]
            filled += n_r
            del feats
        skipped = [BadFile(*b) for s in outcome["statuses"] for b in s["skipped"]]
        st = api.finish_pass(accs, net, kw.get("precision", "fp32"), images.name, skipped)
        return api.Extraction(st, kept.get(main), kept.get("logits"),
                              means32=api.means_float32(accs) if kw.get("float32_means") else {})

    def finish(self, code: int) -> None:
        """Rank 0: tells the other ranks that the command ended with exit status ``code`` and waits
        (at most :data:`_DONE_WAIT_S`) until they have read it, in case the store lives in this
        process (launchers other than torchrun, whose agent holds it)."""
        try:
            self._post({"done": int(code)})
            deadline = time.monotonic() + _DONE_WAIT_S
            while int(self.store.add("done", 0)) < self.world - 1 and time.monotonic() < deadline:
                time.sleep(0.02)
        except Exception:  # noqa: BLE001 - a rank already gone: torchrun ends the rest
            pass
        _leave()

    def _post(self, message: dict) -> None:
        self.jobs += 1
        self.store.set(f"job/{self.jobs}", pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _receive(self, r: int, status: dict) -> dict:
        import torch.distributed as dist

        out = {}
        for k, (n, d) in status["shapes"].items():
            buf = torch.empty(n, d, dtype=torch.float32, device=self._wire())
            if n:
                dist.recv(buf, src=r)
            out[k] = buf.cpu().numpy()
        return out

    # ---------------------------------------------------------------- ranks > 0

    def serve(self) -> int:
        """Ranks > 0: reads their blocks of rank 0's jobs until rank 0 ends; returns its exit status.

        Prints only errors of this rank's own (lost contact with the group), never rank 0's.
        """
        warnings.simplefilter("ignore")  # rank 0 shows the warnings of the run, once
        _io.quiet = True  # and says what it does (fetching weights, waiting for the cache)
        try:
            while True:
                job = self._next_job()
                if "done" in job:
                    if job["done"] != 0:  # before rank 0 can read the answer below, exit and the agent act
                        _exit_on_agents_signal(job["done"])
                    self.store.add("done", 1)
                    return job["done"]
                outcome = self._run(job)
                if outcome is None:
                    continue  # a rank failed: rank 0 reports it and ends the run
                self._send(outcome["own"], outcome["statuses"][self.rank])
        except FidkitError as e:
            print(f"fidkit: error: rank {self.rank} of {self.world}: {e}", file=sys.stderr, flush=True)
            return 1
        except (RuntimeError, OSError) as e:
            print(f"fidkit: error: rank {self.rank} of {self.world}: lost contact with the other ranks "
                  f"({_error_of(e)[1]})", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:  # Ctrl-C reaches every rank; rank 0 says it
            return 130
        finally:
            _leave()

    def _next_job(self) -> dict:
        """Polls the store for rank 0's next message (a blocking wait that times out would log a
        warning of torch's each time); a lost store raises."""
        key = f"job/{self.jobs + 1}"
        pause = 0.01
        while not self.store.check([key]):
            time.sleep(pause)
            pause = min(2 * pause, _JOB_POLL_S)
        self.jobs += 1
        return pickle.loads(self.store.get(key))

    def _send(self, feats: dict, status: dict) -> None:
        import torch.distributed as dist

        for k, (n, d) in status["shapes"].items():
            if n:
                dist.send(torch.from_numpy(feats[k]).to(self._wire()), dst=0)

    # ---------------------------------------------------------------- every rank

    @contextlib.contextmanager
    def _contact(self, peer: int | None = None):
        """On rank 0, a failed collective or transfer becomes one line naming it (the other ranks
        report theirs in :meth:`serve`)."""
        try:
            yield
        except RuntimeError as e:
            if self.rank != 0:
                raise
            who = f"rank {peer}" if peer is not None else "the other ranks"
            raise FidkitError(f"rank 0 of {self.world}: lost contact with {who} ({_error_of(e)[1]}); a rank may "
                              f"have been killed (see torchrun's report) or {TIMEOUT_ENV} seconds passed") from None

    def _wire(self) -> torch.device:
        """Where features travel: the rank's GPU through nccl when the group has it, else the host (gloo)."""
        if "nccl" in self.backend:
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _run(self, job: dict) -> dict | None:
        """This rank's block of ``job``, then the all-gather of every rank's outcome.

        Returns {"own": {name: float32 (n_r, dim)}, "names", "statuses": [per rank: counts,
        shapes, skipped]}; when a rank failed, raises its error on rank 0 and returns None
        on the others.
        """
        import torch.distributed as dist

        stop_key = f"stop/{self.jobs}"
        own, status = None, {"error": None}
        try:
            own, status = self._extract_share(job, stop_key)
        except _Stopped:
            status = {"error": None, "stopped": True}
        except BaseException as e:  # noqa: BLE001 - every failure travels to rank 0, named
            status = {"error": _error_of(e)}
            try:
                self.store.set(stop_key, str(self.rank))
            except Exception:  # noqa: BLE001 - the gather below still reports it
                pass
            if not isinstance(e, Exception):
                raise
        statuses = [None] * self.world
        with self._contact():
            dist.all_gather_object(statuses, status)
        failed = [(r, s["error"]) for r, s in enumerate(statuses) if s.get("error")]
        if failed:
            if self.rank != 0:
                return None
            r, (cls_name, message) = failed[0]
            cls = getattr(_errors, cls_name, FidkitError)
            more = f" (and {len(failed) - 1} other rank(s))" if len(failed) > 1 else ""
            raise cls(f"rank {r} of {self.world}{more}: {message}")
        return {"own": own, "names": status["names"], "statuses": statuses}

    def _extract_share(self, job: dict, stop_key: str) -> tuple[dict, dict]:
        """The features of this rank's block: ({name: float32 numpy (n_r, dim)}, status)."""
        images, protocol, kw = job["images"], job["protocol"], dict(job["kw"])
        dev, bs = api.pass_device(kw.get("device", "auto"), kw.get("batch_size"))
        net, names = api.pass_encoder(kw.get("encoder"), protocol, weights=kw.get("weights"),
                                      encoder_weights=kw.get("encoder_weights"), device=dev,
                                      precision=kw.get("precision", "fp32"), spatial=bool(kw.get("spatial")),
                                      logits=bool(kw.get("logits")))
        main = net.default_feature
        lo, hi = share_bounds(len(images), bs, self.rank, self.world)
        share = share_of(images, lo, hi)
        workers = kw.get("workers")
        nw = (default_workers() if workers is None else workers) if share.in_workers else 0
        skipped = [] if kw.get("skip_bad") else None
        parts = {k: [] for k in names}
        counts = []
        if hi > lo:
            label = kw.get("label") or images.name
            batches = iter_features(share, net.preprocess, net, dev, bs, nw, kw.get("progress") if self.rank == 0
                                    else False, names=names, mode=kw.get("precision", "fp32"), skipped=skipped,
                                    label=f"{label} (rank 0 of {self.world}: {hi - lo} of {len(images)})")
            with contextlib.closing(batches):  # the progress line ends before any error is reported
                for out in batches:
                    for k in names:
                        parts[k].append(out[k].cpu().numpy())
                    counts.append(int(out[main].shape[0]))
                    if self.store.check([stop_key]):
                        raise _Stopped
        own = {k: np.concatenate(v) if v else np.zeros((0, net.outputs[k]), np.float32) for k, v in parts.items()}
        status = {"error": None, "names": names, "counts": counts,
                  "shapes": {k: tuple(int(s) for s in v.shape) for k, v in own.items()},
                  "skipped": [tuple(b) for b in skipped or []]}
        return own, status


def _leave() -> None:
    import torch.distributed as dist

    api._distributed_extract = None
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass


def _outlast_rank0(code: int) -> None:
    """Ranks > 0 under torchrun, once rank 0 has ended the run with status ``code`` ≠ 0.

    torchrun's agent ends the whole group at the first failed process it sees and reports that
    one as the root cause: a rank that exited with rank 0's status before rank 0 did would be
    blamed, and rank 0, which said what went wrong, reported as killed (SIGTERM). So this rank
    waits, at most :data:`_EXIT_GRACE_S`, for the agent's SIGTERM that follows rank 0's exit,
    and exits with ``code`` then (the handler of :func:`_exit_on_agents_signal`, installed when
    the rank read rank 0's status, before answering it). Without torchrun's agent it returns at
    once."""
    if not os.environ.get("TORCHELASTIC_RUN_ID"):
        return
    _exit_on_agents_signal(code)
    time.sleep(_EXIT_GRACE_S)


def _exit_on_agents_signal(code: int) -> None:
    """Under torchrun's agent: from now on, its SIGTERM makes this rank exit with ``code``.
    Installed as soon as a rank > 0 reads that rank 0 failed, before it tells rank 0 so: from
    that answer on, rank 0 may exit and the agent signal this rank at any moment."""
    if not os.environ.get("TORCHELASTIC_RUN_ID"):
        return

    def leave(*_):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    signal.signal(signal.SIGTERM, leave)


def run_command(command: Callable[[], None]) -> None:
    """Runs ``command`` (the CLI) on rank 0 of a torchrun group and serves it on the others.

    Rank 0: ``command()`` with :func:`fidkit.api.extract` reading through every rank; its exit
    status (``SystemExit``) is sent to the other ranks when it ends. Other ranks: exit with
    rank 0's status. An error joining the group is one line naming the rank, exit status 1.
    """
    try:
        session = Session.start()
    except FidkitError as e:
        print(f"fidkit: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    if session.rank != 0:
        code = session.serve()
        if code != 0:
            _outlast_rank0(code)
        sys.exit(code)
    api._distributed_extract = session.extract
    code = 1
    try:
        command()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        raise
    finally:
        session.finish(code)
