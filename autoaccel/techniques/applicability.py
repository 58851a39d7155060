"""What a search says at its start about the techniques a workload gets.

A technique that does not apply is left out of the space silently by `params(workload)`; these
lines say which and why (no torch model, no training data, a transformer whose layer stack or
heads cannot be read, an edit that breaks the model when a copy of it runs), and which output
kind was detected (it picks the distillation loss), so a person can correct a wrong guess by
declaring it. `narrowing_reason` is also what Prune and Distill ask before offering a
narrower model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoaccel.workloads.base import Workload

LOSSES = {
    "logits": "Hinton KD on the logits",
    "probabilities": "Hinton KD on the log-probabilities",
    "embedding": "1 - cosine to the teacher's vectors",
    "scores": "squared error to the teacher's scores",
}
"""The distillation and fine-tuning loss of each output kind, in words."""


def output_kind_note(workload: Workload) -> str | None:
    """One line naming the detected output kind and the loss it implies; None when the
    workload declares it or has none (`not_applicable` then says why)."""
    reason = workload.output_kind_reason()
    kind = workload.output_kind
    if kind is None or reason == "declared by the workload":
        return None
    return (
        f"{workload.name}: outputs are {kind}, {reason}; distillation and fine-tuning use "
        f"{LOSSES[kind]} (set output_kind on the workload if that is wrong)"
    )


def not_applicable(workload: Workload) -> list[str]:
    """One line per technique (or setting) the search leaves out for this workload, and why."""
    name = workload.name
    if not workload.torch_model_available():
        return [
            f"distill, prune: not searched: {name} is an ONNX model, and they change the torch "
            "model before export",
            f"runtime.backend torch, torch_compile: not searched: {name} has no torch model",
        ]
    if workload.torch_edit_reason():
        return [f"distill, prune: not searched: {name}: {workload.torch_edit_reason()}"]
    if not workload.offers_training_data():
        why = f"{name} offers no training data (define `training_batches`)"
    elif workload.output_kind is None:
        why = (
            f"no loss is known for {name}'s outputs ({workload.output_kind_reason()}); "
            "set output_kind on the workload"
        )
    else:
        return []
    return [
        f"distill: not searched: a student is trained toward the teacher, and {why}",
        f"prune.finetune_steps: not searched: recovery fine-tuning trains toward the teacher, "
        f"and {why}",
    ]


def narrowing_reason(workload: Workload) -> str:
    """Why no narrower copy of the workload's model can be made (what structured pruning and
    width students make), in words; "" when one can: through its transformer layout's
    feed-forward blocks, else through torch-pruning's channel groups (each probed once on a
    copy, `compress.probes`)."""
    layout = workload.transformer_layout()
    if layout is not None:
        return layout.ffn_reason or ""
    return workload.channel_pruning_reason()


def layout_notes(workload: Workload) -> list[str]:
    """One line per transformer-only knob left out of a model that looks like a transformer
    but whose layout (`compress.layout`) cannot be read, or whose heads / FFN blocks cannot
    be pruned, and why; and for any model whose channels torch-pruning cannot remove (tried
    once on a copy). Nothing for a CNN or an MLP that keeps its width students and channel
    pruning, nor for an ONNX model (`not_applicable`)."""
    if not workload.torch_model_available() or workload.torch_edit_reason():
        return []
    from autoaccel.techniques.base import trainable

    name = workload.name
    layout = workload.transformer_layout()
    if layout is None:
        from autoaccel.compress.layout import looks_like_transformer

        evidence = looks_like_transformer(workload.torch_model())
        channels = workload.channel_pruning_reason()
        narrow = _knobs(workload, "distill", "prune.mode structured")
        no_channels = (
            f"{narrow}: not searched: torch-pruning cannot remove {name}'s channels "
            f"(a pruned copy fails: {channels})"
        )
        if evidence is None:
            return [no_channels] if channels else []
        knobs = "distill.layers, prune.heads" if trainable(workload) else "prune.heads"
        plain = "; width students and structured pruning treat it as a plain network"
        plain = "" if channels else f"{plain} (torch-pruning)"
        stack = (
            f"{knobs}: not searched: {name} looks like a transformer ({evidence}), but its "
            f"layer stack cannot be read: {workload.transformer_layout_reason()}{plain}"
        )
        return [stack, no_channels] if channels else [stack]
    lines = []
    if layout.num_layers == 1 and trainable(workload):
        lines.append(
            f"distill.layers: not searched: the layer stack of {name} ({layout.path}) holds "
            "one layer (ALBERT runs one shared layer many times); its students keep it"
        )
    if layout.heads_reason:
        lines.append(
            f"prune.heads: not searched: the attention heads of {name} ({layout.path}) "
            f"cannot be pruned: {layout.heads_reason}"
        )
    if layout.ffn_reason:
        narrow = _knobs(workload, "distill.width", "prune.mode structured")
        lines.append(
            f"{narrow}: not searched: {name} ({layout.path}) has no feed-forward neurons to "
            f"remove: {layout.ffn_reason}"
        )
    return lines


def _knobs(workload: Workload, training: str, always: str) -> str:
    """The knobs a note names: `training`'s exist only where the workload can train."""
    from autoaccel.techniques.base import trainable

    return f"{training}, {always}" if trainable(workload) else always


def search_notes(workload: Workload) -> list[str]:
    """Everything above, in the order a search states it once at its start."""
    note = output_kind_note(workload)
    compile_line = []
    if workload.torch_model_available() and workload.torch_compile_reason():
        reason = workload.torch_compile_reason()
        compile_line = [f"runtime.backend torch_compile: not searched: {reason}"]
    from autoaccel.techniques.quantize import already_quantized, no_products

    if ops := already_quantized(workload):
        compile_line.append(
            f"quantize: not searched: {workload.name} is quantized already ({', '.join(ops)}); "
            "its runtimes and compile settings are searched as it is"
        )
    elif ops := no_products(workload):
        compile_line.append(
            f"quantize: not searched: {workload.name} has no matrix product (MatMul, Gemm, "
            f"Conv) for int8, int4 or fp16 to change (its operators: {', '.join(ops[:6])}"
            f"{', ...' if len(ops) > 6 else ''}); its runtimes are searched as it is"
        )
    return (
        ([note] if note else []) + not_applicable(workload) + compile_line + layout_notes(workload)
    )
