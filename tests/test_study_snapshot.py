"""A study store that stays down past the retries: the search ends in one line with the frontier
of the trials finished before, and the same command continues once the store is back."""

from __future__ import annotations

import json

import optuna
import pytest
from sqlalchemy.exc import OperationalError

import autoaccel
from autoaccel import study as study_module
from autoaccel.study import RetryingRDBStorage, StoreLost

# in-process (isolation has its own tests): a search's worker start-up is seconds
FAST = {"measure_seconds": 0.03, "space": "quick", "isolate": False}


def _database_down_after(monkeypatch, trials: int) -> dict[str, bool]:
    """From the `trials`-th new trial on, every trial creation finds the connection lost (as
    psycopg says it), until `state["down"]` is set False."""
    real = RetryingRDBStorage._create_new_trial.__wrapped__
    state = {"down": True, "calls": 0}

    def create(self, *args, **kwargs):
        state["calls"] += 1
        if state["down"] and state["calls"] > trials:
            cause = Exception("server closed the connection unexpectedly")
            raise OperationalError("INSERT INTO trials", {}, cause)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(study_module, "RETRY_DELAYS_S", (0.01, 0.02))
    monkeypatch.setattr(RetryingRDBStorage, "_create_new_trial", study_module._retrying(create))
    return state


@pytest.mark.chaos  # benchmarks/chaos.py injects this fault on every run
def test_a_store_that_stays_down_ends_with_the_frontier_so_far_and_the_same_command_continues(
    tmp_path, monkeypatch
):
    runs = tmp_path / "runs"
    state = _database_down_after(monkeypatch, trials=3)
    with pytest.warns(UserWarning, match="study store connection lost"):
        with pytest.raises(StoreLost) as lost:
            autoaccel.search("seed-mlp", budget=6, runs_dir=runs, study="down", **FAST)
    message = str(lost.value)
    assert "\n" not in message and "stopped answering" in message
    assert "run the same command to continue" in message
    out = runs / "down"
    assert f"the frontier so far is in {out}" in message

    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["status"] == "FAILED"
    assert rec["trials"]["finished"] == 3  # the three finished before the store went away
    assert "this frontier is of the 3 trials finished before" in rec["stopped_by"]
    assert rec["frontier"] and (out / "report.md").exists()
    assert "stopped answering" in (out / "report.md").read_text()

    stored = optuna.load_study(study_name="down", storage=f"sqlite:///{runs / 'optuna.db'}")
    assert len(stored.trials) == 3  # nothing half-written: the fourth was never created

    state["down"] = False  # the store is back: the same command finishes the budget
    result = autoaccel.search("seed-mlp", budget=6, runs_dir=runs, study="down", **FAST)
    again = json.loads((out / "recommendation.json").read_text())
    judged = again["trials"]["finished"] - again["trials"]["repeated"]
    assert again["status"] == "FINISHED" and judged == 6  # a sampler's repeat is free
    assert result.n_trials == again["trials"]["finished"] and not result.stopped_by


def test_the_lost_connection_is_named_in_its_own_words_not_the_wrappers():
    cause = OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
    try:
        try:
            raise cause
        except OperationalError as exc:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit. This typically happens due to "
                "invalid data in the commit, e.g. exceeding max length."
            ) from exc
    except optuna.exceptions.StorageInternalError as wrapped:
        said = study_module._one_line(wrapped)
    assert "server closed the connection unexpectedly" in said
    assert "invalid data" not in said
