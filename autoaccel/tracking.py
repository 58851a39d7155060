"""MLflow tracking: one parent run per `search` invocation, one nested run per trial.

A thin logger over `MlflowClient` rather than `optuna_integration.MLflowCallback`: we need
failed trials logged with their reason, one batched write per trial (about 3x faster than
unbatched on SQLite), the `pareto` tag updated across earlier invocations' runs, and the
parent's artifacts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from autoaccel.errors import UserError
from autoaccel.workers import sqlite_lock

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # schema-migration chatter on a new store
            logging.getLogger(noisy).setLevel(logging.WARNING)
        mlflow.set_tracking_uri(tracking_uri)
        self.uri = tracking_uri
        try:
            with sqlite_lock(tracking_uri):  # workers creating one SQLite store race on it
                self.client = MlflowClient(tracking_uri=tracking_uri)
                if tracking_uri.startswith("sqlite"):
                    _tune_store(self.client)
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    # a tracking server keeps artifacts itself (proxied, reachable from every
                    # machine); a local store keeps them in the runs folder
                    remote = tracking_uri.split(":", 1)[0] in ("http", "https")
                    location = None if remote else artifact_root.resolve().as_uri()
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
        except Exception as exc:
            raise UserError(
                f"--tracking-uri {tracking_uri}: cannot use the MLflow store "
                f"({str(exc).strip().splitlines()[0][:200]}); check the URI or server"
            ) from None
        self.experiment_id = exp_id
        self.parent_id: str | None = None

    def start_parent(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={**tags, "autoaccel.role": "study"}
        )
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
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
    ) -> str:
        """One nested run for a trial; `status` (e.g. KILLED for an early-stopped trial)
        overrides the FINISHED / FAILED that `failed` picks; `json_files` (name -> data) are
        logged as the run's JSON artifacts, `text_files` (name -> text) as text ones (a
        failed trial's whole traceback: a tag holds only its end)."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number:04d}",
            tags={
                "mlflow.parentRunId": self.parent_id,
                "autoaccel.role": "trial",
                "trial": str(number),
                **tags,
            },
        )
        self._log(run.info.run_id, params=params, metrics=metrics)
        for name, data in (json_files or {}).items():
            self.client.log_dict(run.info.run_id, data, name)
        for name, text in (text_files or {}).items():
            self.client.log_text(run.info.run_id, text, name)
        status = status or ("FAILED" if failed else "FINISHED")
        self.client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    def fail_trial(self, number: int, params: dict[str, Any], tags: dict[str, str]) -> str:
        """The one nested run of a trial whose worker died, ended FAILED with `tags`. The
        worker may have died after logging the trial's run (or while logging it) and
        before storing its result in the study: that run is reused, so there is never a
        second run for one trial and none is left RUNNING."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`autoaccel.role` = 'trial' and tags.trial = '{number}'",
        )
        if not runs:
            return self.log_trial(number, params, {}, tags, failed=True)
        run_id = runs[0].info.run_id
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value[:5000])
        self.client.set_terminated(run_id, "FAILED")
        return run_id

    def log_parent_metrics(self, metrics: dict[str, float]) -> None:
        self._log(self.parent_id, metrics=metrics)

    def set_pareto(self, run_ids: dict[int, str], pareto: set[int]) -> None:
        for number, run_id in run_ids.items():
            self.client.set_tag(run_id, "pareto", "true" if number in pareto else "false")

    def set_parent_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.parent_id, key, value[:5000])

    def log_artifacts(self, folder: Path) -> None:
        self.client.log_artifacts(self.parent_id, str(folder))

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

    def latest_parent(self) -> str | None:
        """The study's most recent parent run (the last `search` invocation), if any."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string="tags.`autoaccel.role` = 'study'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def log_files(self, run_id: str, files: list[Path]) -> None:
        for path in files:
            self.client.log_artifact(run_id, str(path))

    def end_parent(self, status: str = "FINISHED") -> None:
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status)

    def _log(self, run_id: str, params: dict | None = None, metrics: dict | None = None) -> None:
        import time

        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
        )


def _tune_store(client) -> None:
    """WAL for MLflow's SQLite store too (autoaccel.workers.tune_sqlite). Its engine is not
    public API: without it, the store just keeps SQLite's defaults."""
    from autoaccel.workers import tune_sqlite

    engine = getattr(getattr(client._tracking_client, "store", None), "engine", None)
    if engine is not None:
        tune_sqlite(engine)


class TrackingUnavailable(UserError):
    """The MLflow server stopped answering mid-search, after MLflow's own retries."""


_UNREACHABLE = ("max retries exceeded", "connection refused", "connection aborted")


def _reachable(method):
    """Turn a tracking server that stays unreachable (MLflow's client already retried it
    with exponential backoff: MLFLOW_HTTP_REQUEST_MAX_RETRIES, _BACKOFF_FACTOR) into one
    line that says how to continue."""
    import functools

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except UserError:
            raise
        except Exception as exc:
            text = str(exc).lower()
            if not any(marker in text for marker in _UNREACHABLE):
                raise
            first = str(exc).strip().splitlines()[0][:200]
            raise TrackingUnavailable(
                f"--tracking-uri {self.uri}: the MLflow server stopped answering ({first}); "
                "when it is back, run the same command to continue (finished trials are kept "
                "in the study; the running one is failed and logged then)"
            ) from None

    return call


for _name in (
    "start_parent",
    "log_trial",
    "fail_trial",
    "log_parent_metrics",
    "set_pareto",
    "set_parent_tag",
    "log_artifacts",
    "close_dead_parents",
    "latest_parent",
    "log_files",
    "end_parent",
):
    setattr(Tracker, _name, _reachable(getattr(Tracker, _name)))
