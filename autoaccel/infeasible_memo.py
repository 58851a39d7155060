"""Recipes already known to be infeasible: failed at once instead of built (and trained) again.

An infeasible recipe (`InfeasibleRecipe`) is found where it happens: often only after the
student was trained, when the runtime opens the model or the calibrator runs. Each kind of
infeasibility is decided by a few recipe settings (OpenVINO's streams by its threads and
streams, histogram calibration by fusion and the calibration method); a later trial that
agrees with an infeasible one on all of them cannot run either. Samplers repeat such
combinations (TPE's start-up trials are random; its later ones learn infeasibility per
parameter, not per combination), and each repeat would pay its training again.

A kind not listed here is decided by the whole graph (an op a runtime lacks): never guessed.
"""

from __future__ import annotations

from typing import Any

DECIDED_BY: dict[str, tuple[str, ...]] = {
    "unknown_backend": ("runtime.backend",),
    "no_torch_model": ("runtime.backend",),
    "torch_compile_toolchain": ("runtime.backend",),
    "openvino_precision": ("runtime.backend", "runtime.ov_precision"),
    "openvino_streams": (
        "runtime.backend",
        "runtime.intra_op_threads",
        "runtime.ov_streams",
        "runtime.ov_hint",
    ),
    # fused attention / layer norm leave ORT's histogram calibrators nothing to collect; a
    # student's width or pruned heads may change what fuses, so they must agree too
    "quantize_calibration": (
        "quantize.mode",
        "quantize.calibration",
        "compile.fusion",
        "distill.mode",
        "distill.width",
        "prune.mode",
        "prune.heads",
    ),
}
"""Infeasibility kind -> the recipe settings that decide it (for one workload)."""


def known_infeasible(trials: list[Any], recipe: dict[str, Any]) -> tuple[Any, str] | None:
    """The first infeasible trial among `trials` (Optuna FrozenTrials) whose kind is decided
    by settings `recipe` shares with it, and a reason that says so; else None."""
    for t in trials:
        kind = t.user_attrs.get("infeasible_kind")
        keys = DECIDED_BY.get(kind or "")
        earlier = t.user_attrs.get("recipe")
        if not keys or earlier is None or t.user_attrs.get("infeasible_as") is not None:
            continue  # only trials that really ran are evidence
        if all(recipe.get(k) == earlier.get(k) for k in keys):
            same = ", ".join(f"{k}={recipe.get(k)}" for k in keys if k in recipe)
            reason = t.user_attrs.get("fail_reason", kind)
            return t, f"{reason} (as trial {t.number}, with the same {same}; not built again)"
    return None
