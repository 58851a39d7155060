"""One vocabulary for the console, the report and the JSON: how a trial ended, and which way
a quality change points.

A finished trial is, in these words and nothing else:

- `complete`: a candidate was built, judged and timed (within the accuracy limit or not);
- `failed`: an error while building or evaluating it (Optuna FAIL);
- `infeasible`: a recipe that cannot run as asked, for a known, named reason (Optuna PRUNED
  with a violated constraint);
- `stopped early`: training stopped because the run could not reach the accuracy limit
  (Optuna PRUNED with `early_stopped`);
- `repeated`: the sampler proposed a recipe the study had judged; its figures were shown
  again, nothing was built (Optuna PRUNED with `duplicate_of`; free of the budget up to it).

A quality change is the candidate's figure minus the baseline's: positive is better (the
metric is always higher-is-better). `accuracy_drop` in the JSON and MLflow is its negative.
"""

from __future__ import annotations

from typing import Any

OUTCOMES = ("complete", "failed", "infeasible", "stopped early", "repeated")
UNUSABLE = ("failed", "infeasible", "stopped early")
"""Outcomes of a trial that ran and gave no usable candidate (a repeat ran nothing)."""


def outcome(state: str, user_attrs: dict[str, Any]) -> str | None:
    """How one Optuna trial ended, in the vocabulary above; `unfinished` while it runs, None
    for a surplus trial (asked after the budget was taken: never counted)."""
    if "surplus" in user_attrs:
        return None
    if "duplicate_of" in user_attrs and state != "RUNNING":
        return "repeated"
    if state == "COMPLETE":
        return "complete"
    if state == "FAIL":
        return "failed"
    if state == "PRUNED":
        return "stopped early" if "early_stopped" in user_attrs else "infeasible"
    return "unfinished"


def counts(trials) -> dict[str, int]:
    """Outcome -> number of trials (Optuna FrozenTrials), in the vocabulary's order."""
    out: dict[str, int] = {}
    for t in trials:
        if (kind := outcome(t.state.name, t.user_attrs)) is not None:
            out[kind] = out.get(kind, 0) + 1
    order = [*OUTCOMES, "unfinished"]
    return {k: out[k] for k in order if k in out}


def counts_text(found: dict[str, int]) -> str:
    """`10 trials: 8 complete, 1 failed, 1 infeasible` (outcomes with no trial left out)."""
    total = sum(found.values())
    parts = ", ".join(f"{n} {kind}" for kind, n in found.items() if n)
    return f"{total} trial{'s' * (total != 1)}" + (f": {parts}" if parts else "")


def change(drop: float) -> str:
    """A quality drop as the signed change people read (positive = better): -0.0040 for a
    loss, +0.0550 for a gain, +0.0000 for none."""
    return f"{-drop + 0.0:+.4f}"


def change_words(metric: str, drop: float) -> str:
    """`task_quality +0.0550 (better)`, `accuracy -0.0040 (worse)`, `accuracy unchanged`."""
    if abs(drop) < 5e-5:
        return f"{metric} unchanged"
    return f"{metric} {change(drop)} ({'better' if drop < 0 else 'worse'})"
