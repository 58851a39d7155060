"""Hardware targets: one `Target` shape, measured or estimated, and one registry.

Adding a hardware kind is one new module (a `RooflineTarget` subclass overriding the hooks its
hardware changes) plus one line in `KINDS`. Each profile in `hardware_profiles/` names its kind.
The devices that are really here (`cpu-local`, `cuda-local` when a CUDA GPU is present) are
`MeasuredTarget`s wrapping their profile's cost model.
"""

from __future__ import annotations

from pathlib import Path

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
    local = profiles[CPU]
    if calibration_root is not None:
        from autoaccel.targets.calibrate import apply_calibration

        local = apply_calibration(local, calibration_root)
    targets: dict[str, Target] = {CPU: cpu_target(local)}
    if gpu and (names is None or CUDA in names):
        targets[CUDA] = cuda_target(gpu, profiles)
    for name in names if names is not None else profiles:
        if name not in targets:
            targets[name] = make_target(profiles[name])
    return targets


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
    "estimated_targets",
    "load_targets",
    "make_target",
    "measured_targets",
]
