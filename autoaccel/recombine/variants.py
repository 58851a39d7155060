"""Recipes one setting away from what a study found: a build setting of a recipe within the
limit, or a model setting of one of its cheapest models (a student the sampler never trained).
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState

from autoaccel.early_stop import TRAINING_STEPS
from autoaccel.frontier import points
from autoaccel.recombine.halves import (
    Cost,
    Tried,
    cached,
    complete_trials,
    fit,
    halves,
    is_model_key,
    key_of,
    ranked_halves,
)
from autoaccel.techniques import REGISTRY

MODELS = 3  # the cheapest model halves a smaller one is derived from
MAX_RATIO = 0.95
"""A new model is trained only where its work per query is at least 5 % below its base's."""
NEAR = 2.0  # a model within this factor of another's work is of its size


def variants(study: optuna.Study, baseline: dict[str, Any], count: int) -> list[dict]:
    """Up to `count` one-setting changes of the study's feasible recipes, those the fit expects
    fastest first: what re-pairing adds when there is little to cross (one feasible model
    half, as when the limit keeps the outputs close to the original's).

    Every feasible recipe is a base, not only the fastest: a slower one may hold the setting
    that makes the difference next to one that holds it back (int8 with two streams), and
    one change fixes it. A variant's expected latency is its base's times the fit's change for
    the new setting; a setting value that broke the limit on every trial of the same model is
    not proposed."""
    found = points(study, baseline)
    feasible = {p.trial: p for p in found if p.feasible and p.measured}
    if not feasible:
        return []
    complete = complete_trials(study)
    settings = fit(complete).settings
    breaks = _breaks_limit(complete, {p.trial for p in found if p.feasible})
    tried = Tried(study)
    space = distributions(complete)
    bases: dict[tuple, optuna.trial.FrozenTrial] = {}
    for t in sorted(complete, key=lambda t: t.number):
        if t.number in feasible:
            key = key_of(t.user_attrs.get("recipe", t.params))
            if (
                key not in bases
                or feasible[t.number].objective_ms < feasible[bases[key].number].objective_ms
            ):
                bases[key] = t
    out: dict[tuple, dict] = {}
    for base in bases.values():
        recipe = base.user_attrs.get("recipe", base.params)
        model = key_of(halves(base, model=True)[1])
        for key, value in base.params.items():
            if is_model_key(key):
                continue
            for other in _choices(base.distributions.get(key), value):
                if (model, key, other) in breaks:
                    continue
                gain = settings.get((key, other), 0.0) - settings.get((key, value), 0.0)
                params = active({**base.params, key: other}, space)
                changed = active({**recipe, key: other}, space)
                if tried.new(params, changed):
                    expected = feasible[base.number].objective_ms * math.exp(gain)
                    _keep_cheaper(
                        out, params, changed, expected, variant_of=base.number, changed=key
                    )
    return _first(out, count)


def smaller_models(
    study: optuna.Study,
    baseline: dict[str, Any],
    count: int,
    cost: Cost,
) -> list[dict]:
    """Up to `count` models one setting away from the study's cheapest models within the
    limit that `cost` (a model half -> its work per query, untrained: `builder.model_cost`)
    puts at least 5 % cheaper still (a narrower or shallower student, more heads pruned), the
    cheapest expected first. Each is built like the fastest trial within the limit of a
    model of about its work (`_fastest_near`; its base's fastest trial where none is): the
    build that runs that size of model fastest here (which build wins depends on the model:
    int8 pays on a large one, not on a small one), so they are best proposed once the
    crosses ran.

    A sampler sees a model half as a handful of unrelated categorical choices and spends most
    of its budget where quality is safe; the step from the smallest model that kept quality to
    the next smaller one is the one it rarely takes, and the one that pays most. A value that
    broke the limit on every trial that had it (one layer, say; `_values_never_within`) is
    not proposed: that is not a step worth training for, nor a model the study has already
    trained (that is a cross; a model whose only trials found their build infeasible was
    never judged). Each costs a training run, so few are proposed, and each trains as long
    as the space allows
    (`_longest_training`): it was chosen for having less capacity than a model that only just
    kept quality, so it needs all the recovery it can get (MiniLM on an AVX2 EPYC: a
    half-heads student fell 0.006 short of the limit untuned and ended 0.010 inside it after
    300 fine-tune steps, 1.44x faster than the pick)."""
    if count <= 0:
        return []
    cost = cached(cost)
    models, _ = ranked_halves(study, baseline, cost)
    complete = complete_trials(study)
    slope = fit(complete, cost).per_log_work or 1.0
    found = points(study, baseline)
    ms = {p.trial: p.objective_ms for p in found if p.feasible and p.measured}
    judged = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    breaks = _values_never_within(judged, {p.trial for p in found if p.feasible})
    tried = Tried(study)
    space = distributions(complete)
    trained = _judged_models(study)
    out: dict[tuple, dict] = {}
    for model in models[:MODELS]:
        source = study.trials[model.trial]
        own_build = halves(source, model=False)[1]
        for key, value in model.params.items():
            if not is_model_key(key):
                continue
            own = cost(model.recipe)
            for other in _choices(source.distributions.get(key), value):
                half = active({**model.recipe, key: other, **own_build}, space)
                half = {k: v for k, v in half.items() if is_model_key(k)}
                if (set(half.items()) - set(model.recipe.items())) & breaks:
                    continue
                longest = _longest_training(half, key, space, breaks)
                half = {**half, **longest}
                if key_of(half) in trained:
                    continue
                ratio = cost(half) / own
                if ratio > MAX_RATIO:
                    continue
                built = _fastest_near(study, ms, cost(half), cost) or source
                build_params, build = halves(built, model=False)
                smaller = {**active({**half, **build}, space), **longest}
                params = {**active({**model.params, key: other, **build_params}, space), **longest}
                if tried.new(params, smaller):
                    expected = ms[model.trial] * ratio**slope
                    why = dict(smaller_than=model.trial, changed=key, build_trial=built.number)
                    why |= dict(cost_ratio=ratio, longer=longest)
                    _keep_cheaper(out, params, smaller, expected, **why)
    return _first(out, count)


def _fastest_near(
    study: optuna.Study, ms: dict[int, float], work: float, cost: Cost
) -> optuna.trial.FrozenTrial | None:
    """The fastest trial within the limit whose model does within `NEAR` of `work`: its
    build is the one that runs a model of that size fastest here. A base's own fastest
    build is no such guide where the sampler ran the base on little else (a student timed
    only in eager torch would hand its smaller model eager torch)."""
    for number in sorted(ms, key=lambda n: (ms[n], n)):
        trial = study.trials[number]
        if work / NEAR <= cost(halves(trial, model=True)[1]) <= work * NEAR:
            return trial
    return None


def _judged_models(study: optuna.Study) -> set[tuple]:
    """Model halves the study has trained and judged, or will (enqueued, running): every
    trial's but those that only found their build infeasible (a calibration that collected
    nothing, say), which say nothing of the model."""
    pruned = optuna.trial.TrialState.PRUNED
    return {
        _model_key(t)
        for t in study.get_trials(deepcopy=False)
        if not (t.state == pruned and t.user_attrs.get("infeasible_kind"))
    }


def _longest_training(
    model: dict[str, Any], changed: str, space: dict[str, Any], breaks: set
) -> dict[str, Any]:
    """The training steps a smaller model gets: the most the study's space allows, for the
    stage that `changed` and every stage trained after it (a student's distillation and its
    pruned fine-tune; a pruning change keeps its cached student as it was). A step count
    that never ended within the limit is not chosen."""
    stages = [t.name for t in REGISTRY.values() if is_model_key(f"{t.name}.")]  # build order
    later = stages[stages.index(changed.split(".", 1)[0]) :]
    out = {}
    for key, stage in TRAINING_STEPS.items():
        if key in model and stage in later and key in space:
            most = _most(space[key])
            if most is not None and most > model[key] and (key, most) not in breaks:
                out[key] = most
    return out


def _most(dist: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        numbers = [c for c in dist.choices if isinstance(c, int | float)]
        return max(numbers) if numbers else None
    return getattr(dist, "high", None)


def _model_key(trial: optuna.trial.FrozenTrial) -> tuple:
    """A trial's model half, an enqueued one's too (its fixed params until it is asked)."""
    recipe = trial.user_attrs.get("recipe") or trial.system_attrs.get("fixed_params", {})
    return key_of({k: v for k, v in {**trial.params, **recipe}.items() if is_model_key(k)})


def _keep_cheaper(
    out: dict[tuple, dict], params: dict, recipe: dict, expected: float, **why: Any
) -> None:
    """Keep a proposal for `recipe` unless one already kept is expected faster."""
    seen = out.get(key_of(recipe))
    if seen is None or expected < seen["expected_ms"]:
        out[key_of(recipe)] = dict(params=params, recipe=recipe, expected_ms=expected, **why)


def _first(found: dict[tuple, dict], count: int) -> list[dict]:
    order = sorted(
        found.values(),
        key=lambda v: (
            v["expected_ms"],
            v.get("variant_of", v.get("smaller_than")),
            v["changed"],
            str(v["recipe"][v["changed"]]),
        ),
    )
    return order[:count]


def _choices(dist: optuna.distributions.BaseDistribution | None, value: Any) -> list:
    if not isinstance(dist, optuna.distributions.CategoricalDistribution):
        return []
    return [c for c in dist.choices if c != value]


def distributions(trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    """The study's search space as it was sampled: each parameter's distribution."""
    return {k: d for t in trials for k, d in t.distributions.items()}


def active(recipe: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """`recipe` after one setting changed: without the parameters that change switched off
    (ov_precision once the backend is onnxruntime) and with the study's parameters it
    switched on, so it compares equal to a trial that ran the same build. A parameter
    switched on takes its default where the study's space holds it, else the space's first
    choice (distill.steps searched over 150 and 400 is never the default 600)."""
    out = dict(recipe)
    for tech in REGISTRY.values():
        for param in tech.params(None):
            key = f"{tech.name}.{param.name}"
            on = tech.is_active(out) and param.is_active(out)
            if key in out and not on:
                del out[key]
            elif key not in out and on and key in space:
                out[key] = _within(param.default, space[key])
    return out


def _within(default: Any, dist: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return default if default in dist.choices else dist.choices[0]
    low, high = getattr(dist, "low", default), getattr(dist, "high", default)
    return min(max(default, low), high)


def _breaks_limit(trials: list[optuna.trial.FrozenTrial], feasible: set[int]) -> set[tuple]:
    """(model half, build key, value) where every completed trial of that model with that
    build setting fell outside the limit: changing to it would break quality again."""
    outcome: dict[tuple, bool] = {}
    for t in trials:
        if "duplicate_of" in t.user_attrs or not t.user_attrs.get("result"):
            continue
        model = key_of(halves(t, model=True)[1])
        for key, value in halves(t, model=False)[1].items():
            k = (model, key, value)
            outcome[k] = outcome.get(k, False) or t.number in feasible
    return {k for k, ok in outcome.items() if not ok}


def _values_never_within(trials: list[optuna.trial.FrozenTrial], feasible: set[int]) -> set:
    """(model key, value) that every trial holding it had outside the limit: completed, or
    stopped in training because it could not reach the limit (its projected accuracy drop
    is over it). A seed-1 MiniLM study stopped every 1-layer student early; counting only
    completed trials, its first smaller-model round spent all three trainings on 1 layer."""
    outcome: dict[tuple, bool] = {}
    for t in trials:
        if "duplicate_of" in t.user_attrs:
            continue
        if t.user_attrs.get("result"):
            within = t.number in feasible
        elif t.user_attrs.get("early_stopped") and t.constraints.get("accuracy_drop", 0) > 0:
            within = False
        else:
            continue
        for item in halves(t, model=True)[1].items():
            outcome[item] = outcome.get(item, False) or within
    return {k for k, ok in outcome.items() if not ok}
