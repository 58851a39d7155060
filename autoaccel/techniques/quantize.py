"""Quantization with ONNX Runtime's tooling (fp16, int8 dynamic, int8 static QDQ, int4
weight-only MatMul) and with OpenVINO's (NNCF post-training int8).

Per-channel weight scales matter for transformer quality (MiniLM: cosine to the teacher .993
per-channel vs .955 per-tensor); static quantization calibrates activations on the workload's
calibration batches, which never overlap the data that judges quality.

int4_weight rounds the constant weight of every MatMul to 4 bits in blocks along K (RTN, one
scale per block and output column; `MatMulNBitsQuantizer`) and replaces the node with ORT's
MatMulNBits contrib op, which dequantizes in the kernel. Gemm nodes with a constant weight
(torch's Linear on 2-D inputs) are first rewritten as MatMul + Add so they are quantized too.
Everything else keeps its float weights: fused Attention nodes (their QKV projection is one
fp32 input of the contrib op), embeddings (Gather / EmbedLayerNormalization), Conv, biases and
norms. On CPU, MatMulNBits computes in fp32 for accuracy_level 0-3 (fp16/bf16 compute exists
only on ARM) and quantizes the activations to int8 per block for accuracy_level 4 (needs
AVX2/AVX512-VNNI or ARM dot-product kernels, else ORT falls back to fp32): 0 and 4 are the
two levels that differ here.

int8_nncf is NNCF's post-training quantization of the ONNX graph (QDQ): it places quantizers
where OpenVINO's CPU plugin runs int8 kernels, leaves the patterns that lose accuracy in float
(with the transformer model type: softmax, layer norm, the attention score products) and, for
transformers, applies SmoothQuant (per-channel scales moved from activations into weights) and
bias correction. On MiniLM it kept teacher cosine 0.997 on reviews and 0.991 on single words,
where ORT's static QDQ (minmax, per-channel) fell to 0.92 and 0.88, and OpenVINO ran its
matrix layers in int8 (`benchmarks/results/int8-paths.md`). A graph ORT has fused is typed by
ORT's own shape inference first: NNCF needs every edge typed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from autoaccel.errors import InfeasibleRecipe
from autoaccel.techniques._quiet import quiet
from autoaccel.techniques.base import BuildContext, Candidate, Param, Stage, Technique
from autoaccel.techniques.float32_graph import as_float32, is_float16
from autoaccel.techniques.int8_calibration import extra_options, int8_static
from autoaccel.techniques.int8_sensitivity import most_sensitive
from autoaccel.techniques.nncf_graph import for_nncf

MODES = ("none", "fp16", "int8_dynamic", "int8_static", "int8_nncf", "int4_weight")
CALIBRATIONS = ("minmax", "entropy", "percentile")
FLOAT_SHARES = (0.0, 0.15, 0.3)
BLOCK_SIZES = (32, 64, 128)
ACCURACY_LEVELS = (0, 4)
_INT8 = ("int8_dynamic", "int8_static")
_INT4 = {"quantize.mode": ("int4_weight",)}


class Quantize(Technique):
    name = "quantize"
    stage = Stage.ONNX
    requires = {"runtime.backend": ("onnxruntime", "openvino")}  # the ONNX backends

    def params(self, workload) -> tuple[Param, ...]:
        if workload is not None and (already_quantized(workload) or no_products(workload)):
            return ()  # `applicability` says why at the search's start
        return (
            Param("mode", "none", choices=MODES, help="numeric format of weights/activations"),
            Param(
                "per_channel",
                True,
                choices=(True, False),
                accurate=True,
                when={"quantize.mode": _INT8},
                help="one int8 scale per output channel instead of per tensor",
            ),
            Param(
                "float_share",
                0.0,
                choices=FLOAT_SHARES,
                accurate=FLOAT_SHARES[-1],
                when={"quantize.mode": ("int8_dynamic",)},
                help="share of the weighted matrix products kept in fp32: those int8 changes "
                "most on the calibration batches (int8_sensitivity.py)",
            ),
            Param(
                "calibration",
                "minmax",
                choices=CALIBRATIONS,
                when={"quantize.mode": ("int8_static",)},
                help="how activation ranges are chosen from the calibration batches",
            ),
            Param(
                "block_size",
                32,
                choices=BLOCK_SIZES,
                accurate=BLOCK_SIZES[0],
                when=_INT4,
                help="int4 weights per scale, along the reduction axis (smaller: more accurate)",
            ),
            Param(
                "symmetric",
                True,
                choices=(True, False),
                when=_INT4,
                help="int4 blocks without a zero point (False: one 4-bit zero point per block)",
            ),
            Param(
                "accuracy_level",
                0,
                choices=ACCURACY_LEVELS,
                when=_INT4,
                help="MatMulNBits compute: 0 fp32 activations, 4 activations quantized to int8",
            ),
        )

    def describe(self, config: dict[str, Any]) -> str | None:
        mode = config.get("mode", "none")
        if mode == "none":
            return "fp32"
        if mode == "fp16":
            return "fp16"
        scale = "per-channel" if config.get("per_channel") else "per-tensor"
        if mode == "int4_weight":
            sym = "symmetric" if config["symmetric"] else "asymmetric"
            compute = "int8" if config["accuracy_level"] == 4 else "fp32"
            return (
                f"int4 weight-only MatMul, block {config['block_size']}, {sym}, {compute} "
                "compute (other operators stay fp32)"
            )
        if mode == "int8_dynamic":
            share = config.get("float_share", 0.0)
            kept = f", the {share:.0%} most sensitive matrix products in fp32" if share else ""
            return f"int8 dynamic {scale}{kept}"
        if mode == "int8_nncf":
            return "int8 static QDQ by NNCF (OpenVINO's post-training quantization)"
        return f"int8 static QDQ {scale}, {config['calibration']} calibration"

    def changes_model(self, config: dict[str, Any]) -> bool:
        return config.get("mode", "none") != "none"

    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        mode = config.get("mode", "none")
        out = ctx.workdir / "model.onnx"
        if mode != "fp16" and is_float16(candidate.onnx_path):
            widened = ctx.workdir / "float32.onnx"
            as_float32(candidate.onnx_path, widened)
            note = "float16 graph computed in float32 before quantizing (same inputs, outputs)"
            candidate = replace(candidate, onnx_path=widened, notes=(*candidate.notes, note))
        with quiet():
            if mode == "fp16":
                _to_fp16(candidate.onnx_path, out)
            elif mode == "int4_weight":
                note = _int4_weight(candidate.onnx_path, out, config)
                return replace(candidate, onnx_path=out, notes=(*candidate.notes, note))
            elif mode == "int8_dynamic":
                src, kept = candidate.onnx_path, []
                if share := config.get("float_share", 0.0):
                    # ORT rewrites Gemm as MatMul under new names before it quantizes, so
                    # the names to keep are taken from that rewrite, done here first
                    src = _matmul_only(candidate.onnx_path, ctx.workdir / "matmul.onnx")
                    kept = most_sensitive(src, ctx.workload.calibration_inputs(), share)
                _int8_dynamic(src, out, config["per_channel"], kept)
                if kept:
                    note = f"quantized int8_dynamic, {len(kept)} matrix products kept fp32"
                    return replace(candidate, onnx_path=out, notes=(*candidate.notes, note))
            elif mode == "int8_nncf":
                batches = ctx.workload.calibration_inputs()
                note = _int8_nncf(candidate.onnx_path, out, batches, ctx.workload.onnx_model_type)
                return replace(candidate, onnx_path=out, notes=(*candidate.notes, note))
            else:
                batches = ctx.workload.calibration_inputs()
                try:
                    int8_static(candidate.onnx_path, out, config, batches)
                except ValueError as exc:
                    if "Histogram has not been collected" not in str(exc):
                        raise
                    raise InfeasibleRecipe(
                        f"int8 static with {config['calibration']} calibration collected no "
                        "histograms on this graph (ORT's calibrator and fused transformer ops);"
                        " minmax calibration or an unfused graph works",
                        "quantize_calibration",
                    ) from None
        return replace(candidate, onnx_path=out, notes=(*candidate.notes, f"quantized {mode}"))


def already_quantized(workload) -> list[str]:
    """The quantized operators of a workload's given ONNX file (none for a float model)."""
    from autoaccel.workloads.onnx_facts import quantized_ops

    given = workload.onnx_model()
    return quantized_ops(given) if given is not None else []


PRODUCT_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "Attention"}
"""The operators the quantizers change (and fp16 makes faster): matrix products."""


def no_products(workload) -> list[str]:
    """The operator types of a workload's given ONNX file when none is a matrix product
    (a scikit-learn model as ai.onnx.ml operators: nothing to quantize); else empty."""
    from autoaccel.workloads.onnx_facts import op_types

    given = workload.onnx_model()
    ops = op_types(given) if given is not None else frozenset()
    return [] if not ops or ops & PRODUCT_OPS else sorted(ops)


def _to_fp16(src, out) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(out))


def _int8_dynamic(src, out, per_channel: bool, keep_float: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(out),
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep_float,
        extra_options=extra_options(),
    )


def _matmul_only(src, out):
    """The graph at `src` with its constant-weight Gemms rewritten as MatMul (+ Add), at `out`."""
    import onnx

    model = onnx.load(str(src))
    _gemm_to_matmul(model.graph)
    onnx.save(model, str(out))
    return out


def _int8_nncf(src, out, batches: list[dict], transformer: str | None) -> str:
    """NNCF's int8 PTQ of the graph at `src`; returns the build note (what it quantized)."""
    import logging
    import os

    # NNCF reports usage to Google Analytics unless told not to; NNCF_CI is the switch it
    # reads at import (it changes nothing else). A user's search sends nothing anywhere.
    os.environ.setdefault("NNCF_CI", "1")
    import nncf
    import onnx

    nncf.set_log_level(logging.ERROR)
    model = for_nncf(onnx.load(str(src)))
    transformer = transformer or _has_attention(model.graph)
    names = {i.name for i in model.graph.input}
    dataset = nncf.Dataset(batches, lambda batch: {k: v for k, v in batch.items() if k in names})
    with _no_progress_bars():
        quantized = nncf.quantize(
            model,
            dataset,
            subset_size=len(batches),
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        )
    count = _written(
        quantized.graph,
        "QuantizeLinear",
        "int8_nncf found nothing to quantize in this graph (no MatMul, Gemm or Conv NNCF "
        "places int8 on)",
    )
    onnx.save(quantized, str(out))
    kind = "transformer" if transformer else "generic"
    return f"quantized int8_nncf ({kind} model type): {count} activations quantized"


def _has_attention(graph) -> bool:
    """Whether the graph multiplies two activations and has a softmax (attention scores),
    whatever exported it: NNCF then keeps softmax, norms and score products in float and
    smooths activations, which a transformer needs (MiniLM as an ONNX file: teacher cosine
    0.42 with the generic type)."""
    ops = {node.op_type for node in graph.node}
    if ops & {"Attention", "MultiHeadAttention"}:  # ORT's fused attention
        return True
    if "Softmax" not in ops:
        return False
    dynamic = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    for node in graph.node:  # topological order, as ONNX requires
        if any(name in dynamic for name in node.input):
            dynamic.update(node.output)
            if node.op_type == "MatMul" and all(name in dynamic for name in node.input):
                return True
    return False


def _written(graph, op_type: str, nothing: str) -> int:
    """How many `op_type` nodes a quantizer wrote; none makes the recipe infeasible (a mode
    that changes nothing would be timed as if it had), `nothing` saying why."""
    count = sum(node.op_type == op_type for node in graph.node)
    if count == 0:
        raise InfeasibleRecipe(nothing, "quantize_nothing")
    return count


def _no_progress_bars():
    """NNCF draws rich progress bars on the terminal (stderr), which the search owns."""
    import contextlib
    import io

    return contextlib.redirect_stderr(io.StringIO())


def _int4_weight(src, out, config: dict[str, Any]) -> str:
    """MatMul weights to int4 MatMulNBits; returns the build note (what changed, what not)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    gemms = _gemm_to_matmul(model.graph)
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=config["block_size"],
        is_symmetric=config["symmetric"],
        accuracy_level=config["accuracy_level"],
        op_types_to_quantize=("MatMul",),
    )
    quantizer.process()
    quantized = quantizer.model.model
    count = _written(
        quantized.graph,
        "MatMulNBits",
        "int4_weight found no MatMul (or Gemm) with a constant 2-D weight to quantize in this "
        "graph",
    )
    quantizer.model.save_model_to_file(str(out))
    kept = _float_weight_users(quantized.graph)
    left = ", ".join(f"{op} x{n}" for op, n in sorted(kept.items())) or "none"
    via = f" ({gemms} from Gemm)" if gemms else ""
    return (
        f"quantized int4_weight: {count} MatMul weights to int4{via}; "
        f"float weights left in: {left}"
    )


def _gemm_to_matmul(graph) -> int:
    """Rewrite each Gemm with a constant 2-D float weight as MatMul (+ Add) in place, alpha
    and beta folded into the constants, so the int4 quantizer (MatMul only) sees it.
    Returns how many were rewritten; others (transA, a computed weight) are left alone."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        b = inits.get(node.input[1]) if node.op_type == "Gemm" else None
        c_name = node.input[2] if len(node.input) > 2 else ""
        c = inits.get(c_name) if c_name else None
        beta = attrs.get("beta", 1.0)
        if (
            b is None
            or len(b.dims) != 2
            or b.data_type != TensorProto.FLOAT
            or attrs.get("transA", 0)
            or (c_name and c is None and beta != 1.0)
        ):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(b)
        weight = weight.T if attrs.get("transB", 0) else weight
        weight = np.ascontiguousarray(weight * np.float32(attrs.get("alpha", 1.0)))
        base = node.name or node.output[0]
        w_name = f"{base}_weight_kn"
        graph.initializer.append(numpy_helper.from_array(weight.astype(np.float32), w_name))
        out = node.output[0]
        product = f"{out}_matmul" if c_name else out
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [product], f"{base}_mm"))
        if c_name:
            bias = c_name
            if c is not None and beta != 1.0:
                bias = f"{base}_bias_scaled"
                scaled = numpy_helper.to_array(c) * np.float32(beta)
                graph.initializer.append(numpy_helper.from_array(scaled, bias))
            nodes.append(helper.make_node("Add", [product, bias], [out], f"{base}_bias"))
        rewritten += 1
    graph.ClearField("node")
    graph.node.extend(nodes)
    return rewritten


def _float_weight_users(graph) -> dict[str, int]:
    """Op types still reading a float initializer of 2+ dimensions (weights, not biases;
    MatMulNBits' own block scales are not counted)."""
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)
    weights = {i.name for i in graph.initializer if i.data_type in floats and len(i.dims) >= 2}
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type != "MatMulNBits" and any(name in weights for name in node.input):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
