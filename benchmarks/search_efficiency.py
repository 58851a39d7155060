"""How fast each sampler finds the frontier: on a discretised search space small enough to
enumerate, every recipe is built and evaluated once for real (autoaccel's `build_candidate` +
`evaluate_candidate`, the measurement protocol, the baseline as a search measures it); the
table is cached as JSON. Each sampler (autoaccel's `make_sampler`: tpe, nsga2, random; plus
variants added here) is then replayed on an in-memory Optuna study whose objective looks the
recipe up in the table, exactly as `autoaccel search` asks and tells (recipes from
`suggest_recipe`, objectives quality maximize / latency minimize, the accuracy-drop constraint
set with `trial.set_constraint`, failed builds told as FAIL or PRUNED with `recipe_runs`).

    .venv/bin/python benchmarks/search_efficiency.py [--workload digits-cnn] [--space PATH]
        [--cache-dir /tmp/search-efficiency-cache] [--seeds 30] [--budgets 10,25,50,100]
        [--samplers tpe,nsga2,random,tpe-univariate[,gp]]

Hypervolume (Optuna's own `optuna._hypervolume.compute_hypervolume`) over the feasible
points only, in the plane (quality, log10 of latency / baseline latency) with the reference
point (baseline quality - max accuracy drop, 0): the accuracy limit and the baseline's latency
bound the region a user can be offered (anything below the limit is never recommended,
anything slower than the baseline is no acceleration). Latency is on a log scale because
speedups multiply: on a linear axis every ONNX candidate already removes ~85 % of the eager
baseline's latency, and the hypervolume could not tell a 7x recipe from a 12x one. The
reference frontier is the exhaustive table's. For each sampler and budget, over the seeds:
hypervolume ratio to the reference, and the fastest feasible latency found against the
exhaustive best (what the recommendation gets); from each seed's largest-budget run, the
trials needed to reach 90 % and 95 % of the reference hypervolume.
Writes benchmarks/results/search_efficiency.{json,md}.

The default space is written to <cache-dir>/search_efficiency_space.yaml: default.yaml
narrowed to cpu-local and to values whose product can be enumerated (630 recipes on
digits-cnn, conditional parameters kept: ov_precision only for OpenVINO, graph level and
quantization only for the ONNX backends, per-channel only for int8, distillation and pruning
sub-parameters only when their mode is on). Training steps are run in full (no early
stopping: its decisions depend on the order of the trials, a table cannot hold them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, write  # benchmarks/ is run as a folder of scripts

SPACE_YAML = """\
# search_efficiency benchmark: default.yaml narrowed to cpu-local and to values whose product
# can be enumerated, keeping the conditional structure of the real space.
version: 1
description: default space narrowed until it can be enumerated (search_efficiency benchmark)
targets:
  names: [cpu-local]
techniques:
  runtime:
    backend: [onnxruntime, openvino, torch]
    intra_op_threads: [1, 2]
    ov_precision: [f32, bf16]
  distill:
    mode: [none, student]
    width: [1.0, 0.5]
    steps: [150]
  prune:
    mode: [none, structured]
    amount: [0.25, 0.5]
    finetune_steps: [0, 300]
  compile:
    graph_level: [basic, all]
  quantize:
    mode: [none, int8_dynamic, int8_static]
    per_channel: [true, false]
    calibration: [minmax]
"""

SAMPLERS = ("tpe", "nsga2", "random", "tpe-univariate")
"""tpe, nsga2, random: autoaccel's `make_sampler`. Added here: tpe-univariate (the same TPE
without multivariate/group, to see what those buy) and gp (Optuna's GPSampler, logEHVI with
constraints; it models only the parameters every trial has and samples the rest at random;
~1 s per trial here, so it is not in the default list: --samplers ...,gp)."""


def key_of(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, sort_keys=True)


# ------------------------------------------------------------------ enumeration


class _Replay:
    """A stand-in for an Optuna trial that answers `suggest_categorical` from a fixed list of
    choice indices, then with the first choice, remembering where the first new decision was
    and how many choices it had (a depth-first walk of the conditional space)."""

    def __init__(self, prefix: list[int]) -> None:
        self.prefix, self.i, self.branch = prefix, 0, None

    def suggest_categorical(self, key: str, choices):
        if self.i < len(self.prefix):
            value = choices[self.prefix[self.i]]
        else:
            if self.branch is None:
                self.branch = len(choices)
            value = choices[0]
        self.i += 1
        return value

    def suggest_int(self, key, *args, **kwargs):
        raise ValueError(f"{key}: a numeric range cannot be enumerated; give a list of values")

    suggest_float = suggest_int


def enumerate_space(space, workload) -> list[dict[str, Any]]:
    """Every recipe `suggest_recipe` can return for this space (lists only)."""
    from autoaccel.space import suggest_recipe

    out, stack = [], [[]]
    while stack:
        prefix = stack.pop()
        trial = _Replay(prefix)
        recipe = suggest_recipe(trial, space, workload)
        if trial.branch is None:  # every decision fixed by the prefix: a leaf
            out.append(recipe)
        else:
            stack.extend(prefix + [c] for c in reversed(range(trial.branch)))
    if len({key_of(r) for r in out}) != len(out):
        raise AssertionError("the enumeration produced the same recipe twice")
    return out


# ------------------------------------------------------------------ the table


def build_table(args, space, workload, cache: Path) -> dict[str, Any]:
    """Evaluate every recipe once (resuming a partial table); returns the table."""
    from autoaccel.builder import build_candidate
    from autoaccel.errors import InfeasibleRecipe
    from autoaccel.evaluate import MeasureConfig, evaluate_candidate
    from autoaccel.machine import usable_cores

    path = cache / f"table-{workload.name}-{space.digest()}.json"
    table = json.loads(path.read_text()) if path.exists() and not args.rebuild else {}
    cfg = MeasureConfig().scaled(args.measure_seconds)
    if "baseline" not in table:  # as Search._baseline measures it
        backend = "torch" if workload.torch_model_available() else "onnxruntime"
        recipe = {"runtime.backend": backend, "runtime.intra_op_threads": usable_cores()}
        if backend == "onnxruntime":
            recipe["compile.graph_level"] = "all"
        ev = evaluate_candidate(build_candidate(recipe, workload, cache), workload, cfg)
        table = {
            "workload": workload.name,
            "metric": workload.metric,
            "space": space.digest(),
            "space_yaml": Path(space.path).read_text(),
            "measure_seconds": args.measure_seconds,
            "baseline": {
                "recipe": recipe,
                "accuracy": ev.quality[workload.metric],
                "latency_ms": ev.latency.median_ms,
            },
            "points": {},
            "build_seconds": 0.0,
            "load_avg_1min": [],
        }
    recipes = enumerate_space(space, workload)
    todo = [r for r in recipes if key_of(r) not in table["points"]]
    print(f"{len(recipes)} recipes in the space, {len(todo)} to evaluate", flush=True)
    t_start, last_save = time.perf_counter(), time.perf_counter()
    for i, recipe in enumerate(todo):
        t0 = time.perf_counter()
        row: dict[str, Any] = {"recipe": recipe}
        try:
            candidate = build_candidate(recipe, workload, cache)
            ev = evaluate_candidate(candidate, workload, cfg)
            row.update(
                status="complete",
                accuracy=ev.quality[workload.metric],
                quality=ev.quality,
                latency_ms=ev.latency.median_ms,
                latency_p90_ms=ev.latency.p90_ms,
                n_runs=ev.latency.n_runs,
            )
        except Exception as exc:  # recorded as the search records it
            lines = str(exc).strip().splitlines()
            row.update(
                status="failed",
                infeasible=isinstance(exc, InfeasibleRecipe),
                reason=f"{type(exc).__name__}: {lines[0][:300] if lines else ''}",
                trace=traceback.format_exc()[-1500:],
            )
        row["seconds"] = time.perf_counter() - t0
        table["points"][key_of(recipe)] = row
        if time.perf_counter() - last_save > 30 or i == len(todo) - 1:
            table["build_seconds"] += time.perf_counter() - t_start
            table["load_avg_1min"].append(round(os.getloadavg()[0], 2))
            t_start = last_save = time.perf_counter()
            path.write_text(json.dumps(table, indent=1))
            print(f"  {i + 1}/{len(todo)} evaluated, load {os.getloadavg()[0]:.2f}", flush=True)
    return table


# ------------------------------------------------------------------ hypervolume


class Scorer:
    """Hypervolume of feasible points in (quality, log10 latency / baseline) against the
    reference point (baseline quality - limit, 0), with Optuna's own implementation."""

    def __init__(self, table: dict[str, Any], limit: float) -> None:
        base = table["baseline"]
        self.base_acc, self.base_ms, self.limit = base["accuracy"], base["latency_ms"], limit
        self.ref = np.array([-(self.base_acc - limit), 0.0])
        feasible = [p for p in table["points"].values() if self.feasible(p)]
        self.best_ms = min(p["latency_ms"] for p in feasible)
        self.reference_hv = self.hv(feasible)

    def feasible(self, p: dict[str, Any]) -> bool:
        return p["status"] == "complete" and self.base_acc - p["accuracy"] <= self.limit

    def hv(self, pts: list[dict[str, Any]]) -> float:
        from optuna._hypervolume import compute_hypervolume

        loss = np.array(
            [
                [-p["accuracy"], math.log10(p["latency_ms"] / self.base_ms)]
                for p in pts
                if self.feasible(p)
            ]
        ).reshape(-1, 2)
        loss = loss[np.all(loss <= self.ref, axis=1)]  # slower than the baseline: no gain
        return float(compute_hypervolume(loss, self.ref)) if len(loss) else 0.0

    def front(self, pts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        feas = [p for p in pts if self.feasible(p)]
        return sorted(
            (
                p
                for p in feas
                if not any(
                    q["accuracy"] >= p["accuracy"]
                    and q["latency_ms"] <= p["latency_ms"]
                    and (q["accuracy"] > p["accuracy"] or q["latency_ms"] < p["latency_ms"])
                    for q in feas
                )
            ),
            key=lambda p: p["latency_ms"],
        )


# ------------------------------------------------------------------ replay


def sampler_for(name: str, seed: int, budget: int):
    import optuna

    from autoaccel.study import make_sampler

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    startup = max(4, min(10, budget // 4))  # autoaccel's TPE warm-up
    if name == "tpe-univariate":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "gp":
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=startup, warn_independent_sampling=False
        )
    return make_sampler(name, seed, budget)


def replay(name: str, seed: int, budget: int, table, space, workload, scorer, limit):
    """One study of `budget` trials; returns the hypervolume ratio after each trial, the
    fastest feasible latency found, the distinct recipes tried and the sampler's seconds."""
    import optuna

    from autoaccel.space import suggest_recipe
    from autoaccel.study import DIRECTIONS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=list(DIRECTIONS), sampler=sampler_for(name, seed, budget)
    )
    seen: list[dict[str, Any]] = []
    curve, keys = [], set()
    hv = 0.0
    t0 = time.perf_counter()
    for _ in range(budget):
        trial = study.ask()
        recipe = suggest_recipe(trial, space, workload)
        p = table["points"][key_of(recipe)]
        keys.add(key_of(recipe))
        if p["status"] == "failed":
            if p["infeasible"]:
                trial.set_constraint("recipe_runs", 1.0)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            drop = scorer.base_acc - p["accuracy"]
            trial.set_constraint("accuracy_drop", drop - limit)
            study.tell(trial, [p["accuracy"], p["latency_ms"]])
            if scorer.feasible(p):
                seen.append(p)
                hv = scorer.hv(seen)
        curve.append(hv / scorer.reference_hv)
    seconds = time.perf_counter() - t0
    best = min((p["latency_ms"] for p in seen), default=math.inf)
    return {
        "curve": curve,
        "best_ms": best,
        "distinct": len(keys),
        "sampler_ms_per_trial": 1000 * seconds / budget,
    }


def first_reaching(curve: list[float], share: float) -> float:
    return next((i + 1 for i, v in enumerate(curve) if v >= share - 1e-12), math.inf)


def fmt_p(p: float | None) -> str:
    return "" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_n(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="digits-cnn")
    parser.add_argument("--space", default=None, help="space name or YAML (default: built in)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/search-efficiency-cache"))
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budgets", default="10,25,50,100")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--max-accuracy-drop", type=float, default=0.01)
    parser.add_argument("--measure-seconds", type=float, default=1.5)
    parser.add_argument("--rebuild", action="store_true", help="evaluate every recipe again")
    parser.add_argument("--table-only", action="store_true", help="build the table and stop")
    args = parser.parse_args()
    start, load = time.perf_counter(), os.getloadavg()[0]

    from scipy.stats import mannwhitneyu

    from autoaccel.space import load_space
    from autoaccel.workloads import load_workload

    cache = args.cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    if args.space is None:
        space_path = cache / "search_efficiency_space.yaml"
        space_path.write_text(SPACE_YAML)
        args.space = str(space_path)
    space = load_space(args.space)
    workload = load_workload(args.workload, cache)
    table = build_table(args, space, workload, cache)
    if args.table_only:
        return
    limit = args.max_accuracy_drop
    scorer = Scorer(table, limit)
    pts = list(table["points"].values())
    n_feasible = sum(scorer.feasible(p) for p in pts)
    n_failed = sum(p["status"] == "failed" for p in pts)
    front = scorer.front(pts)
    print(
        f"table: {len(pts)} recipes, {n_feasible} feasible, {n_failed} failed, "
        f"{len(front)} on the reference frontier; baseline {scorer.base_acc:.4f} / "
        f"{scorer.base_ms:.4f} ms; fastest feasible {scorer.best_ms:.4f} ms; "
        f"reference hypervolume {scorer.reference_hv:.6g}",
        flush=True,
    )

    budgets = [int(b) for b in args.budgets.split(",")]
    samplers = args.samplers.split(",")
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for name in samplers:
        runs[name] = {}
        t0 = time.perf_counter()
        for budget in budgets:
            runs[name][budget] = [
                replay(name, seed, budget, table, space, workload, scorer, limit)
                for seed in range(args.seeds)
            ]
        print(f"  replayed {name} ({time.perf_counter() - t0:.0f} s)", flush=True)

    top = max(budgets)
    summary: dict[str, Any] = {}
    rows = []
    for name in samplers:
        summary[name] = {}
        for budget in budgets:
            rs = runs[name][budget]
            ratios = [r["curve"][-1] for r in rs]
            best = [scorer.best_ms / r["best_ms"] for r in rs]  # 1.0: found the fastest
            random_ratios = [r["curve"][-1] for r in runs.get("random", {}).get(budget, [])]
            p_value = None
            if name != "random" and random_ratios:
                p_value = float(mannwhitneyu(ratios, random_ratios, alternative="greater").pvalue)
            summary[name][budget] = {
                "hv_ratio_median": float(np.median(ratios)),
                "hv_ratio_min": float(np.min(ratios)),
                "hv_ratio_max": float(np.max(ratios)),
                "hv_ratio": ratios,
                "seeds_at_90pct": int(sum(r >= 0.9 for r in ratios)),
                "best_latency_share_median": float(np.median(best)),
                "distinct_recipes_median": float(np.median([r["distinct"] for r in rs])),
                "sampler_ms_per_trial": float(np.median([r["sampler_ms_per_trial"] for r in rs])),
                "p_greater_than_random": p_value,
            }
        curves = [r["curve"] for r in runs[name][top]]
        to90 = [first_reaching(c, 0.9) for c in curves]
        to95 = [first_reaching(c, 0.95) for c in curves]
        summary[name]["trials_to_90pct"] = to90
        summary[name]["trials_to_95pct"] = to95
        summary[name]["trials_to_90pct_median"] = float(np.median(to90))
        summary[name]["trials_to_95pct_median"] = float(np.median(to95))
        summary[name]["mean_curve_at_top_budget"] = [
            round(float(v), 4) for v in np.mean(curves, axis=0)
        ]
        for budget in budgets:
            s = summary[name][budget]
            rows.append(
                [
                    name,
                    str(budget),
                    f"{s['hv_ratio_median']:.3f}",
                    f"{s['hv_ratio_min']:.3f}-{s['hv_ratio_max']:.3f}",
                    f"{s['seeds_at_90pct']}/{args.seeds}",
                    f"{s['best_latency_share_median']:.3f}",
                    f"{s['distinct_recipes_median']:g}",
                    fmt_p(s["p_greater_than_random"]),
                    fmt_n(summary[name]["trials_to_90pct_median"]) if budget == top else "",
                    fmt_n(summary[name]["trials_to_95pct_median"]) if budget == top else "",
                    f"{s['sampler_ms_per_trial']:.1f}",
                ]
            )
    write(
        "search_efficiency",
        {
            "workload": args.workload,
            "space": args.space,
            "space_yaml": table["space_yaml"],
            "max_accuracy_drop": limit,
            "seeds": args.seeds,
            "budgets": budgets,
            "baseline": table["baseline"],
            "table": {
                "recipes": len(pts),
                "feasible": n_feasible,
                "failed": n_failed,
                "fastest_feasible_ms": scorer.best_ms,
                "build_seconds": table["build_seconds"],
                "build_load_avg_1min": table["load_avg_1min"],
                "measure_seconds": table["measure_seconds"],
                "failure_reasons": sorted({p["reason"] for p in pts if p["status"] == "failed"}),
            },
            "hypervolume": {
                "implementation": "optuna._hypervolume.compute_hypervolume",
                "plane": "(quality, log10(latency_ms / baseline latency_ms)), feasible only",
                "reference_point": {
                    "quality": scorer.base_acc - limit,
                    "log10_latency_over_baseline": 0.0,
                },
                "reference_hv": scorer.reference_hv,
            },
            "reference_frontier": [
                {k: p[k] for k in ("recipe", "accuracy", "latency_ms")} for p in front
            ],
            "summary": summary,
            "seconds": time.perf_counter() - start,
            "load_avg_1min": {"start": load, "end": os.getloadavg()[0]},
        },
        rows,
        [
            "sampler",
            "budget",
            "HV ratio (median)",
            "HV ratio (min-max)",
            "seeds >= 90 %",
            "best latency found / fastest",
            "distinct recipes",
            "p (> random)",
            "trials to 90 % (median)",
            "trials to 95 % (median)",
            "sampler ms/trial",
        ],
    )
    notes = [
        "",
        f"Workload {args.workload}; space: {args.space} ({len(pts)} recipes, {n_feasible} "
        f"feasible at max accuracy drop {limit:g}, {n_failed} failed); baseline "
        f"{scorer.base_acc:.4f} / {scorer.base_ms:.4f} ms; fastest feasible "
        f"{scorer.best_ms:.4f} ms. Table built in {table['build_seconds']:.0f} s, 1-min load "
        f"average while building {min(table['load_avg_1min']):.1f}-"
        f"{max(table['load_avg_1min']):.1f} (2 cores).",
        "",
        "Hypervolume: Optuna's compute_hypervolume over feasible points in (quality, log10 "
        "latency/baseline), reference point (baseline quality - limit, 0). HV ratio: to the "
        f"exhaustive table's ({scorer.reference_hv:.5g}). {args.seeds} seeds per sampler and "
        "budget; each budget is its own study (the sampler configured for that budget, as "
        "`autoaccel search --budget N` configures it). 'best latency found / fastest': the "
        "fastest feasible latency in the table over the fastest the run found (1.0: it found "
        "the recommendation the exhaustive search would give). 'p (> random)': one-sided "
        "Mann-Whitney U of the HV ratios against random search at the same budget. Trials "
        "to 90 % / 95 %: from the budget-" + str(top) + " runs, median over seeds ('never': "
        "not reached within the budget).",
        "",
        "Reference frontier (fastest first):",
        "",
    ]
    for p in front:
        shown = {k: v for k, v in p["recipe"].items() if k != "target.name"}
        notes.append(f"- {p['accuracy']:.4f}, {p['latency_ms']:.4f} ms: `{json.dumps(shown)}`")
    md = RESULTS / "search_efficiency.md"
    md.write_text(md.read_text() + "\n".join(notes) + "\n")
    for name in samplers:
        s = summary[name]
        print(
            f"{name}: trials to 90 % {[fmt_n(x) for x in s['trials_to_90pct']]}, "
            f"to 95 % {[fmt_n(x) for x in s['trials_to_95pct']]}"
        )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
