"""Target hardware and parallelism strategy as search dimensions.

`target.name` picks a profile in `hardware_profiles/`: `cpu-local` is measured for real (its
own parallelism is the runtime's threads and execution mode); every other target is estimated
by its kind's cost model, under the plan the other parameters describe (batch size, data /
tensor / pipeline parallel degree, micro-batches). Nothing here changes the model file.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from autoaccel.techniques.base import BuildContext, Candidate, Param, Stage, Technique

LOCAL = "cpu-local"


@cache
def profile_names() -> tuple[str, ...]:
    """Names of the profiles on disk (validated when a search loads them)."""
    from autoaccel.targets.profile import PROFILES_DIR

    names = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    return tuple([LOCAL] + [n for n in names if n != LOCAL])


@cache
def multi_device_names() -> tuple[str, ...]:
    """Profiles whose plans may span several devices (`max_devices` > 1): the parallelism
    parameters exist only for them, so single-device targets never draw an impossible plan."""
    import yaml

    from autoaccel.targets.profile import PROFILES_DIR

    names = []
    for path in sorted(PROFILES_DIR.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            continue  # reported when the search validates the profiles
        if isinstance(data, dict) and isinstance(data.get("max_devices"), int):
            if data["max_devices"] > 1 and path.stem != LOCAL:
                names.append(path.stem)
    return tuple(names)


BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class TargetChoice(Technique):
    name = "target"
    stage = Stage.RUNTIME
    configures_session = False

    def params(self, workload) -> tuple[Param, ...]:
        names = profile_names()
        estimated = {"target.name": tuple(n for n in names if n != LOCAL)}
        parallel = {"target.name": multi_device_names()}
        return (
            Param("name", LOCAL, choices=names, session=True, help="hardware the model runs on"),
            Param(
                "batch_size",
                1,
                choices=BATCHES,
                when=estimated,
                session=True,
                help="requests served together (estimated targets)",
            ),
            Param(
                "data",
                1,
                choices=(1, 2, 4, 8),
                when=parallel,
                session=True,
                help="data-parallel replicas: more throughput, same latency",
            ),
            Param(
                "tensor",
                1,
                choices=(1, 2, 4, 8),
                when=parallel,
                session=True,
                help="tensor-parallel degree: matrix work split, plus an all-reduce",
            ),
            Param(
                "pipeline",
                1,
                choices=(1, 2, 4),
                when=parallel,
                session=True,
                help="pipeline stages of consecutive layers (adds a bubble)",
            ),
            Param(
                "micro_batches",
                1,
                choices=(1, 2, 4, 8),
                when={
                    **parallel,
                    "target.pipeline": (2, 4),
                    "target.batch_size": tuple(b for b in BATCHES if b > 1),
                },
                session=True,
                help="micro-batches fed through the pipeline",
            ),
        )

    def changes_model(self, config: dict[str, Any]) -> bool:
        return False

    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        return candidate  # chooses where the model is timed or estimated, not the model

    def describe(self, config: dict[str, Any]) -> str | None:
        name = config.get("name", LOCAL)
        if name == LOCAL:
            return None  # the runtime's description says how it runs here
        parts = [f"on {name} (estimated)"]
        if config.get("batch_size", 1) > 1:
            parts.append(f"batch {config['batch_size']}")
        for key, label in (("data", "data"), ("tensor", "tensor"), ("pipeline", "pipeline")):
            if config.get(key, 1) > 1:
                parts.append(f"{label} parallel {config[key]}")
        if config.get("pipeline", 1) > 1 and config.get("micro_batches", 1) > 1:
            parts.append(f"{config['micro_batches']} micro-batches")
        return ", ".join(parts)


def plan_of(recipe: dict[str, Any]):
    """The parallelism plan a recipe asks for."""
    from autoaccel.targets.base import Plan

    return Plan(
        batch_size=int(recipe.get("target.batch_size", 1)),
        data=int(recipe.get("target.data", 1)),
        tensor=int(recipe.get("target.tensor", 1)),
        pipeline=int(recipe.get("target.pipeline", 1)),
        micro_batches=int(recipe.get("target.micro_batches", 1)),
    )
