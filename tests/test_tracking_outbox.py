"""MLflow records kept while the tracking server does not answer, and written when it does:
the outbox's files, its replay (one run per trial, never two), the tracker's offline state
(a local store stands in for the server here, with its client made to fail as a server that
is gone does), and a real `mlflow server` stopped and restarted under a running search."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from test_workers import FAST_SPACE

import autoaccel.tracking_offline as offline
from autoaccel import tracking_outbox as outbox
from autoaccel.stores import prepare_sqlite_store
from autoaccel.tracking import Tracker

TESTS = Path(__file__).parent
ROOT = TESTS.parent
GONE = "HTTPConnectionPool(host='127.0.0.1'): Max retries exceeded (Connection refused)"


@pytest.fixture
def store(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    return runs, uri


def _tracker(store, notes=None) -> Tracker:
    runs, uri = store
    return Tracker(
        uri, "study", runs / "mlartifacts", note=None if notes is None else notes.append
    )


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    )
    return int(done.stdout)


def _record(number: int, key: str = "k-dead", pid: int | None = None, **extra) -> dict:
    owner = {"key": key, "host": socket.gethostname(), "pid": pid or _dead_pid()}
    return {
        "kind": "trial",
        "number": number,
        "params": {"quantize.mode": "none"},
        "tags": {"target": "cpu-local", "pareto": "false"},
        "metrics": {"accuracy": 0.9, "speedup": 1.5},
        "status": "FINISHED",
        "json_files": {"measured.json": {"cpu-local": {"latency_ms": 1.0}}},
        "text_files": {},
        "start": 1_700_000_000_000 + number,
        "end": 1_700_000_001_000 + number,
        "owner": owner,
        "parent_id": None,
        "parent": {
            "name": "search study",
            "params": {"budget": 2},
            "tags": {"autoaccel.role": "study", "autoaccel.invocation": key},
            "start": 1_700_000_000_000,
        },
        **extra,
    }


def _trial_runs(tracker: Tracker) -> dict[int, list]:
    found: dict[int, list] = {}
    for run in tracker._trial_runs():
        found.setdefault(int(run.data.tags["trial"]), []).append(run)
    return found


def test_a_record_is_written_whole_and_read_back(tmp_path):
    box = outbox.Outbox(tmp_path / "box", "http://x:5000", "study")
    path = box.put(_record(3))
    assert path.exists() and not list(path.parent.glob(".*.tmp"))
    ((found, record),) = box.pending()
    assert found == path and record["number"] == 3 and record["experiment"] == "study"
    assert outbox.Outbox(tmp_path / "box", "http://x:5000", "other").pending() == []


def test_records_of_a_worker_that_ended_are_written_at_the_next_start_once(store):
    runs, uri = store
    box = outbox.Outbox(runs / outbox.FOLDER, uri, "study")
    pid = _dead_pid()
    for n in (0, 1):
        box.put(_record(n, pid=pid))
    end = _record(
        -1,
        pid=pid,
        kind="parent_end",
        metrics={"best_speedup": 1.5},
        tags={"verdict": "recommend"},
    )
    box.put(end)
    notes: list[str] = []
    tracker = _tracker(store, notes)
    assert notes == [f"wrote 3 MLflow records kept in {runs / outbox.FOLDER}"]
    assert box.pending() == []
    by_trial = _trial_runs(tracker)
    assert sorted(by_trial) == [0, 1] and all(len(r) == 1 for r in by_trial.values())
    run = by_trial[1][0]
    assert run.info.status == "FINISHED" and run.data.metrics["speedup"] == 1.5
    assert run.info.start_time == 1_700_000_000_001 and run.info.end_time == 1_700_000_001_001
    artifacts = {f.path for f in tracker.client.list_artifacts(run.info.run_id)}
    assert artifacts == {"measured.json"}
    (parent,) = tracker.client.search_runs(
        [tracker.experiment_id], "tags.`autoaccel.role` = 'study'"
    )
    assert {r[0].data.tags["mlflow.parentRunId"] for r in by_trial.values()} == {
        parent.info.run_id
    }
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_speedup"] == 1.5
    assert parent.data.tags["verdict"] == "recommend" and parent.data.params["budget"] == "2"
    box.put(_record(1, pid=pid))  # the same record again (its file outlived the write)
    assert tracker.replay() == 1
    assert [len(r) for r in _trial_runs(tracker).values()] == [1, 1]


def test_a_run_left_running_by_a_write_cut_short_is_completed_not_doubled(store):
    runs, uri = store
    tracker = _tracker(store)
    cut = tracker.client.create_run(
        tracker.experiment_id, tags={"autoaccel.role": "trial", "trial": "4"}
    )
    tracker.log_batch(cut.info.run_id, params={"quantize.mode": "none"}, metrics={"accuracy": 0.9})
    outbox.Outbox(runs / outbox.FOLDER, uri, "study").put(_record(4))
    assert tracker.replay() == 1
    ((run,),) = _trial_runs(tracker).values()
    assert run.info.run_id == cut.info.run_id and run.info.status == "FINISHED"
    assert run.data.metrics == {"accuracy": 0.9, "speedup": 1.5}


def test_an_unreadable_record_is_set_aside_and_the_others_written(store):
    runs, uri = store
    box = outbox.Outbox(runs / outbox.FOLDER, uri, "study")
    box.put(_record(0))
    bad = box.folder / "1-1-trial-1.json"
    bad.write_text('{"kind": "trial", "number": 1, "par')  # a damaged file
    notes: list[str] = []
    tracker = _tracker(store, notes)
    assert sorted(_trial_runs(tracker)) == [0]
    assert not bad.exists() and bad.with_name(bad.name + ".corrupt").exists()
    assert any("1 unreadable MLflow record file(s)" in n for n in notes)


def test_a_live_workers_records_are_left_to_it(store):
    runs, uri = store
    box = outbox.Outbox(runs / outbox.FOLDER, uri, "study")
    box.put(_record(0, key="k-live", pid=os.getppid()))  # a process that runs
    tracker = _tracker(store)
    assert _trial_runs(tracker) == {} and len(box.pending()) == 1


class _Gone:
    """An MlflowClient whose server went away: every call fails as MLflow's does."""

    def __init__(self, client):
        self.real = client

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError(GONE)

        return fail


def _answering(monkeypatch, up: bool) -> None:
    import requests

    class Reply:
        status_code = 200

    def get(url, timeout):
        if not up:
            raise requests.ConnectionError("refused")
        return Reply()

    monkeypatch.setattr(requests, "get", get)


def test_a_server_away_mid_search_keeps_records_and_writes_them_when_back(store, monkeypatch):
    notes: list[str] = []
    tracker = _tracker(store, notes)
    tracker.remote = True  # as an http:// server
    monkeypatch.setattr(offline, "PROBE_S", 0.0)
    tracker.start_parent("search study", {"budget": 3}, {"study": "study"})
    first = tracker.log_trial(0, {"quantize.mode": "none"}, {"accuracy": 0.9}, {"pareto": "false"})
    assert first is not None
    client, tracker.client = tracker.client, _Gone(tracker.client)
    _answering(monkeypatch, up=False)
    assert tracker.log_trial(1, {"quantize.mode": "int8_dynamic"}, {"accuracy": 0.8}, {}) is None
    assert tracker.log_trial(2, {"quantize.mode": "int8_static"}, {"accuracy": 0.7}, {}) is None
    tracker.log_parent_metrics({"best_speedup": 2.0})
    tracker.set_pareto({0: first}, {0, 2})
    assert tracker.offline and len(notes) == 1 and "stopped answering" in notes[0]
    assert tracker.outbox.count(tracker.key) == 2
    tracker.client = client
    _answering(monkeypatch, up=True)
    tracker.end_parent("FINISHED")
    assert not tracker.offline and tracker.outbox.count() == 0
    assert notes[-1].endswith(
        f"answers again: wrote the 2 records kept in {tracker.outbox.folder}"
    )
    by_trial = _trial_runs(tracker)
    assert {n: len(r) for n, r in by_trial.items()} == {0: 1, 1: 1, 2: 1}
    assert by_trial[2][0].data.metrics == {"accuracy": 0.7}
    assert {n: r[0].data.tags["pareto"] for n, r in by_trial.items()} == {
        0: "true",
        1: "false",
        2: "true",
    }
    parent = tracker.client.get_run(tracker.parent_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_speedup"] == 2.0


def test_a_server_that_stays_away_leaves_the_records_and_says_where(store, monkeypatch):
    notes: list[str] = []
    tracker = _tracker(store, notes)
    tracker.remote = True
    monkeypatch.setattr(offline, "PROBE_S", 0.0)
    monkeypatch.setattr(offline, "FINAL_WAIT_S", 0.2)
    tracker.start_parent("search study", {"budget": 2}, {"study": "study"})
    real, tracker.client = tracker.client, _Gone(tracker.client)
    _answering(monkeypatch, up=False)
    assert tracker.log_trial(0, {"quantize.mode": "none"}, {"accuracy": 0.9}, {}) is None
    tracker.end_parent("FINISHED")
    assert notes[-1].startswith(f"2 MLflow records of this search wait in {tracker.outbox.folder}")
    kinds = sorted(r["kind"] for _, r in tracker.outbox.pending())
    assert kinds == ["parent_end", "trial"]
    # the next start (the server answering) writes them: the run, its parent, ended
    later = _tracker(store)
    ((run,),) = _trial_runs(later).values()
    parent = later.client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED" and parent.info.run_name == "search study"
    assert later.outbox.count() == 0 and real is not None


# -- a real MLflow server, stopped and restarted under a running search ---------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """`mlflow server` on 127.0.0.1 (a SQLite store made from autoaccel's template)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        prepare_sqlite_store(f"sqlite:///{folder / 'server.db'}", "mlflow")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        cmd = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}"]
        cmd += ["--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"]
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 (the server keeps it)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # starts in 1/2
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, env=env)

    def wait(self, limit: float = 120) -> None:
        import requests

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError((self.folder / "server.log").read_text()[-2000:])

    def stop(self) -> None:
        """SIGKILL to the server and its workers (a crash, not a clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def server(tmp_path):
    srv = _Server(tmp_path)
    srv.start()
    try:
        srv.wait()
        yield srv
    finally:
        srv.stop()


@pytest.mark.chaos  # benchmarks/chaos.py injects this fault on every run
def test_a_tracking_server_killed_and_restarted_mid_search_costs_no_trial_record(server, tmp_path):
    runs, space = tmp_path / "runs", tmp_path / "space.yaml"
    space.write_text(FAST_SPACE)
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", "seed-mlp"]
    cmd += ["--space", str(space), "--budget", "4", "--runs-dir", str(runs), "--study", "w"]
    cmd += ["--measure-seconds", "0.03", "--tracking-uri", server.url]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    search = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while _complete(runs) < 1:
        assert search.poll() is None, search.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no trial finished"
        time.sleep(0.2)
    server.stop()
    kept = runs / outbox.FOLDER
    while not list(kept.glob("*.json")):  # down until a trial's record had to be kept
        assert search.poll() is None, search.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no record was kept while the server was down"
        time.sleep(0.2)
    server.start()  # back after its start-up time: the outage
    out, _ = search.communicate(timeout=600)
    said = " ".join(out.decode().split())  # the console wraps its lines
    assert search.returncode == 0, said[-3000:]
    assert "stopped answering" in said and "answers again: wrote the" in said
    assert not list((runs / outbox.FOLDER).glob("*.json"))

    client = MlflowClient(tracking_uri=server.url)
    exp = client.get_experiment_by_name("w").experiment_id
    trials = client.search_runs([exp], "tags.`autoaccel.role` = 'trial'")
    numbers = sorted(int(r.data.tags["trial"]) for r in trials)
    assert numbers == list(range(len(numbers)))  # one run per trial, none twice
    judged = [r for r in trials if not r.data.tags.get("duplicate_of")]
    assert len(judged) == 4  # the budget (a sampler's repeat of a judged recipe is free)
    assert all(r.info.status == "FINISHED" and "accuracy" in r.data.metrics for r in trials)
    (parent,) = client.search_runs([exp], "tags.`autoaccel.role` = 'study'")
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    logged = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert "recommendation.json" in logged


def _complete(runs: Path) -> int:
    db = runs / "optuna.db"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("select count(*) from trials where state='COMPLETE'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0
