"""Knowledge distillation building blocks: losses, a layer-dropping student, a loop whose
schedule lets a longer run continue a shorter one.

Pure functions, no search logic: a technique decides *what* to distil; this module knows
*how*. The teacher is always the workload's fp32 torch model.

Data: `train` takes whatever batches it is given; a workload supplies them from its training
split (`Workload.training_batches()`), which never overlaps the data it is judged on.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from autoaccel.compress.layout import LAYER_COUNT_ATTRS, find_layout

if TYPE_CHECKING:
    import torch

    from autoaccel.compress.checkpoints import CheckpointStore

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


def score_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, labels: Any = None):
    """Mean squared error to the teacher's scores (one number per row: a regression or
    ranking head), relative to their spread so the scale of the scores does not set the step.
    `labels` is ignored (a `LossFn`)."""
    import torch.nn.functional as F

    teacher = teacher_out.float().reshape(len(teacher_out), -1)
    scale = teacher.var(unbiased=False).clamp_min(1e-6) if len(teacher) > 1 else 1.0
    return F.mse_loss(student_out.float().reshape(teacher.shape), teacher) / scale


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


WARMUP_STEPS = 30
"""Warm-up of every run of at least 4x as many steps (a shorter run warms up over a quarter of
its own): a fixed length, so runs of different lengths share their start."""

DECAY_FRACTION = 0.2
"""The last fifth of a run decays to 0 (Hägele et al. 2024 find a 20 % cool-down of WSD
matches a cosine schedule tuned to the run's length)."""


@dataclass(frozen=True)
class WSD:
    """Warm-up, stable, decay (Hu et al. 2024, MiniCPM): linear warm-up over `warmup` steps,
    the peak rate until `stable_end`, then linear decay to 0 at `steps`.

    Unlike a decay spread over the whole run, the factors of a run's first `stable_end` steps
    are those of every longer run with the same warm-up, so a longer run can continue from a
    shorter one's state at its stable end (`checkpoints.py`) instead of starting over.
    """

    steps: int

    @property
    def warmup(self) -> int:
        return max(1, min(WARMUP_STEPS, self.steps // 4))

    @property
    def stable_end(self) -> int:
        return max(self.warmup, self.steps - math.ceil(DECAY_FRACTION * self.steps))

    def factor(self, step: int) -> float:
        """The learning rate of (0-based) `step` as a share of the peak."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if step < self.stable_end:
            return 1.0
        return max(0.0, (self.steps - step) / max(1, self.steps - self.stable_end))


@dataclass(frozen=True)
class TrainStats:
    """What one distillation run did: its length, the step it started from (a checkpoint's,
    0 when fresh), wall time, loss of the first and the last step it ran, its precision."""

    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    resumed_from: int = 0
    precision: str = "fp32"

    @property
    def steps_run(self) -> int:
        return self.steps - self.resumed_from

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 else float("inf")


def _fp32(out: Any) -> Any:
    """A bf16 autocast output as fp32, so the loss (and its reductions) run in full precision."""
    import torch

    if isinstance(out, torch.Tensor) and out.is_floating_point():
        return out.float()
    return out


def batches_digest(batches: Sequence[Batch]) -> str:
    """Which training batches these are, by content (a workload may build its list anew at
    each call): teacher outputs and checkpoints are never reused for other data."""
    digest = hashlib.blake2b(digest_size=16)
    for inputs, labels in batches:
        named = [(name, inputs[name]) for name in sorted(inputs)]
        if labels is not None:
            named.append(("labels", labels))
        for name, given in named:
            array = np.ascontiguousarray(given)
            digest.update(f"{name}{array.shape}{array.dtype}".encode())
            digest.update(array.data)
    return digest.hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    """A model's state by content, with names, shapes, dtypes and which parameters train: a
    run resumes only a checkpoint of a student that started out identical."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    trained = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    digest.update(json.dumps(trained).encode())
    for name, tensor in sorted(model.state_dict().items()):
        # a fresh contiguous copy: contiguous() keeps a one-element tensor's stride of 0
        # (onnx2torch's expanded constants), which a byte view refuses
        flat = tensor.detach().cpu().reshape(-1).clone(memory_format=torch.contiguous_format)
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


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
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    monitor: Callable[[Any, float], None] | None = None,
    monitor_at: Sequence[float] = (),
    teacher_outputs: dict[int, Any] | None = None,
    threads: int | None = None,
    checkpoints: CheckpointStore | None = None,
    precision: str = "fp32",
) -> TrainStats:
    """Distil `teacher` into `student` in place for `steps` AdamW steps; return the stats.

    Each step takes the next batch, cycling over `batches` in order, and feeds the inputs
    positionally in `input_names` order (the workload's export order). The teacher runs in
    eval mode without gradients; its output per batch is computed once and kept in
    `teacher_outputs` (batch index -> output), which a caller may share across runs over the
    same teacher and batches so that no run recomputes it. Only parameters with
    `requires_grad` are trained (freeze some to keep them). The learning rate follows
    `WSD(steps)`; gradients are clipped to `max_grad_norm`.

    With `checkpoints`, the run keeps its state at the end of its stable phase, and starts
    from the furthest state an earlier run left at or before that point instead of step 0:
    the same result as a fresh run, to float tolerance, for `steps - resumed_from` steps.
    The key covers the loop's settings, the data and the student's starting weights; the
    caller's store is keyed by the rest (teacher, loss). Thread counts are not in it.

    `monitor(student, fraction)` is called (student in eval mode) after the steps at each
    fraction in `monitor_at`, except those a resumed run starts beyond; it may raise to stop
    training early (the search's early-stopping rule does), and never shifts the training's
    RNG. Checks are outside the timed loop's arithmetic but inside its wall time.

    `precision="bf16"` runs the student's forward pass under CPU autocast to bfloat16 (its
    backward follows); weights, optimizer state and the loss stay fp32. It is part of the
    checkpoint key (fp32 runs keep their old keys).

    `seed` drives all randomness inside the loop (dropout) on a forked torch RNG. Torch runs
    on `threads` (default: every usable core other work leaves free, `training_threads`):
    results differ in the last bits across thread counts, which is not worth training at
    half speed; the previous thread count and RNG state are restored. The initial weights
    are the caller's. The student is left in eval mode.
    """
    import torch

    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision {precision!r}: use fp32 or bf16")
    if steps < 1 or not batches:
        raise ValueError(f"need steps >= 1 and at least one batch (got {steps}, {len(batches)})")
    params = [p for p in student.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the student has no trainable parameters")

    def tensors(inputs: Inputs) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in input_names]

    # fused: one kernel for all tensors, ~8x faster steps on CPU (MiniLM: 100 -> 12 ms)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    schedule = WSD(steps)
    start, resumed, save_at = 0, None, None
    began = time.perf_counter()  # finding and loading a checkpoint is part of the cost
    if checkpoints is not None:
        checkpoints = checkpoints.keyed(
            {
                "schedule": ["wsd", schedule.warmup, DECAY_FRACTION],
                "optimizer": ["adamw", lr, weight_decay, max_grad_norm],
                "seed": seed,
                "inputs": list(input_names),
                "batches": batches_digest(batches),
                "student": weights_digest(student),
                "frozen": sorted(n for n, p in student.named_parameters() if not p.requires_grad),
                **({"precision": precision} if precision != "fp32" else {}),
            }
        )
        resumed = checkpoints.latest(upto=schedule.stable_end)
        if schedule.stable_end < steps:  # a checkpoint at the end would be the result itself
            save_at = schedule.stable_end
    if resumed is not None:
        start = resumed[0]
        student.load_state_dict(resumed[1]["student"])
        optimizer.load_state_dict(resumed[1]["optimizer"])
    from autoaccel.machine import training_threads

    teacher_cache = {} if teacher_outputs is None else teacher_outputs
    losses: list[float] = []
    checks = {max(1, round(f * steps)): f for f in monitor_at if 0 < round(f * steps) < steps}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or training_threads())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if resumed is not None:
                torch.set_rng_state(resumed[1]["rng"])
            teacher.eval()
            student.train()
            for step in range(start, steps):
                index = step % len(batches)
                inputs, labels = batches[index]
                args = tensors(inputs)
                if index not in teacher_cache:
                    with torch.no_grad():
                        teacher_cache[index] = teacher(*args)
                target = None if labels is None else torch.from_numpy(np.asarray(labels))
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    out = student(*args)
                loss = loss_fn(_fp32(out), teacher_cache[index], target)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"distillation loss became {loss.item()} at {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                for group in optimizer.param_groups:
                    group["lr"] = lr * schedule.factor(step)
                optimizer.step()
                if step in (start, steps - 1):
                    losses.append(float(loss.detach()))
                if monitor is not None and step + 1 in checks:
                    student.eval()
                    with torch.random.fork_rng(devices=[]):
                        monitor(student, checks[step + 1])
                    student.train()
                if step + 1 == save_at and checkpoints is not None:
                    state = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}
                    checkpoints.save(step + 1, {**state, "student": student.state_dict()})
            seconds = time.perf_counter() - began
    finally:
        torch.set_num_threads(previous_threads)
        student.eval()
    return TrainStats(
        steps, seconds, losses[0], losses[-1], resumed_from=start, precision=precision
    )
