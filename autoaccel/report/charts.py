"""The report's charts as PNG bytes (matplotlib, Agg): the Pareto frontier of every target
together, coloured by target, then one chart per target."""

from __future__ import annotations

import io
import re

from autoaccel.frontier import Point, objective_frontier
from autoaccel.report.facts import Facts


def render(facts: Facts) -> dict[str, tuple[str, bytes]]:
    """Chart key -> (caption, PNG). Keys are safe file names."""
    targets = [row.target for row in facts.targets]
    colours = _colours(targets)
    charts = {
        "pareto-all": (
            "Every target together: each target's own points (measured here, or the same "
            "builds projected), the frontier measured here in black.",
            _chart(facts, facts.points, colours, facts.frontier, "all targets"),
        )
    }
    for name in targets:
        mine = [p for p in facts.points if p.target == name]
        if not mine:
            continue
        kind = "measured" if all(p.measured for p in mine) else "estimated"
        charts[f"pareto-{_slug(name)}"] = (
            f"{name} ({kind}): {len(mine)} candidate{'s' if len(mine) != 1 else ''}.",
            _chart(facts, mine, colours, None, name),
        )
    return charts


def _chart(
    facts: Facts,
    pts: list[Point],
    colours: dict[str, str],
    overall: list[Point] | None,
    title: str,
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, metric = facts.baseline, facts.workload["metric"]
    small = overall is None
    fig, ax = plt.subplots(figsize=(5.2, 3.4) if small else (7.5, 4.6), dpi=110)
    for name in dict.fromkeys(p.target for p in pts):
        mine = [p for p in pts if p.target == name]
        ok = [p for p in mine if p.feasible]
        bad = [p for p in mine if not p.feasible]
        colour = colours[name]
        ax.scatter(
            [p.latency_ms for p in ok],
            [p.accuracy for p in ok],
            s=22,
            color=colour,
            alpha=0.8,
            label=_text(f"{name} ({'measured' if mine[0].measured else 'estimated'})"),
        )
        if bad:
            ax.scatter(
                [p.latency_ms for p in bad],
                [p.accuracy for p in bad],
                s=22,
                color=colour,
                marker="x",
                alpha=0.8,
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
            ms=8,
            lw=1.0,
            drawstyle="steps-post",
            label="frontier measured here",
        )
    ax.scatter(
        [base["latency_ms"]],
        [base["accuracy"]],
        marker="*",
        s=150,
        color="#e08a00",
        zorder=5,
        label="baseline (measured)",
    )
    ax.axhline(base["accuracy"] - facts.limit, ls="--", color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (log scale)")
    ax.set_ylabel(_text(metric))
    ax.set_title(_text(title), fontsize=10)
    ax.grid(True, which="major", alpha=0.25)
    ax.legend(fontsize=6.5, loc="best", framealpha=0.8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _colours(targets: list[str]) -> dict[str, str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(targets) <= 10 else "tab20"]
    names = sorted(targets)
    return {
        name: "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in cmap(i % cmap.N)[:3]))
        for i, name in enumerate(names)
    }


def _text(value: str) -> str:
    """A name shown as itself: matplotlib reads `$...$` as TeX."""
    return value.replace("$", r"\$")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]
