"""Why each operator of a recipe takes the time it does, from OpenVINO's own execution: every
executed layer of the compiled model with its time (performance counters), its shapes and
element types (the runtime model), its matrix FLOPs and the bytes it reads and writes; then,
per layer type, the floor that bounds it and how far above that floor it runs.

Floors, all measured on this machine with the recipe's thread count:
- a matrix layer: its FLOPs at the rate OpenVINO itself reaches on the same product alone
  (a one-layer graph of that M x K x N in the layer's precision, kernel time from the
  performance counters): the ceiling for that shape, which small products keep well under the
  peak of large ones;
- any other layer: its bytes at the on-chip rate of a streaming element-wise layer (an f32
  Add of two tensors the size the model's own non-matrix layers move, kernel time): no
  matrix work, so the compute floor gives it 0 ms, and the bandwidth floor is all a faster
  kernel could gain; time above it is per-layer cost (dispatch, thread sync, small tiles);
- the run: the protocol latency minus the layers' time is the runtime's own cost per
  inference (input/output handling, thread wake-ups), which no layer change removes.

FLOPs of FullyConnected / MatMul / Convolution layers come from their own shapes; the
activation products fused into other layers (the attention `Subgraph`) get the rest of the
ONNX graph's matrix FLOPs, shared among the layers whose original ONNX nodes include a matrix
node (OpenVINO's `originalLayersNames`).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from math import prod
from pathlib import Path
from typing import Any

FC_TYPES = {"FullyConnected", "FullyConnectedCompressed", "FullyConnectedQuantizedLegacy"}
CONV_TYPES = {"Convolution", "GroupConvolution", "Deconvolution"}
PRECISION = {"i8": "int8", "u8": "int8", "bf16": "bf16", "f32": "fp32", "f16": "fp16"}
AT_CEILING = 0.85
"""A layer type at this share of its shapes' own ceiling or more runs at that ceiling."""


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
    """Measured ceilings: GFLOP/s of each distinct (precision, M x K x N) product alone, and
    the on-chip GB/s of a streaming element-wise layer, both with the recipe's settings."""
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


def onchip_rate(layers: list[dict[str, Any]], ceiling: dict[str, Any]) -> float | None:
    """GB/s for element-wise data on chip: the micro-benchmark's, or the best a non-matrix
    layer of the model reached (over 100 KB) when that is higher, so no floor sits above a
    time this machine has shown; recorded in `ceiling` as `onchip_gbps_used`."""
    seen = [
        layer["bytes"] / (layer["us"] * 1e-6) / 1e9
        for layer in layers
        if not layer["dims"] and not layer["gflop"] and layer["bytes"] > 1e5 and layer["us"] > 0
    ]
    rates = [r for r in (ceiling.get("onchip_gbps"), max(seen, default=None)) if r]
    ceiling["onchip_gbps_used"] = max(rates) if rates else None
    return ceiling["onchip_gbps_used"]


def explain(
    layers: list[dict[str, Any]], ceiling: dict[str, Any], peaks: dict[str, float]
) -> list[dict[str, Any]]:
    """Per layer type and precision: time, work, its floor (matrix FLOPs at their shapes'
    ceilings, fused matrix work at `peaks` (calibrated GFLOP/s per precision), other bytes at
    the on-chip rate), the excess over it, and the bound in words."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    gbps = onchip_rate(layers, ceiling)
    for layer in layers:
        row = rows.setdefault(
            (layer["type"], layer["precision"]),
            {
                "op_type": layer["type"],
                "precision": layer["precision"],
                "layers": 0,
                "ms": 0.0,
                "gflop": 0.0,
                "mb": 0.0,
                "floor_ms": 0.0,
                "shapes": set(),
                "matrix_floor_ms": 0.0,
            },  # fmt: skip
        )
        row["layers"] += 1
        row["ms"] += layer["us"] / 1e3
        row["gflop"] += layer["gflop"]
        row["mb"] += layer["bytes"] / 1e6
        rate = None
        if layer["dims"]:
            shape = "x".join(map(str, layer["dims"]))
            row["shapes"].add(shape)
            rate = ceiling["product_gflops"].get(f"{layer['precision']} {shape}")
        if not layer["dims"] and layer["gflop"]:
            rate = peaks.get(layer["precision"])
        if rate and layer["gflop"]:
            row["matrix_floor_ms"] += layer["gflop"] / rate * 1e3
        elif gbps and not layer["gflop"]:
            row["floor_ms"] += layer["bytes"] / 1e9 / gbps * 1e3
    out = []
    for row in rows.values():
        row["floor_ms"] += row["matrix_floor_ms"]
        row["shapes"] = sorted(row["shapes"])
        row["excess_ms"] = max(0.0, row["ms"] - row["floor_ms"])
        row["reason"] = _reason(row, gbps)
        out.append(row)
    return sorted(out, key=lambda r: -r["ms"])


def _reason(row: dict[str, Any], gbps: float | None) -> str:
    per_layer = 1e3 * row["ms"] / row["layers"]
    share = row["matrix_floor_ms"] / row["ms"] if row["ms"] else 0.0
    where = "at" if share >= AT_CEILING else f"{100 * share:.0f} % of"
    if row["matrix_floor_ms"] and row["shapes"]:
        shapes = ", ".join(row["shapes"][:4]) + (" ..." if len(row["shapes"]) > 4 else "")
        rate = row["gflop"] / row["matrix_floor_ms"] * 1e3
        return (
            f"matrix, {where} the ceiling of its own products alone ({shapes}: "
            f"{rate:.0f} GFLOP/s in {row['precision']})"
        )
    if row["matrix_floor_ms"]:
        return (
            f"fused matrix work with its element-wise steps (attention): {where} the "
            f"calibrated {row['precision']} peak of large products"
        )
    if row["gflop"]:
        return f"matrix work in {row['precision']}, no ceiling measured for it"
    kb = 1e3 * row["mb"] / row["layers"]
    if not gbps:
        return f"no matrix work: {per_layer:.1f} us per layer for {kb:.0f} KB"
    achieved = row["mb"] / 1e3 / (row["ms"] * 1e-3) if row["ms"] else 0.0
    bound = "bandwidth" if achieved >= AT_CEILING * gbps else "per-layer cost"
    return (
        f"no matrix work (0 ms in the compute floor); {per_layer:.1f} us per layer for "
        f"{kb:.0f} KB = {achieved:.0f} GB/s of the {gbps:.0f} GB/s on-chip rate: {bound}"
    )


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


def explain_ov(ovp: dict[str, Any], graph, session, peaks: dict[str, float]) -> dict[str, Any]:
    """The profiled layers per type against measured ceilings (`roofline_layers`)."""
    layers = ovp.pop("layers")
    unattributed = attribute_fused_flops(layers, graph)
    ceiling = ceilings(layers, session)
    return {
        **ovp,
        "by_type": explain(layers, ceiling, peaks),
        "ceilings": ceiling,
        "unattributed_matrix_gflop": unattributed,
    }


def ov_rows_and_gap(ovp, ms: float, floor_cal: float, executed, derived, cal):
    """The OpenVINO layer rows, and the latency split into what bounds each part: the compute
    floor, matrix layers' own-shape ceilings above it, their excess over those, the other
    layers, and the runtime's cost outside layers."""
    by_type = ovp["by_type"]
    layer_ms = sum(r["ms"] for r in by_type)
    matrix = [r for r in by_type if r["gflop"]]
    m_ms, m_gflop = sum(r["ms"] for r in matrix), sum(r["gflop"] for r in matrix)
    m_floor = sum(r["matrix_floor_ms"] for r in matrix)
    other_floor = sum(r["floor_ms"] for r in by_type if not r["gflop"])
    gap = {
        "compute_floor_calibrated": floor_cal,
        "matrix_shape_ceilings_above_floor": m_floor - floor_cal,
        "matrix_above_shape_ceilings": m_ms - m_floor,
        "other_layers_bandwidth_floor": other_floor,
        "other_layers_above_bandwidth_floor": layer_ms - m_ms - other_floor,
        "outside_layers": ms - layer_ms,
    }
    rate = m_gflop / (m_ms * 1e-3) if m_ms else None
    rows = [
        [
            "OpenVINO profile: layers / profiled run",
            f"{layer_ms:.3f} / {ovp['profiled_run_ms']:.3f} ms",
            f"{ms - layer_ms:.3f} ms of the protocol latency outside layers (the runtime's own "
            "cost per inference)",
        ]
    ]
    if rate is not None:
        shares = ", ".join(
            f"{100 * rate / derived[p]:.0f} % derived"
            + (f" / {100 * rate / cal[p]:.0f} % calibrated" if p in cal else "")
            + f" {p}"
            for p in executed
        )
        rows.append(
            [
                "  matrix layers (FLOPs from their shapes)",
                f"{m_ms:.3f} ms, {m_gflop:.3f} GFLOP",
                f"{rate:.1f} GFLOP/s = {shares}",
            ]
        )
    rows += [
        [
            f"  {r['op_type']} ({r['precision']}, {r['layers']} layers)",
            f"{r['ms']:.3f} ms"
            + (f", {r['gflop']:.3f} GFLOP" if r["gflop"] else f", {r['mb']:.2f} MB")
            + f"; floor {r['floor_ms']:.3f}",
            r["reason"],
        ]
        for r in by_type
        if r["ms"] >= 0.005
    ]
    words = {
        "compute_floor_calibrated": "compute floor (all matrix work at the calibrated peak)",
        "matrix_shape_ceilings_above_floor": "+ matrix layers' own-shape ceilings above it",
        "matrix_above_shape_ceilings": "+ matrix layers above their own-shape ceilings",
        "other_layers_bandwidth_floor": "+ other layers at the on-chip rate",
        "other_layers_above_bandwidth_floor": "+ other layers above it (per-layer cost)",
        "outside_layers": "+ outside layers (runtime per inference)",
    }
    rows += [
        [f"latency, part: {words[k]}", f"{v:.3f} ms", f"{100 * v / ms:.0f} % of {ms:.3f} ms"]
        for k, v in gap.items()
    ]
    one = ovp["ceilings"].get("one_layer_run_ms")
    if one is not None:
        rows[-1][2] += f"; a one-layer model with these settings runs in {one:.3f} ms"
    rows[-1][2] += "; layer times are medians of profiled runs, the latency is not profiled"
    return {"gflop": m_gflop, "ms": m_ms, "gflops": rate}, gap, rows
