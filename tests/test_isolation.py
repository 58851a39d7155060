"""Candidates in their own process: a segfault or a hang fails one trial, Ctrl-C and kill -9
leave nothing running and nothing open."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import autoaccel

TESTS = Path(__file__).parent
SPACE = """version: 1
techniques:
  quantize:
    mode: [none, int8_dynamic]
"""
FAST = {"measure_seconds": 0.03}


def _study(runs: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'optuna.db'}")


def _mlflow(runs: Path, sql: str) -> list:
    con = sqlite3.connect(runs / "mlflow.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _space(tmp_path: Path) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return str(path)


def test_a_segfault_in_a_candidate_fails_that_trial_and_the_search_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOACCEL_TEST_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    result = autoaccel.search(
        "support_workloads:segfault", budget=3, runs_dir=runs, space=_space(tmp_path), **FAST
    )
    assert result.n_trials == 3 and result.n_failed == 1
    failed = [t for t in _study(runs, result.study).trials if t.state.name == "FAIL"]
    assert len(failed) == 1
    assert "killed by SIGSEGV (a crash in native code)" in failed[0].user_attrs["fail_reason"]
    # later trials ran in a new worker and were judged (a verdict, not "nothing completed")
    assert result.recommendation["verdict"] in ("recommend", "keep-baseline", "too-noisy")
    reasons = _mlflow(runs, "select value from tags where key = 'fail_reason'")
    assert any("SIGSEGV" in r for (r,) in reasons)


def test_trial_timeout_stops_a_hung_candidate_and_the_next_trial_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOACCEL_TEST_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    result = autoaccel.search(
        "support_workloads:hang",
        budget=2,
        runs_dir=runs,
        space=_space(tmp_path),
        # the limit covers a trial's evaluation only (a worker's start-up has its own): a
        # seed-mlp trial takes a few seconds, under 20 s on a busy machine
        trial_timeout=20,
        **FAST,
    )
    assert time.monotonic() - t0 < 300  # the hang (an hour) was cut short
    trials = _study(runs, result.study).trials
    reasons = [t.user_attrs.get("fail_reason") for t in trials]
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"], reasons
    assert "still running after 20 s (--trial-timeout 20 s)" in reasons[0]


def test_no_isolate_evaluates_in_the_search_process(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOACCEL_TEST_CACHE", str(tmp_path / "cache"))
    # the hang workload only hangs inside the worker process: here it never does
    result = autoaccel.search(
        "support_workloads:hang",
        budget=2,
        runs_dir=tmp_path / "runs",
        space=_space(tmp_path),
        isolate=False,
        **FAST,
    )
    assert result.n_trials == 2 and result.n_failed == 0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _hanging_search(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload"]
    cmd += ["support_workloads:hang", "--space", _space(tmp_path), "--budget", "3"]
    cmd += ["--runs-dir", str(runs), "--measure-seconds", "0.03", "--study", "h"]
    env = {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "AUTOACCEL_TEST_CACHE": str(cache),
        "AUTOACCEL_TEST_HANG": "always",
    }
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        # A job started in the background by a non-interactive shell (`.ci/run &`) has
        # SIGINT ignored, children included, and Python then installs no Ctrl-C handler:
        # give the search the default disposition a terminal user's process has.
        preexec_fn=_default_sigint,
    )
    deadline = time.time() + 240
    while not (cache / "hanging").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no candidate started"
        time.sleep(0.2)
    return proc, runs


def _worker_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(p) for p in children]


def test_ctrl_c_marks_the_trial_writes_the_frontier_and_ends_the_run_killed(tmp_path):
    proc, runs = _hanging_search(tmp_path)
    workers = _worker_pids(proc.pid)
    assert workers  # the candidate worker process
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never leave a hung search behind a failed test
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err.decode()
    assert "interrupted: the frontier so far is written" in err.decode()
    assert "Traceback" not in err.decode()
    trials = _study(runs, "h").trials
    assert [t.state.name for t in trials] == ["FAIL"]
    assert trials[0].user_attrs["fail_reason"] == "interrupted by the user (Ctrl-C)"
    rec = json.loads((runs / "h" / "recommendation.json").read_text())
    assert rec["status"] == "KILLED" and rec["trials"]["finished"] == 1
    parents = _mlflow(
        runs,
        "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'autoaccel.role' and t.value = 'study'",
    )
    assert parents == [("KILLED",)]
    children = _mlflow(
        runs,
        "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'mlflow.parentRunId'",
    )
    assert children == [("FAILED",)]
    assert not any(_alive(p) for p in workers)


@pytest.mark.chaos  # benchmarks/chaos.py injects this fault on every run
def test_kill_9_of_the_search_ends_its_candidate_worker(tmp_path):
    proc, _ = _hanging_search(tmp_path)
    workers = _worker_pids(proc.pid)
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)  # orphaned, it noticed and left


def test_an_error_in_the_worker_fails_the_trial_with_the_workers_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOACCEL_TEST_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    # flaky: the worker's first candidate raises RuntimeError inside the workload's evaluate
    result = autoaccel.search(
        "support_workloads:flaky",
        budget=1,
        runs_dir=runs,
        space=_space(tmp_path),
        targets=["cpu-local"],
        **FAST,
    )
    (trial,) = _study(runs, result.study).trials
    assert trial.state.name == "FAIL"
    assert trial.user_attrs["fail_reason"] == "RuntimeError: candidate exploded on purpose"
    trace = trial.user_attrs["traceback"]  # the worker's own, carried back as text
    assert trace.startswith("Traceback") and "support_workloads.py" in trace
    assert "RuntimeError: candidate exploded on purpose" in trace
    (tag,) = _mlflow(runs, "select value from tags where key = 'traceback'")
    assert tag[0] == trace
    assert next(runs.rglob("traceback.txt")).read_text() == trace
