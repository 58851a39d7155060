"""The contract every technique in the registry keeps (run over all of them)."""

from __future__ import annotations

import itertools

import pytest

from autoaccel.techniques import REGISTRY, Param, Stage, Technique, config_of, describe_recipe
from autoaccel.workloads.digits import SeedMLP

TECHNIQUES = pytest.mark.parametrize("tech", list(REGISTRY.values()), ids=list(REGISTRY))


@pytest.fixture(params=[None, "seed_mlp_untrained", "onnx_only", "transformer_like"])
def workload(request, cache_dir):
    """Each kind of workload a technique must handle; None asks for every knob."""
    if request.param is None:
        return None
    if request.param == "seed_mlp_untrained":
        return SeedMLP(cache_dir)  # params() never needs the trained model
    return request.getfixturevalue(request.param)


def _default_recipe(workload) -> dict:
    """Every active parameter at its default, walked in registry order like the search."""
    recipe: dict = {}
    for tech in REGISTRY.values():
        if tech.is_active(recipe):
            for p in tech.params(workload):
                if p.is_active(recipe):
                    recipe[f"{tech.name}.{p.name}"] = p.default
    return recipe


def _default_allowed(p: Param) -> bool:
    if p.choices is not None:
        return p.default in p.choices and type(p.default) is type(p.choices[0])
    return p.low is not None and p.high is not None and p.low <= p.default <= p.high


@TECHNIQUES
def test_technique_declares_name_and_stage_matching_registry_key(tech: Technique):
    assert REGISTRY[tech.name] is tech
    assert isinstance(tech.stage, Stage)


@TECHNIQUES
def test_params_for_none_are_superset_of_params_for_any_workload(tech: Technique, workload):
    everything = {p.name: p for p in tech.params(None)}
    for p in tech.params(workload):
        assert p.name in everything
        if p.choices is not None:
            assert set(p.choices) <= set(everything[p.name].choices)


@TECHNIQUES
def test_param_names_are_unique_and_documented(tech: Technique):
    names = [p.name for p in tech.params(None)]
    assert len(names) == len(set(names))
    assert all(p.help for p in tech.params(None))


@TECHNIQUES
def test_param_default_is_an_allowed_value(tech: Technique, workload):
    for p in tech.params(workload):
        assert (p.choices is None) != (p.low is None), f"{p.name}: choices xor range"
        assert _default_allowed(p), f"{tech.name}.{p.name} default {p.default!r}"


@TECHNIQUES
def test_param_conditions_refer_to_keys_decided_earlier(tech: Technique):
    """The search walks techniques in registry order: a condition on a later key never holds."""
    order = list(REGISTRY)
    earlier = {
        f"{t.name}.{p.name}"
        for t in list(REGISTRY.values())[: order.index(tech.name)]
        for p in t.params(None)
    }
    assert set(tech.requires) <= earlier
    for i, p in enumerate(tech.params(None)):
        own_earlier = {f"{tech.name}.{q.name}" for q in tech.params(None)[:i]}
        assert set(p.when) <= earlier | own_earlier, f"{p.name} depends on {p.when}"


@TECHNIQUES
def test_describe_is_text_or_none_exactly_when_default_config_changes_nothing(
    tech: Technique, workload
):
    recipe = _default_recipe(workload)
    if not tech.is_active(recipe) or not tech.params(workload):
        pytest.skip(f"{tech.name} is inactive by default for this workload")
    text = tech.describe(config_of(tech, recipe, workload))
    # None means "does nothing" (no words in the recipe line); session-only techniques and
    # format choices (fp32) still describe themselves
    assert text is None or (isinstance(text, str) and text)
    if text is None:
        assert not tech.changes_model(config_of(tech, recipe, workload))


@TECHNIQUES
def test_changes_model_is_false_for_default_config(tech: Technique, workload):
    config = config_of(tech, _default_recipe(workload), workload)
    assert tech.changes_model(config) is False


@TECHNIQUES
def test_describe_returns_text_for_every_choice_combination(tech: Technique):
    base = _default_recipe(None)
    params = tech.params(None)
    grids = [p.choices if p.choices is not None else (p.default,) for p in params]
    for values in itertools.product(*grids):
        recipe = dict(base)
        for p, v in zip(params, values, strict=True):
            key = f"{tech.name}.{p.name}"
            recipe.pop(key, None)
            if p.is_active(recipe):
                recipe[key] = v
        if tech.is_active(recipe):
            config = config_of(tech, recipe)
            text = tech.describe(config)
            assert isinstance(text, str) or (text is None and not tech.changes_model(config))


def test_describe_recipe_reads_one_line_for_known_onnx_recipe():
    recipe = {
        "runtime.backend": "onnxruntime",
        "runtime.intra_op_threads": 1,
        "runtime.execution_mode": "sequential",
        "compile.graph_level": "all",
        "compile.fusion": False,
        "quantize.mode": "int8_static",
        "quantize.per_channel": False,
        "quantize.calibration": "entropy",
    }
    assert describe_recipe(recipe) == (
        "ONNX Runtime, 1 thread; graph level all; int8 static QDQ per-tensor, entropy calibration"
    )


def test_describe_recipe_leaves_out_onnx_techniques_when_backend_is_torch():
    recipe = {"runtime.backend": "torch", "runtime.intra_op_threads": 2, "quantize.mode": "fp16"}
    assert describe_recipe(recipe) == "PyTorch eager, 2 threads"
