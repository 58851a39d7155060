"""Targets that are really here: the search runs every build on them and times it by the
measurement protocol.

A `MeasuredTarget` is a device (`cpu`, or `cuda` when a CUDA GPU and a runtime that reaches it
are installed) plus its *estimated twin*: the cost model of the profile that describes the same
hardware. The twin prices what a clock cannot tell (energy, $ per million) and, projected
beside the measurement, shows the cost model's error on hardware the user really has.

`cpu-local` is always present. `cuda-local` appears when ONNX Runtime's CUDA execution provider
or torch's CUDA build sees a GPU; its twin is the profile whose name matches the GPU's model
(an H100 -> `nvidia-h100-sxm`), or none when no profile describes it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from autoaccel.errors import InfeasibleRecipe
from autoaccel.targets.base import Estimate, GraphCost, Plan, Target

if TYPE_CHECKING:
    from autoaccel.targets.profile import HardwareProfile

CPU = "cpu-local"
CUDA = "cuda-local"
MEASURED_NAMES = (CPU, CUDA)

# GPU model name fragment -> the profile that describes it (first match wins)
_CUDA_PROFILES = (
    ("H100", "nvidia-h100-sxm"),
    ("A100", "nvidia-a100-80gb"),
    ("L4", "nvidia-l4"),
    ("T4", "nvidia-t4"),
    ("ORIN", "nvidia-jetson-orin"),
)


class MeasuredTarget(Target):
    """A device the search times candidates on (`device`: "cpu" or "cuda"); `profile` is its
    twin's (None without a twin)."""

    kind = "measured"
    measured = True

    def __init__(self, name: str, device: str, twin: Target | None) -> None:
        super().__init__(twin.profile if twin is not None else None)
        self._name = name
        self.device = device
        self.twin = twin
        """The cost model of the same hardware (None when no profile describes it)."""

    @property
    def name(self) -> str:
        return self._name

    def max_devices(self) -> int:
        return 1  # one device, timed as it is

    def estimate(self, graph: GraphCost, plan: Plan) -> Estimate:
        """The twin's estimate: energy and $ for a measured latency, and the model's error."""
        if self.twin is None:
            raise InfeasibleRecipe(f"no hardware profile describes {self.name}'s device")
        return self.twin.estimate(graph, plan)

    def priced(self, latency_ms: float) -> dict[str, Any]:
        """Throughput, energy and $ of a *measured* batch-1 latency: the latency is measured,
        energy and cost multiply it by the profile's power and price, so they say which
        power and price, and where those come from (`power_source`, `price_source`: set by
        the user, derived or assumed). `calibration` is the evidence behind the twin's
        estimate (host, cpu, when, threads, fit error; None when not calibrated)."""
        figures: dict[str, Any] = {"throughput_qps": 1000.0 / latency_ms}
        prof = self.profile
        if prof is None:
            return figures
        power = prof.power_w
        figures["energy_j"] = power.value * latency_ms / 1000.0
        figures["power_w"] = power.value
        figures["power_source"] = power.source
        figures["energy_source"] = f"measured latency x {power.value:g} W ({power.source})"
        if prof.price_per_hour_usd is not None:
            hourly = prof.price_per_hour_usd
            figures["cost_per_million_usd"] = hourly.value / 3600.0 * latency_ms / 1000.0 * 1e6
            figures["price_per_hour_usd"] = hourly.value
            figures["price_source"] = hourly.source
        figures["calibration"] = calibration_evidence(prof)
        return figures


EVIDENCE = ("host", "cpu", "when", "threads", "suite", "fit_mdape", "n_samples")
EVIDENCE += ("load_avg_1min", "memory_bandwidth_gbps", "copied_from")


def calibration_evidence(profile: HardwareProfile) -> dict[str, Any] | None:
    """Which calibration a profile carries: where, when and how well it fitted."""
    calibrated = profile.calibrated or {}
    found = {k: calibrated[k] for k in EVIDENCE if k in calibrated}
    return found or None


def cpu_target(profile: HardwareProfile) -> MeasuredTarget:
    """This machine's CPU, with the cpu-local profile's (calibrated) cost model as its twin."""
    from autoaccel.targets.cpu import CpuTarget

    return MeasuredTarget(CPU, "cpu", CpuTarget(profile))


@functools.cache
def cuda_device_name() -> str | None:
    """The first CUDA GPU's model name when a runtime here can run on it, else None."""
    try:
        import onnxruntime as ort

        ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        ort_cuda = False
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    return "CUDA GPU" if ort_cuda else None


def cuda_twin_name(device_name: str) -> str | None:
    """The profile describing a GPU model (`NVIDIA H100 80GB HBM3` -> `nvidia-h100-sxm`)."""
    upper = device_name.upper()
    return next((profile for part, profile in _CUDA_PROFILES if part in upper), None)


def cuda_target(device_name: str, profiles: dict[str, HardwareProfile]) -> MeasuredTarget:
    """The local CUDA GPU, with the matching profile's cost model as its twin (none when no
    profile describes the model: then it has no energy or $ figures)."""
    from autoaccel.targets.gpu import GpuTarget

    twin_name = cuda_twin_name(device_name)
    twin = GpuTarget(profiles[twin_name]) if twin_name in profiles else None
    return MeasuredTarget(CUDA, "cuda", twin)
