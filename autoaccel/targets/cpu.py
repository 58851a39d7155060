"""CPU: the roofline, corrected by the calibration of this machine.

`autoaccel calibrate` (`autoaccel.targets.calibrate`) times micro-benchmarks here and writes
`calibrated` in the profile; these keys are the contract with it (all optional floats; other
keys, such as when, are ignored):

Scales of the profile's efficiency curves:

- compute_scale: measured / modelled compute efficiency; eta_c x compute_scale, at most 1.
- memory_scale: the same for memory bandwidth; eta_m x memory_scale, at most 1.
- overhead_us: measured fixed cost per op (ONNX Runtime dispatch), replacing the profile's.

Measured rates, which replace the curves where present (what `calibrate` fits; on this machine
achieved efficiency is nearly flat in op size once the fixed costs are separated):

- compute_eta: achieved share of the profile's peak (at the node's precision) by matrix ops,
  whatever their size. Not capped at 1: the peaks are derived from the base clock, and the
  cores boost above it.
- vector_eta: the same for the FLOPs of the other ops (element-wise, normalisation, softmax),
  which run far below the FMA peak.
- compute_eta.<OpType>, vector_eta.<OpType>: an op type's own rate where it was measured
  (ONNX Runtime's ConvInteger runs ~15x below MatMulInteger, SkipLayerNormalization ~8x
  below LayerNormalization).
- memory_eta: achieved share of the DRAM bandwidth (`memory.bandwidth_gbps`).
- cache_eta: bandwidth of a node's activations when they fit in `memory.on_chip_mb`, as a
  multiple of the DRAM bandwidth.
- run_overhead_us: fixed cost per inference (one session run: binding inputs, allocating and
  returning outputs), once per batch.

Without them it is the plain roofline of the profile (nn-Meter, MobiSys 2021, shows per-kernel
models reach +-10 % on mobile CPUs; the error of this one is measured, not assumed: every
search stores this model's estimate beside each measurement and the report gives the error per
study; benchmarks/costmodel_fidelity.py checks it offline). The profile itself is derived from
the machine that runs the search (`autoaccel.targets.local_cpu`).
"""

from __future__ import annotations

from dataclasses import replace

from autoaccel.targets.base import Estimate, GraphCost, NodeCost, Plan
from autoaccel.targets.roofline import NodeTime, RooflineTarget, cost_per_million, energy_j


class CpuTarget(RooflineTarget):
    kind = "cpu"

    def _fitted(self, key: str, default: float) -> float:
        value = (self.profile.calibrated or {}).get(key, default)
        return float(value) if isinstance(value, int | float) else default

    def _rate(self, key: str) -> float | None:
        """A measured rate of the calibration, or None when absent (or not a positive number)."""
        value = (self.profile.calibrated or {}).get(key)
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def eta_compute(self, flops: float) -> float:
        return min(1.0, super().eta_compute(flops) * self._fitted("compute_scale", 1.0))

    def eta_memory(self, nbytes: float) -> float:
        return min(1.0, super().eta_memory(nbytes) * self._fitted("memory_scale", 1.0))

    def overhead_s(self) -> float:
        return self._fitted("overhead_us", super().overhead_s() * 1e6) * 1e-6

    def compute_time(self, node: NodeCost, peak: float) -> float:
        kind = "compute_eta" if node.macs else "vector_eta"
        eta = self._rate(f"{kind}.{node.op_type}") or self._rate(kind)
        seconds = super().compute_time(node, peak)
        return seconds * self.eta_compute(node.flops) / eta if eta else seconds

    def node_time(self, node: NodeCost, resident: bool, notes: dict[str, None]) -> NodeTime:
        time = super().node_time(node, resident, notes)
        dram, cache = self._rate("memory_eta"), self._rate("cache_eta")
        if dram is None and cache is None:
            return time
        memory = self.profile.memory
        bandwidth = memory.bandwidth_gbps.value * 1e9
        on_chip = memory.on_chip_mb.value * 1e6 if memory.on_chip_mb else 0.0

        def from_dram(nbytes: float) -> float:
            return nbytes / (bandwidth * (dram or self.eta_memory(nbytes))) if nbytes else 0.0

        activations = node.input_bytes + node.output_bytes
        seconds = from_dram(0 if resident else node.weight_bytes)
        if cache is not None and activations <= on_chip:
            seconds += activations / (bandwidth * cache)
        else:
            seconds += from_dram(activations)
        return replace(time, memory=seconds)

    def estimate(self, graph: GraphCost, plan: Plan) -> Estimate:
        est = super().estimate(graph, plan)
        run_ms = (self._rate("run_overhead_us") or 0.0) * 1e-3
        if not run_ms:
            return est
        latency = est.latency_ms + run_ms  # one run per batch: throughput = batch / latency
        throughput = est.throughput_qps * est.latency_ms / latency
        breakdown = {**est.breakdown_ms, "overhead": est.breakdown_ms["overhead"] + run_ms}
        busy = (breakdown["compute"] + breakdown["memory"]) / latency
        return replace(
            est,
            latency_ms=latency,
            throughput_qps=throughput,
            energy_j=energy_j(self.profile, busy, plan.devices, throughput),
            cost_per_million_usd=cost_per_million(self.profile, plan.devices, throughput),
            breakdown_ms=breakdown,
        )
