"""The servers phase of `benchmarks/chaos.py`: servers that come and go under a search.

PostgreSQL and an MLflow tracking server backed by it are started on 127.0.0.1 by
`.ci/services.sh` (in a throw-away folder beside the runs folder). One search runs on them
(`--storage postgresql://...`, `--tracking-uri http://...`). After its first finished trial
PostgreSQL is stopped (the MLflow server, backed by it, fails meanwhile too) for at least
`--pg-down-s` seconds and until the worker has met the outage (at most 40 s, inside the
worker's minute of retries), then started again; one trial later the tracking server is
killed (SIGKILL to it and its workers) and started again once a trial record waits in the
outbox. The search must end by itself with exit 0 (when the server came back only after the
search ended, the same command once more writes what waited, as a next start does), and
from the servers alone: exactly the budget, none RUNNING, one MLflow run per trial with the
status its state implies, no parent left RUNNING, the frontier equal to the one recomputed
from the study, the outbox empty, and both outages met (the search's own lines say so).
Then the same study, budget raised by `STAYS_DOWN_TRIALS`: PostgreSQL stopped after one new
trial stays down until the search ends by itself (exit 2, one line naming where the
frontier so far is, written); PostgreSQL back, the same command finishes the budget.
Never raises: a phase that cannot run says why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / ".ci" / "services.sh"
STUDY = "chaos-servers"


def run(args, log, command: Callable, judge: Callable) -> dict:
    """Start the services, run the phase, stop them; the phase's findings and checks."""
    folder = args.runs_dir.parent / f"{args.runs_dir.name}-services"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        started = subprocess.run(
            ["bash", str(SERVICES), "start", str(folder)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except Exception as exc:
        return {"not_run": f"the services did not start ({type(exc).__name__}: {exc})"}
    if started.returncode != 0:
        reason = (started.stderr.strip().splitlines() or ["no output"])[-1]
        return {"not_run": f"PostgreSQL / the MLflow server did not start ({reason})"}
    env = {}
    for line in started.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    try:
        return _phase(args, log, command, judge, folder, env)
    except Exception:
        return {"error": traceback.format_exc(), "checks": {"servers_phase_ran_through": False}}
    finally:
        subprocess.run(["bash", str(SERVICES), "stop", str(folder)], capture_output=True)
        _kill_tree(_pid(folder))


def _phase(args, log, command, judge, folder: Path, services: dict[str, str]) -> dict:
    pg, ml = services["AUTOACCEL_TEST_PG_URL"], services["AUTOACCEL_TEST_MLFLOW_URL"]
    runs = args.runs_dir.parent / f"{args.runs_dir.name}-servers"
    shutil.rmtree(runs, ignore_errors=True)
    cmd = command(args, runs, STUDY, args.servers_budget, args.space)
    cmd += ["--storage", pg, "--tracking-uri", ml]
    out = folder / "search.log"
    t0 = time.monotonic()
    seeded = args.runs_dir / "calibration" / "cpu-local.json"  # the main search's, not again
    env = {**os.environ, "AUTOACCEL_CALIBRATION": str(seeded)} if seeded.exists() else None
    with open(out, "wb") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    events: dict = {}
    counter = _Finished(pg)
    outbox = runs / "mlflow-outbox"
    said = lambda words: words in " ".join(out.read_text(errors="replace").split())  # noqa: E731
    try:
        if _wait(proc, lambda: counter() >= 1, 900):
            # PostgreSQL first (a trial still runs), down until the worker meets the outage
            events["postgres_stopped_after_trials"] = counter()
            _pg_ctl(services, "stop")
            down = time.monotonic()
            while time.monotonic() - down < args.pg_down_s or (
                time.monotonic() - down < 40 and not said("study store connection lost")
            ):
                time.sleep(0.3)
            _pg_ctl(services, "start")
            events["postgres_down_s"] = round(time.monotonic() - down, 1)
        goal = events.get("postgres_stopped_after_trials", 0) + 1
        if _wait(proc, lambda: counter() >= goal, 900):
            events["tracking_server_killed_after_trials"] = counter()
            _kill_tree(_pid(folder))
            down = time.monotonic()
            _wait(proc, lambda: any(outbox.glob("*.json")), 300)  # a record waits
            events["records_kept_while_down"] = len(list(outbox.glob("*.json")))
            _start_mlflow(folder, pg, ml)
            events["tracking_server_down_s"] = round(time.monotonic() - down, 1)
        rc = proc.wait(timeout=1800)
        events["records_left_at_the_end"] = len(list(outbox.glob("*.json")))
        if events["records_left_at_the_end"]:  # the server came back after the search ended:
            with open(out, "ab") as handle:  # the next start writes them
                again = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
            events["next_start_rc"] = again.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events["search_s"] = round(time.monotonic() - t0, 1)
    budget = args.servers_budget + STAYS_DOWN_TRIALS
    rec_file = runs / STUDY / "recommendation.json"
    down = _stays_down(command(args, runs, STUDY, budget, args.space) + cmd[-4:], env, services)
    events.update(down.pop("events"))
    log.write(out.read_bytes())
    study, rows, parents = _stores(pg, ml)
    result = judge(study, budget, rows, parents, rec_file)
    checks = {f"servers_{k}": v for k, v in result.pop("checks").items()}
    checks.update(
        servers_search_exit_0=rc == 0 and events.get("next_start_rc", 0) == 0,
        servers_postgres_restarted_mid_search="postgres_down_s" in events,
        servers_postgres_outage_met_and_retried=said("study store connection lost"),
        servers_tracking_server_restarted_mid_search="tracking_server_down_s" in events,
        servers_tracking_outage_met_and_records_written=said("stopped answering")
        and (said("answers again") or said("MLflow records kept in")),
        servers_outbox_empty=not list(outbox.glob("*.json")),
        **down,
        servers_phase_ran_through=True,
    )
    return {"checks": checks, "events": events, "rc": rc, "budget": budget, **result}


STAYS_DOWN_TRIALS = 3
"""Trials added to the study by the step where PostgreSQL stays down past the retries."""


def _stays_down(cmd: list[str], env: dict | None, services: dict[str, str]) -> dict:
    """The same study with a larger budget; after one new trial PostgreSQL stops and stays
    down until the search has ended by itself: it must exit 2 in one line that says where
    the frontier so far is, having written it (the study folder's recommendation says
    why it stopped); then, PostgreSQL back, the same command must finish the budget."""
    import json

    runs = Path(cmd[cmd.index("--runs-dir") + 1])
    counter = _Finished(services["AUTOACCEL_TEST_PG_URL"])
    before = counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    events: dict = {}
    try:
        if _wait(proc, lambda: counter() > before, 900):
            _pg_ctl(services, "stop")
            down = time.monotonic()
            err = proc.communicate(timeout=600)[1].decode(errors="replace")
            events["postgres_stayed_down_s"] = round(time.monotonic() - down, 1)
        else:
            err = proc.communicate(timeout=600)[1].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            _pg_ctl(services, "start")
        except subprocess.CalledProcessError:
            pass  # it was never stopped
    last = (err.strip().splitlines() or [""])[-1]
    try:
        stopped = json.loads((runs / STUDY / "recommendation.json").read_text())
    except (OSError, ValueError):
        stopped = {}
    events["stays_down_rc"], events["stays_down_last_line"] = proc.returncode, last[:300]
    again = subprocess.run(cmd, capture_output=True, env=env, timeout=1800)
    events["after_stays_down_rc"] = again.returncode
    return {
        "events": events,
        "servers_stays_down_exit_2_one_line_naming_the_frontier": proc.returncode == 2
        and last.startswith("error:")
        and "stopped answering" in last
        and "the frontier so far is in" in last,
        "servers_stays_down_frontier_so_far_written": stopped.get("status") == "FAILED"
        and "stopped answering" in stopped.get("stopped_by", ""),
        "servers_stays_down_same_command_continues": again.returncode == 0,
    }


def _stores(pg: str, ml: str) -> tuple:
    """(the study, every trial run's (status, trial), the parent runs' statuses)."""
    import optuna
    from mlflow.tracking import MlflowClient
    from sqlalchemy.pool import NullPool

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(pg, engine_kwargs={"poolclass": NullPool})
    study = optuna.load_study(study_name=STUDY, storage=storage)
    client = MlflowClient(tracking_uri=ml)
    exp = client.get_experiment_by_name(STUDY).experiment_id
    runs = client.search_runs([exp], max_results=5000)
    role = lambda r: r.data.tags.get("autoaccel.role")  # noqa: E731
    rows = [(r.info.status, r.data.tags["trial"]) for r in runs if role(r) == "trial"]
    parents = sorted(r.info.status for r in runs if role(r) == "study")
    return study, rows, parents


class _Finished:
    """The study's finished trials, read over a connection closed after each use (the last
    figure while PostgreSQL is down)."""

    def __init__(self, url: str) -> None:
        self.url, self.last = url, 0

    def __call__(self) -> int:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        engine = sqlalchemy.create_engine(self.url, poolclass=NullPool)
        query = sqlalchemy.text(
            "select count(*) from trials t join studies s on s.study_id = t.study_id "
            "where s.study_name = :name and t.state in ('COMPLETE', 'FAIL', 'PRUNED')"
        )
        try:
            with engine.connect() as con:
                self.last = con.execute(query, {"name": STUDY}).scalar_one()
        except Exception:
            pass  # not created yet, or the server is down: the last figure
        finally:
            engine.dispose()
        return self.last


def _wait(proc: subprocess.Popen, done: Callable[[], bool], limit: float) -> bool:
    """Poll `done` while the search runs; False when it ended first or `limit` passed."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.3)
    return False


def _pid(folder: Path) -> int | None:
    try:
        return int((folder / "mlflow.pid").read_text())
    except (OSError, ValueError):
        return None


def _kill_tree(pid: int | None) -> None:
    """SIGKILL a process and all its descendants (the MLflow server's workers)."""
    if pid is None:
        return
    todo, found = [pid], []
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    for p in found:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def _start_mlflow(folder: Path, pg: str, ml: str) -> None:
    """The tracking server again, as `.ci/services.sh` started it (same port and stores)."""
    import requests

    port = ml.rsplit(":", 1)[1]
    backend = pg.rsplit("/", 1)[0] + "/mlflow"
    cmd = [str(ROOT / ".venv" / "bin" / "mlflow"), "server", "--host", "127.0.0.1"]
    cmd += ["--port", port, "--backend-store-uri", backend]
    cmd += ["--artifacts-destination", str(folder / "artifacts"), "--workers", "1"]
    with open(folder / "mlflow.log", "ab") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    (folder / "mlflow.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{ml}/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)


def _pg_ctl(env: dict[str, str], action: str) -> None:
    data = env["AUTOACCEL_TEST_PG_DATA"]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    cmd = [*as_pg, env["AUTOACCEL_TEST_PG_CTL"], "-D", data, "-w"]
    cmd += ["-m", "fast", "stop"] if action == "stop" else ["-l", f"{data}/server.log", "start"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
