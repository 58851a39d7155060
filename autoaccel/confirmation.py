"""The end-of-search re-timing of the quoted recipe, by the same paired rule as its trial
(`autoaccel.evaluate.paired`) with more rounds. It becomes that trial's figure everywhere
(`frontier.points` reads it from the study), so the console, recommendation.json, the report
and MLflow quote one number; this module attaches its details to the picks it re-timed and
says when the trial's own timing disagreed with it.

When a re-timing changes which recipe is quoted (the first pick re-timed slower, and another
now ties with it inside that other's own, wider interval), the new pick is re-timed too, up
to `MAX_RETIMINGS`: a recipe is never quoted on a figure only its own noisy timing supports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_RETIMINGS = 3
CONFIRMATIONS = "confirmations"  # study user attr: trial number (str) -> its re-timing
CONFIRMED = "confirmed"  # study user attr: the last re-timing (the quoted recipe's)


def stored_confirmations(user_attrs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """trial -> its end-of-search re-timing, from a study's user attrs (studies from before
    several re-timings have only `confirmed`)."""
    out = {int(k): v for k, v in (user_attrs.get(CONFIRMATIONS) or {}).items()}
    last = user_attrs.get(CONFIRMED) or {}
    if "trial" in last and "ci_low" in last:
        out.setdefault(last["trial"], last)
    return out


def retime_until_stable(
    choose: Callable[[], dict[str, Any]],
    pick_of: Callable[[dict[str, Any]], dict[str, Any] | None],
    retime: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Re-time the quoted pick, choose again, and repeat while the pick changes to a recipe
    not yet re-timed (at most MAX_RETIMINGS). `retime` stores its result where `choose`
    reads it. Returns the last recommendation and every re-timing, by trial."""
    rec = choose()
    done: dict[int, dict[str, Any]] = {}
    while len(done) < MAX_RETIMINGS:
        pick = pick_of(rec)
        if pick is None or pick["trial"] in done:
            break
        done[pick["trial"]] = retime(pick)
        rec = choose()
    return rec, done


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


def attach_confirmations(rec: dict[str, Any], confirmations: dict[int, dict[str, Any]]) -> None:
    """`attach_confirmation` for every re-timing of one finish."""
    for confirmed in confirmations.values():
        attach_confirmation(rec, confirmed)


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
