"""Graph analysis: per-node work, bytes, precision and sparsity of an ONNX candidate.

The estimated targets never run a candidate; their roofline models read the `GraphCost` that
`analyze` returns for the candidate's ONNX file at fixed input shapes.

Counter. We tried `onnx-tool` 1.0.1 (PyPI) on the graphs autoaccel builds. Its MatMul count of
the exported fp32 MiniLM matches the hand count, but it stopped with errors on every ORT-fused
graph (no shape rule for (Q)EmbedLayerNormalization), on int8 dynamic graphs
(DynamicQuantizeLinear), and on fp16 graphs (TypeError); it adds bias adds and activations into
its MACs and reports neither precision nor sparsity. So this module counts on its own: onnx
for the graph, onnxruntime's symbolic shape inference for shapes (it knows com.microsoft ops;
the few it lacks, e.g. QAttention and QEmbedLayerNormalization of int8 dynamic fused graphs,
get rules here), and one rule per op type.

Layout: `autoaccel.targets.graph_shapes` fixes the input shapes and infers the others,
`autoaccel.targets.graph_tensors` folds constants and answers each tensor's type, bytes and
value, `autoaccel.targets.graph_ops` holds the per-op rules; this module puts them together
into one `NodeCost` per node.

Conventions (what a cost model can rely on):
- Nodes whose inputs are all constant (Constant, DequantizeLinear/Transpose/Cast of weights,
  shape arithmetic once input shapes are fixed) are folded, as ONNX Runtime folds them: they
  are not listed, and their outputs count as weights of the nodes that read them, at stored
  size (a DequantizeLinear'd weight: its int8/int4 bytes plus scales and zero points).
- macs: matrix ops only (MatMul, Gemm, Conv and their integer / QLinear / contrib variants,
  MatMulNBits, Einsum with two operands, attention: input projection + QK^T + AV).
  `matmul_dims` (M, K, N): batch folded into M, so M*K*N == macs for MatMul/Gemm; Conv is the
  implicit GEMM (N*Hout*Wout, Cin/group*kh*kw, Cout); attention reports its input
  projection, or QK^T (B*heads*S, head_dim, L) when it has none.
- flops = 2*macs + bias adds of matrix ops + `FLOPS_PER_ELEMENT` per output element of the
  other ops (attention adds `ATTENTION_SCORE_FLOPS` per score); op types with no rule get 0
  and are named in `GraphCost.notes`.
- Bytes at each tensor's stored dtype (int4: half a byte). A matrix op computing in int8 from
  QDQ reads its DequantizeLinear'd activations at their quantized size (what the fused QLinear
  kernel reads); activation DQ nodes that feed only int8 matrix ops are dropped (fused into
  the integer kernel), QuantizeLinear nodes stay (they are real work). Gather and
  EmbedLayerNormalization count only the looked-up rows of a 2-D table (at most the bytes
  they write), not the whole table.
- precision: "int8" for integer ops (MatMulInteger, ConvInteger, QLinear*, QAttention,
  DynamicQuantizeMatMul, MatMulIntegerToFloat) and for matrix ops whose operands all come from
  DequantizeLinear of 8-bit integers ("int4"/"fp8" when all are 4-bit / fp8); otherwise the
  activation's float type, which includes weight-only QDQ and MatMulNBits (4-bit weights,
  dequantized in the kernel, float arithmetic; weight bytes = the packed size). Other nodes:
  their first input of a precision type, else "fp32".
- sparsity: the share of the matrix weight equal to zero (quantized weights: equal to their
  zero point), traced through DequantizeLinear / Transpose / Reshape to the initializer.
  nm_2_4: every 4 consecutive weights along the reduction axis hold at most 2 non-zeros
  (MatMul [K, N]: along K; Gemm transB=1 [N, K]: along K; Conv [O, I, kh, kw]: along I at each
  kernel position, the order `autoaccel.compress.pruning` prunes in); needs K (Conv: I)
  divisible by 4. MatMulNBits' packed weights are not read for sparsity.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from autoaccel.targets.base import GraphCost, NodeCost
from autoaccel.targets.graph_ops import (
    ATTENTION_SCORE_FLOPS,
    FLOPS_PER_ELEMENT,
    INTEGER_OPS,
    MATRIX_RULES,
    matrix_precision,
    non_matrix_flops,
    weight_sparsity,
)
from autoaccel.targets.graph_shapes import fix_input_shapes, infer_shapes
from autoaccel.targets.graph_tensors import PRECISION_OF_DTYPE, FoldedGraph, node_attributes

__all__ = ["ATTENTION_SCORE_FLOPS", "FLOPS_PER_ELEMENT", "analyze"]

_TABLE_OPS = ("Gather", "EmbedLayerNormalization", "QEmbedLayerNormalization")
"""Ops that read only the looked-up rows of a 2-D table."""


def analyze(onnx_path: Path | str, input_shapes: dict[str, tuple[int, ...]]) -> GraphCost:
    """Per-node MACs, FLOPs, bytes, precision and sparsity of an ONNX model at fixed shapes.

    `input_shapes` fixes graph inputs by name; inputs left out keep the model's dims, and a
    symbolic dim left unfixed raises ValueError. `batch_size` is the first input's first dim.
    """
    model = onnx.load(str(onnx_path), load_external_data=True)
    batch = fix_input_shapes(model, input_shapes)
    graph = FoldedGraph(infer_shapes(model))
    costs = [_node_cost(graph, node, i) for i, node in enumerate(graph.nodes)]
    fused = _fused_activation_dq(graph, costs)
    nodes = tuple(c for i, c in enumerate(costs) if i not in fused)
    notes = []
    if fused:
        notes.append(f"{len(fused)} activation DequantizeLinear nodes fused into int8 kernels")
    if graph.folded:
        notes.append(f"{graph.folded} constant-only nodes folded into their consumers' weights")
    if graph.unknown_ops:
        notes.append(f"no cost rule for {', '.join(sorted(graph.unknown_ops))}: bytes only")
    return GraphCost(nodes=nodes, batch_size=batch, notes=tuple(notes))


def _fused_activation_dq(g: FoldedGraph, costs: list[NodeCost]) -> set[int]:
    """Indices of activation DequantizeLinear nodes whose every consumer computes in int8:
    runtimes fuse DQ -> MatMul into one integer kernel (ORT's QLinearMatMul, TensorRT), so
    they cost no separate pass; the consumer already reads the quantized tensor."""
    int8_inputs: dict[str, bool] = {}
    for node, cost in zip(g.nodes, costs, strict=True):
        for name in node.input:
            if name:
                ok = cost.macs > 0 and cost.precision in ("int8", "int4", "fp8")
                int8_inputs[name] = int8_inputs.get(name, True) and ok
    return {
        i
        for i, node in enumerate(g.nodes)
        if node.op_type == "DequantizeLinear" and int8_inputs.get(node.output[0], False)
    }


def _node_cost(g: FoldedGraph, node: onnx.NodeProto, index: int) -> NodeCost:
    at = node_attributes(node)
    rule = MATRIX_RULES.get(node.op_type)
    mat = rule(g, node, at) if rule else None
    if rule and mat is None:
        g.unknown_ops.add(f"{node.op_type} (shapes unknown)")
    fused_qdq = False
    if mat is not None:
        precision = matrix_precision(g, node, mat)
        fused_qdq = node.op_type not in INTEGER_OPS and precision in ("int8", "int4", "fp8")
        flops = 2 * mat.macs + mat.extra_flops
        sparsity, nm = weight_sparsity(mat.rows, mat.group_ok)
    else:
        first = (PRECISION_OF_DTYPE.get(g.dtype(i)) for i in node.input if i)
        precision = next((p for p in first if p), "fp32")
        flops, sparsity, nm = non_matrix_flops(g, node, at), 0.0, False
    weight = activations = 0
    out_bytes = sum(g.nbytes(o) for o in node.output if o)
    for name in dict.fromkeys(i for i in node.input if i):
        if name in g.consts and node.op_type in _TABLE_OPS and len(g.shape(name) or ()) == 2:
            weight += min(g.consts[name], out_bytes)  # only the looked-up rows are read
        elif name in g.consts:
            weight += g.consts[name]
        elif fused_qdq and (dq := g.producer.get(name)) and dq.op_type == "DequantizeLinear":
            activations += g.nbytes(dq.input[0])  # the fused kernel reads the quantized tensor
        else:
            activations += g.nbytes(name)
    return NodeCost(
        name=node.name or f"{node.op_type}_{index}",
        op_type=node.op_type,
        macs=mat.macs if mat else 0,
        flops=flops,
        weight_bytes=weight,
        input_bytes=activations,
        output_bytes=out_bytes,
        precision=precision,
        sparsity=sparsity,
        nm_2_4=nm,
        matmul_dims=mat.dims if mat else None,
    )
