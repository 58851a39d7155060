"""Near a study's end, re-pair its fastest trained models with the build settings that ran
fastest here.

A recipe has two halves that a sampler learns about separately: the model (the torch-stage
techniques: distillation, pruning; trained, and cached once trained) and how it is built and
run (graph passes, quantization, runtime settings; cheap). TPE rarely lands on the best of
both at once: on MiniLM a 100-trial study trained a 2-layer student and measured OpenVINO bf16
as the most efficient runtime, but never put the two together (`benchmarks/results/
recipes-minilm-search-students-on-openvino-bf16.md`: 10.6x eager against the study's 6.9x).
So the last trials of a budget are enqueued as crosses of the two: each costs a build and a
measurement, not a training run.

How each half is ranked, from the study's own completed trials:
- models: the feasible trials' fastest measured objective per distinct model half;
- builds: their effect on measured latency with each model's own cost divided out
  (`build_effects`), so a build that ran a large model 2x faster than another build did
  ranks above one that only ever ran a small model. (The cost model's estimate of each graph
  is no such yardstick: it rates fp16-weight graphs cheaper than OpenVINO runs them, and
  would rank the slower of two builds of one model first.) Only builds that ran a feasible
  trial count: a quantization that broke quality is not re-paired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from autoaccel.frontier import points
from autoaccel.techniques import REGISTRY, Stage

MODELS = 3  # distinct model halves re-paired
BUILDS = 3  # distinct build halves each is re-paired with
MIN_BUDGET = 20  # below this a study has too few trials to rank either half
TIME_SHARE = 0.15  # with --time-budget: re-pair once this share of it is left
USER_ATTR = "recombined"  # on an enqueued trial: the two trials whose halves it joins


def auto_count(budget: int) -> int:
    """Trials reserved for re-pairing by default: a tenth of the budget, at most every cross."""
    return 0 if budget < MIN_BUDGET else min(MODELS * BUILDS, budget // 10)


def is_model_key(key: str) -> bool:
    """Whether a recipe key belongs to the model half (a torch-stage technique's)."""
    tech = REGISTRY.get(key.split(".", 1)[0])
    return tech is not None and tech.stage == Stage.TORCH


@dataclass(frozen=True)
class Half:
    trial: int
    params: dict[str, Any]  # the Optuna params of this half (what is enqueued)
    recipe: dict[str, Any]  # the recipe keys of this half (what the trial will build)
    score: float  # models: objective ms; builds: effect on log latency (lower first)


def _halves(trial: optuna.trial.FrozenTrial, model: bool) -> tuple[dict, dict]:
    recipe = trial.user_attrs.get("recipe", trial.params)
    pick = {k: v for k, v in recipe.items() if is_model_key(k) == model}
    params = {k: v for k, v in trial.params.items() if is_model_key(k) == model}
    return params, pick


RIDGE = {"model": 0.01, "build": 1.0, "setting": 0.3}
"""How far each kind of effect is shrunk toward "no effect" (log-latency units): a model's
own cost is well determined by its trials; a build seen once is mostly explained by its
settings, each shared by many trials."""


def _key(recipe: dict[str, Any]) -> tuple:
    return tuple(sorted(recipe.items(), key=lambda kv: kv[0]))


def build_effects(trials: list[optuna.trial.FrozenTrial]) -> dict[tuple, float]:
    """Each build half's effect on log latency with the model's own cost divided out
    (`fit_effects`, builds only)."""
    return fit_effects(trials)[0]


def fit_effects(trials: list[optuna.trial.FrozenTrial]) -> tuple[dict[tuple, float], dict]:
    """(each build half's effect, each build setting's effect) on log latency, with the
    model's own cost divided out.

    A ridge fit over every completed trial: log objective = model term + the build's own term
    + one term per build setting (backend=openvino, quantize.mode=fp16, ...). A build's effect
    is its own term plus its settings' terms, so a build measured once, on one model, is
    judged also by what its settings did on every other model; lower is faster.
    """
    rows = []
    for t in trials:
        result = t.user_attrs.get("result") or {}
        if not result.get("objective_ms") or "duplicate_of" in t.user_attrs:
            continue
        recipe = t.user_attrs.get("recipe", t.params)
        model = {k: v for k, v in recipe.items() if is_model_key(k)}
        build = {k: v for k, v in recipe.items() if not is_model_key(k)}
        features = [("model", _key(model)), ("build", _key(build))]
        features += [("setting", item) for item in build.items()]
        rows.append((features, math.log(result["objective_ms"]), _key(build)))
    if not rows:
        return {}, {}
    columns = {f: n for n, f in enumerate(dict.fromkeys(f for r in rows for f in r[0]))}
    x = np.zeros((len(rows), len(columns)))
    for n, (features, _, _) in enumerate(rows):
        x[n, [columns[f] for f in features]] = 1.0
    y = np.array([r[1] for r in rows])
    penalty = np.diag([RIDGE[f[0]] for f in columns])
    w = np.linalg.solve(x.T @ x + penalty, x.T @ (y - y.mean()))
    out = {}
    for features, _, build in rows:
        out[build] = float(sum(w[columns[f]] for f in features if f[0] != "model"))
    settings = {f[1]: float(w[n]) for f, n in columns.items() if f[0] == "setting"}
    return out, settings


def ranked_halves(study: optuna.Study, baseline: dict[str, Any]) -> tuple[list, list]:
    """(model halves fastest first, build halves fastest first), distinct: models from the
    study's feasible measured trials, builds by `build_effects` among those that ran a
    feasible trial (a quantization that broke quality is not re-paired)."""
    feasible = {p.trial: p for p in points(study, baseline) if p.feasible and p.measured}
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    effects = build_effects(complete)
    models: dict[tuple, Half] = {}
    builds: dict[tuple, Half] = {}
    for t in complete:
        if t.number not in feasible:
            continue
        params, recipe = _halves(t, model=True)
        score = feasible[t.number].objective_ms
        if (key := _key(recipe)) not in models or score < models[key].score:
            models[key] = Half(t.number, params, recipe, score)
        params, recipe = _halves(t, model=False)
        if (key := _key(recipe)) in effects and key not in builds:
            builds[key] = Half(t.number, params, recipe, effects[key])
    by_speed = sorted(models.values(), key=lambda h: (h.score, h.trial))
    by_effect = sorted(builds.values(), key=lambda h: (h.score, h.trial))
    return by_speed, by_effect


class _Tried:
    """What the study has already run, waits to run, or knows is infeasible: never proposed."""

    def __init__(self, study: optuna.Study) -> None:
        everything = study.get_trials(deepcopy=False)
        waiting = optuna.trial.TrialState.WAITING
        self.recipes = [t.user_attrs.get("recipe") for t in everything]
        # an enqueued trial's params are its fixed params until it is asked
        self.params = [
            t.system_attrs.get("fixed_params", t.params) if t.state == waiting else t.params
            for t in everything
        ]
        self.pruned = [t for t in everything if t.state == optuna.trial.TrialState.PRUNED]

    def new(self, params: dict[str, Any], recipe: dict[str, Any]) -> bool:
        from autoaccel.infeasible_memo import known_infeasible

        return not (
            recipe in self.recipes
            or params in self.params
            or known_infeasible(self.pruned, recipe)
        )


def proposals(study: optuna.Study, baseline: dict[str, Any], count: int) -> list[dict]:
    """Up to `count` crosses not tried yet (nor known to be infeasible), the best-ranked pairs
    first: each {"params", "recipe", "model_trial", "build_trial"}."""
    models, builds = ranked_halves(study, baseline)
    tried = _Tried(study)
    pairs = [
        (i, j) for i in range(min(MODELS, len(models))) for j in range(min(BUILDS, len(builds)))
    ]
    out: list[dict] = []
    for i, j in sorted(pairs, key=lambda ij: (ij[0] + ij[1], ij)):
        model, build = models[i], builds[j]
        if model.trial == build.trial:
            continue  # that trial itself
        recipe = {**model.recipe, **build.recipe}
        params = {**model.params, **build.params}
        if tried.new(params, recipe):
            out.append(
                dict(
                    params=params, recipe=recipe, model_trial=model.trial, build_trial=build.trial
                )
            )
        if len(out) == count:
            break
    return out


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
    everything = study.get_trials(deepcopy=False)
    complete = [t for t in everything if t.state == optuna.trial.TrialState.COMPLETE]
    settings = fit_effects(complete)[1]
    breaks = _breaks_limit(complete, {p.trial for p in found if p.feasible})
    tried = _Tried(study)
    space = {k for t in complete for k in t.distributions}
    bases: dict[tuple, optuna.trial.FrozenTrial] = {}
    for t in sorted(complete, key=lambda t: t.number):
        if t.number in feasible:
            key = _key(t.user_attrs.get("recipe", t.params))
            if (
                key not in bases
                or feasible[t.number].objective_ms < feasible[bases[key].number].objective_ms
            ):
                bases[key] = t
    out: dict[tuple, dict] = {}
    for base in bases.values():
        recipe = base.user_attrs.get("recipe", base.params)
        model = _key(_halves(base, model=True)[1])
        for key, value in base.params.items():
            dist = base.distributions.get(key)
            if is_model_key(key) or not isinstance(
                dist, optuna.distributions.CategoricalDistribution
            ):
                continue
            for other in dist.choices:
                if other == value or (model, key, other) in breaks:
                    continue
                gain = settings.get((key, other), 0.0) - settings.get((key, value), 0.0)
                params = _active({**base.params, key: other}, space)
                changed = _active({**recipe, key: other}, space)
                expected = feasible[base.number].objective_ms * math.exp(gain)
                seen = out.get(_key(changed))
                if tried.new(params, changed) and (seen is None or expected < seen["expected_ms"]):
                    out[_key(changed)] = dict(
                        params=params,
                        recipe=changed,
                        variant_of=base.number,
                        changed=key,
                        expected_ms=expected,
                    )
    order = sorted(
        out.values(),
        key=lambda v: (
            v["expected_ms"],
            v["variant_of"],
            v["changed"],
            str(v["recipe"][v["changed"]]),
        ),
    )
    return order[:count]


def _active(recipe: dict[str, Any], space: set[str]) -> dict[str, Any]:
    """`recipe` after one setting changed: without the parameters that change switched off
    (ov_precision once the backend is onnxruntime) and with the study's parameters it
    switched on at their defaults, so it compares equal to a trial that ran the same build."""
    out = dict(recipe)
    for tech in REGISTRY.values():
        for param in tech.params(None):
            key = f"{tech.name}.{param.name}"
            active = tech.is_active(out) and param.is_active(out)
            if key in out and not active:
                del out[key]
            elif key not in out and active and key in space:
                out[key] = param.default
    return out


def _breaks_limit(trials: list[optuna.trial.FrozenTrial], feasible: set[int]) -> set[tuple]:
    """(model half, build key, value) where every completed trial of that model with that
    build setting fell outside the limit: changing to it would break quality again."""
    outcome: dict[tuple, bool] = {}
    for t in trials:
        if "duplicate_of" in t.user_attrs or not t.user_attrs.get("result"):
            continue
        model = _key(_halves(t, model=True)[1])
        for key, value in _halves(t, model=False)[1].items():
            k = (model, key, value)
            outcome[k] = outcome.get(k, False) or t.number in feasible
    return {k for k, ok in outcome.items() if not ok}


def enqueue(study: optuna.Study, baseline: dict[str, Any], count: int) -> list[dict]:
    """Enqueue the crosses, then one-setting variants where the crosses are fewer than
    `count` (the next `study.ask()` of any worker takes them first); returns what was
    enqueued."""
    chosen = proposals(study, baseline, count)
    if len(chosen) < count:  # little to cross: one-setting changes of the best build
        chosen += variants(study, baseline, count - len(chosen))
    for p in chosen:
        if "variant_of" in p:
            attrs = {"variant_of": p["variant_of"], "changed": p["changed"]}
        else:
            attrs = {"model": p["model_trial"], "build": p["build_trial"]}
        study.enqueue_trial(p["params"], user_attrs={USER_ATTR: attrs}, skip_if_exists=True)
    return chosen


class Recombination:
    """When to re-pair, once per invocation: when the trials left are no more than those
    reserved, or (with a time budget) when its last `TIME_SHARE` begins."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.done = count <= 0

    def due(
        self, finished: int, budget: int, elapsed_s: float, time_budget_s: float | None
    ) -> bool:
        if self.done:
            return False
        late = time_budget_s is not None and elapsed_s >= (1 - TIME_SHARE) * time_budget_s
        return budget - finished <= self.count or late
