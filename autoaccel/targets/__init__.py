"""Hardware targets: one `Target` shape, measured or estimated, and one registry.

Adding a hardware kind is one new module (a `RooflineTarget` subclass overriding the hooks its
hardware changes) plus one line in `KINDS`. Each profile in `hardware_profiles/` names its kind.
The devices that are really here (`cpu-local`, `cuda-local` when a CUDA GPU is present) are
`MeasuredTarget`s wrapping their profile's cost model. cpu-local's profile is derived from
the machine that runs the search (`autoaccel.targets.local_cpu`), calibrated on first use
(`ensure_calibrated`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoaccel.errors import UserError
from autoaccel.targets.asic import AsicTarget
from autoaccel.targets.base import Estimate, GraphCost, NodeCost, Plan, Target
from autoaccel.targets.cpu import CpuTarget
from autoaccel.targets.fpga import FpgaTarget
from autoaccel.targets.gpu import GpuTarget
from autoaccel.targets.measured import (
    CPU,
    CUDA,
    MeasuredTarget,
    cpu_target,
    cuda_device_name,
    cuda_target,
)
from autoaccel.targets.profile import PROFILES_DIR, HardwareProfile, load_profiles
from autoaccel.targets.roofline import RooflineTarget
from autoaccel.targets.tpu import TpuTarget

KINDS: dict[str, type[Target]] = {
    "cpu": CpuTarget,
    "gpu": GpuTarget,
    "tpu": TpuTarget,
    "fpga": FpgaTarget,
    "asic": AsicTarget,
}


def make_target(profile: HardwareProfile) -> Target:
    """The cost model for one profile, chosen by its kind (an estimated target)."""
    return KINDS[profile.kind](profile)


def load_targets(
    names: list[str] | None,
    directory: Path = PROFILES_DIR,
    calibration_root: Path | None = None,
) -> dict[str, Target]:
    """The search's targets by name: the measured devices here first (`cpu-local` always, its
    cost model calibrated from `calibration_root` when a calibration exists there;
    `cuda-local` when a CUDA GPU is present and wanted), then the named estimated profiles
    (all of them when `names` is None)."""
    profiles = load_profiles(directory)
    gpu = cuda_device_name()
    known = [*profiles, *([CUDA] if gpu else [])]
    unknown = [n for n in names or () if n not in known]
    if unknown:
        hint = f"; {CUDA} needs a CUDA GPU" if CUDA in unknown and not gpu else ""
        raise UserError(
            f"--targets: unknown target(s) {', '.join(unknown)}; choose from {', '.join(known)}"
            f" (autoaccel targets list){hint}"
        )
    if CPU not in profiles:
        raise UserError(f"{directory}: no {CPU}.yaml profile; reinstall autoaccel")
    from autoaccel.targets.local_cpu import this_machine

    targets: dict[str, Target] = {
        CPU: cpu_target(this_machine(calibration_root, None, profiles[CPU]))
    }
    if gpu and (names is None or CUDA in names):
        targets[CUDA] = cuda_target(gpu, profiles)
    for name in names if names is not None else profiles:
        if name not in targets:
            targets[name] = make_target(profiles[name])
    return targets


def ensure_calibrated(
    root: Path,
    targets: dict[str, Target],
    emit: Callable[[str, Any], None] | None = None,
    threads: int | None = None,
) -> dict[str, Target]:
    """`targets` with cpu-local calibrated on this machine: when `<root>/calibration/` has no
    calibration of this CPU for `threads` (default: the usable cores) one is timed now (~20 s
    on 2 cores, `emit`ted as status lines) and kept there for the next search. Without
    cpu-local in `targets`, they are returned as they are."""
    if CPU not in targets:
        return targets
    from autoaccel.targets.calibrate import first_use_calibration
    from autoaccel.targets.local_cpu import this_machine

    first_use_calibration(root, threads, emit)
    local = cpu_target(this_machine(root, threads))
    return {name: local if name == CPU else target for name, target in targets.items()}


def measured_targets(targets: dict[str, Target]) -> dict[str, Target]:
    return {n: t for n, t in targets.items() if t.measured}


def estimated_targets(targets: dict[str, Target]) -> dict[str, Target]:
    return {n: t for n, t in targets.items() if not t.measured}


__all__ = [
    "CPU",
    "CUDA",
    "KINDS",
    "Estimate",
    "GraphCost",
    "HardwareProfile",
    "MeasuredTarget",
    "NodeCost",
    "Plan",
    "RooflineTarget",
    "Target",
    "ensure_calibrated",
    "estimated_targets",
    "load_targets",
    "make_target",
    "measured_targets",
]
