"""Cost models on synthetic profiles built from shared/hardware-datasheet.md figures.

The tests do not read hardware_profiles/ (written separately), except the last one, which only
checks that every real profile gives a finite estimate.
"""

from __future__ import annotations

import math

import pytest

from autoaccel.errors import InfeasibleRecipe
from autoaccel.targets import KINDS, load_targets, make_target
from autoaccel.targets.asic import AsicTarget
from autoaccel.targets.base import GraphCost, NodeCost, Plan
from autoaccel.targets.cpu import CpuTarget
from autoaccel.targets.fpga import FpgaTarget
from autoaccel.targets.gpu import GpuTarget
from autoaccel.targets.profile import KINDS as PROFILE_KINDS
from autoaccel.targets.profile import PROFILES_DIR, HardwareProfile
from autoaccel.targets.roofline import bubble_fraction, efficiency
from autoaccel.targets.tpu import TpuTarget

BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
CALCULON_COMPUTE = [(1e6, 0.10), (1e9, 0.60), (128e9, 0.95)]  # datasheet "Achieved efficiency"
CALCULON_MEMORY = [(1e3, 0.30), (1e6, 0.60), (100e6, 0.90)]


def fig(value: float) -> dict:
    return {"value": value, "source": "test: shared/hardware-datasheet.md"}


def make_profile(
    name: str = "test-gpu",
    kind: str = "gpu",
    peak: dict[str, float] | None = None,
    native: list[str] | None = None,
    bw: float = 2039.0,
    on_chip_mb: float | None = None,
    capacity_gb: float = 80.0,
    nm_2_4: bool = False,
    overhead_us: float = 5.0,
    compute: list | None = None,
    memory: list | None = None,
    link: tuple[float, float, float] | None = None,  # GB/s, alpha us, efficiency
    max_devices: int = 1,
    power: float = 400.0,
    idle: float | None = None,
    price: float | None = None,
    **extra,
) -> HardwareProfile:
    peak = peak or {"fp32": 19.5, "fp16": 312.0}
    data = {
        "name": name,
        "kind": kind,
        "vendor": "test",
        "description": "synthetic profile for tests",
        "peak_tops": {k: fig(v) for k, v in peak.items()},
        "native_precisions": native or list(peak),
        "memory": {
            "capacity_gb": fig(capacity_gb),
            "bandwidth_gbps": fig(bw),
            **({"on_chip_mb": fig(on_chip_mb)} if on_chip_mb is not None else {}),
        },
        "efficiency": {
            "compute": compute or CALCULON_COMPUTE,
            "memory": memory or CALCULON_MEMORY,
            "overhead_us": fig(overhead_us),
            "source": "test",
        },
        "sparsity": {"nm_2_4": nm_2_4, "speedup": fig(2.0)},
        "max_devices": max_devices,
        "power_w": fig(power),
        **extra,
    }
    if link:
        data["interconnect"] = {
            "bandwidth_gbps": fig(link[0]),
            "latency_us": fig(link[1]),
            "efficiency": fig(link[2]),
        }
    if idle is not None:
        data["idle_power_w"] = fig(idle)
    if price is not None:
        data["price_per_hour_usd"] = fig(price)
    return HardwareProfile(**data)


# Datasheet figures (dense peaks in TFLOPS / TOPS, bandwidth GB/s, on-chip MB).
A100 = dict(
    name="a100",
    peak={"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624, "int4": 1248},
    bw=2039,
    on_chip_mb=40,
    nm_2_4=True,
    link=(600, 5, 0.6),
    max_devices=8,
)
H100 = dict(
    name="h100",
    peak={"fp32": 67, "tf32": 495, "bf16": 989, "fp16": 989, "fp8": 1979, "int8": 1979},
    bw=3350,
    on_chip_mb=50,
    nm_2_4=True,
    power=700,
)
T4 = dict(
    name="t4",
    peak={"fp32": 8.1, "fp16": 65, "int8": 130, "int4": 260},
    bw=320,
    on_chip_mb=4,
    capacity_gb=16,
    power=70,
)
SYSTOLIC_128 = {"rows": 128, "cols": 128, "source": "test: 128x128 MXU"}
TPU_V4 = dict(
    name="tpu-v4",
    kind="tpu",
    peak={"bf16": 275, "int8": 275},
    bw=1200,
    capacity_gb=32,
    systolic=SYSTOLIC_128,
)
U250 = dict(  # Alveo U250: 12,288 DSP48E2, 2 int8 MACs per DSP (unconf.), DDR4 77 GB/s
    name="u250",
    kind="fpga",
    peak={"int8": 33},
    bw=77,
    capacity_gb=64,
    on_chip_mb=54,
    power=225,
    fpga={
        "dsp_count": fig(12288),
        "clock_mhz": fig(650),
        "macs_per_dsp": {"int8": fig(2)},
    },
)
EDGE_TPU = dict(name="edge-tpu", kind="asic", peak={"int8": 4}, bw=4, on_chip_mb=8, power=2)
HAILO8 = dict(name="hailo-8", kind="asic", peak={"int8": 26}, bw=10, capacity_gb=0, power=2.5)
CPU = dict(
    name="cpu-test",
    kind="cpu",
    peak={"fp32": 0.2, "int8": 0.8},
    bw=20,
    capacity_gb=24,
    overhead_us=10,
)


def matmul(m: int, k: int, n: int, precision: str = "fp16", name: str = "mm", **kw) -> NodeCost:
    """A MatMul (M x K) @ (K x N) with a K x N weight, bytes at the precision."""
    size = BYTES[precision]
    return NodeCost(
        name=name,
        op_type="MatMul",
        macs=m * k * n,
        flops=2 * m * k * n,
        weight_bytes=int(k * n * size),
        input_bytes=int(m * k * size),
        output_bytes=int(m * n * size),
        precision=precision,
        matmul_dims=(m, k, n),
        **kw,
    )


def add(nbytes: int, precision: str = "fp32") -> NodeCost:
    """Element-wise Add of two `nbytes` tensors: no matrix work."""
    return NodeCost(
        name="add",
        op_type="Add",
        flops=nbytes // BYTES[precision],
        input_bytes=2 * nbytes,
        output_bytes=nbytes,
        precision=precision,
    )


def graph(*nodes: NodeCost, batch: int = 1) -> GraphCost:
    return GraphCost(nodes=nodes, batch_size=batch)


def estimate(spec: dict, g: GraphCost, plan: Plan | None = None, **changes):
    return make_target(make_profile(**{**spec, **changes})).estimate(g, plan or Plan())


BIG = (8192, 8192, 8192)  # compute-bound everywhere: ~1.1 TFLOP, 400 MB in fp16


def test_sparse_2_4_is_faster_only_where_tensor_cores_support_it():
    dense = graph(matmul(*BIG))
    sparse = graph(matmul(*BIG, nm_2_4=True, sparsity=0.5))
    for spec in (A100, H100):
        assert estimate(spec, sparse).latency_ms < 0.6 * estimate(spec, dense).latency_ms
    assert estimate(T4, sparse).latency_ms == estimate(T4, dense).latency_ms


def test_unstructured_sparsity_is_faster_nowhere():
    dense = graph(matmul(*BIG))
    unstructured = graph(matmul(*BIG, sparsity=0.5))
    for spec in (A100, H100, T4):
        assert estimate(spec, unstructured).latency_ms == estimate(spec, dense).latency_ms


def test_int8_is_faster_than_fp16_where_its_peak_is_higher():
    fp16, int8 = graph(matmul(*BIG)), graph(matmul(*BIG, precision="int8"))
    assert estimate(A100, int8).latency_ms == pytest.approx(
        estimate(A100, fp16).latency_ms / 2, rel=0.01
    )
    # TPU v4: int8 == bf16 peak, and fp16 (not native) runs as bf16.
    tpu16, tpu8 = estimate(TPU_V4, fp16), estimate(TPU_V4, int8)
    assert tpu8.latency_ms == pytest.approx(tpu16.latency_ms, rel=1e-9)
    assert any("fp16 runs as bf16" in n for n in tpu16.notes)


def test_tensor_parallel_splits_compute_and_adds_communication():
    g = graph(matmul(4096, 4096, 4096, name="up"), matmul(4096, 4096, 4096, name="down"))
    one = estimate(A100, g)
    two = estimate(A100, g, Plan(tensor=2))
    assert two.breakdown_ms["compute"] == pytest.approx(one.breakdown_ms["compute"] / 2, rel=0.1)
    assert one.breakdown_ms["communication"] == 0
    assert two.breakdown_ms["communication"] > 0
    assert two.latency_ms < one.latency_ms  # NVLink: worth it at this size
    slow = estimate(A100, g, Plan(tensor=2), link=(1, 100, 0.5))  # 1 GB/s link
    assert slow.latency_ms > one.latency_ms


def test_tensor_parallel_communication_follows_ring_all_reduce():
    g = graph(matmul(4096, 4096, 4096, name="up"), matmul(4096, 4096, 4096, name="down"))
    est = estimate(A100, g, Plan(tensor=4), link=(100, 10, 0.5))
    size = 4096 * 4096 * 2  # the pair's output, fp16
    expected = 10e-6 * 2 * 3 + 2 * 3 / 4 * size / (100e9 * 0.5)
    assert est.breakdown_ms["communication"] == pytest.approx(expected * 1e3)
    alone = estimate(A100, graph(matmul(4096, 4096, 4096)), Plan(tensor=4), link=(100, 10, 0.5))
    assert alone.breakdown_ms["communication"] == pytest.approx(expected * 1e3 / 2)  # gather


def test_memory_bound_node_follows_bandwidth_not_peak():
    g = graph(add(100_000_000))
    base = estimate(A100, g, overhead_us=0)
    assert estimate(A100, g, overhead_us=0, bw=2 * 2039).latency_ms == pytest.approx(
        base.latency_ms / 2
    )
    doubled = {k: 2 * v for k, v in A100["peak"].items()}
    assert estimate(A100, g, overhead_us=0, peak=doubled).latency_ms == base.latency_ms
    assert base.breakdown_ms["memory"] > 0


def test_batch_1_matmul_with_big_weight_is_memory_bound():
    g = graph(matmul(1, 8192, 8192))
    base = estimate(H100, g, overhead_us=0, on_chip_mb=0)
    faster = estimate(H100, g, overhead_us=0, on_chip_mb=0, bw=2 * 3350)
    assert faster.latency_ms == pytest.approx(base.latency_ms / 2)


def test_weights_resident_on_chip_skip_dram():
    g = graph(matmul(1, 2048, 2048))  # 8 MB of fp16 weights
    assert estimate(H100, g).latency_ms < estimate(H100, g, on_chip_mb=1).latency_ms


def test_tpu_padding_makes_n_129_slower_per_flop_than_n_128():
    n128, n129 = matmul(8192, 8192, 128), matmul(8192, 8192, 129)
    e128, e129 = estimate(TPU_V4, graph(n128)), estimate(TPU_V4, graph(n129))
    per_flop_128 = e128.breakdown_ms["compute"] / n128.flops
    per_flop_129 = e129.breakdown_ms["compute"] / n129.flops
    assert per_flop_129 == pytest.approx(per_flop_128 * 256 / 129, rel=0.01)
    assert e129.latency_ms / n129.flops > e128.latency_ms / n128.flops


def test_tpu_runs_fp32_as_three_bf16_passes():
    bf16, fp32 = graph(matmul(*BIG, precision="bf16")), graph(matmul(*BIG, precision="fp32"))
    e16, e32 = estimate(TPU_V4, bf16), estimate(TPU_V4, fp32)
    assert e32.breakdown_ms["compute"] == pytest.approx(3 * e16.breakdown_ms["compute"])
    assert any("bf16 x3" in n for n in e32.notes)


def test_fpga_peak_comes_from_dsps_times_clock():
    target = make_target(make_profile(**U250))
    assert isinstance(target, FpgaTarget)
    assert target.peak("int8") == pytest.approx(2 * 12288 * 650e6 * 2)


def test_fpga_weights_on_chip_beat_weights_streamed_from_dram():
    layers = [matmul(1, 2048, 2048, "int8", name=f"fc{i}") for i in range(8)]  # 32 MB
    on_chip = estimate(U250, graph(*layers))
    streamed = estimate(U250, graph(*layers), on_chip_mb=1)
    assert on_chip.latency_ms < streamed.latency_ms / 2


def test_fpga_dataflow_throughput_can_exceed_batch_over_latency():
    layers = [matmul(64, 1024, 1024, "int8", name=f"fc{i}") for i in range(4)]
    est = estimate(U250, graph(*layers, batch=64), Plan(batch_size=64))
    assert est.throughput_qps > 64 / (est.latency_ms / 1e3)  # overheads overlap
    assert est.throughput_qps == pytest.approx(64 / (est.breakdown_ms["compute"] / 1e3))  # DSPs
    gpu = estimate(A100, graph(*layers, batch=64), Plan(batch_size=64))
    assert gpu.throughput_qps == pytest.approx(64 / (gpu.latency_ms / 1e3))


def test_int8_only_asic_rejects_float_graph_with_the_fix():
    target = make_target(make_profile(**EDGE_TPU))
    assert isinstance(target, AsicTarget)
    with pytest.raises(InfeasibleRecipe, match=r"int8 only.*MatMul in fp32.*int8_static"):
        target.estimate(graph(matmul(1, 512, 512, "fp32")), Plan())
    with pytest.raises(InfeasibleRecipe, match="int4"):  # no running int4 as int8 either
        target.estimate(graph(matmul(1, 512, 512, "int4")), Plan())
    int8 = target.estimate(graph(matmul(1, 512, 512, "int8"), add(512, "fp32")), Plan())
    assert 0 < int8.latency_ms < math.inf


def test_asic_without_dram_rejects_weights_that_do_not_fit_on_chip():
    g = graph(matmul(1, 4096, 4096, "int8"))  # 16.8 MB of weights
    with pytest.raises(InfeasibleRecipe, match="no DRAM"):
        estimate(HAILO8, g, on_chip_mb=8)
    assert estimate(HAILO8, g, on_chip_mb=32).latency_ms > 0


def test_pipeline_bubble_matches_gpipe_for_equal_stages():
    layers = [matmul(64, 4096, 4096, name=f"l{i}") for i in range(8)]
    g = graph(*layers, batch=64)
    shares = []
    for m in (4, 16):
        est = estimate(A100, g, Plan(batch_size=64, pipeline=4, micro_batches=m))
        busy = est.latency_ms - est.breakdown_ms["communication"]
        assert est.breakdown_ms["bubble"] / busy == pytest.approx(bubble_fraction(4, m), rel=0.01)
        assert sum(est.breakdown_ms.values()) == pytest.approx(est.latency_ms)
        shares.append(est.breakdown_ms["bubble"] / est.latency_ms)
    assert shares[1] < shares[0]


def test_plan_with_too_many_devices_is_infeasible():
    with pytest.raises(InfeasibleRecipe, match="16 devices"):
        estimate(A100, graph(matmul(64, 64, 64)), Plan(data=2, tensor=8))
    with pytest.raises(InfeasibleRecipe, match="allows 1"):
        estimate(T4, graph(matmul(64, 64, 64)), Plan(tensor=2))
    with pytest.raises(InfeasibleRecipe, match="micro_batches"):
        estimate(A100, graph(matmul(64, 64, 64)), Plan(batch_size=3, micro_batches=2))


def test_data_parallel_doubles_throughput_and_keeps_latency():
    g = graph(matmul(64, 1024, 1024))
    one, two = estimate(A100, g), estimate(A100, g, Plan(data=2))
    assert two.latency_ms == one.latency_ms
    assert two.throughput_qps == pytest.approx(2 * one.throughput_qps)


def test_energy_and_cost_match_hand_computation():
    # 1 TFLOP at 100 TFLOPS x 0.5 = 20 ms compute, plus 20 ms overhead; no memory traffic.
    node = NodeCost(name="mm", op_type="MatMul", macs=500_000_000_000, flops=10**12)
    flat = dict(peak={"fp32": 100}, compute=[(1.0, 0.5)], overhead_us=20_000, power=300)
    est = estimate(flat, graph(node, batch=4), Plan(batch_size=4), price=3.6)
    assert est.latency_ms == pytest.approx(40.0)
    assert est.throughput_qps == pytest.approx(100.0)
    assert est.energy_j == pytest.approx(300 * 0.040 / 4)
    assert est.cost_per_million_usd == pytest.approx(3.6 / 3600 / 100 * 1e6)
    idle = estimate(flat, graph(node, batch=4), Plan(batch_size=4), idle=100)
    assert idle.energy_j == pytest.approx((100 + 200 * 0.5) * 0.040 / 4)  # busy half the time
    assert idle.cost_per_million_usd is None
    assert est.source == "estimated:test-gpu"


def test_efficiency_interpolates_on_log_size_and_clamps():
    curve = CALCULON_COMPUTE
    for size, eta in curve:
        assert efficiency(curve, size) == pytest.approx(eta)
    assert efficiency(curve, 1.0) == 0.10 and efficiency(curve, 1e15) == 0.95
    assert efficiency(curve, math.sqrt(1e6 * 1e9)) == pytest.approx(0.35)  # log midpoint
    sizes = [10 ** (6 + i / 10) for i in range(60)]
    etas = [efficiency(curve, s) for s in sizes]
    assert etas == sorted(etas)


def test_cpu_applies_calibrated_scales_and_overhead():
    g = graph(matmul(256, 1024, 1024, "fp32"))
    plain = estimate(CPU, g, on_chip_mb=0)
    fitted = estimate(
        CPU, g, on_chip_mb=0, calibrated={"compute_scale": 0.5, "overhead_us": 100.0, "at": "x"}
    )
    assert fitted.breakdown_ms["compute"] == pytest.approx(2 * plain.breakdown_ms["compute"])
    assert fitted.breakdown_ms["overhead"] == pytest.approx(0.1)
    clamped = estimate(CPU, g, calibrated={"compute_scale": 100.0})
    assert clamped.breakdown_ms["compute"] == pytest.approx(g.flops / 0.2e12 * 1e3)


def test_every_profile_kind_has_a_target_class():
    assert set(KINDS) == set(PROFILE_KINDS)
    expected = [
        (A100, GpuTarget),
        (TPU_V4, TpuTarget),
        (U250, FpgaTarget),
        (EDGE_TPU, AsicTarget),
        (CPU, CpuTarget),
    ]
    for spec, cls in expected:
        assert type(make_target(make_profile(**spec))) is cls


def small_graph(precision: str) -> GraphCost:
    return graph(
        matmul(1, 256, 256, precision, name="fc1"), add(1024), matmul(1, 256, 10, precision)
    )


@pytest.mark.skipif(not any(PROFILES_DIR.glob("*.yaml")), reason="no hardware profiles yet")
def test_every_real_profile_gives_a_finite_estimate():
    for name, target in load_targets(None).items():
        est = target.estimate(small_graph(target.profile.native_precisions[0]), Plan())
        assert 0 < est.latency_ms < math.inf and est.throughput_qps > 0, name
        assert est.source == f"estimated:{name}"
