"""The search loop: config -> study -> (recipe -> build -> judge -> measure here -> project on
every target -> track) x budget -> frontiers + recommendation. Ask-and-tell, so every trial's
failure is recorded by us, with its reason, and the loop goes on. A trial is one build: the
study samples only what changes the build and how it runs here, and is told only measured
figures; hardware is not a dimension (every build is projected on every target).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from autoaccel.baseline import BaselineTimer, baseline_recipe, judging_warning, noisy_warning
from autoaccel.config import MAX_BUDGET, RunPaths, SearchConfig
from autoaccel.errors import UserError
from autoaccel.evaluate.scenarios import BATCH_SIZES
from autoaccel.isolation import IsolatedEvaluator
from autoaccel.machine import machine_info
from autoaccel.recombine import Recombination, recombine_notes
from autoaccel.search_finish import SearchResult, finish
from autoaccel.search_trial import run_trial
from autoaccel.study import StoreLost, StoreUnavailable, shown_url
from autoaccel.study_snapshot import StudySnapshot, finish_without_store
from autoaccel.time_limits import Deadline, shown
from autoaccel.tracking import TrackingUnavailable
from autoaccel.trial_eval import CandidateEvaluator, EvalSettings
from autoaccel.trial_record import TrialEvent, TrialRecorder
from autoaccel.workers import (
    dead_here,
    heartbeat,
    is_surplus,
    recover_dead_trials,
    worker_info,
    worker_tags,
)


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
        self._emit = emit
        self.warnings: list[str] = []  # what the console prints, returned to API callers too
        self.notes: list[str] = []  # facts stated once at the start (data split, what applies)
        self.stopped_by = ""  # why the search ended before its trial budget, if it did
        self.snapshot = StudySnapshot()  # the study as last read, for a store that goes away

    def emit(self, kind: str, payload: Any) -> None:
        if kind in ("warning", "note"):
            (self.warnings if kind == "warning" else self.notes).append(str(payload))
        self._emit(kind, payload)

    def run(self) -> SearchResult:
        self.deadline = Deadline(self.cfg.time_budget)  # counted from this invocation's start
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
        from autoaccel.machine import training_precision
        from autoaccel.projection.plans import PlanGrid
        from autoaccel.space import check_choices, load_space
        from autoaccel.study import check_study_name, finished_count, make_sampler, open_study
        from autoaccel.targets import ensure_calibrated, load_targets
        from autoaccel.techniques import search_notes
        from autoaccel.tracking import Tracker
        from autoaccel.workloads import load_workload, workload_notes, workload_spec

        cfg = self.cfg
        if cfg.study is not None:
            check_study_name(cfg.study)
        training_precision(0)  # a bad AUTOACCEL_TRAIN_PRECISION: one line, before any file
        space = load_space(cfg.space)
        paths = RunPaths(cfg.runs_dir)
        block = space.targets or {}
        # measured ones first (cpu-local, the objective), each projected on the estimated
        self.targets = load_targets(cfg.targets or block.get("names"), calibration_root=paths.root)
        self.emit("status", "loading workload")
        options = cfg.workload_options
        workload = load_workload(cfg.workload, paths.cache, cfg.model, cfg.data, options=options)
        primary = workload.metric
        workload.choose_metric(cfg.metric)
        figures = [primary, *(k for k in workload.metrics if k != primary)]
        # a limit implausible for its figure, or on a figure the workload lacks: refused
        self.cfg = cfg = cfg.check_limit(workload, figures)
        paths.prepare()  # only after the input is known to be good: nothing half-written
        self.workload, self.paths = workload, paths
        suffix = "" if cfg.scenario == "single-stream" else f"-{cfg.scenario}"
        if workload.metric != primary:  # another objective: never mixed with the primary's
            suffix += f"-{workload.metric}"
        suffix += "".join(f"-{k}-{v:g}" for k, v in cfg.limits.items())  # other feasibility
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
        if cfg.limits:  # more limits: another feasible set, never mixed with a study's without
            identity["limits"] = cfg.limits
        if cfg.scenario == "server":
            identity["latency_bound_ms"] = cfg.latency_bound_ms
        storage = cfg.storage or paths.storage_url()
        sampler = make_sampler(cfg.sampler, cfg.seed, cfg.budget)
        note = partial(self.emit, "warning")  # a store upgraded or rebuilt: said, and kept
        probe = open_study(name, storage, sampler, identity, note=note)
        exported = self._preflight()  # an unexportable model is bad input: before any trial
        # how a model folder's data was split; what does not apply to this model, and why
        for line in [*workload_notes(workload), *search_notes(workload)]:
            self.emit("note", line)
        check_choices(probe, space, workload)  # a choice the model or machine took away
        if "workload_spec" not in probe.user_attrs:  # how `export` reloads the workload
            spec = workload_spec(cfg.workload, cfg.model, cfg.data, options, workload.metric)
            probe.set_user_attr("workload_spec", spec)
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
        # cpu-local's cost model, calibrated here on first use (after every input check)
        self.targets = ensure_calibrated(paths.root, self.targets, self.emit)
        self.settings = EvalSettings(
            workload=cfg.workload,
            model=cfg.model,
            data=cfg.data,
            workload_options=cfg.workload_options,
            metric=workload.metric,
            cache=paths.cache,
            root=paths.root,
            targets=self.targets,
            measure=self.measure_cfg,
            batch_sizes=self.batch_sizes,
            scenario=cfg.scenario,
            latency_bound_ms=cfg.latency_bound_ms,
            arrival_rate=cfg.arrival_rate,
            grid=PlanGrid.from_block(block),
            reference=baseline_recipe(workload),
        )
        self.baseline_timer = BaselineTimer(workload, self.settings)
        step = partial(self.emit, "status")  # the candidate's steps on the progress line
        if cfg.isolate:
            self.evaluator = IsolatedEvaluator(self.settings, on_status=step)
        else:
            self.evaluator = CandidateEvaluator(self.settings, workload, step)

        uri = cfg.tracking_uri or paths.tracking_uri()
        self.tracker = tracker = Tracker(uri, name, paths.artifacts, note=note)
        objective = self.settings.objective_target
        self.recorder = TrialRecorder(
            study, tracker, cfg.max_accuracy_drop, self.machine, objective, cfg.limits
        )
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
                **{f"limit.{k}": v for k, v in cfg.limits.items()},
                "storage": shown_url(storage),
                "targets": ",".join(self.targets),
                "scenario": cfg.scenario,
                "latency_bound_ms": cfg.latency_bound_ms,
                "arrival_rate": cfg.arrival_rate,
            },
            tags={"study": name, "workload": workload.name, **worker_tags()},
        )
        try:
            baseline = self._baseline()
            self._project_baseline(exported)
            tracker.log_parent_metrics(
                {
                    "baseline_accuracy": baseline["accuracy"],
                    "baseline_latency_ms": baseline["latency_ms"],
                }
            )
            self._recover()
            self.snapshot.take(study)
            self.emit("resumed", (start := finished_count(study, cfg.budget)))
            repair = Recombination(cfg.recombine_count())
            while (done := finished_count(study, cfg.budget)) < cfg.budget:
                if self.deadline.spent():
                    self._out_of_time(done - start, done)
                    break
                waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
                elapsed = self.deadline.elapsed()
                if due := repair.due(done, cfg.budget, elapsed, cfg.time_budget, waiting):
                    self._recombine(*due, baseline)
                trial = self._ask()
                if trial is None:
                    break  # the budget was reached by other workers
                tracker.ensure_parent()  # a run for an invocation that runs a trial, only
                with heartbeat(study, trial):
                    run_trial(self, trial, baseline, done)
                self.snapshot.take(study)  # what a database that stays down leaves us
            result = finish(self, name, "FINISHED")
        except StoreLost as exc:  # the frontier so far, from what was read; then one line
            lost = finish_without_store(self, name, exc)
            tracker.end_parent("FAILED")
            raise lost from None
        except KeyboardInterrupt:
            # Ctrl-C: keep what is done — the frontier so far is written, the run is KILLED.
            if "baseline" in study.user_attrs:
                finish(self, name, "KILLED")
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

    def _preflight(self) -> Path:
        """Export once before any trial: a model that cannot be exported is bad input.
        Returns the exported graph (the baseline's, as the cost models read it)."""
        from autoaccel.builder import build_candidate

        self.emit("status", "exporting the model to ONNX")
        recipe = {"runtime.backend": "onnxruntime"}
        return build_candidate(recipe, self.workload, self.paths.cache).onnx_path

    def _project_baseline(self, onnx_path: Path) -> None:
        """The baseline's graph projected on every target (at every start: `--targets` may
        differ): each target's speedups are against the same model on the same target."""
        from autoaccel.placement import BASELINE_PROJECTIONS
        from autoaccel.projection import project_build

        s = self.settings
        self.emit("status", "projecting the baseline on every target")
        estimated = {n: t for n, t in s.targets.items() if not t.measured}
        shapes = {k: tuple(v.shape) for k, v in self.workload.latency_inputs(1).items()}
        projected = project_build(
            onnx_path, shapes, estimated, s.grid, s.scenario, s.latency_bound_ms
        )
        stored = self.study.user_attrs.get(BASELINE_PROJECTIONS, {})
        self.study.set_user_attr(BASELINE_PROJECTIONS, {**stored, **projected})

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
            cfg = self.cfg
            slow = judging_warning(baseline.get("judge_seconds"), cfg.budget, cfg.time_budget)
            if slow:
                self.emit("warning", slow)
        if warning := noisy_warning(latency, baseline["timings"][-1].get("contention")):
            self.emit("warning", warning)
        # every machine keeps its own baseline: a measured trial's speedup is against the
        # baseline of the machine that measured it; the first one is also the study's
        self.study.set_user_attr(baseline_key(host), baseline)
        first = attrs.get("baseline")
        if first is None or first.get("machine", {}).get("host", host) == host:
            self.study.set_user_attr("baseline", baseline)
        return baseline

    def _recombine(self, stage: str, count: int, baseline: dict[str, Any]) -> None:
        """Enqueue one stage of re-pairing: the crosses of the cheapest models and the fastest
        builds, later the smaller models next to the cheapest, last the switch sweep."""
        from autoaccel.recombine import CROSSES, SWEEP, enqueue

        what = {
            CROSSES: "cheapest models with the fastest builds",
            SWEEP: "the fastest models on each runtime and numeric format",
        }.get(stage, stage)
        self.emit("status", f"re-pairing: {what}")
        warn = partial(self.emit, "warning")
        chosen = enqueue(
            self.study, baseline, count, cost=self._model_cost, warn=warn, stage=stage
        )
        for line in recombine_notes(chosen):
            self.emit("note", line)

    def _model_cost(self, recipe: dict[str, Any]) -> float:
        from autoaccel.builder.model_cost import forward_flops

        return forward_flops(recipe, self.workload)

    def _ask(self):
        """A new trial, or None when other workers hold the rest of the budget (surplus)."""
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
            tags = {**self.recorder.tags(), "fail_reason": reason, "worker_died": "true"}
            self.tracker.fail_trial(t.number, recipe, tags, start=t.datetime_start)
            self.emit("warning", f"trial {t.number}: {reason}")

    def _out_of_time(self, ran: int, done: int) -> None:
        of = "" if self.cfg.budget == MAX_BUDGET else f" of its budget of {self.cfg.budget}"
        self.stopped_by = (
            f"--time-budget {shown(self.cfg.time_budget)} spent "
            f"({self.deadline.elapsed() / 60:.1f} min): {ran} trial{'s' if ran != 1 else ''} "
            f"ran in this run; the study has {done}{of}"
        )
        self.emit("warning", self.stopped_by)


__all__ = ["Search", "SearchResult", "TrialEvent", "search", "UserError"]
