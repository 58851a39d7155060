"""The search loop: config -> study -> (recipe -> build -> evaluate -> track) x budget ->
frontier + recommendation. Ask-and-tell, so every trial's failure is recorded by us, with its
reason, and the loop goes on.
"""

from __future__ import annotations

import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoaccel.baseline import BaselineTimer, noisy_warning
from autoaccel.config import RunPaths, SearchConfig
from autoaccel.early_stop import TrainingStopped
from autoaccel.errors import InfeasibleRecipe, UserError, describe
from autoaccel.evaluate.scenarios import BATCH_SIZES
from autoaccel.frontier import disagrees, objective_of
from autoaccel.isolation import IsolatedEvaluator
from autoaccel.machine import machine_info
from autoaccel.study import StoreUnavailable, shown_url
from autoaccel.techniques.base import recipe_value
from autoaccel.techniques.target import LOCAL
from autoaccel.tracking import TrackingUnavailable
from autoaccel.trial_eval import CandidateEvaluator, EvalSettings
from autoaccel.workers import (
    dead_here,
    heartbeat,
    is_surplus,
    outputs_lock,
    recover_dead_trials,
    worker_info,
)


@dataclass
class TrialEvent:
    """What the progress display is told after each trial."""

    number: int
    done: int
    budget: int
    failed: int
    state: str
    speedup: float | None = None
    feasible: bool = False
    reason: str | None = None


@dataclass
class SearchResult:
    study: str
    out_dir: Path
    n_trials: int
    n_failed: int
    recommendation: dict[str, Any]
    frontier: list[dict[str, Any]] = field(default_factory=list)
    tracking_uri: str = ""
    parent_run_id: str = ""


def search(
    workload: str | None = None,
    *,
    on_event: Callable[[str, Any], None] | None = None,
    **options: Any,
) -> SearchResult:
    """Run (or continue) a search; the Python twin of `autoaccel search`.

    Example:
        >>> result = autoaccel.search("digits-cnn", budget=12, runs_dir="runs")
        >>> result.recommendation["recommended"]["summary"]
    """
    cfg = SearchConfig.build(workload=workload, **options)
    return Search(cfg, on_event or (lambda kind, payload: None)).run()


class Search:
    def __init__(self, cfg: SearchConfig, emit: Callable[[str, Any], None]) -> None:
        self.cfg = cfg
        self.emit = emit

    def run(self) -> SearchResult:
        root = RunPaths(self.cfg.runs_dir).root
        fresh = not root.exists()
        try:
            return self._run()
        except UserError as exc:
            # bad input found only once the search has begun (a model that cannot be
            # exported, a latency bound the baseline cannot meet): leave nothing behind;
            # a store that went away mid-search keeps what was done, to resume
            if fresh and not isinstance(exc, StoreUnavailable | TrackingUnavailable):
                shutil.rmtree(root, ignore_errors=True)
            raise

    def _run(self) -> SearchResult:
        import optuna

        from autoaccel.evaluate import MeasureConfig
        from autoaccel.space import load_space
        from autoaccel.study import check_study_name, finished_count, make_sampler, open_study
        from autoaccel.tracking import Tracker
        from autoaccel.workloads import load_workload

        cfg = self.cfg
        if cfg.study is not None:
            check_study_name(cfg.study)
        space = load_space(cfg.space)
        space, self.targets = _with_targets(space, cfg.targets)
        paths = RunPaths(cfg.runs_dir)
        self.emit("status", "loading workload")
        workload = load_workload(cfg.workload, paths.cache, cfg.model, cfg.data)
        primary = workload.metric
        workload.choose_metric(cfg.metric)
        paths.prepare()  # only after the input is known to be good: nothing half-written
        self.workload, self.paths = workload, paths
        self._calibrate_local(paths)
        suffix = "" if cfg.scenario == "single-stream" else f"-{cfg.scenario}"
        if workload.metric != primary:  # another objective: never mixed with the primary's
            suffix += f"-{workload.metric}"
        name = check_study_name(cfg.study or f"{workload.name}-{space.name}{suffix}")
        identity = {
            "workload": workload.name,
            "workload_fingerprint": workload.fingerprint(),
            "space": space.digest(),
            "max_accuracy_drop": cfg.max_accuracy_drop,
        }
        if cfg.scenario != "single-stream":  # the objective differs: never mix in one study
            identity["scenario"] = cfg.scenario
        if workload.metric != primary:
            identity["metric"] = workload.metric
        if cfg.scenario == "server":
            identity["latency_bound_ms"] = cfg.latency_bound_ms
        storage = cfg.storage or paths.storage_url()
        probe = open_study(
            name, storage, make_sampler(cfg.sampler, cfg.seed, cfg.budget), identity
        )
        self._preflight()  # an unexportable model is bad input: before any trial or run
        if "workload_spec" not in probe.user_attrs:  # how `export` reloads the workload
            probe.set_user_attr(
                "workload_spec",
                {
                    "workload": cfg.workload,
                    "model": None if cfg.model is None else str(Path(cfg.model).resolve()),
                    "data": None if cfg.data is None else str(Path(cfg.data).resolve()),
                    "metric": workload.metric,
                },
            )
        # A fresh seed per invocation: a resumed study must not replay its first trials.
        seed = None if cfg.seed is None else cfg.seed + len(probe.trials)
        study = optuna.load_study(
            study_name=name,
            storage=probe._storage,
            sampler=make_sampler(cfg.sampler, seed, cfg.budget),
        )
        self.measure_cfg = MeasureConfig().scaled(cfg.measure_seconds)
        self.batch_sizes = (1,) if cfg.scenario == "single-stream" else BATCH_SIZES
        self.workload, self.space, self.paths, self.study = workload, space, paths, study
        self.machine = machine_info()  # what a measured trial was measured on
        self.settings = EvalSettings(
            workload=cfg.workload,
            model=cfg.model,
            data=cfg.data,
            metric=workload.metric,
            cache=paths.cache,
            root=paths.root,
            targets=self.targets,
            measure=self.measure_cfg,
            batch_sizes=self.batch_sizes,
            scenario=cfg.scenario,
            latency_bound_ms=cfg.latency_bound_ms,
            arrival_rate=cfg.arrival_rate,
        )
        self.baseline_timer = BaselineTimer(workload, self.settings)
        if cfg.isolate:
            self.evaluator = IsolatedEvaluator(self.settings, cfg.trial_timeout)
        else:
            self.evaluator = CandidateEvaluator(self.settings, workload)

        tracker = Tracker(cfg.tracking_uri or paths.tracking_uri(), name, paths.artifacts)
        self.tracker = tracker
        tracker.close_dead_parents(dead_here)
        tracker.start_parent(
            f"search {name}",
            params={
                "workload": workload.name,
                "space": str(space.path),
                "budget": cfg.budget,
                "sampler": cfg.sampler,
                "seed": cfg.seed,
                "max_accuracy_drop": cfg.max_accuracy_drop,
                "metric": workload.metric,
                "storage": shown_url(storage),
                "targets": ",".join(self.targets),
                "scenario": cfg.scenario,
                "latency_bound_ms": cfg.latency_bound_ms,
                "arrival_rate": cfg.arrival_rate,
            },
            tags={"study": name, "workload": workload.name, **_worker_tags()},
        )
        try:
            baseline = self._baseline()
            tracker.log_parent_metrics(
                {
                    "baseline_accuracy": baseline["accuracy"],
                    "baseline_latency_ms": baseline["latency_ms"],
                }
            )
            self._recover()
            self.emit("resumed", finished_count(study))
            while (done := finished_count(study)) < cfg.budget:
                trial = self._ask()
                if trial is None:
                    break  # the budget was reached by other workers
                with heartbeat(study, trial):
                    self._trial(trial, baseline, done)
            result = self._finish(name, "FINISHED")
        except KeyboardInterrupt:
            # Ctrl-C: keep what is done — the frontier so far is written, the run is KILLED.
            if "baseline" in study.user_attrs:
                self._finish(name, "KILLED")
            tracker.end_parent("KILLED")
            raise
        except BaseException as exc:
            if not isinstance(exc, TrackingUnavailable):  # else it would wait for retries again
                tracker.end_parent("FAILED")
            raise
        finally:
            self.evaluator.close()
        tracker.end_parent("FINISHED")
        return result

    # -- steps ---------------------------------------------------------------------------

    def _preflight(self) -> None:
        """Export once before any trial: a model that cannot be exported is bad input."""
        from autoaccel.build import build_candidate

        self.emit("status", "exporting the model to ONNX")
        build_candidate({"runtime.backend": "onnxruntime"}, self.workload, self.paths.cache)

    def _baseline(self) -> dict[str, Any]:
        """This machine's baseline: measured on its first start here, re-timed (the fastest
        kept) at every later one, so every speedup in the study has one honest reference."""
        from autoaccel.frontier import baseline_key

        host = self.machine["host"]
        attrs = self.study.user_attrs
        stored = attrs.get(baseline_key(host))
        if stored is None and "baseline" in attrs:
            # a study from before machines were recorded, or this machine's first worker
            first = attrs["baseline"]
            if first.get("machine", {}).get("host", host) == host:
                stored = first
        if stored:
            self.emit("status", "re-timing the baseline")
            baseline, latency, faster = self.baseline_timer.retime(stored)
            if faster:
                self.emit(
                    "status",
                    f"baseline re-timed at {latency.median_ms:.3f} ms, faster than the "
                    f"{stored['latency_ms']:.3f} ms stored: keeping the faster figure",
                )
        else:
            self.emit("status", "measuring the baseline")
            baseline, latency = self.baseline_timer.measure(self.machine)
        if warning := noisy_warning(latency):
            self.emit("warning", warning)
        # every machine keeps its own baseline: a measured trial's speedup is against the
        # baseline of the machine that measured it; the first one is also the study's
        self.study.set_user_attr(baseline_key(host), baseline)
        first = attrs.get("baseline")
        if first is None or first.get("machine", {}).get("host", host) == host:
            self.study.set_user_attr("baseline", baseline)
        return baseline

    def _calibrate_local(self, paths: RunPaths) -> None:
        """cpu-local's cost model with this machine's calibration (`autoaccel calibrate`),
        when there is one: it prices measured trials' energy and cost, and is what the
        fidelity benchmark checks."""
        from autoaccel.targets import make_target
        from autoaccel.targets.calibrate import apply_calibration

        if LOCAL in self.targets:
            local = self.targets[LOCAL].profile
            self.targets[LOCAL] = make_target(apply_calibration(local, paths.root))

    def _ask(self):
        """A new trial for this worker, or None when other workers already hold the rest of
        the budget (the surplus trial is closed, marked and not counted)."""
        import optuna

        self._recover()
        trial = self.study.ask()
        trial.set_user_attr("worker", worker_info())
        if is_surplus(self.study, trial, self.cfg.budget):
            trial.set_user_attr("surplus", True)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return None
        return trial

    def _recover(self) -> None:
        """Fail the trials of workers that died (kill -9, crash) and log why, once."""
        for t in recover_dead_trials(self.study):
            reason = t.user_attrs["fail_reason"]
            recipe = t.user_attrs.get("recipe", t.params)
            tags = {"fail_reason": reason, "pareto": "false", "worker_died": "true"}
            self.tracker.fail_trial(t.number, recipe, tags)
            self.emit("warning", f"trial {t.number}: {reason}")

    def _trial(self, trial, baseline: dict[str, Any], done: int) -> None:
        from autoaccel.space import suggest_recipe

        study, workload = self.study, self.workload
        recipe = suggest_recipe(trial, self.space, workload)
        trial.set_user_attr("recipe", recipe)
        target_name = recipe_value(recipe, "target.name")
        source = "measured" if target_name == LOCAL else f"estimated:{target_name}"
        tags = {"target": target_name, "latency_source": source, "pareto": "false"}
        if target_name == LOCAL:  # which machine timed it (workers on many machines)
            tags["machine"] = str(self.machine["host"])
        if (earlier := self._same_recipe(recipe)) is not None:
            if earlier.state.name == "PRUNED":  # stopped early before: it would be again
                self._stopped_again(trial, recipe, tags, earlier)
                event = TrialEvent(trial.number, done + 1, self.cfg.budget, 1, "stopped")
                self.emit("trial", event)
            else:
                self._reuse(trial, recipe, tags, earlier, baseline, done)
            return
        try:
            out = self.evaluator.run(recipe, self._rule(baseline))
        except KeyboardInterrupt:
            self._fail(trial, recipe, tags, "interrupted by the user (Ctrl-C)")
            raise
        except UserError as exc:  # not this candidate's fault (the worker cannot start)
            self._fail(trial, recipe, tags, str(exc))
            raise
        except TrainingStopped as stop:
            self._stopped(trial, recipe, tags, stop)
            event = TrialEvent(trial.number, done + 1, self.cfg.budget, 1, "stopped")
            self.emit("trial", event)
            return
        except Exception as exc:  # any failing candidate: record why, go on
            reason = describe(exc)
            infeasible = isinstance(exc, InfeasibleRecipe)
            trace = getattr(exc, "trace", None) or traceback.format_exc()
            self._fail(trial, recipe, tags, reason, "" if infeasible else trace, infeasible)
            self.emit(
                "trial",
                TrialEvent(trial.number, done + 1, self.cfg.budget, 1, "failed", reason=reason),
            )
            return
        ev, hardware, build_s = out.evaluation, out.hardware, out.build_s
        accuracy = ev.quality[workload.metric]
        drop = baseline["accuracy"] - accuracy
        objective = hardware["scenario"]["objective_ms"]
        speedup = objective_of(baseline) / objective
        feasible = drop <= self.cfg.max_accuracy_drop
        trial.set_constraint("accuracy_drop", drop - self.cfg.max_accuracy_drop)
        trial.set_user_attr(
            "result",
            {
                "quality": ev.quality,
                "latency_ms": ev.latency.median_ms,
                "objective_ms": objective,
                "latency_p90_ms": ev.latency.p90_ms,
                "latency_runs": ev.latency.n_runs,
                "latency_source": ev.latency.source,
                "target": ev.latency.target,
                "size_mb": ev.size_mb,
                "machine": self.machine if target_name == LOCAL else None,
                "notes": out.notes,
                "seconds": {"build": build_s, "train": out.train_s, **ev.seconds},
                "hardware": hardware,
            },
        )
        metrics = {
            **{f"quality.{k}": v for k, v in ev.quality.items()},
            "accuracy": accuracy,
            "accuracy_drop": drop,
            "latency_ms": ev.latency.median_ms,
            "latency_p90_ms": ev.latency.p90_ms,
            "latency_runs": ev.latency.n_runs,
            "speedup": speedup,
            "objective_ms": objective,
            "size_mb": ev.size_mb,
            "seconds.build": build_s,
            "seconds.train": out.train_s,
            **{f"seconds.{k}": v for k, v in ev.seconds.items()},
            **{k: v for k, v in hardware.items() if isinstance(v, int | float)},
            **{
                f"scenario.{k}": v
                for k, v in hardware["scenario"].items()
                if isinstance(v, int | float) and k != "objective_ms"
            },
            **{f"estimate.{k}": v for k, v in hardware.get("breakdown_ms", {}).items()},
        }
        if out.curve:
            trial.set_user_attr("curve", out.curve)
            metrics.update(_curve_metrics(out.curve))
        tags["feasible"] = str(feasible).lower()
        run_id = self.tracker.log_trial(trial.number, recipe, metrics, tags, failed=False)
        trial.set_user_attr("mlflow_run_id", run_id)
        study.tell(trial, [accuracy, objective])
        self.emit(
            "trial",
            TrialEvent(trial.number, done + 1, self.cfg.budget, 0, "complete", speedup, feasible),
        )

    def _rule(self, baseline: dict[str, Any]):
        """The early-stopping rule for this trial's training, primed with the curves of the
        study's completed trials (the evaluator applies it where there is training data)."""
        import optuna

        from autoaccel.early_stop import HeadroomRule, curves_from

        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return HeadroomRule(
            min_accuracy=baseline["accuracy"] - self.cfg.max_accuracy_drop,
            history=curves_from(done),
            margin=self.cfg.max_accuracy_drop,
        )

    def _stopped(self, trial, recipe, tags, stop: TrainingStopped) -> None:
        """A training run the early-stopping rule cut short: PRUNED, with the accuracy
        constraint it was projected to violate, so samplers learn to avoid its region."""
        import optuna

        projected_drop = self.study.user_attrs["baseline"]["accuracy"] - stop.projected
        trial.set_constraint("accuracy_drop", projected_drop - self.cfg.max_accuracy_drop)
        trial.set_user_attr("curve", stop.curve)
        trial.set_user_attr("early_stopped", str(stop))
        trial.set_user_attr("fail_reason", str(stop))
        metrics = {"seconds.build": stop.seconds, **_curve_metrics(stop.curve)}
        tags = {**tags, "early_stopped": "true", "fail_reason": str(stop), "feasible": "false"}
        run_id = self.tracker.log_trial(trial.number, recipe, metrics, tags, status="KILLED")
        trial.set_user_attr("mlflow_run_id", run_id)
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def _stopped_again(self, trial, recipe, tags, earlier) -> None:
        import optuna

        reason = earlier.user_attrs["early_stopped"]
        for key, value in earlier.constraints.items():
            trial.set_constraint(key, value)
        trial.set_user_attr("early_stopped", reason)
        trial.set_user_attr("duplicate_of", earlier.number)
        tags = {**tags, "early_stopped": "true", "fail_reason": reason, "feasible": "false"}
        tags["duplicate_of"] = str(earlier.number)
        run_id = self.tracker.log_trial(trial.number, recipe, {}, tags, status="KILLED")
        trial.set_user_attr("mlflow_run_id", run_id)
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def _same_recipe(self, recipe: dict[str, Any]):
        """A completed (or early-stopped) trial with exactly this recipe (samplers repeat
        points in small spaces): its outcome is reused instead of spending minutes on the
        same candidate."""
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        for t in self.study.get_trials(deepcopy=False, states=states):
            if t.user_attrs.get("recipe") == recipe and (
                "result" in t.user_attrs or "early_stopped" in t.user_attrs
            ):
                return t
        return None

    def _reuse(self, trial, recipe, tags, earlier, baseline, done: int) -> None:
        drop = baseline["accuracy"] - earlier.values[0]
        feasible = drop <= self.cfg.max_accuracy_drop
        trial.set_constraint("accuracy_drop", drop - self.cfg.max_accuracy_drop)
        trial.set_user_attr("result", earlier.user_attrs["result"])
        trial.set_user_attr("duplicate_of", earlier.number)
        speedup = objective_of(baseline) / earlier.values[1]
        metrics = {
            "accuracy": earlier.values[0],
            "accuracy_drop": drop,
            "latency_ms": earlier.values[1],
            "speedup": speedup,
        }
        tags = {**tags, "feasible": str(feasible).lower(), "duplicate_of": str(earlier.number)}
        run_id = self.tracker.log_trial(trial.number, recipe, metrics, tags, failed=False)
        trial.set_user_attr("mlflow_run_id", run_id)
        self.study.tell(trial, list(earlier.values))
        self.emit(
            "trial",
            TrialEvent(trial.number, done + 1, self.cfg.budget, 0, "complete", speedup, feasible),
        )

    def _fail(
        self, trial, recipe, tags, reason: str, trace: str = "", infeasible: bool = False
    ) -> None:
        """Record a failed trial. A recipe that cannot run as asked (InfeasibleRecipe) is
        told to Optuna as PRUNED with a violated constraint, not FAIL: samplers ignore FAIL
        trials and would keep proposing the same impossible recipe, while TPE ranks
        infeasible trials below every feasible one and learns to avoid them."""
        import optuna

        tags = {**tags, "fail_reason": reason[:5000], "infeasible": str(infeasible).lower()}
        if trace:
            tags["traceback"] = trace[-5000:]
        run_id = self.tracker.log_trial(trial.number, recipe, {}, tags, failed=True)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("fail_reason", reason)
        if infeasible:
            trial.set_constraint("recipe_runs", 1.0)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _finish(self, name: str, status: str) -> SearchResult:
        """Frontier, recommendation, plots: written atomically under runs/<study>/ and logged
        to the parent run."""
        from autoaccel.frontier import (
            attach_confirmation,
            machine_baselines,
            pareto,
            points,
            recommend,
        )
        from autoaccel.plots import write_study_folder
        from autoaccel.study import FINISHED

        study, workload = self.study, self.workload
        baseline = study.user_attrs["baseline"]
        all_points = points(study, baseline)
        front = pareto(study, all_points)
        baselines = machine_baselines(study)
        info = {
            "name": workload.name,
            "metric": workload.metric,
            "metric_description": workload.metric_description,
        }
        rec = recommend(
            name,
            info,
            baseline,
            self.cfg.max_accuracy_drop,
            front,
            all_points,
            self.cfg.prefer,
            baselines,
        )
        trials = study.get_trials(deepcopy=False, states=FINISHED)
        failed = [t for t in trials if t.state.name in ("FAIL", "PRUNED")]
        rec["trials"] = {
            "finished": len(trials),
            "failed": len(failed),
            "complete": len(all_points),
        }
        rec["status"] = status
        local_best = rec.get("best_measured")
        if local_best and status == "FINISHED":
            # only a measured figure can be re-timed; an estimate is confirmed by the
            # cost model's fidelity benchmark, not here
            self.emit(
                "status", "confirming the best measured recipe side by side with the baseline"
            )
            confirmed = self._confirm(local_best, baseline)
            study.set_user_attr("confirmed", confirmed)
            attach_confirmation(rec, confirmed)

        out = self.paths.study_dir(name)
        title = f"{workload.name}: {len(all_points)} candidates, study {name}"
        with outputs_lock(self.paths.root):
            write_study_folder(
                out,
                rec,
                all_points,
                front,
                baseline,
                self.cfg.max_accuracy_drop,
                workload.metric,
                title,
            )
            self._report(out, info)
            self.tracker.log_artifacts(out)

        run_ids = {
            t.number: t.user_attrs["mlflow_run_id"]
            for t in trials
            if "mlflow_run_id" in t.user_attrs
        }
        self.tracker.set_pareto(run_ids, {p.trial for p in front})
        if rec["recommended"]:
            self.tracker.log_parent_metrics({"best_speedup": rec["recommended"]["speedup"]})
        self.emit("done", rec)
        return SearchResult(
            study=name,
            out_dir=out,
            n_trials=len(trials),
            n_failed=len(failed),
            recommendation=rec,
            frontier=rec["frontier"],
            tracking_uri=self.tracker.uri,
            parent_run_id=self.tracker.parent_id or "",
        )

    def _report(self, out: Path, info: dict[str, str]) -> None:
        """The hardware-selection report (report.md, report.html) beside the study's files.
        Everything else is already written, so a report that fails to render is a warning
        with its reason (and a parent-run tag), not a lost search."""
        from autoaccel.report import write_report

        self.emit("status", "writing the report")
        try:
            write_report(
                self.study,
                out,
                workload_info=info,
                limit=self.cfg.max_accuracy_drop,
                prefer=self.cfg.prefer,
            )
        except Exception as exc:
            reason = describe(exc)
            self.tracker.set_parent_tag("report_error", reason)
            self.emit("warning", f"the report could not be written: {reason}")

    def _confirm(self, best: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
        """The side-by-side speedup of the best measured recipe, and a warning when it is far
        from the search's own figure (the CPU's load changed between the search's timings)."""
        confirmed = self.baseline_timer.side_by_side(best, baseline, self.machine["host"])
        speedup = confirmed["speedup"]
        if disagrees(best.get("speedup"), speedup):
            self.emit(
                "warning",
                f"the best recipe's speedup was {best['speedup']:.1f}x in the search but "
                f"{speedup:.1f}x side by side: the CPU was busier during one of the timings; "
                "the side-by-side figure is the one to trust",
            )
        self.tracker.log_parent_metrics({"confirmed_speedup": speedup})
        return confirmed


def _worker_tags() -> dict[str, str]:
    info = worker_info()
    return {
        "autoaccel.host": info["host"],
        "autoaccel.pid": str(info["pid"]),
        "autoaccel.cpu": str(info["cpu"]),
        "autoaccel.threads": str(info["threads"]),
    }


def _with_targets(space, names: list[str] | None):
    """The space with `target.name` set to the targets this search covers (`--targets`,
    else the space's own list, else every profile), and those targets loaded."""
    from dataclasses import replace

    from autoaccel.targets import load_targets
    from autoaccel.techniques.target import profile_names

    block = dict(space.blocks.get("target", {}))
    names = names or block.get("name") or list(profile_names())
    targets = load_targets(list(names))
    block["name"] = list(targets)
    return replace(space, blocks={**space.blocks, "target": block}), targets


def _curve_metrics(curve: dict[str, dict[float, float]]) -> dict[str, float]:
    """`train_quality.<stage>.<percent>` metrics: the quality seen during training."""
    return {
        f"train_quality.{stage}.{round(float(f) * 100)}pct": q
        for stage, points in curve.items()
        for f, q in points.items()
    }


__all__ = ["Search", "SearchResult", "TrialEvent", "search", "UserError"]
