"""Hardware targets: one `Target` class per kind, one registry.

Adding a hardware kind is one new module (a `RooflineTarget` subclass overriding the hooks its
hardware changes) plus one line in `KINDS`. Each profile in `hardware_profiles/` names its kind.
"""

from __future__ import annotations

from pathlib import Path

from autoaccel.targets.asic import AsicTarget
from autoaccel.targets.base import Estimate, GraphCost, NodeCost, Plan, Target
from autoaccel.targets.cpu import CpuTarget
from autoaccel.targets.fpga import FpgaTarget
from autoaccel.targets.gpu import GpuTarget
from autoaccel.targets.profile import PROFILES_DIR, HardwareProfile, select_profiles
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
    """The cost model for one profile, chosen by its kind."""
    return KINDS[profile.kind](profile)


def load_targets(names: list[str] | None, directory: Path = PROFILES_DIR) -> dict[str, Target]:
    """Targets for the named profiles (all when `names` is None), by name."""
    return {name: make_target(p) for name, p in select_profiles(names, directory).items()}


__all__ = [
    "KINDS",
    "Estimate",
    "GraphCost",
    "HardwareProfile",
    "NodeCost",
    "Plan",
    "RooflineTarget",
    "Target",
    "load_targets",
    "make_target",
]
