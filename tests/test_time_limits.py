"""Time limits: --time-budget ends a search at a trial boundary with every output written, and
no trial runs past its limit (explicit, or derived from the study's own history)."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

import autoaccel
from autoaccel import search_run
from autoaccel.config import DEFAULT_BUDGET, MAX_BUDGET, SearchConfig
from autoaccel.errors import UserError
from autoaccel.time_limits import (
    FIRST_LIMIT_S,
    FLOOR_S,
    MIN_HISTORY,
    RUNAWAY_FACTOR,
    Deadline,
    parse_duration,
    shown,
    trial_limit,
)

# in-process (isolation has its own tests): a search's worker start-up is seconds
FAST = {"measure_seconds": 0.03, "space": "quick", "isolate": False}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45m", 2700), ("1h30m", 5400), ("90s", 90), ("2700", 2700), ("1.5h", 5400), (30, 30)],
)
def test_durations_read_as_a_person_writes_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["45 minutes please", "m", "-5m", "0", "45x", "40d"])
def test_a_duration_that_is_not_one_is_refused_with_examples(text):
    with pytest.raises(UserError, match="--time-budget"):
        parse_duration(text)


def test_durations_are_shown_as_they_were_written():
    expected = ["45m", "1h30m", "1h", "90.5s", "30s"]
    assert [shown(s) for s in (2700, 5400, 3600, 90.5, 30)] == expected


def test_deadline_counts_from_the_start_of_this_run():
    now = [100.0]
    deadline = Deadline(60.0, clock=lambda: now[0])
    assert not deadline.spent()
    now[0] = 159.0
    assert not deadline.spent()
    now[0] = 160.0
    assert deadline.spent() and deadline.elapsed() == 60.0
    assert not Deadline(None, clock=lambda: 1e9).spent()


def test_trial_limit_explicit_first_and_from_history():
    assert trial_limit([1.0] * 50, 20.0).seconds == 20.0
    first = trial_limit([30.0] * (MIN_HISTORY - 1), None)
    assert first.seconds == FIRST_LIMIT_S and "--trial-timeout" in first.reason
    # cheap trials: the floor keeps a legitimately long training trial alive
    assert trial_limit([10.0] * MIN_HISTORY, None).seconds == FLOOR_S
    # long trials: several times their median, and the reason quotes it
    slow = trial_limit([200.0, 300.0, 300.0, 400.0, 1000.0], None)
    assert slow.seconds == RUNAWAY_FACTOR * 300.0
    assert "median trial (300 s over 5 trials)" in slow.reason


def test_budgets_trials_time_or_both():
    assert SearchConfig.build(workload="seed-mlp").budget == DEFAULT_BUDGET
    only_time = SearchConfig.build(workload="seed-mlp", time_budget="10m")
    assert only_time.budget == MAX_BUDGET and only_time.time_budget == 600
    both = SearchConfig.build(workload="seed-mlp", budget=7, time_budget="1h")
    assert both.budget == 7 and both.time_budget == 3600


def test_cli_refuses_a_bad_time_budget_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", "seed-mlp"]
    cmd += ["--time-budget", "soon", "--runs-dir", str(tmp_path / "runs")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--time-budget 'soon': not a duration" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "runs").exists()


class _SpentAfter(Deadline):
    """A deadline spent after `n` looks (the loop looks once per trial boundary)."""

    looks = 0

    def spent(self) -> bool:
        type(self).looks += 1
        return type(self).looks > 3


def test_time_budget_ends_at_a_trial_boundary_with_every_output(
    tmp_path, monkeypatch, cache_teacher
):
    monkeypatch.setattr(search_run, "Deadline", _SpentAfter)
    _SpentAfter.looks = 0
    runs = cache_teacher(tmp_path / "runs")
    result = autoaccel.search("seed-mlp", time_budget="10m", runs_dir=runs, **FAST)
    assert result.n_trials == 3  # three boundaries passed, the fourth look ended it
    assert "--time-budget 10m spent" in result.stopped_by
    assert "3 trials ran in this run; the study has 3" in result.stopped_by
    assert result.stopped_by in result.warnings
    out = runs / "seed-mlp-quick"
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["stopped_by"] == result.stopped_by
    assert (out / "report.md").exists()
    # resuming gets a new time budget and continues the same study
    _SpentAfter.looks = 0
    again = autoaccel.search("seed-mlp", time_budget="10m", runs_dir=runs, **FAST)
    assert again.n_trials == 6
    storage = f"sqlite:///{runs / 'optuna.db'}"
    study = optuna.load_study(study_name="seed-mlp-quick", storage=storage)
    assert [t.state.name for t in study.trials].count("RUNNING") == 0
