"""The report's fidelity caveats rest on evidence that says where it comes from: the study's
own twin-vs-measured error per workload (never a pooled figure), the calibration the cost
model used (host, CPU, date), each estimated target's check on real hardware or "never
checked", and the power and price of measured points with their sources."""

from __future__ import annotations

import types

import optuna
import pytest

import autoaccel.targets.profile as profile_module
from autoaccel.report.content import layout
from autoaccel.report.facts import gather
from autoaccel.report.fidelity import read_fidelity, spearman

CALIBRATION = {
    "host": "build-box-7",
    "cpu": "AMD EPYC 7B13",
    "when": "2026-12-01T10:00:00+00:00",
    "threads": 2,
    "suite": "first use",
    "fit_mdape": 9.5,
    "n_samples": 31,
    "load_avg_1min": 0.4,
}
# (measured ms, the twin's estimate): ranks agree except the last two; errors 10,20,10,50,25 %
PAIRS = [(1.0, 1.1), (2.0, 1.6), (3.0, 3.3), (4.0, 6.0), (8.0, 6.0)]
BASELINE = {
    "accuracy": 0.9,
    "quality": {"accuracy": 0.9},
    "latency_ms": 10.0,
    "latency_p90_ms": 11.0,
    "latency_runs": 100,
    "latency_source": "measured",
    "target": "cpu-local",
    "size_mb": 1.0,
    "description": "toy",
    "recipe": {"runtime.backend": "onnxruntime"},
}


def _projection(target: str, latency: float) -> dict:
    pick = {"plan": {"batch_size": 1}, "latency_ms": latency, "throughput_qps": 1e3 / latency}
    pick |= {"energy_j": None, "cost_per_million_usd": None, "cost_per_hour_usd": None}
    pick |= {"devices": 1, "objective_ms": latency, "breakdown_ms": {}, "notes": []}
    best = {"latency": pick, "throughput": pick, "scenario": pick}
    return {"target": target, "kind": "gpu", "source": f"estimated:{target}",
            "feasible_plans": 1, "infeasible": {}, "best": best}  # fmt: skip


def _trial(measured_ms: float, twin_ms: float) -> optuna.trial.FrozenTrial:
    local = {
        "source": "measured",
        "latency_ms": measured_ms,
        "power_w": 20.0,
        "power_source": "set by the user on 2026-12-01 (host build-box-7)",
        "price_per_hour_usd": 0.116,
        "price_source": "assumed, unconfirmed: 2 cores x $0.058 per core-hour",
        "calibration": CALIBRATION,
        "twin": _projection("cpu-local", twin_ms),
    }
    result = {
        "quality": {"accuracy": 0.9},
        "latency_ms": measured_ms,
        "latency_p90_ms": measured_ms,
        "latency_source": "measured",
        "target": "cpu-local",
        "size_mb": 1.0,
        "machine": {"host": "build-box-7"},
        "hardware": {"throughput_qps": 1e3 / measured_ms},
        "measured": {"cpu-local": local},
    }
    projections = {n: _projection(n, measured_ms / 10) for n in ("nvidia-h100-sxm", "nvidia-l4")}
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE,
        values=[0.9, measured_ms],
        user_attrs={"recipe": {"runtime.backend": "onnxruntime"}, "result": result,
                    "projections": projections},
        constraints={"accuracy_drop": -0.01},
    )  # fmt: skip


@pytest.fixture
def h100_checked(monkeypatch):
    """Profiles as they will be once nvidia-h100-sxm carries a measured `fidelity` block."""
    real = profile_module.load_profiles()
    block = types.SimpleNamespace(
        mdape_pct=18.0, spearman=0.9, n=12, check="benchmarks/gpu_fidelity.py",
        measured_on="one H100 SXM, 2026-11-30", source="benchmarks/results/gpu_fidelity.json",
    )  # fmt: skip
    stand_in = types.SimpleNamespace(fidelity=block)
    monkeypatch.setattr(
        profile_module, "load_profiles", lambda *a: {**real, "nvidia-h100-sxm": stand_in}
    )


def _caveats(study: optuna.Study, **kwargs) -> str:
    doc = layout(gather(study, **kwargs), {})
    section = next(s for s in doc.sections if s.title == "Caveats")
    return "\n".join(section.blocks[0].items)


def _study(name: str = "toy-quick") -> optuna.Study:
    study = optuna.create_study(study_name=name, directions=["maximize", "minimize"])
    study.set_user_attr("baseline", BASELINE)
    study.set_user_attr("identity", {"workload": "toy", "max_accuracy_drop": 0.01})
    for measured, twin in PAIRS:
        study.add_trial(_trial(measured, twin))
    return study


def test_the_studys_own_error_and_calibration_are_quoted(h100_checked):
    text = _caveats(_study(), fidelity={})
    # Spearman of PAIRS: the estimates tie at 6.0 (both rank 3.5) -> 0.9747, as scipy says
    assert "measured in this study" in text
    assert (
        "off by a median 20 %, Spearman rank correlation 0.97 over 5 measured builds of toy"
        in (text)
    )
    assert (
        "calibration measured on build-box-7 (AMD EPYC 7B13, 2 threads) on 2026-12-01 10:00 UTC"
        in text
    )
    assert "fit error (median) 10 % over 31 micro-benchmarks, load average 0.4" in text
    assert "nvidia-h100-sxm's cost model was checked against real hardware: median absolute " in (
        text
    )
    assert (
        "18 %, Spearman 0.90 over 12 builds (benchmarks/gpu_fidelity.py; measured on one H100"
        in text
    )
    assert "Never checked against real hardware: nvidia-l4." in text
    assert "20 W (set by the user on 2026-12-01" in text
    assert "$0.116 per hour (assumed, unconfirmed" in text
    assert "this machine's CPU" not in text  # the old unconditional claim


def test_without_a_fidelity_block_a_target_is_never_checked():
    fid = read_fidelity({}, {"name": "toy"}, _study().get_trials())
    assert "nvidia-l4" in fid.unchecked and not {c.target for c in fid.checked} - {
        "nvidia-h100-sxm"
    }


def test_the_twin_error_needs_measured_twins_and_counts_each_build_once():
    trials = [_trial(m, t) for m, t in PAIRS]
    dup = _trial(1.0, 5.0)
    dup = optuna.trial.create_trial(
        state=dup.state,
        values=dup.values,
        user_attrs={**dup.user_attrs, "duplicate_of": 0},
        constraints={"accuracy_drop": -0.01},
    )
    (twin,) = read_fidelity(None, None, [*trials, dup]).measured
    assert twin.target == "cpu-local" and twin.n == 5 and twin.mdape_pct == pytest.approx(20.0)
    assert twin.calibrations == (CALIBRATION,)
    assert read_fidelity(None, None, []).measured == ()


def test_spearman_ranks_ties_by_their_average_and_needs_three_pairs():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 8], [1.1, 1.6, 3.3, 6.0, 6.0]) == pytest.approx(0.97468, abs=1e-5)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
