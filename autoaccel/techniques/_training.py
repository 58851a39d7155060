"""Teacher-guided training shared by distillation and pruning's recovery fine-tuning."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from autoaccel.techniques.base import TrainingMonitor

if TYPE_CHECKING:
    from autoaccel.compress.checkpoints import CheckpointStore
    from autoaccel.compress.distillation import TrainStats

SEED = 0
TEMPERATURE, ALPHA = 4.0, 0.7
"""The classifier loss's settings when a recipe leaves them out."""

_TEACHER_OUTPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""teacher module -> {content hash of the batches: {batch index: output}}: the teacher's outputs on
the training split, computed once per process (the candidate worker lives for the whole
search) and read by every student and every recovery fine-tune after that."""

_RESUMABLE: ContextVar[tuple[CheckpointStore, list[TrainStats]] | None] = ContextVar(
    "resumable", default=None
)


@contextlib.contextmanager
def resumable(store: CheckpointStore) -> Iterator[list[TrainStats]]:
    """Within the block, training keeps and continues checkpoints in `store` (keyed by the
    caller for the teacher) and records each run's stats in the list it yields.

    A context rather than an argument: the techniques' `train` stays one signature, and
    only the builder, which owns the cache, lends a store."""
    runs: list[TrainStats] = []
    token = _RESUMABLE.set((store, runs))
    try:
        yield runs
    finally:
        _RESUMABLE.reset(token)


def distill_into(
    model: Any,
    teacher: Any,
    workload: Any,
    steps: int,
    config: dict[str, Any],
    monitor: TrainingMonitor | None = None,
) -> float:
    """Train `model` toward the fp32 teacher on the workload's training split; seconds spent.

    `distillation_loss` picks the loss from `workload.output_kind`. Inside `resumable`, a
    run continues the checkpoint of a shorter one with the same everything-but-steps.
    """
    from autoaccel.compress.distillation import batches_digest, train
    from autoaccel.machine import training_precision

    if steps <= 0:
        return 0.0
    settings = loss_settings(workload.output_kind, config, workload.name)
    loss = distillation_loss(workload.output_kind, config, workload.name)
    batches = workload.training_batches()
    per_teacher = _TEACHER_OUTPUTS.setdefault(teacher, {})
    lent = _RESUMABLE.get()
    with frozen_embeddings(model):
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
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
            teacher_outputs=per_teacher.setdefault(batches_digest(batches), {}),
            checkpoints=None if lent is None else lent[0].keyed({"loss": settings}),
            precision=training_precision(trainable),
        )
    if lent is not None:
        lent[1].append(stats)
    return stats.seconds


@contextlib.contextmanager
def frozen_embeddings(model: Any) -> Iterator[None]:
    """Keep every embedding table's weights (token, position) as the teacher's while the
    model trains, then restore `requires_grad`.

    Why: the dense gradient and AdamW update of a 30k x 384 token table are a third of a
    small student's step on a CPU, and the few hundred steps a search affords touch few of
    its rows. MiniLM, 400 steps: a 2-layer student 44 -> 28 s, quality 0.6087 -> 0.6073; a
    1-layer one 0.5213 -> 0.5228 (task_quality, search split)."""
    import torch

    tables = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    before = [w.requires_grad for w in tables]
    for w in tables:
        w.requires_grad_(False)
    try:
        yield
    finally:
        for w, flag in zip(tables, before, strict=True):
            w.requires_grad_(flag)


def loss_settings(
    kind: str | None, config: dict[str, Any], name: str = "the workload"
) -> dict[str, Any]:
    """What the loss of `distillation_loss` depends on: the output kind, and for a classifier
    its temperature and alpha (part of a checkpoint's key)."""
    if kind in ("embedding", "scores"):
        return {"kind": kind}
    if kind not in ("logits", "probabilities"):
        raise ValueError(f"{name}: output_kind {kind!r} has no distillation loss")
    temperature = float(config.get("temperature", TEMPERATURE))
    return {"kind": kind, "temperature": temperature, "alpha": float(config.get("alpha", ALPHA))}


def distillation_loss(
    kind: str | None, config: dict[str, Any], name: str = "the workload"
) -> Callable[[Any, Any, Any], Any]:
    """The loss that fits the outputs: Hinton KD with `temperature` and `alpha` for a
    classifier (on the logits as they are; on log-probabilities for softmax outputs, which
    differ from the logits by a per-row constant), 1 - cosine for an embedding, mean squared
    error for scores. Batches without labels train on the soft targets alone (alpha = 1)."""
    from autoaccel.compress.distillation import (
        embedding_loss,
        kd_loss,
        logits_from_probs,
        score_loss,
    )

    settings = loss_settings(kind, config, name)
    if kind == "embedding":
        return lambda student_out, teacher_out, labels: embedding_loss(student_out, teacher_out)
    if kind == "scores":
        return lambda student_out, teacher_out, labels: score_loss(student_out, teacher_out)
    as_logits = logits_from_probs if kind == "probabilities" else (lambda out: out)
    temperature, alpha = settings["temperature"], settings["alpha"]

    def loss(student_out, teacher_out, labels):
        return kd_loss(
            as_logits(student_out),
            as_logits(teacher_out),
            labels,
            temperature,
            alpha if labels is not None else 1.0,
        )

    return loss
