"""The recommendation as a person reads it in ten seconds: one headline (what to do, how much
faster, the quality change, measured or estimated), then short detail lines and caveats.

Built from `recommendation.json`'s dict alone, so the console and the report say the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autoaccel.report.words import change_words

# teacher agreement below these: the vectors are not interchangeable with the fp32 model's
AGREEMENT = {"teacher_cosine": 0.98, "teacher_recall_at_10": 0.9}
AGREEMENT_WORDS = {"teacher_cosine": "mean cosine", "teacher_recall_at_10": "neighbour recall@10"}


@dataclass(frozen=True)
class Brief:
    headline: str
    details: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


def brief(rec: dict[str, Any]) -> Brief:
    """The headline, details and caveats of a recommendation dict (`autoaccel.recommend`)."""
    metric, base = rec["metric"], rec["baseline"]
    pick, verdict = rec.get("recommended"), rec.get("verdict")
    caveats = _not_applicable(rec.get("hardware") or [])
    if pick:
        where = (
            "measured here"
            if pick["latency_source"] == "measured"
            else f"estimated by the {pick['latency_source'].split(':', 1)[-1]} cost model"
        )
        headline = (
            f"Recommended: trial {pick['trial']} ({pick['description']}), {pick['speedup']:.2f}x "
            f"faster than the baseline ({where}); {change_words(metric, pick['accuracy_drop'])}."
        )
        caveats = _agreement(pick, base) + caveats
        return Brief(headline, _details(rec, pick), caveats + list(rec.get("warnings") or []))
    closest = (rec.get("closest") or [None])[0]
    if verdict == "keep-baseline":
        best = f"; the fastest within the limit, trial {closest['trial']}, is " if closest else ""
        headline = (
            f"Keep the baseline ({base['description']}): no candidate is faster beyond timing "
            f"noise{best}{_speed(closest) if closest else ''}."
        )
    elif verdict == "too-noisy":
        headline = (
            "Not ranked: the CPU was busy while the best candidate was timed; run the same "
            "command again on a quiet machine (the study resumes and re-times it)."
        )
    else:
        headline = f"No recommendation: {_first_clause(rec.get('reason') or 'nothing completed')}."
    details = [f"Why: {rec['reason']}."] if rec.get("reason") and verdict != "none" else []
    if verdict == "none" and closest:
        details.append(
            f"Closest: trial {closest['trial']} ({closest['description']}), "
            f"{change_words(metric, closest['accuracy_drop'])}; the limit is a drop of at most "
            f"{rec['accuracy_limit']['max_drop']:g}."
        )
    said = (rec.get("reason") or "").rstrip(".")
    warnings = [w for w in rec.get("warnings") or [] if w.rstrip(".") != said]  # once is enough
    return Brief(headline, details, caveats + warnings)


def _details(rec: dict[str, Any], pick: dict[str, Any]) -> list[str]:
    metric, base, limit = rec["metric"], rec["baseline"], rec["accuracy_limit"]
    lines = [f"Speed: {_speed(pick)}."]
    lines.append(
        f"Quality: {metric} {pick['accuracy']:.4f} vs {base['accuracy']:.4f} for the baseline "
        f"({base['description']}); the limit allows a drop of {limit['max_drop']:g} (at least "
        f"{limit['min_accuracy']:.4f})."
    )
    quality = pick.get("quality") or {}
    agreement = [
        f"{AGREEMENT_WORDS[k]} {quality[k]:.2f}" for k in AGREEMENT if quality.get(k) is not None
    ]
    if agreement:
        lines.append(
            f"Agreement with the fp32 model's outputs: {', '.join(agreement)} (1.00 = the same)."
        )
    return lines


def _speed(p: dict[str, Any]) -> str:
    """`0.021 ms vs 0.084 ms timed side by side, 3.92x (95 % interval 3.80-4.05x, 12
    interleaved rounds, re-timed when the search ended)`."""
    scenario = (p.get("scenario") or {}).get("scenario", "single-stream")
    unit = "ms" if scenario == "single-stream" else f"ms per query ({scenario})"
    figures = ""
    if p.get("paired_ms"):
        mine, theirs = p["paired_ms"]
        figures = f"{mine:.3f} {unit} vs {theirs:.3f} {unit} timed side by side, "
    out = f"{figures}{p['speedup']:.2f}x"
    if p.get("speedup_ci"):
        low, high = p["speedup_ci"]
        again = ", re-timed when the search ended" if p.get("confirmation") else ""
        busy = ", CPU busy while timed" if p.get("contended") else ""
        rounds = f"{p['rounds']} interleaved rounds{again}{busy}"
        out += f" (95 % interval {low:.2f}-{high:.2f}x, {rounds})"
    return out


def _agreement(pick: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """A caveat when an embedding model's vectors drift from the fp32 model's: quality on the
    task can hold while the vectors no longer match an index built with the original."""
    quality = pick.get("quality") or {}
    low = [
        k for k, floor in AGREEMENT.items() if quality.get(k) is not None and quality[k] < floor
    ]
    if not low:
        return []
    shown = ", ".join(f"{AGREEMENT_WORDS[k]} {quality[k]:.2f}" for k in AGREEMENT if k in quality)
    recall = quality.get("teacher_recall_at_10")
    moved = f": {1 - recall:.0%} of nearest neighbours change" if recall is not None else ""
    return [
        f"Its vectors differ from the baseline's ({shown}{moved}): not a drop-in replacement "
        "for vectors already in an index; re-embed the corpus with it, or search with "
        "--metric teacher_recall_at_10 to keep them compatible."
    ]


def _not_applicable(rows: list[dict[str, Any]]) -> list[str]:
    """Targets that run no build within the limit, with the first one's reason."""
    none = [r for r in rows if r.get("objective_ms") is None]
    if not none:
        return []
    first = none[0]
    more = f" (and {len(none) - 1} more: see the report)" if len(none) > 1 else ""
    why = first.get("reason") or "no build within the limit"
    return [f"Not applicable: no build runs on {first['target']}: {why}{more}."]


def _first_clause(text: str) -> str:
    return text.split("; ", 1)[0].rstrip(".")
