"""Build, judge, measure and project one candidate: the part of a trial that runs the model.

`CandidateEvaluator.run(recipe, rule)` builds the recipe once, judges its quality once (cached
by the built model's content hash, `evaluate.quality`), times it by the protocol on every
measured target here (the first one, `cpu-local`, is the study's objective), and projects the
same build on every estimated target over its plan grid (`autoaccel.projection`). It is the
same code in the search's own process and in the isolated worker process
(`autoaccel.isolation`); everything it needs is in `EvalSettings`, which pickles.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoaccel.errors import InfeasibleRecipe, describe
from autoaccel.evaluate.measure import MeasureConfig
from autoaccel.projection.plans import PlanGrid
from autoaccel.workers import measure_lock


@dataclass(frozen=True)
class EvalSettings:
    """What evaluating a candidate depends on, beyond the recipe."""

    workload: str | None
    model: Path | None
    data: Path | None
    metric: str  # the quality figure the limit applies to (`--metric`)
    cache: Path
    root: Path  # the runs folder: its lock file serialises timings across processes
    targets: dict[str, Any]  # name -> Target: the measured ones first (the objective's first)
    measure: MeasureConfig
    batch_sizes: tuple[int, ...]
    scenario: str
    latency_bound_ms: float
    arrival_rate: float | None
    grid: PlanGrid = field(default_factory=PlanGrid)
    reference: dict[str, Any] | None = None
    """The baseline's recipe: every candidate is timed interleaved with it on the objective's
    target (`evaluate.paired`), so its speedup is a ratio taken in one window. None: the
    candidate is timed alone (the baseline's own timing, and older callers)."""
    workload_options: dict[str, Any] = field(default_factory=dict)
    """A model folder's task and data options (`load_workload`)."""

    @property
    def objective_target(self) -> str:
        """The measured target whose figure the study optimises."""
        return next(n for n, t in self.targets.items() if t.measured)


@dataclass
class Outcome:
    """A judged candidate: quality, what was measured where, every target's projection."""

    quality: dict[str, float]
    measured: dict[str, dict[str, Any]]  # measured target -> its figures (objective first)
    projections: dict[str, dict[str, Any]]  # estimated target -> `Projection.as_dict()`
    size_mb: float
    notes: list[str]
    build_s: float
    train_s: float
    seconds: dict[str, float] = field(default_factory=dict)
    quality_cached: bool = False
    curve: dict[str, dict[float, float]] = field(default_factory=dict)
    untrained_ms: float | None = None
    """The objective of the same build untrained, where it was timed for the early-stopping
    rule before training (`early_stop`); None where it was not."""

    @property
    def objective(self) -> dict[str, Any]:
        """The figures of the measured target the study optimises."""
        return next(iter(self.measured.values()))


def scenario_of(settings: EvalSettings, batches) -> dict[str, Any]:
    """The scenario's figures from per-batch latencies; a server that meets the latency bound
    at no rate is an infeasible recipe, with the reason (any other error is a failure)."""
    from autoaccel.evaluate.scenarios import scenario_figures

    args = (settings.scenario, batches, settings.latency_bound_ms, settings.arrival_rate)
    if settings.scenario != "server":
        return scenario_figures(*args)
    try:
        return scenario_figures(*args)
    except ValueError as exc:
        raise InfeasibleRecipe(f"server scenario: {exc}", kind="server_bound") from None


def build_words(recipe: dict[str, Any]) -> str:
    """The build step in words, naming the training a recipe asks for (a cached state dict
    skips it, so this says what may take long, not that it will)."""
    training = []
    if recipe.get("distill.mode") == "student" and recipe.get("distill.steps", 1):
        steps = recipe.get("distill.steps")
        training.append(f"training a student ({steps} steps)" if steps else "training a student")
    if recipe.get("prune.mode", "none") != "none" and recipe.get("prune.finetune_steps"):
        training.append(f"fine-tuning after pruning ({recipe['prune.finetune_steps']} steps)")
    if not training:
        return "building the candidate"
    return f"building the candidate: {' and '.join(training)}, unless cached"


class CandidateEvaluator:
    def __init__(
        self,
        settings: EvalSettings,
        workload=None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        """`on_status` is told each step of a candidate as it starts (the progress line)."""
        from autoaccel.workloads import load_workload

        self.settings = settings
        self.on_status = on_status or (lambda step: None)
        self.workload = workload or load_workload(
            settings.workload,
            settings.cache,
            settings.model,
            settings.data,
            settings.metric,
            settings.workload_options,
        )
        self._reference = None  # the baseline's opened runner, built on first use

    def run(self, recipe: dict[str, Any], rule=None) -> Outcome:
        """Build, judge, measure and project `recipe`. `rule` (an early-stopping
        `HeadroomRule`, or None) watches its training; a stopped run raises `TrainingStopped`
        carrying its curve."""
        from autoaccel.builder import build_candidate
        from autoaccel.early_stop import (
            TrainingStopped,
            TrialMonitor,
            torch_quality,
            training_stages,
        )
        from autoaccel.evaluate import model_size_mb
        from autoaccel.evaluate.quality import judge_quality
        from autoaccel.evaluate.runners import open_runner

        s, wl = self.settings, self.workload
        monitor = None
        if rule is not None and wl.torch_model_available() and wl.output_kind:
            monitor = TrialMonitor(rule, torch_quality(wl), stages=tuple(training_stages(recipe)))
        before = time.perf_counter()
        untrained_ms = self._untrained_objective(recipe, rule) if monitor else None
        t0 = time.perf_counter()
        self.on_status(build_words(recipe))
        try:
            candidate = build_candidate(recipe, wl, s.cache, monitor)
        except TrainingStopped as stop:
            stop.curve = dict(monitor.curve) if monitor else {}
            stop.seconds = time.perf_counter() - before
            stop.untrained_ms = untrained_ms
            raise
        t1 = time.perf_counter()
        self.on_status("opening the runtime")
        predict = open_runner(candidate, wl.input_names)
        t2 = time.perf_counter()
        self.on_status("judging quality on the validation data")
        quality, cached = judge_quality(candidate, wl, predict, s.cache)
        t3 = time.perf_counter()
        paired = " interleaved with the baseline" if s.reference is not None else ""
        self.on_status(f"timing the candidate{paired}")
        measured = self._measure(candidate, predict)
        t4 = time.perf_counter()
        estimated = sum(not t.measured for t in s.targets.values())
        self.on_status(
            f"projecting the build on {estimated} estimated target{'s' * (estimated != 1)}"
        )
        projections = self._project(candidate, recipe, measured)
        t5 = time.perf_counter()
        return Outcome(
            quality=quality,
            measured=measured,
            projections=projections,
            size_mb=model_size_mb(candidate),
            notes=list(candidate.notes),
            build_s=t1 - t0,
            train_s=candidate.train_seconds,
            seconds={
                "open": t2 - t1,
                "quality": t3 - t2,
                "latency": t4 - t3,
                "project": t5 - t4,
                **({"untrained_timing": t0 - before} if untrained_ms is not None else {}),
            },
            quality_cached=cached,
            curve=dict(monitor.curve) if monitor else {},
            untrained_ms=untrained_ms,
        )

    def _untrained_objective(self, recipe: dict[str, Any], rule) -> float | None:
        """Time the recipe's build untrained, in a short interleaved timing beside the
        baseline, where that could let `rule` stop its training (`early_stop`); the
        objective on the baseline's scale, which the rule then judges the build by.

        Built in a scratch folder removed after (nothing untrained is cached); skipped for
        torch_compile (compiling costs what it would save). A timing that fails leaves the
        rule as it was: the real build will meet the same error and record it."""
        from autoaccel.builder import build_candidate, trains
        from autoaccel.early_stop import UNTRAINED, untrained
        from autoaccel.evaluate import time_runner
        from autoaccel.evaluate.runners import open_runner

        s, wl = self.settings, self.workload
        if recipe.get("runtime.backend") == "torch_compile" or not rule.wants_timing(recipe):
            return None
        if not trains(recipe, wl, s.cache):
            return None
        self.on_status("timing the build untrained, to see whether its training can pay")
        s.cache.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".untrained-", dir=s.cache))
        rule.timed_how = UNTRAINED
        try:
            candidate = build_candidate(untrained(recipe), wl, scratch)
            run = open_runner(candidate, wl.input_names)
            quick = s.measure.scaled(s.measure.budget_s / 3)
            with measure_lock(s.root):
                if s.reference is not None and rule.baseline_ms:
                    paired = self._paired(run, quick, rounds=(3, 6))
                    rule.objective_ms = rule.baseline_ms / paired.speedup
                else:
                    latency, batches = time_runner(run, wl, quick, s.batch_sizes)
                    rule.objective_ms = scenario_of(s, batches or {1: latency})["objective_ms"]
        except Exception:  # noqa: BLE001 - an optimisation only; the build will say why
            rule.objective_ms = None
            return None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return rule.objective_ms

    def close(self) -> None:
        """Nothing to release in-process; the isolated twin stops its worker here."""

    def _measure(self, candidate, predict) -> dict[str, dict[str, Any]]:
        """Time the candidate on every measured target. The objective's target must run it
        (else the recipe is infeasible) and times it interleaved with the baseline; another
        measured device that cannot run it is recorded."""
        from autoaccel.evaluate import time_runner
        from autoaccel.evaluate.runners import open_runner

        s, wl = self.settings, self.workload
        out: dict[str, dict[str, Any]] = {}
        for name, target in s.targets.items():
            if not target.measured:
                continue
            objective = not out
            paired = None
            try:
                run = predict if target.device == "cpu" else None
                run = run or open_runner(candidate, wl.input_names, target.device)
                with measure_lock(s.root):
                    if objective and s.reference is not None and target.device == "cpu":
                        paired = self._paired(run)
                        batches = dict(paired.candidate) if len(paired.candidate) > 1 else {}
                        latency = paired.candidate[1]
                    else:
                        latency, batches = time_runner(run, wl, s.measure, s.batch_sizes)
                scenario = scenario_of(s, batches or {1: latency})
            except InfeasibleRecipe as exc:
                if objective:
                    raise
                out[name] = {"infeasible": describe(exc), "source": "measured"}
                continue
            out[name] = {
                "source": "measured",
                "device": target.device,
                "latency_ms": latency.median_ms,
                "latency_p90_ms": latency.p90_ms,
                "latency_runs": latency.n_runs,
                "objective_ms": scenario["objective_ms"],
                **target.priced(latency.median_ms),
                "scenario": scenario,
            }
            if paired is not None:
                out[name]["paired"] = paired.as_dict()
        return out

    def _paired(self, run, protocol=None, rounds: tuple[int, int] | None = None):
        """The candidate against the baseline, interleaved, by `evaluate.paired`'s rule
        (`protocol` and `rounds`, min and max: a shorter timing than the study's)."""
        import math

        from autoaccel.evaluate.paired import MAX_ROUNDS, MIN_ROUNDS, measure_paired

        s, wl = self.settings, self.workload
        reference = self._reference_runner()
        sizes = s.batch_sizes or (1,)
        candidate_fns, reference_fns = {}, {}
        for b in sizes:
            inputs = wl.latency_inputs(b)
            candidate_fns[b] = lambda x=inputs: run(x)
            reference_fns[b] = lambda x=inputs: reference(x)

        def figure(latencies) -> float:
            try:
                return scenario_of(s, latencies)["objective_ms"]
            except InfeasibleRecipe:
                return math.nan

        low, high = rounds or (MIN_ROUNDS, MAX_ROUNDS)
        quick = {} if protocol is None else {"attempts": 1}  # no waiting for a quiet machine
        return measure_paired(
            candidate_fns, reference_fns, figure, protocol or s.measure, low, high, **quick
        )

    def _reference_runner(self):
        if self._reference is None:
            from autoaccel.builder import build_candidate
            from autoaccel.evaluate.runners import open_runner

            built = build_candidate(self.settings.reference, self.workload, self.settings.cache)
            self._reference = open_runner(built, self.workload.input_names)
        return self._reference

    def _project(self, candidate, recipe: dict[str, Any], measured: dict[str, dict[str, Any]]):
        """Every estimated target's projection of this build; a measured target's estimated
        twin goes beside its measurement (`twin`), so the cost model's error is visible."""
        from autoaccel.projection import project_build

        s, wl = self.settings, self.workload
        onnx_path = candidate.onnx_path or self._onnx_twin(recipe)
        wanted = {n: t for n, t in s.targets.items() if not t.measured or n in measured}
        wanted = {n: t for n, t in wanted.items() if not t.measured or t.twin is not None}
        shapes = {k: tuple(v.shape) for k, v in wl.latency_inputs(1).items()}
        projected = project_build(
            onnx_path, shapes, wanted, s.grid, s.scenario, s.latency_bound_ms
        )
        for name in measured:
            if name in projected:
                measured[name]["twin"] = projected.pop(name)
        return projected

    def _onnx_twin(self, recipe: dict[str, Any]) -> Path:
        """The ONNX export of a torch-engine build (same distillation and pruning): what the
        cost models read. Its torch steps are cached, so nothing is trained again."""
        from autoaccel.builder import build_candidate

        torch_part = {k: v for k, v in recipe.items() if k.startswith(("distill.", "prune."))}
        twin = build_candidate(
            {**torch_part, "runtime.backend": "onnxruntime"}, self.workload, self.settings.cache
        )
        return twin.onnx_path
