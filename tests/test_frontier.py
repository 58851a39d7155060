"""Recommendation policy and schema, on hand-made points."""

from __future__ import annotations

from autoaccel.frontier import Point, recommend

BASELINE = {
    "accuracy": 0.90,
    "latency_ms": 10.0,
    "latency_p90_ms": 11.0,
    "latency_source": "measured",
    "target": "cpu-local",
    "description": "toy: PyTorch eager fp32, batch 1",
    "size_mb": 1.0,
}
WORKLOAD = {"name": "toy", "metric": "accuracy", "metric_description": "top-1"}
SCHEMA = {
    "trial",
    "recipe",
    "target",
    "accuracy",
    "accuracy_drop",
    "latency_ms",
    "latency_source",
    "speedup",
    "summary",
}


def _point(trial: int, accuracy: float, latency: float, feasible: bool = True) -> Point:
    return Point(
        trial=trial,
        recipe={"quantize.mode": "int8_dynamic"},
        description=f"recipe {trial}",
        target="cpu-local",
        accuracy=accuracy,
        accuracy_drop=BASELINE["accuracy"] - accuracy,
        latency_ms=latency,
        latency_p90_ms=latency * 1.1,
        latency_source="measured",
        speedup=BASELINE["latency_ms"] / latency,
        size_mb=0.5,
        feasible=feasible,
    )


def test_recommend_picks_fastest_frontier_point_with_full_schema():
    front = [_point(3, 0.895, 2.0), _point(1, 0.90, 4.0)]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, front, front)
    assert rec["recommended"]["trial"] == 3
    assert SCHEMA <= set(rec["recommended"])
    assert rec["recommended"]["speedup"] == 5.0
    assert "5.0x faster" in rec["recommended"]["summary"]
    assert "measured on cpu-local" in rec["recommended"]["summary"]
    assert {
        "study",
        "workload",
        "metric",
        "baseline",
        "accuracy_limit",
        "recommended",
        "frontier",
    } <= set(rec)
    assert rec["accuracy_limit"]["min_accuracy"] == 0.89
    assert [p["trial"] for p in rec["frontier"]] == [3, 1]


def test_recommend_is_null_with_reason_and_closest_when_nothing_meets_limit():
    points = [
        _point(0, 0.70, 1.0, False),
        _point(1, 0.85, 2.0, False),
        _point(2, 0.80, 3.0, False),
    ]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [], points)
    assert rec["recommended"] is None
    assert "no candidate kept accuracy within 0.01" in rec["reason"]
    assert "trial 1" in rec["reason"]
    assert [p["trial"] for p in rec["closest"]] == [1, 2, 0]


def test_recommend_says_so_when_no_trial_completed():
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [], [])
    assert rec["recommended"] is None and "no trial completed" in rec["reason"]
