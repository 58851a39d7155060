"""The reference every speedup of a study is against: PyTorch eager fp32 at all cores (an ONNX
Runtime default session for ONNX-only workloads), built and timed like a trial.

Its own timings give the study's absolute milliseconds, and a CPU shared with other work only
ever makes them slower: the first one (with its quality, which is deterministic and run once)
and one at every later start of a search on the same machine (the fastest is kept), each
after waiting for the machine to quieten and with the other work during it recorded.
Speedups never rest on those alone: every candidate is timed interleaved with the baseline in
its own window (`autoaccel.evaluate.paired`), and the best one again, with more rounds, when a
search finishes. Where these figures are stored and announced is the search's business
(`autoaccel.search_run`); this module only measures.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from autoaccel.errors import InfeasibleRecipe, UserError
from autoaccel.evaluate.contention import Contention, CpuWindow, wait_for_quiet
from autoaccel.evaluate.measure import Latency
from autoaccel.evaluate.paired import quiet_wait
from autoaccel.trial_eval import EvalSettings, scenario_of
from autoaccel.workers import measure_lock
from autoaccel.workloads.base import Workload

NOISY_SPREAD = 1.5
"""A timing whose p90 is more than this many times its median was taken on a busy CPU."""


def baseline_recipe(workload: Workload) -> dict[str, Any]:
    """PyTorch eager fp32 at every usable core (ONNX Runtime's default session for an
    ONNX-only workload): what every speedup of a study is against."""
    from autoaccel.machine import usable_cores

    backend = "onnxruntime" if workload.onnx_model() is not None else "torch"
    recipe: dict[str, Any] = {
        "runtime.backend": backend,
        "runtime.intra_op_threads": usable_cores(),
    }
    if backend == "onnxruntime":
        recipe["compile.graph_level"] = "all"
    return recipe


class BaselineTimer:
    """Builds and times the baseline with the same settings as the study's trials."""

    def __init__(self, workload: Workload, settings: EvalSettings) -> None:
        self.workload = workload
        self.settings = settings

    def measure(self, machine: dict[str, Any]) -> tuple[dict[str, Any], Latency]:
        """The baseline's first measurement on a machine: quality and latency."""
        from autoaccel.builder import build_candidate
        from autoaccel.evaluate import evaluate_candidate

        s, workload = self.settings, self.workload
        recipe = baseline_recipe(workload)
        candidate = build_candidate(recipe, workload, s.cache)
        with measure_lock(s.root):
            wait_for_quiet(quiet_wait(s.measure))
            with CpuWindow() as window:
                ev = evaluate_candidate(candidate, workload, s.measure, batch_sizes=s.batch_sizes)
        try:
            figures = scenario_of(s, ev.batches or {1: ev.latency})
        except InfeasibleRecipe as exc:
            raise UserError(
                f"--latency-bound-ms {s.latency_bound_ms:g}: the baseline cannot meet it "
                f"({exc}); raise the bound"
            ) from None
        baseline = {
            "metric": workload.metric,
            "accuracy": ev.quality[workload.metric],
            "quality": ev.quality,
            "latency_ms": ev.latency.median_ms,
            "latency_p90_ms": ev.latency.p90_ms,
            "latency_runs": ev.latency.n_runs,
            "latency_source": ev.latency.source,
            "target": ev.latency.target,
            "size_mb": ev.size_mb,
            "description": workload.baseline_description(),
            "recipe": recipe,
            "objective_ms": figures["objective_ms"],
            "scenario": figures,
            "machine": machine,
            "timings": [_timing(ev.latency, figures, window.result)],
            "judge_seconds": ev.seconds.get("quality"),
        }
        return baseline, ev.latency

    def retime(self, stored: dict[str, Any]) -> tuple[dict[str, Any], Latency, bool]:
        """Time a stored baseline again (latency only) and keep the faster figure: a baseline
        timed once on a busy machine would inflate every speedup of the study (one timed at
        451 ms instead of 29 ms once made an 8x recipe read "181x"). Returns the baseline to
        store, this timing, and whether it replaced the stored figure."""
        from autoaccel.builder import build_candidate
        from autoaccel.evaluate import time_runner
        from autoaccel.evaluate.runners import open_runner

        s = self.settings
        candidate = build_candidate(stored["recipe"], self.workload, s.cache)
        predict = open_runner(candidate, self.workload.input_names)
        with measure_lock(s.root):
            wait_for_quiet(quiet_wait(s.measure))
            with CpuWindow() as window:
                latency, batches = time_runner(predict, self.workload, s.measure, s.batch_sizes)
        figures = scenario_of(s, batches or {1: latency})
        timing = _timing(latency, figures, window.result)
        baseline = dict(stored, timings=[*stored.get("timings", []), timing])
        faster = figures["objective_ms"] < stored["objective_ms"]
        if faster:
            baseline.update(
                latency_ms=latency.median_ms,
                latency_p90_ms=latency.p90_ms,
                latency_runs=latency.n_runs,
                objective_ms=figures["objective_ms"],
                scenario=figures,
            )
        return baseline, latency, faster

    def side_by_side(
        self, best: dict[str, Any], baseline: dict[str, Any], host: str
    ) -> dict[str, Any]:
        """Re-time the best measured recipe against the baseline by the paired rule
        (`evaluate.paired`), with more rounds than a trial's: the figure quoted for it."""
        from autoaccel.builder import build_candidate
        from autoaccel.evaluate.paired import measure_paired
        from autoaccel.evaluate.runners import open_runner

        s, workload = self.settings, self.workload
        fns: dict[str, dict[int, Any]] = {}
        inputs = {b: workload.latency_inputs(b) for b in s.batch_sizes}
        for role, recipe in (("recommended", best["recipe"]), ("baseline", baseline["recipe"])):
            predict = open_runner(build_candidate(recipe, workload, s.cache), workload.input_names)
            fns[role] = {b: (lambda p=predict, x=inputs[b]: p(x)) for b in s.batch_sizes}

        def figure(latencies) -> float:
            try:
                return scenario_of(s, latencies)["objective_ms"]
            except InfeasibleRecipe:
                return math.nan

        with measure_lock(s.root):
            timing = measure_paired(
                fns["recommended"],
                fns["baseline"],
                figure,
                s.measure.scaled(2 * s.measure.budget_s),
                min_rounds=CONFIRM_ROUNDS[0],
                max_rounds=CONFIRM_ROUNDS[1],
            )
        what = "latency" if s.scenario == "single-stream" else f"{s.scenario} ms per query"
        return {
            "trial": best["trial"],
            "protocol": f"interleaved with the baseline, {timing.rounds} rounds, same process",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": host,
            "latency_ms": timing.candidate[1].median_ms,
            "latency_p90_ms": timing.candidate[1].p90_ms,
            "n_runs": timing.candidate[1].n_runs,
            "baseline_latency_ms": timing.reference[1].median_ms,
            "baseline_latency_p90_ms": timing.reference[1].p90_ms,
            "baseline_n_runs": timing.reference[1].n_runs,
            "objective_ms": timing.candidate_ms,
            "baseline_objective_ms": timing.reference_ms,
            "figure": what,
            **timing.as_dict(),
        }


CONFIRM_ROUNDS = (10, 30)
"""The confirmation's rounds (at least, at most): more than a trial's, as its figure is quoted."""


def noisy_warning(latency: Latency, contention: dict[str, Any] | None = None) -> str | None:
    """What to tell the user when a baseline timing was taken on a busy CPU. Speedups do not
    rest on it (each candidate is timed against the baseline in its own window); the
    baseline's absolute milliseconds, and the ms figures derived from them, do."""
    busy = contention is not None and contention.get("busy")
    if latency.p90_ms <= NOISY_SPREAD * latency.median_ms and not busy:
        return None
    why = (
        f"other processes used {contention['other_cores']:.1f} of {contention['cores']} cores"
        if busy
        else f"its latency varied widely (median {latency.median_ms:.3f} ms, p90 "
        f"{latency.p90_ms:.3f} ms)"
    )
    return (
        f"the baseline was timed on a busy CPU ({why}): its {latency.median_ms:.3f} ms may be "
        "too slow; speedups are still timed side by side with it, but run again on a quiet "
        "machine for absolute figures (each start re-times the baseline and keeps its fastest)"
    )


JUDGING_WARN_SECONDS = 600.0
"""Warn when judging alone may take this long over the budget (a build is judged once)."""


def judging_warning(seconds: float | None, budget: int, time_budget: float | None) -> str | None:
    """What to tell the user when judging one build's quality is slow enough that judging
    alone takes much of the search: each new build is judged once on every judging row."""
    if not seconds or seconds < 2.0:
        return None
    spent = seconds * budget
    if time_budget is not None and spent > time_budget:
        builds = int(time_budget // seconds)
        share = (
            f"judging alone fills --time-budget after about {builds} builds"
            if builds
            else "judging one build alone takes longer than --time-budget"
        )
    elif spent >= JUDGING_WARN_SECONDS:
        share = f"judging alone can take up to {spent / 60:.0f} min of --budget {budget}"
    else:
        return None
    return (
        f"judging the baseline's quality took {seconds:.0f} s and every new build is judged "
        f"once: {share}; with --model/--data, --judge-rows N judges every build on a fixed "
        "subset of N rows (or give a smaller --data)"
    )


def _timing(
    latency: Latency, figures: dict[str, Any], contention: Contention | None
) -> dict[str, Any]:
    """One timing of the baseline, kept with it so its history is visible."""
    out = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "latency_ms": latency.median_ms,
        "latency_p90_ms": latency.p90_ms,
        "objective_ms": figures["objective_ms"],
    }
    if contention is not None:
        out["contention"] = contention.as_dict()
    return out
