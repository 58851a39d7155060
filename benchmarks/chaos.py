"""Chaos check: kill a search with SIGKILL at chosen moments of its life, resume it each time,
and verify that nothing is lost, nothing counted twice, and every record agrees with the others.

    .venv/bin/python benchmarks/chaos.py [--kills 20] [--budget 150] [--seed 0] \\
        [--workload digits-cnn] [--runs-dir /tmp/autoaccel-chaos] [--json PATH] \\
        [--servers-budget 12] [--pg-down-s 5] [--no-servers] [--no-full-disk]

Every round starts `autoaccel search` (the same command every time) and kills it with SIGKILL
at a moment aimed at one part of its life:

- `store`: while a new Optuna or MLflow SQLite store is being built (MLflow's schema is
  ~1,700 statements over several seconds: the kill lands inside it);
- `start-up`: a random moment before the start's first trial (workload, calibration, stores,
  baseline);
- `trial`: a random moment after a trial began (building, training, timing, MLflow logging,
  storing the result);
- `final`: just after the budget is reached (frontier, report, confirmation, last MLflow
  writes).

At least a third of the kills aim before the first trial, the first ones at store creation
while the folder is still empty. Each kill records the phase it really landed in (read from
the stores at that moment) and whether the worker process it left behind exited by itself. A
start that refuses to run (an exit code other than 0 before its kill) fails a check. Then the
same command runs to the end and, from the stores alone:

- the study has exactly `--budget` finished trials (surplus ones aside) and none RUNNING;
- every trial is COMPLETE, or FAIL / PRUNED with a `fail_reason` (or an early stop);
- MLflow: one nested run per finished trial (none twice, none missing), each ended with the
  status its trial's state implies, no parent run left RUNNING;
- the frontier in recommendation.json equals the one recomputed from the stored trials.

A full disk (`--full-disk`, default on; needs root to mount a tmpfs, else reported as not
run): a small search on a 256 MiB tmpfs is completed, the disk filled, the same command with a
larger budget must exit 2 with one line naming the folder; both stores must pass SQLite's
integrity check with no trial RUNNING; with the space freed the same command must finish.

Servers that come and go (`--servers`, default on; reported as not run where PostgreSQL
cannot be started): PostgreSQL and an MLflow tracking server on 127.0.0.1, started by the
benchmark (`.ci/services.sh`); a search on them has its tracking server killed and restarted,
then PostgreSQL restarted, mid-search, and must pass the same checks from the servers, with
its outbox empty and both outages met; then PostgreSQL stays down past the search's retries,
which must end in one line with the frontier so far written, and the same command must
finish once it is back (`benchmarks/chaos_servers.py`).

Every check is reported pass / FAIL (never a crash of the benchmark itself). Writes
benchmarks/results/chaos.{json,md}, or only the JSON to `--json PATH`. Exit code 1 when any
check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos_servers  # noqa: E402
from _common import write  # noqa: E402

STATUS_OF = {"COMPLETE": {"FINISHED"}, "FAIL": {"FAILED"}, "PRUNED": {"FAILED", "KILLED"}}
BEFORE_FIRST_TRIAL = ("before the stores", "store creation", "start-up")
STORES = ("optuna.db", "mlflow.db")


def _command(args, runs: Path, study: str, budget: int, space: str) -> list[str]:
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", args.workload]
    cmd += ["--space", space, "--budget", str(budget), "--study", study]
    cmd += ["--runs-dir", str(runs), "--measure-seconds", str(args.measure_seconds)]
    cmd += ["--seed", str(args.seed)]
    return cmd


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _count(runs: Path, where: str) -> int:
    """Trials in the study store matching `where` (read-only: the benchmark must not lock
    the store); 0 while there is none."""
    db = runs / "optuna.db"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    try:
        return con.execute(f"select count(*) from trials {where}").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def _finished(runs: Path) -> int:
    """Finished trials the budget counts: a sampler's repeat of a judged recipe is free."""
    repeats = "select trial_id from trial_user_attributes where key = 'duplicate_of'"
    return _count(
        runs, f"where state in ('COMPLETE','FAIL','PRUNED') and trial_id not in ({repeats})"
    )


def _building(runs: Path, store: str = "*", stale: frozenset[str] = frozenset()) -> bool:
    """Whether a store is being built now (`stale`: what killed starts left, until the next
    start clears it)."""
    return any(p.name not in stale for p in runs.glob(f".{store}.db.building-*"))


def _phase(runs: Path, trials_before: int, budget: int, stale: frozenset[str]) -> str:
    """What the search was doing when it was killed, as the stores show it."""
    if _building(runs, stale=stale):
        return "store creation"
    if not ((runs / "optuna.db").exists() and (runs / "mlflow.db").exists()):
        return "before the stores"
    if _count(runs, "") == trials_before:
        return "start-up"
    if _finished(runs) >= budget:
        return "final write"
    return "trial"


def _plan(kills: int, rng: random.Random) -> list[str]:
    """The aim of each kill: store creation first (the folder is empty), at least a third
    before the first trial in all, one at the final write, the rest in trials."""
    early = math.ceil(kills / 3) + (1 if kills >= 6 else 0)
    store = min(3, early)
    final = 1 if kills >= 6 else 0
    middle = ["start-up"] * (early - store) + ["trial"] * (kills - early - final)
    rng.shuffle(middle)
    return ["store"] * store + middle + ["final"] * final


def _round(args, aim: str, n: int, est: dict, rng: random.Random, log) -> dict:
    """Start the search and kill it at a moment aimed at `aim` (unless it ends first)."""
    runs = args.runs_dir
    trials_before, finished_before = _count(runs, ""), _finished(runs)
    stale = frozenset(p.name for p in runs.glob(".*.db.building-*"))
    if finished_before >= args.budget and aim in ("trial", "final"):
        aim = "start-up"  # no trial left to run: the start is all there is
    if aim == "store" and all((runs / f).exists() for f in STORES):
        aim = "start-up"  # both stores are whole: nothing will be built
    cmd = _command(args, runs, "chaos", args.budget, args.space)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    workers: set[int] = set()
    kill_at: float | None = None
    first_trial: float | None = None
    now = 0.0
    store = "optuna" if n == 0 else "mlflow"  # the first store kill aims at Optuna's
    while proc.poll() is None:
        now = time.monotonic() - t0
        workers.update(_children(proc.pid))
        if first_trial is None and _count(runs, "") > trials_before:
            first_trial = now
            est["startup_s"] = now
        if kill_at is None:
            if aim == "store" and _building(runs, store, stale):
                # inside the build: Optuna's takes ~0.4 s, MLflow's 2-4 s on 2 cores
                kill_at = now + rng.uniform(0, 0.3 if store == "optuna" else 1.5)
            elif aim == "store" and now > 90:  # no store is being built any more
                kill_at = now
            elif aim == "start-up":
                kill_at = rng.uniform(0.5, max(1.0, 0.95 * est["startup_s"]))
            elif aim == "trial" and first_trial is not None:
                kill_at = now + rng.uniform(0, args.max_wait)
            elif aim == "final" and _finished(runs) >= args.budget:
                kill_at = now + rng.uniform(0, 3.0)
        if kill_at is not None and now >= kill_at:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        return {"aim": aim, "killed": False, "rc": proc.returncode, "after_s": round(now, 2)}
    phase = _phase(runs, trials_before, args.budget, stale)
    workers.update(_children(proc.pid))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {
        "aim": aim,
        "killed": True,
        "phase": phase,
        "after_s": round(time.monotonic() - t0, 2),
        "trials_before": finished_before,
        "trials_after": _finished(runs),
        "worker_processes": len(workers),
        "orphans_left": sum(_alive(p) for p in workers),
    }


def _verify(args) -> dict:
    """Every check, from the stores alone. A store that cannot be read fails the checks
    that need it (with the reason); the benchmark itself never stops on it."""
    try:
        return _checks(args)
    except Exception as exc:
        names = ("budget_exact", "none_running", "one_mlflow_run_per_trial")
        return {
            "checks": dict.fromkeys(("stores_readable", *names), False),
            "check_errors": {"stores_readable": f"{type(exc).__name__}: {exc}"},
            "trials": 0,
            "states": {},
            "parent_runs": {},
            "frontier": [],
        }


def _checks(args) -> dict:
    import optuna

    runs = args.runs_dir
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="chaos", storage=f"sqlite:///{runs / 'optuna.db'}")
    con = sqlite3.connect(runs / "mlflow.db")
    rows = con.execute(
        "select r.status, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
        "join tags role on role.run_uuid = r.run_uuid and role.key = 'autoaccel.role' "
        "and role.value = 'trial' where t.key = 'trial'"
    ).fetchall()
    parents = sorted(
        s
        for (s,) in con.execute(
            "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'autoaccel.role' and t.value = 'study'"
        )
    )
    con.close()
    return judge(study, args.budget, rows, parents, runs / "chaos" / "recommendation.json")


def judge(study, budget: int, rows: list, parents: list[str], rec_file: Path) -> dict:
    """The checks over one study and its MLflow runs (`rows`: (status, trial tag) of every
    trial run; `parents`: the parent runs' statuses); `rec_file` is the search's
    recommendation.json."""
    from autoaccel.frontier import pareto, points

    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if "surplus" not in t.user_attrs]
    finished = [t for t in counted if t.state.name != "RUNNING"]
    running = [t.number for t in trials if t.state.name == "RUNNING"]
    unexplained = [
        t.number
        for t in counted
        if t.state.name in ("FAIL", "PRUNED")
        and not (t.user_attrs.get("fail_reason") or t.user_attrs.get("early_stopped"))
    ]
    by_trial: dict[int, list[str]] = {}
    for status, number in rows:
        by_trial.setdefault(int(number), []).append(status)
    twice = sorted(n for n, s in by_trial.items() if len(s) > 1)
    missing = sorted(t.number for t in finished if t.number not in by_trial)
    orphan_runs = sorted(set(by_trial) - {t.number for t in counted})
    wrong = sorted(
        t.number
        for t in finished
        if t.number in by_trial and not set(by_trial[t.number]) <= STATUS_OF[t.state.name]
    )
    errors: dict[str, str] = {}
    try:  # written by the search's last step: missing when the search never ended well
        rec = json.loads(rec_file.read_text())
        keys = ("trial", "accuracy", "objective_ms")
        written = [{k: p[k] for k in keys} for p in rec["frontier"]]
        recomputed = [
            {"trial": p.trial, "accuracy": p.accuracy, "objective_ms": p.objective_ms}
            for p in pareto(study, points(study, study.user_attrs["baseline"]))
        ]
    except Exception as exc:
        errors["frontier_equals_recomputed"] = f"{type(exc).__name__}: {exc}"
        written, recomputed = [], None
    checks = {
        "budget_exact": len(finished) == budget,
        "none_running": not running,
        "every_failure_has_a_reason": not unexplained,
        "one_mlflow_run_per_trial": not twice and not missing and not orphan_runs,
        "mlflow_status_matches_optuna": not wrong,
        "no_parent_run_left_running": "RUNNING" not in parents,
        "frontier_equals_recomputed": written == recomputed,
    }
    return {
        "checks": checks,
        "check_errors": errors,
        "trials": len(finished),
        "surplus": len(trials) - len(counted),
        "states": {s: sum(t.state.name == s for t in counted) for s in STATUS_OF},
        "running": running,
        "unexplained_failures": unexplained,
        "mlflow_runs_twice": twice,
        "mlflow_runs_missing": missing,
        "mlflow_runs_without_trial": orphan_runs,
        "mlflow_wrong_status": wrong,
        "parent_runs": {s: parents.count(s) for s in sorted(set(parents))},
        "frontier": written,
        "failure_reasons": sorted(
            {
                t.user_attrs.get("fail_reason", "")[:90]
                for t in finished
                if t.state.name != "COMPLETE"
            }
        ),
    }


def _full_disk(args, log) -> dict:
    """A small search on a 256 MiB tmpfs: done, disk filled, the same command with a larger
    budget must stop in one line naming the folder, nothing corrupted; space freed, it ends."""
    mount = args.runs_dir.parent / f"{args.runs_dir.name}-small-disk"
    mount.mkdir(exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)]
    mounted = subprocess.run(cmd, capture_output=True, text=True)
    if mounted.returncode:
        return {"not_run": f"cannot mount a tmpfs ({mounted.stderr.strip()}): run as root"}
    runs, out = mount / "runs", {}
    seeded = args.runs_dir / "calibration" / "cpu-local.json"  # the main search's, not again
    env = {**os.environ, "AUTOACCEL_CALIBRATION": str(seeded)} if seeded.exists() else None
    try:
        cmd = _command(args, runs, "disk", 2, "quick")
        done = subprocess.run(cmd, stdout=log, stderr=log, env=env)
        out["first_run_rc"] = done.returncode
        filler = mount / "filler"
        with open(filler, "wb", buffering=0) as f:  # unbuffered: the last write fails
            for size in (1 << 20, 4096, 1):
                try:
                    while True:
                        f.write(b"\0" * size)
                except OSError:
                    pass
        cmd = _command(args, runs, "disk", 3, "quick")
        full = subprocess.run(cmd, capture_output=True, text=True, env=env)
        log.write(full.stdout.encode() + full.stderr.encode())
        lines = full.stderr.strip().splitlines()
        out["full_rc"], out["full_error"] = full.returncode, lines[-1] if lines else ""
        out["full_traceback"] = "Traceback" in full.stderr
        filler.unlink()  # before checking: SQLite cannot even open a WAL store on a full disk
        out["full_integrity"] = _integrity(runs)
        again = subprocess.run(cmd, stdout=log, stderr=log, env=env)
        out["again_rc"] = again.returncode
        out["again_finished"] = _finished(runs)
        out["again_integrity"] = _integrity(runs)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    return out


def _integrity(runs: Path) -> dict:
    """SQLite's integrity check of both stores, and the trials left RUNNING."""
    found = {}
    for db in ("optuna.db", "mlflow.db"):
        try:
            con = sqlite3.connect(runs / db)
            found[db] = con.execute("pragma integrity_check").fetchone()[0]
            con.close()
        except sqlite3.Error as exc:
            found[db] = str(exc)
    found["running"] = _count(runs, "where state = 'RUNNING'")
    return found


def _disk_checks(step: dict, runs_dir: Path) -> dict[str, bool]:
    if "not_run" in step:
        return {}
    whole = lambda i: i.get("optuna.db") == i.get("mlflow.db") == "ok"  # noqa: E731
    line = step.get("full_error", "")
    return {
        "full_disk_one_line_exit_2_naming_the_folder": step.get("full_rc") == 2
        and line.startswith("error: ")
        and f"{runs_dir.name}-small-disk/runs" in line
        and not step.get("full_traceback"),
        "full_disk_nothing_corrupted": whole(step.get("full_integrity", {}))
        and step["full_integrity"].get("running") == 0,
        "full_disk_same_command_continues": step.get("again_rc") == 0
        and step.get("again_finished") == 3
        and whole(step.get("again_integrity", {})),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--workload", default="digits-cnn")
    parser.add_argument("--space", default="default")
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/autoaccel-chaos"))
    parser.add_argument("--max-wait", type=float, default=12.0, help="s after a trial began")
    parser.add_argument("--measure-seconds", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-full-disk", dest="full_disk", action="store_false")
    parser.add_argument("--no-servers", dest="servers", action="store_false")
    parser.add_argument("--servers-budget", type=int, default=12)
    parser.add_argument("--pg-down-s", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="write the result here, not results/")
    args = parser.parse_args()
    args.runs_dir = args.runs_dir.resolve()

    shutil.rmtree(args.runs_dir, ignore_errors=True)
    args.runs_dir.mkdir(parents=True)
    rng = random.Random(args.seed)
    plan = _plan(args.kills, rng)
    rounds: list[dict] = []
    est = {"startup_s": 15.0}  # updated from each start that reaches its first trial
    t0 = time.monotonic()
    crashed = None
    disk: dict = {"not_run": "--no-full-disk"}
    servers: dict = {"not_run": "--no-servers"}
    with open(args.runs_dir.parent / f"{args.runs_dir.name}.log", "wb") as log:
        try:
            for n, aim in enumerate(plan):
                for _ in range(3):  # a start that ends before its kill: try that aim again
                    r = _round(args, aim, sum(x["aim"] == "store" for x in rounds), est, rng, log)
                    rounds.append(r)
                    print(f"round {len(rounds)} (kill {n + 1}/{len(plan)}): {r}", flush=True)
                    if r["killed"] or r["rc"] != 0:
                        break
            cmd = _command(args, args.runs_dir, "chaos", args.budget, args.space)
            final = subprocess.run(cmd, stdout=log, stderr=log).returncode
            if args.full_disk:
                disk = _full_disk(args, log)
            if args.servers:
                servers = chaos_servers.run(args, log, _command, judge)
        except Exception:
            crashed, final = traceback.format_exc(), None
    wall = time.monotonic() - t0
    kills = [r for r in rounds if r["killed"]]
    early = [r for r in kills if r["phase"] in BEFORE_FIRST_TRIAL]
    result = _verify(args)
    checks = result["checks"]
    checks["all_kills_done"] = len(kills) >= args.kills
    checks["a_third_of_kills_before_the_first_trial"] = 3 * len(early) >= len(kills) > 0
    checks["some_kills_inside_store_creation"] = any(r["phase"] == "store creation" for r in kills)
    checks["no_start_refused"] = all(r["killed"] or r["rc"] == 0 for r in rounds)
    checks["final_run_succeeded"] = final == 0
    checks["no_orphan_worker_processes"] = not any(r["orphans_left"] for r in kills)
    checks["benchmark_ran_through"] = crashed is None
    checks.update(_disk_checks(disk, args.runs_dir))
    checks.update(servers.get("checks", {}))
    ok = all(checks.values())
    phases = {p: sum(r["phase"] == p for r in kills) for p in sorted({r["phase"] for r in kills})}
    payload = {
        "command": " ".join(_command(args, args.runs_dir, "chaos", args.budget, args.space)),
        "kills": len(kills),
        "kill_phases": phases,
        "rounds": rounds,
        "full_disk": disk,
        "servers": servers,
        "crash": crashed,
        "wall_s": round(wall, 1),
        "passed": ok,
        **result,
    }
    table = [[name, "pass" if good else "FAIL"] for name, good in checks.items()]
    if "not_run" in disk:
        table.append(["full disk", f"not run: {disk['not_run']}"])
    if "not_run" in servers:
        table.append(["servers", f"not run: {servers['not_run']}"])
    table += [
        ["kills (SIGKILL)", str(len(kills))],
        ["kills by phase", ", ".join(f"{k} {v}" for k, v in phases.items())],
        ["finished trials / budget", f"{result['trials']} / {args.budget}"],
        ["states", ", ".join(f"{k} {v}" for k, v in result["states"].items())],
        ["MLflow parent runs", ", ".join(f"{k} {v}" for k, v in result["parent_runs"].items())],
        ["frontier points", str(len(result["frontier"]))],
        ["wall time", f"{wall:.0f} s"],
    ]
    if "trials" in servers:
        events = servers["events"]
        table += [
            ["servers: finished trials / budget", f"{servers['trials']} / {servers['budget']}"],
            ["servers: states", ", ".join(f"{k} {v}" for k, v in servers["states"].items())],
            ["servers: tracking server down", f"{events.get('tracking_server_down_s')} s"],
            ["servers: records kept while down", str(events.get("records_kept_while_down"))],
            [
                "servers: PostgreSQL down / stayed down",
                f"{events.get('postgres_down_s')} s / "
                f"{events.get('postgres_stayed_down_s')} s (exit {events.get('stays_down_rc')})",
            ],
            ["servers: search wall time", f"{events.get('search_s')} s"],
        ]
    if args.json:  # and its table beside it
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        rows = "\n".join(f"| {a} | {b} |" for a, b in table)
        args.json.with_suffix(".md").write_text(
            f"# {args.json.stem}\n\n| check | result |\n|---|---|\n{rows}\n"
        )
        print(rows)
    else:
        write("chaos", payload, table, ["check", "result"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
