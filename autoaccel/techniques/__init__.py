"""Acceleration techniques: one shape (`Technique`), one registry.

Adding a technique is one new module plus one line in `REGISTRY`. The registry order is the
order parameters are suggested in (runtime first: later techniques depend on its choices);
the build applies techniques by `Stage`. Hardware is not a technique: every build is measured
here and projected on every target (`autoaccel.projection`).
"""

from __future__ import annotations

from autoaccel.techniques.applicability import not_applicable, output_kind_note, search_notes
from autoaccel.techniques.base import (
    BuildContext,
    Candidate,
    Param,
    Stage,
    Technique,
    TorchTechnique,
)
from autoaccel.techniques.compile import Compile
from autoaccel.techniques.distill import Distill
from autoaccel.techniques.prune import Prune
from autoaccel.techniques.quantize import Quantize
from autoaccel.techniques.runtime import Runtime

REGISTRY: dict[str, Technique] = {
    t.name: t for t in (Runtime(), Distill(), Prune(), Compile(), Quantize())
}


def by_stage() -> list[Technique]:
    return sorted(REGISTRY.values(), key=lambda t: t.stage)


def config_of(tech: Technique, recipe: dict, workload=None) -> dict:
    """The technique's own slice of a flat recipe, prefix removed; with a workload, every
    active parameter the recipe leaves out takes its declared default."""
    prefix = f"{tech.name}."
    config = {k[len(prefix) :]: v for k, v in recipe.items() if k.startswith(prefix)}
    if workload is not None:
        full = dict(recipe)
        for param in tech.params(workload):
            key = prefix + param.name
            if key not in full and param.is_active(full):
                full[key] = param.default
                config[param.name] = param.default
    return config


def describe_recipe(recipe: dict) -> str:
    """One line a person can read: "ONNX Runtime, 1 thread; graph level all; int8 dynamic"."""
    parts = []
    for tech in REGISTRY.values():
        if tech.is_active(recipe):
            config = config_of(tech, recipe)
            if config and (text := tech.describe(config)):
                parts.append(text)
    return "; ".join(parts)


__all__ = [
    "REGISTRY",
    "BuildContext",
    "Candidate",
    "Param",
    "Stage",
    "Technique",
    "TorchTechnique",
    "by_stage",
    "config_of",
    "describe_recipe",
    "not_applicable",
    "output_kind_note",
    "search_notes",
]
