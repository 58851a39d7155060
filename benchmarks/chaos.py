"""Chaos check: kill a search with SIGKILL at random moments, resume it each time, and verify
that nothing is lost, nothing counted twice, and every record agrees with every other.

    .venv/bin/python benchmarks/chaos.py [--kills 10] [--budget 150] [--workload digits-cnn]

Each round starts `autoaccel search` (same command every time), waits a random 2-20 s (so the
kill lands anywhere: start-up, baseline, building, training, timing in the candidate worker,
MLflow logging, writing the study folder), and kills the search process with SIGKILL; then it
checks that the candidate worker process it left behind exits by itself. After `--kills`
kills, the same command runs to the end. Then, from the stores alone:

- the study has exactly `--budget` finished trials (surplus ones aside) and none RUNNING;
- every trial is COMPLETE, or FAIL / PRUNED with a `fail_reason` (or an early stop);
- MLflow: one nested run per finished trial (matching trial numbers, none twice), each
  ended with the status its trial's state implies (COMPLETE: FINISHED; FAIL: FAILED;
  PRUNED: FAILED or KILLED), every parent run ended, none RUNNING;
- the frontier in recommendation.json equals the one recomputed from the stored trials.

Prints a table and writes benchmarks/results/chaos.json and .md. Exit code 1 when any check
fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

STATUS_OF = {"COMPLETE": {"FINISHED"}, "FAIL": {"FAILED"}, "PRUNED": {"FAILED", "KILLED"}}


def _command(args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", args.workload]
    cmd += ["--space", args.space, "--budget", str(args.budget), "--study", "chaos"]
    cmd += ["--runs-dir", str(args.runs_dir), "--measure-seconds", str(args.measure_seconds)]
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


def _finished_trials(runs: Path) -> int:
    """Finished trials so far (read-only SQL: the benchmark must not lock the store)."""
    db = runs / "optuna.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(
            "select count(*) from trials where state in ('COMPLETE','FAIL','PRUNED')"
        ).fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def _round(args, rng: random.Random, log) -> dict:
    """Start the search, kill it after a random wait (unless it ends first)."""
    wait = rng.uniform(args.min_wait, args.max_wait)
    before = _finished_trials(args.runs_dir)
    t0 = time.monotonic()
    proc = subprocess.Popen(_command(args), stdout=log, stderr=log, env=os.environ.copy())
    workers: set[int] = set()
    while time.monotonic() - t0 < wait and proc.poll() is None:
        workers.update(_children(proc.pid))
        time.sleep(0.05)
    if proc.poll() is not None:
        return {"killed": False, "rc": proc.returncode, "after_s": time.monotonic() - t0}
    workers.update(_children(proc.pid))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {
        "killed": True,
        "after_s": round(wait, 2),
        "trials_before": before,
        "trials_after": _finished_trials(args.runs_dir),
        "worker_processes": len(workers),
        "orphans_left": sum(_alive(p) for p in workers),
    }


def _verify(args) -> dict:
    """Every check, from the stores alone."""
    import optuna

    from autoaccel.frontier import pareto, points

    runs = args.runs_dir
    study = optuna.load_study(study_name="chaos", storage=f"sqlite:///{runs / 'optuna.db'}")
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if "surplus" not in t.user_attrs]
    states = {s: sum(t.state.name == s for t in counted) for s in STATUS_OF}
    running = [t.number for t in trials if t.state.name == "RUNNING"]
    unexplained = [
        t.number
        for t in counted
        if t.state.name in ("FAIL", "PRUNED")
        and not (t.user_attrs.get("fail_reason") or t.user_attrs.get("early_stopped"))
    ]

    con = sqlite3.connect(runs / "mlflow.db")
    rows = con.execute(
        "select r.status, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
        "join tags role on role.run_uuid = r.run_uuid and role.key = 'autoaccel.role' "
        "and role.value = 'trial' where t.key = 'trial'"
    ).fetchall()
    parents = con.execute(
        "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'autoaccel.role' and t.value = 'study'"
    ).fetchall()
    con.close()
    by_trial: dict[int, list[str]] = {}
    for status, number in rows:
        by_trial.setdefault(int(number), []).append(status)
    twice = sorted(n for n, s in by_trial.items() if len(s) > 1)
    missing = sorted(t.number for t in counted if t.number not in by_trial)
    orphan_runs = sorted(set(by_trial) - {t.number for t in counted})
    wrong_status = sorted(
        t.number
        for t in counted
        if t.number in by_trial and not set(by_trial[t.number]) <= STATUS_OF[t.state.name]
    )
    parent_status = sorted(s for (s,) in parents)

    rec = json.loads((runs / "chaos" / "recommendation.json").read_text())
    baseline = study.user_attrs["baseline"]
    recomputed = [
        {"trial": p.trial, "accuracy": p.accuracy, "objective_ms": p.objective_ms}
        for p in pareto(study, points(study, baseline))
    ]
    written = [
        {"trial": p["trial"], "accuracy": p["accuracy"], "objective_ms": p["objective_ms"]}
        for p in rec["frontier"]
    ]
    checks = {
        "budget_exact": len([t for t in counted if t.state.name != "RUNNING"]) == args.budget,
        "none_running": not running,
        "every_failure_has_a_reason": not unexplained,
        "one_mlflow_run_per_trial": not twice and not missing and not orphan_runs,
        "mlflow_status_matches_optuna": not wrong_status,
        "no_parent_run_left_running": "RUNNING" not in parent_status,
        "frontier_equals_recomputed": written == recomputed,
    }
    return {
        "checks": checks,
        "trials": len(counted),
        "surplus": len(trials) - len(counted),
        "states": states,
        "running": running,
        "unexplained_failures": unexplained,
        "mlflow_runs_twice": twice,
        "mlflow_runs_missing": missing,
        "mlflow_runs_without_trial": orphan_runs,
        "mlflow_wrong_status": wrong_status,
        "parent_runs": {s: parent_status.count(s) for s in sorted(set(parent_status))},
        "frontier": written,
        "failure_reasons": sorted(
            {
                t.user_attrs.get("fail_reason", "")[:90]
                for t in counted
                if t.state.name != "COMPLETE"
            }
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--workload", default="digits-cnn")
    parser.add_argument("--space", default="default")
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/autoaccel-chaos"))
    parser.add_argument("--min-wait", type=float, default=2.0)
    parser.add_argument("--max-wait", type=float, default=20.0)
    parser.add_argument("--measure-seconds", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    shutil.rmtree(args.runs_dir, ignore_errors=True)
    args.runs_dir.mkdir(parents=True)
    rng = random.Random(args.seed)
    rounds: list[dict] = []
    t0 = time.monotonic()
    with open(args.runs_dir / "chaos.log", "ab") as log:
        while sum(r["killed"] for r in rounds) < args.kills:
            r = _round(args, rng, log)
            rounds.append(r)
            print(f"round {len(rounds)}: {r}", flush=True)
            if not r["killed"]:
                break  # the search reached its budget before the kills were done
        final = subprocess.run(_command(args), stdout=log, stderr=log, env=os.environ.copy())
    wall = time.monotonic() - t0
    kills = [r for r in rounds if r["killed"]]
    result = _verify(args)
    result["checks"]["all_kills_done"] = len(kills) >= args.kills
    result["checks"]["final_run_succeeded"] = final.returncode == 0
    result["checks"]["no_orphan_worker_processes"] = not any(r["orphans_left"] for r in kills)
    ok = all(result["checks"].values())
    payload = {
        "command": " ".join(_command(args)),
        "kills": len(kills),
        "rounds": rounds,
        "wall_s": round(wall, 1),
        "passed": ok,
        **result,
    }
    table = [[name, "pass" if good else "FAIL"] for name, good in result["checks"].items()]
    table += [
        ["kills (SIGKILL at random moments)", str(len(kills))],
        ["finished trials / budget", f"{result['trials']} / {args.budget}"],
        ["states", ", ".join(f"{k} {v}" for k, v in result["states"].items())],
        ["MLflow parent runs", ", ".join(f"{k} {v}" for k, v in result["parent_runs"].items())],
        ["frontier points", str(len(result["frontier"]))],
        ["wall time", f"{wall:.0f} s"],
    ]
    write("chaos", payload, table, ["check", "result"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
