"""The one shape every hardware target has, and the data a cost model reads.

A `Target` is a profile plus where its figures come from (`measured`, `source`). Every target
turns a build's analysed graph (`GraphCost`: per-node work, bytes, precision and sparsity) plus
a parallelism `Plan` into an `Estimate` with its kind's cost model; a *measured* target
(`autoaccel.targets.measured`: this CPU, a CUDA GPU when present) is also a device the search
runs candidates on and times by the protocol, and keeps its cost model only for what a clock
cannot tell (energy, $) and to show that model's error beside the measurement. A plan or
precision a target cannot run raises `InfeasibleRecipe` with the reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from autoaccel.targets.profile import HardwareProfile

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")


@dataclass(frozen=True)
class NodeCost:
    """One ONNX node's work at the analysed input shapes.

    `macs` counts multiply-accumulates of matrix-like ops (MatMul, Gemm, Conv, attention's
    two matmuls); `flops` = 2 x macs + element-wise work. Bytes are at the stored precision of
    each tensor: `weight_bytes` for initializers, `input_bytes`/`output_bytes` for activations.
    `precision` is the arithmetic precision the node computes in (from QDQ pairs, integer ops,
    fp16 tensors); `sparsity` the fraction of zero weights; `nm_2_4` whether every group of four
    weights along the reduction axis has at most two non-zeros. `matmul_dims` (M, K, N) of the
    node's largest matrix product, for targets that pad to a systolic array.
    """

    name: str
    op_type: str
    macs: int = 0
    flops: int = 0
    weight_bytes: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    precision: str = "fp32"
    sparsity: float = 0.0
    nm_2_4: bool = False
    matmul_dims: tuple[int, int, int] | None = None

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.input_bytes + self.output_bytes


@dataclass(frozen=True)
class GraphCost:
    """A whole model at one batch size: its nodes plus totals a report can quote."""

    nodes: tuple[NodeCost, ...]
    batch_size: int = 1
    notes: tuple[str, ...] = ()

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    @property
    def weight_bytes(self) -> int:
        return sum(n.weight_bytes for n in self.nodes)

    def precisions(self) -> set[str]:
        """Precisions of the nodes that do matrix work (what a target must run natively)."""
        return {n.precision for n in self.nodes if n.macs > 0}


@dataclass(frozen=True)
class Plan:
    """How a candidate is spread over devices and batched (the parallelism strategy).

    data: replicas serving independent requests (multiplies throughput, not latency);
    tensor: devices splitting each matrix op (less compute per device, plus an all-reduce);
    pipeline: stages of consecutive layers, fed `micro_batches` micro-batches (adds a bubble);
    batch_size: requests served together.
    """

    batch_size: int = 1
    data: int = 1
    tensor: int = 1
    pipeline: int = 1
    micro_batches: int = 1

    @property
    def devices(self) -> int:
        return self.data * self.tensor * self.pipeline


@dataclass(frozen=True)
class Estimate:
    """What a target says about one candidate under one plan. Always labelled by `source`."""

    target: str
    source: str  # "measured" or "estimated:<profile name>"
    latency_ms: float  # one batch, end to end
    throughput_qps: float  # inferences per second over all devices of the plan
    energy_j: float | None = None  # per inference
    cost_per_million_usd: float | None = None  # per million inferences
    cost_per_hour_usd: float | None = None  # renting every device of the plan for an hour
    breakdown_ms: dict[str, float] = field(default_factory=dict)
    """compute / memory / overhead / communication / bubble shares of `latency_ms`."""
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Target(ABC):
    """A hardware target. Estimated ones are one subclass per kind (cpu, gpu, tpu, fpga,
    asic); `MeasuredTarget` wraps one of those for a device that is really here."""

    kind: str
    measured: ClassVar[bool] = False
    """True for a device the search times candidates on; False for a cost model's opinion."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def source(self) -> str:
        """What every figure of this target rests on: `measured`, or `estimated:<profile>`."""
        return "measured" if self.measured else f"estimated:{self.profile.name}"

    def max_devices(self) -> int:
        """How many devices a plan may use (1 for targets that cannot be combined)."""
        return self.profile.max_devices

    @abstractmethod
    def estimate(self, graph: GraphCost, plan: Plan) -> Estimate:
        """The estimated figures for `graph` under `plan`; raise `InfeasibleRecipe` (with the
        reason a person needs) when this hardware cannot run it."""
