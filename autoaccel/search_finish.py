"""The end of a search: frontier, recommendation, hardware ranking, side-by-side confirmation,
the study folder, the report and the MLflow parent's artifacts (with the frontier as a table
and the recommended model, logged and registered: `autoaccel.tracking_views`).

The recommendation for this machine is chosen among *measured* points only (the study's
own frontier); every other target's best build + plan comes from the projections stored with
the trials (`autoaccel.placement`) and is ranked beside it, each row saying where its figures
come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoaccel.errors import describe


@dataclass
class SearchResult:
    study: str
    out_dir: Path
    n_trials: int
    n_failed: int
    recommendation: dict[str, Any]
    frontier: list[dict[str, Any]] = field(default_factory=list)
    tracking_uri: str = ""
    parent_run_id: str = ""
    warnings: list[str] = field(default_factory=list)
    """Every warning the search emitted (the CLI prints them as they come)."""
    stopped_by: str = ""
    """Why the search ended before its trial budget (a spent --time-budget), else empty."""


def finish(search, name: str, status: str) -> SearchResult:
    """Frontier, recommendation, plots: written atomically under runs/<study>/ and logged to
    the parent run. `search` is the running `autoaccel.search_run.Search`."""
    from autoaccel.confirmation import (
        CONFIRMATIONS,
        CONFIRMED,
        attach_confirmations,
        retime_until_stable,
    )
    from autoaccel.frontier import machine_baselines, pareto, points
    from autoaccel.placement import hardware_ranking, infeasible_reasons, projected_points
    from autoaccel.plots import write_study_folder
    from autoaccel.recommend import attach_limits, recommend
    from autoaccel.report.words import UNUSABLE, counts, outcome
    from autoaccel.study import FINISHED
    from autoaccel.tracking_views import frontier_table, log_recommended
    from autoaccel.workers import outputs_lock

    study, workload, cfg = search.study, search.workload, search.cfg
    baseline = study.user_attrs["baseline"]
    info = {
        "name": workload.name,
        "metric": workload.metric,
        "metric_description": workload.metric_description,
    }

    def recommendation() -> tuple[dict[str, Any], list, list]:
        measured = [p for p in points(study, baseline) if p.measured]
        front = pareto(study, measured)
        rec = recommend(
            name,
            info,
            baseline,
            cfg.max_accuracy_drop,
            front,
            measured,
            cfg.prefer,
            machine_baselines(study),
            search.machine["host"],
        )
        attach_limits(rec, cfg.limits, baseline)
        return rec, measured, front

    latest: list = []

    def choose() -> dict[str, Any]:
        latest.append(recommendation())
        return latest[-1][0]

    if status != "FINISHED":
        choose()
    else:  # a re-timing is that trial's figure from then on
        retimed: dict[int, dict[str, Any]] = {}

        def retime(pick: dict[str, Any]) -> dict[str, Any]:
            search.emit(
                "status", f"re-timing trial {pick['trial']} side by side with the baseline"
            )
            retimed[pick["trial"]] = confirmed = _confirm(search, pick)
            study.set_user_attr(CONFIRMATIONS, {str(k): v for k, v in retimed.items()})
            study.set_user_attr(CONFIRMED, confirmed)
            return confirmed

        retime_until_stable(choose, lambda r: _to_confirm(r, search.machine["host"]), retime)
        attach_confirmations(latest[-1][0], retimed)
    rec, measured, front = latest[-1]
    projected = projected_points(study, baseline)
    rec["hardware"] = hardware_ranking(measured, projected, infeasible_reasons(study))
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    found = counts(trials)  # the one vocabulary: complete / failed / infeasible / ...
    failed = [t for t in trials if outcome(t.state.name, t.user_attrs) in UNUSABLE]
    rec["trials"] = {
        "finished": sum(found.values()),
        "complete": found.get("complete", 0),
        "failed": found.get("failed", 0),
        "infeasible": found.get("infeasible", 0),
        "stopped_early": found.get("stopped early", 0),
        "repeated": found.get("repeated", 0),
    }
    rec["status"] = status
    if search.stopped_by:
        rec["stopped_by"] = search.stopped_by
    if rec["verdict"] == "too-noisy":
        search.emit("warning", rec["reason"])
    winner = rec["recommended"] if rec["verdict"] == "recommend" else None
    if status == "FINISHED" and winner and _measured_here(winner, search.machine["host"]):
        log_recommended(search, name, winner)  # before the warnings are written: it may warn
    rec["warnings"] = list(search.warnings)
    study.set_user_attr("warnings", rec["warnings"][-50:])  # the report quotes them too
    rec["notes"] = list(search.notes)  # the data split, what does not apply and why
    study.set_user_attr("notes", rec["notes"][-50:])
    if rec["notes"]:
        search.tracker.set_parent_tag("notes", "\n".join(rec["notes"])[:4000])

    out = search.paths.study_dir(name)
    title = f"{workload.name}: {len(measured)} candidates measured here, study {name}"
    with outputs_lock(search.paths.root):
        write_study_folder(
            out, rec, measured, front, baseline, cfg.max_accuracy_drop, workload.metric, title
        )
        _report(search, out, info)
        search.tracker.log_artifacts(out)
    chosen = rec["recommended"]["trial"] if rec["recommended"] else None
    search.tracker.log_table(frontier_table(front, chosen), "frontier.json")

    run_ids = {
        t.number: t.user_attrs["mlflow_run_id"] for t in trials if "mlflow_run_id" in t.user_attrs
    }
    search.tracker.set_pareto(run_ids, {p.trial for p in front})
    if rec["recommended"]:
        pick = rec["recommended"]
        figures = {"best_speedup": pick["speedup"]}
        if pick.get("speedup_ci"):
            figures.update(
                best_speedup_ci_low=pick["speedup_ci"][0],
                best_speedup_ci_high=pick["speedup_ci"][1],
            )
        search.tracker.log_parent_metrics(figures)
    search.tracker.set_parent_tag("verdict", rec["verdict"])
    search.emit("done", rec)
    return SearchResult(
        study=name,
        out_dir=out,
        n_trials=len(trials),
        n_failed=len(failed),
        recommendation=rec,
        frontier=rec["frontier"],
        tracking_uri=search.tracker.uri,
        parent_run_id=search.tracker.parent_id or "",
        warnings=list(search.warnings),
        stopped_by=search.stopped_by,
    )


def _report(search, out: Path, info: dict[str, str]) -> None:
    """The hardware-selection report (report.md, report.html) beside the study's files.
    Everything else is already written, so a report that fails to render is a warning with
    its reason (and a parent-run tag), not a lost search."""
    from autoaccel.report import write_report

    search.emit("status", "writing the report")
    try:
        write_report(
            search.study,
            out,
            workload_info=info,
            limit=search.cfg.max_accuracy_drop,
            prefer=search.cfg.prefer,
        )
    except Exception as exc:
        reason = describe(exc)
        search.tracker.set_parent_tag("report_error", reason)
        search.emit("warning", f"the report could not be written: {reason}")


def _to_confirm(rec: dict[str, Any], host: str) -> dict[str, Any] | None:
    """The recipe whose figure the search quotes: the recommendation when it was measured
    here, else the fastest feasible build measured here (re-timing may show it beats the
    baseline after all, or that a busy machine made it look so)."""
    pick = rec.get("recommended")
    return pick if pick and _measured_here(pick, host) else rec.get("best_measured")


def _measured_here(pick: dict[str, Any], host: str) -> bool:
    return pick.get("latency_source") == "measured" and pick.get("machine") in (None, host)


def _confirm(search, pick: dict[str, Any]) -> dict[str, Any]:
    """The paired re-timing of the quoted recipe, and a warning when its interval and the
    trial's own do not overlap (the CPU's load changed between the two timings)."""
    from autoaccel.confirmation import disagrees

    baseline = search.study.user_attrs["baseline"]
    confirmed = search.baseline_timer.side_by_side(pick, baseline, search.machine["host"])
    if message := disagrees(pick, confirmed):
        search.emit("warning", message)
    search.tracker.log_parent_metrics(
        {
            "confirmed_speedup": confirmed["speedup"],
            "confirmed_speedup_ci_low": confirmed["ci_low"],
            "confirmed_speedup_ci_high": confirmed["ci_high"],
        }
    )
    return confirmed
