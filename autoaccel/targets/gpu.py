"""GPU: the plain roofline (`roofline.py`), plus how the kernels are launched and what stays in L2.

Launch, a property of how the build runs (`GpuTarget(profile, launch=...)`):
- "graph" (the default): the kernels replayed as one CUDA graph (torch.compile
  `reduce-overhead`, ONNX Runtime's `enable_cuda_graph`, TensorRT). A node takes its roofline
  time plus `efficiency.overhead_us`, the GPU's own gap between kernels.
- "eager": launched op by op from Python (PyTorch eager). The host needs
  `efficiency.eager.launch_us` to issue an op and issues the next while the GPU runs this one,
  so a node takes max(roofline + overhead_us, launch_us); a forward call adds
  `efficiency.eager.call_us` of host work before its first op. Small batches are host-bound:
  a 6-layer MiniLM took 2.2 ms eager on an H100 at any precision, 0.3 ms in fp16 as a graph.
A profile without `efficiency.eager` prices both alike (overhead_us per node).

On chip (`memory.on_chip_bandwidth_gbps`, optional): a node's activations, when its inputs and
outputs fit in `memory.on_chip_mb` (L2), and weights resident there move at that bandwidth
instead of DRAM's; without the figure resident weights cost nothing, as in the plain roofline.
The H100 figures were fitted to measured timings (benchmarks/gpu_fit.py); see the profile's
`fidelity`. 2:4 weights run at `sparsity.speedup` on tensor cores that support it
(Ampere/Ada/Hopper); a non-native precision runs in the next wider native format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from autoaccel.targets.base import GraphCost, NodeCost, Plan
from autoaccel.targets.profile import HardwareProfile
from autoaccel.targets.roofline import NodeTime, RooflineTarget

Launch = Literal["graph", "eager"]
LAUNCHES: tuple[Launch, ...] = ("graph", "eager")
_SAID = {"graph": "replayed as one CUDA graph", "eager": "launched op by op from Python (eager)"}


class GpuTarget(RooflineTarget):
    kind = "gpu"

    def __init__(self, profile: HardwareProfile, launch: Launch = "graph") -> None:
        if launch not in LAUNCHES:
            raise ValueError(f"launch must be one of {LAUNCHES}, not {launch!r}")
        super().__init__(profile)
        self.launch = launch

    def launch_s(self) -> float:
        """Host seconds to issue one op eagerly (0 for a graph, or without eager figures)."""
        eager = self.profile.efficiency.eager
        return eager.launch_us.value * 1e-6 if eager and self.launch == "eager" else 0.0

    def call_s(self) -> float:
        """Host seconds per eager forward call before its first op (0 as for `launch_s`)."""
        eager = self.profile.efficiency.eager
        return eager.call_us.value * 1e-6 if eager and self.launch == "eager" else 0.0

    def on_chip_memory(self, node: NodeCost, resident: bool) -> float | None:
        """Seconds moving the node's bytes with on-chip ones at on-chip bandwidth (None when
        the profile has no on-chip bandwidth: the plain roofline's memory time stands)."""
        mem = self.profile.memory
        if mem.on_chip_bandwidth_gbps is None or mem.on_chip_mb is None or not node.bytes:
            return None
        activations = node.input_bytes + node.output_bytes
        near = node.weight_bytes if resident else 0
        if activations <= mem.on_chip_mb.value * 1e6:
            near += activations
        far = node.bytes - near
        seconds = far / (mem.bandwidth_gbps.value * 1e9)
        seconds += near / (mem.on_chip_bandwidth_gbps.value * 1e9)
        return seconds / self.eta_memory(node.bytes)

    def node_time(self, node: NodeCost, resident: bool, notes: dict[str, None]) -> NodeTime:
        time = super().node_time(node, resident, notes)
        memory = self.on_chip_memory(node, resident)
        if memory is not None:
            time = replace(time, memory=memory)
        launch = self.launch_s()
        if launch:  # the host issues the next op while this one runs
            busy = max(time.compute, time.memory)
            time = replace(time, overhead=max(time.overhead, launch - busy))
        return time

    def interval(self, times: Sequence[NodeTime]) -> float:
        return super().interval(times) + self.call_s()

    def _replica(self, graph: GraphCost, plan: Plan) -> tuple:
        """The roofline's replica, plus the eager call cost once per stage and micro-batch
        (as if it were one more node at the head of every stage), and a note of the launch."""
        latency, interval, breakdown, notes = super()._replica(graph, plan)
        if self.profile.efficiency.eager is None:
            return latency, interval, breakdown, notes
        call, m, p = self.call_s(), plan.micro_batches, plan.pipeline
        if call:
            breakdown = {
                **breakdown,
                "overhead": breakdown["overhead"] + m * call,
                "bubble": breakdown["bubble"] + (p - 1) * call,
            }
            latency += (m + p - 1) * call
        note = f"{self.name}: kernels {_SAID[self.launch]}"
        return latency, interval, breakdown, (*notes, note)
