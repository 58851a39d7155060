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
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    exp_id = self.client.create_experiment(
                        experiment, artifact_location=artifact_root.resolve().as_uri()
                    )
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
    ) -> str:
        """One nested run for a trial; `status` (e.g. KILLED for an early-stopped trial)
        overrides the FINISHED / FAILED that `failed` picks."""
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
        status = status or ("FAILED" if failed else "FINISHED")
        self.client.set_terminated(run.info.run_id, status)
        return run.info.run_id

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
