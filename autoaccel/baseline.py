"""The reference every speedup of a study is against: PyTorch eager fp32 at all cores (an ONNX
Runtime default session for ONNX-only workloads), built and timed like a trial.

Three timings, because a CPU shared with other work only ever gets slower: the first one
(with its quality, which is deterministic and run once), one at every later start of a search
on the same machine (the fastest is kept), and one interleaved with the best recipe when a
search finishes (the figure both were measured under alike). Where these figures are stored
and announced is the search's business (`autoaccel.search_run`); this module only measures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from autoaccel.errors import InfeasibleRecipe, UserError
from autoaccel.evaluate.measure import Latency
from autoaccel.trial_eval import EvalSettings, scenario_of
from autoaccel.workers import measure_lock
from autoaccel.workloads.base import Workload

NOISY_SPREAD = 1.5
"""A timing whose p90 is more than this many times its median was taken on a busy CPU."""


class BaselineTimer:
    """Builds and times the baseline with the same settings as the study's trials."""

    def __init__(self, workload: Workload, settings: EvalSettings) -> None:
        self.workload = workload
        self.settings = settings

    def measure(self, machine: dict[str, Any]) -> tuple[dict[str, Any], Latency]:
        """The baseline's first measurement on a machine: quality and latency."""
        from autoaccel.builder import build_candidate
        from autoaccel.evaluate import evaluate_candidate
        from autoaccel.machine import usable_cores

        s, workload = self.settings, self.workload
        backend = "torch" if workload.torch_model_available() else "onnxruntime"
        recipe = {"runtime.backend": backend, "runtime.intra_op_threads": usable_cores()}
        if backend == "onnxruntime":
            recipe["compile.graph_level"] = "all"
        candidate = build_candidate(recipe, workload, s.cache)
        with measure_lock(s.root):
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
            "timings": [_timing(ev.latency, figures)],
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
            latency, batches = time_runner(predict, self.workload, s.measure, s.batch_sizes)
        figures = scenario_of(s, batches or {1: latency})
        baseline = dict(stored, timings=[*stored.get("timings", []), _timing(latency, figures)])
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
        """Re-time the best measured recipe and the baseline interleaved, in one sitting.

        The baseline was timed when the search started and the winner when its trial ran,
        maybe hours apart on a machine whose speed drifts; this is the speedup to quote.
        """
        from autoaccel.builder import build_candidate
        from autoaccel.evaluate.measure import measure_interleaved
        from autoaccel.evaluate.runners import open_runner

        s, workload = self.settings, self.workload
        inputs = workload.latency_inputs(1)
        fns = {}
        for role, recipe in (("recommended", best["recipe"]), ("baseline", baseline["recipe"])):
            predict = open_runner(build_candidate(recipe, workload, s.cache), workload.input_names)
            fns[role] = lambda p=predict: p(inputs)
        with measure_lock(s.root):
            lat = measure_interleaved(fns, s.measure.scaled(2 * s.measure.budget_s), rounds=5)
        what = "latency " if s.scenario == "single-stream" else "batch-1 latency "
        return {
            "trial": best["trial"],
            "protocol": "interleaved with the baseline, 5 rounds, same process",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": host,
            "latency_ms": lat["recommended"].median_ms,
            "latency_p90_ms": lat["recommended"].p90_ms,
            "n_runs": lat["recommended"].n_runs,
            "baseline_latency_ms": lat["baseline"].median_ms,
            "baseline_latency_p90_ms": lat["baseline"].p90_ms,
            "baseline_n_runs": lat["baseline"].n_runs,
            "speedup": lat["baseline"].median_ms / lat["recommended"].median_ms,
            "figure": f"{what}(batch 1)",
        }


def noisy_warning(latency: Latency) -> str | None:
    """What to tell the user when a baseline timing was taken on a busy CPU."""
    if latency.p90_ms <= NOISY_SPREAD * latency.median_ms:
        return None
    return (
        f"the baseline's latency varied widely (median {latency.median_ms:.3f} ms, "
        f"p90 {latency.p90_ms:.3f} ms): other work is using this CPU, so speedups may be off; "
        "run again when the machine is quiet (each start re-times the baseline and keeps its "
        "fastest figure)"
    )


def _timing(latency: Latency, figures: dict[str, Any]) -> dict[str, Any]:
    """One timing of the baseline, kept with it so its history is visible."""
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "latency_ms": latency.median_ms,
        "latency_p90_ms": latency.p90_ms,
        "objective_ms": figures["objective_ms"],
    }
