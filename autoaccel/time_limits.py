"""Time limits a search keeps: a wall-clock budget for the whole invocation (`--time-budget`)
and a per-trial limit, so that no single candidate runs away with the budget.

The per-trial limit, unless `--trial-timeout` sets one, comes from the study's own history:
`RUNAWAY_FACTOR` times the median duration of the trials it built and finished, never below
`FLOOR_S` (a distilled student trains for minutes on 2 cores); until `MIN_HISTORY` such
trials exist, `FIRST_LIMIT_S`. A trial past its limit is stopped and failed with the reason.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass

from autoaccel.errors import UserError

RUNAWAY_FACTOR = 5.0
FLOOR_S = 600.0
FIRST_LIMIT_S = 1800.0
MIN_HISTORY = 5

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|min|m|sec|s)")


def parse_duration(text: str | float | int, option: str = "--time-budget") -> float:
    """Seconds from `45m`, `1h30m`, `90s`, `2700` (plain numbers are seconds)."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip().lower().replace(" ", "")
        try:
            seconds = float(raw)
        except ValueError:
            parts = _PART.findall(raw)
            if not parts or "".join(n + u for n, u in parts) != raw:
                raise UserError(
                    f"{option} {text!r}: not a duration; write e.g. 45m, 1h30m, 90s or a "
                    "number of seconds"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 < seconds <= 30 * 86400:
        raise UserError(f"{option} {text!r}: give a duration above 0 and at most 30 days")
    return seconds


def shown(seconds: float) -> str:
    """`2700.0` -> `45m`, `5400` -> `1h30m`, `90.5` -> `90.5s`."""
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    hours, minutes = divmod(int(seconds) // 60, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or not hours else "")


class Deadline:
    """This invocation's wall-clock budget, counted from its start (a resumed search gets a
    new one): checked between trials, so a search ends at the first trial boundary after it."""

    def __init__(self, budget_s: float | None, clock=time.monotonic) -> None:
        self.budget_s = budget_s
        self._clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self._clock() - self.start

    def spent(self) -> bool:
        return self.budget_s is not None and self.elapsed() >= self.budget_s


@dataclass(frozen=True)
class TrialLimit:
    """How long the next trial may take, and why that long (quoted when a trial is stopped)."""

    seconds: float
    reason: str


def trial_limit(durations: list[float], explicit: float | None) -> TrialLimit:
    """The next trial's limit from the durations (s) of the study's finished, built trials."""
    if explicit is not None:
        return TrialLimit(explicit, f"--trial-timeout {explicit:g} s")
    if len(durations) < MIN_HISTORY:
        return TrialLimit(
            FIRST_LIMIT_S,
            f"the default limit of {shown(FIRST_LIMIT_S)} until {MIN_HISTORY} trials have "
            "finished; set your own with --trial-timeout",
        )
    median = statistics.median(durations)
    seconds = max(FLOOR_S, RUNAWAY_FACTOR * median)
    return TrialLimit(
        seconds,
        f"the default limit: {RUNAWAY_FACTOR:g}x the study's median trial ({median:.0f} s over "
        f"{len(durations)} trials), at least {shown(FLOOR_S)}; set your own with --trial-timeout",
    )


def built_durations(study) -> list[float]:
    """Wall seconds of the study's finished trials that built something (a repeated recipe,
    reused from its earlier trial, took no time and would pull the median down)."""
    import optuna

    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if "duplicate_of" in t.user_attrs or t.datetime_start is None:
            continue
        if t.datetime_complete is not None:
            out.append((t.datetime_complete - t.datetime_start).total_seconds())
    return out
