"""The one shape every acceleration technique has.

A technique declares its search parameters (with the values it can take and the conditions
under which each is active) and applies one configuration to a candidate. The search space
YAML narrows those declarations; the flat recipe `{"<technique>.<param>": value}` is the
Optuna trial's params, the MLflow run's params, and what `export` replays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from autoaccel.workloads.base import Workload


IMPLIED: dict[str, Any] = {"runtime.backend": "onnxruntime"}
"""What a recipe that leaves these keys out means (recipes of studies from before hardware was
projected instead of searched had no runtime settings when they named an estimated target)."""


def recipe_value(recipe: dict[str, Any], key: str) -> Any:
    return recipe.get(key, IMPLIED.get(key))


class Stage(IntEnum):
    """When a technique applies; the build runs them in this order."""

    TORCH = 0  # on the torch module, before export (distillation, pruning)
    ONNX = 1  # on the exported ONNX graph (fusion, quantization)
    RUNTIME = 2  # settings of the session that runs the model (threads, graph level)


@dataclass(frozen=True)
class Param:
    """One searchable knob: categorical (`choices`) or numeric (`low`..`high`)."""

    name: str
    default: Any
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    integer: bool = False
    log: bool = False
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Active only when each named recipe key (e.g. "quantize.mode") has one of these values."""
    session: bool = False
    """A setting of the session that runs the model, not of the model file: never rebuilds."""
    help: str = ""
    accurate: Any = None
    """The choice that keeps the most quality, where one does (per-channel scales, more of a
    graph left in float): a build that broke the limit is tried again toward it."""

    def is_active(self, recipe: dict[str, Any]) -> bool:
        return all(recipe_value(recipe, key) in allowed for key, allowed in self.when.items())


@dataclass(frozen=True)
class Candidate:
    """What the build has produced so far: a model in one runtime plus its session settings."""

    backend: str  # "onnxruntime", "openvino", "torch" or "torch_compile"
    torch_model: Any = None
    onnx_path: Path | None = None
    session: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    """Facts about the model later steps need (e.g. attention heads for fusion)."""
    train_seconds: float = 0.0
    """Training spent building this candidate in this trial (0 when every step was cached)."""

    def with_session(self, **settings: Any) -> Candidate:
        return replace(self, session={**self.session, **settings})


@dataclass(frozen=True)
class BuildContext:
    """What a technique may use: the workload (calibration data) and a fresh output folder."""

    workload: Workload
    workdir: Path


class TrainingMonitor(Protocol):
    """Watches a training run: called with the model (eval mode) at each of `fractions` of the
    steps; raises to stop a run that cannot pay off (see `autoaccel.early_stop`)."""

    fractions: tuple[float, ...]

    def __call__(self, model: Any, fraction: float) -> None: ...


class Technique(ABC):
    name: str
    stage: Stage
    requires: dict[str, tuple[Any, ...]] = {}
    """Recipe conditions for the whole technique (e.g. only with the ONNX Runtime backend)."""
    shapes_model: tuple[str, ...] = ()
    """Session settings `apply` also reads: away from their default they are part of the
    cached model's key (e.g. a fusion the session is told not to redo is not done offline)."""

    @abstractmethod
    def params(self, workload: Workload | None) -> tuple[Param, ...]:
        """The knobs this technique offers for this workload (some depend on the model);
        for `None`, every knob it can offer (what a search space file may name)."""

    def changes_model(self, config: dict[str, Any]) -> bool:
        """Whether `apply` must run for this configuration (e.g. quantize mode "none": no)."""
        return True

    @abstractmethod
    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        """Return the candidate with its model transformed by this configuration.

        Writes its model file under `ctx.workdir`; the build caches that folder by the hash of
        the recipe prefix, so `apply` runs once per distinct prefix. Session settings (params
        declared `session=True`) are applied by the build, not here.
        """

    def describe(self, config: dict[str, Any]) -> str | None:
        """A few words for people (reports, the recommendation); None when it does nothing."""
        return f"{self.name} " + ", ".join(f"{k}={v}" for k, v in config.items())

    def is_active(self, recipe: dict[str, Any]) -> bool:
        return all(recipe_value(recipe, k) in allowed for k, allowed in self.requires.items())


class TorchTechnique(Technique):
    """A technique that changes the torch model before export (distillation, pruning).

    Split in two so a trained result can be cached as a state dict and reloaded safely
    (`torch.load(weights_only=True)`): `structure` gives the new architecture without any
    training (cheap and deterministic), `train` recovers quality (the expensive part).
    """

    stage = Stage.TORCH

    def params(self, workload: Workload | None) -> tuple[Param, ...]:
        return self.declare(workload) if trainable(workload) else ()

    @abstractmethod
    def declare(self, workload: Workload | None) -> tuple[Param, ...]:
        """The knobs, for a workload that offers training data (or any, for `None`)."""

    @abstractmethod
    def structure(self, model: Any, config: dict[str, Any], workload: Workload) -> Any:
        """A new module of the target shape, derived from `model` without training it."""

    def trains(self, config: dict[str, Any]) -> bool:
        """Whether `train` runs a training loop for this configuration (a step count above
        0): what a cached result saves, and what the early-stopping rule can watch."""
        return True

    @abstractmethod
    def train(
        self,
        model: Any,
        teacher: Any,
        config: dict[str, Any],
        workload: Workload,
        monitor: TrainingMonitor | None = None,
    ) -> float:
        """Train `model` in place against the fp32 `teacher`; return the seconds spent.
        `monitor`, when given, is called during training and may stop it by raising."""

    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        teacher = ctx.workload.torch_model()
        model = self.structure(candidate.torch_model, config, ctx.workload)
        seconds = self.train(model, teacher, config, ctx.workload)
        return replace(
            candidate, torch_model=model, train_seconds=candidate.train_seconds + seconds
        )


def trainable(workload: Workload | None) -> bool:
    """Whether teacher-guided training applies: a torch model and training data whose output
    kind is declared or detected (`Workload.output_kind`); None stands for any workload."""
    return workload is None or (
        workload.torch_model_available()
        and not workload.torch_edit_reason()
        and workload.output_kind is not None
    )
