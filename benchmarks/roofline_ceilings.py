"""The floors each layer of a recipe is held against, measured on this machine with the
recipe's thread count and OpenVINO settings (kernel time from the performance counters, so
the runtime's per-call cost is not charged to a layer; best of 3 medians):
- a matrix layer: its product alone, a one-layer graph of that M x K x N in the layer's
  precision (small products stay well under the peak of large ones), and back to back, all
  the model's products with weights of their own and nothing else between them (the model's
  weight footprint in cache, none of its post-ops or other layers);
- any other layer: the on-chip rate of a streaming element-wise layer (an f32 Add of two
  tensors the size the model's own non-matrix layers move);
- the run: the latency of a one-layer model, the runtime's own cost per call.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from math import prod
from pathlib import Path
from typing import Any

from roofline_layers import FC_TYPES, ov_layers


def _time_layers(
    core, path: Path, config: dict[str, Any], feeds, runs: int = 400, rounds: int = 3
):
    """Kernel µs per layer type of a micro graph: performance counters, not wall clock, so
    the runtime's per-inference cost is not charged to the layer; the best of `rounds`
    medians, as a ceiling is what the layer reaches when the shared machine lets it."""
    import openvino.properties as props

    config = {**config, props.enable_profiling: True}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    for _ in range(50):
        request.infer(feeds)
    best: dict[str, float] = {}
    for _ in range(rounds):
        by_type: dict[str, float] = defaultdict(float)
        for layer in ov_layers(compiled, request, feeds, runs):
            by_type[layer["type"]] += layer["us"]
        best = {t: min(us, best.get(t, us)) for t, us in by_type.items()}
    return best


def _run_ms(core, path: Path, config: dict[str, Any], feeds) -> float:
    """Protocol latency of a one-layer model with the recipe's settings: the runtime's own
    cost per inference, which every model pays on top of its layers."""
    from autoaccel.evaluate.measure import MeasureConfig, measure

    request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
    return measure(
        lambda: request.infer(feeds, share_inputs=True), MeasureConfig().scaled(0.3)
    ).median_ms


def _typical_elements(layers: list[dict[str, Any]]) -> int:
    """The median f32 elements a non-matrix layer moves per operand (at least 1024): the
    size the on-chip rate is measured at, so it sits in the cache level the model's own
    element-wise layers use."""
    sizes = sorted(layer["bytes"] // 12 for layer in layers if not layer["dims"])
    return max(1024, int(sizes[len(sizes) // 2]) if sizes else 128 * 384)


def ceilings(layers: list[dict[str, Any]], session: dict[str, Any]) -> dict[str, Any]:
    """Measured ceilings with the recipe's settings: GFLOP/s of each distinct (precision,
    M x K x N) product alone and of each matrix layer's product back to back with the
    others, the on-chip GB/s of a streaming element-wise layer, and the latency of a
    one-layer model (the runtime's own cost per call)."""
    import numpy as np
    import onnx

    from autoaccel.evaluate.runners import _ov_core, ov_config
    from autoaccel.targets.calibration_microbenchmarks import (
        add_chain_builder,
        fp32_matmul_builder,
        qdq_matmul_builder,
    )

    core, rng, config = _ov_core(), np.random.default_rng(0), ov_config(session)
    shapes = sorted({(layer["precision"], layer["dims"]) for layer in layers if layer["dims"]})
    out: dict[str, Any] = {"product_gflops": {}, "onchip_gbps": None}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (precision, dims) in enumerate(shapes):
            if len(dims) != 3 or precision not in ("int8", "bf16", "fp32"):
                continue
            build = qdq_matmul_builder if precision == "int8" else fp32_matmul_builder
            model, feeds = build(*dims)(rng)
            path = Path(tmp) / f"p{i}.onnx"
            onnx.save(model, str(path))
            by_type = _time_layers(core, path, config, feeds)
            matrix_us = sum(us for t, us in by_type.items() if t in FC_TYPES | {"MatMul"})
            if matrix_us:
                key = f"{precision} {'x'.join(map(str, dims))}"
                out["product_gflops"][key] = 2 * prod(dims) / (matrix_us * 1e-6) / 1e9
        sequence = _sequence_rates(core, config, layers, rng, Path(tmp))
        if sequence:
            out["sequence_gflops"] = sequence
        size = _typical_elements(layers)
        model, feeds = add_chain_builder(1, size)(rng)
        path = Path(tmp) / "add.onnx"
        onnx.save(model, str(path))
        us = sum(
            _time_layers(core, path, {**config, "INFERENCE_PRECISION_HINT": "f32"}, feeds).values()
        )
        out["one_layer_run_ms"] = _run_ms(core, path, config, feeds)
        if us:  # one layer (OpenVINO runs the Add as an element-wise Subgraph)
            out["onchip_gbps"] = 3 * size * 4 / (us * 1e-6) / 1e9
            out["onchip_micro"] = f"f32 Add of two {size}-element tensors (kernel time)"
    return out


def _products_graph(products: list[tuple[str, tuple[int, int, int]]], rng):
    """The model's matrix products in its order, each with a weight of its own and nothing
    else between them: int8 ones as QDQ MatMuls (OpenVINO runs them as int8
    FullyConnected), the others as float MatMuls. Inputs are shared per (M, K)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    scale = [numpy_helper.from_array(np.array(v, t), n) for v, t, n in (
        (0.05, np.float32, "s"), (128, np.uint8, "z"), (0.01, np.float32, "ws"),
        (0, np.int8, "wz"))]  # fmt: skip
    nodes, inits, inputs, feeds, outputs = [], list(scale), [], {}, []  # outputs: names
    for i, (precision, (m, k, n)) in enumerate(products):
        x = f"x{m}_{k}"
        if x not in feeds:
            feeds[x] = rng.standard_normal((m, k), dtype=np.float32)
            inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, [m, k]))
        if precision == "int8":
            w = rng.integers(-127, 128, (k, n), dtype=np.int8)
            inits.append(numpy_helper.from_array(w, f"w{i}"))
            nodes += [
                helper.make_node("QuantizeLinear", [x, "s", "z"], [f"q{i}"]),
                helper.make_node("DequantizeLinear", [f"q{i}", "s", "z"], [f"d{i}"]),
                helper.make_node("DequantizeLinear", [f"w{i}", "ws", "wz"], [f"wd{i}"]),
                helper.make_node("MatMul", [f"d{i}", f"wd{i}"], [f"m{i}"], name=f"p{i}"),
                helper.make_node("QuantizeLinear", [f"m{i}", "s", "z"], [f"o{i}"]),
                helper.make_node("DequantizeLinear", [f"o{i}", "s", "z"], [f"y{i}"]),
            ]
        else:
            w = rng.standard_normal((k, n), dtype=np.float32) * 0.03
            inits.append(numpy_helper.from_array(w, f"w{i}"))
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"y{i}"], name=f"p{i}"))
        # each product ends in a one-number summary, so its output is an intermediate
        # tensor whose memory the runtime reuses, as in the model (graph outputs are not)
        nodes.append(helper.make_node("ReduceMax", [f"y{i}"], [f"r{i}"], keepdims=1))
        outputs.append(f"r{i}")
    nodes.append(helper.make_node("Concat", outputs, ["out"], axis=0))
    out = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [len(products), 1])]
    graph = helper.make_graph(nodes, "products", inputs, out, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, feeds


def _sequence_rates(core, config, layers, rng, tmp: Path, rounds: int = 3) -> dict[str, float]:
    """GFLOP/s per layer name of the model's products run back to back (`_products_graph`):
    what its FullyConnected kernels reach with the model's weight footprint (weights that do
    not all stay in L2) but without its other layers and post-ops. Best of `rounds` medians."""
    import onnx
    import openvino.properties as props

    matrix = [
        layer for layer in layers
        if layer["dims"] and layer["precision"] in ("int8", "bf16", "fp32")
    ][:400]  # fmt: skip
    if not matrix:
        return {}
    model, feeds = _products_graph([(x["precision"], x["dims"]) for x in matrix], rng)
    path = tmp / "products.onnx"
    onnx.save(model, str(path))
    compiled = core.compile_model(
        core.read_model(str(path)), "CPU", {**config, props.enable_profiling: True}
    )
    request = compiled.create_infer_request()
    for _ in range(20):
        request.infer(feeds)
    best: dict[str, float] = {}
    for _ in range(rounds):
        for layer in ov_layers(compiled, request, feeds, 100):
            for name in [layer["name"], *layer["original"]]:
                if name.startswith("p") and name[1:].isdigit() and layer["dims"]:
                    best[name] = min(layer["us"], best.get(name, layer["us"]))
    return {
        matrix[int(name[1:])]["name"]: matrix[int(name[1:])]["gflop"] / (us * 1e-6)
        for name, us in best.items()
        if us > 0
    }
