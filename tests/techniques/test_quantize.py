"""Quantization on digits-cnn (and int4 also on seed-mlp): what lands in the real ONNX graph,
and that it still works."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from autoaccel.builder import build_candidate
from autoaccel.errors import InfeasibleRecipe
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.techniques import BuildContext, Candidate, config_of, describe_recipe
from autoaccel.techniques.quantize import Quantize, _gemm_to_matmul

_FLOAT_FILE = SimpleNamespace(onnx_model=lambda: None)
"""A workload stand-in whose model is no given (possibly quantized) ONNX file."""

FAST = MeasureConfig().scaled(0.05)
ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}
RECIPES = {
    "fp16": {"quantize.mode": "fp16"},
    "dynamic-per-channel": {"quantize.mode": "int8_dynamic", "quantize.per_channel": True},
    "dynamic-per-tensor": {"quantize.mode": "int8_dynamic", "quantize.per_channel": False},
    **{
        f"static-{method}": {
            "quantize.mode": "int8_static",
            "quantize.per_channel": True,
            "quantize.calibration": method,
        }
        for method in ("minmax", "entropy", "percentile")
    },
    "static-per-tensor": {
        "quantize.mode": "int8_static",
        "quantize.per_channel": False,
        "quantize.calibration": "minmax",
    },
    "nncf": {"quantize.mode": "int8_nncf"},
    "int4-default": {"quantize.mode": "int4_weight"},
    "int4-b128-asym-int8": {
        "quantize.mode": "int4_weight",
        "quantize.block_size": 128,
        "quantize.symmetric": False,
        "quantize.accuracy_level": 4,
    },
}


@pytest.fixture(scope="module")
def built(digits_cnn, cache_dir):
    """Every candidate of this module, built once: name -> (candidate, loaded ONNX model)."""
    out = {}
    for name, recipe in {"fp32": {"quantize.mode": "none"}, **RECIPES}.items():
        candidate = build_candidate({**ORT, **recipe}, digits_cnn, cache_dir)
        out[name] = (candidate, onnx.load(str(candidate.onnx_path)))
    return out


@pytest.fixture(scope="module")
def fp32_accuracy(built, digits_cnn) -> float:
    return evaluate_candidate(built["fp32"][0], digits_cnn, FAST).quality["accuracy"]


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def _ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


def _weight_scale_sizes(model: onnx.ModelProto) -> list[int]:
    """Elements in the scale (QDQ) or zero point (integer ops) of every int8 weight."""
    inits = _inits(model)
    sizes = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            weight, qparam = node.input[0], node.input[1]
        elif node.op_type in ("MatMulInteger", "ConvInteger") and len(node.input) > 3:
            weight, qparam = node.input[1], node.input[3]
        else:
            continue
        if weight in inits and inits[weight].data_type == TensorProto.INT8:
            sizes.append(numpy_helper.to_array(inits[qparam]).size)
    return sizes


def test_fp16_stores_every_float_initializer_as_float16(built):
    candidate, model = built["fp16"]
    types = {i.data_type for i in model.graph.initializer}
    assert types == {TensorProto.FLOAT16}
    assert candidate.onnx_path != built["fp32"][0].onnx_path


@pytest.mark.parametrize("name", ["dynamic-per-channel", "dynamic-per-tensor"])
def test_int8_dynamic_graph_has_integer_ops_with_int8_weights(built, name):
    _, model = built[name]
    ops = _ops(model)
    assert "DynamicQuantizeLinear" in ops
    assert ops & {"MatMulInteger", "ConvInteger"}
    assert "Gemm" not in ops and "Conv" not in ops  # every layer runs in integer arithmetic
    assert _weight_scale_sizes(model), "no int8 weight found"


@pytest.mark.parametrize(
    "name", ["static-minmax", "static-entropy", "static-percentile", "static-per-tensor", "nncf"]
)
def test_int8_static_graph_has_qdq_nodes_with_int8_weights(built, name):
    _, model = built[name]
    ops = _ops(model)
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8 = [i.name for i in model.graph.initializer if i.data_type == TensorProto.INT8]
    dq_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    # the four layers' weights (2 conv, 2 dense) are int8 and dequantized in the graph
    assert len(set(int8) & dq_inputs) == 4


@pytest.mark.parametrize(
    "name", ["dynamic-per-channel", "static-minmax", "static-entropy", "static-percentile", "nncf"]
)
def test_per_channel_gives_a_weight_more_than_one_scale(built, name):
    assert max(_weight_scale_sizes(built[name][1])) > 1


@pytest.mark.parametrize("name", ["dynamic-per-tensor", "static-per-tensor"])
def test_per_tensor_gives_every_weight_one_scale(built, name):
    assert set(_weight_scale_sizes(built[name][1])) == {1}


def test_calibration_methods_give_different_activation_scales(built):
    def activation_scales(model):
        inits = _inits(model)
        return np.array(
            [
                numpy_helper.to_array(inits[n.input[1]]).item()
                for n in model.graph.node
                if n.op_type == "QuantizeLinear"
            ]
        )

    minmax = activation_scales(built["static-minmax"][1])
    percentile = activation_scales(built["static-percentile"][1])
    assert minmax.shape == percentile.shape
    assert not np.allclose(minmax, percentile)


@pytest.mark.parametrize("name", list(RECIPES))
def test_quantized_candidate_runs_in_ort_within_005_of_fp32(
    built, digits_cnn, fp32_accuracy, name
):
    candidate, _ = built[name]
    evaluation = evaluate_candidate(candidate, digits_cnn, FAST)
    assert fp32_accuracy > 0.9
    assert abs(evaluation.quality["accuracy"] - fp32_accuracy) <= 0.05
    assert evaluation.latency.n_runs >= FAST.min_runs
    assert evaluation.size_mb > 0


def test_int8_candidates_are_smaller_files_than_fp32(built):
    fp32 = built["fp32"][0].onnx_path.stat().st_size
    for name in ("dynamic-per-tensor", "static-minmax", "nncf"):
        assert built[name][0].onnx_path.stat().st_size < fp32 / 2


def test_quantize_applies_when_recipe_leaves_backend_at_its_default(digits_cnn, cache_dir):
    candidate = build_candidate({"quantize.mode": "int8_dynamic"}, digits_cnn, cache_dir)
    assert "DynamicQuantizeLinear" in _ops(onnx.load(str(candidate.onnx_path)))


# --- int4 weight-only (MatMulNBits) ---------------------------------------------------------

INT4 = {"quantize.mode": "int4_weight"}
INT4_VARIANTS = {
    "default": {},
    "block64": {"quantize.block_size": 64},
    "block128": {"quantize.block_size": 128},
    "asymmetric": {"quantize.symmetric": False},
    "int8-compute": {"quantize.accuracy_level": 4},
}


@pytest.fixture(scope="module")
def int4_mlp(seed_mlp, cache_dir):
    """seed-mlp (two Gemm layers 64->64->10) as fp32 and every int4 variant: name -> model."""
    out = {"fp32": build_candidate({**ORT, "quantize.mode": "none"}, seed_mlp, cache_dir)}
    for name, params in INT4_VARIANTS.items():
        out[name] = build_candidate({**ORT, **INT4, **params}, seed_mlp, cache_dir)
    return out


def _nbits(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "MatMulNBits"]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _run(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_int4_params_exist_only_in_int4_mode():
    names = {p.name: p for p in Quantize().params(None)}
    assert names["block_size"].choices == (32, 64, 128) and names["block_size"].default == 32
    assert names["symmetric"].default is True
    assert names["accuracy_level"].choices == (0, 4)
    int4 = config_of(Quantize(), {"runtime.backend": "onnxruntime", **INT4}, workload=_FLOAT_FILE)
    assert int4 == {
        "mode": "int4_weight",
        "block_size": 32,
        "symmetric": True,
        "accuracy_level": 0,
    }
    int8 = config_of(Quantize(), {"quantize.mode": "int8_dynamic"}, workload=_FLOAT_FILE)
    assert not {"block_size", "symmetric", "accuracy_level"} & set(int8)


def test_int4_describe_names_block_symmetry_compute_and_what_stays_fp32():
    text = describe_recipe(
        {
            **INT4,
            "quantize.block_size": 64,
            "quantize.symmetric": False,
            "quantize.accuracy_level": 4,
        }
    )
    assert "int4 weight-only MatMul, block 64, asymmetric, int8 compute" in text
    assert "stay fp32" in text


@pytest.mark.parametrize("workload", ["seed_mlp", "digits_cnn"])
def test_int4_turns_every_gemm_into_matmulnbits_without_fp32_weight_copies(
    request, cache_dir, workload
):
    wl = request.getfixturevalue(workload)
    fp32 = onnx.load(
        str(build_candidate({**ORT, "quantize.mode": "none"}, wl, cache_dir).onnx_path)
    )
    candidate = build_candidate({**ORT, **INT4}, wl, cache_dir)
    model = onnx.load(str(candidate.onnx_path))
    gemm_weights = {n.input[1] for n in fp32.graph.node if n.op_type == "Gemm"}
    assert len(gemm_weights) == 2
    assert "Gemm" not in _ops(model) and "MatMul" not in _ops(model)
    assert len(_nbits(model)) == 2
    inits = _inits(model)
    assert not gemm_weights & set(inits)
    # the only 2-D+ float initializers left: Conv kernels and MatMulNBits' block scales
    scales = {n.input[2] for n in _nbits(model)}
    conv = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    floats = {
        i.name
        for i in model.graph.initializer
        if i.data_type == TensorProto.FLOAT and len(i.dims) > 1
    }
    assert floats <= scales | conv
    assert "2 MatMul weights to int4 (2 from Gemm)" in candidate.notes[-1]


def test_int4_packed_weights_are_8x_smaller_than_fp32(int4_mlp):
    model = onnx.load(str(int4_mlp["default"].onnx_path))
    inits = _inits(model)
    for node in _nbits(model):
        k, n = _attrs(node)["K"], _attrs(node)["N"]
        packed = numpy_helper.to_array(inits[node.input[1]])
        scales = numpy_helper.to_array(inits[node.input[2]])
        assert packed.dtype == np.uint8
        assert packed.nbytes * 8 == k * n * 4  # 4 bits a weight (K=64: whole blocks of 32)
        assert scales.size == n * (k // 32)  # one fp32 scale per block of 32 per column
    fp32_bytes = 4 * (64 * 64 + 64 * 10)
    nbits_bytes = sum(inits[n.input[1]].ByteSize() for n in _nbits(model))
    assert nbits_bytes < fp32_bytes / 7


def test_int4_outputs_stay_close_to_fp32(int4_mlp, seed_mlp):
    x = seed_mlp.x_val
    reference = _run(int4_mlp["fp32"].onnx_path, x)
    for name in INT4_VARIANTS:
        out = _run(int4_mlp[name].onnx_path, x)
        assert np.mean(out.argmax(1) == reference.argmax(1)) >= 0.97, name
        assert np.abs(out - reference).mean() < 0.01, name


def test_int4_params_reach_the_matmulnbits_nodes(int4_mlp):
    def attrs(name):
        model = onnx.load(str(int4_mlp[name].onnx_path))
        return model, [_attrs(n) for n in _nbits(model)], [len(n.input) for n in _nbits(model)]

    _, default, inputs = attrs("default")
    assert {a["block_size"] for a in default} == {32} and {a["bits"] for a in default} == {4}
    assert all(a.get("accuracy_level", 0) == 0 for a in default)
    assert set(inputs) == {3}  # symmetric: A, packed B, scales; no zero points
    assert {a["block_size"] for a in attrs("block64")[1]} == {64}
    assert {a["block_size"] for a in attrs("block128")[1]} == {128}
    assert {a["accuracy_level"] for a in attrs("int8-compute")[1]} == {4}
    model, _, inputs = attrs("asymmetric")
    assert set(inputs) == {4}
    zero_points = [_inits(model)[n.input[3]] for n in _nbits(model)]
    assert all(z.data_type == TensorProto.UINT8 for z in zero_points)


def test_int4_each_param_value_builds_its_own_cached_model(int4_mlp, seed_mlp, cache_dir):
    paths = {name: c.onnx_path for name, c in int4_mlp.items()}
    assert len(set(paths.values())) == len(paths)
    explicit = {
        "quantize.block_size": 32,
        "quantize.symmetric": True,
        "quantize.accuracy_level": 0,
    }
    again = build_candidate({**ORT, **INT4, **explicit}, seed_mlp, cache_dir)
    assert again.onnx_path == paths["default"]  # spelled-out defaults: the same cached model


def test_int4_graph_without_a_constant_matmul_weight_is_infeasible(tmp_path, seed_mlp):
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        "no-weights",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 3]),
        ],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
    )
    src = tmp_path / "src.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    config = {"mode": "int4_weight", "block_size": 32, "symmetric": True, "accuracy_level": 0}
    with pytest.raises(InfeasibleRecipe, match="no MatMul .* constant 2-D weight") as err:
        Quantize().apply(
            Candidate(backend="onnxruntime", onnx_path=src),
            config,
            BuildContext(seed_mlp, tmp_path),
        )
    assert "\n" not in str(err.value)
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias", ["none", "initializer", "input"])
def test_gemm_rewrite_to_matmul_add_keeps_the_outputs(tmp_path, trans_b, bias):
    from onnx import helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 5) if trans_b else (5, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 5])]
    gemm_inputs = ["a", "w"]
    if bias == "initializer":
        inits.append(numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "c"))
        gemm_inputs.append("c")
    elif bias == "input":
        inputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [3]))
        gemm_inputs.append("c")
    beta = 1.0 if bias == "input" else 2.0  # a computed bias can only be added as it is
    node = helper.make_node("Gemm", gemm_inputs, ["y"], alpha=0.5, beta=beta, transB=trans_b)
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"a": rng.normal(size=(4, 5)).astype(np.float32)}
    if bias == "input":
        feeds["c"] = rng.normal(size=3).astype(np.float32)

    def run(m):
        import onnxruntime as ort

        path = tmp_path / "m.onnx"
        onnx.save(m, str(path))
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, feeds
        )[0]

    expected = run(model)
    assert _gemm_to_matmul(model.graph) == 1
    assert "Gemm" not in _ops(model) and "MatMul" in _ops(model)
    np.testing.assert_allclose(run(model), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_int4_minilm_fused_keeps_attention_qkv_fp32_and_unfused_quantizes_all(tmp_path_factory):
    """all-MiniLM-L6-v2: fused, 18 MatMuls (attention output, FFN in/out) go int4 and the 6
    Attention nodes keep their fp32 QKV weights; unfused, all 36 projections go int4."""
    from autoaccel.workloads import load_workload

    cache = tmp_path_factory.mktemp("minilm-int4")
    workload = load_workload("minilm", cache)
    batch = workload.calibration_inputs()[0]

    def embed(path):
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {i.name: batch[i.name] for i in sess.get_inputs()})[0]

    reference = None
    for fusion, quantized, attention in ((True, 18, 6), (False, 36, 0)):
        base = {"runtime.backend": "onnxruntime", "compile.fusion": fusion}
        if reference is None:
            reference = embed(build_candidate(base, workload, cache).onnx_path)
        candidate = build_candidate(
            {**base, **INT4, "quantize.accuracy_level": 4}, workload, cache
        )
        model = onnx.load(str(candidate.onnx_path))
        inits = _inits(model)
        assert len(_nbits(model)) == quantized, fusion
        assert not [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
        attn = [n for n in model.graph.node if n.op_type == "Attention"]
        assert len(attn) == attention
        assert all(inits[n.input[1]].data_type == TensorProto.FLOAT for n in attn)
        cosine = np.sum(embed(candidate.onnx_path) * reference, axis=1)  # unit-length rows
        assert cosine.min() > 0.95, (fusion, cosine.min())
