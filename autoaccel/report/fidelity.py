"""How far the report's estimates can be trusted, from evidence that says where it comes from.

- Measured targets (cpu-local, cuda-local): every trial stores its twin's estimate beside its
  measurement (`result.measured.<target>.twin.best.latency`), so this study measures the cost
  model's error on its own builds, on the machine that ran them: Spearman rank correlation
  and median absolute % error over its measured trials, with n. One study is one workload, so
  the figures are per workload; a pooled figure across workloads 1000x apart in size would
  rank well for any model. Each trial also records the calibration the twin used and the
  power and price its energy and $ rest on (`MeasuredTarget.priced`).
- Estimated targets: a profile's `fidelity` block (its measured error on real hardware, when
  someone checked it); none means the model was never checked against that hardware.
- A committed benchmark file (`FIDELITY_FILE`) is quoted for this workload only, labelled with
  the machine and date it was measured on, never as this machine's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

FIDELITY_FILE = (
    Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "costmodel_fidelity.json"
)
"""Written by `benchmarks/costmodel_fidelity.py` in a source checkout; absent elsewhere."""
MEASURED_NAMES = ("cpu-local", "cuda-local")


@dataclass(frozen=True)
class TwinError:
    """A measured target's cost model against this study's own measurements of it."""

    target: str
    n: int
    spearman: float | None
    mdape_pct: float | None
    calibrations: tuple[dict[str, Any], ...] = ()
    power: str | None = None
    price: str | None = None


@dataclass(frozen=True)
class ProfileCheck:
    """An estimated target's measured error on real hardware (its profile's `fidelity`)."""

    target: str
    mdape_pct: float | None
    spearman: float | None
    n: int | None
    check: str | None
    measured_on: str | None
    source: str | None


@dataclass(frozen=True)
class Fidelity:
    measured: tuple[TwinError, ...]
    checked: tuple[ProfileCheck, ...]
    unchecked: tuple[str, ...]
    """Estimated targets whose cost model was never checked against their hardware."""
    benchmark: dict[str, Any] | None
    """This workload's row of a committed fidelity file, with where and when it was measured."""


def read_fidelity(
    source: dict[str, Any] | Path | None = None,
    workload: dict[str, str] | None = None,
    trials: list[Any] | tuple[Any, ...] = (),
) -> Fidelity:
    """The evidence for the report's caveats: `trials`' own twin errors, the estimated
    targets' profile checks, and `source` (a fidelity file or its content) for `workload`."""
    estimated = sorted(
        {
            name
            for t in trials
            for name in (t.user_attrs.get("projections") or {})
            if name not in MEASURED_NAMES
        }
    )
    checked, unchecked = _profile_checks(estimated)
    return Fidelity(
        measured=_twin_errors(trials),
        checked=checked,
        unchecked=unchecked,
        benchmark=_benchmark(source, workload),
    )


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman rank correlation (ties share their average rank); None under 3 pairs or when
    either side does not vary."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            ranks[k] = (i + j) / 2
        i = j + 1
    return ranks


def _twin_errors(trials: list[Any] | tuple[Any, ...]) -> tuple[TwinError, ...]:
    """Per measured target (and host, when several measured): measured vs twin latency over
    the study's completed, distinct builds."""
    pairs: dict[tuple[str, str | None], list[tuple[float, float, dict[str, Any]]]] = {}
    for t in trials:
        result = t.user_attrs.get("result") or {}
        if t.state.name != "COMPLETE" or "duplicate_of" in t.user_attrs:
            continue
        host = (result.get("machine") or {}).get("host")
        for name, figures in (result.get("measured") or {}).items():
            latency = _number(figures.get("latency_ms"))
            twin = ((figures.get("twin") or {}).get("best") or {}).get("latency") or {}
            estimate = _number(twin.get("latency_ms"))
            if latency and estimate:
                pairs.setdefault((name, host), []).append((latency, estimate, figures))
    hosts = {host for _, host in pairs}
    out = []
    for (name, host), rows in sorted(pairs.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        measured, estimated = [r[0] for r in rows], [r[1] for r in rows]
        errors = [abs(e / m - 1) * 100 for m, e in zip(measured, estimated, strict=True)]
        rho = spearman(measured, estimated)
        used = [f["calibration"] for *_, f in rows if f.get("calibration")]
        calibrations = {json.dumps(c, sort_keys=True): c for c in used}
        last = rows[-1][2]
        out.append(
            TwinError(
                target=f"{name}@{host}" if len(hosts) > 1 and host else name,
                n=len(rows),
                spearman=round(rho, 4) if rho is not None else None,
                mdape_pct=round(median(errors), 2) if len(rows) >= 2 else None,
                calibrations=tuple(calibrations.values()),
                power=_priced(last.get("power_w"), "W", last.get("power_source")),
                price=_priced(last.get("price_per_hour_usd"), "$/h", last.get("price_source")),
            )
        )
    return tuple(out)


def _priced(value: Any, unit: str, source: Any) -> str | None:
    if _number(value) is None:
        return None
    amount = f"${value:g} per hour" if unit == "$/h" else f"{value:g} {unit}"
    return f"{amount} ({source})" if source else amount


def _profile_checks(names: list[str]) -> tuple[tuple[ProfileCheck, ...], tuple[str, ...]]:
    """Which estimated targets' profiles carry a measured `fidelity` block."""
    from autoaccel.errors import UserError
    from autoaccel.targets.profile import load_profiles

    try:
        profiles = load_profiles()
    except UserError:
        profiles = {}
    checked, unchecked = [], []
    for name in names:
        block = getattr(profiles.get(name), "fidelity", None)
        data = _plain(block)
        if not data:
            unchecked.append(name)
            continue
        n = _number(data.get("n"))
        checked.append(
            ProfileCheck(
                target=name,
                mdape_pct=_number(data.get("mdape_pct")),
                spearman=_number(data.get("spearman")),
                n=int(n) if n is not None else None,
                check=_text(data.get("check")),
                measured_on=_text(data.get("measured_on")),
                source=_text(data.get("source")),
            )
        )
    return tuple(checked), tuple(unchecked)


def _plain(block: Any) -> dict[str, Any]:
    """A fidelity block as plain values (a pydantic model, a mapping; Figures by value)."""
    if block is None:
        return {}
    data = block.model_dump() if hasattr(block, "model_dump") else block
    if not isinstance(data, dict):
        data = dict(vars(data)) if hasattr(data, "__dict__") else {}
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in data.items()}


def _benchmark(
    source: dict[str, Any] | Path | None, workload: dict[str, str] | None
) -> dict[str, Any] | None:
    """This workload's row of a fidelity file, with its machine and date; None when the file
    is absent, has no row for the workload, or does not say where and when it was measured."""
    file = None
    if isinstance(source, Path):
        root = FIDELITY_FILE.parents[2]
        file = str(source.relative_to(root)) if source.is_relative_to(root) else str(source)
    if isinstance(source, Path):
        try:
            source = json.loads(source.read_text())
        except (OSError, ValueError):
            return None
    if not isinstance(source, dict) or not workload:
        return None
    summary = source.get("summary") if isinstance(source.get("summary"), dict) else {}
    row = summary.get(workload.get("name"))
    machine = source.get("machine") if isinstance(source.get("machine"), dict) else {}
    when = _text(machine.get("date"))
    if not isinstance(row, dict) or not machine.get("cpu") or not when:
        return None
    cores = f", {machine['cores']} cores" if machine.get("cores") else ""
    n = _number(row.get("n"))
    return {
        "n": int(n) if n is not None else None,
        "spearman": _number(row.get("spearman")),
        "mdape_pct": _number(row.get("mdape_pct")),
        "where": f"{machine['cpu']}{cores}",
        "when": when[:10],
        "file": file or "a fidelity check",
    }


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int | float) and str(value).strip() else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def priced_lines(f: Fidelity) -> list[str]:
    """Which power and price the energy and $ of measured builds rest on, and their sources."""
    out = []
    for twin in f.measured:
        if twin.power or twin.price:
            said = "; ".join(x for x in (twin.power, twin.price) if x)
            out.append(
                f"Energy and $ of the builds measured on {twin.target} are the measured "
                f"latency times its power and price: {said}."
            )
    return out


def caveat_lines(f: Fidelity, name: str) -> list[str]:
    """The report's caveats on the cost models of workload `name`'s study: each measured
    target's error measured in this study and the calibration it used, a benchmark file
    labelled with its machine and date, each estimated target's check (or that it has none)."""
    from autoaccel.report.cells import pct, plural

    items = []
    for twin in f.measured:
        if twin.n >= 2:
            rho = f", Spearman rank correlation {twin.spearman:.2f}" if twin.spearman else ""
            items.append(
                f"Cost-model error on {twin.target}, measured in this study: its estimate of "
                f"each build, stored beside the build's measurement, was off by a median "
                f"{pct(twin.mdape_pct)}{rho} over {plural(twin.n, 'measured build')} of {name} "
                "(batch 1)."
            )
        else:
            items.append(
                f"Cost-model error on {twin.target}: only {plural(twin.n, 'measured build')} "
                "in this study, too few to measure it."
            )
        for cal in twin.calibrations[-2:]:
            copied = f", copied from {cal['copied_from']}" if cal.get("copied_from") else ""
            when = str(cal.get("when", "?"))
            when = f"{when[:16].replace('T', ' ')} UTC" if when.endswith("+00:00") else when
            items.append(
                f"{twin.target}'s cost model used the calibration measured on "
                f"{cal.get('host', 'an unnamed host')} ({cal.get('cpu', '?')}, "
                f"{cal.get('threads', '?')} threads) on {when} "
                f"({cal.get('suite', 'full')} suite{copied}): fit error (median) "
                f"{pct(cal.get('fit_mdape'))} over {cal.get('n_samples', '?')} micro-benchmarks, "
                f"load average {cal.get('load_avg_1min', '?')} while timing."
            )
        if not twin.calibrations and twin.target.startswith("cpu-local"):
            items.append(
                f"{twin.target}'s cost model was not calibrated on this machine (assumed "
                "efficiency curves): its estimates are rough."
            )
    if not f.measured:
        items.append(
            "Cost-model error on this machine: not measured in this study (its trials store "
            "no estimate beside their measurements); treat cpu-local estimates as rough."
        )
    if f.benchmark:
        b = f.benchmark
        rho = f", Spearman {b['spearman']:.2f}" if b.get("spearman") is not None else ""
        items.append(
            f"For comparison, {b['file']} (shipped with autoaccel, not part of this study) "
            f"was measured on {b['where']} on {b['when']}: median absolute error "
            f"{pct(b.get('mdape_pct'))}{rho} over {plural(b.get('n') or 0, 'build')} of "
            f"{name} there."
        )
    for check in f.checked:
        rho = f", Spearman {check.spearman:.2f}" if check.spearman is not None else ""
        over = f" over {plural(check.n, 'build')}" if check.n else ""
        labelled = (("", check.check), ("measured on ", check.measured_on), ("", check.source))
        said = "; ".join(f"{label}{x}" for label, x in labelled if x)
        items.append(
            f"{check.target}'s cost model was checked against real hardware: median absolute "
            f"error {pct(check.mdape_pct)}{rho}{over} ({said})."
        )
    if f.unchecked:
        items.append(
            f"Never checked against real hardware: {', '.join(f.unchecked)}. Such estimates "
            "rest on the profiles' figures alone: trust their ranking more than their "
            "absolute figures."
        )
    return items
