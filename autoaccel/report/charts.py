"""The report's charts as PNG bytes (matplotlib, Agg): the Pareto frontier of every target
together (a colour and a marker per target), then one chart per target. The quality axis fits
the points within the limit; points far below are drawn on the edge and counted."""

from __future__ import annotations

import io
import re

from autoaccel.frontier import Point, objective_frontier
from autoaccel.plots import (
    MARKERS,
    log_latency_axis,
    note_outside,
    quality_range,
    scatter_fitted,
)
from autoaccel.report.facts import Facts


def render(facts: Facts) -> dict[str, tuple[str, bytes]]:
    """Chart key -> (caption, PNG). Keys are safe file names. With one target there is one
    chart (the all-targets chart would be the same picture)."""
    targets = [
        row.target for row in facts.targets if any(p.target == row.target for p in facts.points)
    ]
    styles = _styles(targets)
    if len(targets) <= 1:
        name = targets[0] if targets else "cpu-local"
        return {
            f"pareto-{_slug(name)}": (
                f"{name}: {len(facts.points)} candidates, the frontier in black.",
                _chart(facts, facts.points, styles, facts.frontier, name),
            )
        }
    charts = {
        "pareto-all": (
            "Every target together: each target's own points (measured here, or the same "
            "builds projected), the frontier measured here in black.",
            _chart(facts, facts.points, styles, facts.frontier, "all targets"),
        )
    }
    for name in targets:
        mine = [p for p in facts.points if p.target == name]
        kind = "measured" if all(p.measured for p in mine) else "estimated"
        charts[f"pareto-{_slug(name)}"] = (
            f"{name} ({kind}): {len(mine)} candidate{'s' if len(mine) != 1 else ''}.",
            _chart(facts, mine, styles, None, name),
        )
    return charts


def _chart(
    facts: Facts,
    pts: list[Point],
    styles: dict[str, tuple[str, str]],
    overall: list[Point] | None,
    title: str,
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, metric = facts.baseline, facts.workload["metric"]
    small = overall is None
    size = (6.4, 3.4) if small else (9.0, 4.8)
    fig, ax = plt.subplots(figsize=size, dpi=110, layout="constrained")
    floor = base["accuracy"] - facts.limit
    bottom, top = quality_range([p.accuracy for p in pts if p.feasible], base["accuracy"], floor)
    off = 0
    for name in dict.fromkeys(p.target for p in pts):
        mine = [p for p in pts if p.target == name]
        ok = [p for p in mine if p.feasible]
        bad = [p for p in mine if not p.feasible]
        colour, marker = styles[name]
        kind = "measured" if mine[0].measured else "estimated"
        off += scatter_fitted(
            ax,
            [p.latency_ms for p in ok],
            [p.accuracy for p in ok],
            bottom,
            top,
            s=24,
            color=colour,
            marker=marker,
            alpha=0.85,
            label=_text(f"{name} ({kind})"),
        )
        off += scatter_fitted(
            ax,
            [p.latency_ms for p in bad],
            [p.accuracy for p in bad],
            bottom,
            top,
            s=22,
            color=colour,
            marker="x",
            alpha=0.6,
        )
        front = objective_frontier(mine, "latency")
        if front:
            ax.plot(
                [p.latency_ms for p in front],
                [p.accuracy for p in front],
                "-",
                color=colour,
                lw=1.2,
                drawstyle="steps-post",
            )
    if overall:
        ax.plot(
            [p.latency_ms for p in overall],
            [p.accuracy for p in overall],
            "o-",
            color="black",
            mfc="none",
            ms=9,
            lw=1.0,
            drawstyle="steps-post",
            label="frontier measured here",
        )
    ax.scatter(
        [base["latency_ms"]],
        [base["accuracy"]],
        marker="*",
        s=160,
        color="#e08a00",
        edgecolors="black",
        linewidths=0.5,
        zorder=5,
        label="baseline (measured)",
    )
    ax.axhline(floor, ls="--", color="grey", lw=0.8, label="accuracy limit")
    ax.scatter([], [], marker="x", color="grey", label="over the limit")
    ax.set_ylim(bottom, top)
    note_outside(ax, off, min((p.accuracy for p in pts), default=None))
    log_latency_axis(ax)
    ax.set_xlabel("median latency, ms (log scale)")
    ax.set_ylabel(_text(metric))
    ax.set_title(_text(title), fontsize=10)
    ax.grid(True, which="major", alpha=0.25)
    # outside the data: inside, a legend of many targets hid points and the baseline
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    buf = io.BytesIO()
    # the constrained layout makes room for the outside legend: one draw (a tight bounding box
    # drew every chart twice, half of a report's time)
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _styles(targets: list[str]) -> dict[str, tuple[str, str]]:
    """A colour and a marker per target, so no two targets look alike even past ten colours
    (and where colours are hard to tell apart, the markers differ)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {
        name: (
            "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in cmap(i % 10)[:3])),
            MARKERS[i % len(MARKERS)],
        )
        for i, name in enumerate(sorted(targets))
    }


def _text(value: str) -> str:
    """A name shown as itself: matplotlib reads `$...$` as TeX."""
    return value.replace("$", r"\$")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]
