"""The contract every target keeps, run over every profile's target and the measured CPU:
where its figures come from, which precisions it runs, and that batch size and each kind of
parallelism change what they should (and only that)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoaccel.errors import InfeasibleRecipe
from autoaccel.targets import load_targets
from autoaccel.targets.base import GraphCost, NodeCost, Plan

TARGETS = load_targets(None)
MULTI = [n for n, t in TARGETS.items() if t.max_devices() >= 8]


def _graph(precision: str, width: int = 512, layers: int = 8) -> GraphCost:
    """A chain of matmul + activation pairs, like an MLP or a transformer's FFN."""
    nbytes = {"int4": 0.5, "int8": 1, "fp8": 1, "fp16": 2, "bf16": 2}.get(precision, 4)
    nodes = []
    for i in range(layers):
        macs = 16 * width * width
        nodes.append(
            NodeCost(
                name=f"mm{i}",
                op_type="MatMul",
                macs=macs,
                flops=2 * macs,
                weight_bytes=int(width * width * nbytes),
                input_bytes=int(16 * width * nbytes),
                output_bytes=int(16 * width * nbytes),
                precision=precision,
                matmul_dims=(16, width, width),
            )
        )
        nodes.append(
            NodeCost(
                name=f"act{i}",
                op_type="Relu",
                flops=16 * width,
                input_bytes=16 * width * 4,
                output_bytes=16 * width * 4,
            )
        )
    return GraphCost(tuple(nodes), batch_size=1)


def _native(target) -> str:
    native = target.profile.native_precisions
    return next(p for p in ("fp32", "fp16", "bf16", "int8") if p in native)


@pytest.fixture(params=list(TARGETS), ids=list(TARGETS))
def target(request):
    return TARGETS[request.param]


def test_source_says_measured_or_which_cost_model(target):
    if target.name == "cpu-local":
        assert target.measured and target.source == "measured"
    else:
        assert not target.measured and target.source == f"estimated:{target.name}"


def test_every_native_precision_runs_and_others_run_wider_or_say_why(target):
    for precision in ("fp32", "fp16", "bf16", "int8"):
        graph = _graph(precision)
        if precision in target.profile.native_precisions:
            assert target.estimate(graph, Plan()).latency_ms > 0
            continue
        try:
            est = target.estimate(graph, Plan())
        except InfeasibleRecipe as exc:
            assert precision in str(exc) and target.name in str(exc)
        else:
            assert est.latency_ms > 0 and any("runs as" in n for n in est.notes)


def test_a_larger_batch_takes_longer_and_serves_at_least_as_much(target):
    graph = _graph(_native(target))
    one, eight = (target.estimate(graph, Plan(batch_size=b)) for b in (1, 8))
    assert eight.latency_ms >= one.latency_ms
    assert eight.throughput_qps >= one.throughput_qps * 0.999


def test_a_larger_model_is_never_faster_on_the_same_plan(target):
    precision = _native(target)
    small, large = _graph(precision, width=256), _graph(precision, width=512)
    for plan in (Plan(), Plan(batch_size=8)):
        try:
            big = target.estimate(large, plan)
        except InfeasibleRecipe:  # e.g. the weights no longer fit on chip
            continue
        assert big.latency_ms >= target.estimate(small, plan).latency_ms


@pytest.mark.parametrize("name", MULTI)
def test_data_parallel_raises_throughput_and_hourly_cost_never_latency(name):
    target = TARGETS[name]
    graph = _graph(_native(target))
    one = target.estimate(graph, Plan(batch_size=8))
    four = target.estimate(graph, Plan(batch_size=8, data=4))
    assert four.latency_ms == pytest.approx(one.latency_ms)
    assert four.throughput_qps == pytest.approx(4 * one.throughput_qps)
    if one.cost_per_hour_usd is not None:
        assert four.cost_per_hour_usd == pytest.approx(4 * one.cost_per_hour_usd)
        # four independent replicas: four times the price for four times the work
        assert four.cost_per_million_usd == pytest.approx(one.cost_per_million_usd)
    assert four.energy_j == pytest.approx(one.energy_j)


@pytest.mark.parametrize("name", MULTI)
def test_tensor_parallel_splits_compute_and_adds_communication(name):
    target = TARGETS[name]
    graph = _graph(_native(target), width=2048)
    one = target.estimate(graph, Plan(batch_size=8))
    two = target.estimate(graph, Plan(batch_size=8, tensor=2))
    assert two.breakdown_ms["compute"] < one.breakdown_ms["compute"]
    assert two.breakdown_ms["communication"] > 0 == one.breakdown_ms["communication"]


@pytest.mark.parametrize("name", MULTI)
def test_pipeline_raises_throughput_and_micro_batches_shrink_its_bubble(name):
    target = TARGETS[name]
    graph = _graph(_native(target), width=2048)  # compute-bound: stages worth splitting
    single = target.estimate(graph, Plan(batch_size=8))
    plain = target.estimate(graph, Plan(batch_size=8, pipeline=2))
    micro = target.estimate(graph, Plan(batch_size=8, pipeline=2, micro_batches=4))
    # two stages work on consecutive batches at once: the slowest stage sets the pace
    assert plain.throughput_qps > 1.5 * single.throughput_qps
    assert plain.breakdown_ms["bubble"] > 0 == single.breakdown_ms["bubble"]
    # micro-batches overlap the stages within one batch: a smaller share of idle stages
    # (whether that lowers latency depends on how efficient the smaller ops still are)
    assert micro.breakdown_ms["bubble"] / micro.latency_ms < (
        plain.breakdown_ms["bubble"] / plain.latency_ms
    )


def test_a_plan_beyond_the_devices_is_infeasible_with_the_fix(target):
    too_many = target.max_devices() + 1
    with pytest.raises(InfeasibleRecipe, match="devices"):
        target.estimate(_graph(_native(target)), replace(Plan(), data=too_many))
