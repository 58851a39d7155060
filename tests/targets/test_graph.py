"""Graph analysis: counts checked against hand-computed values on small graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autoaccel.targets.graph import ATTENTION_SCORE_FLOPS, analyze

FLOAT = TensorProto.FLOAT


def _save(path: Path, nodes, inputs, inits=(), outputs=("y",), ms: bool = False) -> Path:
    """A one-graph model; inputs are (name, shape[, dtype]); outputs are names (type left to
    inference) or (name, dtype)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t[0] if t else FLOAT, s) for n, s, *t in inputs],
        [
            helper.make_tensor_value_info(
                *((o, TensorProto.UNDEFINED) if isinstance(o, str) else o), None
            )
            for o in outputs
        ],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in inits],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] * ms)
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


def _only(graph, op_type: str):
    (node,) = [n for n in graph.nodes if n.op_type == op_type]
    return node


def _gemm_model(path: Path) -> Path:
    w = np.ones((4, 5), np.float32)  # [N, K] with transB=1
    return _save(
        path,
        [helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1)],
        [("a", ["batch", 5])],
        [("w", w), ("c", np.zeros(4, np.float32))],
    )


def test_gemm_hand_counts(tmp_path):
    node = _only(analyze(_gemm_model(tmp_path / "g.onnx"), {"a": (3, 5)}), "Gemm")
    assert node.macs == 3 * 5 * 4
    assert node.flops == 2 * 60 + 3 * 4  # + the bias add
    assert node.weight_bytes == (4 * 5 + 4) * 4
    assert (node.input_bytes, node.output_bytes) == (3 * 5 * 4, 3 * 4 * 4)
    assert node.matmul_dims == (3, 5, 4)
    assert node.precision == "fp32"


def test_batch_size_scales_macs_linearly(tmp_path):
    path = _gemm_model(tmp_path / "g.onnx")
    one, eight = analyze(path, {"a": (1, 5)}), analyze(path, {"a": (8, 5)})
    assert (one.batch_size, eight.batch_size) == (1, 8)
    assert eight.macs == 8 * one.macs == 8 * 20
    assert eight.weight_bytes == one.weight_bytes


def test_matmul_with_batch_dims(tmp_path):
    path = _save(
        tmp_path / "m.onnx",
        [
            helper.make_node("MatMul", ["a", "b"], ["ab"]),  # [2,3,5,6] x [2,3,6,7]
            helper.make_node("MatMul", ["x", "w"], ["y"]),  # [2,5,6] x weight [6,7]
        ],
        [("a", [2, 3, 5, 6]), ("b", [2, 3, 6, 7]), ("x", [2, 5, 6])],
        [("w", np.ones((6, 7), np.float32))],
        outputs=("ab", "y"),
    )
    both, weighted = analyze(path, {}).nodes
    assert both.macs == 2 * 3 * 5 * 6 * 7 and both.flops == 2 * both.macs
    assert both.matmul_dims == (2 * 3 * 5, 6, 7)
    assert (both.weight_bytes, both.input_bytes) == (0, (180 + 252) * 4)
    assert both.output_bytes == 2 * 3 * 5 * 7 * 4
    assert weighted.macs == 2 * 5 * 6 * 7 and weighted.matmul_dims == (10, 6, 7)
    assert weighted.weight_bytes == 6 * 7 * 4


def test_conv_with_padding_stride_and_groups(tmp_path):
    path = _save(
        tmp_path / "c.onnx",
        [
            helper.make_node(
                "Conv", ["x", "w", "b"], ["y"], group=2, strides=[2, 2], pads=[1, 1, 1, 1]
            )
        ],
        [("x", [2, 4, 9, 9])],
        [("w", np.ones((6, 2, 3, 3), np.float32)), ("b", np.ones(6, np.float32))],
    )
    node = analyze(path, {}).nodes[0]
    # out [2, 6, 5, 5]: (9 + 2 - 3) // 2 + 1 = 5; each output reads Cin/group * 3 * 3 = 18
    assert node.macs == 2 * 6 * 5 * 5 * 18 == 5400
    assert node.flops == 2 * 5400 + 2 * 6 * 5 * 5
    assert node.matmul_dims == (2 * 5 * 5, 18, 6)
    assert node.weight_bytes == (6 * 2 * 9 + 6) * 4
    assert (node.input_bytes, node.output_bytes) == (2 * 4 * 81 * 4, 2 * 6 * 25 * 4)


def _qdq_matmul(path: Path, quantize_activation: bool) -> Path:
    """MatMul(x, DQ(w)), with x through Q/DQ too when `quantize_activation`."""
    w = np.full((8, 16), 5, np.int8)
    w.flat[::4] = 3  # a quarter of the weights equal the zero point: zeros
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wf"], axis=1)]
    x = "x"
    if quantize_activation:
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xf"]),
        ]
        x = "xf"
    nodes.append(helper.make_node("MatMul", [x, "wf"], ["y"]))
    inits = [
        ("wq", w),
        ("ws", np.full(16, 0.1, np.float32)),
        ("wz", np.full(16, 3, np.int8)),
        ("xs", np.float32(0.05)),
        ("xz", np.uint8(128)),
    ]
    return _save(path, nodes, [("x", [4, 8])], inits)


def test_qdq_matmul_is_int8_with_int8_weight_bytes(tmp_path):
    graph = analyze(_qdq_matmul(tmp_path / "q.onnx", True), {})
    node = _only(graph, "MatMul")
    assert node.precision == "int8" and graph.precisions() == {"int8"}
    assert node.weight_bytes == 8 * 16 * 1 + 16 * 4 + 16 * 1  # int8 weights + scales + zps
    assert node.input_bytes == 4 * 8  # the uint8 activation the fused kernel reads
    assert node.sparsity == pytest.approx(0.25)
    assert not any(n.op_type == "DequantizeLinear" and n.weight_bytes > 100 for n in graph.nodes)


def test_weight_only_qdq_matmul_computes_in_the_activation_type(tmp_path):
    node = _only(analyze(_qdq_matmul(tmp_path / "w.onnx", False), {}), "MatMul")
    assert node.precision == "fp32"
    assert node.weight_bytes == 8 * 16 + 16 * 4 + 16
    assert node.input_bytes == 4 * 8 * 4


def test_quantized_zeros_are_weights_equal_to_the_zero_point(tmp_path):
    w = np.full((8, 16), 5, np.int8)
    w[:, :4] = -2  # the zero point: a quarter of the weights are zero
    path = _save(
        tmp_path / "mi.onnx",
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["y"]),
        ],
        [("x", [4, 8])],
        [("w", w), ("wz", np.full(16, -2, np.int8))],
    )
    graph = analyze(path, {})
    node = _only(graph, "MatMulInteger")
    assert node.precision == "int8" and node.macs == 4 * 8 * 16
    assert node.weight_bytes == 8 * 16 + 16
    assert node.sparsity == pytest.approx(0.25)
    assert _only(graph, "DynamicQuantizeLinear").flops == 5 * 4 * 8


PATTERN = (np.arange(8)[:, None] % 4 < 2) * np.ones((8, 8))  # rows 0,1 of every 4 are non-zero


@pytest.mark.parametrize(
    ("op", "weight", "two_four"),
    [
        ("MatMul", PATTERN, True),  # [K, N]: groups along K
        ("MatMul", PATTERN.T, False),  # the pattern along N
        ("Gemm", PATTERN.T, True),  # transB=1: [N, K], groups along K
        ("Gemm", PATTERN, False),
        ("Conv", PATTERN.T.reshape(8, 8, 1, 1), True),  # [O, I, 1, 1]: groups along I
        ("Conv", PATTERN.reshape(8, 8, 1, 1), False),
    ],
)
def test_two_four_runs_along_the_reduction_axis(tmp_path, op, weight, two_four):
    attrs = {"transB": 1} if op == "Gemm" else {}
    shape = [2, 8, 3, 3] if op == "Conv" else [2, 8]
    path = _save(
        tmp_path / "s.onnx",
        [helper.make_node(op, ["x", "w"], ["y"], **attrs)],
        [("x", shape)],
        [("w", weight.astype(np.float32))],
    )
    node = analyze(path, {}).nodes[0]
    assert node.sparsity == pytest.approx(0.5)
    assert node.nm_2_4 is two_four


def test_two_four_pattern_on_a_3x3_conv_kernel(tmp_path):
    w = np.zeros((4, 8, 3, 3), np.float32)
    w[:, [1, 3, 4, 6]] = 1.0  # two of each four input channels, at every kernel position
    path = _save(
        tmp_path / "k.onnx",
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        [("x", [1, 8, 5, 5])],
        [("w", w)],
    )
    node = analyze(path, {}).nodes[0]
    assert node.nm_2_4 and node.sparsity == pytest.approx(0.5)


def test_weights_in_an_external_data_file_are_read(tmp_path):
    path = _save(
        tmp_path / "in.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", [2, 8])],
        [("w", PATTERN.astype(np.float32))],
    )
    external = tmp_path / "ext" / "model.onnx"
    external.parent.mkdir()
    onnx.save(
        onnx.load(path), external, save_as_external_data=True, location="w.bin", size_threshold=0
    )
    assert (tmp_path / "ext" / "w.bin").exists()
    node = analyze(external, {}).nodes[0]
    assert node.weight_bytes == 8 * 8 * 4 and node.nm_2_4 and node.sparsity == 0.5


def test_unstructured_half_sparsity_is_not_two_four(tmp_path):
    w = np.ones((8, 8), np.float32)
    w[:4] = 0  # half the weights zero, but the other four of each column all non-zero
    path = _save(
        tmp_path / "u.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", [2, 8])],
        [("w", w)],
    )
    node = analyze(path, {}).nodes[0]
    assert node.sparsity == pytest.approx(0.5) and not node.nm_2_4


def _attention_inputs(b=2, s=16, d=32):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(d, 3 * d)).astype(np.float32)
    return [("x", [b, s, d])], [("w", w), ("bias", np.zeros(3 * d, np.float32))]


def test_contrib_attention_counts_projection_and_both_attention_matmuls(tmp_path):
    inputs, inits = _attention_inputs()
    node = helper.make_node("Attention", ["x", "w", "bias"], ["y"], domain="com.microsoft")
    node.attribute.append(helper.make_attribute("num_heads", 4))
    path = _save(tmp_path / "a.onnx", [node], inputs, inits, [("y", FLOAT)], ms=True)
    (cost,) = analyze(path, {}).nodes
    b, s, d, heads, head_dim = 2, 16, 32, 4, 8
    qk_av = 2 * b * heads * s * s * head_dim
    assert cost.macs == b * s * d * 3 * d + qk_av == 98304 + 32768
    assert cost.flops == 2 * cost.macs + b * s * 3 * d + ATTENTION_SCORE_FLOPS * b * heads * s * s
    assert cost.matmul_dims == (b * s, d, 3 * d)
    assert cost.output_bytes == b * s * d * 4
    import onnxruntime as ort  # the graph is one ORT really runs

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.zeros((b, s, d), np.float32)})[0].shape == (b, s, d)


def test_int8_contrib_attention_and_multi_head_attention(tmp_path):
    qattn = helper.make_node(
        "QAttention",
        ["xq", "wq", "bias", "xs", "ws", "", "xz", "wz"],
        ["y"],
        domain="com.microsoft",
        num_heads=4,
    )
    mha = helper.make_node(
        "MultiHeadAttention", ["q", "k", "v"], ["z"], domain="com.microsoft", num_heads=4
    )
    inits = [
        ("wq", np.zeros((32, 96), np.int8)),
        ("bias", np.zeros(96, np.float32)),
        ("ws", np.float32(0.1)),
        ("wz", np.int8(0)),
    ]
    inputs = [
        ("xq", [2, 16, 32], TensorProto.UINT8),
        ("xs", [], FLOAT),
        ("xz", [], TensorProto.UINT8),
        ("q", [2, 16, 32]),
        ("k", [2, 24, 32]),
        ("v", [2, 24, 32]),
    ]
    path = _save(tmp_path / "q.onnx", [qattn, mha], inputs, inits, ("y", "z"), ms=True)
    q, m = analyze(path, {}).nodes
    assert q.precision == "int8" and q.macs == 98304 + 32768
    assert q.output_bytes == 2 * 16 * 32 * 4  # float output
    assert q.sparsity == 1.0 and q.weight_bytes == 32 * 96 + 96 * 4 + 4 + 1
    assert m.macs == 2 * 16 * 24 * (32 + 32)  # QK^T and AV over 24 keys, no projection
    assert m.matmul_dims == (2 * 4 * 16, 8, 24) and m.precision == "fp32"


@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
def test_int4_weight_only_computes_in_float_with_packed_weight_bytes(tmp_path, quant_format):
    """ORT's 4-bit weight-only quantizer: MatMulNBits (QOperator) or DQ(int4) -> MatMul."""
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    w = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    path = _save(
        tmp_path / "f.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", ["b", 64])],
        [("w", w)],
    )
    config = DefaultWeightOnlyQuantConfig(
        block_size=32, is_symmetric=False, quant_format=getattr(QuantFormat, quant_format)
    )
    quantizer = MatMulNBitsQuantizer(onnx.load(path), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(tmp_path / "q.onnx"))
    (node,) = [n for n in analyze(tmp_path / "q.onnx", {"x": (4, 64)}).nodes if n.macs]
    assert node.op_type == ("MatMulNBits" if quant_format == "QOperator" else "MatMul")
    assert node.macs == 4 * 64 * 32 and node.matmul_dims == (4, 64, 32)
    assert node.precision == "fp32"
    # 4-bit weights + one fp32 scale and one 4-bit zero point per block of 32
    assert node.weight_bytes == 64 * 32 // 2 + 2 * 32 * 4 + 2 * 32 // 2


def test_einsum_and_dynamic_quantize_matmul(tmp_path):
    dqmm = helper.make_node(
        "DynamicQuantizeMatMul", ["x", "wq", "ws", "wz"], ["z"], domain="com.microsoft"
    )
    path = _save(
        tmp_path / "e.onnx",
        [helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik"), dqmm],
        [("a", [2, 3, 4]), ("b", [2, 4, 5]), ("x", [4, 8])],
        [
            ("wq", np.ones((8, 16), np.int8)),
            ("ws", np.ones(16, np.float32)),
            ("wz", np.zeros(16, np.int8)),
        ],
        outputs=("y", "z"),
        ms=True,
    )
    einsum, matmul = analyze(path, {}).nodes
    assert einsum.macs == 2 * 3 * 4 * 5 and einsum.matmul_dims == (6, 4, 5)
    assert matmul.macs == 4 * 8 * 16 and matmul.precision == "int8"
    assert matmul.output_bytes == 4 * 16 * 4  # float output
    assert matmul.weight_bytes == 8 * 16 + 16 * 4 + 16


def test_symbolic_dims_must_be_fixed(tmp_path):
    path = _gemm_model(tmp_path / "g.onnx")
    with pytest.raises(ValueError, match="'a'.*input_shapes"):
        analyze(path, {})
    with pytest.raises(ValueError, match="'b'"):
        analyze(path, {"a": (1, 5), "b": (1,)})
    with pytest.raises(ValueError, match="dim 1 is 5"):
        analyze(path, {"a": (1, 6)})


def test_unknown_op_without_shape_rule_raises_clearly(tmp_path):
    node = helper.make_node("NoSuchOp", ["x"], ["h"], domain="com.example", name="mystery")
    path = _save(
        tmp_path / "u.onnx",
        [node, helper.make_node("Relu", ["h"], ["y"])],
        [("x", [2, 8])],
    )
    m = onnx.load(path)
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(m, path)
    with pytest.raises(ValueError, match="mystery.*NoSuchOp"):
        analyze(path, {})


# --- digits-cnn through autoaccel's own exporter and quantizer ----------------------------

DIGITS_MACS = (
    16 * 8 * 8 * 1 * 3 * 3  # conv 1 -> 16, 3x3, padding 1 on 8x8
    + 32 * 8 * 8 * 16 * 3 * 3  # conv 16 -> 32
    + 32 * 4 * 4 * 64  # dense 512 -> 64 after the 2x2 max-pool
    + 64 * 10  # dense 64 -> 10
)
DIGITS_PARAMS = (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 64 + 64) + (64 * 10 + 10)


@pytest.fixture(scope="module")
def digits_models(tmp_path_factory) -> dict[str, Path]:
    """The digits CNN (untrained weights: counts do not depend on them), exported and
    quantized by autoaccel's own build steps."""
    from autoaccel.builder.onnx_export import export_onnx
    from autoaccel.techniques.base import BuildContext, Candidate
    from autoaccel.techniques.quantize import Quantize
    from autoaccel.workloads.digits import DigitsCNN

    folder = tmp_path_factory.mktemp("digits")
    workload = DigitsCNN(folder)
    paths = {"fp32": folder / "fp32.onnx"}
    export_onnx(workload._build(), workload, paths["fp32"])
    fp32 = Candidate(backend="onnxruntime", onnx_path=paths["fp32"])
    configs = {
        "fp16": {"mode": "fp16"},
        "int8_dynamic": {"mode": "int8_dynamic", "per_channel": True},
        "int8_static": {"mode": "int8_static", "per_channel": True, "calibration": "minmax"},
    }
    for name, config in configs.items():
        (folder / name).mkdir()
        made = Quantize().apply(fp32, config, BuildContext(workload, folder / name))
        paths[name] = made.onnx_path
    return paths


def test_digits_cnn_fp32_macs_match_the_architecture(digits_models):
    graph = analyze(digits_models["fp32"], {"x": (1, 1, 8, 8)})
    assert graph.macs == DIGITS_MACS == 337536
    assert graph.weight_bytes == 4 * DIGITS_PARAMS
    assert analyze(digits_models["fp32"], {"x": (64, 1, 8, 8)}).macs == 64 * DIGITS_MACS


@pytest.mark.parametrize(
    ("mode", "precisions", "matrix_ops"),
    [
        ("fp16", {"fp16"}, {"Conv", "Gemm"}),
        ("int8_dynamic", {"int8"}, {"ConvInteger", "MatMulInteger"}),
        ("int8_static", {"int8"}, {"Conv", "Gemm"}),
    ],
)
def test_digits_cnn_quantized_precisions(digits_models, mode, precisions, matrix_ops):
    graph = analyze(digits_models[mode], {"x": (1, 1, 8, 8)})
    assert graph.macs == DIGITS_MACS
    assert graph.precisions() == precisions
    assert {n.op_type for n in graph.nodes if n.macs} == matrix_ops
    if mode == "fp16":
        assert graph.weight_bytes == 2 * DIGITS_PARAMS
    else:  # int8 weights plus scales / zero points (and int32 biases): well under fp32's
        assert graph.weight_bytes < 0.3 * 4 * DIGITS_PARAMS


@pytest.mark.slow
def test_minilm_fused_and_int8_graphs_count_the_same_matmuls(tmp_path_factory):
    """all-MiniLM-L6-v2 at seq 128: 6 layers x (QKV + output 384x384, FFN 384x1536x2,
    QK^T and AV of 12 heads x 32) by hand, whether fused into Attention or quantized."""
    from autoaccel.builder import build_candidate
    from autoaccel.workloads import load_workload

    cache = tmp_path_factory.mktemp("minilm")
    workload = load_workload("minilm", cache)
    shapes = {k: v.shape for k, v in workload.latency_inputs(1).items()}
    s, h, ffn = 128, 384, 1536
    per_layer = 4 * s * h * h + 2 * s * h * ffn + 2 * 12 * s * s * 32
    recipes = {
        "fp32": ({}, {"fp32"}),
        "fused": ({"compile.fusion": True}, {"fp32"}),
        "int8": ({"compile.fusion": True, "quantize.mode": "int8_dynamic"}, {"int8"}),
    }
    for name, (recipe, precisions) in recipes.items():
        candidate = build_candidate({"runtime.backend": "onnxruntime", **recipe}, workload, cache)
        graph = analyze(candidate.onnx_path, shapes)
        assert graph.macs == 6 * per_layer == 1_434_451_968, name
        assert graph.precisions() == precisions, name


@pytest.mark.parametrize("name", ["seed_mlp", "digits_cnn"])
def test_onnx_shape_inference_fast_path_counts_what_the_symbolic_one_does(
    request, cache_dir, monkeypatch, name
):
    import autoaccel.targets.graph as graph_mod
    import autoaccel.targets.graph_shapes as shapes_mod
    from autoaccel.builder import build_candidate

    workload = request.getfixturevalue(name)
    path = build_candidate({"runtime.backend": "onnxruntime"}, workload, cache_dir).onnx_path
    shapes = {k: tuple(v.shape) for k, v in workload.latency_inputs(1).items()}
    model = onnx.load(str(path))
    shapes_mod.fix_input_shapes(model, shapes)
    assert shapes_mod._onnx_shapes(model) is not None  # plain ops: the fast path resolves it
    fast = analyze(path, shapes)
    monkeypatch.setattr(graph_mod, "infer_shapes", shapes_mod._symbolic_shapes)
    assert analyze(path, shapes) == fast
