"""A study's files: Pareto plots (PNG; self-contained interactive HTML with plotly inline),
the frontier CSV and the recommendation JSON, written together or not at all."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoaccel.frontier import Point


@dataclass(frozen=True)
class StudyView:
    """What every plot of a study shows: all points, the frontier, the baseline and limit."""

    points: list[Point]
    frontier: list[Point]
    baseline: dict
    limit: float
    metric: str
    title: str


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "d")


def quality_range(kept: list[float], baseline: float, floor: float) -> tuple[float, float]:
    """The quality axis fitted to the points that matter (those within the limit), the
    baseline and the limit line, so one far outlier cannot squash them into a line. An
    axis of figures at most 1 (accuracy, recall) stops just above 1."""
    values = [*kept, baseline, floor]
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.12, abs(hi) * 0.002, 1e-4)
    top = hi + pad
    if hi <= 1.0:
        top = min(top, max(hi, 1.0) + pad * 0.3)
    return lo - pad, top


def scatter_fitted(ax, xs, ys, bottom: float, top: float, **style) -> int:
    """Scatter the points inside [bottom, top]; those outside are drawn on the edge as
    triangles pointing away (same colour). Returns how many were outside."""
    inside = [(x, y) for x, y in zip(xs, ys, strict=True) if bottom <= y <= top]
    below = [x for x, y in zip(xs, ys, strict=True) if y < bottom]
    above = [x for x, y in zip(xs, ys, strict=True) if y > top]
    if inside:
        ax.scatter(*zip(*inside, strict=True), **style)
    edge = {k: v for k, v in style.items() if k in ("color", "c", "alpha", "s")}
    if below:
        ax.scatter(below, [bottom] * len(below), marker="v", clip_on=False, zorder=4, **edge)
    if above:
        ax.scatter(above, [top] * len(above), marker="^", clip_on=False, zorder=4, **edge)
    return len(below) + len(above)


def log_latency_axis(ax) -> None:
    """A log-scale latency axis labelled in plain numbers ("0.01", "1", "20"): people read
    them faster than 10^-2, and matplotlib lays them out without its TeX parser (which was
    a third of the time a report's charts took)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def note_outside(ax, count: int, lowest: float | None) -> None:
    if count:
        low = f" (lowest {lowest:.3g})" if lowest is not None else ""
        ax.text(
            0.01,
            0.01,
            f"{count} point{'s' * (count != 1)} off the axis{low}: triangles on the edge",
            transform=ax.transAxes,
            fontsize=6.5,
            color="#555555",
            va="bottom",
        )


def pareto_png(view: StudyView, out: Path) -> None:
    points, frontier, baseline = view.points, view.frontier, view.baseline
    limit, metric, title = view.limit, view.metric, view.title
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5), dpi=120, layout="constrained")
    ok = [p for p in points if p.feasible]
    bad = [p for p in points if not p.feasible]
    floor = baseline["accuracy"] - limit
    bottom, top = quality_range([p.accuracy for p in ok], baseline["accuracy"], floor)
    off = scatter_fitted(
        ax,
        [p.latency_ms for p in ok],
        [p.accuracy for p in ok],
        bottom,
        top,
        s=18,
        color="#6f93c4",
        label="within the limit",
    )
    off += scatter_fitted(
        ax,
        [p.latency_ms for p in bad],
        [p.accuracy for p in bad],
        bottom,
        top,
        s=18,
        color="#c46f6f",
        marker="x",
        label="over the accuracy limit",
    )
    if frontier:
        ax.plot(
            [p.latency_ms for p in frontier],
            [p.accuracy for p in frontier],
            "o-",
            c="#1f4e8c",
            label="Pareto frontier",
        )
    ax.scatter(
        [baseline["latency_ms"]],
        [baseline["accuracy"]],
        marker="*",
        s=160,
        c="#e08a00",
        label="baseline: " + baseline["description"].replace("$", r"\$"),
        zorder=5,
    )
    ax.axhline(floor, ls="--", c="grey", lw=0.8, label="accuracy limit")
    ax.set_ylim(bottom, top)
    note_outside(ax, off, min((p.accuracy for p in points), default=None))
    log_latency_axis(ax)
    ax.set_xlabel("latency, median ms (log scale; measured on cpu-local)")
    ax.set_ylabel(metric.replace("$", r"\$"))
    ax.set_title(title.replace("$", r"\$"), fontsize=10)
    # outside the data: a legend inside covered the baseline's star
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(out)  # constrained layout makes room for the legend: one draw, not two
    plt.close(fig)


def pareto_html(view: StudyView, out: Path) -> None:
    points, frontier, baseline = view.points, view.frontier, view.baseline
    limit, metric, title = view.limit, view.metric, view.title
    import plotly.graph_objects as go

    def hover(p: Point) -> str:
        return (
            f"trial {p.trial}<br>{html.escape(p.description)}<br>"
            f"{p.latency_ms:.3f} ms ({p.latency_source}), {metric} {p.accuracy:.4f}, "
            f"{p.speedup:.2f}x"
        )

    fig = go.Figure()
    for name, group, style in (
        ("within the limit", [p for p in points if p.feasible], {"color": "#9bb4d4"}),
        (
            "over the limit",
            [p for p in points if not p.feasible],
            {"color": "#d49b9b", "symbol": "x"},
        ),
    ):
        fig.add_trace(
            go.Scatter(
                x=[p.latency_ms for p in group],
                y=[p.accuracy for p in group],
                mode="markers",
                name=name,
                marker=style,
                hovertext=[hover(p) for p in group],
                hoverinfo="text",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[p.latency_ms for p in frontier],
            y=[p.accuracy for p in frontier],
            mode="lines+markers",
            name="Pareto frontier",
            line={"color": "#1f4e8c"},
            hovertext=[hover(p) for p in frontier],
            hoverinfo="text",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[baseline["latency_ms"]],
            y=[baseline["accuracy"]],
            mode="markers",
            name="baseline",
            marker={"symbol": "star", "size": 14, "color": "#e08a00"},
            hovertext=[html.escape(baseline["description"])],
            hoverinfo="text",
        )
    )
    fig.add_hline(
        y=baseline["accuracy"] - limit,
        line_dash="dash",
        line_color="grey",
        annotation_text="accuracy limit",
    )
    fig.update_layout(
        title=html.escape(title),
        xaxis_title="latency, median ms (log)",
        yaxis_title=html.escape(metric),
        xaxis_type="log",
        template="plotly_white",
    )
    fig.write_html(str(out), include_plotlyjs=True, full_html=True)


def write_frontier_csv(frontier: list[Point], out: Path) -> None:
    import csv

    fields: list[str] = [
        "trial",
        "description",
        "target",
        "accuracy",
        "accuracy_drop",
        "latency_ms",
        "latency_p90_ms",
        "latency_source",
        "speedup",
        "size_mb",
    ]
    recipe_keys = sorted({k for p in frontier for k in p.recipe})
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields + recipe_keys)
        for p in frontier:
            row: list[Any] = [getattr(p, f) for f in fields]
            writer.writerow(row + [p.recipe.get(k, "") for k in recipe_keys])


def write_study_folder(
    out: Path,
    rec: dict,
    points: list[Point],
    frontier: list[Point],
    baseline: dict,
    limit: float,
    metric: str,
    title: str,
) -> None:
    """Write every file into a temporary sibling, then swap it in: readers never see a
    half-written study folder. Callers hold `outputs_lock`, so any other temporary sibling
    is a leftover of a killed writer."""
    import json
    import shutil
    import tempfile

    for stale in out.parent.glob(f".{out.name}-*"):  # left by a writer killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "recommendation.json").write_text(json.dumps(rec, indent=2, default=str))
        write_frontier_csv(frontier, tmp / "frontier.csv")
        view = StudyView(points, frontier, baseline, limit, metric, title)
        pareto_png(view, tmp / "pareto.png")
        pareto_html(view, tmp / "pareto.html")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
