"""Per-op cost rules of the graph analysis: MACs, FLOPs, precision and sparsity by op type.

`autoaccel.targets.graph.analyze` walks the nodes; this module says what one node of a given
op type costs. Matrix ops (MatMul, Gemm, Conv, attention, Einsum and their integer / QLinear /
contrib variants) each have a rule in `MATRIX_RULES` returning their `MatrixWork`; the other
ops cost `FLOPS_PER_ELEMENT` per output element (or a per-input-element constant for
reductions); the conventions are in `autoaccel.targets.graph`'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from autoaccel.targets.graph_tensors import (
    FOUR_BIT_DTYPES,
    FP8_DTYPES,
    PRECISION_OF_DTYPE,
    FoldedGraph,
)

_EW1 = "Add Sub Mul Div Relu LeakyRelu PRelu Max Min Neg Abs Sqrt Reciprocal Clip Where Pow Sum"
_EW1 += " Mean Equal Less LessOrEqual Greater GreaterOrEqual And Or Not Xor Floor Ceil Round Sign"
_TRANSCENDENTAL = "Exp Log Erf Tanh Sigmoid Sin Cos Softplus Elu Selu"
FLOPS_PER_ELEMENT: dict[str, int] = {
    **dict.fromkeys(_EW1.split(), 1),
    **dict.fromkeys(_TRANSCENDENTAL.split(), 4),  # a polynomial / table approximation
    **{"HardSigmoid": 3, "HardSwish": 4, "QuickGelu": 6, "Softmax": 5, "LogSoftmax": 5},
    # x/sqrt2, erf (4), +1, x*, *0.5; fused ops include their bias / skip adds
    **{"Gelu": 8, "BiasGelu": 9, "FastGelu": 9, "BiasAdd": 2, "BatchNormalization": 2},
    # mean, subtract, square, variance, normalise, scale, shift ~ 8 (RMS norm 5)
    **{"LayerNormalization": 8, "SimplifiedLayerNormalization": 5, "InstanceNormalization": 8},
    **{"SkipLayerNormalization": 10, "SkipSimplifiedLayerNormalization": 7, "GroupNorm": 8},
    **{"EmbedLayerNormalization": 10, "QEmbedLayerNormalization": 10, "GroupNormalization": 8},
    **{"QuantizeLinear": 3, "DequantizeLinear": 2, "DynamicQuantizeLinear": 5},
}
"""FLOPs per output element of non-matrix ops (rough, stated constants)."""
_PER_INPUT_ELEMENT = {
    **dict.fromkeys(
        "ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ArgMax ArgMin".split(), 1
    ),
    **dict.fromkeys("GlobalAveragePool GlobalMaxPool GlobalLpPool".split(), 1),
    **{"ReduceL1": 2, "ReduceL2": 2, "ReduceSumSquare": 2, "ReduceLogSumExp": 5},
}
ATTENTION_SCORE_FLOPS = 7  # per attention score: scale, mask add, softmax (5)
_MOVEMENT = frozenset(
    "Reshape Transpose Flatten Squeeze Unsqueeze Identity Cast Concat Split Slice Gather "
    "GatherElements GatherND Expand Tile Pad Shape Size ConstantOfShape Range Dropout "
    "ScatterND ScatterElements DepthToSpace SpaceToDepth Resize Constant NonZero".split()
)
INTEGER_OPS = frozenset(
    "MatMulInteger ConvInteger QLinearMatMul QLinearConv QAttention DynamicQuantizeMatMul "
    "MatMulIntegerToFloat QGemm".split()
)
"""Ops that compute in int8 whatever their operands' producers are."""


@dataclass
class MatrixWork:
    """What a matrix op's rule reports: its MACs and GEMM dims, and what precision and
    sparsity are read from."""

    macs: int
    dims: tuple[int, int, int] | None
    operands: tuple[str, ...]  # the multiplied tensors (for precision)
    rows: np.ndarray | None = None  # the weight as (output units, reduction)
    group_ok: bool = True  # groups of 4 along the reduction stay within one kernel position
    extra_flops: int = 0  # bias adds, attention softmax


MatrixRule = Callable[[FoldedGraph, onnx.NodeProto, dict], MatrixWork | None]


def _inp(node: onnx.NodeProto, i: int | None) -> str:
    return node.input[i] if i is not None and i < len(node.input) else ""


def _weight(g: FoldedGraph, node, idx: int, zp_idx: int | None = None, zp_axis: int = -1):
    """The constant at input `idx` minus its zero point (zeros are zeros), or None."""
    w = g.value(_inp(node, idx))
    zp = g.value(_inp(node, zp_idx))
    if w is None or zp is None:
        return w
    zp = zp.astype(np.int32)
    if zp.ndim == 1 and zp.size > 1:
        zp = zp.reshape([-1 if i == zp_axis % w.ndim else 1 for i in range(w.ndim)])
    return w.astype(np.int32) - zp


def _matmul(a_i=0, b_i=1, b_zp=None, bias=None) -> MatrixRule:
    """MatMul and its variants, Gemm: MACs = output elements x K."""

    def rule(g: FoldedGraph, node, at: dict) -> MatrixWork | None:
        a, b = g.shape(_inp(node, a_i)), g.shape(_inp(node, b_i))
        out = g.shape(node.output[0])
        if a is None or b is None or out is None:
            return None
        k = a[-2] if at.get("transA") and len(a) > 1 else a[-1]
        n = out[-1] if len(b) > 1 else 1
        macs = math.prod(out) * k
        w, rows = _weight(g, node, b_i, b_zp), None
        if w is not None and w.ndim >= 2:
            rows = w.reshape(-1, k) if at.get("transB") else np.swapaxes(w, -1, -2).reshape(-1, k)
        elif (w := g.value(_inp(node, a_i))) is not None and w.ndim >= 2 and not at.get("transA"):
            rows = w.reshape(-1, k)
        extra = math.prod(out) if _inp(node, bias) else 0
        operands = (_inp(node, a_i), _inp(node, b_i))
        return MatrixWork(macs, (macs // max(k * n, 1), k, n), operands, rows, True, extra)

    return rule


def _conv(w_i=1, zp_i=None, bias=2) -> MatrixRule:
    def rule(g: FoldedGraph, node, at: dict) -> MatrixWork | None:
        w, out = g.shape(node.input[w_i]), g.shape(node.output[0])
        if w is None or out is None:
            return None
        k = math.prod(w[1:])
        macs = math.prod(out) * k
        value = _weight(g, node, w_i, zp_i, zp_axis=0)
        rows = None if value is None else np.moveaxis(value, 1, -1).reshape(w[0], -1)
        extra = math.prod(out) if _inp(node, bias) else 0
        dims = (out[0] * math.prod(out[2:]), k, w[0])
        operands = (node.input[0], node.input[w_i])
        return MatrixWork(macs, dims, operands, rows, w[1] % 4 == 0, extra)

    return rule


def _matmul_nbits(g: FoldedGraph, node, at: dict) -> MatrixWork | None:
    a = g.shape(node.input[0])
    if a is None:
        return None
    m, k, n = math.prod(a[:-1]), at["K"], at["N"]
    extra = m * n if _inp(node, 5) else 0
    return MatrixWork(m * k * n, (m, k, n), (node.input[0],), None, True, extra)


def _attention(w_i=1, zp_i=None, past_i=4) -> MatrixRule:
    """Attention / QAttention: QKV projection of the input, then QK^T and AV per head."""

    def rule(g: FoldedGraph, node, at: dict) -> MatrixWork | None:
        x, w = g.shape(node.input[0]), g.shape(node.input[w_i])
        if x is None or w is None:
            return None
        (b, s, d_in), heads = x, at["num_heads"]
        dq, _, dv = at.get("qkv_hidden_sizes") or [w[1] // 3] * 3
        past = g.shape(_inp(node, past_i))
        kv_len = s + (past[3] if past and len(past) == 5 else 0)
        macs = b * s * d_in * w[1] + b * s * kv_len * (dq + dv)
        value = _weight(g, node, w_i, zp_i)
        rows = None if value is None else value.T
        extra = b * s * w[1] + ATTENTION_SCORE_FLOPS * b * heads * s * kv_len
        return MatrixWork(
            macs, (b * s, d_in, w[1]), (node.input[0], node.input[w_i]), rows, True, extra
        )

    return rule


def _mha(g: FoldedGraph, node, at: dict) -> MatrixWork | None:
    """MultiHeadAttention: projections are outside; QK^T and AV only."""
    q, key, out = g.shape(node.input[0]), g.shape(_inp(node, 1)), g.shape(node.output[0])
    if q is None or out is None:
        return None
    heads, (b, s) = at["num_heads"], q[:2]
    if key is not None:  # [B, L, D], BNSH [B, N, L, H] or packed KV [B, L, N, 2, H]
        kv_len, d = (key[2] if len(key) == 4 else key[1]), q[2]
    else:  # packed QKV in the query: [B, S, N, 3, H]
        kv_len, d = s, q[2] * q[4]
    past = g.shape(_inp(node, 6))
    kv_len += past[2] if past and len(past) == 4 else 0
    extra = ATTENTION_SCORE_FLOPS * b * heads * s * kv_len + b * s * g.elems(_inp(node, 3))
    dims = (b * heads * s, d // heads, kv_len)
    operands = tuple(i for i in node.input[:3] if i)
    return MatrixWork(b * s * kv_len * (d + out[-1]), dims, operands, None, True, extra)


def _einsum(g: FoldedGraph, node, at: dict) -> MatrixWork | None:
    """Two-operand Einsum without ellipsis: MACs = product of all index sizes."""
    eq = at["equation"].decode() if isinstance(at["equation"], bytes) else at["equation"]
    lhs, _, out = eq.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if "." in eq or not out or len(terms) != 2:
        return None
    size: dict[str, int] = {}
    for term, name in zip(terms, node.input, strict=False):
        shape = g.shape(name)
        if shape is None or len(shape) != len(term):
            return None
        size.update(zip(term, shape, strict=True))
    a, b = (set(t) for t in terms)
    macs = math.prod(size[c] for c in a | b)
    k = math.prod(size[c] for c in (a & b) - set(out))
    n = math.prod(size[c] for c in b - a)
    return MatrixWork(macs, (macs // max(k * n, 1), k, n), tuple(node.input[:2]))


MATRIX_RULES: dict[str, MatrixRule] = {
    "MatMul": _matmul(),
    "FusedMatMul": _matmul(),
    "MatMulInteger": _matmul(b_zp=3),
    "QLinearMatMul": _matmul(0, 3, b_zp=5),
    "DynamicQuantizeMatMul": _matmul(b_zp=3, bias=4),
    "MatMulIntegerToFloat": _matmul(b_zp=5, bias=6),
    "MatMulNBits": _matmul_nbits,
    "Gemm": _matmul(bias=2),  # transA / transB read like FusedMatMul's
    "Conv": _conv(),
    "ConvInteger": _conv(zp_i=3, bias=None),
    "QLinearConv": _conv(3, zp_i=5, bias=8),
    "Attention": _attention(),
    "QAttention": _attention(zp_i=7, past_i=8),
    "MultiHeadAttention": _mha,
    "Einsum": _einsum,
}
"""The rule of each matrix op type; it returns None when the shapes it needs are unknown."""


def weight_sparsity(rows: np.ndarray | None, group_ok: bool) -> tuple[float, bool]:
    """The share of zeros in the weight `rows` and whether it is 2:4 along the reduction."""
    if rows is None or rows.size == 0:
        return 0.0, False
    nonzero = rows != 0
    nm = group_ok and rows.shape[1] % 4 == 0
    nm = nm and bool((nonzero.reshape(rows.shape[0], -1, 4).sum(axis=2) <= 2).all())
    return float(1.0 - nonzero.mean()), nm


def matrix_precision(g: FoldedGraph, node: onnx.NodeProto, work: MatrixWork) -> str:
    """The precision a matrix op computes in: integer ops and all-quantized QDQ operands
    compute quantized, anything else in its first float operand's type."""
    if node.op_type in INTEGER_OPS:
        return "int8"
    if node.op_type != "MatMulNBits":
        sources = [g.dq_source(name) for name in work.operands]
        if all(sources):
            kinds = {g.dtype(s.input[0]) for s in sources}
            if kinds <= FOUR_BIT_DTYPES:
                return "int4"
            return "fp8" if kinds <= FP8_DTYPES else "int8"
        first = next(n for n, s in zip(work.operands, sources, strict=True) if s is None)
        return PRECISION_OF_DTYPE.get(g.dtype(first), "fp32")
    return PRECISION_OF_DTYPE.get(g.dtype(node.input[0]), "fp32")


def non_matrix_flops(g: FoldedGraph, node: onnx.NodeProto, at: dict) -> int:
    """FLOPs of a node with no matrix rule; an op type with no rule at all is recorded in
    `g.unknown_ops` and costs 0 (data movement ops cost 0 without being recorded)."""
    op, out = node.op_type, g.elems(node.output[0]) if node.output else 0
    if op in FLOPS_PER_ELEMENT:
        return FLOPS_PER_ELEMENT[op] * out
    if op in _PER_INPUT_ELEMENT:
        return _PER_INPUT_ELEMENT[op] * g.elems(node.input[0])
    if op in ("MaxPool", "AveragePool", "LpPool"):
        return out * math.prod(at.get("kernel_shape", [1]))
    if op not in _MOVEMENT:
        g.unknown_ops.add(op)
    return 0
