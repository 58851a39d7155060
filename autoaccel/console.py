"""What `autoaccel search` shows: a live progress line, then the frontier and the verdict.

Everything fits 80 columns: the progress line names the current step and how long it (or the
running trial) has taken, folding onto a second line when narrow; the final table wraps the
recipe column and never cuts a number.
"""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

from autoaccel.report.brief import brief
from autoaccel.report.words import UNUSABLE, change, counts_text

TRIAL_WORK = "building, judging and timing the candidate"
"""The step shown while a trial runs and its evaluator has not named a finer one."""

SHOWN_CAVEATS = 3


class StepColumn(ProgressColumn):
    """The current step and its clock, re-rendered at every refresh: `trial 4/10, 0:45:
    training the student · 1 failed · best 2.10x`. Folds rather than being cut."""

    def __init__(self, display: SearchDisplay) -> None:
        super().__init__(table_column=Column(ratio=1, overflow="fold", no_wrap=False))
        self.display = display

    def render(self, task) -> Text:
        return Text(self.display.step_line())


class SearchDisplay:
    def __init__(self, budget: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.budget = budget
        self.tally: dict[str, int] = {}  # outcome -> trials of this invocation
        self.best: float | None = None
        self.step = "starting"
        self.step_since = time.monotonic()
        self.position: int | None = None  # the running trial's place in the budget
        self.trial_since = self.step_since
        self.progress = Progress(
            BarColumn(bar_width=12),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            StepColumn(self),
            console=self.console,
            transient=False,
            expand=True,
        )
        self.task = self.progress.add_task("", total=budget)

    def __enter__(self) -> SearchDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def step_line(self) -> str:
        now = time.monotonic()
        if self.position is not None:
            head = f"trial {self.position}/{self.budget}, {_clock(now - self.trial_since)}: "
        else:
            head = ""
        line = f"{head}{self.step}"
        if self.position is None and self.step not in ("done", "starting"):
            line += f" ({_clock(now - self.step_since)})"
        bits = [f"{n} {kind}" for kind, n in self.tally.items() if kind != "complete" and n]
        if self.best and self.step != "done":  # the trials' own timings, until re-timed
            bits.append(f"best so far {self.best:.2f}x within the limit")
        elif self.best:  # at the end: the quoted figure (the pick, re-timed side by side)
            bits.append(f"recommended {self.best:.2f}x")
        return " · ".join([line, *bits])

    def _set_step(self, text: str) -> None:
        self.step, self.step_since = text, time.monotonic()
        self.progress.refresh()

    def _next_trial(self, done: int) -> None:
        """The trial after `done` finished ones starts now (none when the budget is met)."""
        self.position = done + 1 if done < self.budget else None
        self.trial_since = time.monotonic()
        self._set_step(TRIAL_WORK if self.position else "finishing")

    def handle(self, kind: str, payload: Any) -> None:
        if kind == "status":
            self._set_step(str(payload))
        elif kind == "resumed":  # trials already in the study count toward the budget
            self.progress.update(self.task, completed=payload)
            self._next_trial(payload)
        elif kind == "trial":
            outcome = {"stopped": "stopped early"}.get(payload.state, payload.state)
            self.tally[outcome] = self.tally.get(outcome, 0) + 1
            if payload.feasible and payload.speedup is not None:
                self.best = max(self.best or 0.0, payload.speedup)
            self.progress.update(self.task, completed=payload.done)
            self._next_trial(payload.done)
        elif kind == "done":  # never a second figure: the recommendation's is the one
            self.best = ((payload or {}).get("recommended") or {}).get("speedup")
            self.position = None
            self._set_step("done")
        elif kind == "warning":
            self.console.print(f"[bold yellow]warning:[/] {payload}", highlight=False)
        elif kind == "note":  # a fact about this search, said once at its start
            self.console.print(f"[bold]note:[/] {payload}", highlight=False)

    def trials_text(self, result) -> str:
        """`10 trials: 8 complete, 1 failed, 1 infeasible` in the one vocabulary."""
        found = dict(result.recommendation.get("trials") or {})
        if "infeasible" in found:  # the search recorded the split itself
            split = {
                "complete": found.get("complete", 0),
                "failed": found.get("failed", 0),
                "infeasible": found.get("infeasible", 0),
                "stopped early": found.get("stopped_early", 0),
                "repeated": found.get("repeated", 0),
            }
            return counts_text(split)
        bad = sum(n for k, n in self.tally.items() if k in UNUSABLE)
        if bad == result.n_failed:  # every unusable trial ran in this invocation
            split = {"complete": result.n_trials - bad - self.tally.get("repeated", 0)}
            split.update({k: n for k, n in self.tally.items() if k != "complete"})
            return counts_text(split)
        return (
            f"{result.n_trials} trials: {result.n_trials - result.n_failed} complete, "
            f"{result.n_failed} failed, infeasible or stopped early"
        )

    def final(self, result) -> None:
        rec = result.recommendation
        self.console.print(
            frontier_table(rec, f"study {result.study}, {self.trials_text(result)}")
        )
        show_brief(self.console, rec)
        if line := hardware_line(rec.get("hardware") or []):
            self.console.print(line, highlight=False)
        self.console.print(
            f"Files: {result.out_dir}  (report.html, report.md, recommendation.json, "
            "frontier.csv, pareto.png, pareto.html)",
            highlight=False,
        )
        server = result.tracking_uri.startswith(("http://", "https://"))
        browse = "open it in a browser" if server else "browse with `autoaccel ui`"
        self.console.print(
            f"MLflow: {result.tracking_uri} (parent run {result.parent_run_id}); {browse}",
            highlight=False,
        )


def frontier_table(rec: dict[str, Any], about: str) -> Table:
    """The baseline and the frontier measured here. Numeric columns never wrap or shrink;
    the recipe column takes what is left and wraps."""
    base = rec["baseline"]
    metric = rec["metric"]
    quality = metric if len(metric) <= 8 else "quality"
    scenario = base.get("scenario", {}).get("scenario", "single-stream")
    single = scenario == "single-stream"
    figure = "p50/p90 ms" if single else f"{scenario} q/s"
    table = Table(
        title=f"Pareto frontier — {about}",
        caption=(
            (f"quality = {metric}; " if quality != metric else "")
            + "change vs the baseline (positive = better); every figure measured here"
        ),
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        collapse_padding=True,
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("trial", no_wrap=True, min_width=5)
    table.add_column("recipe", overflow="fold", ratio=1, min_width=12)
    for col in (quality, "change", figure, "speedup", "MB"):
        table.add_column(col, no_wrap=True, justify="right", min_width=len(col))

    def shown(p: dict) -> str:
        if single:
            return f"{_fig(p['latency_ms'])}/{_fig(p['latency_p90_ms'])}"
        return f"{p['scenario']['throughput_qps']:,.0f}"

    table.add_row(
        "base",
        base["description"],
        f"{base['accuracy']:.4f}",
        "",
        shown(base),
        "1.00x",
        f"{base['size_mb']:.2f}",
    )
    for p in rec["frontier"]:
        table.add_row(
            str(p["trial"]),
            p["description"],
            f"{p['accuracy']:.4f}",
            change(p["accuracy_drop"]),
            shown(p),
            f"{p['speedup']:.2f}x",
            f"{p['size_mb']:.2f}",
        )
    return table


def show_brief(console: Console, rec: dict[str, Any]) -> None:
    """The recommendation's headline, its details and up to three caveats."""
    said = brief(rec)
    colour = "green" if rec.get("recommended") else "yellow"
    console.print(f"[bold {colour}]{said.headline}[/]", highlight=False)
    for line in said.details:
        console.print(Padding(Text(line), (0, 0, 0, 2)))
    for line in said.caveats[:SHOWN_CAVEATS]:
        console.print(Padding(Text.assemble(("caveat: ", "yellow"), line), (0, 0, 0, 2)))
    if len(said.caveats) > SHOWN_CAVEATS:
        more = len(said.caveats) - SHOWN_CAVEATS
        console.print(f"  (+{more} more caveats: see the report's Recommendation section)")


def hardware_line(rows: list[dict]) -> str:
    """One line on where else the builds would run fastest (estimates, labelled)."""
    ranked = [r for r in rows if r.get("objective_ms") is not None]
    if len(ranked) < 2:
        return ""
    shown = ", ".join(
        f"{r['target']} {r['objective_ms']:.3g} ms"
        + (" (measured)" if r["source"] == "measured" else "")
        for r in ranked[:3]
    )
    none = len(rows) - len(ranked)
    tail = f"; {none} cannot run any build within the limit" if none else ""
    return (
        f"Hardware ranking ({len(ranked)} targets, each one's best build + plan; estimates "
        f"unless marked): {shown}{tail} — see the report"
    )


def _fig(ms: float) -> str:
    """Milliseconds in 4 significant figures at most: 0.08412 -> 0.0841, 12.345 -> 12.35."""
    return f"{ms:.3f}" if ms < 1 else f"{ms:.4g}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
