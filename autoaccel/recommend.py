"""The recommendation: one pick (or an honest verdict) from the points of `autoaccel.frontier`.

Policy (`recommend(..., prefer=...)`, `choose`). The search hands `recommend` only the builds
measured here: the recommendation is for this machine. Every other target's best build + plan
is ranked apart (`autoaccel.placement`); `choose` also picks across targets for the report's
goals, where the tie rule below applies.

- Only feasible candidates count: quality within the accuracy limit of the baseline. An
  infeasible point is never recommended; when none is feasible the recommendation is `null`
  with a `reason` and the `closest` points (smallest quality drop first).
- `prefer` names the figure to minimise: `latency` (median ms of one batch; the default),
  `cost` ($ per million inferences) or `energy` (joules per inference). For cost and energy
  only candidates that have the figure count (a target without a published price has no
  cost); the pick lies on the frontier of quality against that figure (`objective_frontier`;
  for latency, `frontier.pareto`, whose dominance allows for timing noise), or within noise
  of its best point (tie rules).
- One speedup, one rule: a measured speedup is the candidate timed interleaved with the
  baseline, each side's figure from the fastest quarter of its runs over the window, with a
  95 % interval from the rounds (`evaluate.paired`); the end-of-search re-timing of the
  quoted recipe replaces its trial's figure everywhere. Every summary quotes the interval
  and the rounds behind it.
- Tie rule among measured points: points whose figure is within the best one's noise (the
  larger interval half width of the two) cannot be ranked by their timings; the most
  accurate of them is the pick, and the rationale names the tie.
- An honest verdict (`verdict`): `recommend`; `keep-baseline` when the fastest feasible
  candidate is not faster than the baseline beyond noise (its interval reaches 1x), listing
  the closest candidates; `too-noisy` when it was timed while other work kept the CPU busy
  even after waiting and re-timing (it is not ranked; run again on a quiet machine);
  `none` when nothing is feasible or nothing completed.
- Tie rule, measured over estimated: a figure measured here is evidence, an estimate is a
  cost model's opinion. A measured candidate whose figure is within the noise of the best
  figure wins over an estimated best: within 15 % when the measured latency is under 1 ms
  (sub-millisecond timings on a shared 2-core machine move that much between runs), within
  5 % otherwise. Cost and energy of a measured candidate are its measured latency times the
  profile's price or power, so the same relative noise applies. Among tied measured points
  the better figure wins, then the higher quality.
- Whatever the pick, its summary says whether the latency is measured or estimated
  (`estimated:<profile>`), and speedup is against a measured baseline. `best_measured` is
  the fastest feasible point measured on the machine writing the recommendation: the one
  re-timed side by side with the baseline at the end of a search.
- Machines: when workers on several machines share a study, each machine measures its own
  baseline, a measured trial's speedup is against its own machine's baseline, and measured
  points are labelled `cpu-local@<host>`, so the report's per-target tables group them by
  machine and no figure from one machine is read as if it came from another.
"""

from __future__ import annotations

from typing import Any

from autoaccel.frontier import (
    Point,
    figure,
    objective_frontier,
    objective_spec,
    tie_tolerance,
    with_figure,
)


def choose(all_points: list[Point], prefer: str = "latency") -> tuple[Point | None, str]:
    """The policy's pick among feasible points for one objective, and why (module doc)."""
    words = objective_words(prefer, all_points)
    feasible = [p for p in all_points if p.feasible]
    pool = with_figure(all_points, prefer)
    if not pool:
        why = (
            f"none of the {len(feasible)} feasible candidates has a {words} figure"
            if feasible
            else "no candidate meets the accuracy limit"
        )
        return None, why
    best = min(pool, key=lambda p: (figure(p, prefer), -p.accuracy, not p.measured, p.trial))
    why = f"lowest {words} among {len(pool)} feasible candidate{'s' * (len(pool) != 1)}"
    if best.measured:
        return _within_noise(best, pool, prefer, why)
    value = figure(best, prefer)
    tied = [
        p
        for p in pool
        if p.measured and figure(p, prefer) <= value * (1 + tie_tolerance(p.latency_ms))
    ]
    if not tied:
        return best, f"{why} ({best.latency_source})"
    pick = min(tied, key=lambda p: (figure(p, prefer), -p.accuracy, p.trial))
    tol = tie_tolerance(pick.latency_ms)
    mine, theirs = _fmt(figure(pick, prefer), prefer), _fmt(value, prefer)
    return pick, (
        f"{why.replace('lowest', 'within noise of the lowest')}: trial {pick.trial}, measured "
        f"on {pick.target} ({mine}), ties within {tol:.0%} with trial {best.trial} "
        f"({best.latency_source}, {theirs}); a measured figure is preferred to an estimate"
    )


def objective_words(prefer: str, points: list[Point]) -> str:
    """What `prefer` minimises, in the words of the study's scenario: `median latency`
    (single-stream) or `ms per query (offline)`; cost and energy as `objective_spec` says."""
    _, words = objective_spec(prefer)
    if prefer != "latency":
        return words
    scenario = next((p.scenario.get("scenario") for p in points if p.scenario), None)
    if scenario in (None, "single-stream"):
        return "median latency"
    return f"ms per query ({scenario} scenario)"


def _within_noise(best: Point, pool: list[Point], prefer: str, why: str) -> tuple[Point, str]:
    """Among measured points whose figure is within the timing noise of the best one, the
    most accurate: the timings cannot rank them, quality can."""
    value = figure(best, prefer)
    tied = [
        p
        for p in pool
        if p.measured and figure(p, prefer) <= value * (1 + max(p.noise, best.noise))
    ]
    pick = max(tied, key=lambda p: (p.accuracy, -figure(p, prefer), -p.trial))
    if len(tied) == 1:
        return best, why
    others = ", ".join(str(p.trial) for p in tied if p is not pick)
    if pick is best:
        return best, f"{why}; trial(s) {others} tie with it within timing noise"
    return pick, (
        f"{why.replace('lowest', 'within timing noise of the lowest')}: trial {pick.trial} "
        f"ties with trial {best.trial} ({_fmt(figure(pick, prefer), prefer)} vs "
        f"{_fmt(value, prefer)}, inside their intervals) at higher quality; the timings "
        f"cannot rank them (also tied: {others})"
    )


def beats_baseline(point: Point) -> bool:
    """Faster than the baseline beyond noise: the speedup's interval lies above 1 (without
    an interval, the speedup clears 1 by the protocol's rule-of-thumb noise)."""
    if point.speedup_ci:
        return point.speedup_ci[0] > 1.0
    return point.speedup > 1.0 + point.noise


def recommend(
    study_name: str,
    workload: dict[str, str],
    baseline: dict[str, Any],
    limit: float,
    frontier: list[Point],
    all_points: list[Point],
    prefer: str = "latency",
    baselines: dict[str, dict[str, Any]] | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """The recommendation JSON. `frontier` is quality against latency (Optuna's
    `best_trials`); `prefer` picks the objective the recommendation minimises; `baselines`
    (host -> baseline) gives each measured point its own machine's baseline; `host` is the
    machine whose best measured point is `best_measured` (default: this one)."""
    import socket

    host = host or socket.gethostname()
    baselines = baselines or {}

    def own(p: Point) -> dict[str, Any]:
        return baselines.get(p.machine, baseline) if p.machine else baseline

    words = objective_words(prefer, all_points or frontier)
    rec: dict[str, Any] = {
        "study": study_name,
        "workload": workload["name"],
        "metric": workload["metric"],
        "metric_description": workload["metric_description"],
        "baseline": baseline,
        "accuracy_limit": {
            "max_drop": limit,
            "min_accuracy": baseline["accuracy"] - limit,
            "unit": f"absolute {workload['metric']} (same unit as the metric)",
        },
        "prefer": prefer,
        "policy": (
            f"prefer {prefer}: lowest {words} among the feasible builds measured here (other "
            "hardware is ranked apart, from each target's projections)"
        ),
        "recommended": None,
        "rationale": None,
        "reason": None,
        "frontier": [p.as_dict() for p in frontier],
    }
    candidates = all_points or frontier
    if prefer != "latency":
        rec["objective_frontier"] = [p.as_dict() for p in objective_frontier(candidates, prefer)]
    pick, why = choose(candidates, prefer)
    rec["verdict"] = "recommend" if pick is not None else "none"
    if pick is not None and pick.measured and pick.contended:
        rec["verdict"] = "too-noisy"
        rec["reason"] = (
            f"the CPU was busy with other work while the best candidate (trial {pick.trial}, "
            f"{_speedup_words(pick)}) was timed, even after waiting and re-timing: its "
            "figure cannot be trusted to rank the candidates; run the same command again on "
            "a quiet machine (the study resumes and re-times the best recipe)"
        )
    elif pick is not None and pick.measured and not beats_baseline(pick):
        rec["verdict"] = "keep-baseline"
        rec["reason"] = (
            f"nothing beats the baseline beyond timing noise: keep {baseline['description']} "
            f"(the fastest feasible candidate, trial {pick.trial}, is {_speedup_words(pick)})"
        )
    if rec["verdict"] in ("too-noisy", "keep-baseline"):
        fastest = sorted(
            (p for p in candidates if p.feasible and p.measured), key=lambda p: -p.speedup
        )
        rec["closest"] = [
            {**p.as_dict(), "summary": summary(p, own(p), workload)} for p in fastest[:3]
        ]
        rec["rationale"] = why
    elif pick is not None:
        rec["recommended"] = {**pick.as_dict(), "summary": summary(pick, own(pick), workload)}
        rec["rationale"] = why
    measured = [p for p in candidates if p.feasible and p.measured and p.machine in (None, host)]
    if measured:
        # the best on this machine, measured: what a user can run and re-time today
        here = min(measured, key=lambda p: p.objective_ms)
        rec["best_measured"] = {**here.as_dict(), "summary": summary(here, own(here), workload)}
    else:
        rec["best_measured"] = None
    machines = sorted({p.machine for p in candidates if p.measured and p.machine})
    if len(machines) > 1:
        rec["machines"] = {
            m: (baselines.get(m) or {}).get("machine", {"host": m}) for m in machines
        }
    if rec["verdict"] in ("too-noisy", "keep-baseline"):
        pass
    elif pick is None and any(p.feasible for p in candidates):
        rec["reason"] = f"prefer {prefer}: {why}"
    elif pick is None and candidates:
        closest = sorted(candidates, key=lambda p: (p.accuracy_drop, p.objective_ms))[:3]
        rec["reason"] = (
            f"no candidate kept {workload['metric']} within {limit} of the baseline "
            f"({baseline['accuracy']:.4f}); the closest was trial {closest[0].trial} "
            f"(drop {closest[0].accuracy_drop:.4f})"
        )
        rec["closest"] = [p.as_dict() for p in closest]
    elif pick is None:
        rec["reason"] = "no trial completed; see the failed trials' reasons"
    return rec


def attach_limits(rec: dict[str, Any], limits: dict[str, float], baseline: dict[str, Any]):
    """Every limited figure in `rec`: the judged metric's limit and each `--limit`'s
    (`limits`), and the recommended and best-measured candidates' value of each, so a
    reader sees what every limit allowed and what the pick kept."""
    quality = baseline.get("quality", {})
    every = {rec["metric"]: rec["accuracy_limit"]["max_drop"], **limits}
    rec["limits"] = {
        name: {"max_drop": d, "baseline": quality[name], "min": quality[name] - d}
        for name, d in every.items()
        if name in quality
    }
    for key in ("recommended", "best_measured"):
        pick = rec.get(key)
        if pick and pick.get("quality"):
            pick["limited"] = {
                name: {
                    "value": pick["quality"][name],
                    "drop": quality[name] - pick["quality"][name],
                    "max_drop": every[name],
                }
                for name in rec["limits"]
                if name in pick["quality"]
            }


def limited_words(pick: dict[str, Any]) -> str:
    """'task_quality 0.6012 (drop -0.0413, limit 0.01); teacher_cosine ...' for a pick with
    more than one limited figure, else ''."""
    limited = pick.get("limited") or {}
    if len(limited) < 2:
        return ""
    return "; ".join(
        f"{name} {v['value']:.4f} (drop {v['drop']:+.4f}, limit {v['max_drop']:g})"
        for name, v in limited.items()
    )


def _fmt(value: float, prefer: str) -> str:
    if prefer == "cost":
        return f"${value:.4g} per million"
    return f"{value:.4g} {'ms' if prefer == 'latency' else 'J'}"


def _speedup_words(point: Point) -> str:
    """`5.0x (95 % interval 4.8-5.2x, 6 interleaved rounds)`: a speedup with its evidence."""
    if not point.speedup_ci:
        return f"{point.speedup:.1f}x"
    low, high = point.speedup_ci
    busy = ", CPU busy while timed" if point.contended else ""
    return (
        f"{point.speedup:.2f}x (95 % interval {low:.2f}-{high:.2f}x, {point.rounds} "
        f"interleaved rounds{busy})"
    )


def summary(point: Point, baseline: dict[str, Any], workload: dict[str, str]) -> str:
    source = (
        f"measured on {point.target}"
        if point.latency_source == "measured"
        else f"{point.latency_source}, against the baseline measured on {baseline['target']}"
    )
    drop = point.accuracy_drop
    change = f"{workload['metric']} {-drop:+.4f}" if drop else f"{workload['metric']} unchanged"
    scenario = point.scenario.get("scenario", "single-stream")
    if scenario == "single-stream" and point.paired_ms:
        mine, theirs = point.paired_ms
        figures = f"{mine:.3f} ms vs {theirs:.3f} ms timed side by side"
    elif scenario == "single-stream":
        figures = f"{point.latency_ms:.3f} ms vs {baseline['latency_ms']:.3f} ms"
    else:
        base = baseline["scenario"]
        how = (
            f"batch {point.scenario['batch_size']}"
            if scenario == "offline"
            else f"max batch {point.scenario['max_batch']}, window "
            f"{point.scenario['window_ms']:g} ms, p99 {point.scenario['p99_ms']:.1f} ms <= "
            f"{point.scenario['latency_bound_ms']:g} ms"
        )
        figures = (
            f"{scenario}: {point.throughput_qps:,.0f} vs {base['throughput_qps']:,.0f} queries/s, "
            f"{how}"
        )
    speed = _speedup_words(point) if point.measured else f"{point.speedup:.1f}x"
    return (
        f"{point.description}: {speed} faster than {baseline['description']} "
        f"({figures}, {source}), "
        f"{change} ({point.accuracy:.4f} vs {baseline['accuracy']:.4f})"
    )
