"""Compile and runtime settings: session settings travel with the candidate, never the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoaccel.builder import build_candidate
from autoaccel.evaluate.runners import open_runner
from autoaccel.techniques import REGISTRY

ORT = {"runtime.backend": "onnxruntime", "quantize.mode": "none"}


def _param_names(tech: str, workload) -> set[str]:
    return {p.name for p in REGISTRY[tech].params(workload)}


def test_graph_level_and_threads_land_in_session(digits_cnn, cache_dir):
    recipe = {**ORT, "compile.graph_level": "basic", "runtime.intra_op_threads": 1}
    candidate = build_candidate(recipe, digits_cnn, cache_dir)
    assert candidate.backend == "onnxruntime"
    assert candidate.session["graph_level"] == "basic"
    assert candidate.session["intra_op_threads"] == 1
    assert candidate.session["execution_mode"] == "sequential"  # default filled in


def test_graph_level_shares_model_file_when_only_level_differs(digits_cnn, cache_dir):
    paths = {
        level: build_candidate({**ORT, "compile.graph_level": level}, digits_cnn, cache_dir)
        for level in ("disable", "all")
    }
    assert paths["disable"].onnx_path == paths["all"].onnx_path
    assert paths["disable"].session["graph_level"] == "disable"
    assert paths["all"].session["graph_level"] == "all"


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_every_graph_level_opens_and_predicts_in_ort(digits_cnn, cache_dir, level):
    recipe = {**ORT, "compile.graph_level": level, "runtime.intra_op_threads": 1}
    predict = open_runner(build_candidate(recipe, digits_cnn, cache_dir), digits_cnn.input_names)
    out = predict(digits_cnn.latency_inputs(4))
    assert out.shape == (4, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_torch_backend_gives_torch_model_and_no_onnx_path(digits_cnn, cache_dir):
    recipe = {"runtime.backend": "torch", "runtime.intra_op_threads": 1}
    candidate = build_candidate(recipe, digits_cnn, cache_dir)
    assert candidate.backend == "torch"
    assert candidate.onnx_path is None
    assert candidate.torch_model is digits_cnn.torch_model()
    assert candidate.session == {"backend": "torch", "intra_op_threads": 1}


def test_torch_backend_ignores_onnx_only_settings(digits_cnn, cache_dir):
    recipe = {"runtime.backend": "torch", "quantize.mode": "int8_dynamic"}
    candidate = build_candidate(recipe, digits_cnn, cache_dir)
    assert candidate.onnx_path is None
    assert "graph_level" not in candidate.session


def test_torch_and_ort_runners_predict_the_same_on_digits(digits_cnn, cache_dir):
    settings = {"runtime.intra_op_threads": 1}
    torch_candidate = build_candidate(
        {**settings, "runtime.backend": "torch"}, digits_cnn, cache_dir
    )
    ort_candidate = build_candidate({**settings, **ORT}, digits_cnn, cache_dir)
    inputs = {"x": digits_cnn.x_val}
    from_torch = open_runner(torch_candidate, digits_cnn.input_names)(inputs)
    from_ort = open_runner(ort_candidate, digits_cnn.input_names)(inputs)
    assert from_torch.shape == from_ort.shape == (len(digits_cnn.x_val), 10)
    assert np.allclose(from_torch, from_ort, atol=1e-4)


def test_torch_runner_pins_thread_count_of_candidate(digits_cnn, cache_dir):
    import torch

    previous = torch.get_num_threads()
    try:
        candidate = build_candidate(
            {"runtime.backend": "torch", "runtime.intra_op_threads": 1}, digits_cnn, cache_dir
        )
        predict = open_runner(candidate, digits_cnn.input_names)
        torch.set_num_threads(2)
        predict(digits_cnn.latency_inputs(1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_fusion_is_not_offered_when_workload_has_no_onnx_model_type(seed_mlp):
    assert seed_mlp.onnx_model_type is None
    assert "fusion" not in _param_names("compile", seed_mlp)
    assert "graph_level" in _param_names("compile", seed_mlp)


def test_fusion_is_offered_when_workload_has_onnx_model_type(transformer_like):
    assert "fusion" in _param_names("compile", transformer_like)
    assert "fusion" in _param_names("compile", None)


def test_fusion_is_searched_on_onnxruntime_only_and_a_given_recipe_keeps_it(transformer_like):
    from autoaccel.techniques import config_of

    compile_ = REGISTRY["compile"]
    (fusion,) = [p for p in compile_.params(transformer_like) if p.name == "fusion"]
    assert fusion.is_active({"runtime.backend": "onnxruntime"})
    assert not fusion.is_active({"runtime.backend": "openvino"})  # OpenVINO fuses itself
    given = {"runtime.backend": "openvino", "compile.fusion": True}  # export, a replay
    assert config_of(compile_, given, transformer_like)["fusion"] is True


def test_torch_backends_are_not_offered_when_workload_is_onnx_only(onnx_only, seed_mlp):
    def backends(workload):
        (param,) = [p for p in REGISTRY["runtime"].params(workload) if p.name == "backend"]
        return set(param.choices)

    assert backends(onnx_only) == {"onnxruntime", "openvino"}
    assert backends(seed_mlp) == {"onnxruntime", "openvino", "torch", "torch_compile"}


@pytest.mark.parametrize(
    ("backend", "flags"),
    [
        ("onnxruntime", {"execution_mode"}),
        ("openvino", {"ov_precision", "ov_hint", "ov_streams"}),
        ("torch", set()),
        ("torch_compile", {"compile_mode"}),
    ],
)
def test_backend_flags_are_active_only_with_their_backend(backend, flags):
    recipe = {"runtime.backend": backend}
    active = {p.name for p in REGISTRY["runtime"].params(None) if p.is_active(recipe)}
    assert active == {"backend", "intra_op_threads"} | flags
    assert all(p.session for p in REGISTRY["runtime"].params(None))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_onnx_techniques_are_active_for_both_onnx_backends(backend):
    recipe = {"runtime.backend": backend}
    assert REGISTRY["compile"].is_active(recipe)
    assert REGISTRY["quantize"].is_active(recipe)


@pytest.mark.parametrize("backend", ["torch", "torch_compile"])
def test_onnx_techniques_are_inactive_for_torch_backends(backend):
    recipe = {"runtime.backend": backend}
    assert not REGISTRY["compile"].is_active(recipe)
    assert not REGISTRY["quantize"].is_active(recipe)


def test_openvino_session_settings_share_model_file_with_onnxruntime(seed_mlp, cache_dir):
    ort = build_candidate({**ORT, "compile.graph_level": "basic"}, seed_mlp, cache_dir)
    ov = build_candidate(
        {"runtime.backend": "openvino", "runtime.ov_precision": "bf16", "runtime.ov_streams": 2},
        seed_mlp,
        cache_dir,
    )
    assert ov.onnx_path == ort.onnx_path  # session settings never rebuild the file
    assert ov.session["ov_precision"] == "bf16"
    assert ov.session["ov_hint"] == "latency"  # default filled in
    assert ov.session["ov_streams"] == 2
    assert "execution_mode" not in ov.session


@pytest.mark.parametrize("has_bf16", [True, False])
def test_bf16_is_offered_only_where_the_cpu_computes_it(monkeypatch, seed_mlp, has_bf16):
    import optuna

    import autoaccel.techniques.runtime as runtime
    from autoaccel.space import SearchSpace, suggest_recipe

    monkeypatch.setattr(runtime, "runs_bf16", lambda: has_bf16)
    space = SearchSpace(
        "t",
        Path("t.yaml"),
        {"runtime": {"backend": ["openvino"], "ov_precision": ["f32", "bf16"]}},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {
        suggest_recipe(study.ask(), space, seed_mlp)["runtime.ov_precision"] for _ in range(20)
    }
    assert seen == ({"f32", "bf16"} if has_bf16 else {"f32"})
    declared = {p.name: p for p in runtime.Runtime().params(None)}
    assert declared["ov_precision"].choices == ("f32", "bf16")  # a space may always name it
