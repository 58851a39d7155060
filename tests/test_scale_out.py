"""Workers sharing one study through a real PostgreSQL and a real MLflow tracking server.

The services come from `.ci/services.sh` (Debian's PostgreSQL, `mlflow server` backed by it,
both on 127.0.0.1): `.ci/run` starts them and exports AUTOACCEL_TEST_* for these tests. Run
outside CI, the module starts them itself when it can (PostgreSQL installed); it skips, with
the reason, only when it cannot. Under CI=true a missing service is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from test_workers import FAST_SPACE, SLOW_SPACE  # the same spaces as the local workers

from autoaccel.workers import counted as counted_toward

TESTS = Path(__file__).parent
ROOT = TESTS.parent
KEYS = ("AUTOACCEL_TEST_PG_URL", "AUTOACCEL_TEST_MLFLOW_URL")


@pytest.fixture(scope="module")
def services():
    if all(os.environ.get(k) for k in KEYS):
        yield {k: os.environ[k] for k in os.environ if k.startswith("AUTOACCEL_TEST_")}
        return
    # not under pytest's tmp folder: it is private to this user, and PostgreSQL runs as
    # the `postgres` user when the tests run as root
    folder = Path(tempfile.mkdtemp(prefix="autoaccel-services-"))
    script = ROOT / ".ci" / "services.sh"
    started = subprocess.run(
        ["bash", str(script), "start", str(folder)], capture_output=True, text=True
    )
    if started.returncode != 0:
        reason = (started.stderr.strip().splitlines() or ["no output"])[-1]
        message = f"PostgreSQL / MLflow server could not be started ({reason})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run these tests (.ci/run starts the services)")
        pytest.skip(message)
    found = {}
    for line in started.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        found[key] = value.strip("'")
    try:
        yield found
    finally:
        subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _worker(
    svc, teacher, tmp: Path, study: str, space: str, budget: int, name: str, tracking=True
):
    space_file = tmp / f"{name}.yaml"
    space_file.write_text(space)
    teacher(tmp / name)  # this machine's cache holds the trained teacher
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", "seed-mlp"]
    cmd += ["--space", str(space_file), "--budget", str(budget), "--study", study]
    cmd += ["--storage", svc["AUTOACCEL_TEST_PG_URL"], "--measure-seconds", "0.03"]
    cmd += ["--runs-dir", str(tmp / name)]  # a folder per worker, as on separate machines
    if tracking:
        cmd += ["--tracking-uri", svc["AUTOACCEL_TEST_MLFLOW_URL"]]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _study(svc, name: str) -> optuna.Study:
    """The study, read over connections closed after each use: a test that polls it every
    0.3 s must not pile up pooled connections past the server's max_connections."""
    from sqlalchemy.pool import NullPool

    storage = optuna.storages.RDBStorage(
        svc["AUTOACCEL_TEST_PG_URL"], engine_kwargs={"poolclass": NullPool}
    )
    return optuna.load_study(study_name=name, storage=storage)


def _runs(svc, study: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=svc["AUTOACCEL_TEST_MLFLOW_URL"])
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("autoaccel.role") == "study"]
    children = [r for r in runs if r.data.tags.get("autoaccel.role") == "trial"]
    return parents, children


def test_three_workers_on_postgres_and_an_mlflow_server_finish_budget_12(
    services, tmp_path, cache_teacher
):
    study = f"scale-{uuid.uuid4().hex[:8]}"
    workers = [
        _worker(services, cache_teacher, tmp_path, study, FAST_SPACE, 12, f"w{i}")
        for i in range(3)
    ]
    for w in workers:
        _, err = w.communicate(timeout=900)
        assert w.returncode == 0, err.decode()[-3000:]
    trials = _study(services, study).trials
    assert counted_toward(trials, 12) == 12  # repeats of a judged recipe free, up to 12
    counted = [t for t in trials if "surplus" not in t.user_attrs]
    judged = [t for t in counted if "duplicate_of" not in t.user_attrs]
    assert judged and all(t.state.name == "COMPLETE" for t in judged)
    assert all(t.state.name == "PRUNED" for t in counted if t not in judged)
    assert sorted({t.number for t in counted}) == sorted(t.number for t in counted)
    assert not any(t.state.name == "RUNNING" for t in trials)
    hosts = {t.user_attrs["worker"]["host"] for t in counted}
    assert all("cpu" in t.user_attrs["worker"] for t in counted)  # which machine ran it
    assert len(hosts) == 1  # one machine here: measured figures keep the plain label

    parents, children = _runs(services, study)
    assert len(parents) == 3 and all(p.info.status == "FINISHED" for p in parents)
    parent_ids = {p.info.run_id for p in parents}
    assert len(children) == len(counted)
    assert all(c.data.tags["mlflow.parentRunId"] in parent_ids for c in children)
    assert sorted(int(c.data.tags["trial"]) for c in children) == sorted(t.number for t in counted)
    by_run = {c.info.run_id for c in children}
    assert {t.user_attrs["mlflow_run_id"] for t in counted} == by_run

    # any machine builds the report from the shared study
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "report", "--study", study]
        + ["--storage", services["AUTOACCEL_TEST_PG_URL"], "--out", str(out)]
        + ["--tracking-uri", services["AUTOACCEL_TEST_MLFLOW_URL"]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "seed-mlp" in (out / "report.md").read_text()


def test_a_worker_killed_mid_trial_is_recovered_by_another(services, tmp_path, cache_teacher):
    study = f"kill-{uuid.uuid4().hex[:8]}"
    first = _worker(services, cache_teacher, tmp_path, study, SLOW_SPACE, 2, "a")
    deadline = time.time() + 300
    while True:
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no trial started"
        try:
            running = _study(services, study).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the study does not exist yet
            running = []
        if any("worker" in t.user_attrs for t in running):
            break
        time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = _worker(services, cache_teacher, tmp_path, study, SLOW_SPACE, 2, "b")
    _, err = second.communicate(timeout=900)
    assert second.returncode == 0, err.decode()[-3000:]
    trials = _study(services, study).trials
    assert [t.state.name for t in trials][0] == "FAIL" and len(trials) == 2
    assert "stopped while running this trial" in trials[0].user_attrs["fail_reason"]
    parents, children = _runs(services, study)
    assert sorted(p.info.status for p in parents) == ["FINISHED", "KILLED"]
    assert sorted(int(c.data.tags["trial"]) for c in children) == [0, 1]


@pytest.mark.chaos  # benchmarks/chaos.py injects this fault on every run
def test_the_database_going_away_mid_search_is_retried(services, tmp_path, cache_teacher):
    """PostgreSQL stopped for a few seconds while a search runs (MLflow on local SQLite
    here, so only the study store goes away): the worker retries and finishes the budget."""
    pg_ctl, data = services.get("AUTOACCEL_TEST_PG_CTL"), services.get("AUTOACCEL_TEST_PG_DATA")
    if not (pg_ctl and data):
        pytest.skip("the PostgreSQL server is not ours to stop (no AUTOACCEL_TEST_PG_CTL)")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    study = f"retry-{uuid.uuid4().hex[:8]}"
    worker = _worker(services, cache_teacher, tmp_path, study, FAST_SPACE, 8, "r", tracking=False)
    deadline = time.time() + 300
    while True:
        assert worker.poll() is None, worker.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no trial finished"
        try:
            if _study(services, study).get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
                break
        except KeyError:
            pass
        time.sleep(0.3)
    said: list[str] = []  # the worker's stderr, read as it comes
    reader = threading.Thread(target=lambda: said.extend(iter(worker.stderr.readline, b"")))
    reader.start()
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([*as_pg, pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], **quiet)
    time.sleep(4)
    down_until = time.time() + 45  # down until the worker met the outage (a quick one can
    while time.time() < down_until and worker.poll() is None:  # pass between its queries)
        if any(b"study store connection lost" in line for line in said):
            break
        time.sleep(0.3)
    # its address and port are in its postgresql.conf (.ci/services.sh)
    start = [*as_pg, pg_ctl, "-D", data, "-l", f"{data}/server.log", "-w", "start"]
    subprocess.run(start, **quiet)
    worker.wait(timeout=900)
    reader.join(timeout=60)
    err = b"".join(said)
    assert worker.returncode == 0, err.decode()[-3000:]
    assert "study store connection lost" in err.decode()  # the outage was met, and retried
    trials = _study(services, study).trials
    assert counted_toward(trials, 8) == 8 and not any(t.state.name == "RUNNING" for t in trials)


def test_a_wrong_password_is_one_line_and_exit_2(services, tmp_path):
    url = services["AUTOACCEL_TEST_PG_URL"].replace(":autoaccel-ci@", ":wrong@")
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", "seed-mlp"]
    cmd += ["--storage", url, "--budget", "1", "--runs-dir", str(tmp_path / "runs")]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "password authentication failed" in lines[0]
    assert "wrong" not in lines[0]  # the password is never printed
    assert time.monotonic() - t0 < 60  # refused at once, not retried
    assert not (tmp_path / "runs").exists()
