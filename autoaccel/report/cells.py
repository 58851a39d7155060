"""Table cells and phrases: figures with their units, and what each figure rests on."""

from __future__ import annotations

from autoaccel.frontier import Point
from autoaccel.techniques import REGISTRY, config_of, describe_recipe


def steps(recipe: dict) -> list[list[str]]:
    rows = []
    for tech in REGISTRY.values():
        if not tech.is_active(recipe):
            continue
        config = config_of(tech, recipe)
        if not config:
            continue
        try:
            effect = tech.describe(config) or "off"
        except (KeyError, TypeError, ValueError):
            effect = "-"
        rows.append([tech.name, ", ".join(f"{k}={v}" for k, v in config.items()), effect])
    return rows


def described_for(p: Point, goal: str) -> str:
    """A build in words with the plan its `goal` figure comes from (an estimated point's
    figures each come from that goal's best plan on its target)."""
    plan = p.plans.get(goal if goal in p.plans else "latency")
    if p.measured or plan is None:
        return p.description
    return f"{describe_recipe(p.recipe)}; {plan}"


def speedup_basis(p: Point) -> str:
    """What an estimated speedup divides: the baseline projected on the same target, or (a
    chip that cannot run the baseline) the baseline measured here."""
    if p.measured:
        return ""
    return (
        " (vs baseline there)"
        if p.speedup_basis.startswith("estimated")
        else (" (vs baseline measured here)")
    )


def source(p: Point) -> str:
    return "measured" if p.measured else f"estimated: {profile(p)}"


def basis(p: Point) -> str:
    """What a row of figures rests on."""
    if p.measured:
        return f"measured on {p.target} (energy, $: profile x measured latency)"
    return f"estimated: {profile(p)} cost model"


def rests_on(p: Point, goal: str) -> str:
    if goal in ("latency", "local", "throughput"):
        return "a measurement" if p.measured else f"an estimate ({profile(p)})"
    what = "power" if goal == "energy" else "price"
    if p.measured:
        return f"the measured latency and the profile's {what} (an estimate)"
    return f"an estimate ({profile(p)}) and the profile's {what}"


def goal_figure(p: Point, goal: str) -> str:
    if goal == "cost":
        return dollars(p.cost_per_million_usd) + " / 1M"
    if goal == "energy":
        return joules(p.energy_j)
    if goal == "throughput":
        return qps(p.throughput_qps)
    return ms(p.latency_ms)


def plural(n, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g} ms"


def qps(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}/s"


def joules(v: float | None) -> str:
    if v is None:
        return "-"
    for scale, unit in ((1, "J"), (1e-3, "mJ"), (1e-6, "uJ")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v * 1e9:.3g} nJ"


def dollars(v: float | None) -> str:
    return "-" if v is None else f"${v:.3g}"


def pct(v) -> str:
    return f"{v:.0f} %" if isinstance(v, int | float) and v == v else "n/a"


def profile(p: Point) -> str:
    return p.latency_source.split(":", 1)[1] if ":" in p.latency_source else p.target


def trial_list(trials: tuple[int, ...], limit: int = 12) -> str:
    shown = ", ".join(map(str, trials[:limit]))
    return shown + (f", ... (+{len(trials) - limit})" if len(trials) > limit else "")


def point_from(d: dict) -> Point:
    fields = Point.__dataclass_fields__
    return Point(**{k: v for k, v in d.items() if k in fields})
