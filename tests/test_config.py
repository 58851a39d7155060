"""The accuracy limit a person means: a percentage typed where the metric's own units belong
is refused with a hint, from the command line (tests/test_bad_input.py) and the Python API."""

from __future__ import annotations

import pytest

import autoaccel
from autoaccel.config import check_accuracy_drop
from autoaccel.errors import UserError

ACCURACY = ("accuracy", (0.0, 1.0))
SPEARMAN = ("task_quality", (-1.0, 1.0))


@pytest.mark.parametrize(
    ("drop", "metric", "says"),
    [
        (1, ACCURACY, "allows any model; for 1 point use --max-accuracy-drop 0.01"),
        (0.5, ACCURACY, "allows 50% of that range; for 0.5 points use --max-accuracy-drop 0.005"),
        (2, SPEARMAN, "lies in [-1, 1], so a drop of 2 allows any model"),
        (1, SPEARMAN, "allows 50% of that range; for 1 point use --max-accuracy-drop 0.01"),
        (1, ("confidence", None), "the workload declares no range for confidence"),
    ],
)
def test_limit_of_half_the_metrics_range_or_more_is_refused_with_a_hint(drop, metric, says):
    name, bounds = metric
    with pytest.raises(UserError) as raised:
        check_accuracy_drop(drop, name, bounds)
    message = str(raised.value)
    assert message.startswith(f"--max-accuracy-drop {drop:g}: ") and "\n" not in message
    assert says in message


@pytest.mark.parametrize(
    ("drop", "metric"),
    [(0.0, ACCURACY), (0.01, ACCURACY), (0.2, ACCURACY), (0.5, SPEARMAN), (0.9, ("x", None))],
)
def test_plausible_limits_pass(drop, metric):
    check_accuracy_drop(drop, *metric)


def test_minilm_metrics_declare_their_ranges():
    from autoaccel.workloads.minilm import MiniLMWorkload

    offered = {MiniLMWorkload.metric, *MiniLMWorkload.metrics}
    assert set(MiniLMWorkload.metric_ranges) == offered


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"max_accuracy_drop": 1}, "the metric accuracy lies in [0, 1]"),
        ({"max_accuracy_drop": 5}, "for 5 points use --max-accuracy-drop 0.05"),
        ({"max_accuracy_drop": float("nan")}, "finite number"),
        ({"max_accuracy_drop": -0.01}, "greater than or equal to 0"),
        ({"seed": -1}, "--seed -1"),
    ],
)
def test_api_refuses_an_implausible_limit_before_writing_anything(tmp_path, options, says):
    runs = tmp_path / "runs"
    with pytest.raises(UserError) as raised:
        autoaccel.search("seed-mlp", budget=1, runs_dir=runs, **options)
    assert says in str(raised.value)
    assert not runs.exists()
