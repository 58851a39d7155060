"""Measured targets: this CPU always; a CUDA GPU when one is present, with its profile's cost
model as its estimated twin. No GPU here: its detection is exercised by standing in for it."""

from __future__ import annotations

import pytest

import autoaccel.targets as targets
from autoaccel.errors import InfeasibleRecipe, UserError
from autoaccel.targets.base import GraphCost, NodeCost, Plan
from autoaccel.targets.measured import cuda_twin_name


def test_cpu_local_is_measured_first_and_keeps_a_cost_model_twin():
    found = targets.load_targets(["nvidia-l4"])
    assert list(found) == ["cpu-local", "nvidia-l4"]  # cpu-local whatever --targets says
    cpu = found["cpu-local"]
    assert cpu.measured and cpu.device == "cpu" and cpu.twin.source == "estimated:cpu-local"
    graph = GraphCost((NodeCost("mm", "MatMul", macs=10**6, flops=2 * 10**6),))
    assert cpu.estimate(graph, Plan()).source == "estimated:cpu-local"
    priced = cpu.priced(2.0)
    assert priced["throughput_qps"] == 500.0 and "measured latency" in priced["energy_source"]


@pytest.mark.parametrize(
    "device, profile",
    [
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-sxm"),
        ("NVIDIA A100-SXM4-80GB", "nvidia-a100-80gb"),
        ("NVIDIA L4", "nvidia-l4"),
        ("Tesla T4", "nvidia-t4"),
        ("NVIDIA H200", None),
    ],
)
def test_a_gpu_model_finds_the_profile_that_describes_it(device, profile):
    assert cuda_twin_name(device) == profile


def test_a_present_gpu_is_a_second_measured_target_beside_its_estimated_twin(monkeypatch):
    monkeypatch.setattr(targets, "cuda_device_name", lambda: "NVIDIA H100 80GB HBM3")
    found = targets.load_targets(None)
    assert list(found)[:2] == ["cpu-local", "cuda-local"]
    gpu = found["cuda-local"]
    assert gpu.measured and gpu.device == "cuda" and gpu.source == "measured"
    assert gpu.twin.name == "nvidia-h100-sxm" and not gpu.twin.measured
    assert "nvidia-h100-sxm" in found  # the estimated profile is projected as well
    narrowed = targets.load_targets(["nvidia-l4"])  # not asked for: not timed
    assert "cuda-local" not in narrowed


def test_a_gpu_no_profile_describes_has_no_estimates(monkeypatch):
    monkeypatch.setattr(targets, "cuda_device_name", lambda: "NVIDIA H200")
    gpu = targets.load_targets(["cuda-local"])["cuda-local"]
    assert (
        gpu.twin is None and gpu.profile is None and gpu.priced(1.0) == {"throughput_qps": 1000.0}
    )
    with pytest.raises(InfeasibleRecipe, match="no hardware profile"):
        gpu.estimate(GraphCost(()), Plan())


def test_asking_for_a_gpu_that_is_not_here_says_so(monkeypatch):
    monkeypatch.setattr(targets, "cuda_device_name", lambda: None)
    with pytest.raises(UserError, match="cuda-local needs a CUDA GPU"):
        targets.load_targets(["cuda-local"])
