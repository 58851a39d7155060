"""What the early-stopping rule saves, and what it costs the frontier, replayed on a study.

Takes a finished study whose training trials recorded their quality curves (every training
trial does: the rule's checks are recorded whether or not they stop it) and replays it in
trial order with today's rule (`autoaccel.early_stop`): before each training trial the rule is
primed from the trials kept so far, exactly as `autoaccel search` primes it, and the trial's
recorded curve is fed to `check` stage by stage. Where the rule needs the build's speed before
training and no trial of the same build was timed, the search times the build untrained; the
replay uses the trial's own final objective for it (a build's speed does not depend on its
weights) and charges the measured cost of such a timing (`--timing-cost`, or the median
`untrained_timing` of `--cost-from`'s trials).

A trial the replay stops saves the rest of its training (steps not run, by its recorded
training seconds) and its final build, open, judging and timing; it leaves the frontier. The
output compares the replayed study with the study as it ran: seconds saved, the hypervolume of
the feasible frontier (the definition of `search_efficiency.py`: quality against log10 of
latency over the baseline's, reference point at the accuracy limit and the baseline's
latency) and the fastest feasible candidate.

What a replay cannot show: a stopped trial also changes what the sampler asks next (it learns
the region is infeasible or dominated), so a live run's later trials differ; the live run
(`overhead.py --run`) measures that.

    .venv/bin/python benchmarks/early_stop_replay.py --runs-dir /tmp/acc100 \\
        [--study NAME] [--cost-from /tmp/acc100b] [--name minilm-45m]

Writes benchmarks/results/early-stop-replay-<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import write  # benchmarks/ is run as a folder of scripts
from search_efficiency import Scorer

from autoaccel.early_stop import FRACTIONS, TrainingStopped, rule_for, training_stages

STEPS = {"distill": "distill.steps", "prune": "prune.finetune_steps"}


def load(runs_dir: Path, name: str | None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = f"sqlite:///{runs_dir / 'optuna.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name is None and len(names) != 1:
        raise SystemExit(f"{runs_dir}: studies {names}; pass --study")
    return optuna.load_study(study_name=name or names[0], storage=storage)


def timing_cost(runs_dir: Path | None, name: str | None, default: float) -> tuple[float, str]:
    """The median seconds a trial spent timing its build untrained, in a study that did."""
    if runs_dir is None:
        return default, f"assumed {default:g} s"
    seen = [
        t.user_attrs["result"]["seconds"]["untrained_timing"]
        for t in load(runs_dir, name).trials
        if "untrained_timing" in (t.user_attrs.get("result") or {}).get("seconds", {})
    ]
    if not seen:
        raise SystemExit(f"{runs_dir}: no trial timed its build untrained")
    return statistics.median(seen), f"median of {len(seen)} timings in {runs_dir}"


def stop_point(rule, recipe: dict, curve: dict) -> tuple[str, float, str] | None:
    """Where the rule stops this recorded run: (stage, fraction, reason), or None. As in a
    search, only the last stage the recipe trains is judged (`TrialMonitor.stages`)."""
    last = training_stages(recipe)[-1:]
    for stage, points in curve.items():
        if stage not in last:
            continue
        for fraction in FRACTIONS:
            quality = points.get(str(fraction), points.get(fraction))
            if quality is None:
                continue
            try:
                rule.check(stage, fraction, float(quality))
            except TrainingStopped as stop:
                return stage, fraction, str(stop)
    return None


def steps_share(recipe: dict[str, Any], curve: dict, stage: str, fraction: float) -> float:
    """The share of the trial's training steps run when it stops at `fraction` of `stage`
    (stages run in the curve's order; a stage without a curve was cached and ran none)."""
    steps = {st: int(recipe.get(STEPS[st], 0)) for st in curve}
    total = sum(steps.values()) or 1
    done = 0.0
    for st in curve:
        if st == stage:
            return (done + fraction * steps[st]) / total
        done += steps[st]
    return 1.0


def replay(study, cost: float) -> dict[str, Any]:
    import optuna

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    base = study.user_attrs["baseline"]
    limit = float(study.user_attrs["identity"]["max_accuracy_drop"])
    min_acc, base_ms = base["accuracy"] - limit, base.get("objective_ms", base["latency_ms"])
    kept: list[Any] = []  # what the replayed study holds, as the rule reads it
    stopped: dict[int, dict[str, Any]] = {}
    timed, saved = 0, 0.0
    for t in trials:
        recipe = t.user_attrs.get("recipe")
        source = t.user_attrs.get("duplicate_of")
        if source is not None and int(source) in stopped:  # it would stop again, at once
            stopped[t.number] = {**stopped[int(source)], "saved_s": 0.0}
            continue
        if t.state != optuna.trial.TrialState.COMPLETE or not t.user_attrs.get("curve"):
            kept.append(t)
            continue
        rule = rule_for(kept, recipe, min_acc, limit, base_ms)
        extra = 0.0
        if rule.wants_timing(recipe):
            rule.objective_ms, extra = float(t.values[1]), cost
            timed += 1
        curve = t.user_attrs["curve"]
        where = stop_point(rule, recipe, curve)
        seconds = t.user_attrs["result"]["seconds"]
        if where is None:
            saved -= extra
            kept.append(t)
            continue
        stage, fraction, reason = where
        after = (1 - steps_share(recipe, curve, stage, fraction)) * seconds["train"]
        rest = sum(seconds.get(k, 0.0) for k in ("open", "quality", "latency", "project"))
        rest += seconds["build"] - seconds["train"]
        stopped[t.number] = {
            "stage": stage,
            "fraction": fraction,
            "reason": reason,
            "values": list(t.values),
            "saved_s": after + rest - extra,
        }
        saved += after + rest - extra
        kept.append(
            SimpleNamespace(
                number=t.number,
                state=optuna.trial.TrialState.PRUNED,
                values=None,
                constraints={},
                user_attrs={"recipe": recipe, "untrained_ms": t.values[1]},
            )
        )
    return {
        "trials": trials,
        "stopped": stopped,
        "timed": timed,
        "saved_s": saved,
        "base": base,
        "limit": limit,
    }


def points(trials, drop: set[int]) -> list[dict[str, Any]]:
    return [
        {"status": "complete", "accuracy": t.values[0], "latency_ms": t.values[1], "n": t.number}
        for t in trials
        if t.values and t.number not in drop
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--study", default=None)
    parser.add_argument("--cost-from", type=Path, default=None)
    parser.add_argument("--cost-study", default=None)
    parser.add_argument("--timing-cost", type=float, default=6.0)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    study = load(args.runs_dir, args.study)
    cost, cost_source = timing_cost(args.cost_from, args.cost_study, args.timing_cost)
    r = replay(study, cost)
    trials, stopped = r["trials"], r["stopped"]
    table = {"baseline": {"accuracy": r["base"]["accuracy"], "latency_ms": 0.0}, "points": {}}
    table["baseline"]["latency_ms"] = r["base"].get("objective_ms", r["base"]["latency_ms"])
    every = points(trials, set())
    table["points"] = {str(p["n"]): p for p in every}
    scorer = Scorer(table, r["limit"])
    kept = points(trials, set(stopped))
    front_all, front_kept = scorer.front(every), scorer.front(kept)
    lost = [p["n"] for p in front_all if p["n"] not in {q["n"] for q in front_kept}]
    hv_all, hv_kept = scorer.hv(every), scorer.hv(kept)
    wall = sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_complete and t.datetime_start
    )
    train = sum(
        (t.user_attrs.get("result") or {}).get("seconds", {}).get("train", 0.0) for t in trials
    )
    fastest = min((p["latency_ms"] for p in every if scorer.feasible(p)), default=None)
    fastest_kept = min((p["latency_ms"] for p in kept if scorer.feasible(p)), default=None)
    rows = [
        ["study", f"{study.study_name} in {args.runs_dir} ({len(trials)} trials)"],
        ["trials' own time (start to complete)", f"{wall:.0f} s (training {train:.0f} s)"],
        ["builds timed untrained first", f"{r['timed']} (each {cost:.1f} s: {cost_source})"],
        ["trials the rule stops", f"{len(stopped)}: {sorted(stopped)}"],
        [
            "seconds saved, net of the untrained timings",
            f"{r['saved_s']:.0f} s ({100 * r['saved_s'] / wall:.1f} % of the trials' time)",
        ],
        [
            "hypervolume, as run / replayed",
            f"{hv_all:.5f} / {hv_kept:.5f} "
            f"(ratio {hv_kept / hv_all if hv_all else float('nan'):.4f})",
        ],
        ["fastest feasible, as run / replayed", f"{fastest} / {fastest_kept} ms"],
        ["frontier points lost", str(lost or "none")],
    ]
    for n, s in sorted(stopped.items()):
        rows.append(
            [
                f"trial {n}",
                f"{s['reason']} (saves {s['saved_s']:.0f} s; it ended at "
                f"quality {s['values'][0]:.4f}, {s['values'][1]:.3g} ms)",
            ]
        )
    payload = {
        "runs_dir": str(args.runs_dir),
        "study": study.study_name,
        "timing_cost_s": cost,
        "timing_cost_source": cost_source,
        "timed": r["timed"],
        "stopped": stopped,
        "saved_s": r["saved_s"],
        "trials_s": wall,
        "train_s": train,
        "hypervolume": {"as_run": hv_all, "replayed": hv_kept},
        "fastest_feasible_ms": {"as_run": fastest, "replayed": fastest_kept},
        "frontier_lost": lost,
    }
    name = args.name or study.study_name
    write(f"early-stop-replay-{name}", payload, rows, ["", "replay"])


if __name__ == "__main__":
    main()
