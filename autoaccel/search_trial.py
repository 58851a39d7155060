"""One trial of the search loop (`autoaccel.search_run.Search`): a recipe from the sampler,
then the cheapest honest way to its outcome. A recipe seen before is not built again (its
figures are reused, or it stops early again); one that shares with an infeasible trial the
settings that decided it fails at once (`autoaccel.infeasible_memo`); anything else is built,
judged and measured, and whatever happens is recorded with its reason. One trial never ends
the search, except when the user interrupts it or the disk or the worker cannot go on.
"""

from __future__ import annotations

import traceback
from typing import Any

from autoaccel.early_stop import TrainingStopped
from autoaccel.errors import InfeasibleRecipe, UserError, describe
from autoaccel.isolation import IsolatedEvaluator
from autoaccel.stores import disk_message, disk_problem
from autoaccel.study import StoreUnavailable
from autoaccel.time_limits import built_durations, trial_limit
from autoaccel.trial_record import TrialEvent


def run_trial(search: Any, trial: Any, baseline: dict[str, Any], done: int) -> None:
    """Run `trial` (an Optuna trial asked by `search`), the `done + 1`-th of the budget."""
    from autoaccel.space import suggest_recipe
    from autoaccel.study import finished_count
    from autoaccel.trial_record import same_recipe

    rec, budget, study = search.recorder, search.cfg.budget, search.study

    def event(status: str, count: int | None = None, **figures: Any) -> None:
        failed = int(status not in ("complete", "repeated"))
        done_now = done + 1 if count is None else count
        search.emit("trial", TrialEvent(trial.number, done_now, budget, failed, status, **figures))

    recipe = suggest_recipe(trial, search.space, search.workload)
    trial.set_user_attr("recipe", recipe)
    if (earlier := same_recipe(study, recipe)) is not None:  # free of the budget, up to it
        if earlier.state.name == "PRUNED":  # stopped early before: it would be again
            rec.stopped_again(trial, recipe, earlier)
            speedup, feasible = None, False
        else:
            speedup, feasible = rec.reuse(trial, recipe, earlier, baseline)
        count = finished_count(study, budget)
        event("repeated", count, speedup=speedup, feasible=feasible)
        return
    if known := _known_infeasible(study, recipe):  # not built (nor trained) again
        source, reason = known
        trial.set_user_attr("infeasible_as", source.number)
        kind = source.user_attrs["infeasible_kind"]
        rec.fail(trial, recipe, reason, infeasible=True, kind=kind)
        event("infeasible", reason=reason)
        return
    if isinstance(search.evaluator, IsolatedEvaluator):  # no runaway trial
        search.evaluator.limit = trial_limit(built_durations(study), search.cfg.trial_timeout)
    try:
        out = search.evaluator.run(recipe, _rule(search, baseline, recipe))
    except KeyboardInterrupt:
        rec.fail(trial, recipe, "interrupted by the user (Ctrl-C)")
        raise
    except UserError as exc:  # not this candidate's fault (the worker cannot start)
        rec.fail(trial, recipe, str(exc))
        raise
    except TrainingStopped as stop:
        rec.stopped(trial, recipe, stop, baseline["accuracy"])
        event("stopped")
        return
    except Exception as exc:  # record why and go on: one trial never ends the search
        if disk_problem(exc) in ("full", "read-only"):  # not the candidate's fault: stop
            raise StoreUnavailable(disk_message(exc, search.paths.root)) from None
        reason = describe(exc)
        if isinstance(exc, InfeasibleRecipe):  # a known, named reason: PRUNED
            rec.fail(trial, recipe, reason, infeasible=True, kind=exc.kind)
        else:  # anything else is a failure: FAIL, with its traceback (the isolated
            # worker's arrives as text, CandidateFailed.trace)
            trace = getattr(exc, "trace", None) or traceback.format_exc()
            rec.fail(trial, recipe, reason, trace)
        event("infeasible" if isinstance(exc, InfeasibleRecipe) else "failed", reason=reason)
        return
    speedup, feasible = rec.complete(trial, recipe, out, baseline, search.workload.metric)
    event("complete", speedup=speedup, feasible=feasible)


def _known_infeasible(study: Any, recipe: dict[str, Any]) -> tuple[Any, str] | None:
    from optuna.trial import TrialState

    from autoaccel.infeasible_memo import known_infeasible

    return known_infeasible(study.get_trials(False, states=(TrialState.PRUNED,)), recipe)


def _rule(search: Any, baseline: dict[str, Any], recipe: dict[str, Any]):
    """The early-stopping rule for this trial's training, primed with the study's
    completed and stopped trials (the evaluator applies it where there is training data)."""
    from optuna.trial import TrialState

    from autoaccel.early_stop import rule_for
    from autoaccel.frontier import objective_of

    states = (TrialState.COMPLETE, TrialState.PRUNED)
    done = search.study.get_trials(deepcopy=False, states=states)
    drop = search.cfg.max_accuracy_drop
    return rule_for(done, recipe, baseline["accuracy"] - drop, drop, objective_of(baseline))
