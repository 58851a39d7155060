"""The hardware-selection report: built from the study storage alone, self-contained, escaped,
honest about estimates and about studies where nothing meets the limit."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import optuna
import pytest

import autoaccel
from autoaccel.errors import UserError
from autoaccel.report import gather, read_fidelity, write_report

BASELINE = {
    "accuracy": 0.90,
    "quality": {"accuracy": 0.90},
    "latency_ms": 1.0,
    "latency_p90_ms": 1.1,
    "latency_runs": 200,
    "latency_source": "measured",
    "target": "cpu-local",
    "size_mb": 1.0,
    "description": "toy: PyTorch eager fp32, batch 1",
    "recipe": {"runtime.backend": "torch"},
}
LIMIT = 0.01
ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 2}
PLAN = {"batch_size": 1, "data": 1, "tensor": 1, "pipeline": 1, "micro_batches": 1}


def _recipe(quantize: str = "none") -> dict:
    q = {"quantize.mode": quantize}
    if quantize == "int8_static":
        q.update({"quantize.per_channel": True, "quantize.calibration": "minmax"})
    return {**ORT, **q}


def _proj(
    target: str,
    latency: float | None,
    *,
    cost: float | None = None,
    energy: float | None = None,
    qps: float | None = None,
    reason: str = "",
) -> dict:
    """One target's stored projection (`Projection.as_dict()`); latency None: no plan runs."""
    if latency is None:
        return {
            "target": target,
            "kind": "asic",
            "source": f"estimated:{target}",
            "feasible_plans": 0,
            "infeasible": {reason: 3},
            "best": {},
        }
    pick = {
        "plan": PLAN,
        "latency_ms": latency,
        "throughput_qps": qps or 1000.0 / latency,
        "energy_j": energy,
        "cost_per_million_usd": cost,
        "cost_per_hour_usd": None,
        "devices": 1,
        "objective_ms": latency,
        "breakdown_ms": {},
        "notes": [],
        "server": None,
    }
    best = {"latency": pick, "throughput": pick, "scenario": pick}
    if cost is not None:
        best["cost"] = pick
    if energy is not None:
        best["energy"] = pick
    return {
        "target": target,
        "kind": "gpu",
        "source": f"estimated:{target}",
        "feasible_plans": 3,
        "infeasible": {},
        "best": best,
    }


INT8_ONLY = "{} runs int8 only; this recipe computes MatMul in fp32: add int8 quantization"


def _complete(
    accuracy: float,
    latency: float,
    projections: list[dict],
    *,
    quantize: str = "none",
    energy: float | None = None,
    cost: float | None = None,
) -> optuna.trial.FrozenTrial:
    """A build measured here (cpu-local) and projected on other targets."""
    hardware = {"throughput_qps": 1000.0 / latency, "batch_size": 1}
    if energy is not None:
        hardware["energy_j"] = energy
        hardware["energy_source"] = "estimated:cpu-local (profile power x measured latency)"
    if cost is not None:
        hardware["cost_per_million_usd"] = cost
    result = {
        "quality": {"accuracy": accuracy},
        "latency_ms": latency,
        "latency_p90_ms": latency * 1.2,
        "latency_runs": 100,
        "latency_source": "measured",
        "target": "cpu-local",
        "size_mb": 0.5,
        "hardware": hardware,
    }
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE,
        values=[accuracy, latency],
        user_attrs={
            "recipe": _recipe(quantize),
            "result": result,
            "projections": {p["target"]: p for p in projections},
        },
        constraints={"accuracy_drop": BASELINE["accuracy"] - accuracy - LIMIT},
    )


def _failed(reason: str, state: str = "FAIL", **attrs) -> optuna.trial.FrozenTrial:
    pruned = state == "PRUNED"
    return optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state),
        user_attrs={"recipe": _recipe(), "fail_reason": reason, **attrs},
        constraints={"recipe_runs": 1.0} if pruned else None,
    )


BASELINE_PROJECTIONS = {
    "nvidia-t4": _proj("nvidia-t4", 1.0),
    "nvidia-l4": _proj("nvidia-l4", 1.2),
    "nvidia-h100-sxm": _proj("nvidia-h100-sxm", 0.2),
    "google-edge-tpu": _proj("google-edge-tpu", None, reason=INT8_ONLY.format("edge")),
    "hailo-8": _proj("hailo-8", None, reason=INT8_ONLY.format("hailo-8")),
}


def _study(name: str, trials: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    study = optuna.create_study(study_name=name, directions=["maximize", "minimize"])
    study.set_user_attr("baseline", BASELINE)
    study.set_user_attr("baseline_projections", BASELINE_PROJECTIONS)
    study.set_user_attr(
        "identity", {"workload": "toy", "space": "abc", "max_accuracy_drop": LIMIT}
    )
    for t in trials:
        study.add_trial(t)
    return study


def _mixed() -> list[optuna.trial.FrozenTrial]:
    """Three builds measured here, each projected on five targets; each goal has a different
    winner, one build is over the accuracy limit, and failures of every kind."""
    hailo_no = _proj("hailo-8", None, reason=INT8_ONLY.format("hailo-8"))
    return [
        _complete(  # 0: fp32, the cheapest and most frugal here
            0.90,
            0.50,
            [
                _proj("nvidia-t4", 0.10, cost=0.0100, energy=5e-3, qps=20000),
                _proj("nvidia-l4", 0.12, cost=0.0004, energy=3e-3, qps=90000),
                _proj("nvidia-h100-sxm", 0.02, cost=0.002, energy=2e-3, qps=40000),
                _proj("google-edge-tpu", None, reason=INT8_ONLY.format("google-edge-tpu")),
                hailo_no,
            ],
            energy=1e-5,
            cost=0.0010,
        ),
        _complete(  # 1: int8, the fastest here and on most targets
            0.899,
            0.30,
            [
                _proj("nvidia-t4", 0.05, cost=0.008, energy=4e-3, qps=30000),
                _proj("nvidia-l4", 0.09, cost=0.0005, energy=2.5e-3, qps=60000),
                _proj("nvidia-h100-sxm", 0.01, cost=0.001, energy=1e-3, qps=50000),
                _proj("google-edge-tpu", 0.20, energy=4e-6),
                hailo_no,
            ],
            quantize="int8_static",
            energy=2e-5,
            cost=0.0015,
        ),
        _complete(  # 2: over the limit, though faster everywhere
            0.70,
            0.10,
            [
                _proj("nvidia-t4", 0.01, cost=1e-5, energy=1e-6),
                _proj("nvidia-h100-sxm", 0.001, cost=1e-6, energy=1e-7),
                _proj("hailo-8", 0.05, energy=1e-7),
            ],
            quantize="int8_static",
        ),
        _failed("RuntimeError: out of memory on step 12"),
        _failed("RuntimeError: out of memory on step 40"),
        _failed("InfeasibleRecipe: histogram calibration on a fused graph", "PRUNED"),
        _failed(
            "projected accuracy 0.61 < 0.89",
            "PRUNED",
            early_stopped="projected accuracy 0.61 < 0.89",
        ),
    ]


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "no-fidelity.json"


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory) -> tuple[Path, Path]:
    """The report of `_mixed()` (written once: charts take a second or two)."""
    out = tmp_path_factory.mktemp("mixed")
    return write_report(_study("mixed", _mixed()), out, fidelity=_missing(out))


def test_write_report_writes_markdown_and_self_contained_html(mixed_report):
    md, page = mixed_report
    assert md.name == "report.md" and page == md.with_name("report.html")
    text, html = md.read_text(), page.read_text()
    assert "# Hardware-selection report: study mixed" in text
    assert (md.parent / "report-plots" / "pareto-all.png").stat().st_size > 1000
    assert "report-plots/pareto-nvidia-t4.png" in text
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.I)
    assert "@import" not in html and "<link" not in html.lower()
    # all targets together + one per target with points (hailo-8: the over-limit build only)
    assert html.count('src="data:image/png;base64,') == 1 + 6
    for section in (
        "Recommendation",
        "Workload and baseline",
        "Best recipe per target",
        "Hardware selection by goal",
        "Pareto frontiers",
        "What each technique contributed",
        "Caveats",
        "Trials that failed, were infeasible, stopped early or missed the limit",
    ):
        assert f"<h2>{section}</h2>" in html and f"## {section}" in text


def test_report_quotes_the_best_measured_recipe_and_its_side_by_side_timing(tmp_path):
    study = _study("confirmed", _mixed())  # recommends trial 1, the fastest measured here
    study.set_user_attr(
        "confirmed",
        {
            "trial": 1,
            "speedup": 5.0,
            "ci_low": 4.8,
            "ci_high": 5.2,
            "rounds": 12,
            "candidate_ms": 0.52,
            "reference_ms": 2.6,
            "contention": {"busy": False, "other_cores": 0.0},
        },
    )
    md, _ = write_report(study, tmp_path, fidelity=_missing(tmp_path))
    section = md.read_text().split("## Recommendation")[1].split("\n## ")[0]
    assert "Recommended: trial 1" in section and "(measured here)" in section
    assert "5.00x (95 % interval 4.80-5.20x, 12 interleaved rounds, re-timed when" in section
    assert "0.520 ms vs 2.600 ms timed side by side" in section


def test_report_labels_measured_and_estimated_figures_per_target(mixed_report):
    md, _ = mixed_report
    section = md.read_text().split("## Best recipe per target")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines()}
    assert "measured on cpu-local" in rows["cpu-local"] and "| 1 |" in rows["cpu-local"]
    assert "estimated: nvidia-t4 cost model" in rows["nvidia-t4"]
    assert "0.05 ms" in rows["nvidia-t4"] and "$0.008" in rows["nvidia-t4"]
    assert "batch 1, one device" in rows["nvidia-t4"]  # the plan the figure comes from
    assert "20.00x (vs baseline there)" in rows["nvidia-t4"]  # 1.0 ms / 0.05 ms, both there
    assert "none within the limit" in rows["hailo-8"]
    assert "none within the limit" not in rows["google-edge-tpu"]  # its int8 build runs
    assert "toy: PyTorch eager fp32, batch 1" in md.read_text()


def test_ranking_picks_the_right_point_for_each_goal():
    facts = gather(_study("mixed", _mixed()), fidelity={})
    picks = {g.goal: (g.point.target, g.point.trial) for g in facts.goals}
    assert picks == {
        "latency": ("nvidia-h100-sxm", 1),
        "cost": ("nvidia-l4", 0),
        "energy": ("google-edge-tpu", 1),
        "throughput": ("nvidia-l4", 0),
        "local": ("cpu-local", 1),
    }
    latency = next(g for g in facts.goals if g.goal == "latency")
    assert [p.target for p in latency.ranking] == [
        "nvidia-h100-sxm",
        "nvidia-t4",
        "nvidia-l4",
        "google-edge-tpu",
        "cpu-local",
    ]
    rows = {r["target"]: r for r in facts.recommendation["hardware"]}
    assert rows["nvidia-h100-sxm"]["trial"] == 1 and rows["cpu-local"]["source"] == "measured"
    assert "reason" in rows["hailo-8"] and "trial" not in rows["hailo-8"]
    assert all(p.feasible for g in facts.goals for p in g.ranking)


def test_report_names_the_choices_that_rest_on_estimates(mixed_report):
    md, _ = mixed_report
    text = md.read_text()
    assert "Choices resting on cost-model estimates: lowest latency, lowest cost" in text
    assert "best on this machine (measured) | cpu-local, trial 1" in text
    assert "it rests on a measurement." in text  # the recommendation: measured


def test_report_prefer_cost_recommends_the_cheapest_feasible_point(tmp_path):
    facts = gather(_study("mixed", _mixed()), prefer="cost", fidelity={})
    assert facts.recommendation["recommended"]["trial"] == 0  # among builds measured here
    assert facts.recommendation["recommended"]["latency_source"] == "measured"
    md, _ = write_report(_study("mixed", _mixed()), tmp_path, prefer="energy", fidelity={})
    assert "Recommended: trial 0" in md.read_text()


def test_report_groups_failed_infeasible_and_early_stopped_trials(mixed_report):
    facts = gather(_study("mixed", _mixed()), fidelity={})
    groups = {(g.kind, g.trials) for g in facts.troubles}
    assert groups == {
        ("failed", (3, 4)),  # the same reason with other numbers: one group
        ("infeasible", (5,)),
        ("stopped early", (6,)),
        ("over the accuracy limit", (2,)),
    }
    md, _ = mixed_report
    assert "| failed | 2 | 3, 4 | RuntimeError: out of memory on step 12 |" in md.read_text()


def test_study_name_and_reasons_are_escaped_in_html_and_markdown(tmp_path):
    evil = "<script>alert(1)</script>"
    trials = [
        _complete(0.90, 0.5, [_proj("nvidia-t4", 0.1)], energy=1e-5, cost=1e-3),
        _failed('ValueError: <img src=x onerror="alert(2)"> | [x](javascript:1)'),
    ]
    md, page = write_report(_study(evil, trials), tmp_path, fidelity=_missing(tmp_path))
    html, text = page.read_text(), md.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert "&lt;img src=x onerror=" in html
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "[x](javascript" not in text and r"\[x\](javascript:1)" in text  # no link formed


def test_report_says_nothing_meets_the_limit_and_lists_the_closest(tmp_path):
    trials = [
        _complete(0.80, 0.5, [_proj("nvidia-t4", 0.1, cost=0.01)]),
        _complete(0.85, 0.4, [_proj("nvidia-t4", 0.08, cost=0.01)]),
        _complete(0.70, 0.3, [_proj("nvidia-l4", 0.05)]),
        _complete(0.60, 0.2, [_proj("hailo-8", 0.02)]),
    ]
    md, page = write_report(_study("hopeless", trials), tmp_path, fidelity=_missing(tmp_path))
    text = md.read_text()
    assert "**No recommendation: no candidate kept accuracy within 0.01" in text
    assert "The closest candidates to the limit" in text
    closest = text.split("The closest candidates")[1].split("##")[0]
    order = [closest.index(f"| {n} |") for n in (1, 0, 2)]  # smallest drop first
    assert order == sorted(order) and "| 3 |" not in closest
    assert "No candidate meets the accuracy limit: the frontier is empty." in text
    assert "No recommendation" in page.read_text()


def test_report_says_the_cost_model_fidelity_is_unmeasured_when_absent(mixed_report):
    md, _ = mixed_report
    text = md.read_text()
    assert "Cost-model error on this machine: not measured in this study" in text
    assert "Never checked against real hardware: google-edge-tpu, hailo-8" in text


def test_report_quotes_a_benchmark_file_only_for_its_workload_and_machine(tmp_path):
    fidelity = {
        "machine": {"cpu": "AMD EPYC", "cores": 2, "date": "2026-11-25 22:44:49"},
        "summary": {
            "all": {"n": 9, "spearman": 0.9833, "mdape_pct": 28.7},
            "toy": {"n": 1, "spearman": math.nan, "mdape_pct": 1.9},
        },
    }
    md, _ = write_report(_study("mixed", _mixed()), tmp_path, fidelity=fidelity)
    text = md.read_text()
    assert "not part of this study) was measured on AMD EPYC, 2 cores on 2026-11-25" in text
    assert "median absolute error 2 % over 1 build of toy there" in text
    # never pooled (the H100's own fidelity block may say 0.98: another check, its own line)
    local = "\n".join(line for line in text.splitlines() if "nvidia-h100" not in line)
    assert "0.98" not in local and "28.7" not in local and "29 %" not in local
    assert read_fidelity({"summary": {"toy": {"n": 1}}}, {"name": "toy"}).benchmark is None
    assert read_fidelity(tmp_path / "absent.json").benchmark is None


def test_importances_need_enough_trials_and_say_so():
    facts = gather(_study("one", [_complete(0.9, 0.5, [])]), fidelity={})
    assert all(not imp.values and "at least 2" in imp.note for imp in facts.importances)


def test_report_of_a_study_without_baseline_is_a_user_error(tmp_path):
    study = optuna.create_study(study_name="empty", directions=["maximize", "minimize"])
    with pytest.raises(UserError, match="no baseline yet"):
        write_report(study, tmp_path)


def test_report_judges_feasibility_against_the_limit_it_is_given():
    facts = gather(_study("mixed", _mixed()), limit=0.0, fidelity={})
    assert {p.trial for p in facts.points if p.feasible} == {0}
    assert facts.recommendation["recommended"]["trial"] == 0
    assert facts.recommendation["accuracy_limit"]["max_drop"] == 0.0


# -- a real search: the report from its storage alone, then in a real browser -------------


@pytest.fixture(scope="module")
def real_report(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    result = autoaccel.search(
        "seed-mlp",
        budget=4,
        runs_dir=runs,
        space="quick",
        measure_seconds=0.03,
        isolate=False,  # in-process: isolation has its own tests
        targets=["cpu-local", "nvidia-t4"],
    )
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{runs / 'optuna.db'}")
    _, page = write_report(study, runs / "report")
    return page


def test_report_of_a_real_search_is_built_from_storage_alone(real_report):
    text = real_report.with_name("report.md").read_text()
    assert "study seed-mlp-quick" in text and "Workload seed-mlp" in text
    assert "seed-mlp: PyTorch eager fp32, batch 1" in text
    assert "| latency (log) |" in text or "latency (log):" in text


CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_report_html_renders_in_headless_chromium_without_errors_or_requests(
    real_report, tmp_path
):
    in_ci = os.environ.get("CI") == "true"
    if not CHROMIUM.exists() and not in_ci:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; CI installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            raise
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")

    requests, errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(real_report.as_uri(), wait_until="load")
            title = page.title()
            h1 = page.locator("h1").inner_text()
            headings = page.locator("h2").all_inner_texts()
            images_ok = page.evaluate(
                "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
            )
            n_images = page.evaluate("document.images.length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file://", "data:"))] == []
    assert "Hardware-selection report" in title and "seed-mlp-quick" in h1
    assert "Recommendation" in headings and "Pareto frontiers" in headings
    assert n_images >= 2 and images_ok
    assert (tmp_path / "report.png").stat().st_size > 10_000
