"""The last stage of re-pairing: the fastest models within the limit, each run with every
value of the build switches it never ran with (which runtime, which numeric format).

The fit that ranks builds (`halves.fit`) is additive in log latency: a build setting's effect
is taken to be the same on every model. That holds least for the settings that choose which
kernels run. int8 pays where matrix products dominate and costs where quantize/dequantize
and fp32 glue do; a runtime's fixed cost per operator weighs more on a small model. The
smallest models come last (the smaller-model rounds), each on the build its base ran
fastest, so the study has timed them on little else, and the fit extrapolates each switch from
larger models. On MiniLM on an AVX2 EPYC, one study's second round ended on NNCF QDQ int8 at
10.8x eager, int8 dynamic timed only on a 4-layer student and the full-depth model; the pick's
model on ONNX Runtime int8 dynamic ran 2.97 ms against 3.42 ms side by side (1.15x). Each
sweep trial builds from the cached trained model: a build and a measurement, seconds on MiniLM.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import optuna

from autoaccel.early_stop import model_stages
from autoaccel.frontier import points
from autoaccel.recombine.halves import (
    Cost,
    Tried,
    complete_trials,
    fit,
    halves,
    is_model_key,
    key_of,
)
from autoaccel.recombine.variants import NEAR, _breaks_limit, active, distributions
from autoaccel.techniques import REGISTRY

MODELS = 2  # the fastest distinct models within the limit that are swept


def switch_keys() -> tuple[str, ...]:
    """Build settings that decide which other settings apply (a `Param.when` or a technique's
    `requires` names them): the runtime and the numeric format, in registry order."""
    named: dict[str, None] = {}
    for tech in REGISTRY.values():
        named.update(dict.fromkeys(tech.requires))
        for param in tech.params(None):
            named.update(dict.fromkeys(param.when))
    return tuple(k for k in named if not is_model_key(k))


def sweep(
    study: optuna.Study, baseline: dict[str, Any], count: int, cost: Cost | None = None
) -> list[dict]:
    """Up to `count` builds of the `MODELS` fastest models within the limit, each with its
    switches set to a combination never run with that model (the runtime and the numeric
    format choose the kernels together: int8 dynamic runs fast on ONNX Runtime and slowly on
    OpenVINO). A switch value that broke the limit on every trial of that model is tried
    toward its accurate settings instead (`Param.accurate`: more of the graph left in float),
    one step at a time, from the fastest trial that ran that combination on that model (its
    other settings, fusions say, are what made the format fast). A model that kept the limit
    in training while its build broke it (`kept_in_training`) is swept too, its own
    combination retried toward accuracy as well. First the combinations the study never
    timed on a model of about its size (`cost`: a model half -> its work; within `NEAR` of
    its work): there the fit only extrapolates from other sizes; then the rest; each group
    by what the fit expects. Each is {"params", "recipe", "expected_ms", "swept",
    "changed", "switched"}: `switched` the switches and settings it changed."""
    if count <= 0:
        return []
    found = points(study, baseline)
    fastest = sorted(
        (p for p in found if p.measured and (p.feasible or kept_in_training(study, p.trial))),
        key=lambda p: (p.objective_ms, p.trial),
    )
    complete = complete_trials(study)
    settings = fit(complete).settings
    space = distributions(complete)
    tried = Tried(study)
    feasible = {p.trial for p in found if p.feasible}
    ran = _combinations_run(complete, feasible)
    breaks = _breaks_limit(complete, feasible)
    misses = _fastest_runs(complete)
    out: list[dict] = []
    models: set[tuple] = set()
    for point in fastest:
        base = study.trials[point.trial]
        half = halves(base, model=True)[1]
        if (model := key_of(half)) in models:
            continue
        if len(models) == MODELS:
            break
        models.add(model)
        timed_near = _switches_near(complete, half, cost)
        recipe = base.user_attrs.get("recipe", base.params)
        kept = not point.feasible  # its model kept the limit, its build did not
        seen: set[tuple] = set() if kept else {_switches_of(recipe)}
        for combo in _combinations(space):
            changed = active({**recipe, **combo}, space)
            switches = _switches_of(changed)
            if switches in seen:
                continue
            seen.add(switches)
            within = ran.get((model, switches))
            broke = within is False if kept else any((model, k, v) in breaks for k, v in switches)
            if within or (within is not None and not broke):
                continue  # measured within the limit, or it ran and broke for another reason
            params = active({**base.params, **combo}, space)
            starts = [(params, changed)]
            if broke and (miss := misses.get((model, switches))) is not None:
                # first from the fastest build that broke the limit with these switches: its
                # other settings (fusions, graph level) are the ones that ran them fast
                recipe_of = miss.user_attrs.get("recipe", miss.params)
                starts.insert(0, (active({**miss.params, **combo}, space),
                                  active({**recipe_of, **combo}, space)))  # fmt: skip
            gain = sum(
                settings.get(item, 0.0) - settings.get((item[0], recipe.get(item[0])), 0.0)
                for item in switches
            )
            name = next((k for k, v in switches if recipe.get(k) != v), switches[0][0])
            near = all(item in timed_near for item in switches)
            steps = [(params, changed)]
            if broke:
                for start in starts:
                    steps = [s for s in _toward_accuracy(*start, space) if tried.new(*s)]
                    if steps:
                        break
            for p, r in steps:
                if tried.new(p, r):
                    out.append(
                        dict(
                            params=p,
                            recipe=r,
                            expected_ms=point.objective_ms * math.exp(gain),
                            swept=base.number,
                            changed=name,
                            switched={k: v for k, v in r.items() if _shown(k, recipe, r)},
                            timed_near=near,
                        )
                    )
    out.sort(key=lambda c: (c["timed_near"], c["expected_ms"], c["swept"]))
    return out[:count]


def kept_in_training(study: optuna.Study, number: int) -> bool:
    """Whether a trial outside the limit lost its quality in the build, not in training: its
    model's last training check (`curve`: the torch model, judged like the trial) met the
    judged figure's limit, and that figure was the only one broken. Such a model is worth
    building again toward accuracy: on MiniLM a half-heads student checked at 0.578
    (limit 0.569) ended at 0.560 under int8 static with minmax calibration."""
    t = study.trials[number]
    curve = t.user_attrs.get("curve") or {}
    over = {k: v for k, v in t.constraints.items() if v > 0}
    if not curve or not t.values or set(over) != {"accuracy_drop"}:
        return False
    stage, checks = list(curve.items())[-1]  # the last stage trained, the one checked
    if model_stages(t.user_attrs.get("recipe", t.params))[-1:] != [stage]:
        return False  # an untrained stage after it (2:4 pruning, no fine-tune) changed it
    last = checks[max(checks, key=float)]
    return last >= t.values[0] + over["accuracy_drop"]  # the baseline less the allowed drop


def _shown(key: str, base: dict[str, Any], recipe: dict[str, Any]) -> bool:
    """Whether `key` is what a sweep changed: a switch, or a setting moved toward accuracy."""
    moved = recipe.get(key) != base.get(key)
    return moved and (key in switch_keys() or key in _accurate_keys())


def _accurate_keys() -> set[str]:
    return {
        f"{t.name}.{p.name}"
        for t in REGISTRY.values()
        for p in t.params(None)
        if p.accurate is not None
    }


def _switches_of(recipe: dict[str, Any]) -> tuple:
    return tuple((k, recipe[k]) for k in switch_keys() if k in recipe)


def _combinations(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the switches' values in the study's space."""
    keys = [k for k in switch_keys() if k in space and hasattr(space[k], "choices")]
    return [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(space[k].choices for k in keys))
    ]


def _toward_accuracy(
    params: dict[str, Any], recipe: dict[str, Any], space: dict[str, Any]
) -> list[tuple[dict, dict]]:
    """`params` / `recipe` with each active setting that has an accurate choice moved toward
    it, one choice of the space at a time (float_share 0.15, then 0.3), the others at their
    accurate choice; the least change first."""
    movable, position = {}, {}
    for tech in REGISTRY.values():
        for param in tech.params(None):
            key = f"{tech.name}.{param.name}"
            dist = space.get(key)
            if param.accurate is None or key not in recipe or not hasattr(dist, "choices"):
                continue
            choices = list(dist.choices)
            if param.accurate in choices and recipe[key] in choices:
                start, end = choices.index(recipe[key]), choices.index(param.accurate)
                step = 1 if end >= start else -1
                moves = [choices[i] for i in range(start + step, end + step, step)]
                movable[key] = moves or [recipe[key]]
                position[key] = {c: abs(choices.index(c) - start) for c in choices}
    accurate = {k: v[-1] for k, v in movable.items()}
    steps: dict[tuple, dict] = {}
    for key, values in movable.items():
        for value in values:
            chosen = {**accurate, key: value}
            steps[key_of(chosen)] = chosen
    order = sorted(steps.values(), key=lambda c: sum(position[k][v] for k, v in c.items()))
    return [({**params, **c}, {**recipe, **c}) for c in order]


def _switches_near(
    trials: list[optuna.trial.FrozenTrial], model: dict[str, Any], cost: Cost | None
) -> set[tuple]:
    """(switch key, value) the study timed on a model within `NEAR` of `model`'s work (none
    without `cost`)."""
    if cost is None:
        return set()
    own, keys = cost(model), switch_keys()
    near = set()
    for t in trials:
        if not (t.user_attrs.get("result") or {}).get("objective_ms"):
            continue
        work = cost(halves(t, model=True)[1])
        if own / NEAR <= work <= own * NEAR:
            build = halves(t, model=False)[1]
            near.update((k, build[k]) for k in keys if k in build)
    return near


def _fastest_runs(trials: list[optuna.trial.FrozenTrial]) -> dict[tuple, Any]:
    """(model half, switch values) -> the fastest measured trial that ran them."""
    fastest: dict[tuple, Any] = {}
    for t in trials:
        ms = (t.user_attrs.get("result") or {}).get("objective_ms")
        if not ms or "duplicate_of" in t.user_attrs:
            continue
        k = (key_of(halves(t, model=True)[1]), _switches_of(halves(t, model=False)[1]))
        if k not in fastest or ms < fastest[k].user_attrs["result"]["objective_ms"]:
            fastest[k] = t
    return fastest


def _combinations_run(
    trials: list[optuna.trial.FrozenTrial], feasible: set[int]
) -> dict[tuple, bool]:
    """(model half, switch values) of every completed trial -> whether any ran within the
    limit."""
    ran: dict[tuple, bool] = {}
    for t in trials:
        if not t.user_attrs.get("result") or "duplicate_of" in t.user_attrs:
            continue
        model = key_of(halves(t, model=True)[1])
        k = (model, _switches_of(halves(t, model=False)[1]))
        ran[k] = ran.get(k, False) or t.number in feasible
    return ran
