"""Teacher-guided training shared by distillation and pruning's recovery fine-tuning."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from autoaccel.techniques.base import TrainingMonitor

SEED = 0

_TEACHER_OUTPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""teacher module -> {content hash of the batches: {batch index: output}}: the teacher's outputs on
the training split, computed once per process (the candidate worker lives for the whole
search) and read by every student and every recovery fine-tune after that."""


def distill_into(
    model: Any,
    teacher: Any,
    workload: Any,
    steps: int,
    config: dict[str, Any],
    monitor: TrainingMonitor | None = None,
) -> float:
    """Train `model` toward the fp32 teacher on the workload's training split; seconds spent.

    `distillation_loss` picks the loss from `workload.output_kind`.
    """
    from autoaccel.compress.distillation import train

    if steps <= 0:
        return 0.0
    loss = distillation_loss(workload.output_kind, config, workload.name)
    batches = workload.training_batches()
    per_teacher = _TEACHER_OUTPUTS.setdefault(teacher, {})
    stats = train(
        model,
        teacher,
        batches,
        loss,
        steps=int(steps),
        lr=workload.train_lr,
        seed=SEED,
        input_names=workload.input_names,
        monitor=monitor,
        monitor_at=monitor.fractions if monitor is not None else (),
        teacher_outputs=per_teacher.setdefault(_batches_key(batches), {}),
    )
    return stats.seconds


def distillation_loss(
    kind: str | None, config: dict[str, Any], name: str = "the workload"
) -> Callable[[Any, Any, Any], Any]:
    """The loss that fits the outputs: Hinton KD with `temperature` and `alpha` for a
    classifier (on the logits as they are; on log-probabilities for softmax outputs, which
    differ from the logits by a per-row constant), 1 - cosine for an embedding. Batches
    without labels train on the soft targets alone (alpha = 1)."""
    from autoaccel.compress.distillation import embedding_loss, kd_loss, logits_from_probs

    if kind == "embedding":
        return lambda student_out, teacher_out, labels: embedding_loss(student_out, teacher_out)
    if kind not in ("logits", "probabilities"):
        raise ValueError(f"{name}: output_kind {kind!r} has no distillation loss")
    as_logits = logits_from_probs if kind == "probabilities" else (lambda out: out)
    temperature = float(config.get("temperature", 4.0))
    alpha = float(config.get("alpha", 0.7))

    def loss(student_out, teacher_out, labels):
        return kd_loss(
            as_logits(student_out),
            as_logits(teacher_out),
            labels,
            temperature,
            alpha if labels is not None else 1.0,
        )

    return loss


def _batches_key(batches: list) -> str:
    """Which training batches the outputs belong to, by content (a workload may build its
    list anew at each call): outputs are never reused for other data."""
    import hashlib

    import numpy as np

    digest = hashlib.blake2b(digest_size=16)
    for inputs, _ in batches:
        for name in sorted(inputs):
            array = np.ascontiguousarray(inputs[name])
            digest.update(f"{name}{array.shape}{array.dtype}".encode())
            digest.update(array.data)
    return digest.hexdigest()


def example_args(workload: Any) -> tuple:
    import torch

    inputs = workload.latency_inputs(1)
    return tuple(torch.from_numpy(inputs[name]) for name in workload.input_names)
