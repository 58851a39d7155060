"""MLflow tracking: one parent run per `search` invocation that runs a trial, one nested run
per trial, dated from the trial's start to its end and named after its recipe.

A thin logger over `MlflowClient` rather than `optuna_integration.MLflowCallback`: we need
failed trials logged with their reason, one batched write per trial (about 3x faster than
unbatched on SQLite), the `pareto` tag updated across earlier invocations' runs, and the
parent's artifacts. What the parent shows beyond files (the frontier table, the recommended
model) is built in `autoaccel.tracking_views`.

A tracking server that stops answering never stops a search: the records wait in the runs
folder and are written when it is back (`autoaccel.tracking_offline`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from autoaccel import tracking_outbox as outbox
from autoaccel.errors import UserError
from autoaccel.stores import (
    prepare_sqlite_store,
    stderr_note,
)
from autoaccel.tracking_offline import (
    OfflineWrites,
    TrackingUnavailable,
    guarded,
    keep,
    later,
    nothing,
    still_down,
    store_error,
)
from autoaccel.workers import sqlite_lock

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# MLflow's client retries a server 7 times over about 4 minutes by default, stalling the
# search; briefly here (about 7 s), then the outbox keeps the record
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


class Tracker(OfflineWrites):
    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: Path,
        note: Callable[[str], None] | None = None,
    ) -> None:
        """Open (or create) the store and the study's experiment, then write the records an
        earlier worker left in the outbox. A local SQLite store is made whole first
        (`autoaccel.stores`: built aside, upgraded with a backup); `note` gets the one-line
        notes that say so (default: stderr). A server that does not answer here is refused
        in one line (nothing has run yet)."""
        import mlflow
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # schema-migration chatter on a new store
            logging.getLogger(noisy).setLevel(logging.WARNING)
        mlflow.set_tracking_uri(tracking_uri)
        self.uri = tracking_uri
        self.remote = tracking_uri.split(":", 1)[0] in ("http", "https")
        try:
            with sqlite_lock(tracking_uri):  # workers creating one SQLite store race on it
                prepare_sqlite_store(tracking_uri, "mlflow", note)
                self.client = MlflowClient(tracking_uri=tracking_uri)
                if tracking_uri.startswith("sqlite"):
                    _tune_store(self.client)
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    # a tracking server keeps artifacts itself (proxied, reachable from every
                    # machine); a local store keeps them in the runs folder
                    location = None if self.remote else artifact_root.resolve().as_uri()
                    try:
                        exp_id = self.client.create_experiment(
                            experiment, artifact_location=location
                        )
                    except Exception:  # another worker created it in the meantime
                        exp = self.client.get_experiment_by_name(experiment)
                        if exp is None:
                            raise
                        exp_id = exp.experiment_id
                else:
                    exp_id = exp.experiment_id
        except UserError:
            raise
        except Exception as exc:
            raise UserError(store_error(tracking_uri, exc)) from None
        self.experiment_id = exp_id
        self.note = note or stderr_note
        self.key = uuid.uuid4().hex  # this invocation, in its records and its parent's tags
        self.outbox = outbox.Outbox(artifact_root.parent / outbox.FOLDER, tracking_uri, experiment)
        self.offline = False
        self._probed = 0.0
        self._deferred: list[tuple[Callable, tuple, dict]] = []
        self.parent_id: str | None = None
        self.own_parent = False  # created by this invocation (else adopted, or none yet)
        self._pending: dict[str, Any] | None = None
        self._waiting_metrics: dict[str, float] = {}
        self._waiting_tags: dict[str, str] = {}
        self._replay_at_start()  # what workers that ended left in the outbox

    def start_parent(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        """Remember this invocation's parent run, started now; it is created with the first
        trial this invocation runs (`ensure_parent`), so a re-run that adds no trial leaves no
        empty run. Parent metrics and tags logged before then wait for it."""
        self._pending = {
            "name": name,
            "params": params,
            "tags": {**tags, "autoaccel.role": "study", "autoaccel.invocation": self.key},
            "start": _ms(),
        }

    @guarded(nothing)
    def ensure_parent(self, adopt: bool = False) -> str | None:
        """This invocation's parent run, created now if it was not yet (None while the server
        does not answer). With `adopt`, a search that ran no trial (its study already at its
        budget) gives its outputs to the study's latest parent run instead: that run is
        refreshed, never ended by us, and gets no params (they are the earlier invocation's).
        Only when the study has none is one made."""
        return self._ensure_parent(adopt)

    def _ensure_parent(self, adopt: bool = False) -> str:
        if self.parent_id is not None:
            return self.parent_id
        if adopt and (latest := self._latest_parent()) is not None:
            self.parent_id, self.own_parent = latest, False
            self.client.set_tag(latest, "outputs_refreshed", _now_iso())
            self._flush_waiting()
            return latest
        return self.create_parent()

    def create_parent(self) -> str:
        """Create this invocation's own parent run (raw: a server down raises)."""
        pending = self._pending or {"name": "search", "params": {}, "tags": {}, "start": _ms()}
        run = self.client.create_run(
            self.experiment_id,
            start_time=pending["start"],
            run_name=pending["name"],
            tags=pending["tags"],
        )
        self.parent_id, self.own_parent = run.info.run_id, True
        self.log_batch(self.parent_id, params=pending["params"])
        self._flush_waiting()
        return self.parent_id

    def log_trial(
        self,
        number: int,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        failed: bool = False,
        status: str | None = None,
        json_files: dict[str, Any] | None = None,
        text_files: dict[str, str] | None = None,
        start: datetime | None = None,
    ) -> str | None:
        """One nested run for a trial, logged when it ends and dated from `start` (when the
        trial began: Optuna's `datetime_start`) to now, so its duration is the trial's.
        `status` (e.g. KILLED for an early-stopped trial) overrides the FINISHED / FAILED
        that `failed` picks; `json_files` (name -> data) are logged as the run's JSON
        artifacts, `text_files` (name -> text) as text ones (a failed trial's whole
        traceback: a tag holds only its end). Returns the run's id, or None when the server
        does not answer (the record waits in the outbox)."""
        record = self._record("trial", number, params, tags, start)
        record.update(
            metrics={k: float(v) for k, v in metrics.items()},
            status=status or ("FAILED" if failed else "FINISHED"),
            json_files=json_files or {},
            text_files=text_files or {},
        )
        return self._send(record)

    def fail_trial(
        self,
        number: int,
        params: dict[str, Any],
        tags: dict[str, str],
        start: datetime | None = None,
    ) -> str | None:
        """The one nested run of a trial whose worker died, ended FAILED with `tags`. The
        worker may have died after logging the trial's run (or while logging it) and
        before storing its result in the study: that run is reused, so there is never a
        second run for one trial and none is left RUNNING."""
        record = self._record("fail", number, params, tags, start)
        record.update(metrics={}, status="FAILED")
        return self._send(record)

    @guarded(keep)
    def _send(self, record: dict[str, Any]) -> str:
        return outbox.write(self, record, replay=False)

    def _record(self, kind: str, number: int, params, tags, start) -> dict[str, Any]:
        return {
            "kind": kind,
            "number": number,
            "params": {k: str(v) for k, v in params.items()},
            "tags": {k: str(v) for k, v in tags.items()},
            "start": _ms(start),
            "end": _ms(),
            "owner": outbox.owner(self.key),
            "parent_id": self.parent_id,
            "parent": self._pending,
        }

    @guarded(later)
    def log_parent_metrics(self, metrics: dict[str, float]) -> None:
        if self.parent_id is None:  # before the first trial: logged when the run is made
            self._waiting_metrics.update(metrics)
        else:
            self.log_batch(self.parent_id, metrics=metrics)

    @guarded(later)
    def set_pareto(self, run_ids: dict[int, str], pareto: set[int]) -> None:
        """Tag every trial run `pareto` true or false. Runs written from the outbox have no
        id in the study: they are found by their `trial` tag."""
        found = {int(r.data.tags["trial"]): r.info.run_id for r in self._trial_runs()}
        for number, run_id in {**found, **run_ids}.items():
            self.client.set_tag(run_id, "pareto", "true" if number in pareto else "false")

    @guarded(later)
    def set_parent_tag(self, key: str, value: str) -> None:
        if self.parent_id is None:
            self._waiting_tags[key] = value[:5000]
        else:
            self.client.set_tag(self.parent_id, key, value[:5000])

    @guarded(later)
    def log_artifacts(self, folder: Path) -> None:
        self.client.log_artifacts(self._parent_or_latest(), str(folder))

    @guarded(later)
    def log_table(self, data: Any, artifact_file: str) -> None:
        """A table (a pandas DataFrame) on the parent run, shown by the UI's artifact view.
        MLflow's `log_table` appends to a table already there (an adopted parent's, from
        its own search): that file is replaced instead, in the same format."""
        import posixpath
        import tempfile

        run_id = self._parent_or_latest()
        folder = posixpath.dirname(artifact_file) or None
        if artifact_file not in {f.path for f in self.client.list_artifacts(run_id, folder)}:
            self.client.log_table(run_id, data=data, artifact_file=artifact_file)
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            data.to_json(path, orient="split", index=False, date_format="iso")
            self.client.log_artifact(run_id, str(path), folder)

    @guarded(lambda self, method, *args: [])
    def close_dead_parents(self, is_dead) -> list[str]:
        """End as KILLED the parent runs left RUNNING by workers that died (`is_dead` gets the
        run's {host, pid}); a live worker's run is left alone."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string="tags.`autoaccel.role` = 'study' and attributes.status = 'RUNNING'",
        )
        closed = []
        for run in runs:
            tags = run.data.tags
            worker = {"host": tags.get("autoaccel.host"), "pid": tags.get("autoaccel.pid")}
            if worker["pid"] and is_dead(worker):
                self.client.set_tag(run.info.run_id, "ended_by", "a later worker: this one died")
                self.client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
        return closed

    @guarded(nothing)
    def latest_parent(self) -> str | None:
        """The study's most recent parent run (the last `search` invocation), if any."""
        return self._latest_parent()

    @guarded(still_down)
    def log_files(self, run_id: str, files: list[Path]) -> None:
        for path in files:
            self.client.log_artifact(run_id, str(path))

    def log_batch(
        self,
        run_id: str,
        params: dict | None = None,
        metrics: dict | None = None,
        when: int | None = None,
    ) -> None:
        """Params and metrics of a run in one request (metrics dated `when`, else now)."""
        from mlflow.entities import Metric, Param

        if not (params or metrics):
            return
        now = when or _ms()
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
        )

    # -- offline and back ------------------------------------------------------------------

    def _flush_waiting(self) -> None:
        self.log_batch(self.parent_id, metrics=self._waiting_metrics)
        for key, value in self._waiting_tags.items():
            self.client.set_tag(self.parent_id, key, value)
        self._waiting_metrics, self._waiting_tags = {}, {}

    def _parent_or_latest(self) -> str:
        return self._ensure_parent(adopt=True)

    def _latest_parent(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string="tags.`autoaccel.role` = 'study'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def _trial_runs(self) -> list:
        """Every trial run of the study (all pages)."""
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string="tags.`autoaccel.role` = 'trial'",
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs


def _ms(when: datetime | None = None) -> int:
    """Milliseconds since the epoch, as MLflow dates runs: `when` (Optuna's naive local
    datetimes read as local time), else now."""
    return int((when.timestamp() if when is not None else time.time()) * 1000)


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _tune_store(client) -> None:
    """WAL for MLflow's SQLite store too (autoaccel.workers.tune_sqlite). Its engine is not
    public API: without it, the store just keeps SQLite's defaults."""
    from autoaccel.workers import tune_sqlite

    engine = getattr(getattr(client._tracking_client, "store", None), "engine", None)
    if engine is not None:
        tune_sqlite(engine)


__all__ = ["Tracker", "TrackingUnavailable"]
