"""Hardware profiles: `hardware_profiles/<name>.yaml`, validated once on load.

Every figure carries its source (a datasheet, a paper, a measurement here, or "assumed: why"),
so an estimate can always be traced to what it rests on. Figures are dense peak rates; sparse
speed-ups are a separate, explicit field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autoaccel.errors import UserError

PROFILES_DIR = Path(__file__).resolve().parents[2] / "hardware_profiles"
KINDS = ("cpu", "gpu", "tpu", "fpga", "asic")
Precision = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Figure(_Strict):
    """One published (or measured, or assumed) number and where it comes from."""

    value: float = Field(ge=0)
    source: str = Field(min_length=3)


class Memory(_Strict):
    capacity_gb: Figure
    bandwidth_gbps: Figure  # GB/s
    on_chip_mb: Figure | None = None  # SRAM / L2 / VMEM that can hold weights or activations
    on_chip_bandwidth_gbps: Figure | None = None
    """GB/s of bytes that stay on chip (gpu kind only; without it they cost no traffic)."""


class Interconnect(_Strict):
    """The link between devices of one plan (all-reduce and pipeline transfers)."""

    bandwidth_gbps: Figure  # GB/s per device, one direction
    latency_us: Figure  # per collective step (alpha)
    efficiency: Figure  # achieved share of bandwidth
    topology: str = ""


class Sparsity(_Strict):
    nm_2_4: bool = False  # runs 2:4 weights at `speedup` on matrix units
    speedup: Figure | None = None


class EagerLaunch(_Strict):
    """Host cost of launching a GPU build op by op from Python (PyTorch eager), gpu kind only:
    the host issues each op in `launch_us` while the GPU runs the one before, and spends
    `call_us` per forward call before its first op."""

    launch_us: Figure
    call_us: Figure


class Efficiency(_Strict):
    """Achieved share of peak, by how much work one op does (small ops reach little).

    `compute` and `memory` are (size, efficiency) points interpolated on log(size): size in
    FLOPs for compute and in bytes for memory. `overhead_us` is the fixed cost per op (kernel
    launch, dispatch; on a GPU: per kernel replayed as a CUDA graph). `eager`: the host's cost
    when a GPU build is launched op by op instead.
    """

    compute: list[tuple[float, float]] = Field(min_length=1)
    memory: list[tuple[float, float]] = Field(min_length=1)
    overhead_us: Figure
    eager: EagerLaunch | None = None
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _in_range(self) -> Efficiency:
        for label, curve in (("compute", self.compute), ("memory", self.memory)):
            sizes = [s for s, _ in curve]
            if sizes != sorted(sizes) or any(not 0 < e <= 1 for _, e in curve):
                raise ValueError(
                    f"efficiency.{label}: sizes must ascend and efficiencies lie in (0, 1]"
                )
        return self


class Systolic(_Strict):
    """TPU-style matrix unit: matmul dims are padded to `rows` x `cols` tiles."""

    rows: int = Field(ge=1)
    cols: int = Field(ge=1)
    source: str = Field(min_length=3)


class Fpga(_Strict):
    """Peak from the fabric: DSP count x clock x MACs per DSP at a precision."""

    dsp_count: Figure
    clock_mhz: Figure
    macs_per_dsp: dict[Precision, Figure]


class Fidelity(_Strict):
    """How far this profile's estimates were from measured latencies, and on what check: a
    profile without one was never checked against its hardware."""

    mdape_pct: float = Field(ge=0)  # median absolute % error of the estimate vs measured
    spearman: float | None = Field(None, ge=-1, le=1)  # rank correlation over the same rows
    n: int = Field(ge=1)  # rows
    check: str = Field(min_length=3)  # which estimates against which timings, and how
    measured_on: str = Field(min_length=3)  # the device and the date of the timings
    source: str = Field(min_length=3)  # where the rows are (a results file)


class HardwareProfile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: Literal["cpu", "gpu", "tpu", "fpga", "asic"]
    vendor: str
    description: str
    peak_tops: dict[Precision, Figure] = Field(min_length=1)
    """Dense peak per precision in tera-ops/s (TFLOPS for floats, TOPS for integers)."""
    native_precisions: list[Precision] = Field(min_length=1)
    memory: Memory
    efficiency: Efficiency
    sparsity: Sparsity = Sparsity()
    interconnect: Interconnect | None = None
    max_devices: int = Field(1, ge=1, le=4096)
    power_w: Figure
    idle_power_w: Figure | None = None
    price_per_hour_usd: Figure | None = None
    systolic: Systolic | None = None
    fpga: Fpga | None = None
    calibrated: dict[str, float | str] | None = None
    """Written by `autoaccel calibrate` (cpu-local only): fitted factors and when."""
    fidelity: Fidelity | None = None
    """The estimates' measured error (None: never checked on this hardware)."""

    @model_validator(mode="after")
    def _consistent(self) -> HardwareProfile:
        missing = [p for p in self.native_precisions if p not in self.peak_tops]
        if missing:
            raise ValueError(f"native_precisions {missing} have no peak_tops entry")
        if self.max_devices > 1 and self.interconnect is None:
            raise ValueError("max_devices > 1 needs an interconnect")
        if self.kind == "tpu" and self.systolic is None:
            raise ValueError("a tpu profile needs systolic (the matrix unit's tile size)")
        if self.kind == "fpga" and self.fpga is None:
            raise ValueError("an fpga profile needs fpga (DSP count, clock, MACs per DSP)")
        if self.sparsity.nm_2_4 and self.sparsity.speedup is None:
            raise ValueError("sparsity.nm_2_4 needs sparsity.speedup")
        return self


def load_profile(path: Path) -> HardwareProfile:
    """Read and validate one profile; bad files are a one-line `UserError`."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML; fix the syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of profile fields at the top level")
    try:
        profile = HardwareProfile(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "profile"
        raise UserError(f"{path}: {key}: {err['msg']}; see hardware_profiles/README.md") from None
    if profile.name != path.stem:
        raise UserError(f"{path}: name {profile.name!r} must match the file name {path.stem!r}")
    return profile


def load_profiles(directory: Path = PROFILES_DIR) -> dict[str, HardwareProfile]:
    """Every profile in `directory`, by name."""
    if not directory.is_dir():
        raise UserError(f"{directory}: no hardware_profiles folder; reinstall autoaccel")
    return {p.stem: load_profile(p) for p in sorted(directory.glob("*.yaml"))}


def select_profiles(names: list[str] | None, directory: Path = PROFILES_DIR):
    """The named profiles (all when `names` is None), with a fix-it message for typos."""
    profiles = load_profiles(directory)
    if not names:
        return profiles
    unknown = [n for n in names if n not in profiles]
    if unknown:
        raise UserError(
            f"--targets: unknown target(s) {', '.join(unknown)}; "
            f"choose from {', '.join(profiles)} (autoaccel targets list)"
        )
    return {n: profiles[n] for n in names}
