"""What `autoaccel search` prints: readable at 80 columns, one vocabulary, a clear headline."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from rich.console import Console

from autoaccel import console as console_mod
from autoaccel.console import SearchDisplay
from autoaccel.trial_record import TrialEvent

RECIPE = (
    "distilled student: 3 of 6 layers, width 0.75, 400 steps; ONNX Runtime, 2 threads; "
    "graph level all; transformer fusion; int8 static per-channel, percentile calibration"
)


def _point(trial: int, drop: float, ms: float, speedup: float, **extra) -> dict:
    return {
        "trial": trial,
        "description": RECIPE,
        "recipe": {"quantize.mode": "int8_static"},
        "target": "cpu-local",
        "accuracy": 0.8163 - drop,
        "accuracy_drop": drop,
        "latency_ms": ms,
        "latency_p90_ms": ms * 1.2,
        "latency_source": "measured",
        "speedup": speedup,
        "size_mb": 22.96,
        "quality": {},
        "speedup_ci": [speedup * 0.97, speedup * 1.03],
        "rounds": 12,
        "paired_ms": [ms, 16.24],
        **extra,
    }


@pytest.fixture
def rec() -> dict:
    pick = _point(
        6,
        -0.0550,  # an improvement
        4.125,
        3.94,
        quality={"task_quality": 0.8713, "teacher_cosine": 0.68, "teacher_recall_at_10": 0.35},
        confirmation={"speedup": 3.94},
    )
    return {
        "study": "minilm-quick",
        "workload": "minilm",
        "metric": "task_quality",
        "baseline": {
            "description": "minilm: PyTorch eager fp32, batch 1",
            "accuracy": 0.8163,
            "latency_ms": 16.24,
            "latency_p90_ms": 18.22,
            "latency_source": "measured",
            "target": "cpu-local",
            "size_mb": 90.85,
            "scenario": {"scenario": "single-stream"},
        },
        "accuracy_limit": {"max_drop": 0.01, "min_accuracy": 0.8063, "unit": "absolute"},
        "verdict": "recommend",
        "recommended": pick,
        "reason": None,
        "frontier": [pick, _point(3, 0.0056, 7.958, 2.04)],
        "warnings": ["the baseline's timing was spread widely (p90 40 % above the median)"],
        "trials": {"finished": 10, "failed": 1, "complete": 9},
        "hardware": [],
    }


def _final(rec: dict, width: int, tally: dict | None = None) -> str:
    out = io.StringIO()
    display = SearchDisplay(10, Console(file=out, width=width, color_system=None))
    display.tally = dict(tally or {})
    result = SimpleNamespace(
        recommendation=rec,
        study=rec["study"],
        n_trials=10,
        n_failed=1,
        out_dir="runs/minilm-quick",
        tracking_uri="sqlite:///runs/mlflow.db",
        parent_run_id="0123abcd",
    )
    display.final(result)
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 200])
def test_final_output_keeps_every_number_and_the_whole_recipe_at_width(rec, width):
    text = _final(rec, width)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for figure in ("0.8713", "+0.0550", "0.8107", "-0.0056", "4.125/4.95", "3.94x", "2.04x"):
        assert figure in text, figure
    assert "16.24/18.22" in text and "90.85" in text and "22.96" in text
    flat = " ".join(text.split())
    assert " ".join(RECIPE.split()) in flat.replace("  ", " ") or all(
        word in flat for word in RECIPE.split()
    )


def test_quality_change_is_positive_for_an_improvement_everywhere(rec):
    text = _final(rec, 120)
    assert "change" in text and "drop" not in text.split("Recommended: trial")[0]
    assert "positive = better" in text
    headline = text.split("Recommended: trial", 1)[1].split("\n  ")[0]
    assert "task_quality +0.0550 (better)" in " ".join(headline.split())


def test_headline_says_what_to_do_how_much_faster_and_how_it_was_timed(rec):
    text = " ".join(_final(rec, 100).split())
    assert "Recommended: trial 6" in text
    assert "3.94x faster than the baseline (measured here)" in text
    assert "4.125 ms vs 16.240 ms timed side by side" in text
    assert "95 % interval" in text and "12 interleaved rounds" in text


def test_low_teacher_agreement_is_a_caveat_in_the_console(rec):
    text = " ".join(_final(rec, 80).split())
    assert "mean cosine 0.68" in text and "neighbour recall@10 0.35" in text
    assert "not a drop-in replacement" in text
    assert "p90 40 % above the median" in text  # the warnings follow


def test_trial_counts_use_the_one_vocabulary(rec):
    text = _final(rec, 120, tally={"complete": 9, "infeasible": 1})
    assert "10 trials: 9 complete, 1 infeasible" in text
    rec["trials"] = {"complete": 7, "failed": 1, "infeasible": 1, "stopped_early": 1}
    text = _final(rec, 120)
    assert "10 trials: 7 complete, 1 failed, 1 infeasible, 1 stopped early" in text
    assert "pruned" not in text
    rec["trials"]["repeated"] = 3  # a sampler repeat is not a failure
    text = _final(rec, 120)
    assert "13 trials: 7 complete, 1 failed, 1 infeasible, 1 stopped early, 3 repeated" in text


def test_progress_line_names_the_step_and_the_trials_clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(console_mod.time, "monotonic", lambda: now[0])
    display = SearchDisplay(10, Console(file=io.StringIO(), width=80, color_system=None))
    display.handle("status", "measuring the baseline")
    now[0] += 14
    assert display.step_line() == "measuring the baseline (0:14)"
    display.handle("resumed", 0)  # the baseline is done: trial 1 starts
    now[0] += 100
    line = display.step_line()
    assert line.startswith("trial 1/10, 1:40: ") and "baseline" not in line
    display.handle("status", "training the student (25 % of 400 steps)")
    assert "trial 1/10, 1:40: training the student" in display.step_line()
    display.handle("trial", TrialEvent(0, 1, 10, 1, "failed", reason="boom"))
    now[0] += 90
    line = display.step_line()
    assert line.startswith("trial 2/10, 1:30: ") and "1 failed" in line
    display.handle("trial", TrialEvent(1, 10, 10, 0, "complete", 2.5, True))
    line = display.step_line()
    assert line.startswith("finishing") and "best so far 2.50x within the limit" in line
    # re-timed at the end: the line shows the figure the recommendation quotes, no other
    display.handle("done", {"recommended": {"speedup": 1.64}})
    assert display.step_line() == "done · 1 failed · recommended 1.64x"
    display.handle("done", {"recommended": None, "verdict": "keep-baseline"})
    assert "x" not in display.step_line().replace("done", "")


def test_progress_line_fits_80_columns_without_cutting_the_step(monkeypatch):
    out = io.StringIO()
    con = Console(file=out, width=80, color_system=None, force_terminal=True)
    display = SearchDisplay(10, con)
    with display:
        display.handle("resumed", 3)
        display.handle(
            "status", "re-timing the best measured recipe side by side with the baseline"
        )
        display.progress.refresh()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", " ", out.getvalue())
    text = " ".join(plain.split())
    assert "trial 4/10" in text and "side by side with the baseline" in text


def test_techniques_at_80_columns_shows_every_parameter_name_whole():
    from autoaccel.techniques import REGISTRY

    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "techniques"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    for tech in REGISTRY.values():
        for p in tech.params(None):
            assert f"{tech.name}.{p.name}" in out.stdout


def test_evaluator_names_each_step_of_a_candidate_as_it_starts(tmp_path, seed_mlp, cache_dir):
    from autoaccel.evaluate.measure import MeasureConfig
    from autoaccel.projection.plans import PlanGrid
    from autoaccel.targets import load_targets
    from autoaccel.trial_eval import CandidateEvaluator, EvalSettings, build_words

    settings = EvalSettings(
        workload="seed-mlp",
        model=None,
        data=None,
        metric=seed_mlp.metric,
        cache=cache_dir,
        root=tmp_path,
        targets=load_targets(["nvidia-t4"]),
        measure=MeasureConfig().scaled(0.03),
        batch_sizes=(1,),
        scenario="single-stream",
        latency_bound_ms=100.0,
        arrival_rate=None,
        grid=PlanGrid.from_block({"batch_size": [1]}),
    )
    steps: list[str] = []
    CandidateEvaluator(settings, seed_mlp, on_status=steps.append).run(
        {"runtime.backend": "onnxruntime"}
    )
    assert steps == [
        "building the candidate",
        "opening the runtime",
        "judging quality on the validation data",
        "timing the candidate",
        "projecting the build on 1 estimated target",
    ]
    student = {"distill.mode": "student", "distill.steps": 400}
    assert build_words(student) == (
        "building the candidate: training a student (400 steps), unless cached"
    )


def test_a_refusal_is_said_once_not_again_as_a_caveat(rec):
    reason = "the CPU was busy with other work while the best candidate was timed"
    rec.update(verdict="too-noisy", recommended=None, reason=reason, closest=[])
    rec["warnings"] = [reason, "the baseline's timing was spread widely"]
    text = " ".join(_final(rec, 200).split())
    assert text.count("the CPU was busy with other work") == 1
    assert "the baseline's timing was spread widely" in text
