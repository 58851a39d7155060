"""What a tracker does while its MLflow server does not answer, and when it is back.

Why: a tracking server that stops answering must never stop a search (the study is the
truth) nor lose a trial's record. After MLflow's brief retries the tracker is *offline*: a
trial's record (and the parent's end) is kept in the runs folder's outbox
(`autoaccel.tracking_outbox`), the parent's files, table and tags wait in memory, and
everything is written as soon as one quick request finds the server back (tried before each
write, at most every `PROBE_S`). A finished search waits up to `FINAL_WAIT_S` for it; what
is still pending then is said in one line and written by the next start of the study.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from autoaccel import tracking_outbox as outbox
from autoaccel.errors import UserError
from autoaccel.stores import disk_message, disk_problem, sqlite_path, summary

PROBE_S = 3.0
"""While offline, the server is asked whether it is back at most this often."""
FINAL_WAIT_S = 60.0
"""How long a finished search waits for an offline server before leaving records pending."""


class TrackingUnavailable(UserError):
    """The tracking store's disk is full or read-only: the search stops, resumable."""


def guarded(when_down: Callable[..., Any]):
    """A tracker method that, with the server not answering (now or after MLflow's brief
    retries), does `when_down` instead (keep the record, wait, or skip) and goes on."""

    def wrap(method):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            if self.offline and not self._back():
                return when_down(self, method, *args, **kwargs)
            try:
                return method(self, *args, **kwargs)
            except UserError:
                raise
            except Exception as exc:
                if disk_problem(exc):  # the store's or the artifacts' disk: stop, resumable
                    path = sqlite_path(self.uri)
                    folder = path.parent if path else None
                    message = disk_message(exc, folder, "the MLflow server")
                    raise TrackingUnavailable(message) from None
                if not self.remote or not outbox.unreachable(exc):
                    raise
                self._went_offline(exc)
                return when_down(self, method, *args, **kwargs)

        return call

    return wrap


def later(self, method, *args, **kwargs) -> None:
    """Parent-run writes (files, table, pareto tags) wait in memory for the server (the next
    start of the study writes them again anyway)."""
    self._deferred.append((method, args, kwargs))


def nothing(self, method, *args, **kwargs) -> None:
    return None


def keep(self, method, record: dict[str, Any]) -> None:
    """A record the server did not take: kept in the outbox (no run id yet)."""
    self.outbox.put(record)
    return None


def still_down(self, method, *args, **kwargs) -> None:
    raise TrackingUnavailable(
        f"--tracking-uri {self.uri}: the MLflow server does not answer; run the same "
        "command again when it is back"
    )


class OfflineWrites:
    """The offline half of `autoaccel.tracking.Tracker` (which sets `uri`, `remote`,
    `client`, `note`, `key`, `outbox` and the parent's state)."""

    offline = False
    _probed = 0.0

    def end_parent(self, status: str = "FINISHED") -> None:
        """End this invocation's own parent run (an adopted one is another's to end). What
        still waits for the server is written first: a finished search waits up to
        `FINAL_WAIT_S` for it, an interrupted one not at all; what then still waits is kept
        (the parent's end too) and said in one line."""
        if self.offline and status == "FINISHED":
            deadline = time.monotonic() + FINAL_WAIT_S
            while not self._back() and time.monotonic() < deadline:
                time.sleep(min(PROBE_S, max(0.0, deadline - time.monotonic())))
                self._probed = 0.0
        self._end(status)
        outbox.ended(self.key)
        if self.offline:
            waiting = self.outbox.count(self.key)
            self.note(
                f"{waiting} MLflow record{'s' if waiting != 1 else ''} of this search wait in "
                f"{self.outbox.folder}: the MLflow server at {self.uri} did not answer again; "
                "the next `autoaccel search` of this study with this --runs-dir writes them "
                "(the study holds every result; the report and frontier files are written)"
            )

    @guarded(lambda self, method, status: self._keep_end(status))
    def _end(self, status: str) -> None:
        if self.parent_id is not None and self.own_parent:
            self.client.set_terminated(self.parent_id, status, end_time=int(time.time() * 1000))

    def _keep_end(self, status: str) -> None:
        if self.parent_id is None and self.outbox.count(self.key) == 0:
            return  # no parent and no trial waits: nothing to end
        if self.parent_id is not None and not self.own_parent:
            return
        record = self._record("parent_end", -1, {}, self._waiting_tags, None)
        record.update(status=status, metrics=self._waiting_metrics)
        self.outbox.put(record)

    def defer(self, function: Callable[..., Any], *args: Any) -> None:
        """Call `function(*args)` when the server answers again (a parent-run write)."""
        self._deferred.append((lambda _tracker: function(*args), (), {}))

    @guarded(nothing)
    def _replay_at_start(self) -> None:
        if written := self.replay():
            self.note(f"wrote {written} MLflow records kept in {self.outbox.folder}")

    def replay(self) -> int:
        """Write the outbox's records this tracker may write (its own, and those of workers
        that ended), oldest first; then what waited in memory. Returns how many records
        were written; a server that stops answering midway raises (the rest stay)."""
        written = 0
        for path, record in self.outbox.pending():
            if not outbox.writable_by(record, self.key):
                continue
            with self.outbox.claim(path) as mine:
                if not mine:
                    continue
                outbox.write(self, record, replay=True)
                self.outbox.remove(path)
                written += 1
        if self.outbox.set_aside:
            self.note(
                f"{self.outbox.set_aside} unreadable MLflow record file(s) in "
                f"{self.outbox.folder} set aside as *.corrupt (the study keeps the results)"
            )
            self.outbox.set_aside = 0
        return written

    def _went_offline(self, exc: Exception) -> None:
        if not self.offline:
            self.note(
                f"the MLflow server at {self.uri} stopped answering ({summary(exc)}); the "
                f"search goes on (the study keeps every result) and keeps MLflow's records "
                f"in {self.outbox.folder} until it answers again"
            )
        self.offline, self._probed = True, time.monotonic()

    def _back(self) -> bool:
        """While offline: whether one quick request (no retries) finds the server back, at
        most every `PROBE_S`; if so, what waited is written now."""
        import requests

        if time.monotonic() - self._probed < PROBE_S:
            return False
        self._probed = time.monotonic()
        try:
            if requests.get(f"{self.uri.rstrip('/')}/health", timeout=3).status_code >= 500:
                return False  # any other answer: the server is there
        except requests.RequestException:
            return False
        waiting = self.outbox.count(self.key)
        self.offline = False
        try:
            self.replay()
            while self._deferred:
                method, args, kwargs = self._deferred[0]
                method(self, *args, **kwargs)
                self._deferred.pop(0)
        except Exception as exc:
            if not outbox.unreachable(exc):
                raise
            self._went_offline(exc)
            return False
        what = f"the {waiting} record{'s' if waiting != 1 else ''} kept in {self.outbox.folder}"
        self.note(
            f"the MLflow server at {self.uri} answers again: wrote "
            f"{what if waiting else 'what waited for it'}"
        )
        return True


def store_error(uri: str, exc: Exception) -> str:
    """One whole line for a tracking store that cannot be opened, with the fix that fits
    the cause (a full disk, a server that does not answer, a store in use, a bad file)."""
    path = sqlite_path(uri)
    if disk_problem(exc):
        return disk_message(exc, path.parent if path else None, "the MLflow server")
    detail = summary(exc)
    text = str(exc).lower()
    if uri.split(":", 1)[0] in ("http", "https"):
        if outbox.unreachable(exc):
            return (
                f"--tracking-uri {uri}: no MLflow server answers there ({detail}); start it "
                "(mlflow server --host HOST --port PORT) or give the URI of one that runs"
            )
        return (
            f"--tracking-uri {uri}: the MLflow server refused ({detail}); check the URI and "
            "the server's log"
        )
    if path is None:
        return (
            f"--tracking-uri {uri}: cannot use the MLflow store ({detail}); give an "
            "http(s):// server or a sqlite:/// file"
        )
    if "database is locked" in text:
        return (
            f"--tracking-uri {uri}: the MLflow store is locked by another process ({detail}); "
            "wait for it to finish, then run the same command again"
        )
    if not path.parent.is_dir():
        return (
            f"--tracking-uri {uri}: the folder {path.parent} does not exist; create it or "
            "give another sqlite:/// path"
        )
    return (
        f"--tracking-uri {uri}: cannot use the MLflow store ({detail}); move {path.name} "
        "away (or pass another --runs-dir) to start a new store, or open it with the "
        "MLflow version that made it"
    )
