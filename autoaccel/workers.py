"""Several `autoaccel search` processes on one study, and recovery from ones that died.

- Every trial records the worker that runs it (host, pid). A RUNNING trial whose worker was on
  this host and is gone (kill -9, a crash in native code, a reboot) is failed at once when any
  worker starts or asks for a trial; one on another host is failed by Optuna's heartbeat (RDB
  storages beat every `HEARTBEAT_S`; no beat for `GRACE_S` means dead). Only the worker that
  flips the state logs the failed MLflow run, so nothing is logged twice.
- The budget is exact under concurrency: Optuna numbers trials in the order they are asked, so
  a trial is *surplus* when the trials numbered up to it (that are not surplus themselves)
  already exceed the budget (`counted`: repeats of a judged recipe are free, up to the budget).
  A surplus trial is told PRUNED, marked `surplus`, not logged and not counted; its worker
  stops.
- Latency measurements of concurrent workers would disturb each other: each one holds an
  exclusive file lock for its timing (`measure_lock`), so no two candidates are timed at once.
  Other workers' building and training still share the cores: for the steadiest figures run
  one worker per machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

HEARTBEAT_S = 20
GRACE_S = 120


def worker_info() -> dict[str, Any]:
    """The process running a trial, and its machine (host, CPU model, usable threads)."""
    from autoaccel.machine import machine_info

    return {**machine_info(), "pid": os.getpid()}


def dead_here(info: dict[str, Any] | None) -> bool:
    """True when `info` names a process on this host that no longer exists."""
    if not info or info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def recover_dead_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Fail the RUNNING trials whose worker died, each with `fail_reason` saying so; return
    the ones this call failed.

    Dead means: its worker was on this host and is gone; or its heartbeat is stale (any
    host); or it has no worker at all and started more than `GRACE_S` ago (its worker died
    between asking for the trial and signing it).
    """
    storage = study._storage  # the storage API is how Optuna itself fails stale trials
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    dead = [t for t in running if dead_here(t.user_attrs.get("worker")) or _unsigned(t)]
    stale = getattr(storage, "_get_stale_trial_ids", None)
    if stale is not None and optuna.storages._heartbeat.is_heartbeat_enabled(storage):
        ids = set(stale(study._study_id))
        dead += [t for t in running if t._trial_id in ids]
    failed = []
    for t in {t._trial_id: t for t in dead}.values():
        worker = t.user_attrs.get("worker") or {}
        reason = (
            f"worker {worker.get('host')}:{worker.get('pid')} stopped while running this "
            "trial (killed or crashed); marked failed"
            if worker
            else "its worker stopped before it began (killed or crashed); marked failed"
        )
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            if storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL):
                t.user_attrs["fail_reason"] = reason
                failed.append(t)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first
    return failed


def _unsigned(trial: optuna.trial.FrozenTrial) -> bool:
    import datetime

    if "worker" in trial.user_attrs or trial.datetime_start is None:
        return False
    age = datetime.datetime.now() - trial.datetime_start
    return age.total_seconds() > GRACE_S


def counted(trials: list[optuna.trial.FrozenTrial], budget: int) -> int:
    """How many of `trials` count toward `--budget`: all but surplus trials and the first
    `budget` repeats (`duplicate_of`: a recipe the study had judged, answered from its figures
    in milliseconds).

    Why repeats are free: TPE re-proposes a good point of a small space again and again
    (optuna#2021); counted, they took 23 of a 100-trial study's budget. Why only `budget` of
    them: a space of fewer points than the budget would otherwise never end."""
    kept = [t for t in trials if "surplus" not in t.user_attrs]
    repeats = sum("duplicate_of" in t.user_attrs for t in kept)
    return len(kept) - min(repeats, budget)


def is_surplus(study: optuna.Study, trial: optuna.trial.Trial, budget: int) -> bool:
    """Whether `trial` (just asked) goes over the budget, counting in asking order."""
    states = (*_FINISHED, optuna.trial.TrialState.RUNNING)
    trials = study.get_trials(deepcopy=False, states=states)
    ahead = [t for t in trials if t.number <= trial.number]
    return counted(ahead, budget) > budget


_FINISHED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.FAIL,
    optuna.trial.TrialState.PRUNED,
)


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.trial.Trial) -> Iterator[None]:
    """Keep the trial's heartbeat while it runs (what `study.optimize` does internally; the
    ask-and-tell loop must start it itself)."""
    with optuna.storages._heartbeat.get_heartbeat_thread(trial._trial_id, study._storage):
        yield


def measure_lock(runs_dir: Path) -> contextlib.AbstractContextManager[None]:
    """One timing at a time among the workers sharing a runs folder."""
    return _flock(runs_dir / ".measure.lock")


def outputs_lock(runs_dir: Path) -> contextlib.AbstractContextManager[None]:
    """One worker at a time writes a study's folder (frontier, plots, report): two finishing
    together would swap the folder under each other."""
    return _flock(runs_dir / ".outputs.lock")


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def sqlite_lock(uri: str) -> Iterator[None]:
    """Serialise creating a local SQLite store (Optuna's or MLflow's schema, a new study)
    between the processes of one machine: two creating it at once race on the schema. Other
    URLs need no lock (the database server serialises)."""
    db = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if db is None or not db.parent.is_dir():
        yield  # the store reports a missing folder itself
        return
    # a lock file beside the store, never the database file itself: closing any descriptor
    # of the database in a process drops the POSIX locks SQLite holds on it there
    with _flock(db.with_name(f".{db.name}.lock")):
        yield


def tune_sqlite(engine) -> None:
    """Write-ahead logging and `synchronous=NORMAL` for a local SQLite store.

    Every Optuna suggest, user attribute and tell is one commit (about 18 per trial, MLflow
    adds 4); with SQLite's default rollback journal each costs 3-18 ms here and took up to a
    quarter of a short trial; with these, 0.6-1 ms (benchmarks/overhead.py). Readers and one
    writer work side by side, so workers on one machine still share the store; a power cut
    may lose the last commits but never corrupts it. Not for network filesystems (SQLite's
    WAL needs shared memory on one host).
    """
    from sqlalchemy import event

    if event.contains(engine, "connect", _wal_on_connect):
        return  # an engine MLflow caches and reuses
    event.listen(engine, "connect", _wal_on_connect)
    engine.dispose()  # connections opened before the listener reconnect with it


def _wal_on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def worker_tags() -> dict[str, str]:
    """This worker as MLflow tags on its parent run (which host, process and cores)."""
    info = worker_info()
    return {
        "autoaccel.host": info["host"],
        "autoaccel.pid": str(info["pid"]),
        "autoaccel.cpu": str(info["cpu"]),
        "autoaccel.threads": str(info["threads"]),
    }
