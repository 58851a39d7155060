"""Candidates run in a worker process of their own, so that a crash in native code (a segfault
in a runtime, an out-of-memory kill) or a hang fails one trial instead of the search.

The worker is started with `spawn` (fork is unsafe once torch's and OpenMP's threads exist),
loads the workload once, and then judges candidates one after the other, so its start-up cost
(imports, loading the model) is paid once per search, not per trial. The search waits for each
answer for at most the trial's limit (`--trial-timeout`, else a default from the study's own
history: autoaccel.time_limits); past that, or when the worker dies, the worker is killed, the
trial fails with the reason, and the next trial starts a fresh worker.

The worker ignores Ctrl-C (the search decides what an interrupt means) and exits within a
second when the search process is gone (kill -9), so it never holds the timing lock or the
cores for an orphaned trial.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from autoaccel.early_stop import TrainingStopped
from autoaccel.errors import CandidateFailed, InfeasibleRecipe, UserError, describe
from autoaccel.time_limits import TrialLimit
from autoaccel.trial_eval import CandidateEvaluator, EvalSettings, Outcome

_START_LIMIT = TrialLimit(600.0, "the worker's start-up limit")  # loading takes seconds


class IsolatedEvaluator:
    """`CandidateEvaluator`'s interface, with the work done in the worker process."""

    def __init__(
        self,
        settings: EvalSettings,
        limit: TrialLimit | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.limit = limit  # the search sets each trial's before running it
        self.on_status = on_status or (lambda step: None)  # the worker's steps, as they start
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def run(self, recipe: dict[str, Any], rule=None) -> Outcome:
        try:
            self._started().send(("run", recipe, rule))
        except OSError:  # the idle worker died since its last answer: start a fresh one
            self.close(kill=True)
            self._started().send(("run", recipe, rule))
        try:
            reply = self._receive(self.limit)
        except BaseException:  # Ctrl-C, timeout, crash: this worker's state is unknown
            self.close(kill=True)
            raise
        kind, *rest = reply
        if kind == "ok":
            return rest[0]
        if kind == "stopped":
            raise rest[0]
        if kind == "infeasible":
            raise InfeasibleRecipe(*rest)  # reason and kind
        raise CandidateFailed(*rest)  # reason and the worker's traceback, as text

    def close(self, kill: bool = False) -> None:
        """Stop the worker: politely at the end of a search, at once after a failure."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return
        if not kill and proc.is_alive():
            try:
                conn.send(("stop",))
                proc.join(10)
            except (OSError, ValueError):
                pass
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        conn.close()

    def _started(self) -> Connection:
        if self._proc is not None and self._proc.is_alive():
            return self._conn
        self.close(kill=True)
        ctx = mp.get_context("spawn")
        here, there = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, args=(there, self.settings, os.getpid()), name="autoaccel-candidate"
        )
        with _main_module_hidden():
            proc.start()
        there.close()
        self._proc, self._conn = proc, here
        try:
            kind, *rest = self._receive(_START_LIMIT, starting=True)
        except CandidateFailed as exc:
            self.close(kill=True)
            raise UserError(
                f"the candidate worker process could not start ({exc.reason}); "
                "run with --no-isolate to evaluate in the search's own process"
            ) from None
        if kind != "ready":
            self.close(kill=True)
            raise UserError(
                f"the candidate worker process could not start ({rest[0]}); "
                "run with --no-isolate to evaluate in the search's own process"
            )
        return here

    def _receive(self, limit: TrialLimit | None, starting: bool = False) -> tuple:
        """The worker's next message; CandidateFailed when it dies or runs out of time."""
        proc, conn = self._proc, self._conn
        deadline = None if limit is None else time.monotonic() + limit.seconds
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([conn, proc.sentinel], timeout=left)
            if conn in ready:
                try:
                    message = conn.recv()
                except EOFError:
                    pass  # the worker died after the wait: reported below
                else:
                    if message[0] != "status":
                        return message
                    self.on_status(message[1])  # a step began; the limit runs on
                    continue
            if ready:  # the sentinel only: the worker is gone
                proc.join(5)
                raise CandidateFailed(_death(proc.exitcode, starting))
            if deadline is not None and time.monotonic() >= deadline:
                raise CandidateFailed(
                    f"TrialTimeout: still running after {limit.seconds:g} s ({limit.reason}); "
                    "the candidate was stopped"
                )


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start the worker without re-running the caller's main script in it: `spawn` would
    import it (a script without a `__main__` guard would start a search in the worker;
    `python - <<EOF` has no file to import). The worker needs nothing from it."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _death(exitcode: int | None, starting: bool) -> str:
    what = "the candidate worker process" if starting else "the candidate's process"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if name == "SIGKILL" else " (a crash in native code)"
        return f"WorkerCrashed: {what} was killed by {name}{hint}"
    return f"WorkerCrashed: {what} exited with code {exitcode} without an answer"


def _serve(conn: Connection, settings: EvalSettings, parent_pid: int) -> None:
    """The worker's loop: one request, one answer, until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    try:
        evaluator = CandidateEvaluator(
            settings, on_status=lambda step: conn.send(("status", step))
        )
    except BaseException as exc:
        conn.send(("failed", describe(exc)))
        return
    conn.send(("ready",))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request[0] != "run":
            return
        _, recipe, rule = request
        try:
            reply: tuple = ("ok", evaluator.run(recipe, rule))
        except TrainingStopped as stop:
            reply = ("stopped", stop)
        except InfeasibleRecipe as exc:
            reply = ("infeasible", str(exc), exc.kind)
        except Exception as exc:  # a failure: its traceback travels with it
            reply = ("error", describe(exc), traceback.format_exc())
        conn.send(reply)


def _exit_when_orphaned(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)
