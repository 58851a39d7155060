"""Workers that die and workers that run side by side: nothing lost, nothing counted twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from autoaccel.workers import counted

TESTS = Path(__file__).parent
SLOW_SPACE = """version: 1
techniques:
  distill:
    mode: [student]
    width: [0.5]
    steps: [4000, 4001]
"""
FAST_SPACE = """version: 1
techniques:
  quantize:
    mode: [none, int8_dynamic, int8_static]
  runtime:
    intra_op_threads: [1, 2]
"""


def _search(runs: Path, space: Path, budget: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", "seed-mlp"]
    cmd += ["--space", str(space), "--budget", str(budget), "--runs-dir", str(runs)]
    cmd += ["--measure-seconds", "0.03", "--study", "w"]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _study(runs: Path) -> optuna.Study:
    return optuna.load_study(study_name="w", storage=f"sqlite:///{runs / 'optuna.db'}")


def _mlflow(runs: Path, sql: str) -> list:
    con = sqlite3.connect(runs / "mlflow.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


RUNNING_RUNS = "select count(*) from runs where status = 'RUNNING'"


def _wait_for(ready, timeout: float = 120) -> None:
    """Poll `ready()` (a store that is still being created counts as not ready)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if ready():
                return
        except sqlite3.Error:
            pass
        time.sleep(0.3)
    raise AssertionError("timed out waiting")


def _wait_for_running_trial(runs: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        if (runs / "optuna.db").exists():
            try:
                running = _study(runs).get_trials(states=(optuna.trial.TrialState.RUNNING,))
            except Exception:  # the study is still being created
                running = []
            if any("worker" in t.user_attrs for t in running):
                return
        time.sleep(0.3)
    raise AssertionError("no trial started")


@pytest.mark.chaos  # benchmarks/chaos.py injects this fault on every run
def test_kill_9_mid_trial_then_same_command_finishes_budget_exactly(tmp_path, cache_teacher):
    runs, space = cache_teacher(tmp_path / "runs"), tmp_path / "slow.yaml"
    space.write_text(SLOW_SPACE)
    first = _search(runs, space, 2)
    _wait_for_running_trial(runs, first)
    _wait_for(lambda: _mlflow(runs, RUNNING_RUNS) >= [(1,)])  # its parent run is open too
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = _search(runs, space, 2)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err.decode()
    trials = _study(runs).trials
    states = [t.state.name for t in trials]
    # the dead trial is failed and counts toward the budget (as every failed trial does)
    assert "RUNNING" not in states and len(trials) == 2
    assert states[0] == "FAIL" and states[1] in ("COMPLETE", "PRUNED")
    reasons = _mlflow(runs, "select value from tags where key = 'fail_reason'")
    assert any("stopped while running this trial" in r for (r,) in reasons)
    parents = _mlflow(
        runs,
        "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'autoaccel.role' and t.value = 'study' order by r.start_time",
    )
    assert [p for (p,) in parents] == ["KILLED", "FINISHED"]  # the dead worker's run closed
    children = _mlflow(runs, "select count(*) from tags where key = 'mlflow.parentRunId'")
    assert children == [(2,)]  # one run per trial, the dead one logged once


def test_two_workers_on_one_study_finish_the_budget_exactly(tmp_path, cache_teacher):
    runs, space = cache_teacher(tmp_path / "runs"), tmp_path / "fast.yaml"
    space.write_text(FAST_SPACE)
    workers = [_search(runs, space, 6) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err.decode()
    trials = _study(runs).trials
    kept = [t for t in trials if "surplus" not in t.user_attrs]
    assert counted(trials, 6) == 6 and all(t.state.name != "RUNNING" for t in trials)
    children = _mlflow(runs, "select count(*) from tags where key = 'mlflow.parentRunId'")
    assert children == [(len(kept),)]  # every counted trial and every repeat logged once
    parents = _mlflow(
        runs,
        "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'autoaccel.role' and t.value = 'study'",
    )
    assert [p for (p,) in parents] == ["FINISHED", "FINISHED"]  # both workers ran and ended


def test_n_jobs_runs_several_workers_that_share_the_budget(tmp_path, cache_teacher):
    runs, space = cache_teacher(tmp_path / "runs"), tmp_path / "fast.yaml"
    space.write_text(FAST_SPACE)
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", "seed-mlp"]
    cmd += ["--space", str(space), "--budget", "6", "--runs-dir", str(runs), "--study", "w"]
    cmd += ["--measure-seconds", "0.03", "--n-jobs", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert counted(_study(runs).trials, 6) == 6
    parents = _mlflow(
        runs,
        "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'autoaccel.role' and t.value = 'study'",
    )
    assert [p for (p,) in parents] == ["FINISHED", "FINISHED"]  # this one and its helper


def _trial(number: int, **attrs) -> optuna.trial.FrozenTrial:
    state = optuna.trial.TrialState.PRUNED if attrs else optuna.trial.TrialState.COMPLETE
    values = None if attrs else [1.0, 2.0]
    frozen = optuna.trial.create_trial(state=state, values=values, user_attrs=attrs)
    frozen.number = number
    return frozen


def test_repeats_are_free_of_the_budget_until_there_are_as_many_as_the_budget():
    judged = [_trial(i) for i in range(3)]
    repeats = [_trial(3 + i, duplicate_of=0) for i in range(5)]
    assert counted(judged, 4) == 3
    assert counted([*judged, *repeats[:4]], 4) == 3  # 4 repeats: all free
    assert counted([*judged, *repeats], 4) == 4  # the 5th counts: a 1-point space ends
    assert counted([*judged, _trial(9, surplus=True)], 4) == 3  # surplus never counts
