"""`autoaccel ui`: a busy port is one line and exit 2; SIGTERM stops the MLflow server too;
the page it prints is the study's runs (the experiments list when there are several)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TESTS = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ui(runs: Path, port: int, **kw) -> list[str]:
    store = f"sqlite:///{runs / 'mlflow.db'}"
    args = ["ui", "--runs-dir", str(runs), "--tracking-uri", store, "--port", str(port)]
    return [sys.executable, "-m", "autoaccel.cli", *args]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_ui_on_a_busy_port_is_one_line_naming_the_port_and_option_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            _ui(tmp_path, port), capture_output=True, text=True, timeout=120, env=os.environ
        )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert f"port {port}" in out.stderr and "--port" in out.stderr
    assert "Traceback" not in out.stderr


def test_ui_stopped_by_sigterm_leaves_no_server_on_its_port(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        _ui(tmp_path, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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
        proc.send_signal(signal.SIGTERM)  # this process only: as `kill PID` or systemd does
        assert proc.wait(timeout=30) == 0
        deadline = time.time() + 10
        while _port_taken(port) and time.time() < deadline:
            time.sleep(0.2)
        assert not _port_taken(port), "the MLflow server still holds the port"
        said = proc.stdout.read()
        assert "stopped the MLflow UI" in said
        # no store yet, so no study: the experiments list, in the runs view, not the home page
        assert f"MLflow UI on http://127.0.0.1:{port}/#/experiments?workflowType=" in said
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_page_is_the_only_studys_runs_else_the_experiments_list(tmp_path):
    """MLflow's Default experiment (no runs) is not a study; two studies give the list."""
    from mlflow.tracking import MlflowClient

    from autoaccel.cli_study import _study_experiments, start_page

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _study_experiments(uri) == []  # not made yet: not made by looking
    assert not (tmp_path / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=uri)
    first = client.create_experiment("study-a", artifact_location=tmp_path.as_uri())
    client.create_run(first)
    client.create_experiment("no-runs-yet", artifact_location=tmp_path.as_uri())
    assert _study_experiments(uri) == [first]
    base = "http://127.0.0.1:5000"
    page = start_page(base, _study_experiments(uri))
    assert page == f"{base}/#/experiments/{first}/runs?workflowType=machine_learning"
    client.create_run(client.create_experiment("study-b", artifact_location=tmp_path.as_uri()))
    assert start_page(base, _study_experiments(uri)) == (
        f"{base}/#/experiments?workflowType=machine_learning"
    )
