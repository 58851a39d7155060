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


def _recipe(target: str, quantize: str = "none") -> dict:
    q = {"quantize.mode": quantize}
    if quantize == "int8_static":
        q.update({"quantize.per_channel": True, "quantize.calibration": "minmax"})
    if target == "cpu-local":
        return {"target.name": target, **ORT, **q}
    return {"target.name": target, "target.batch_size": 1, **q}


def _complete(
    target: str,
    accuracy: float,
    latency: float,
    *,
    quantize: str = "none",
    energy: float | None = None,
    cost: float | None = None,
    qps: float | None = None,
) -> optuna.trial.FrozenTrial:
    measured = target == "cpu-local"
    hardware = {"throughput_qps": qps or 1000.0 / latency, "batch_size": 1}
    if energy is not None:
        hardware["energy_j"] = energy
        hardware["energy_source"] = "estimated:" + target
    if cost is not None:
        hardware["cost_per_million_usd"] = cost
    result = {
        "quality": {"accuracy": accuracy},
        "latency_p90_ms": latency * (1.2 if measured else 1.0),
        "latency_runs": 100 if measured else 0,
        "latency_source": "measured" if measured else f"estimated:{target}",
        "target": target,
        "size_mb": 0.5,
        "hardware": hardware,
    }
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE,
        values=[accuracy, latency],
        user_attrs={"recipe": _recipe(target, quantize), "result": result},
        constraints={"accuracy_drop": BASELINE["accuracy"] - accuracy - LIMIT},
    )


def _failed(target: str, reason: str, state: str = "FAIL", **attrs) -> optuna.trial.FrozenTrial:
    pruned = state == "PRUNED"
    return optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state),
        user_attrs={"recipe": _recipe(target), "fail_reason": reason, **attrs},
        constraints={"recipe_runs": 1.0} if pruned else None,
    )


def _study(name: str, trials: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    study = optuna.create_study(study_name=name, directions=["maximize", "minimize"])
    study.set_user_attr("baseline", BASELINE)
    study.set_user_attr(
        "identity", {"workload": "toy", "space": "abc", "max_accuracy_drop": LIMIT}
    )
    for t in trials:
        study.add_trial(t)
    return study


def _mixed() -> list[optuna.trial.FrozenTrial]:
    """Each goal has a different winner; one faster point is over the accuracy limit."""
    return [
        _complete("cpu-local", 0.90, 0.50, energy=2e-5, cost=0.0020),  # 0: best measured
        _complete("nvidia-t4", 0.899, 0.05, energy=5e-3, cost=0.0100, qps=20000),  # 1: fastest
        _complete("google-edge-tpu", 0.895, 0.20, quantize="int8_static", energy=4e-6),  # 2
        _complete("nvidia-l4", 0.90, 0.08, energy=3e-3, cost=0.0004, qps=90000),  # 3: cheapest
        _complete("nvidia-h100-sxm", 0.70, 0.01, energy=1e-6, cost=1e-5),  # 4: over the limit
        _failed("nvidia-t4", "RuntimeError: out of memory on step 12"),
        _failed("nvidia-t4", "RuntimeError: out of memory on step 40"),
        _failed("hailo-8", "InfeasibleRecipe: hailo-8 runs int8 only", "PRUNED"),
        _failed(
            "cpu-local",
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
    assert html.count('src="data:image/png;base64,') == 1 + 5  # all targets + each with points
    for section in (
        "Recommendation",
        "Workload and baseline",
        "Best recipe per target",
        "Hardware selection by goal",
        "Pareto frontiers",
        "What each technique contributed",
        "Caveats",
        "Failed, infeasible and early-stopped trials",
    ):
        assert f"<h2>{section}</h2>" in html and f"## {section}" in text


def test_report_quotes_the_best_measured_recipe_and_its_side_by_side_timing(tmp_path):
    study = _study("confirmed", _mixed())  # recommends the estimated T4; trial 0 is local
    study.set_user_attr(
        "confirmed",
        {
            "trial": 0,
            "latency_ms": 0.52,
            "baseline_latency_ms": 2.6,
            "speedup": 5.0,
            "figure": "latency (batch 1)",
        },
    )
    md, _ = write_report(study, tmp_path, fidelity=_missing(tmp_path))
    section = md.read_text().split("## Recommendation")[1].split("\n## ")[0]
    assert "Recommended (trial 1)" in section
    assert "Best measured on this machine (trial 0)" in section
    assert "confirmed side by side: 5.0x (0.520 ms vs 2.600 ms, interleaved)" in section


def test_report_labels_measured_and_estimated_figures_per_target(mixed_report):
    md, _ = mixed_report
    section = md.read_text().split("## Best recipe per target")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines()}
    assert "measured on cpu-local" in rows["cpu-local"]
    assert "estimated: nvidia-t4 cost model" in rows["nvidia-t4"]
    assert "0.05 ms" in rows["nvidia-t4"] and "$0.01" in rows["nvidia-t4"]
    assert "none within the limit" in rows["nvidia-h100-sxm"]
    assert "toy: PyTorch eager fp32, batch 1" in md.read_text()


def test_ranking_picks_the_right_point_for_each_goal():
    facts = gather(_study("mixed", _mixed()), fidelity={})
    picks = {g.goal: g.point.trial for g in facts.goals}
    assert picks == {"latency": 1, "cost": 3, "energy": 2, "throughput": 3, "local": 0}
    latency = next(g for g in facts.goals if g.goal == "latency")
    assert [p.target for p in latency.ranking] == [
        "nvidia-t4",
        "nvidia-l4",
        "google-edge-tpu",
        "cpu-local",
    ]
    assert all(p.feasible for g in facts.goals for p in g.ranking)


def test_report_names_the_choices_that_rest_on_estimates(mixed_report):
    md, _ = mixed_report
    text = md.read_text()
    assert "Choices resting on cost-model estimates: lowest latency, lowest cost" in text
    assert "best on this machine (measured) | cpu-local, trial 0" in text
    assert "This choice rests on an estimate (nvidia-t4); see the caveats" in text


def test_report_prefer_cost_recommends_the_cheapest_feasible_point(tmp_path):
    facts = gather(_study("mixed", _mixed()), prefer="cost", fidelity={})
    assert facts.recommendation["recommended"]["trial"] == 3
    md, _ = write_report(_study("mixed", _mixed()), tmp_path, prefer="energy", fidelity={})
    assert "Recommended (trial 2)" in md.read_text()


def test_report_groups_failed_infeasible_and_early_stopped_trials(mixed_report):
    facts = gather(_study("mixed", _mixed()), fidelity={})
    groups = {(g.kind, g.trials) for g in facts.troubles}
    assert groups == {
        ("failed", (5, 6)),  # the same reason with other numbers: one group
        ("infeasible recipe", (7,)),
        ("early-stopped", (8,)),
        ("over the accuracy limit", (4,)),
    }
    md, _ = mixed_report
    assert "| failed | 2 | 5, 6 | RuntimeError: out of memory on step 12 |" in md.read_text()


def test_study_name_and_reasons_are_escaped_in_html_and_markdown(tmp_path):
    evil = "<script>alert(1)</script>"
    trials = [
        _complete("cpu-local", 0.90, 0.5, energy=1e-5, cost=1e-3),
        _failed("cpu-local", 'ValueError: <img src=x onerror="alert(2)"> | [x](javascript:1)'),
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
        _complete("cpu-local", 0.80, 0.5),
        _complete("nvidia-t4", 0.85, 0.1, cost=0.01),
        _complete("nvidia-l4", 0.70, 0.05),
        _complete("hailo-8", 0.60, 0.02),
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
    assert "the fidelity has not been measured" in md.read_text()


def test_report_quotes_the_cost_model_fidelity_when_present(tmp_path):
    fidelity = {
        "summary": {
            "all": {"n": 9, "spearman": 0.9833, "mdape_pct": 28.7},
            "toy": {"n": 1, "spearman": math.nan, "mdape_pct": 1.9},
        }
    }
    md, _ = write_report(_study("mixed", _mixed()), tmp_path, fidelity=fidelity)
    text = md.read_text()
    assert "Spearman rank correlation 0.98, median absolute error 29 % over 9 candidates" in text
    assert "On toy alone the fidelity check had 1 candidate" in text
    assert read_fidelity({"spearman": math.nan}) is None
    assert read_fidelity(tmp_path / "absent.json") is None


def test_importances_need_enough_trials_and_say_so():
    facts = gather(_study("one", [_complete("cpu-local", 0.9, 0.5)]), fidelity={})
    assert all(not imp.values and "at least 2" in imp.note for imp in facts.importances)


def test_report_of_a_study_without_baseline_is_a_user_error(tmp_path):
    study = optuna.create_study(study_name="empty", directions=["maximize", "minimize"])
    with pytest.raises(UserError, match="no baseline yet"):
        write_report(study, tmp_path)


def test_report_judges_feasibility_against_the_limit_it_is_given():
    facts = gather(_study("mixed", _mixed()), limit=0.0, fidelity={})
    assert {p.trial for p in facts.points if p.feasible} == {0, 3}
    assert facts.recommendation["recommended"]["trial"] == 3
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
