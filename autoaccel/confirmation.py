"""The end-of-search re-timing of the quoted recipe, by the same paired rule as its trial
(`autoaccel.evaluate.paired`) with more rounds. It becomes that trial's figure everywhere
(`frontier.points` reads it from the study), so the console, recommendation.json, the report
and MLflow quote one number; this module attaches its details to the picks it re-timed and
says when the trial's own timing disagreed with it."""

from __future__ import annotations

from typing import Any


def disagrees(trial_pick: dict[str, Any], confirmed: dict[str, Any]) -> str | None:
    """A warning when the trial's interval and the confirmation's do not overlap: the CPU's
    load changed between the two timings (the later, longer one is quoted)."""
    ci = trial_pick.get("speedup_ci")
    if not ci or trial_pick.get("confirmed"):
        return None
    low, high = ci
    if high >= confirmed["ci_low"] and confirmed["ci_high"] >= low:
        return None
    return (
        f"trial {trial_pick['trial']}'s speedup was {trial_pick['speedup']:.2f}x "
        f"({low:.2f}-{high:.2f}x) in the search and {confirmed['speedup']:.2f}x "
        f"({confirmed['ci_low']:.2f}-{confirmed['ci_high']:.2f}x) re-timed at the end: the "
        "machine's load changed between the two timings; the re-timing, with more rounds, is "
        "the figure quoted"
    )


def attach_confirmation(rec: dict[str, Any], confirmed: dict[str, Any] | None) -> None:
    """Put the re-timing's details on the picks it re-timed (their speedup already is its)."""
    if not confirmed:
        return
    details = {k: v for k, v in confirmed.items() if k != "trial"}
    for key in ("best_measured", "recommended"):
        pick = rec.get(key)
        if pick and pick["trial"] == confirmed["trial"]:
            pick["confirmation"] = details
    for pick in rec.get("closest") or []:
        if pick["trial"] == confirmed["trial"]:
            pick["confirmation"] = details
