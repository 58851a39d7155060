"""The H100 GPU model fitted to real timings (benchmarks/gpu_fit.py): its `fidelity` block,
the block's validation, predictions of stored timing rows, and eager vs CUDA-graph launch.

The graphs of three timed shapes are stored in data/gpu_fit_graphs.json (written by
`benchmarks/gpu_fit.py --fixture`), so no candidate is built here and no GPU is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autoaccel.errors import UserError
from autoaccel.targets.base import GraphCost, NodeCost, Plan
from autoaccel.targets.gpu import GpuTarget
from autoaccel.targets.profile import (
    PROFILES_DIR,
    Efficiency,
    Figure,
    HardwareProfile,
    load_profile,
)

ROOT = Path(__file__).resolve().parents[2]
TIMINGS = ROOT / "benchmarks" / "results" / "gpu_timings_h100.json"
GRAPHS = Path(__file__).resolve().parent / "data" / "gpu_fit_graphs.json"
H100 = PROFILES_DIR / "nvidia-h100-sxm.yaml"
MEASURED = {"graph": "cuda_graph_ms", "eager": "eager_ms"}


@pytest.fixture(scope="module")
def h100() -> HardwareProfile:
    return load_profile(H100)


def node(fields: dict) -> NodeCost:
    dims = fields["matmul_dims"]  # a JSON list
    return NodeCost(**{**fields, "matmul_dims": tuple(dims) if dims else None})


@pytest.fixture(scope="module")
def timed() -> list[tuple[dict, GraphCost]]:
    """(timing row, its analysed graph) for the rows whose graphs are stored."""
    stored = json.loads(GRAPHS.read_text())
    fields = stored["fields"]
    rows = []
    for t in json.loads(TIMINGS.read_text())["rows"]:
        nodes = stored["graphs"].get(f"{t['layers']}-{t['precision']}-{t['batch']}")
        if nodes is not None:
            made = tuple(node(dict(zip(fields, n, strict=True))) for n in nodes)
            rows.append((t, GraphCost(nodes=made, batch_size=t["batch"])))
    assert len(rows) == 3
    return rows


def ape(profile: HardwareProfile, launch: str, row: dict, graph: GraphCost) -> float:
    est = GpuTarget(profile, launch).estimate(graph, Plan(batch_size=row["batch"]))
    return abs(est.latency_ms / row[MEASURED[launch]] - 1) * 100


def old_figures(profile: HardwareProfile) -> HardwareProfile:
    """The profile's figures before the fit: Calculon's curves, 5 us per kernel, no eager."""
    eff = Efficiency(
        compute=[(1e6, 0.10), (1e9, 0.60), (1.28e11, 0.95)],
        memory=[(1e4, 0.30), (1e6, 0.60), (1e8, 0.90)],
        overhead_us=Figure(value=5, source="assumed: ~5 us per kernel launch"),
        source="Calculon's A100/H100 tables",
    )
    memory = profile.memory.model_copy(update={"on_chip_bandwidth_gbps": None})
    return profile.model_copy(update={"efficiency": eff, "memory": memory})


def test_h100_profile_with_fidelity_loads_and_validates(h100: HardwareProfile) -> None:
    fid = h100.fidelity
    assert fid is not None and fid.n == 48 and 0 <= fid.mdape_pct <= 30
    assert fid.spearman is not None and fid.spearman > 0.9
    assert "leave-one-shape-out" in fid.check and "H100" in fid.measured_on
    assert fid.source == "benchmarks/results/gpu_fit.md"


def test_other_nvidia_profiles_were_never_checked_and_say_carried_figures_are_h100s() -> None:
    for name in ("nvidia-a100-80gb", "nvidia-l4", "nvidia-t4", "nvidia-jetson-orin"):
        prof = load_profile(PROFILES_DIR / f"{name}.yaml")
        assert prof.fidelity is None, name
        eff = prof.efficiency
        for fig in (eff.overhead_us, eff.eager.launch_us, eff.eager.call_us):
            assert "fitted on H100, never checked on this GPU" in fig.source, name
        assert "fitted on H100, never checked on this GPU" in eff.source, name


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mdape_pct": -1.0}, "fidelity.mdape_pct"),
        ({"spearman": 1.5}, "fidelity.spearman"),
        ({"n": 0}, "fidelity.n"),
        ({"check": ""}, "fidelity.check"),
        ({"typo": 1}, "fidelity.typo"),
    ],
    ids=["negative_mdape", "spearman_above_1", "no_rows", "empty_check", "unknown_key"],
)
def test_bad_fidelity_block_refused_naming_the_field(
    tmp_path: Path, change: dict, field: str
) -> None:
    data = yaml.safe_load(H100.read_text())
    data["fidelity"] = {**data["fidelity"], **change}
    path = tmp_path / H100.name
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        load_profile(path)


def test_fitted_h100_predicts_stored_timings_within_30_percent(
    h100: HardwareProfile, timed: list[tuple[dict, GraphCost]]
) -> None:
    for row, graph in timed:
        for launch in MEASURED:
            assert ape(h100, launch, row, graph) < 30, (row, launch)


def test_old_h100_figures_missed_the_same_rows_by_more_than_30_percent(
    h100: HardwareProfile, timed: list[tuple[dict, GraphCost]]
) -> None:
    """What the test above guards: the old figures were this far off on these rows."""
    old = old_figures(h100)
    for row, graph in timed:
        assert ape(old, "graph", row, graph) > 30, row
    six_fp16 = next(g for r, g in timed if (r["layers"], r["precision"]) == (6, "fp16"))
    assert ape(old, "eager", timed[0][0], six_fp16) > 30


def test_eager_launch_is_slower_than_graph_most_at_small_batch(
    h100: HardwareProfile, timed: list[tuple[dict, GraphCost]]
) -> None:
    ratios = {}
    for row, graph in timed:
        plan = Plan(batch_size=row["batch"])
        graph_ms = GpuTarget(h100, "graph").estimate(graph, plan).latency_ms
        eager = GpuTarget(h100, "eager").estimate(graph, plan)
        assert eager.latency_ms > graph_ms
        assert any("eager" in n for n in eager.notes)
        ratios[(row["layers"], row["precision"], row["batch"])] = eager.latency_ms / graph_ms
    # measured: 2.17 / 0.30 ms for 6 layers fp16 at batch 1; 1.89 / 1.58 for 3 fp32 at 32
    assert ratios[(6, "fp16", 1)] > 4 and ratios[(3, "fp32", 32)] < 1.6


def test_profile_without_eager_figures_prices_both_launches_alike(
    h100: HardwareProfile, timed: list[tuple[dict, GraphCost]]
) -> None:
    plain = old_figures(h100)
    row, graph = timed[0]
    plan = Plan(batch_size=row["batch"])
    graph_est = GpuTarget(plain, "graph").estimate(graph, plan)
    assert GpuTarget(plain, "eager").estimate(graph, plan) == graph_est
    with pytest.raises(ValueError, match="launch"):
        GpuTarget(plain, "async")  # type: ignore[arg-type]


def test_fitted_h100_curve_never_makes_a_bigger_op_faster(h100: HardwareProfile) -> None:
    """The fit bounds the curve so F / eta(F) never falls (a steeper curve once made batch 8
    faster than batch 1)."""
    target = GpuTarget(h100)
    sizes = [10 ** (5 + i / 20) for i in range(141)]  # 1e5 .. 1e12 FLOPs
    times = [f / target.eta_compute(f) for f in sizes]
    assert all(b >= a * (1 - 1e-9) for a, b in zip(times, times[1:], strict=False))
