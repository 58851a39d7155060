"""Which matrix products of a graph lose most to int8 dynamic quantization, measured on the
workload's calibration batches: the ones `quantize.float_share` keeps in fp32.

Dynamic int8 quantizes each product's input per tensor at run time and its weight per channel
ahead of time. The error it adds depends on the input's range: a product fed by a GELU (a
transformer's FFN output projection) sees rare large activations that stretch the one scale
over every value. On MiniLM on an AVX2 EPYC (`benchmarks/results/int8-mixed.md`), int8
dynamic everywhere kept teacher cosine 0.988 on held-out single words; with 15 % of the
products in fp32 (four FFN output projections, a value and an FFN input on the unfused graph)
0.9935, at 16.2 ms against all-int8's 14.8 and ORT fp32's 21.3; on the fused graph 0.9914 at
14.4 ms (1.48x ORT fp32). The ranking here is by the product's own relative output
error with both operands rounded the way ONNX Runtime rounds them, on real activations, so it
needs no names and no model family.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def quantizable_products(model: Any) -> list[Any]:
    """MatMul / Gemm nodes with a constant 2-D weight: what `quantize_dynamic` quantizes."""
    weights = {i.name: i for i in model.graph.initializer if len(i.dims) == 2}
    return [
        n
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights
    ]


def most_sensitive(src: Path, batches: list[dict], share: float) -> list[str]:
    """Names of the `share` (rounded up) of quantizable products whose output int8 dynamic
    changes most, on `batches`, the worst first."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(src))
    nodes = quantizable_products(model)
    keep = math.ceil(share * len(nodes)) if share > 0 else 0
    if keep == 0 or not nodes:
        return []
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    wanted = list(dict.fromkeys(n.input[0] for n in nodes))  # the products' inputs, nothing
    for name in wanted:  # else (a graph's own outputs may be maps: skl2onnx's ZipMap)
        if name not in outputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    inputs = {i.name for i in session.get_inputs()}
    seen: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        feeds = {k: v for k, v in batch.items() if k in inputs}
        for name, value in zip(wanted, session.run(wanted, feeds), strict=True):
            seen.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
    errors = {}
    for node in nodes:
        weight = weights[node.input[1]].astype(np.float32)
        if node.op_type == "Gemm" and _transposed_b(node):
            weight = weight.T
        x = np.concatenate([a.reshape(-1, a.shape[-1]) for a in seen[node.input[0]]])
        errors[node.name] = relative_error(x, weight)
    return sorted(errors, key=lambda n: -errors[n])[:keep]


def relative_error(x: np.ndarray, weight: np.ndarray) -> float:
    """Mean over rows (tokens) of ||x w - q(x) q(w)|| / ||x w||: `x` rounded to uint8 over its
    whole range (asymmetric, per tensor, as dynamic quantization does at run time), `weight` to
    int8 per output column (symmetric). Per row, so a few large rows that quantize well do not
    hide the many small ones the shared scale rounds away."""
    exact = x @ weight
    error = np.linalg.norm(exact - _uint8(x) @ _int8_columns(weight), axis=1)
    size = np.linalg.norm(exact, axis=1)
    return float(np.mean(error / np.where(size > 0, size, 1.0)))


def _uint8(x: np.ndarray) -> np.ndarray:
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _int8_columns(weight: np.ndarray) -> np.ndarray:
    scale = np.abs(weight).max(axis=0, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(weight / scale), -127, 127) * scale


def _transposed_b(node: Any) -> bool:
    return any(a.name == "transB" and a.i for a in node.attribute)
