"""The `autoaccel` command as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(TESTS), **(env or {})},
    )


def test_help_lists_every_search_option_without_importing_heavy_libraries():
    out = run("search", "--help")
    assert out.returncode == 0
    for option in (
        "--workload",
        "--model",
        "--data",
        "--space",
        "--budget",
        "--max-accuracy-drop",
        "--sampler",
        "--seed",
        "--study",
        "--runs-dir",
        "--storage",
        "--tracking-uri",
        "--measure-seconds",
    ):
        assert option in out.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, autoaccel.cli; "
            "print(sorted(m for m in ('torch', 'mlflow', 'optuna', 'onnxruntime') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "[]"


def test_search_end_to_end_prints_frontier_and_recommendation(tmp_path, cache_teacher):
    runs = cache_teacher(tmp_path / "out", "digits-cnn")
    out = run(
        "search",
        "--workload",
        "digits-cnn",
        "--budget",
        "3",
        "--space",
        "quick",
        "--runs-dir",
        str(runs),
        "--measure-seconds",
        "0.03",
    )
    assert out.returncode == 0, out.stderr
    assert "Pareto frontier" in out.stdout
    verdicts = ("Recommended", "Keep the baseline", "Not ranked", "No recommendation")
    assert any(v in out.stdout for v in verdicts)
    rec = json.loads((runs / "digits-cnn-quick" / "recommendation.json").read_text())
    assert rec["workload"] == "digits-cnn" and rec["trials"]["finished"] == 3
    assert (runs / "optuna.db").exists() and (runs / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--budget", "0"], "--budget 0"),
        (["--budget", "-3"], "--budget -3"),
        (["--workload", "no-such-workload"], "unknown workload 'no-such-workload'"),
        (["--sampler", "annealing"], "--sampler 'annealing'"),
        (["--space", "missing-space"], "--space missing-space"),
        (["--study", "../escape"], "--study '../escape'"),
        (["--model", "m.onnx"], "--model and --data go together"),
        (["--max-accuracy-drop", "-0.1"], "--max-accuracy-drop -0.1"),
        (["--workload", "support_workloads:not_a_workload"], "not an autoaccel"),
        (["--workload", "no_such_module_xyz:make"], "cannot import 'no_such_module_xyz'"),
    ],
)
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(tmp_path, args, expected):
    runs = tmp_path / "runs"
    out = run("search", "--runs-dir", str(runs), *args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert expected in lines[0]
    assert "Traceback" not in out.stderr
    assert not runs.exists()


def test_debug_shows_the_traceback():
    out = run("--debug", "search", "--workload", "no-such-workload")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_bad_search_space_file_names_file_and_key(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("version: 1\ntechniques:\n  quantize:\n    mode: [int3]\n")
    out = run("search", "--space", str(space), "--runs-dir", str(tmp_path / "r"))
    assert out.returncode == 2
    assert str(space) in out.stderr and "techniques.quantize.mode" in out.stderr


def test_ui_without_a_store_says_how_to_make_one(tmp_path):
    out = run("ui", "--runs-dir", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "run `autoaccel search` first" in out.stderr


def test_report_command_rewrites_report_and_logs_it_to_the_latest_parent_run(
    tmp_path, cache_teacher
):
    import sqlite3

    import autoaccel

    runs = cache_teacher(tmp_path / "runs")
    autoaccel.search("seed-mlp", budget=2, runs_dir=runs, space="quick", measure_seconds=0.03)
    html = runs / "seed-mlp-quick" / "report.html"
    html.unlink()  # written by the search; the command writes it again
    out = run("report", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr
    assert html.exists() and "logged to MLflow run" in out.stdout
    con = sqlite3.connect(runs / "mlflow.db")
    parents = con.execute(
        "select run_uuid from tags where key = 'autoaccel.role' and value = 'study'"
    ).fetchall()
    con.close()
    assert len(parents) == 1
    (logged,) = (runs / "mlartifacts").rglob("report.html")  # replaced in the parent run
    assert logged.read_bytes() == html.read_bytes()


def test_report_command_for_unknown_study_is_one_line_exit_2(tmp_path):
    out = run("report", "--runs-dir", str(tmp_path / "none"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "no such study store" in out.stderr and not (tmp_path / "none").exists()


def test_help_explains_the_model_folder_options():
    out = run("search", "--help")
    text = " ".join(out.stdout.replace("│", " ").split())
    for option in ("--task", "--text-column", "--label-column", "--score-column", "--train-data"):
        assert option in text
    assert "local Hugging Face folder" in text and "sentence-embedding" in text
