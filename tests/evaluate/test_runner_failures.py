"""What a runner cannot run, for a known reason, is an infeasible recipe with its kind; any
other error opening a candidate propagates as itself, so the trial fails with its traceback."""

from __future__ import annotations

import pickle

import pytest

from autoaccel.errors import INFEASIBLE_KINDS, InfeasibleRecipe
from autoaccel.evaluate.runners import _toolchain_missing, open_runner
from autoaccel.techniques import Candidate


def _one_op_graph(folder, op_type: str, elem_type: int):
    """y = op_type(x) over a [1, 4] tensor of `elem_type`, at opset 17."""
    import onnx
    from onnx import helper

    x = helper.make_tensor_value_info("x", elem_type, [1, 4])
    y = helper.make_tensor_value_info("y", elem_type, [1, 4])
    node = helper.make_node(op_type, ["x"], ["y"])
    model = helper.make_model(
        helper.make_graph([node], "one-op", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    path = folder / f"{op_type}.onnx"
    onnx.save(model, str(path))
    return path


def _candidate(backend: str, path) -> Candidate:
    return Candidate(backend=backend, onnx_path=path, session={"intra_op_threads": 1})


def test_infeasible_recipe_keeps_reason_and_kind_across_processes():
    exc = pickle.loads(pickle.dumps(InfeasibleRecipe("no bf16 here", "openvino_precision")))
    assert (str(exc), exc.kind) == ("no bf16 here", "openvino_precision")
    assert InfeasibleRecipe("old style").kind == "unnamed"  # the one-argument form still works


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_graph_file_the_runtime_cannot_load_is_a_failure_not_infeasible(tmp_path, backend):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(Exception) as raised:
        open_runner(_candidate(backend, broken), ("x",))
    assert not isinstance(raised.value, InfeasibleRecipe)


def test_onnxruntime_without_a_kernel_for_the_type_is_infeasible_with_its_kind(tmp_path):
    from onnx import TensorProto

    path = _one_op_graph(tmp_path, "Relu", TensorProto.BFLOAT16)  # no bf16 Relu on CPU
    with pytest.raises(InfeasibleRecipe) as raised:
        open_runner(_candidate("onnxruntime", path), ("x",))
    assert raised.value.kind == "ort_kernel"
    assert "no kernel for Relu" in str(raised.value) and "\n" not in str(raised.value)


def test_openvino_unknown_op_is_infeasible_with_kind_openvino_op(tmp_path):
    from onnx import TensorProto

    path = _one_op_graph(tmp_path, "Frobnicate", TensorProto.FLOAT)
    with pytest.raises(InfeasibleRecipe) as raised:
        open_runner(_candidate("openvino", path), ("x",))
    assert raised.value.kind == "openvino_op"
    assert raised.value.kind in INFEASIBLE_KINDS


def test_a_missing_compiler_for_torch_compile_is_found_through_torchs_wrappers():
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        try:
            raise InvalidCxxCompiler()
        except InvalidCxxCompiler as inner:
            raise RuntimeError("InductorError: wrapped") from inner
    except RuntimeError as outer:
        assert isinstance(_toolchain_missing(outer), InvalidCxxCompiler)
    assert _toolchain_missing(RuntimeError("a bug in inductor's lowering")) is None


def test_torch_compile_without_a_cxx_compiler_is_infeasible(seed_mlp, cache_dir):
    import torch._inductor.config

    from autoaccel.builder import build_candidate

    recipe = {"runtime.backend": "torch_compile", "runtime.intra_op_threads": 1}
    candidate = build_candidate(recipe, seed_mlp, cache_dir)
    no_compiler = {"cpp.cxx": ("no-such-cxx-compiler",), "fx_graph_cache": False}
    with torch._inductor.config.patch(no_compiler), pytest.raises(InfeasibleRecipe) as raised:
        open_runner(candidate, seed_mlp.input_names)
    assert raised.value.kind == "torch_compile_toolchain"
    assert "InvalidCxxCompiler" in str(raised.value)


def test_openvino_on_a_sequence_output_is_infeasible_with_kind_openvino_io(tmp_path):
    # skl2onnx's default classifier ends in ZipMap: a sequence of maps OpenVINO cannot read;
    # every OpenVINO trial of such a file failed with a traceback before
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(1, []))
    )
    node = helper.make_node(
        "ZipMap", ["x"], ["y"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]
    )
    model = helper.make_model(
        helper.make_graph([node], "zipmap", [x], [helper.make_value_info("y", maps)]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)],
    )
    path = tmp_path / "seq.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InfeasibleRecipe) as raised:
        open_runner(_candidate("openvino", path), ("x",))
    assert raised.value.kind == "openvino_io" and raised.value.kind in INFEASIBLE_KINDS
    assert "Unsupported value_info type" in str(raised.value) and "\n" not in str(raised.value)
