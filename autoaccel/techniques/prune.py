"""Pruning: zero weights (unstructured, 2:4 semi-structured) or remove them (structured).

On a CPU, zeroed weights cost exactly as much as dense ones (ONNX Runtime times 50 % and 90 %
sparse models like dense ones); they are kept because sparse-capable targets exploit them
(2:4 on NVIDIA sparse tensor cores). Structured pruning physically removes conv channels,
hidden neurons, attention heads and feed-forward neurons, so the exported graph does less
work. Importance is the L1 norm of the weights a channel/head/neuron owns. Optional recovery
fine-tuning trains toward the fp32 teacher and keeps the pruned pattern.
"""

from __future__ import annotations

import copy
from typing import Any

from autoaccel.errors import InfeasibleRecipe
from autoaccel.techniques._training import distill_into
from autoaccel.techniques.applicability import narrowing_reason
from autoaccel.techniques.base import Param, TorchTechnique, trainable

MODES = ("none", "unstructured", "unstructured_global", "nm_2_4", "structured")
_ZEROING = ("unstructured", "unstructured_global", "nm_2_4")


class Prune(TorchTechnique):
    name = "prune"

    def params(self, workload) -> tuple[Param, ...]:
        """Pruning itself needs no data: only its recovery fine-tuning is left out for a
        torch model without training data."""
        if workload is None or trainable(workload):
            return self.declare(workload)
        if not workload.torch_model_available() or workload.torch_edit_reason():
            return ()
        return tuple(p for p in self.declare(workload) if p.name != "finetune_steps")

    def declare(self, workload) -> tuple[Param, ...]:
        pruned = {"prune.mode": MODES[1:]}
        modes = MODES
        if workload is not None and narrowing_reason(workload):  # said at the search's start
            modes = tuple(m for m in MODES if m != "structured")
        params = [
            Param("mode", "none", choices=modes, help="what pruning removes or zeroes"),
            Param(
                "amount",
                0.5,
                low=0.05,
                high=0.95,
                when={"prune.mode": ("unstructured", "unstructured_global", "structured")},
                help="share of weights zeroed, or of channels / FFN neurons removed",
            ),
        ]
        if workload is None or _heads_prunable(workload):
            params.append(
                Param(
                    "heads",
                    0.0,
                    low=0.0,
                    high=0.9,
                    when={"prune.mode": ("structured",)},
                    help="share of attention heads removed per layer (transformers)",
                )
            )
        params.append(
            Param(
                "finetune_steps",
                0,
                low=0,
                high=100_000,
                integer=True,
                when=pruned,
                help="teacher-guided recovery fine-tuning steps after pruning",
            )
        )
        return tuple(params)

    def describe(self, config: dict[str, Any]) -> str | None:
        mode = config.get("mode", "none")
        if mode == "none":
            return None
        steps = config.get("finetune_steps", 0)
        tune = f", {steps} fine-tune steps" if steps else ""
        if mode == "nm_2_4":
            return f"2:4 sparsity{tune}"
        if mode == "structured":
            heads = f", {config['heads']:.0%} heads" if config.get("heads") else ""
            return f"structured pruning {config['amount']:.0%}{heads}{tune}"
        scope = "global " if mode == "unstructured_global" else ""
        return f"{scope}unstructured {config['amount']:.0%} sparsity{tune}"

    def changes_model(self, config: dict[str, Any]) -> bool:
        return config.get("mode", "none") != "none"

    def structure(self, model, config: dict[str, Any], workload) -> Any:
        from autoaccel.compress import pruning

        mode = config["mode"]
        model = copy.deepcopy(model)
        if mode == "structured":
            if workload.transformer_layout() is not None:  # heads and FFN neurons, uniform
                from autoaccel.compress.pruning import transformer as prune_transformer

                prune_transformer(
                    model,
                    heads_fraction=float(config.get("heads", 0.0)),
                    ffn_fraction=float(config["amount"]),
                )
                return model
            from autoaccel.compress.pruning import structured

            return structured(model, float(config["amount"]), workload.example_args())
        if not pruning.prunable_layers(model):
            # zeroing nothing would still be described as sparsity over an unchanged model
            raise InfeasibleRecipe(
                f"{mode} pruning found no nn.Linear or nn.Conv2d weight in the model to zero",
                "prune_nothing",
            )
        if mode == "nm_2_4":
            if len(pruning.n_m_sparsity(model, 2, 4)) == len(pruning.prunable_layers(model)):
                raise InfeasibleRecipe(
                    "2:4 sparsity found no layer whose input size divides by 4", "prune_nothing"
                )
        else:
            scope = "global" if mode == "unstructured_global" else "local"
            pruning.unstructured(model, float(config["amount"]), scope)
        pruning.make_permanent(model)
        return model

    def trains(self, config: dict[str, Any]) -> bool:
        return int(config.get("finetune_steps", 0)) > 0

    def train(self, model, teacher, config: dict[str, Any], workload, monitor=None) -> float:
        from autoaccel.compress import pruning

        steps = int(config.get("finetune_steps", 0))
        if steps <= 0:
            return 0.0
        zeroing = config["mode"] in _ZEROING
        if zeroing:  # train with the zeros masked so the pattern survives fine-tuning
            pruning.freeze_zeros(model)
        seconds = distill_into(model, teacher, workload, steps, config, monitor)
        if zeroing:
            pruning.make_permanent(model)
        return seconds


def _heads_prunable(workload) -> bool:
    """Whether the workload's transformer layout lets heads go (`applicability` says why
    not, at the search's start)."""
    layout = workload.transformer_layout()
    return layout is not None and layout.heads_reason is None
