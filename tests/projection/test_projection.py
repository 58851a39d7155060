"""Projecting one build on a target: the plan grid it may use and the plan each goal picks."""

from __future__ import annotations

import pytest

from autoaccel.projection import project_target
from autoaccel.projection.plans import PlanGrid, describe_plan
from autoaccel.targets import load_targets
from autoaccel.targets.base import GraphCost, NodeCost

TARGETS = load_targets(["nvidia-a100-80gb", "hailo-8", "nvidia-jetson-orin"])


def _graph(precision: str = "fp32", width: int = 1024) -> GraphCost:
    macs = 128 * width * width
    node = NodeCost(
        "mm",
        "MatMul",
        macs=macs,
        flops=2 * macs,
        weight_bytes=width * width * 4,
        input_bytes=128 * width * 4,
        output_bytes=128 * width * 4,
        precision=precision,
        matmul_dims=(128, width, width),
    )
    return GraphCost((node,) * 6, batch_size=1)


def test_grid_keeps_the_plans_a_target_can_run():
    grid = PlanGrid(batch_size=(1, 8), data=(1, 2, 4, 8), tensor=(1, 2, 4, 8), pipeline=(1, 2))
    single = grid.plans_for(TARGETS["nvidia-jetson-orin"])  # one device
    assert {(p.batch_size, p.devices) for p in single} == {(1, 1), (8, 1)}
    multi = grid.plans_for(TARGETS["nvidia-a100-80gb"])
    assert max(p.devices for p in multi) == 8
    assert all(p.devices <= 8 for p in multi)
    # micro-batches only with a pipeline, and only where they divide the batch
    assert all(
        p.micro_batches == 1 or (p.pipeline > 1 and p.batch_size % p.micro_batches == 0)
        for p in multi
    )
    assert any(p.micro_batches > 1 for p in multi)


def test_grid_from_a_space_block_leaves_unlisted_dimensions_at_one():
    grid = PlanGrid.from_block({"names": ["x"], "batch_size": [1, 4], "tensor": [1, 2]})
    assert grid == PlanGrid(
        batch_size=(1, 4), data=(1,), tensor=(1, 2), pipeline=(1,), micro_batches=(1,)
    )
    assert PlanGrid.from_block(None) == PlanGrid() == PlanGrid.from_block({"names": ["x"]})


def test_goals_pick_their_own_plans_and_single_stream_takes_batch_one():
    proj = project_target(TARGETS["nvidia-a100-80gb"], _graph(), PlanGrid())
    best = proj.best
    assert proj.feasible and proj.infeasible == {}
    assert best["scenario"] == best["latency"] and best["latency"].plan["batch_size"] == 1
    assert best["latency"].plan["data"] == 1  # replicas never lower latency
    assert best["throughput"].throughput_qps >= best["latency"].throughput_qps
    assert best["throughput"].plan["data"] * best["throughput"].plan["batch_size"] > 1
    assert best["cost"].cost_per_million_usd <= best["latency"].cost_per_million_usd


def test_offline_picks_the_cheapest_throughput_and_server_meets_the_bound():
    offline = project_target(TARGETS["nvidia-a100-80gb"], _graph(), PlanGrid(), "offline")
    pick = offline.best["scenario"]
    assert pick.cost_per_million_usd == pytest.approx(offline.best["cost"].cost_per_million_usd)
    assert pick.objective_ms == pytest.approx(1000.0 / pick.throughput_qps)
    server = project_target(TARGETS["nvidia-a100-80gb"], _graph(), PlanGrid(), "server", 5.0)
    got = server.best["scenario"].server
    assert got["p99_ms"] <= 5.0 and got["sustained_qps"] > 0
    assert server.best["scenario"].objective_ms == pytest.approx(1000.0 / got["sustained_qps"])


def test_a_target_that_cannot_run_the_build_says_why():
    proj = project_target(TARGETS["hailo-8"], _graph("fp32"), PlanGrid())
    assert not proj.feasible and proj.best == {}
    assert "int8" in proj.reason and proj.as_dict()["feasible_plans"] == 0
    assert project_target(TARGETS["hailo-8"], _graph("int8", 256), PlanGrid()).feasible


def test_plans_read_as_words():
    assert describe_plan({"batch_size": 1}) == "batch 1, one device"
    words = describe_plan({"batch_size": 8, "data": 2, "pipeline": 2, "micro_batches": 4})
    assert words == "batch 8, data parallel 2, pipeline parallel 2, 4 micro-batches"


def test_a_target_pickled_for_the_worker_leaves_its_memo_behind():
    import pickle

    target = TARGETS["nvidia-a100-80gb"]
    graph = _graph()
    here = project_target(target, graph, PlanGrid())
    there = pickle.loads(pickle.dumps(target))
    assert "_replicas" in target.__dict__ and "_replicas" not in there.__dict__
    assert project_target(there, graph, PlanGrid()) == here
