"""Knowledge distillation into a smaller student derived from the teacher.

Transformers (any whose layer stack `compress.layout` can read): keep `layers` of the
teacher's encoder layers (evenly spaced, first and last always kept; a one-layer stack keeps
its layer) and optionally narrow the feed-forward blocks (`width`); other models (CNNs with
residual connections, MLPs): keep `width` of every hidden layer's channels/neurons (the most
important by L1 norm, coupled layers pruned together by torch-pruning's dependency graph).
The student starts from the teacher's own weights and is trained toward the teacher's
outputs on the workload's training split (which never overlaps the data that judges
quality).
"""

from __future__ import annotations

import copy
from typing import Any

from autoaccel.techniques._training import distill_into
from autoaccel.techniques.applicability import narrowing_reason
from autoaccel.techniques.base import Param, TorchTechnique

WIDTHS = (1.0, 0.75, 0.5, 0.25)


class Distill(TorchTechnique):
    name = "distill"

    def declare(self, workload) -> tuple[Param, ...]:
        student = {"distill.mode": ("student",)}
        params = [
            Param("mode", "none", choices=("none", "student"), help="train a smaller student"),
        ]
        layers = 12 if workload is None else _layer_count(workload)
        droppable = bool(layers and layers > 1)  # one layer (ALBERT's shared one): none
        widths = WIDTHS
        if workload is not None and narrowing_reason(workload):  # said at the search's start
            if not droppable:
                return ()  # a student could only be the teacher's own shape: nothing faster
            widths = (1.0,)
        if droppable:
            params.append(
                Param(
                    "layers",
                    max(1, layers // 2),
                    choices=tuple(range(1, layers + 1)),
                    when=student,
                    help="transformer layers kept (the teacher's own, evenly spaced)",
                )
            )
        params += [
            Param(
                "width",
                1.0,
                choices=widths,
                when=student,
                help="share of hidden channels / feed-forward neurons the student keeps",
            ),
            Param(
                "steps",
                600,
                low=0,
                high=100_000,
                integer=True,
                when=student,
                help="distillation training steps (AdamW; warm-up, constant, linear decay: WSD)",
            ),
        ]
        if workload is None or workload.output_kind in ("logits", "probabilities"):
            params += [
                Param(
                    "temperature",
                    4.0,
                    low=1.0,
                    high=20.0,
                    when=student,
                    help="softening of the teacher's class distribution (classifiers)",
                ),
                Param(
                    "alpha",
                    0.7,
                    low=0.0,
                    high=1.0,
                    when=student,
                    help="weight of the soft-target loss vs the hard labels (classifiers)",
                ),
            ]
        return tuple(params)

    def describe(self, config: dict[str, Any]) -> str | None:
        if config.get("mode", "none") == "none":
            return None
        parts = []
        if "layers" in config:
            parts.append(f"{config['layers']} layers")
        if config["width"] < 1.0:
            parts.append(f"{config['width']:.0%} width")
        return f"distilled student ({', '.join(parts) or 'same shape'}, {config['steps']} steps)"

    def changes_model(self, config: dict[str, Any]) -> bool:
        return config.get("mode", "none") == "student"

    def structure(self, model, config: dict[str, Any], workload) -> Any:
        if "layers" in config or workload.transformer_layout() is not None:
            # a transformer: drop layers (a one-layer stack keeps it), then narrow the FFNs
            from autoaccel.compress.distillation import default_layers, layer_student
            from autoaccel.compress.layout import find_layout
            from autoaccel.compress.pruning import transformer as prune_transformer

            total = find_layout(model).num_layers
            keep = int(config.get("layers", total))
            student = layer_student(model, default_layers(total, keep))
            if config["width"] < 1.0:
                prune_transformer(student, heads_fraction=0.0, ffn_fraction=1 - config["width"])
            return student
        from autoaccel.compress.pruning import structured

        student = copy.deepcopy(model)
        if config["width"] < 1.0:
            student = structured(student, 1 - config["width"], workload.example_args())
        return student

    def trains(self, config: dict[str, Any]) -> bool:
        return self.changes_model(config) and int(config.get("steps", 0)) > 0

    def train(self, model, teacher, config: dict[str, Any], workload, monitor=None) -> float:
        return distill_into(model, teacher, workload, int(config["steps"]), config, monitor)


def _layer_count(workload) -> int | None:
    """Encoder layers of the workload's transformer, None without a readable layout (the
    search says why at its start: `applicability.layout_notes`)."""
    layout = workload.transformer_layout()
    return None if layout is None else layout.num_layers
