"""Near a study's end, re-pair its cheapest trained models with the build settings that ran
fastest here, and train the smaller models next to them that the sampler never tried.

A recipe has two halves that a sampler learns about separately: the model (the torch-stage
techniques: distillation, pruning; trained, and cached once trained) and how it is built and
run (graph passes, quantization, runtime settings; cheap). TPE rarely lands on the best of
both at once: on MiniLM a 100-trial study trained a 2-layer student and measured OpenVINO bf16
as the most efficient runtime, but never put the two together (`benchmarks/results/
recipes-minilm-search-students-on-openvino-bf16.md`: 10.6x eager against the study's 6.9x).
So the last trials of a budget are enqueued as
- crosses of the two halves: each costs a build and a measurement, not a training run;
- after them, two rounds of a few smaller models (`variants.smaller_models`): one model
  setting away from the cheapest models within the limit, each on the build that ran a model
  of its size fastest and trained as long as the space allows; each costs a training run,
  and one that kept quality is a base for the second round;
- last, a sweep of the fastest models within the limit over the combinations of build
  switches they never ran with (runtime x numeric format: `sweep.sweep`), a format that broke
  the limit retried toward its accurate settings: the fit below assumes a build setting does
  the same to every model, which holds least for those, and least for the smallest models,
  found last;
- one-setting build changes of feasible recipes, where a stage finds too little to fill it.

How each half is ranked, from the study's own completed trials (`halves.fit`): by its effect on
measured latency with the other half's divided out, so a build that ran a large model 2x
faster than another build did ranks above one that only ever ran a small model, and a small
model that only ever ran on a slow build still ranks as small. (The cost model's estimate of
each graph is no such yardstick: it rates fp16-weight graphs cheaper than OpenVINO runs them,
and would rank the slower of two builds of one model first.) Only halves of trials within the
limit count: a quantization that broke quality is not re-paired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from autoaccel.recombine.halves import (
    Cost,
    Half,
    Tried,
    build_effects,
    cached,
    fit,
    is_model_key,
    ranked_halves,
)
from autoaccel.recombine.sweep import sweep, switch_keys
from autoaccel.recombine.variants import smaller_models, variants

MODELS = 3  # distinct model halves re-paired
BUILDS = 3  # distinct build halves each is re-paired with
SMALLER = 3  # new, smaller models trained per round (a fifth of the reserved trials at most)
ROUNDS = 2  # rounds of smaller models: the second steps down from what the first kept
SWEPT = 10  # builds of the fastest models with new switch values (a third of those reserved)
MIN_BUDGET = 20  # below this a study has too few trials to rank either half
TIME_SHARE = 0.2  # with --time-budget: re-pair once this share of it is left
USER_ATTR = "recombined"  # on an enqueued trial: where its halves come from

__all__ = [
    "BUILDS",
    "CROSSES",
    "SMALLER_MODELS",
    "SWEEP",
    "Half",
    "MODELS",
    "Recombination",
    "USER_ATTR",
    "auto_count",
    "build_effects",
    "enqueue",
    "fit",
    "is_model_key",
    "proposals",
    "recombine_notes",
    "ranked_halves",
    "smaller_models",
    "sweep",
    "switch_keys",
    "variants",
]


def auto_count(budget: int) -> int:
    """Trials reserved for re-pairing by default: a quarter of the budget, at most every
    cross, both rounds of smaller models and the sweep."""
    most = MODELS * BUILDS + ROUNDS * SMALLER + SWEPT
    return 0 if budget < MIN_BUDGET else min(most, budget // 4)


def proposals(
    study: optuna.Study, baseline: dict[str, Any], count: int, cost: Cost | None = None
) -> list[dict]:
    """Up to `count` crosses not tried yet (nor known to be infeasible), the best-ranked pairs
    first (models ranked with their work where `cost` is given): each {"params", "recipe",
    "model_trial", "build_trial"}."""
    models, builds = ranked_halves(study, baseline, cost)
    tried = Tried(study)
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


CROSSES, SMALLER_MODELS, SWEEP = "crosses", "smaller models", "switch sweep"
"""The kinds of re-pairing stage (`Recombination.due`)."""


def enqueue(
    study: optuna.Study,
    baseline: dict[str, Any],
    count: int,
    cost: Cost | None = None,
    warn: Callable[[str], None] | None = None,
    stage: str = CROSSES,
) -> list[dict]:
    """Enqueue up to `count` trials (the next `study.ask()` of any worker takes them first, in
    this order) and return them. Stage `CROSSES`: the crosses, models ranked with their work
    where `cost` is given; stage `SMALLER_MODELS` (needs `cost`): the smaller models; stage
    `SWEEP`: the switch sweep of the fastest models. Each fills what it leaves of `count` with
    one-setting build changes of feasible recipes. A `cost` that fails is reported to `warn`
    (raised without one)."""
    chosen: list[dict] = []
    if cost is not None:
        cost = cached(cost)
        try:
            if stage == SWEEP:
                chosen = sweep(study, baseline, count, cost)
            elif stage == SMALLER_MODELS:
                chosen = smaller_models(study, baseline, count, cost)
            else:
                chosen = proposals(study, baseline, count, cost)
        except Exception as exc:  # a model whose work cannot be counted: go on without
            if warn is None:
                raise
            warn(f"re-pairing without model costs: a model's work could not be counted ({exc})")
            cost = None
    if cost is None and stage == CROSSES:
        chosen = proposals(study, baseline, count)
    elif cost is None and stage == SWEEP:
        chosen = sweep(study, baseline, count)
    if len(chosen) < count:  # little to cross: one-setting changes of the best builds
        chosen += variants(study, baseline, count - len(chosen))
    for p in chosen:
        if "smaller_than" in p:
            attrs = {k: p[k] for k in ("smaller_than", "changed")} | {"build": p["build_trial"]}
        elif "swept" in p:
            attrs = {"swept": p["swept"], "changed": p["changed"]}
        elif "variant_of" in p:
            attrs = {"variant_of": p["variant_of"], "changed": p["changed"]}
        else:
            attrs = {"model": p["model_trial"], "build": p["build_trial"]}
        study.enqueue_trial(p["params"], user_attrs={USER_ATTR: attrs}, skip_if_exists=True)
    return chosen


def recombine_notes(chosen: list[dict]) -> list[str]:
    """What `enqueue` chose, in a line per kind, for the search's log."""
    lines = []
    if crosses := [c for c in chosen if "model_trial" in c]:
        models = ", ".join(map(str, sorted({c["model_trial"] for c in crosses})))
        builds = ", ".join(map(str, sorted({c["build_trial"] for c in crosses})))
        lines.append(
            f"{_trials(crosses)} re-pair the models of trials {models} (cheapest within the "
            f"limit, each build's cost divided out) with the builds of trials {builds} "
            "(fastest here, each model's cost divided out); their models are cached, so they "
            "build without training"
        )
    if smaller := [c for c in chosen if "smaller_than" in c]:
        steps = "; ".join(
            f"trial {c['smaller_than']} with {c['changed']} {c['recipe'][c['changed']]} "
            f"({c['cost_ratio']:.0%} of its FLOPs"
            + "".join(f", {k} {v}" for k, v in c.get("longer", {}).items())
            + ")"
            for c in smaller
        )
        lines.append(
            f"{_trials(smaller)} train a model one setting smaller than the cheapest within "
            f"the limit, each on the fastest build of a model of its size and trained as long as "
            f"the space allows: {steps}"
        )
    if swept := [c for c in chosen if "swept" in c]:
        runs = "; ".join(
            f"trial {c['swept']} with "
            + ", ".join(f"{k} {v}" for k, v in c.get("switched", {}).items())
            for c in swept
        )
        lines.append(
            f"{_trials(swept)} run the fastest models within the limit (or within it in "
            f"training, their build not) on runtimes and "
            f"numeric formats they never ran with, a format that broke the limit toward its "
            f"accurate settings (their models are cached): {runs}"
        )
    if changes := [c for c in chosen if "variant_of" in c]:
        bases = ", ".join(map(str, sorted({c["variant_of"] for c in changes})))
        keys = ", ".join(sorted({c["changed"] for c in changes}))
        lines.append(
            f"{_trials(changes)} change one build setting of trials within the limit ({bases}: "
            f"{keys}), the changes the study's timings expect fastest first"
        )
    return lines


def _trials(found: list) -> str:
    return f"{len(found)} trial{'s' if len(found) != 1 else ''}"


class Recombination:
    """When to re-pair, each stage once per invocation, in order: the crosses when the trials
    left are no more than those reserved, or (with a time budget) when its last `TIME_SHARE`
    begins; then, once every trial the stage before enqueued has been asked, two rounds of
    smaller models (a fifth of the reserved trials each, at most `SMALLER`): the crosses have
    run and told which build runs each model fastest, and a smaller model that kept quality
    in the first round is a base for the second (the step after the step the sampler never
    took: on MiniLM the half-heads student is two settings from the cheapest model the
    crosses found); last the switch sweep (a third of the reserved trials, at most
    `SWEPT`) of the fastest models, the second round's among them."""

    def __init__(self, count: int) -> None:
        smaller = min(SMALLER, count // 5)
        rounds = [(SMALLER_MODELS, smaller)] * ROUNDS if smaller else []
        swept = min(SWEPT, count // 3)
        last = [(SWEEP, swept)] if swept else []
        crosses = count - smaller * len(rounds) - swept
        self.stages = [(CROSSES, crosses), *rounds, *last] if count > 0 else []
        self.taken = 0

    def due(
        self,
        finished: int,
        budget: int,
        elapsed_s: float,
        time_budget_s: float | None,
        waiting: int = 0,
    ) -> tuple[str, int] | None:
        """(stage, trials to enqueue) when the next stage is due (it is then taken), else
        None. `waiting`: enqueued trials not asked yet (a later stage waits for them)."""
        if not self.stages or (self.taken and waiting):
            return None
        reserved = sum(n for _, n in self.stages)
        late = time_budget_s is not None and elapsed_s >= (1 - TIME_SHARE) * time_budget_s
        if budget - finished > reserved and not late:
            return None
        self.taken += 1
        return self.stages.pop(0)
