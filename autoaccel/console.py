"""What `autoaccel search` shows: a live progress bar, then the frontier and the verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class SearchDisplay:
    def __init__(self, budget: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.budget = budget
        self.failed = 0
        self.best: float | None = None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task("starting", total=budget, info="")

    def __enter__(self) -> SearchDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def handle(self, kind: str, payload: Any) -> None:
        if kind == "status":
            self.progress.update(self.task, description=payload)
        elif kind == "resumed":  # trials already in the study count toward the budget
            self.progress.update(self.task, completed=payload)
        elif kind == "trial":
            self.failed += payload.failed
            if payload.feasible and payload.speedup is not None:
                self.best = max(self.best or 0.0, payload.speedup)
            best = f"{self.best:.2f}x" if self.best else "-"
            self.progress.update(
                self.task,
                description="searching",
                completed=payload.done,
                info=f"failed {self.failed} | best speedup within limit {best}",
            )
        elif kind == "done":
            self.progress.update(self.task, description="done")
        elif kind == "warning":
            self.console.print(f"[bold yellow]warning:[/] {payload}", highlight=False)

    def final(self, result) -> None:
        rec = result.recommendation
        base = rec["baseline"]
        table = Table(
            title=f"Pareto frontier — study {result.study} "
            f"({result.n_trials} trials, {result.n_failed} failed)"
        )
        table.add_column("trial", no_wrap=True)
        table.add_column("recipe", overflow="fold", ratio=1, min_width=24)
        scenario = base.get("scenario", {}).get("scenario", "single-stream")
        figure = "p50/p90 ms" if scenario == "single-stream" else f"{scenario} qps"
        for col in (rec["metric"], "drop", figure, "speedup", "source", "MB"):
            table.add_column(col, no_wrap=True, justify="right")

        def shown(p: dict) -> str:
            if scenario == "single-stream":
                return f"{p['latency_ms']:.3f} / {p['latency_p90_ms']:.3f}"
            return f"{p['scenario']['throughput_qps']:,.0f}"

        table.add_row(
            "base",
            base["description"],
            f"{base['accuracy']:.4f}",
            "",
            shown(base),
            "1.00x",
            base["latency_source"],
            f"{base['size_mb']:.2f}",
        )
        for p in rec["frontier"]:
            table.add_row(
                str(p["trial"]),
                p["description"],
                f"{p['accuracy']:.4f}",
                f"{p['accuracy_drop']:+.4f}",
                shown(p),
                f"{p['speedup']:.2f}x",
                p["latency_source"],
                f"{p['size_mb']:.2f}",
            )
        self.console.print(table)
        if rec["recommended"]:
            self.console.print(
                f"[bold green]Recommended[/] (trial {rec['recommended']['trial']}): "
                f"{rec['recommended']['summary']}",
                highlight=False,
            )
        elif rec.get("verdict") == "keep-baseline":
            self.console.print(f"[bold yellow]Keep the baseline:[/] {rec['reason']}")
        elif rec.get("verdict") == "too-noisy":
            self.console.print(f"[bold red]Not ranked:[/] {rec['reason']}")
        else:
            self.console.print(f"[bold yellow]No recommendation:[/] {rec['reason']}")
        if line := hardware_line(rec.get("hardware") or []):
            self.console.print(line, highlight=False)
        self.console.print(
            f"Files: {result.out_dir}  (report.html, report.md, recommendation.json, "
            "frontier.csv, pareto.png, pareto.html)"
        )
        server = result.tracking_uri.startswith(("http://", "https://"))
        browse = "open it in a browser" if server else "browse with `autoaccel ui`"
        self.console.print(
            f"MLflow: {result.tracking_uri} (parent run {result.parent_run_id}); {browse}"
        )


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
