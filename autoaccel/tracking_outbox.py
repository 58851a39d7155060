"""MLflow records kept on disk while the tracking server does not answer, and written to it
when it answers again (later in the same search, at its end, or at the next start).

Why: the study is the truth and a search never stops for MLflow, but a person reviews the
runs, so no trial's record may be lost. A record is one JSON file in `<runs>/mlflow-outbox/`
(`<time ns>-<pid>-<kind>-<trial>.json`), written under a temporary name and renamed into
place, so a kill leaves a whole record or none; a file is removed only once its record is in
MLflow. One file per record rather than one JSON-lines file: concurrent workers of one runs
folder never rewrite a shared file, and a written record is one unlink. Records are written
by the worker that queued them while it lives, else by the next worker of the same study to
start on this host (a file lock keeps two from writing one record). Writing is idempotent: a
trial whose run is already in MLflow and ended is not written again (one run per trial), and a
run left RUNNING by a write cut short is completed, not doubled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autoaccel.tracking_views import run_name

FOLDER = "mlflow-outbox"
KINDS = ("trial", "fail", "parent_end")
_ENDED: set[str] = set()  # keys of trackers of this process that ended (their records: any)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the tracking server did not answer (after MLflow's own retries):
    refused or reset connections, timeouts, and the 5xx a server answers while its own
    database is down."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).lower()
        if any(marker in text for marker in _UNREACHABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_UNREACHABLE = (
    "max retries exceeded",
    "connection refused",
    "connection aborted",
    "connection reset",
    "remote end closed",
    "read timed out",
    "connect timeout",
    "temporarily unavailable",
    "bad gateway",
    "service unavailable",
)


class Outbox:
    """The pending records of one tracking URI and experiment in a folder."""

    def __init__(self, folder: Path, uri: str, experiment: str) -> None:
        self.folder, self.uri, self.experiment = folder, uri, experiment
        self.set_aside = 0  # unreadable files moved to `*.corrupt` by this process

    def put(self, record: dict[str, Any]) -> Path:
        """Write `record` durably: a temporary file, flushed, renamed into place."""
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {**record, "uri": self.uri, "experiment": self.experiment}
        name = f"{time.time_ns()}-{os.getpid()}-{record['kind']}-{record.get('number', 'p')}"
        path = self.folder / f"{name}.json"
        work = self.folder / f".{name}.tmp"
        with open(work, "w") as handle:
            json.dump(record, handle, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(work, path)
        return path

    def pending(self) -> list[tuple[Path, dict[str, Any]]]:
        """This URI's and experiment's records, oldest first. A file that does not read as a
        record is renamed `*.corrupt` (kept for a person, never retried) and counted."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                if record.get("kind") not in KINDS or "owner" not in record:
                    raise ValueError("not an autoaccel MLflow record")
            except FileNotFoundError:
                continue  # written by another worker meanwhile
            except (OSError, ValueError):
                with contextlib.suppress(OSError):
                    os.replace(path, path.with_name(f"{path.name}.corrupt"))
                    self.set_aside += 1
                continue
            if record.get("uri") == self.uri and record.get("experiment") == self.experiment:
                found.append((path, record))
        return found

    def count(self, key: str | None = None) -> int:
        """Pending records (of the tracker `key` only, when given)."""
        return sum(key is None or r["owner"]["key"] == key for _, r in self.pending())

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[bool]:
        """Hold `path`'s record alone (True), or not at all (False: another worker writes
        it now, or already wrote and removed it)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield os.fstat(fd).st_nlink > 0  # removed before we got the lock: done
        finally:
            os.close(fd)

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def owner(key: str) -> dict[str, Any]:
    return {"key": key, "host": socket.gethostname(), "pid": os.getpid()}


def writable_by(record: dict[str, Any], key: str) -> bool:
    """Whether the tracker `key` may write `record`: its own, or one whose worker ended
    (a process on this host that is gone, or a tracker of this process that ended)."""
    from autoaccel.workers import dead_here

    mine = record["owner"]
    return mine["key"] == key or mine["key"] in _ENDED or dead_here(mine)


def ended(key: str) -> None:
    _ENDED.add(key)


def write(tracker, record: dict[str, Any], replay: bool) -> str:
    """Write one record to MLflow through `tracker` (raw client calls: a server that stops
    answering raises, and the caller keeps the record). Returns the run written."""
    if record["kind"] == "parent_end":
        return _parent_end(tracker, record)
    existing = trial_runs(tracker, record["number"]) if replay or record["kind"] == "fail" else []
    if record["kind"] == "fail" and existing:  # the dead worker's run: ended FAILED
        run_id = existing[0].info.run_id
        for key, value in record["tags"].items():
            tracker.client.set_tag(run_id, key, value[:5000])
        tracker.client.set_terminated(run_id, "FAILED", end_time=record["end"])
        return run_id
    if existing and existing[0].info.status != "RUNNING":
        return existing[0].info.run_id  # written before (its file outlived the write)
    client = tracker.client
    if existing:  # a write cut short: complete that run, never a second one
        run = existing[0]
        params = {k: v for k, v in record["params"].items() if k not in run.data.params}
        metrics = {k: v for k, v in record["metrics"].items() if k not in run.data.metrics}
    else:
        run = client.create_run(
            tracker.experiment_id,
            start_time=record["start"],
            run_name=run_name(record["number"], record["params"]),
            tags={
                "mlflow.parentRunId": parent_for(tracker, record),
                "autoaccel.role": "trial",
                "trial": str(record["number"]),
                **record["tags"],
            },
        )
        params, metrics = record["params"], record["metrics"]
    run_id = run.info.run_id
    tracker.log_batch(run_id, params=params, metrics=metrics, when=record["end"])
    for name, data in (record.get("json_files") or {}).items():
        client.log_dict(run_id, data, name)
    for name, text in (record.get("text_files") or {}).items():
        client.log_text(run_id, text, name)
    client.set_terminated(run_id, record["status"], end_time=record["end"])
    return run_id


def trial_runs(tracker, number: int) -> list:
    """The study's runs of trial `number` (one, unless something went wrong)."""
    return tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`autoaccel.role` = 'trial' and tags.trial = '{number}'",
    )


def parent_for(tracker, record: dict[str, Any]) -> str:
    """The parent run of the invocation that made `record`: this tracker's own (created now
    if it was not yet), the one it named, or, for a worker that ended before its parent
    could be created, one made now from what it recorded (ended KILLED unless its own end
    record follows)."""
    if record["owner"]["key"] == tracker.key:
        return tracker.parent_id or tracker.create_parent()
    if record.get("parent_id"):
        return record["parent_id"]
    key = record["owner"]["key"]
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`autoaccel.invocation` = '{key}'",
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    pending = record["parent"]
    run = tracker.client.create_run(
        tracker.experiment_id,
        start_time=pending["start"],
        run_name=pending["name"],
        tags={**pending["tags"], "ended_by": "written from the MLflow outbox after it ended"},
    )
    tracker.log_batch(run.info.run_id, params=pending["params"])
    tracker.client.set_terminated(run.info.run_id, "KILLED", end_time=record["end"])
    return run.info.run_id


def _parent_end(tracker, record: dict[str, Any]) -> str:
    """A parent run's end (and the metrics and tags that waited for it)."""
    if record["owner"]["key"] == tracker.key and tracker.parent_id is None:
        return ""  # this tracker never made its parent: nothing to end
    run_id = record.get("parent_id") or parent_for(tracker, record)
    tracker.log_batch(run_id, metrics=record.get("metrics") or {}, when=record["end"])
    for key, value in (record.get("tags") or {}).items():
        tracker.client.set_tag(run_id, key, value)
    tracker.client.set_terminated(run_id, record["status"], end_time=record["end"])
    return run_id
