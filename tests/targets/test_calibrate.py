"""Calibration of the cpu-local model: the fit recovers factors it generated, a real (tiny)
calibration round-trips through its file into the CPU target, and bad files fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoaccel.errors import UserError
from autoaccel.evaluate.measure import MeasureConfig
from autoaccel.targets import Plan, make_target
from autoaccel.targets.base import GraphCost, NodeCost
from autoaccel.targets.calibrate import (
    FITTED,
    apply_calibration,
    calibrate,
    calibrated_profile,
    calibration_path,
    fit,
    predict_ms,
)
from autoaccel.targets.calibration_fit import is_rate_key
from autoaccel.targets.profile import PROFILES_DIR, load_profile

TINY = MeasureConfig(warmup_s=0.0, warmup_runs=1, budget_s=0.02, min_runs=3, max_runs=50)


@pytest.fixture(scope="module")
def cpu_profile():
    """cpu-local as derived on a fixed 2-core AVX2 machine with 34 MB of cache."""
    from autoaccel.targets.local_cpu import CpuFacts, local_profile

    facts = CpuFacts(
        host="box", model="AMD EPYC", vendor="AMD", arch="x86_64", family=25, cores=2,
        cores_from="os.sched_getaffinity", clock_ghz=2.445, clock_from="cpu MHz",
        flags=frozenset({"avx2", "fma"}), memory_gb=25.0, memory_from="MemTotal",
        cache_mb=34.6, cache_from="sysfs",
    )  # fmt: skip
    return local_profile(load_profile(PROFILES_DIR / "cpu-local.yaml"), facts)


def matmul(m: int, k: int, n: int) -> GraphCost:
    node = NodeCost(
        name="mm",
        op_type="MatMul",
        macs=m * k * n,
        flops=2 * m * k * n,
        weight_bytes=4 * k * n,
        input_bytes=4 * m * k,
        output_bytes=4 * m * n,
        matmul_dims=(m, k, n),
    )
    return GraphCost(nodes=(node,), batch_size=m)


def adds(count: int, size: int) -> GraphCost:
    node = NodeCost(
        name="add", op_type="Add", flops=size, input_bytes=8 * size, output_bytes=4 * size
    )
    return GraphCost(nodes=(node,) * count, batch_size=size)


def single(op: str, flops: int, nbytes: int, macs: int = 0, precision: str = "fp32"):
    node = NodeCost(
        name=op, op_type=op, macs=macs, flops=flops, input_bytes=nbytes, precision=precision
    )
    return GraphCost(nodes=(node,), batch_size=1)


TRUTH = {
    "compute_eta": 0.5,
    "vector_eta": 0.1,
    "memory_eta": 0.8,
    "cache_eta": 3.0,
    "overhead_us": 7.0,
    "run_overhead_us": 4.0,
    "compute_eta.ConvInteger": 0.03,
}


def synthetic_samples(profile, truth: dict[str, float]) -> list[dict]:
    graphs = [matmul(m, k, n) for m, k, n in [(1, 64, 64), (16, 256, 256), (128, 384, 1536)]]
    graphs += [matmul(512, 1024, 1024), adds(1, 1_000), adds(16, 1_000), adds(1, 100_000)]
    graphs += [adds(1, 1_000_000), adds(1, 30_000_000), single("Softmax", 10**7, 10**6)]
    graphs += [single("ConvInteger", 2 * 10**7, 10**5, macs=10**7, precision="int8")]
    true = calibrated_profile(profile, truth)
    return [{"graph": g, "measured_ms": predict_ms(true, g), "threads": 2} for g in graphs]


def test_fit_recovers_the_parameters_that_generated_the_samples(cpu_profile):
    result = fit(cpu_profile, synthetic_samples(cpu_profile, TRUTH))
    for key, value in TRUTH.items():
        assert result[key] == pytest.approx(value, rel=0.1), key
    assert not {k for k in result if "." in k} - set(TRUTH)  # no per-op rate it did not need
    assert result["fit_mdape"] < 1.0
    assert result["threads"] == 2 and result["n_samples"] == 11
    assert result["cpu"] and result["when"][:2] == "20"


def test_measured_rates_replace_the_curves_in_the_cpu_model(cpu_profile):
    rates = {**TRUTH, "compute_eta": 0.25}
    target = make_target(calibrated_profile(cpu_profile, rates))
    mm = matmul(512, 1024, 1024)
    est = target.estimate(mm, Plan(batch_size=512))
    peak = cpu_profile.peak_tops["fp32"].value * 1e12
    assert est.breakdown_ms["compute"] == pytest.approx(mm.flops / (peak * 0.25) * 1e3)
    # per inference once, per node each: 16 adds pay 16 op overheads and one run overhead
    chain = target.estimate(adds(16, 1_000), Plan(batch_size=1_000))
    assert chain.breakdown_ms["overhead"] == pytest.approx((16 * 7.0 + 4.0) * 1e-3)
    assert chain.throughput_qps == pytest.approx(1_000 / chain.latency_ms * 1e3)
    # activations that fit on chip move at cache_eta x DRAM bandwidth, larger ones at memory_eta
    bandwidth = cpu_profile.memory.bandwidth_gbps.value * 1e9
    small, large = adds(1, 1_000_000), adds(1, 30_000_000)
    for graph, eta in ((small, 3.0), (large, 0.8)):
        got = target.node_time(graph.nodes[0], resident=True, notes={}).memory
        assert got == pytest.approx(12 * graph.batch_size / (bandwidth * eta)), eta
    # an op type's own rate wins over the machine-wide one
    conv = single("ConvInteger", 2 * 10**7, 10**5, macs=10**7, precision="int8")
    int8 = cpu_profile.peak_tops["int8"].value * 1e12
    got = target.estimate(conv, Plan()).breakdown_ms["compute"]
    assert got == pytest.approx(2e7 / (int8 * 0.03) * 1e3)


def test_calibrate_round_trips_into_the_cpu_target(tmp_path: Path, cpu_profile):
    result = calibrate(tmp_path, threads=1, cfg=TINY, quick=True)
    stored = json.loads(calibration_path(tmp_path).read_text())
    assert stored["by_threads"]["1"]["compute_eta"] == result["compute_eta"]
    assert all(result[k] > 0 for k in FITTED)
    kinds = {s["kind"] for s in result["samples"]}
    assert kinds >= {"compute", "memory", "overhead", "int8", "vector"}

    applied = apply_calibration(cpu_profile, tmp_path, threads=1)
    assert {k: v for k, v in applied.calibrated.items() if is_rate_key(k)} == {
        k: v for k, v in result.items() if is_rate_key(k)
    }
    graph = matmul(128, 384, 1536)
    before = make_target(cpu_profile).estimate(graph, Plan(batch_size=128)).latency_ms
    after = make_target(applied).estimate(graph, Plan(batch_size=128)).latency_ms
    assert after != pytest.approx(before, rel=1e-3)


def write_entries(runs: Path, entries: dict) -> Path:
    path = calibration_path(runs)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "by_threads": entries}))
    return path


def test_apply_picks_the_entry_of_the_thread_count(tmp_path: Path, cpu_profile):
    one = {**TRUTH, "threads": 1}
    two = {**TRUTH, "compute_eta": 0.9, "threads": 2, "samples": [{"name": "x"}]}
    write_entries(tmp_path, {"1": one, "2": two})
    assert apply_calibration(cpu_profile, tmp_path, threads=1).calibrated["compute_eta"] == 0.5
    picked = apply_calibration(cpu_profile, tmp_path, threads=2).calibrated
    assert picked["compute_eta"] == 0.9 and "samples" not in picked
    assert apply_calibration(cpu_profile, tmp_path, threads=4).calibrated["threads"] == 2


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps({"by_threads": {}}),
        json.dumps({"by_threads": {"2": {**TRUTH, "compute_eta": "fast"}}}),
        json.dumps({"by_threads": {"2": {**TRUTH, "vector_eta.Softmax": -1}}}),
        json.dumps({"by_threads": {"two": TRUTH}}),
        json.dumps([1, 2]),
    ],
)
def test_a_corrupt_file_is_a_one_line_user_error(tmp_path: Path, cpu_profile, text: str):
    path = calibration_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(UserError) as err:
        apply_calibration(cpu_profile, tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "delete it or run autoaccel calibrate again" in message


def test_apply_is_a_no_op_without_a_file_or_for_other_targets(tmp_path: Path, cpu_profile):
    assert apply_calibration(cpu_profile, tmp_path) is cpu_profile
    write_entries(tmp_path, {"2": TRUTH})
    gpu = load_profile(PROFILES_DIR / "nvidia-t4.yaml")
    assert apply_calibration(gpu, tmp_path) is gpu
