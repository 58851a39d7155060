"""int8_nncf on a real transformer: NNCF must read the graph whether or not ORT fused it, and
OpenVINO must run what it writes as int8 at close to the fp32 model's vectors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from autoaccel.builder import build_candidate
from autoaccel.errors import InfeasibleRecipe
from autoaccel.evaluate.runners import open_runner
from autoaccel.techniques import BuildContext, Candidate, describe_recipe
from autoaccel.techniques.quantize import Quantize

OV = {"runtime.backend": "openvino", "runtime.ov_precision": "f32", "runtime.intra_op_threads": 1}


@pytest.mark.slow
@pytest.mark.parametrize("fusion", [False, True])
def test_int8_nncf_minilm_runs_in_openvino_close_to_fp32(tmp_path_factory, fusion):
    """all-MiniLM-L6-v2: every projection MatMul (unfused: 36; fused: the 18 outside ORT's
    Attention op, whose QKV weights stay float) gets an int8 weight, and the embeddings of a
    calibration batch keep cosine > 0.99 to the fp32 build's."""
    from autoaccel.workloads import load_workload

    cache = tmp_path_factory.mktemp("minilm-nncf")
    workload = load_workload("minilm", cache)
    batch = workload.calibration_inputs()[0]
    base = {**OV, "compile.fusion": fusion}
    reference = open_runner(build_candidate(base, workload, cache), workload.input_names)(batch)
    recipe = {**base, "quantize.mode": "int8_nncf"}
    candidate = build_candidate(recipe, workload, cache)
    assert "NNCF" in describe_recipe(recipe)
    assert any("int8_nncf (transformer model type)" in note for note in candidate.notes)

    model = onnx.load(str(candidate.onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    int8_weights = {  # DequantizeLinear output -> its int8 initializer
        n.output[0]: n.input[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    }
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert sum(n.input[1] in int8_weights for n in matmuls) == (18 if fusion else 36)
    attention = [n for n in model.graph.node if n.op_type == "Attention"]
    assert len(attention) == (6 if fusion else 0)

    got = open_runner(candidate, workload.input_names)(batch)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    cosine = np.sum(unit(got) * unit(reference), axis=1)
    assert cosine.mean() > 0.99, cosine


def test_int8_nncf_graph_with_nothing_to_quantize_is_infeasible(tmp_path, seed_mlp):
    from onnx import helper

    name = seed_mlp.input_names[0]
    width = seed_mlp.calibration_inputs()[0][name].shape[1]
    graph = helper.make_graph(
        [helper.make_node("Relu", [name], ["y"])],
        "nothing-to-quantize",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", width])],
    )
    src = tmp_path / "src.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    with pytest.raises(InfeasibleRecipe, match="int8_nncf found nothing to quantize") as err:
        Quantize().apply(
            Candidate(backend="openvino", onnx_path=src),
            {"mode": "int8_nncf"},
            BuildContext(seed_mlp, tmp_path),
        )
    assert "\n" not in str(err.value)
    assert not (tmp_path / "model.onnx").exists()


def test_int8_nncf_on_a_graph_with_a_map_output_is_infeasible_naming_it(tmp_path):
    from onnx import helper, numpy_helper

    from autoaccel.techniques.nncf_graph import for_nncf

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(1, []))
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["p"]),
        helper.make_node(
            "ZipMap", ["p"], ["z"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]
        ),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph(nodes, "g", [x], [helper.make_value_info("z", maps)], [w])
    with pytest.raises(InfeasibleRecipe, match="whose z is not a tensor") as err:
        for_nncf(helper.make_model(graph))
    assert err.value.kind == "quantize_graph_io"
