"""The side-by-side confirmation of a study's best measured recipe, attached to the picks it
confirms: the console, recommendation.json and the report quote the same sentence."""

from __future__ import annotations

from typing import Any

DISAGREEMENT = 1.5
"""A side-by-side speedup this many times off the search's own (either way) means the CPU's
load changed between the search's two timings; the side-by-side one is then the figure."""


def disagrees(recorded: float | None, confirmed: float) -> bool:
    return bool(recorded) and max(recorded / confirmed, confirmed / recorded) > DISAGREEMENT


def attach_confirmation(rec: dict[str, Any], confirmed: dict[str, Any] | None) -> None:
    """Put the side-by-side re-timing of a study's best measured recipe (taken when the
    search finished, kept in the study) on the picks it confirms, with its sentence in
    their summaries, so the console, recommendation.json and the report say the same."""
    if not confirmed:
        return
    for key in ("best_measured", "recommended"):
        pick = rec.get(key)
        if not pick or pick["trial"] != confirmed["trial"] or "confirmed" in pick:
            continue
        figures = {k: v for k, v in confirmed.items() if k != "trial"}
        speedup = figures["speedup"]
        what = "" if figures["figure"].startswith("latency") else "batch-1 latency "
        sentence = (
            f"; {what}confirmed side by side: {speedup:.1f}x "
            f"({figures['latency_ms']:.3f} ms vs {figures['baseline_latency_ms']:.3f} ms, "
            "interleaved)"
        )
        recorded = pick.get("speedup")
        figures["disagrees"] = disagrees(recorded, speedup)
        if figures["disagrees"]:
            sentence += (
                f"; the search's {recorded:.1f}x and this {speedup:.1f}x differ by more than "
                f"{DISAGREEMENT:g}x because the CPU was busier during one of the timings: "
                "trust the side-by-side figure"
            )
        pick["confirmed"] = figures
        pick["summary"] += sentence
