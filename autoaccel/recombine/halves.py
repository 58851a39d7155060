"""The two halves of a recipe, and what each costs: a ridge fit over a study's trials.

A recipe has a model half (the torch-stage techniques: distillation, pruning; trained, and
cached once trained) and a build half (graph passes, quantization, runtime settings; cheap).
A trial's latency is the product of both, so neither half can be ranked by the latencies it
ran: a small model on a slow build looks as slow as a large model on a fast one. `fit`
divides each out of the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from autoaccel.frontier import points
from autoaccel.techniques import REGISTRY, Stage

RIDGE = {"model": 0.01, "build": 1.0, "setting": 0.3, "work": 1e-6}
"""How far each kind of effect is shrunk toward "no effect" (log-latency units): a model's
own cost is well determined by its trials; a build seen once is mostly explained by its
settings, each shared by many trials. With each model's work known (`Cost`), the work term
carries the models' costs and each model's own term is only what its work does not explain,
shrunk like a build's (`RESIDUAL`)."""
RESIDUAL = 1.0

Cost = Callable[[dict[str, Any]], float]
"""A model half -> its work per query (FLOPs of its untrained structure: `builder.model_cost`)."""


def is_model_key(key: str) -> bool:
    """Whether a recipe key belongs to the model half (a torch-stage technique's)."""
    tech = REGISTRY.get(key.split(".", 1)[0])
    return tech is not None and tech.stage == Stage.TORCH


@dataclass(frozen=True)
class Half:
    trial: int
    params: dict[str, Any]  # the Optuna params of this half (what is enqueued)
    recipe: dict[str, Any]  # the recipe keys of this half (what the trial will build)
    score: float  # its fitted effect on log latency (lower is faster)


@dataclass(frozen=True)
class Effects:
    """Effects on log latency (lower is faster), from `fit`."""

    builds: dict[tuple, float]  # build half -> its own term plus its settings' terms
    settings: dict[tuple, float]  # (build key, value) -> its term
    models: dict[tuple, float]  # model architecture (`architecture`) -> its cost
    per_log_work: float | None = None  # d log latency / d log work, where the work is known


def halves(trial: optuna.trial.FrozenTrial, model: bool) -> tuple[dict, dict]:
    """(Optuna params, recipe keys) of one half of a trial's recipe."""
    recipe = trial.user_attrs.get("recipe", trial.params)
    pick = {k: v for k, v in recipe.items() if is_model_key(k) == model}
    params = {k: v for k, v in trial.params.items() if is_model_key(k) == model}
    return params, pick


def key_of(recipe: dict[str, Any]) -> tuple:
    return tuple(sorted(recipe.items(), key=lambda kv: kv[0]))


def _ridge(x: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    return np.linalg.solve(x.T @ x + penalty, x.T @ (y - y.mean()))


def _one_hot(rows: list[list[tuple]]) -> tuple[dict[tuple, int], np.ndarray]:
    columns = {f: n for n, f in enumerate(dict.fromkeys(f for r in rows for f in r))}
    x = np.zeros((len(rows), len(columns)))
    for n, features in enumerate(rows):
        x[n, [columns[f] for f in features]] = 1.0
    return columns, x


def architecture(model: dict[str, Any]) -> tuple:
    """A model half without its training settings: what decides its cost (two students that
    differ only in training steps run alike)."""
    from autoaccel.early_stop import TRAINING_ONLY

    return key_of({k: v for k, v in model.items() if k not in TRAINING_ONLY})


def cached(cost: Cost) -> Cost:
    """`cost` taken once per architecture (each call builds a model)."""
    seen: dict[tuple, float] = {}

    def once(model: dict[str, Any]) -> float:
        if (arch := architecture(model)) not in seen:
            seen[arch] = cost(dict(arch))
        return seen[arch]

    return once


def fit(trials: list[optuna.trial.FrozenTrial], cost: Cost | None = None) -> Effects:
    """Each half's effect on log latency, the other half divided out.

    A ridge fit over every completed trial: log objective = the model architecture's term +
    the build's own term + one term per build setting (backend=openvino, quantize.mode=fp16,
    ...). A build's effect is its own term plus its settings' terms, so a build measured once,
    on one model, is judged also by what its settings did on every other model. With `cost`,
    a model's term is its log work times a slope fitted across all models, plus what that
    leaves: a model that ran once, on an odd build, is ranked by the work it does, not by
    what the fit could not pin on that build.
    """
    rows, y, halves_of = [], [], []
    for t in trials:
        result = t.user_attrs.get("result") or {}
        if not result.get("objective_ms") or "duplicate_of" in t.user_attrs:
            continue
        recipe = t.user_attrs.get("recipe", t.params)
        model = architecture({k: v for k, v in recipe.items() if is_model_key(k)})
        build = key_of({k: v for k, v in recipe.items() if not is_model_key(k)})
        features = [("model", model), ("build", build)]
        rows.append(features + [("setting", item) for item in build])
        y.append(math.log(result["objective_ms"]))
        halves_of.append((model, build))
    if not rows:
        return Effects({}, {}, {})
    columns, x = _one_hot(rows)
    penalty = [RIDGE[f[0]] if cost is None or f[0] != "model" else RESIDUAL for f in columns]
    work: dict[tuple, float] = {}
    if cost is not None:
        work = {m: math.log(cost(dict(m))) for m in dict.fromkeys(m for m, _ in halves_of)}
        mean_work = float(np.mean(list(work.values())))
        column = np.array([[work[m] - mean_work] for m, _ in halves_of])
        x, penalty = np.hstack([x, column]), [*penalty, RIDGE["work"]]
    w = _ridge(x, np.array(y), np.diag(penalty))
    builds = {
        build: float(w[columns[("build", build)]] + sum(w[columns[("setting", i)]] for i in build))
        for _, build in halves_of
    }
    models = {model: float(w[columns[("model", model)]]) for model, _ in halves_of}
    settings = {f[1]: float(w[n]) for f, n in columns.items() if f[0] == "setting"}
    if cost is None:
        return Effects(builds, settings, models)
    slope = float(w[-1])
    for model in models:
        models[model] += slope * (work[model] - mean_work)
    return Effects(builds, settings, models, slope)


def build_effects(trials: list[optuna.trial.FrozenTrial]) -> dict[tuple, float]:
    """Each build half's effect on log latency with the model's own cost divided out."""
    return fit(trials).builds


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def ranked_halves(
    study: optuna.Study, baseline: dict[str, Any], cost: Cost | None = None
) -> tuple[list, list]:
    """(model halves, build halves), distinct, cheapest first by `fit`: only halves of trials
    within the limit (a model that broke quality, or a quantization that did, is not
    re-paired); a model is ranked by its own cost, not by the fastest build it happened to
    run on."""
    feasible = {p.trial: p for p in points(study, baseline) if p.feasible and p.measured}
    complete = complete_trials(study)
    effects = fit(complete, cost)
    models: dict[tuple, Half] = {}
    builds: dict[tuple, Half] = {}
    for t in sorted(
        complete,
        key=lambda t: (
            (feasible[t.number].objective_ms, t.number)
            if t.number in feasible
            else (math.inf, t.number)
        ),
    ):
        if t.number not in feasible:
            continue
        params, recipe = halves(t, model=True)
        if (key := key_of(recipe)) not in models:  # each by its fastest trial
            models[key] = Half(t.number, params, recipe, effects.models[architecture(recipe)])
        params, recipe = halves(t, model=False)
        if (key := key_of(recipe)) in effects.builds and key not in builds:
            builds[key] = Half(t.number, params, recipe, effects.builds[key])
    by_cost = sorted(models.values(), key=lambda h: (h.score, h.trial))
    by_effect = sorted(builds.values(), key=lambda h: (h.score, h.trial))
    return by_cost, by_effect


class Tried:
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
