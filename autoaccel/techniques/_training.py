"""Teacher-guided training shared by distillation and pruning's recovery fine-tuning."""

from __future__ import annotations

import weakref
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

    The loss fits the outputs: soft targets with temperature and alpha for classifiers (plus
    the hard labels), 1 - cosine for embeddings.
    """
    from autoaccel.compress.distillation import embedding_loss, kd_loss, logits_from_probs, train

    if steps <= 0:
        return 0.0
    if workload.output_kind == "embedding":

        def loss(student_out, teacher_out, labels):
            return embedding_loss(student_out, teacher_out)
    else:
        temperature = float(config.get("temperature", 4.0))
        alpha = float(config.get("alpha", 0.7))

        def loss(student_out, teacher_out, labels):
            return kd_loss(
                logits_from_probs(student_out),
                logits_from_probs(teacher_out),
                labels,
                temperature,
                alpha,
            )

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
