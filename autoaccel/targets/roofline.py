"""The shared cost model: a roofline per node, then the parallelism plan on top.

Per node, on one device (Williams, Waterman & Patterson, "Roofline", CACM 2009; formulas from
shared/hardware-datasheet.md, "Formulas a per-layer model can start from"):

    t = max(F / (P[prec] x eta_c(F)), B / (BW x eta_m(B))) + t_overhead

- F: FLOPs; the matrix part (2 x MACs) is divided by the profile's 2:4 speed-up only when the
  node's weights are 2:4 and the hardware runs 2:4 (NVIDIA Ampere/Ada/Hopper). Unstructured
  sparsity gains nothing: dense matrix units multiply the zeros anyway.
- B: weight + activation bytes at their stored precision. When the whole model's weights (per
  device) fit in `memory.on_chip_mb` they stay resident and only activations cross DRAM.
- P: the peak (TERA-ops/s, dense) of the precision the node runs in (`run_precision`). Nodes
  without matrix work run on vector units at the same peak; they are memory-bound anyway.
- eta_c, eta_m: achieved share of peak by op size, interpolated on log(size) (Calculon's
  A100/H100 tables, datasheet "Achieved efficiency"). t_overhead: kernel launch / dispatch.

Plan (`Plan`): tensor parallel t splits each matrix node Megatron-style (Shoeybi et al. 2019:
column- then row-parallel pairs, one ring all-reduce of the pair's output,
alpha x 2(t-1) + 2(t-1)/t x S / (BW x eta)); element-wise nodes are replicated. Pipeline p with
m micro-batches: contiguous stages of ~equal time T_s at batch/m; latency = sum T_s
+ (m-1) x max T_s + boundary transfers (later transfers overlap compute); the slowest stage then
idles sum T_s - max T_s, the bubble: (p-1)/(m+p-1) of the latency for equal stages (GPipe).
Data parallel d: independent replicas, throughput x d, latency unchanged. Throughput =
d x batch / (m x the slowest stage's interval). A plan's batch scales work and activations
linearly from the analysed batch; weights do not scale. Units: GB = 1e9 B, MB = 1e6 B.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from autoaccel.errors import InfeasibleRecipe
from autoaccel.targets.base import Estimate, GraphCost, NodeCost, Plan, Target
from autoaccel.targets.profile import HardwareProfile

WIDER = ("int4", "int8", "fp8", "fp16", "bf16", "tf32", "fp32")
"""Formats from narrow to wide (same set as `PRECISIONS`): a non-native precision runs in the
next native one up."""


def efficiency(curve: Sequence[tuple[float, float]], size: float) -> float:
    """Achieved share of peak at `size`: linear in log(size) between points, clamped outside."""
    if size <= curve[0][0]:
        return curve[0][1]
    for (s0, e0), (s1, e1) in itertools.pairwise(curve):
        if size <= s1:
            span = math.log(max(s1, 1.0)) - math.log(max(s0, 1.0))
            w = (math.log(max(size, 1.0)) - math.log(max(s0, 1.0))) / span if span else 1.0
            return e0 + w * (e1 - e0)
    return curve[-1][1]


@dataclass(frozen=True)
class NodeTime:
    """Seconds one node takes on one device, by cause."""

    compute: float
    memory: float
    overhead: float
    communication: float = 0.0

    @property
    def total(self) -> float:
        return max(self.compute, self.memory) + self.overhead + self.communication


def ring_time(
    size: float, n: int, bandwidth: float, eff: float, alpha: float, phases: int = 2
) -> float:
    """Ring all-reduce of `size` bytes over n devices (2 phases: reduce-scatter + all-gather),
    alpha x phases(n-1) + phases(n-1)/n x S / (BW x eta); phases=1 is an all-gather alone."""
    return phases * (n - 1) * (alpha + size / n / (bandwidth * eff)) if n > 1 else 0.0


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """Share of a pipeline's time its stages idle, for equal stages (GPipe, Huang et al. 2019)."""
    return (stages - 1) / (micro_batches + stages - 1)


def split_stages(times: Sequence[float], stages: int) -> list[range]:
    """Contiguous stages of ~equal time: cut where the running sum is nearest k/p of the total."""
    prefix = list(itertools.accumulate(times))
    cuts = [0]
    for k in range(1, stages):
        goal = prefix[-1] * k / stages
        j = bisect.bisect_left(prefix, goal)
        end = min((j, j + 1), key=lambda e: abs((prefix[e - 1] if e else 0.0) - goal))
        cuts.append(min(max(end, cuts[-1] + 1), len(times) - (stages - k)))
    return [range(a, b) for a, b in itertools.pairwise([*cuts, len(times)])]


def _scaled(node: NodeCost, factor: float, *fields: str) -> dict[str, int]:
    return {f: round(getattr(node, f) * factor) for f in fields}


def at_batch(node: NodeCost, factor: float) -> NodeCost:
    """The node at `factor` x its analysed batch: work and activations scale, weights do not
    (M, the first matmul dim, is taken as the batch-proportional one)."""
    if factor == 1:
        return node
    d = node.matmul_dims
    dims = d and (max(1, round(d[0] * factor)), d[1], d[2])
    work = _scaled(node, factor, "macs", "flops", "input_bytes", "output_bytes")
    return replace(node, **work, matmul_dims=dims)


def shard(node: NodeCost, t: int, column: bool) -> NodeCost:
    """One device's share of a matrix node under tensor parallel t: FLOPs and weights / t; a
    column-parallel matmul splits N (and its output), a row-parallel one K (and its input)."""
    if t == 1 or not node.macs:
        return node
    d = node.matmul_dims
    dims = d and ((d[0], d[1], -(-d[2] // t)) if column else (d[0], -(-d[1] // t), d[2]))
    split = ("macs", "flops", "weight_bytes", "output_bytes" if column else "input_bytes")
    return replace(node, **_scaled(node, 1 / t, *split), matmul_dims=dims)


def fix_for(native: Sequence[str]) -> str:
    """What a person can do when a format is not native: the quantize technique's mode."""
    if "int8" in native:
        return "add int8 quantization (quantize.mode int8_static)"
    if "fp16" in native:
        return "convert to fp16 (quantize.mode fp16)"
    return f"convert the model to {native[0]}"


class RooflineTarget(Target):
    """`estimate` for every kind; a kind overrides only the hooks its hardware changes: `peak`,
    `eta_compute`, `eta_memory`, `overhead_s`, `emulate`, `compute_time`, `interval`, `check`."""

    kind = "roofline"

    def peak(self, precision: str) -> float:
        """Dense peak in ops/s of a native precision."""
        return self.profile.peak_tops[precision].value * 1e12

    def eta_compute(self, flops: float) -> float:
        return efficiency(self.profile.efficiency.compute, flops)

    def eta_memory(self, nbytes: float) -> float:
        return efficiency(self.profile.efficiency.memory, nbytes)

    def overhead_s(self) -> float:
        return self.profile.efficiency.overhead_us.value * 1e-6

    def infeasible(self, node: NodeCost) -> InfeasibleRecipe:
        native = self.profile.native_precisions
        return InfeasibleRecipe(
            f"{self.name} runs {', '.join(native)} only; this recipe computes {node.op_type} "
            f"in {node.precision}: {fix_for(native)}"
        )

    def emulate(self, node: NodeCost) -> tuple[float, str]:
        """(peak, note) for a matrix node with no native format as wide as its own."""
        raise self.infeasible(node)

    def run_precision(self, node: NodeCost) -> tuple[float, str | None]:
        """(peak ops/s, note) for the node's precision: native, else the next native format
        up (int8 on a bf16-only chip runs as bf16), else the kind's emulation."""
        native = self.profile.native_precisions
        if node.precision in native:
            return self.peak(node.precision), None
        wider = [q for q in WIDER[WIDER.index(node.precision) + 1 :] if q in native]
        if wider:
            return self.peak(wider[0]), f"{node.precision} runs as {wider[0]} on {self.name}"
        if node.macs:
            return self.emulate(node)
        widest = max(native, key=WIDER.index)  # vector work only: memory-bound anyway
        return self.peak(widest), f"{node.precision} vector work at {widest} peak on {self.name}"

    def compute_time(self, node: NodeCost, peak: float) -> float:
        """F / (P x eta_c(F)), the matrix part / the 2:4 speed-up where both sides support it."""
        sparse = self.profile.sparsity
        flops = node.flops
        if node.nm_2_4 and node.macs and sparse.nm_2_4 and sparse.speedup:
            flops -= 2 * node.macs * (1 - 1 / sparse.speedup.value)
        return flops / (peak * self.eta_compute(node.flops)) if flops > 0 else 0.0

    def node_time(self, node: NodeCost, resident: bool, notes: dict[str, None]) -> NodeTime:
        peak, note = self.run_precision(node)
        if note:
            notes[note] = None
        nbytes = node.bytes - (node.weight_bytes if resident else 0)
        bandwidth = self.profile.memory.bandwidth_gbps.value * 1e9
        memory = nbytes / (bandwidth * self.eta_memory(nbytes)) if nbytes else 0.0
        return NodeTime(self.compute_time(node, peak), memory, self.overhead_s())

    def interval(self, times: Sequence[NodeTime]) -> float:
        """Steady-state time between micro-batches leaving a stage: its nodes run in turn."""
        return sum(t.total for t in times)

    def weights_resident(self, graph: GraphCost, plan: Plan) -> bool:
        """True when the weights (split equally over devices) fit on chip; raises when they fit
        nowhere."""
        mb = graph.weight_bytes / (plan.tensor * plan.pipeline) / 1e6
        on_chip = self.profile.memory.on_chip_mb.value if self.profile.memory.on_chip_mb else 0
        gb = self.profile.memory.capacity_gb.value
        if mb <= on_chip:
            return True
        if mb > gb * 1e3:
            where = f"{on_chip:g} MB on chip and no DRAM" if gb == 0 else f"{gb:g} GB"
            split = ", or split it over devices" if self.max_devices() > 1 else ""
            raise InfeasibleRecipe(
                f"the weights ({mb:.1f} MB per device) exceed {self.name}'s {where}: quantize"
                f" or prune the model{split}"
            )
        return False

    def check(self, graph: GraphCost, plan: Plan) -> None:
        """Reject plans this hardware cannot run, with the reason and the fix."""
        counts = (plan.batch_size, plan.data, plan.tensor, plan.pipeline, plan.micro_batches)
        if min(counts) < 1:
            raise InfeasibleRecipe(f"plan {plan}: every count must be at least 1")
        if plan.devices > self.max_devices():
            raise InfeasibleRecipe(
                f"the plan needs {plan.devices} devices; {self.name} allows "
                f"{self.max_devices()}: lower data/tensor/pipeline parallelism"
            )
        if plan.batch_size % plan.micro_batches:
            raise InfeasibleRecipe(f"micro_batches must divide the batch: {plan}")
        if plan.pipeline > len(graph.nodes):
            raise InfeasibleRecipe(f"{len(graph.nodes)} nodes cannot fill {plan.pipeline} stages")

    def estimate(self, graph: GraphCost, plan: Plan) -> Estimate:
        self.check(graph, plan)
        one = self._replica(graph, replace(plan, data=1))
        latency, interval, breakdown, notes = one
        throughput = plan.data * plan.batch_size / (plan.micro_batches * interval)
        busy_s = breakdown["compute"] + breakdown["memory"]
        return Estimate(
            target=self.name,
            source=self.source,
            latency_ms=latency * 1e3,
            throughput_qps=throughput,
            energy_j=energy_j(self.profile, busy_s / latency, plan.devices, throughput),
            cost_per_million_usd=cost_per_million(self.profile, plan.devices, throughput),
            cost_per_hour_usd=cost_per_hour(self.profile, plan.devices),
            breakdown_ms={k: v * 1e3 for k, v in breakdown.items()},
            notes=notes,
        )

    def __getstate__(self) -> dict:
        """Pickled (to the isolated worker) without the memo of replicas."""
        return {k: v for k, v in self.__dict__.items() if k != "_replicas"}

    def _replica(self, graph: GraphCost, plan: Plan) -> tuple:
        """One replica's (latency s, stage interval s, breakdown s, notes). Data parallelism
        only multiplies replicas, so a projection over a plan grid computes each replica
        once (kept per graph object and plan; the graph is held, so its id is not reused
        while the entry lives)."""
        memo = self.__dict__.setdefault("_replicas", {})
        key = (id(graph), plan)
        held = memo.get(key)
        if held is not None and held[0] is graph:  # an id from another process never matches
            return held[1]
        if len(memo) > 512:
            memo.clear()
        resident = self.weights_resident(graph, plan)
        t, m, p = plan.tensor, plan.micro_batches, plan.pipeline
        link = self.profile.interconnect  # a profile with max_devices > 1 has one
        bw, eff, alpha = (
            (link.bandwidth_gbps.value * 1e9, link.efficiency.value, link.latency_us.value * 1e-6)
            if link
            else (1.0, 1.0, 0.0)
        )
        nodes = [at_batch(n, plan.batch_size / m / graph.batch_size) for n in graph.nodes]
        rank = {j: r for r, j in enumerate(j for j, n in enumerate(nodes) if n.macs)}
        notes: dict[str, None] = {}
        times = []
        for j, node in enumerate(nodes):
            column = rank.get(j, 0) % 2 == 0  # Megatron pairs: column- then row-parallel
            time = self.node_time(shard(node, t, column), resident, notes)
            if j in rank and (not column or rank[j] == len(rank) - 1):  # unpaired: all-gather
                comm = ring_time(node.output_bytes, t, bw, eff, alpha, 1 if column else 2)
                time = replace(time, communication=comm)
            times.append(time)
        stages = split_stages([x.total for x in times], p)
        stage_s = [sum(times[j].total for j in r) for r in stages]
        slow = max(range(p), key=stage_s.__getitem__)
        p2p = sum(alpha + nodes[r[-1]].output_bytes / (bw * eff) for r in stages[:-1])
        latency = max(sum(stage_s) + (m - 1) * stage_s[slow] + p2p, 1e-12)  # 0 for empty ops
        interval = max(max(self.interval([times[j] for j in r]) for r in stages), 1e-12)
        slowest = [times[j] for j in stages[slow]]
        breakdown = {
            "compute": m * sum(x.compute for x in slowest),
            "memory": m * sum(max(0.0, x.memory - x.compute) for x in slowest),
            "overhead": m * sum(x.overhead for x in slowest),
            "communication": m * sum(x.communication for x in slowest) + p2p,
            "bubble": sum(stage_s) - stage_s[slow],
        }
        if p > 1:
            notes[f"pipeline bubble {breakdown['bubble'] / latency:.0%} of latency"] = None
        result = (latency, interval, breakdown, tuple(notes))
        memo[key] = (graph, result)
        return result


def energy_j(profile: HardwareProfile, busy: float, devices: int, throughput: float) -> float:
    """Per inference, P_avg x devices / throughput (datasheet "Energy", coarse form), with
    P_avg = idle + (power - idle) x busy, busy = share of latency spent computing or moving
    memory: launch gaps, bubbles and communication waits draw idle power. No idle: P = power."""
    power, idle = profile.power_w.value, profile.idle_power_w
    if idle is not None:
        power = idle.value + (power - idle.value) * min(1.0, busy)
    return power * devices / throughput


def cost_per_hour(profile: HardwareProfile, devices: int) -> float | None:
    """Rented price of the plan's devices for an hour (None without a published price)."""
    price = profile.price_per_hour_usd
    return price.value * devices if price else None


def cost_per_million(profile: HardwareProfile, devices: int, throughput: float) -> float | None:
    """Rented price of a million inferences: $/h x devices / 3600 / throughput x 1e6."""
    hourly = cost_per_hour(profile, devices)
    return hourly / 3600 / throughput * 1e6 if hourly is not None else None
