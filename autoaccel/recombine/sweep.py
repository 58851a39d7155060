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

import math
from typing import Any

import optuna

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
from autoaccel.recombine.variants import _choices, active, distributions
from autoaccel.techniques import REGISTRY

MODELS = 2  # the fastest distinct models within the limit that are swept
NEAR = 2.0  # a model within this factor of another's work is of its size


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
    """Up to `count` builds of the `MODELS` fastest models within the limit, each with one
    switch changed to a value never run with that model. First the values the study never
    timed on a model of about its size (`cost`: a model half -> its work; within `NEAR` of
    its work): there the fit only extrapolates from other sizes; then the rest; each group by
    what the fit expects. Each is {"params", "recipe", "expected_ms", "swept", "changed"}."""
    if count <= 0:
        return []
    found = points(study, baseline)
    fastest = sorted(
        (p for p in found if p.feasible and p.measured), key=lambda p: (p.objective_ms, p.trial)
    )
    complete = complete_trials(study)
    settings = fit(complete).settings
    space = distributions(complete)
    tried = Tried(study)
    ran = _switches_run(complete)
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
        for key in switch_keys():
            if key not in base.params:
                continue
            value = base.params[key]
            for other in _choices(base.distributions.get(key), value):
                if (model, key, other) in ran:
                    continue
                params = active({**base.params, key: other}, space)
                changed = active({**recipe, key: other}, space)
                if not tried.new(params, changed):
                    continue
                gain = settings.get((key, other), 0.0) - settings.get((key, value), 0.0)
                out.append(
                    dict(
                        params=params,
                        recipe=changed,
                        expected_ms=point.objective_ms * math.exp(gain),
                        swept=base.number,
                        changed=key,
                        timed_near=(key, other) in timed_near,
                    )
                )
    out.sort(key=lambda c: (c["timed_near"], c["expected_ms"], c["swept"], c["changed"]))
    return out[:count]


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


def _switches_run(trials: list[optuna.trial.FrozenTrial]) -> set[tuple]:
    """(model half, switch key, value) of every completed trial, measured or not (one that
    broke the limit with this model is no better a second time)."""
    ran = set()
    keys = switch_keys()
    for t in trials:
        if not t.user_attrs.get("result"):
            continue
        model = key_of(halves(t, model=True)[1])
        build = halves(t, model=False)[1]
        ran.update((model, k, build[k]) for k in keys if k in build)
    return ran
