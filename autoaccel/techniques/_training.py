"""Teacher-guided training shared by distillation and pruning's recovery fine-tuning."""

from __future__ import annotations

from typing import Any

from autoaccel.techniques.base import TrainingMonitor

SEED = 0


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

    stats = train(
        model,
        teacher,
        workload.training_batches(),
        loss,
        steps=int(steps),
        lr=workload.train_lr,
        seed=SEED,
        input_names=workload.input_names,
        monitor=monitor,
        monitor_at=monitor.fractions if monitor is not None else (),
    )
    return stats.seconds


def example_args(workload: Any) -> tuple:
    import torch

    inputs = workload.latency_inputs(1)
    return tuple(torch.from_numpy(inputs[name]) for name in workload.input_names)
