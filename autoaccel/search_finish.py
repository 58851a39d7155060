"""The end of a search: frontier, recommendation, hardware ranking, side-by-side confirmation,
the study folder, the report and the MLflow parent's artifacts.

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


def finish(search, name: str, status: str) -> SearchResult:
    """Frontier, recommendation, plots: written atomically under runs/<study>/ and logged to
    the parent run. `search` is the running `autoaccel.search_run.Search`."""
    from autoaccel.confirmation import attach_confirmation
    from autoaccel.frontier import machine_baselines, pareto, points, recommend
    from autoaccel.placement import hardware_ranking, infeasible_reasons, projected_points
    from autoaccel.plots import write_study_folder
    from autoaccel.study import FINISHED
    from autoaccel.workers import outputs_lock

    study, workload, cfg = search.study, search.workload, search.cfg
    baseline = study.user_attrs["baseline"]
    measured = [p for p in points(study, baseline) if p.measured]
    front = pareto(study, measured)
    info = {
        "name": workload.name,
        "metric": workload.metric,
        "metric_description": workload.metric_description,
    }
    rec = recommend(
        name,
        info,
        baseline,
        cfg.max_accuracy_drop,
        front,
        measured,
        cfg.prefer,
        machine_baselines(study),
    )
    projected = projected_points(study, baseline)
    rec["hardware"] = hardware_ranking(measured, projected, infeasible_reasons(study))
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    failed = [t for t in trials if t.state.name in ("FAIL", "PRUNED")]
    rec["trials"] = {"finished": len(trials), "failed": len(failed), "complete": len(measured)}
    rec["status"] = status
    local_best = rec.get("best_measured")
    if local_best and status == "FINISHED":
        search.emit("status", "confirming the best measured recipe side by side with the baseline")
        confirmed = _confirm(search, local_best, baseline)
        study.set_user_attr("confirmed", confirmed)
        attach_confirmation(rec, confirmed)

    out = search.paths.study_dir(name)
    title = f"{workload.name}: {len(measured)} candidates measured here, study {name}"
    with outputs_lock(search.paths.root):
        write_study_folder(
            out, rec, measured, front, baseline, cfg.max_accuracy_drop, workload.metric, title
        )
        _report(search, out, info)
        search.tracker.log_artifacts(out)

    run_ids = {
        t.number: t.user_attrs["mlflow_run_id"] for t in trials if "mlflow_run_id" in t.user_attrs
    }
    search.tracker.set_pareto(run_ids, {p.trial for p in front})
    if rec["recommended"]:
        search.tracker.log_parent_metrics({"best_speedup": rec["recommended"]["speedup"]})
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


def _confirm(search, best: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The side-by-side speedup of the best measured recipe, and a warning when it is far
    from the search's own figure (the CPU's load changed between the search's timings)."""
    from autoaccel.confirmation import disagrees

    confirmed = search.baseline_timer.side_by_side(best, baseline, search.machine["host"])
    speedup = confirmed["speedup"]
    if disagrees(best.get("speedup"), speedup):
        search.emit(
            "warning",
            f"the best recipe's speedup was {best['speedup']:.1f}x in the search but "
            f"{speedup:.1f}x side by side: the CPU was busier during one of the timings; "
            "the side-by-side figure is the one to trust",
        )
    search.tracker.log_parent_metrics({"confirmed_speedup": speedup})
    return confirmed
