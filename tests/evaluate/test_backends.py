"""The OpenVINO and torch.compile backends: same outputs as the engines they stand beside, their
flags reach the engine, and what they cannot run fails as an infeasible recipe."""

from __future__ import annotations

import numpy as np
import pytest

from autoaccel.builder import build_candidate
from autoaccel.errors import InfeasibleRecipe
from autoaccel.evaluate.runners import open_openvino, open_runner
from autoaccel.techniques import Candidate, describe_recipe

OV = {"runtime.backend": "openvino", "runtime.intra_op_threads": 1}
ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}


def _outputs(recipe, workload, cache_dir, inputs):
    candidate = build_candidate(recipe, workload, cache_dir)
    return candidate, open_runner(candidate, workload.input_names)(inputs)


def _graph_with_op(folder, domain: str, op_type: str):
    """A one-node ONNX graph y = <domain>.<op_type>(x) that ONNX itself accepts."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node(op_type, ["x"], ["y"], domain=domain)
    model = helper.make_model(
        helper.make_graph([node], "one-op", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)],
    )
    path = folder / f"{op_type}.onnx"
    onnx.save(model, str(path))
    return path


# -- OpenVINO ------------------------------------------------------------------------------


def test_openvino_fp32_outputs_match_onnxruntime_on_seed_mlp(seed_mlp, cache_dir):
    inputs = {"x": seed_mlp.x_val}
    ov_candidate, from_ov = _outputs(OV, seed_mlp, cache_dir, inputs)
    ort_candidate, from_ort = _outputs(ORT, seed_mlp, cache_dir, inputs)
    assert ov_candidate.backend == "openvino"
    assert ov_candidate.onnx_path == ort_candidate.onnx_path  # the same exported file
    assert from_ov.shape == from_ort.shape == (len(seed_mlp.x_val), 10)
    np.testing.assert_allclose(from_ov, from_ort, atol=1e-5)


@pytest.mark.parametrize("name", ["seed_mlp", "digits_cnn"])
def test_openvino_int8_static_qdq_outputs_match_onnxruntime(request, cache_dir, name):
    workload = request.getfixturevalue(name)
    quantized = {"quantize.mode": "int8_static", "quantize.calibration": "minmax"}
    inputs = {"x": workload.x_val}
    ov_candidate, from_ov = _outputs({**OV, **quantized}, workload, cache_dir, inputs)
    _, from_ort = _outputs({**ORT, **quantized}, workload, cache_dir, inputs)
    _, fp32 = _outputs(ORT, workload, cache_dir, inputs)
    assert "quantized int8_static" in ov_candidate.notes  # the ONNX stage ran for OpenVINO
    # int8 kernels round differently near a step: a few outputs move, the mean barely does
    # (5e-5 with AVX512-VNNI; about 1e-3 on a CPU without it, where a near-tie sample can
    # swing by 0.46)
    diff = np.abs(from_ov - from_ort)
    assert diff.mean() < 2e-3 and np.quantile(diff, 0.99) < 0.1
    assert (from_ov.argmax(1) == from_ort.argmax(1)).mean() > 0.99
    if name == "seed_mlp":  # it computes in int8: nearer ORT's int8 than fp32 (5e-5 vs 3e-4)
        assert diff.mean() < 0.5 * np.abs(from_ov - fp32).mean()


def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


needs_bf16 = pytest.mark.skipif(
    not _cpu_has_bf16(), reason="this CPU has no bf16 (AVX512-BF16 / AMX): OpenVINO runs f32"
)


def test_openvino_bf16_is_infeasible_on_a_cpu_without_it(seed_mlp, cache_dir):
    if _cpu_has_bf16():
        pytest.skip("this CPU runs bf16: the infeasible path cannot be reached here")
    recipe = {**OV, "runtime.ov_precision": "bf16"}
    with pytest.raises(InfeasibleRecipe, match="no bf16 support"):
        open_runner(build_candidate(recipe, seed_mlp, cache_dir), seed_mlp.input_names)


@needs_bf16
def test_openvino_bf16_outputs_stay_close_to_fp32_on_seed_mlp(seed_mlp, cache_dir):
    inputs = {"x": seed_mlp.x_val}
    _, bf16 = _outputs({**OV, "runtime.ov_precision": "bf16"}, seed_mlp, cache_dir, inputs)
    _, fp32 = _outputs(ORT, seed_mlp, cache_dir, inputs)
    np.testing.assert_allclose(bf16, fp32, atol=2e-2)
    assert (bf16.argmax(1) == fp32.argmax(1)).mean() > 0.98


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"ov_precision": "f32", "ov_hint": "latency", "ov_streams": 1, "intra_op_threads": 1},
            {"precision": "f32", "hint": "LATENCY", "streams": 1, "threads": 1},
        ),
        pytest.param(
            {"ov_precision": "bf16", "ov_hint": "throughput", "ov_streams": 2},
            {"precision": "bf16", "hint": "THROUGHPUT", "streams": 2, "threads": 2},
            marks=needs_bf16,
        ),
    ],
)
def test_openvino_flags_reach_compiled_model(seed_mlp, cache_dir, settings, expected):
    import openvino as ov

    recipe = {"runtime.backend": "openvino", "runtime.intra_op_threads": 2}
    recipe.update({f"runtime.{k}": v for k, v in settings.items()})
    compiled = open_openvino(build_candidate(recipe, seed_mlp, cache_dir))
    precision = {"f32": ov.Type.f32, "bf16": ov.Type.bf16}[expected["precision"]]
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == precision
    assert str(compiled.get_property("PERFORMANCE_HINT")) == expected["hint"]
    assert int(compiled.get_property("NUM_STREAMS")) == expected["streams"]
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == expected["threads"]


def test_openvino_default_precision_is_f32_not_the_plugin_bf16_default(seed_mlp, cache_dir):
    import openvino as ov

    compiled = open_openvino(build_candidate({"runtime.backend": "openvino"}, seed_mlp, cache_dir))
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


def test_openvino_more_streams_than_threads_is_infeasible(seed_mlp, cache_dir):
    """Refused by the build before anything is built; and should a candidate reach the
    runtime so (its session set by hand), the runtime's own check refuses it too."""
    recipe = {**OV, "runtime.ov_streams": 2}  # one thread
    with pytest.raises(InfeasibleRecipe, match="ov_streams 2 on 1 thread"):
        build_candidate(recipe, seed_mlp, cache_dir)
    built = build_candidate(OV, seed_mlp, cache_dir).with_session(ov_streams=2)
    with pytest.raises(InfeasibleRecipe, match="OpenVINO runs 1 stream"):
        open_runner(built, seed_mlp.input_names)


@pytest.mark.parametrize(
    ("domain", "op_type"), [("com.example", "Frobnicate"), ("com.microsoft", "QAttention")]
)
def test_openvino_graph_with_unknown_op_raises_infeasible_naming_backend_and_op(
    tmp_path, domain, op_type
):
    path = _graph_with_op(tmp_path, domain, op_type)
    candidate = Candidate(backend="openvino", onnx_path=path, session={"intra_op_threads": 1})
    with pytest.raises(InfeasibleRecipe) as info:
        open_runner(candidate, ("x",))
    reason = str(info.value)
    assert "\n" not in reason
    assert reason.startswith("OpenVINO")
    assert f"{domain}.{op_type}" in reason
    assert "runtime.backend onnxruntime" in reason  # what to change
    if op_type == "QAttention":  # made by int8 dynamic on a fused graph: say so
        assert "compile.fusion false" in reason


def test_openvino_runs_onnx_only_workload(onnx_only, cache_dir):
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    _, from_ov = _outputs(OV, onnx_only, cache_dir, {"features": x})
    _, from_ort = _outputs(ORT, onnx_only, cache_dir, {"features": x})
    np.testing.assert_allclose(from_ov, from_ort, atol=1e-5)


# -- torch.compile -------------------------------------------------------------------------


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_torch_compile_build_gives_torch_model_and_no_onnx(seed_mlp, cache_dir):
    recipe = {"runtime.backend": "torch_compile", "quantize.mode": "int8_dynamic"}
    candidate = build_candidate(recipe, seed_mlp, cache_dir)
    assert candidate.backend == "torch_compile"
    assert candidate.onnx_path is None
    assert candidate.torch_model is seed_mlp.torch_model()
    assert candidate.session["compile_mode"] == "default"
    assert "graph_level" not in candidate.session


def test_torch_compile_on_onnx_only_workload_is_infeasible(onnx_only, cache_dir):
    with pytest.raises(InfeasibleRecipe, match="no torch model"):
        build_candidate({"runtime.backend": "torch_compile"}, onnx_only, cache_dir)


def test_torch_compile_output_equals_eager_on_seed_mlp(seed_mlp, cache_dir):
    recipe = {"runtime.intra_op_threads": 1}
    compiled = build_candidate({**recipe, "runtime.backend": "torch_compile"}, seed_mlp, cache_dir)
    eager = build_candidate({**recipe, "runtime.backend": "torch"}, seed_mlp, cache_dir)
    before = _graphs()
    predict = open_runner(compiled, seed_mlp.input_names)
    assert _graphs() == before + 1  # compiled when it opened, for the latency shape
    inputs = seed_mlp.latency_inputs(1)
    from_compiled = predict(inputs)
    assert _graphs() == before + 1  # ... and that compiled graph ran, no recompilation
    from_eager = open_runner(eager, seed_mlp.input_names)(inputs)
    np.testing.assert_allclose(from_compiled, from_eager, rtol=1e-5, atol=1e-6)


def test_torch_compile_compiles_a_shape_when_the_same_inputs_repeat(seed_mlp, cache_dir):
    recipe = {"runtime.backend": "torch_compile", "runtime.intra_op_threads": 1}
    predict = open_runner(build_candidate(recipe, seed_mlp, cache_dir), seed_mlp.input_names)
    one_off = {"x": seed_mlp.x_val}
    before = _graphs()
    predict(one_off)
    assert _graphs() == before  # a one-off batch (quality) runs eagerly: no compile
    timed = seed_mlp.latency_inputs(3)
    first, second = predict(timed), predict(timed)  # a timing loop: compile this shape
    assert _graphs() == before + 1
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)


def test_torch_compile_runners_do_not_share_compiled_code_across_trials(seed_mlp):
    """Without a reset dynamo would hit its recompile limit and run later models eagerly."""
    import torch
    import torch._dynamo

    x = seed_mlp.latency_inputs(1)
    with torch._dynamo.config.patch(recompile_limit=2):
        for width in (8, 9, 10):  # three distinct models of one class: three compilations
            model = torch.nn.Sequential(
                torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 10)
            )
            candidate = Candidate(
                backend="torch_compile",
                torch_model=model,
                session={"intra_op_threads": 1},
                info={"warmup_inputs": x},
            )
            before = _graphs()
            open_runner(candidate, seed_mlp.input_names)
            assert _graphs() == before + 1, f"width {width} was not compiled"


# -- describe ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "text"),
    [
        (
            {**OV, "runtime.ov_precision": "bf16", "runtime.ov_hint": "latency"},
            "OpenVINO, bf16 where not quantized, latency hint, 1 thread",
        ),
        (
            {
                "runtime.backend": "openvino",
                "runtime.intra_op_threads": 2,
                "runtime.ov_precision": "f32",
                "runtime.ov_hint": "throughput",
                "runtime.ov_streams": 2,
            },
            "OpenVINO, f32 where not quantized, throughput hint, 2 streams, 2 threads",
        ),
        (
            {
                "runtime.backend": "torch_compile",
                "runtime.intra_op_threads": 1,
                "runtime.compile_mode": "max-autotune-no-cudagraphs",
                "quantize.mode": "fp16",  # not for a torch backend: left out
            },
            "torch.compile (max-autotune-no-cudagraphs), 1 thread",
        ),
    ],
)
def test_describe_recipe_reads_backend_and_flags(recipe, text):
    assert describe_recipe(recipe) == text
