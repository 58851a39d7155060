"""Every command of the README's "Using it" block runs as written, after the quick start.

The quick start (`make demo`) leaves a study `minilm-quick` in `runs/`; here a seed-mlp search
named `minilm-quick` stands in for it (the commands only read the study), so the commands run
in seconds, not minutes. Searches get `--measure-seconds 0.03` (timing, not behaviour) and
`/tmp/aa` becomes a temporary folder; nothing else is changed. Each runs folder starts with
the trained teacher in its cache (the file a first search writes), so no command trains it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
NOT_RUN = {
    "autoaccel search --budget 100": "the real job: 100 MiniLM trials take ~37 minutes",
}


def readme_commands() -> list[str]:
    text = README.read_text()
    section = text.split("## Using it", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("autoaccel ")]


def _cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ,
    )


@pytest.fixture(scope="module")
def quick_started(tmp_path_factory, cache_teacher) -> Path:
    """A folder whose runs/ holds a finished study named as the demo's (minilm-quick)."""
    home = tmp_path_factory.mktemp("home")
    cache_teacher(home / "runs")
    space = home / "ort.yaml"  # an ONNX Runtime build beats PyTorch eager: a recommendation
    space.write_text("version: 1\ntechniques:\n  runtime:\n    backend: [onnxruntime]\n")
    out = _cli(
        [
            "search",
            "--workload",
            "seed-mlp",
            "--space",
            str(space),
            "--budget",
            "2",
            "--study",
            "minilm-quick",
            "--measure-seconds",
            "0.03",
        ],
        home,
    )
    assert out.returncode == 0, out.stderr
    return home


def _ui(args: list[str], cwd: Path) -> None:
    """`autoaccel ui` serves until stopped: it must answer on the loopback address with the
    study's experiment, then stop cleanly on SIGTERM. (The only test that starts the UI's
    MLflow server, ~16 s of start-up.)"""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if "--port" not in args:
        args = [*args, "--port", str(port)]  # 5000 may be taken on a test machine
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoaccel.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, status = time.time() + 120, None
        while time.time() < deadline and status is None and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    status = r.status
            except OSError:
                time.sleep(0.5)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
        url = (
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
            "?experiment_name=minilm-quick"
        )
        with urllib.request.urlopen(url, timeout=5) as r:
            assert json.load(r)["experiment"]["name"] == "minilm-quick"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_readme_lists_the_commands_this_test_runs():
    commands = readme_commands()
    assert len(commands) >= 8
    assert set(NOT_RUN) <= set(commands)
    assert any(c.startswith("autoaccel report") for c in commands)


def test_every_readme_command_runs_as_written_after_the_quick_start(
    quick_started, tmp_path, cache_teacher
):
    cache_teacher(tmp_path / "aa", "digits-cnn")  # the README's searches train no teacher here
    for command in readme_commands():
        if command in NOT_RUN:
            continue
        args = shlex.split(command.replace("/tmp/aa", str(tmp_path / "aa")))[1:]
        if args[0] == "ui":
            _ui(args, quick_started)
            continue
        if args[0] == "search" and "--help" not in args:
            args += ["--measure-seconds", "0.03"]
        out = _cli(args, quick_started)
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    assert (quick_started / "model.onnx").exists() and (quick_started / "model.json").exists()
    assert (quick_started / "runs" / "minilm-quick" / "report.html").exists()
