"""Calibrated on first use: a search on a machine whose runs folder has no calibration of its
CPU for its thread count times one (here a fake micro suite, so it is fast), keeps it, and
reuses it; the entry records host, CPU, date, threads and load average."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import autoaccel.targets.calibrate as calibrate_module
import autoaccel.targets.calibration_microbenchmarks as micro_module
from autoaccel.targets import ensure_calibrated, load_targets
from autoaccel.targets.base import GraphCost, NodeCost
from autoaccel.targets.calibrate import (
    FITTED,
    SEED_ENV,
    calibrated_profile,
    calibration_path,
    cpu_model_name,
    predict_ms,
)
from autoaccel.targets.local_cpu import TEMPLATE, local_profile
from autoaccel.targets.profile import Figure, load_profile

TRUTH = {
    "compute_eta": 0.4,
    "vector_eta": 0.08,
    "memory_eta": 0.9,
    "cache_eta": 2.0,
    "overhead_us": 2.0,
    "run_overhead_us": 6.0,
}


def _matmul(m: int, k: int, n: int) -> GraphCost:
    node = NodeCost(
        "mm", "MatMul", macs=m * k * n, flops=2 * m * k * n, weight_bytes=4 * k * n,
        input_bytes=4 * m * k, output_bytes=4 * m * n, matmul_dims=(m, k, n),
    )  # fmt: skip
    return GraphCost((node,), batch_size=m)


def _adds(count: int, size: int) -> GraphCost:
    node = NodeCost("add", "Add", flops=size, input_bytes=8 * size, output_bytes=4 * size)
    return GraphCost((node,) * count, batch_size=1)


@pytest.fixture
def fake_suite(monkeypatch):
    """Time nothing: samples the CPU model itself generates from TRUTH; counts the runs."""
    calls = []

    def fake_run(threads, cfg, quick=False):
        calls.append(threads)
        measured = Figure(value=21.5, source="measured here: x")
        profile = calibrated_profile(local_profile(load_profile(TEMPLATE), None, measured), TRUTH)
        graphs = [_matmul(1, 64, 64), _matmul(16, 256, 256), _matmul(128, 384, 1536)]
        graphs += [_adds(1, 1_000), _adds(16, 1_000), _adds(1, 1_000_000), _adds(1, 30_000_000)]
        graphs += [_matmul(512, 1024, 1024)]
        return [
            {"name": f"g{i}", "kind": "compute", "threads": threads, "graph": g, "n_runs": 3,
             "measured_ms": predict_ms(profile, g), "p90_ms": predict_ms(profile, g)}
            for i, g in enumerate(graphs)
        ]  # fmt: skip

    monkeypatch.delenv(SEED_ENV, raising=False)
    monkeypatch.setattr(calibrate_module, "run_microbenchmarks", fake_run)
    monkeypatch.setattr(micro_module, "copy_bandwidth", lambda nbytes: (21.5, "measured here: x"))
    return calls


def test_first_use_calibrates_once_keeps_it_and_reuses_it(tmp_path: Path, fake_suite):
    said = []
    targets = load_targets(["nvidia-l4"], calibration_root=tmp_path)
    assert targets["cpu-local"].profile.calibrated is None  # nothing here yet
    calibrated = ensure_calibrated(tmp_path, targets, lambda kind, text: said.append(text), 2)
    assert fake_suite == [2] and list(calibrated) == ["cpu-local", "nvidia-l4"]
    assert any("calibrating the cpu-local cost model" in s for s in said)
    entry = json.loads(calibration_path(tmp_path).read_text())["by_threads"]["2"]
    assert entry["host"] == socket.gethostname() and entry["cpu"] == cpu_model_name()
    assert entry["threads"] == 2 and entry["when"][:2] == "20" and entry["suite"] == "first use"
    assert entry["load_avg_1min"] >= 0 and entry["memory_bandwidth_gbps"] == 21.5
    profile = calibrated["cpu-local"].profile
    assert profile.memory.bandwidth_gbps.value == 21.5  # the bandwidth measured, not assumed
    assert set(FITTED) <= set(profile.calibrated)
    for key in ("compute_eta", "memory_eta"):  # what these graphs pin down
        assert profile.calibrated[key] == pytest.approx(TRUTH[key], rel=0.15), key
    evidence = calibrated["cpu-local"].priced(1.0)["calibration"]
    assert evidence["host"] == socket.gethostname() and evidence["threads"] == 2

    again = load_targets(["nvidia-l4"], calibration_root=tmp_path)
    again = ensure_calibrated(tmp_path, again, threads=2)
    assert fake_suite == [2]  # kept: never timed again
    assert again["cpu-local"].profile.calibrated["when"] == entry["when"]


def test_a_calibration_of_another_cpu_is_timed_again_here(tmp_path: Path, fake_suite):
    ensure_calibrated(tmp_path, load_targets(None), threads=1)
    path = calibration_path(tmp_path)
    data = json.loads(path.read_text())
    data["by_threads"]["1"]["cpu"] = "Some Other CPU"
    path.write_text(json.dumps(data))
    ensure_calibrated(tmp_path, load_targets(None), threads=1)
    assert fake_suite == [1, 1]
    assert json.loads(path.read_text())["by_threads"]["1"]["cpu"] == cpu_model_name()


def test_a_seed_file_is_copied_instead_of_timed(tmp_path: Path, seeded_calibration, monkeypatch):
    monkeypatch.setattr(calibrate_module, "run_microbenchmarks", pytest.fail)
    found = ensure_calibrated(tmp_path / "runs", load_targets(None), threads=3)
    entry = json.loads(calibration_path(tmp_path / "runs").read_text())["by_threads"]["3"]
    assert entry["copied_from"] == str(seeded_calibration) and entry["threads"] == 3
    assert found["cpu-local"].profile.calibrated["copied_from"] == str(seeded_calibration)


def test_without_cpu_local_nothing_is_calibrated(tmp_path: Path, fake_suite):
    targets = {k: v for k, v in load_targets(["nvidia-l4"]).items() if k != "cpu-local"}
    assert ensure_calibrated(tmp_path, targets) is targets
    assert fake_suite == [] and not calibration_path(tmp_path).exists()
