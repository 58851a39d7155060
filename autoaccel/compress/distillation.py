"""Knowledge distillation building blocks: losses, a layer-dropping student, a loop.

Pure functions, no search logic: a technique decides *what* to distil; this module knows
*how*. The teacher is always the workload's fp32 torch model.

Data: `train` takes whatever batches it is given; a workload supplies them from its training
split (`Workload.training_batches()`), which never overlaps the data it is judged on.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from autoaccel.compress.layout import LAYER_COUNT_ATTRS, find_layout

if TYPE_CHECKING:
    import torch

Inputs = dict[str, np.ndarray]
Batch = tuple[Inputs, np.ndarray | None]
"""As `autoaccel.workloads.base` defines them (not imported: workloads build on compress)."""

LossFn = Callable[[Any, Any, Any], Any]
"""(student_out, teacher_out, labels or None) -> scalar loss tensor."""


def logits_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities, usable as logits for models that end in Softmax (the digits nets);
    never for a model that ends in logits (its negative entries would all clamp to one value).

    softmax is shift-invariant: softmax(log p) = p / sum(p) = p, so log p differs from the
    model's pre-softmax logits only by a per-row constant and gives the same softened
    distributions at any temperature. The clamp keeps log finite for probabilities that
    underflowed to 0 (the gradient through clamped entries is then 0).
    """
    return probs.clamp_min(1e-9).log()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al. (2015): alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1-alpha) * CE.

    T^2 keeps the soft term's gradient scale independent of T. KL is averaged over the batch
    (`batchmean`, the true KL per example); CE uses the hard labels at T = 1. With alpha = 1
    the labels are not needed and may be None.
    """
    import torch.nn.functional as F

    t = float(temperature)
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    loss = alpha * t * t * soft
    if alpha != 1.0:
        if labels is None:
            raise ValueError("kd_loss needs labels unless alpha == 1 (pure distillation)")
        loss = loss + (1.0 - alpha) * F.cross_entropy(student_logits, labels.long())
    return loss


def embedding_loss(
    student_emb: torch.Tensor, teacher_emb: torch.Tensor, labels: Any = None
) -> torch.Tensor:
    """mean(1 - cosine): what sentence-embedding metrics compare, independent of norm.

    `labels` is ignored; it is there so this is a `LossFn` that `train` can take directly.
    """
    import torch.nn.functional as F

    return (1.0 - F.cosine_similarity(student_emb, teacher_emb, dim=-1)).mean()


def default_layers(total: int, keep: int) -> list[int]:
    """Evenly spaced teacher layers for a `keep`-layer student: floor(i * (total-1)/(keep-1)).

    Always the first layer (it reads the embeddings it was trained on) and the last (its
    output is what pooling was trained on); in between, rounded down: 6->2 [0, 5],
    6->3 [0, 2, 5], 6->4 [0, 1, 3, 5], 12->4 [0, 3, 7, 11]. keep == 1 gives [0].
    """
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers (need 1 <= keep <= total)")
    if keep == 1:
        return [0]
    return [i * (total - 1) // (keep - 1) for i in range(keep)]


def layer_student(model: torch.nn.Module, keep_layers: Sequence[int]) -> torch.nn.Module:
    """A deep copy of a transformer with only `keep_layers` of its encoder layers (the stack
    `layout.find_layout` reads: BERT's `encoder.layer`, DistilBERT's `transformer.layer`,
    ViT's `layers`, an `nn.TransformerEncoder`'s `layers`, inside any wrapper).

    The kept layers start as copies of the teacher's (the usual layer-dropping initialisation:
    a good start that distillation then repairs); everything else is copied too. Layer counts
    kept on the config or the stack's owner (`num_hidden_layers`, `n_layers`, ...) are set to
    the new count. The copy shares no storage with the teacher, so training it leaves the
    teacher intact. Raises `NoLayout` (a ValueError) for a model without a readable stack.
    """
    import torch

    total = find_layout(model).num_layers
    keep = list(keep_layers)
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= total:
        raise ValueError(
            f"keep_layers must be increasing, distinct indices in 0..{total - 1}: {keep}"
        )
    student = copy.deepcopy(model)
    found = find_layout(student)
    layers = getattr(found.owner, found.attr)
    kept = [layers[i] for i in keep]
    for new_index, layer in enumerate(kept):
        for module in layer.modules():  # transformers numbers layers for its KV cache
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    setattr(found.owner, found.attr, torch.nn.ModuleList(kept))
    for holder in (found.config, found.owner):
        for name in LAYER_COUNT_ATTRS:
            if holder is not None and getattr(holder, name, None) == total:
                setattr(holder, name, len(kept))
    return student.eval()


@dataclass(frozen=True)
class TrainStats:
    """What one distillation run did: step count, wall time, loss of its first and last step."""

    steps: int
    seconds: float
    first_loss: float
    last_loss: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")


def _lr_factor(step: int, steps: int, warmup_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over `warmup_steps`, then linear decay to 0 at `steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (steps - step) / max(1, steps - warmup_steps))


def train(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    batches: Sequence[Batch],
    loss_fn: LossFn,
    steps: int,
    lr: float,
    seed: int,
    input_names: Sequence[str],
    *,
    warmup: float = 0.1,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    monitor: Callable[[Any, float], None] | None = None,
    monitor_at: Sequence[float] = (),
    teacher_outputs: dict[int, Any] | None = None,
    threads: int | None = None,
) -> TrainStats:
    """Distil `teacher` into `student` in place for `steps` AdamW steps; return the stats.

    Each step takes the next batch, cycling over `batches` in order, and feeds the inputs
    positionally in `input_names` order (the workload's export order). The teacher runs in
    eval mode without gradients; its output per batch is computed once and kept in
    `teacher_outputs` (batch index -> output), which a caller may share across runs over the
    same teacher and batches so that no run recomputes it. Only parameters with
    `requires_grad` are trained (freeze some to keep them).
    The learning rate warms up linearly over the first `warmup` fraction of steps and then
    decays linearly to 0; gradients are clipped to `max_grad_norm`.

    `monitor(student, fraction)` is called (student in eval mode) after the steps at each
    fraction in `monitor_at`; it may raise to stop training early (the search's early-stopping
    rule does). Checks are outside the timed loop's arithmetic but inside its wall time.

    `seed` drives all randomness inside the loop (dropout) on a forked torch RNG. Torch runs
    on `threads` (default: every usable core other work leaves free, `training_threads`):
    results differ in the last bits across thread counts, which is not worth training at
    half speed; the previous thread count and RNG state are restored. The initial weights
    are the caller's. The student is left in eval mode.
    """
    import torch

    if steps < 1 or not batches:
        raise ValueError(f"need steps >= 1 and at least one batch (got {steps}, {len(batches)})")
    params = [p for p in student.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the student has no trainable parameters")

    def tensors(inputs: Inputs) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in input_names]

    # fused: one kernel for all tensors, ~8x faster steps on CPU (MiniLM: 100 -> 12 ms)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    warmup_steps = max(1, math.ceil(warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, steps, warmup_steps)
    )
    from autoaccel.machine import training_threads

    teacher_cache = {} if teacher_outputs is None else teacher_outputs
    losses: list[float] = []
    checks = {max(1, round(f * steps)): f for f in monitor_at if 0 < round(f * steps) < steps}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or training_threads())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            teacher.eval()
            student.train()
            start = time.perf_counter()
            for step in range(steps):
                index = step % len(batches)
                inputs, labels = batches[index]
                args = tensors(inputs)
                if index not in teacher_cache:
                    with torch.no_grad():
                        teacher_cache[index] = teacher(*args)
                target = None if labels is None else torch.from_numpy(np.asarray(labels))
                loss = loss_fn(student(*args), teacher_cache[index], target)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"distillation loss became {loss.item()} at {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
                schedule.step()
                if step in (0, steps - 1):
                    losses.append(float(loss.detach()))
                if monitor is not None and step + 1 in checks:
                    student.eval()
                    monitor(student, checks[step + 1])
                    student.train()
            seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous_threads)
        student.eval()
    return TrainStats(steps=steps, seconds=seconds, first_loss=losses[0], last_loss=losses[-1])
