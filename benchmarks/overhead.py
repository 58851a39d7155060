"""Where a search's time goes: command start to first trial, per-trial time outside model
building and evaluation (Optuna, MLflow, caching, bookkeeping) as a share of trial time, and
how a whole search splits its time.

    # run a search here, timed from the command's start, with per-function timers
    .venv/bin/python benchmarks/overhead.py --run --workload digits-cnn --budget 100 \\
        --runs-dir /tmp/ovh-digits [--space default] [--name digits-cnn]
    # analyse any finished study (no timers: the split comes from the store alone)
    .venv/bin/python benchmarks/overhead.py --runs-dir /tmp/vsp-runs [--study NAME] \\
        [--name minilm]

From the study store alone: each trial's Optuna datetime_start / datetime_complete against
the seconds it records in user_attrs['result']['seconds'] (build, which includes training,
open, quality, latency); everything else in the trial, plus the gap to the next trial's
start, is bookkeeping. Startup is command start -> first trial start with --run; for a study
this script did not start, the MLflow parent run's start (after imports, workload loading,
the export preflight and the store set-up) is the nearest recorded time, and is labelled so.

With --run the search runs in a child process (`autoaccel.cli` main, the same code as the
`autoaccel` command) with wrappers that time the functions bookkeeping is made of (Optuna
ask / tell / get_trials / attribute writes, the sampler, MLflow logging, duplicate lookup,
dead-worker recovery, the early-stopping monitor, progress display) and the start-up and
finish steps; the wrappers add ~1 us per call. --sqlite-fix applies the proposed fix at run
time in that child (WAL journal + synchronous=NORMAL on the Optuna and MLflow SQLite stores),
for an A/B against a run without it. Every analysis also times 100 Optuna attribute writes on
a fresh store as autoaccel opens it, with WAL, and with WAL + synchronous=NORMAL (the cost
that dominates bookkeeping here). Results go to benchmarks/results/overhead-<name>.{json,md};
--merge a.json,b.json,... writes them side by side to overhead.{json,md}; --from-json writes
one result's tables again.

    .venv/bin/python benchmarks/overhead.py --run --sqlite-fix --workload digits-cnn \
        --budget 100 --extra="--targets cpu-local" --runs-dir /tmp/ovh-fix --name fix
    .venv/bin/python benchmarks/overhead.py --merge benchmarks/results/overhead-a.json,...
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK_KEYS = ("build", "open", "quality", "latency", "project", "untrained_timing")
"""The seconds a trial records for its own work (`train` is inside `build`)."""


# ------------------------------------------------------------------ the instrumented child

TIMERS: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
MARKS: dict[str, float] = {}
_DEPTH: dict[str, int] = defaultdict(int)


def _timed(label: str, fn):
    """`fn` that adds its wall time to TIMERS[label] (outermost call only, so recursion or a
    wrapped method calling another wrapped one of the same label is not counted twice)."""

    def wrapper(*args, **kwargs):
        if _DEPTH[label]:
            return fn(*args, **kwargs)
        _DEPTH[label] += 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _DEPTH[label] -= 1
            entry = TIMERS[label]
            entry[0] += 1
            entry[1] += time.perf_counter() - t0

    wrapper.__wrapped__ = fn
    return wrapper


def _timed_context(label: str, factory):
    """A context-manager factory whose __enter__ and __exit__ are timed under `label`."""
    import contextlib

    @contextlib.contextmanager
    def wrapper(*args, **kwargs):
        manager = factory(*args, **kwargs)
        _timed(label, manager.__enter__)()
        try:
            yield
        except BaseException:
            if not _timed(label, manager.__exit__)(*sys.exc_info()):
                raise
        else:
            _timed(label, manager.__exit__)(None, None, None)

    return wrapper


MISSING: list[str] = []


def _patch(owner, attr: str, label: str) -> None:
    """Time `owner.attr` under `label`; autoaccel changes, so a name that is gone is skipped
    (and listed in the results) rather than stopping the run."""
    if not hasattr(owner, attr):
        MISSING.append(f"{getattr(owner, '__name__', owner)}.{attr}")
        return
    setattr(owner, attr, _timed(label, getattr(owner, attr)))


def instrument() -> None:
    """Wrap what a search spends time on outside building and evaluating candidates."""
    import optuna

    import autoaccel.search_run as sr
    import autoaccel.space as space
    import autoaccel.study as study_mod
    import autoaccel.tracking as tracking
    import autoaccel.workers as workers

    MARKS["imported"] = time.time()
    S = sr.Search
    # start-up and finish steps (wall time of each, nested ones included in their parent)
    for attr, label in [
        ("_run", "search (all)"),
        ("_preflight", "start: export preflight"),
        ("_baseline", "start: baseline"),
        ("_project_baseline", "start: baseline projected on every target"),
        ("_recover", "loop: dead-worker recovery"),
        ("_ask", "loop: ask (+ surplus check)"),
    ]:
        _patch(S, attr, label)
    try:  # candidates judged in a worker process (autoaccel.isolation), when present
        import autoaccel.isolation as iso

        _patch(iso.IsolatedEvaluator, "run", "trial: evaluator.run (worker: build+evaluate)")
        _patch(iso.IsolatedEvaluator, "_started", "trial: worker process start / check")
    except ImportError:
        MISSING.append("autoaccel.isolation")
    try:
        import autoaccel.trial_eval as te

        _patch(te.CandidateEvaluator, "run", "trial: evaluator.run (worker: build+evaluate)")
    except ImportError:
        MISSING.append("autoaccel.trial_eval")
    _patch(study_mod, "open_study", "start: open Optuna study")
    import autoaccel.search_finish as finish
    import autoaccel.targets as targets_mod
    import autoaccel.trial_record as record

    _patch(sr, "finish", "finish (all)")  # search_run calls its module-level name
    import autoaccel.search_trial as st_mod

    _patch(sr, "run_trial", "trial (all)")  # search_run calls its module-level name
    _patch(st_mod, "_rule", "trial: early-stop rule set-up")
    _patch(st_mod, "_known_infeasible", "trial: known-infeasible lookup")
    _patch(finish, "_confirm", "finish: confirm side by side")
    _patch(finish, "_report", "finish: report")
    _patch(record, "same_recipe", "trial: duplicate lookup")  # imported per call
    _patch(targets_mod, "load_targets", "start: load targets")  # imported per call
    import autoaccel.workloads as wls

    _patch(wls, "load_workload", "start: load workload")
    _patch(tracking.Tracker, "__init__", "start: MLflow store")
    _patch(tracking.Tracker, "start_parent", "start: MLflow parent run")
    _patch(tracking.Tracker, "close_dead_parents", "start: MLflow close dead parents")
    _patch(tracking.Tracker, "log_trial", "trial: MLflow log_trial")
    _patch(tracking.Tracker, "set_pareto", "finish: MLflow set_pareto")
    _patch(tracking.Tracker, "log_artifacts", "finish: MLflow log_artifacts")
    _patch(space, "suggest_recipe", "trial: suggest_recipe (sampler)")  # imported per call
    _patch(study_mod, "finished_count", "loop: finished_count")  # imported per call
    beat = _timed_context("trial: heartbeat start/stop", workers.heartbeat)
    for owner in (workers, sr):  # search_run imports these at module level
        _patch(owner, "is_surplus", "loop: surplus check")
        _patch(owner, "recover_dead_trials", "loop: recover_dead_trials")
        owner.heartbeat = beat
    import autoaccel.builder as build
    import autoaccel.evaluate as evaluate

    # in this process: the preflight export, the baseline, the final side-by-side timing
    # (with isolation, trials build and evaluate in the worker process)
    _patch(build, "build_candidate", "parent: build_candidate")
    _patch(evaluate, "evaluate_candidate", "parent: evaluate_candidate")
    import autoaccel.plots as plots

    _patch(plots, "write_study_folder", "finish: study folder + plots")
    # Optuna itself
    st = optuna.study.Study
    _patch(st, "ask", "optuna: study.ask (incl. relative sampling)")
    _patch(st, "tell", "optuna: study.tell")
    _patch(st, "get_trials", "optuna: study.get_trials")
    _patch(st, "set_user_attr", "optuna: study.set_user_attr")
    tr = optuna.trial.Trial
    _patch(tr, "set_user_attr", "optuna: trial.set_user_attr")
    _patch(tr, "set_constraint", "optuna: trial.set_constraint")
    _patch(tr, "suggest_categorical", "optuna: trial.suggest_* (independent sampling)")
    _patch(tr, "suggest_int", "optuna: trial.suggest_* (independent sampling)")
    _patch(tr, "suggest_float", "optuna: trial.suggest_* (independent sampling)")
    for cls in (
        optuna.samplers.TPESampler,
        optuna.samplers.NSGAIISampler,
        optuna.samplers.RandomSampler,
    ):
        _patch(cls, "sample_relative", "optuna: sampler.sample_relative")
        _patch(cls, "infer_relative_search_space", "optuna: sampler.infer_relative_search_space")
        _patch(cls, "sample_independent", "optuna: sampler.sample_independent")
        _patch(cls, "after_trial", "optuna: sampler.after_trial")
    # the progress display (cli passes display.handle as on_event)
    init = S.__init__

    def patched_init(self, cfg, emit):
        init(self, cfg, _timed("loop: progress display", emit))

    S.__init__ = patched_init


def _fast_sqlite(dbapi_con, _record) -> None:
    """The proposed fix: WAL journal (persistent in the file) and synchronous=NORMAL (per
    connection): one fsync per checkpoint instead of two per commit; still crash-safe for
    the database (a power loss can drop the last commits, not corrupt the file)."""
    cur = dbapi_con.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def apply_sqlite_fix() -> None:
    """Apply the proposed change at run time (this script may not edit autoaccel/): the
    Optuna store from `autoaccel.study.make_storage` and the MLflow store of
    `autoaccel.tracking.Tracker` get `_fast_sqlite` on every new SQLite connection."""
    from sqlalchemy import event

    import autoaccel.study as study_mod
    import autoaccel.tracking as tracking

    make = study_mod.make_storage

    def make_storage(url: str):
        storage = make(url)
        if url.startswith("sqlite"):
            event.listen(storage.engine, "connect", _fast_sqlite)
            storage.engine.dispose()
        return storage

    study_mod.make_storage = make_storage
    init = tracking.Tracker.__init__

    def tracker_init(self, tracking_uri, *args, **kwargs):
        init(self, tracking_uri, *args, **kwargs)
        if tracking_uri.startswith("sqlite"):
            engine = self.client._tracking_client.store.engine
            event.listen(engine, "connect", _fast_sqlite)
            engine.dispose()

    tracking.Tracker.__init__ = tracker_init


def child(out: Path, argv: list[str]) -> None:
    MARKS["child_start"] = time.time()

    def dump() -> None:
        MARKS["child_end"] = time.time()
        timers = {k: {"calls": v[0], "seconds": v[1]} for k, v in TIMERS.items()}
        payload = {"marks": MARKS, "timers": timers, "not_instrumented": MISSING}
        out.write_text(json.dumps(payload, indent=1))

    atexit.register(dump)
    from autoaccel import cli

    MARKS["cli_imported"] = time.time()
    if os.environ.get("OVERHEAD_SQLITE_FIX") == "1":
        apply_sqlite_fix()
    instrument()
    sys.argv = ["autoaccel", *argv]
    cli.main()


# ------------------------------------------------------------------ the fix, measured


def storage_bench(writes: int = 100) -> dict[str, dict[str, float]]:
    """ms per Optuna trial-attribute write on a fresh SQLite store opened by autoaccel's
    `make_storage`, as it is (rollback journal, synchronous=FULL: two fsyncs per commit) and
    with the SQLite settings the proposed fix sets (WAL journal, persistent in the file; and
    WAL + synchronous=NORMAL on each connection)."""
    import sqlite3
    import statistics
    import tempfile
    import warnings

    import optuna
    from sqlalchemy import event

    from autoaccel.study import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore")

    def normal(dbapi_con, _record) -> None:
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    out = {}
    for mode in ("as is", "WAL", "WAL + synchronous=NORMAL"):
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            db = Path(tmp) / "optuna.db"
            if mode != "as is":
                sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").close()
            storage = make_storage(f"sqlite:///{db}")
            if mode == "WAL + synchronous=NORMAL":
                event.listen(storage.engine, "connect", normal)
                storage.engine.dispose()
            study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
            trial = study.ask()
            times = []
            for i in range(writes):
                t0 = time.perf_counter()
                trial.set_user_attr(f"k{i}", {"value": i})
                times.append(time.perf_counter() - t0)
            out[mode] = {
                "median_ms": 1e3 * statistics.median(times),
                "mean_ms": 1e3 * statistics.fmean(times),
                "writes": writes,
            }
            storage.engine.dispose()
    return out


# ------------------------------------------------------------------ analysis of a store


def _ts(value) -> float | None:
    return None if value is None else value.timestamp()


def study_trials(runs_dir: Path, study: str | None, storage: str | None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage or f"sqlite:///{runs_dir / 'optuna.db'}"
    names = optuna.get_all_study_names(storage=url)
    if study is None:
        if len(names) != 1:
            raise SystemExit(f"give --study; {url} holds {names}")
        study = names[0]
    st = optuna.load_study(study_name=study, storage=url)
    return study, st


def mlflow_parents(runs_dir: Path, study: str) -> list[dict[str, Any]]:
    """The study's parent runs (one per `autoaccel search` invocation) in <runs-dir>/mlflow.db,
    oldest first (read with sqlite3: start and end times in ms since the epoch)."""
    db = runs_dir / "mlflow.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT r.run_uuid, r.start_time, r.end_time, r.status FROM runs r "
            "JOIN experiments e ON r.experiment_id = e.experiment_id "
            "JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE e.name = ? AND t.key = 'autoaccel.role' AND t.value = 'study' "
            "ORDER BY r.start_time",
            (study,),
        ).fetchall()
    finally:
        con.close()
    return [
        {
            "run_id": row[0],
            "start": row[1] / 1000,
            "end": None if row[2] is None else row[2] / 1000,
            "status": row[3],
        }
        for row in rows
    ]


def invocations(parents: list[dict[str, Any]], trials) -> list[dict[str, Any]]:
    """Each invocation's span: from its parent run's start to its end. A search killed
    without a word (SIGKILL, a lost session) has no end of its own: the next invocation
    closes its run as KILLED much later, so its span ends at its last trial's activity
    instead (the trial it died in started then), and never after the next one's start."""
    spans = []
    for i, p in enumerate(parents):
        nxt = parents[i + 1]["start"] if i + 1 < len(parents) else None
        mine = [
            t for t in trials if p["start"] <= t["start"] and (nxt is None or t["start"] < nxt)
        ]
        end = p["end"]
        if p["status"] != "FINISHED":
            ends = [t["end"] for t in mine if nxt is None or t["end"] <= nxt]  # not the dead
            end = max(ends + [t["start"] for t in mine], default=p["start"])
        if nxt is not None and end is not None:
            end = min(end, nxt)
        spans.append({**p, "span_end": end, "trials": [t["number"] for t in mine]})
    return spans


def analyse(runs_dir: Path, study_name: str | None, storage: str | None, run: dict | None):
    import optuna

    name, study = study_trials(runs_dir, study_name, storage)
    finished = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.datetime_start and t.datetime_complete
    ]
    finished.sort(key=lambda t: t.datetime_start)
    if not finished:
        raise SystemExit(f"study {name}: no finished trials yet")
    rows = []
    for i, t in enumerate(finished):
        start, end = _ts(t.datetime_start), _ts(t.datetime_complete)
        nxt = _ts(finished[i + 1].datetime_start) if i + 1 < len(finished) else None
        result = t.user_attrs.get("result") or {}
        secs = result.get("seconds") if "duplicate_of" not in t.user_attrs else None
        kind = (
            "duplicate"
            if "duplicate_of" in t.user_attrs
            else "complete"
            if t.state == optuna.trial.TrialState.COMPLETE
            else "stopped"
            if "early_stopped" in t.user_attrs
            else "failed"
        )
        work = {k: float(secs.get(k, 0.0)) for k in WORK_KEYS} if secs else None
        rows.append(
            {
                "number": t.number,
                "kind": kind,
                "wall_s": end - start,
                "gap_s": None if nxt is None else max(0.0, nxt - end),
                "work_s": work,
                "train_s": float(secs.get("train", 0.0)) if secs else None,
                "start": start,
                "end": end,
            }
        )
    first, last = rows[0]["start"], rows[-1]["end"]
    spans = [] if run is not None else invocations(mlflow_parents(runs_dir, name), rows)
    for span in spans:  # a trial never outlives its invocation's process
        for r in rows:
            if r["number"] in span["trials"] and span["span_end"] is not None:
                if r["end"] > span["span_end"]:
                    r["wall_s"] = max(0.0, span["span_end"] - r["start"])
                    r["cut_at_invocation_end"] = True
                if r is not _last_of(rows, span):
                    continue
                r["gap_s"] = None  # the time to the next invocation is not the search's
    out: dict[str, Any] = {"study": name, "runs_dir": str(runs_dir), "n_trials": len(rows)}
    out["kinds"] = {k: sum(r["kind"] == k for r in rows) for k in {r["kind"] for r in rows}}
    if run is not None:
        out["startup"] = {
            "what": "command start -> first trial start",
            "seconds": first - run["spawn"],
        }
        out["finish"] = {
            "what": "last trial complete -> command exit",
            "seconds": run["exit"] - last,
        }
        out["total_s"] = run["exit"] - run["spawn"]
    elif spans:
        by_number = {r["number"]: r for r in rows}
        startup = finish = 0.0
        for span in spans:
            mine = [by_number[n] for n in span["trials"]]
            end = span["span_end"]
            if not mine:  # an invocation that ran no trial (the budget was met): all finish
                finish += (end or span["start"]) - span["start"]
                continue
            startup += mine[0]["start"] - span["start"]
            if end is not None:
                finish += max(0.0, end - max(r["start"] + r["wall_s"] for r in mine))
        out["startup"] = {
            "what": "MLflow parent run start -> first trial start (baseline, store set-up), "
            f"summed over {len(spans)} invocation(s); imports, workload loading and the "
            "export preflight come before it and are not recorded in a study",
            "seconds": startup,
        }
        out["finish"] = {
            "what": "last trial complete -> MLflow parent run end",
            "note": f"summed over {len(spans)} invocation(s); those that ran no trial count whole",
            "seconds": finish,
        }
        out["total_s"] = sum((s["span_end"] or s["start"]) - s["start"] for s in spans)
    out["invocations"] = spans
    db = runs_dir / "optuna.db"
    if storage is None and db.exists():  # WAL persists in the file once autoaccel opened it
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            out["optuna_journal_mode"] = con.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            con.close()
    # per-trial split: trials that built and evaluated a candidate
    measured = [r for r in rows if r["work_s"] is not None]
    totals = defaultdict(float)
    for r in measured:
        gap = r["gap_s"] or 0.0
        for k, v in r["work_s"].items():
            totals[k] += v
        totals["train (inside build)"] += r["train_s"] or 0.0
        totals["bookkeeping inside trial"] += r["wall_s"] - sum(r["work_s"].values())
        totals["bookkeeping between trials"] += gap
        totals["cycle"] += r["wall_s"] + gap
    others = [r for r in rows if r["work_s"] is None]
    totals_other = {
        "trials": len(others),
        "cycle_s": sum(r["wall_s"] + (r["gap_s"] or 0.0) for r in others),
    }
    book = totals["bookkeeping inside trial"] + totals["bookkeeping between trials"]
    per_trial = [(r["wall_s"] - sum(r["work_s"].values()) + (r["gap_s"] or 0.0)) for r in measured]
    out["measured_trials"] = {
        "n": len(measured),
        "totals_s": dict(totals),
        "bookkeeping_s": book,
        "bookkeeping_share_of_trial_time": book / totals["cycle"] if totals["cycle"] else None,
        "bookkeeping_per_trial_s": {
            "median": _median(per_trial),
            "first_10_mean": _mean(per_trial[:10]),
            "last_10_mean": _mean(per_trial[-10:]),
            "max": max(per_trial) if per_trial else None,
        },
        "cycle_per_trial_s_median": _median([r["wall_s"] + (r["gap_s"] or 0.0) for r in measured]),
    }
    out["other_trials"] = totals_other  # duplicates, failed, early-stopped
    out["trials"] = rows
    out["trials_span_s"] = last - first
    return out


def _last_of(rows: list[dict[str, Any]], span: dict[str, Any]) -> dict[str, Any] | None:
    mine = [r for r in rows if r["number"] in span["trials"]]
    return max(mine, key=lambda r: r["start"]) if mine else None


def _median(xs):
    xs = sorted(xs)
    return (
        None
        if not xs
        else (xs[len(xs) // 2] if len(xs) % 2 else sum(xs[len(xs) // 2 - 1 :][:2]) / 2)
    )


def _mean(xs):
    return None if not xs else sum(xs) / len(xs)


# ------------------------------------------------------------------ tables


def split_rows(a: dict[str, Any]) -> list[tuple[str, float]]:
    """How the whole search's time splits (seconds)."""
    m = a["measured_trials"]["totals_s"]
    parts = []
    if "startup" in a:
        parts.append(
            ("startup (" + a["startup"]["what"].split(" (")[0] + ")", a["startup"]["seconds"])
        )
    parts += [
        (
            "build (export, quantize, ...)",
            m.get("build", 0.0) - m.get("train (inside build)", 0.0),
        ),
        ("train (distill / prune fine-tune)", m.get("train (inside build)", 0.0)),
        ("untrained timing (early-stop rule)", m.get("untrained_timing", 0.0)),
        ("open session", m.get("open", 0.0)),
        ("quality (validation data)", m.get("quality", 0.0)),
        ("latency (protocol)", m.get("latency", 0.0)),
        ("projection on the estimated targets", m.get("project", 0.0)),
        ("bookkeeping inside trials", m.get("bookkeeping inside trial", 0.0)),
        ("bookkeeping between trials", m.get("bookkeeping between trials", 0.0)),
        (
            "failed, early-stopped, duplicate trials (no split recorded)",
            a["other_trials"]["cycle_s"],
        ),
    ]
    if "finish" in a:
        parts.append(("finish (" + a["finish"]["what"] + ")", a["finish"]["seconds"]))
    return parts


def main() -> None:
    if sys.argv[1:2] == ["--child"]:  # the instrumented search: everything after is its argv
        child(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--study", default=None)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--run", action="store_true", help="run the search here first")
    parser.add_argument("--workload", default="digits-cnn")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--space", default="default")
    parser.add_argument("--extra", default="", help="more `autoaccel search` options")
    parser.add_argument("--name", default=None, help="results/overhead-<name>.{json,md}")
    parser.add_argument(
        "--sqlite-fix",
        action="store_true",
        help="with --run: apply the proposed fix (WAL + synchronous=NORMAL) to both stores",
    )
    parser.add_argument("--merge", default=None, help="combine result JSONs into overhead.md")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="write the tables again from a result JSON"
    )
    args = parser.parse_args()
    if args.merge:
        merge([Path(p) for p in args.merge.split(",")])
        return
    if args.from_json:
        a = json.loads(args.from_json.read_text())
        a.pop("machine", None)
        a.setdefault("storage_bench", storage_bench())
        report(args.name or a["study"], a)
        return
    if args.runs_dir is None:
        raise SystemExit("give --runs-dir")
    load = os.getloadavg()[0]
    run = None
    timers = None
    if args.run:
        runs_dir = args.runs_dir.resolve()
        runs_dir.mkdir(parents=True, exist_ok=True)
        out = runs_dir / "overhead-timers.json"
        argv = ["search", "--workload", args.workload, "--budget", str(args.budget)]
        argv += ["--space", args.space, "--runs-dir", str(runs_dir), *args.extra.split()]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out), *argv]
        print("running:", "autoaccel " + " ".join(argv), flush=True)
        spawn = time.time()
        env = {**os.environ, "OVERHEAD_SQLITE_FIX": "1" if args.sqlite_fix else "0"}
        rc = subprocess.run(cmd, cwd=HERE.parent, env=env).returncode
        exit_t = time.time()
        if rc != 0:
            raise SystemExit(f"the search exited with {rc}")
        timers = json.loads(out.read_text())
        run = {"spawn": spawn, "exit": exit_t, "argv": argv, "sqlite_fix": args.sqlite_fix}
    a = analyse(args.runs_dir.resolve(), args.study, args.storage, run)
    a["load_avg_1min"] = {"start": load, "end": os.getloadavg()[0]}
    a["storage_bench"] = storage_bench()
    a["run"] = run
    if timers is not None:
        marks = timers["marks"]
        a["timers"] = timers["timers"]
        a["not_instrumented"] = timers.get("not_instrumented", [])
        a["marks_since_spawn_s"] = {k: v - run["spawn"] for k, v in marks.items()}
    name = args.name or a["study"]
    report(name, a)


def report(name: str, a: dict[str, Any]) -> None:
    from _common import write  # benchmarks/ is run as a folder of scripts

    m = a["measured_trials"]
    cycle = m["totals_s"]["cycle"]
    total = a.get("total_s") or sum(s for _, s in split_rows(a))
    rows = [[label, f"{s:.1f}", f"{100 * s / total:.1f}"] for label, s in split_rows(a)]
    rows.append(["**total**", f"{total:.1f}", "100"])
    share = m["bookkeeping_share_of_trial_time"]
    rows.append(
        [
            f"**bookkeeping share of trial time** ({m['n']} built trials)",
            f"{m['bookkeeping_s']:.1f} of {cycle:.1f}",
            f"{100 * share:.2f}",
        ]
    )
    per = m["bookkeeping_per_trial_s"]
    rows.append(
        [
            "bookkeeping per trial: median / first 10 / last 10 (s)",
            f"{per['median']:.3f} / {per['first_10_mean']:.3f} / {per['last_10_mean']:.3f}",
            "",
        ]
    )
    for mode, figures in a.get("storage_bench", {}).items():
        rows.append(
            [
                f"SQLite write (Optuna set_user_attr), store {mode}",
                f"{figures['median_ms']:.2f} ms median ({figures['mean_ms']:.2f} mean)",
                "",
            ]
        )
    if "timers" in a:
        loop = a["timers"].get("search (all)", {}).get("seconds") or total
        for label, t in sorted(a["timers"].items(), key=lambda kv: -kv[1]["seconds"]):
            if label == "search (all)":
                continue
            rows.append(
                [
                    f"timer: {label}",
                    f"{t['seconds']:.2f} ({t['calls']} calls, "
                    f"{1000 * t['seconds'] / max(1, t['calls']):.1f} ms/call)",
                    f"{100 * t['seconds'] / loop:.1f}",
                ]
            )
        marks = a["marks_since_spawn_s"]
        for k in ("child_start", "cli_imported", "imported"):
            if k in marks:
                rows.append([f"mark: {k} (s after command start)", f"{marks[k]:.2f}", ""])
    payload = {k: v for k, v in a.items()}
    write(f"overhead-{name}", payload, rows, ["part", "seconds", "% of total"])


def merge(paths: list[Path]) -> None:
    """One table over several analyses (e.g. digits-cnn and minilm): overhead.{json,md}."""
    from _common import write

    analyses = [json.loads(p.read_text()) for p in paths]
    names = [p.stem.removeprefix("overhead-") for p in paths]
    labels = [label for label, _ in split_rows(analyses[0])]
    rows = []
    for label in labels:
        row = [label]
        for a in analyses:
            parts = split_rows(a)
            total = a.get("total_s") or sum(s for _, s in parts)
            match = [s for lab, s in parts if lab.split(" (")[0] == label.split(" (")[0]]
            row.append(f"{match[0]:.1f} s ({100 * match[0] / total:.1f} %)" if match else "n/a")
        rows.append(row)
    rows.append(
        ["**bookkeeping share of built trials' time**"]
        + [
            f"{100 * a['measured_trials']['bookkeeping_share_of_trial_time']:.2f} % "
            f"({a['measured_trials']['n']} trials, median "
            f"{a['measured_trials']['bookkeeping_per_trial_s']['median']:.3f} s/trial)"
            for a in analyses
        ]
    )
    rows.append(
        ["**total**"]
        + [
            f"{a['total_s']:.0f} s" if a.get("total_s") else "unfinished (parts so far)"
            for a in analyses
        ]
    )
    rows.append(
        ["startup measured from"]
        + [
            "command start"
            if a.get("run")
            else "MLflow parent run start (after imports, workload loading, export preflight)"
            for a in analyses
        ]
    )
    rows.append(["study / trials"] + [f"{a['study']}, {a['n_trials']} trials" for a in analyses])
    rows.append(
        ["SQLite WAL + synchronous=NORMAL"]
        + [
            "yes, applied by --sqlite-fix"
            if (a.get("run") or {}).get("sqlite_fix")
            else "yes, built in (autoaccel.workers.tune_sqlite)"
            if a.get("optuna_journal_mode") == "wal"
            else "no"
            for a in analyses
        ]
    )
    rows.append(
        ["1-min load average (start / end)"]
        + [
            f"{a['load_avg_1min']['start']:.1f} / {a['load_avg_1min']['end']:.1f}"
            for a in analyses
        ]
    )
    write(
        "overhead",
        {
            "sources": [str(p) for p in paths],
            "analyses": [{k: v for k, v in a.items() if k != "trials"} for a in analyses],
        },
        rows,
        ["part", *names],
    )


if __name__ == "__main__":
    main()
