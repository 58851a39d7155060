"""What each executed layer of an OpenVINO-compiled model is and how long it takes: its time
(performance counters, the median of profiled runs), its shapes and element types (the
runtime model), its matrix FLOPs from its own shapes and the bytes it reads and writes.

FLOPs of FullyConnected / MatMul / Convolution layers come from their own shapes; the
activation products fused into other layers (the attention `Subgraph`) get the rest of the
ONNX graph's matrix FLOPs, shared among the layers whose original ONNX nodes include a matrix
node (OpenVINO's `originalLayersNames`). Used by roofline.py; `roofline_ceilings` measures
what each layer could reach, `roofline_explain` holds the two side by side.
"""

from __future__ import annotations

from collections import defaultdict
from math import prod
from typing import Any

FC_TYPES = {"FullyConnected", "FullyConnectedCompressed", "FullyConnectedQuantizedLegacy"}
CONV_TYPES = {"Convolution", "GroupConvolution", "Deconvolution"}
PRECISION = {"i8": "int8", "u8": "int8", "bf16": "bf16", "f32": "fp32", "f16": "fp16"}


def _static(shape) -> list[int] | None:
    return [int(d) for d in shape.to_shape()] if shape.is_static else None


def _layer(op, us: float) -> dict[str, Any]:
    """One executed runtime-model op: type, exec precision, shapes, bytes, own matrix dims."""
    info = op.get_rt_info()
    kind = info["layerType"].astype(str)
    precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
    ins = [
        (_static(op.input_value(i).get_partial_shape()), op.input_value(i).get_element_type())
        for i in range(op.get_input_size())
    ]
    outs = [
        (_static(op.get_output_partial_shape(i)), op.get_output_element_type(i))
        for i in range(op.get_output_size())
    ]
    if kind == "Gather" and ins:  # a lookup reads the rows it writes, not the whole table
        ins = ins[1:]
        ins += [outs[0]] if outs else []
    nbytes = sum(prod(s) * t.size for s, t in ins + outs if s is not None)
    names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
    layer = {
        "name": op.get_friendly_name(),
        "type": kind,
        "precision": PRECISION.get(precision.lower(), precision.lower()),
        "us": us,
        "bytes": nbytes,
        "original": [n for n in names.split(",") if n],
        "dims": None,
        "gflop": 0.0,
    }
    x, out = ins[0][0] if ins else None, outs[0][0] if outs else None
    if x and out and kind in FC_TYPES:
        layer["dims"] = (prod(out[:-1]), x[-1], out[-1])
    elif x and out and kind == "MatMul" and len(ins) > 1 and len(out) >= 2:
        k = x[-1] if x[-2] == out[-2] else x[-2]
        layer["dims"] = (prod(out[:-1]), k, out[-1])
    elif out and kind in CONV_TYPES and len(ins) > 1 and ins[1][0]:
        w = ins[1][0]  # [Cout, Cin/g, kh, kw] or grouped [g, Cout/g, Cin/g, kh, kw]
        per_out = prod(w[-3:])
        layer["dims"] = (out[0] * prod(out[2:]), per_out, out[1])
    if layer["dims"]:
        layer["gflop"] = 2 * prod(layer["dims"]) / 1e9
    return layer


class LayerTimes:
    """Per-layer kernel times of one compiled model, gathered over as many profiled rounds as
    the caller interleaves with its other timings; each layer's time is the median of all its
    runs (a shared machine's stalls land in a few runs; the median leaves them out)."""

    def __init__(self, compiled, request, feed: dict[str, Any]) -> None:
        self.compiled, self.request, self.feed = compiled, request, feed
        self.times: dict[str, list[float]] = defaultdict(list)

    def profile(self, runs: int) -> None:
        for _ in range(runs):
            self.request.infer(self.feed, share_inputs=True)
            for info in self.request.get_profiling_info():
                if info.status.name == "EXECUTED":
                    self.times[info.node_name].append(info.real_time.total_seconds() * 1e6)

    def layers(self) -> list[dict[str, Any]]:
        import numpy as np

        return [
            _layer(op, float(np.median(self.times[op.get_friendly_name()])))
            for op in self.compiled.get_runtime_model().get_ordered_ops()
            if op.get_friendly_name() in self.times
        ]


def ov_layers(compiled, request, feed: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    """Every executed layer, its time the median over `runs` profiled inferences."""
    times = LayerTimes(compiled, request, feed)
    times.profile(runs)
    return times.layers()


def attribute_fused_flops(layers: list[dict[str, Any]], graph) -> float:
    """Give the ONNX graph's matrix FLOPs that no FC / MatMul / Conv layer accounts for to the
    layers that fused an ONNX matrix node (attention), in proportion to those nodes' FLOPs.
    Returns the GFLOP left unattributed (0 when every product is placed)."""
    matrix = {n.name: 2 * n.macs / 1e9 for n in graph.nodes if n.macs}
    own = sum(layer["gflop"] for layer in layers)
    rest = max(0.0, sum(matrix.values()) - own)
    weights = {
        i: sum(matrix.get(n, 0.0) for n in layer["original"])
        for i, layer in enumerate(layers)
        if not layer["dims"]
    }
    weights = {i: w for i, w in weights.items() if w > 0}
    if rest <= 0 or not weights:
        return rest
    scale = rest / sum(weights.values())
    for i, w in weights.items():
        layers[i]["gflop"] = w * scale
    return 0.0


def ov_profiler(candidate, inputs) -> LayerTimes:
    """The candidate compiled with its own settings plus PERF_COUNT, warmed up, ready to
    gather per-layer times from OpenVINO's performance counters."""
    import openvino.properties as props

    from autoaccel.evaluate.runners import _ov_core, ov_config

    core = _ov_core()
    compiled = core.compile_model(
        core.read_model(str(candidate.onnx_path)),
        "CPU",
        {**ov_config(candidate.session), props.enable_profiling: True},
    )
    request = compiled.create_infer_request()
    wanted = {name for port in compiled.inputs for name in port.get_names()}
    feed = {k: v for k, v in inputs.items() if k in wanted}
    for _ in range(10):
        request.infer(feed, share_inputs=True)
    return LayerTimes(compiled, request, feed)
