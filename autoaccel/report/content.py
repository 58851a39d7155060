"""The report laid out: sections of plain-text paragraphs, bullet lists, tables and figures.

Every string here is plain text (user-supplied names included); the Markdown and HTML
renderers escape it, so this module never writes markup.
"""

from __future__ import annotations

from datetime import UTC, datetime

from autoaccel.frontier import NOISE, SUB_MS_NOISE, Point
from autoaccel.recommend import limited_words
from autoaccel.report.blocks import Block, Bullets, Document, Figure, Para, Section, Table
from autoaccel.report.brief import brief
from autoaccel.report.cells import (
    basis,
    described_for,
    dollars,
    goal_figure,
    joules,
    ms,
    point_from,
    qps,
    rests_on,
    source,
    speedup_basis,
    steps,
    trial_list,
)
from autoaccel.report.facts import GOALS, Facts
from autoaccel.report.fidelity import caveat_lines, priced_lines
from autoaccel.report.words import change, counts_text


def layout(facts: Facts, figures: dict[str, str]) -> Document:
    """The document; `figures` maps each chart key to its caption, in order."""
    wl = facts.workload
    return Document(
        title=f"Hardware-selection report: study {facts.study}",
        subtitle=(
            f"Workload {wl['name']}; {counts_text(facts.states)}; "
            f"{len(facts.measured)} distinct builds measured here, each projected on "
            f"{len({p.target for p in facts.points if not p.measured})} estimated targets; "
            "generated "
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from the study storage."
        ),
        sections=[
            _recommendation(facts),
            _workload(facts),
            _per_target(facts),
            _selection(facts),
            Section(
                "Pareto frontiers",
                [
                    Para(
                        f"Quality ({wl['metric']}) against median latency (log scale). Crosses "
                        "are over the accuracy limit (dashed line); the star is the baseline, "
                        "measured here; the axis fits the points within the limit, and points "
                        "below it are triangles on its edge. The frontier in black is the one "
                        "measured here (what the recommendation comes from); every other "
                        "target's points are the same builds projected by its cost model "
                        "(batch-1 latency of its best plan), so one chart compares a "
                        "measurement with estimates."
                    ),
                    *[Figure(k, c) for k, c in figures.items()],
                    _frontier_table(facts),
                ],
            ),
            _contributions(facts),
            _caveats(facts),
            _troubles(facts),
        ],
    )


# -- sections ---------------------------------------------------------------------------


def _recommendation(facts: Facts) -> Section:
    """A headline a person reads in ten seconds, then short lines: details, caveats, why."""
    rec = facts.recommendation
    said = brief(rec)
    blocks: list[Block] = [Para(said.headline, True)]
    details = list(said.details)
    if rec["recommended"]:
        pick = rec["recommended"]
        point = point_from(pick)
        rests = rests_on(point, facts.prefer)
        if not point.measured:
            rests += "; see the caveats on cost-model error"
        details.append(f"Why this one: {rec['rationale']}; it rests on {rests}.")
        if kept := limited_words(pick):
            details.append(f"Every limited figure: {kept}.")
        details.append(f"Policy: {rec['policy']}.")
        here = rec.get("best_measured")
        if here and here["trial"] != pick["trial"]:
            details.append(
                f"Best measured on this machine: trial {here['trial']}, {here['summary']}."
            )
    if details:
        blocks.append(Bullets(details))
    if said.caveats:
        blocks.append(Para("Caveats:"))
        blocks.append(Bullets(said.caveats))
    if not rec["recommended"] and rec.get("closest"):
        keep = rec.get("verdict") in ("keep-baseline", "too-noisy")
        blocks.append(
            Para(
                "The fastest feasible candidates measured here:"
                if keep
                else "The closest candidates to the limit (smallest drop first):"
            )
        )
        blocks.append(_points_table(facts, [point_from(d) for d in rec["closest"]]))
        if not keep:
            blocks.append(
                Para(
                    "Options: loosen the limit (--max-accuracy-drop), search longer, or "
                    "search gentler techniques (less pruning, int8 with per-channel scales)."
                )
            )
    return Section("Recommendation", blocks)


def _workload(facts: Facts) -> Section:
    wl, base, limit = facts.workload, facts.baseline, facts.limit
    metric = wl["metric"] + (f" ({wl['metric_description']})" if wl["metric_description"] else "")
    rows = [
        ["workload", wl["name"]],
        ["quality metric (higher is better)", metric],
        ["quality change", "candidate minus baseline, in the metric's units: positive = better"],
        [
            "accuracy limit",
            f"a drop of at most {limit:g} {wl['metric']} (absolute): at least "
            f"{base['accuracy'] - limit:.4f}",
        ],
        *[
            [
                f"limit on {name}",
                f"a drop of at most {drop:g} (absolute): at least "
                f"{base['quality'][name] - drop:.4f} (baseline {base['quality'][name]:.4f}); "
                "a candidate is feasible only within every limit",
            ]
            for name, drop in facts.limits.items()
        ],
        ["baseline", str(base.get("description", ""))],
        ["baseline quality", f"{base['accuracy']:.4f}"],
        [
            "baseline latency p50 / p90",
            f"{ms(base['latency_ms'])} / {ms(base.get('latency_p90_ms'))}, "
            f"{base.get('latency_source', 'measured')} on {base.get('target', 'cpu-local')}"
            + (f", {base['latency_runs']} runs" if base.get("latency_runs") else ""),
        ],
        ["baseline size", f"{base.get('size_mb', float('nan')):.3f} MB"],
    ]
    blocks: list[Block] = [Table(["", "value"], rows)]
    notes = facts.recommendation.get("notes") or []
    if notes:  # how the data was split, which techniques do not apply and why
        blocks += [Para("Stated at the start of the search:"), Bullets(notes)]
    return Section("Workload and baseline", blocks)


def _per_target(facts: Facts) -> Section:
    metric = facts.workload["metric"]
    headers = ["target", "figures from", "trial", "recipe", "latency p50 / p90", "speedup"]
    headers += ["throughput", f"{metric} (change)", "energy / inference", "$ / 1M inferences"]
    rows = []
    for row in facts.targets:
        p = row.best
        if p is None:
            over = row.complete - row.feasible
            why = row.reason or (
                f"{row.complete} builds, {over} over the limit, {row.failed} it cannot run"
            )
            rows.append([row.target, "-", "-", "none within the limit", why] + ["-"] * 5)
            continue
        latency = (
            f"{ms(p.latency_ms)} / {ms(p.latency_p90_ms)}" if p.measured else ms(p.latency_ms)
        )
        rows.append(
            [
                row.target,
                basis(p),
                str(p.trial),
                p.description,
                latency,
                f"{p.speedup:.2f}x{speedup_basis(p)}",
                qps(p.throughput_qps),
                f"{p.accuracy:.4f} ({change(p.accuracy_drop)})",
                joules(p.energy_j),
                dollars(p.cost_per_million_usd),
            ]
        )
    return Section(
        "Best recipe per target",
        [
            Para(
                "For each target, its fastest build within the accuracy limit. Every build was "
                "measured here (cpu-local) and projected on every other target over that "
                "target's plan grid (batch size, data / tensor / pipeline parallelism): "
                "'figures from' says what a row rests on. An estimated row's recipe names the "
                "plan its latency comes from; its throughput, energy and $ are each the best "
                "plan for that figure, and its speedup is against the baseline projected on "
                "the same target by the same cost model (a fp32 baseline an int8-only chip "
                "cannot run: against the baseline measured here). Energy and cost of a "
                "measured build multiply its measured latency by the cpu-local profile's power "
                "and price, so they are estimates too; '-' means the profile publishes no "
                "figure (e.g. no price)."
            ),
            Table(headers, rows),
        ],
    )


def _selection(facts: Facts) -> Section:
    if len({row.target for row in facts.targets}) == 1:
        return _selection_one(facts)
    rows = []
    for g in facts.goals:
        p = g.point
        if p is None:
            rows.append([GOALS[g.goal], "-", "-", "-", "-", g.why])
            continue
        runner = next((q for q in g.ranking if q.target != p.target), None)
        rows.append(
            [
                GOALS[g.goal],
                f"{p.target}, trial {p.trial}: {described_for(p, g.goal)}",
                goal_figure(p, g.goal),
                rests_on(p, g.goal),
                f"{runner.target}: {goal_figure(runner, g.goal)}" if runner else "-",
                g.why,
            ]
        )
    on_estimates = [
        GOALS[g.goal] for g in facts.goals if g.point is not None and not g.point.measured
    ]
    blocks: list[Block] = [
        Table(["goal", "choice", "figure", "rests on", "next-best target", "why"], rows),
        Para(
            "Choices resting on cost-model estimates: "
            + (", ".join(on_estimates) if on_estimates else "none (every pick is measured here)")
            + "."
        ),
    ]
    targets = sorted({p.target for g in facts.goals for p in g.ranking})
    ranks = {g.goal: {p.target: (i + 1, p) for i, p in enumerate(g.ranking)} for g in facts.goals}
    goals = ["latency", "cost", "energy", "throughput"]
    table = []
    for t in sorted(targets, key=lambda t: ranks[facts.prefer].get(t, (999, None))[0]):
        cells = [t]
        for goal in goals:
            rank, p = ranks[goal].get(t, (None, None))
            cells.append(f"#{rank}: {goal_figure(p, goal)}" if p else "-")
        table.append(cells)
    if table:
        blocks.append(Para(f"Targets ranked per goal (rows in order of {facts.prefer}):"))
        blocks.append(Table(["target", *[GOALS[g] for g in goals]], table))
    return Section("Hardware selection by goal", blocks)


def _selection_one(facts: Facts) -> Section:
    """One target: every goal's pick in one short table, the recipe named once per trial."""
    rows, named = [], set()
    for g in facts.goals:
        p = g.point
        if p is None:
            rows.append([GOALS[g.goal], "-", "-", g.why])
            continue
        recipe = "" if p.trial in named else f": {p.description}"
        named.add(p.trial)
        rows.append([GOALS[g.goal], f"trial {p.trial}{recipe}", goal_figure(p, g.goal), g.why])
    target = facts.targets[0].target
    return Section(
        "Hardware selection by goal",
        [
            Para(
                f"Only {target} was searched, so there is no hardware to choose between; "
                "the pick for each goal on it:"
            ),
            Table(["goal", "choice", "figure", "why"], rows),
        ],
    )


def _frontier_table(facts: Facts) -> Block:
    if not facts.frontier:
        return Para("No candidate meets the accuracy limit: the frontier is empty.")
    return _points_table(facts, facts.frontier)


def _contributions(facts: Facts) -> Section:
    blocks: list[Block] = [
        Para(
            "Parameter importances (Optuna fANOVA over the completed trials; parameters present "
            "in every trial only, so conditional ones such as calibration are not assessed). "
            "A high share means the parameter explains much of the objective's variation."
        )
    ]
    names = sorted(
        {k for imp in facts.importances for k in imp.values},
        key=lambda k: -max(imp.values.get(k, 0.0) for imp in facts.importances),
    )
    if names:
        rows = [
            [k, *[f"{imp.values[k]:.2f}" if k in imp.values else "-" for imp in facts.importances]]
            for k in names
        ]
        blocks.append(Table(["parameter", *[imp.objective for imp in facts.importances]], rows))
    notes = [f"{imp.objective}: {imp.note}" for imp in facts.importances if imp.note]
    if notes:
        blocks.append(Bullets(notes))
    rec = facts.recommendation["recommended"]
    if rec:
        blocks.append(Para(f"The recommended recipe (trial {rec['trial']}), step by step:"))
        blocks.append(Table(["technique", "settings", "effect"], steps(rec["recipe"])))
    return Section("What each technique contributed", blocks)


def _caveats(facts: Facts) -> Section:
    f = facts.fidelity
    items = caveat_lines(f, facts.workload["name"]) if f is not None else []
    machines = facts.recommendation.get("machines")
    if machines:
        described = "; ".join(
            f"{host}: {m.get('cpu', '?')}, {m.get('threads', '?')} threads"
            for host, m in machines.items()
        )
        items.append(
            f"Measured on {len(machines)} machines ({described}). Each machine measured its "
            "own baseline; a measured speedup is against its own machine's baseline, and "
            "measured candidates are listed per machine (cpu-local@host), never compared as "
            "if one machine had timed them all."
        )
    items.append(
        f"Measurement noise: on this shared machine, measured differences under "
        f"{SUB_MS_NOISE:.0%} between sub-millisecond candidates (under {NOISE:.0%} above 1 ms) "
        "are noise unless repeated; the policy treats such figures as tied and prefers the "
        "measured one."
    )
    items += priced_lines(f) if f is not None else []
    items.append(
        "Energy and $ per million inferences of estimated targets come from the profiles' "
        "published power and prices (some assumed; autoaccel targets show NAME cites each); "
        "they scale with latency, so they inherit its error."
    )
    items.append(
        "Quality is always measured by running each candidate on the validation data here, "
        "whatever the target; a target that computes differently (e.g. int8-only units) may "
        "differ slightly."
    )
    return Section("Caveats", [Bullets(items)])


TROUBLES = "Trials that failed, were infeasible, stopped early or missed the limit"


def _troubles(facts: Facts) -> Section:
    if not facts.troubles:
        return Section(
            TROUBLES,
            [Para("None: every finished trial produced a candidate within the limit.")],
        )
    rows = [[g.kind, str(len(g.trials)), trial_list(g.trials), g.reason] for g in facts.troubles]
    return Section(
        TROUBLES,
        [
            Para(
                "Grouped by kind and reason (reasons that differ only in numbers are grouped; "
                "one is shown). The full reason and traceback of each is in its MLflow run."
            ),
            Table(["kind", "count", "trials", "reason"], rows),
        ],
    )


def _points_table(facts: Facts, pts: list[Point]) -> Table:
    rows = [
        [
            str(p.trial),
            p.target,
            p.description,
            f"{p.accuracy:.4f}",
            change(p.accuracy_drop),
            f"{ms(p.latency_ms)} / {ms(p.latency_p90_ms)}",
            f"{p.speedup:.2f}x",
            source(p),
        ]
        for p in pts
    ]
    headers = ["trial", "target", "recipe", facts.workload["metric"], "change", "p50 / p90"]
    return Table([*headers, "speedup", "latency"], rows)


__all__ = ["Document", "Section", "Para", "Bullets", "Table", "Figure", "layout"]
