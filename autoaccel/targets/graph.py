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

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autoaccel.targets.base import GraphCost, NodeCost

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
_LAYOUT = frozenset("Transpose Reshape Squeeze Unsqueeze Flatten Identity".split())
_INTEGER_OPS = frozenset(
    "MatMulInteger ConvInteger QLinearMatMul QLinearConv QAttention DynamicQuantizeMatMul "
    "MatMulIntegerToFloat QGemm".split()
)
_FP8 = {getattr(TensorProto, f"FLOAT8{s}") for s in ("E4M3FN", "E4M3FNUZ", "E5M2", "E5M2FNUZ")}
_FOUR_BIT = {TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT4E2M1}
_PRECISION = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
_PRECISION |= {TensorProto.INT8: "int8", TensorProto.UINT8: "int8", **dict.fromkeys(_FP8, "fp8")}
_PRECISION |= {TensorProto.INT4: "int4", TensorProto.UINT4: "int4"}


def analyze(onnx_path: Path | str, input_shapes: dict[str, tuple[int, ...]]) -> GraphCost:
    """Per-node MACs, FLOPs, bytes, precision and sparsity of an ONNX model at fixed shapes.

    `input_shapes` fixes graph inputs by name; inputs left out keep the model's dims, and a
    symbolic dim left unfixed raises ValueError. `batch_size` is the first input's first dim.
    """
    model = onnx.load(str(onnx_path), load_external_data=True)
    batch = _fix_inputs(model, input_shapes)
    graph = _Graph(_infer_shapes(model))
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


def _fused_activation_dq(g: _Graph, costs: list[NodeCost]) -> set[int]:
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


_TABLE_OPS = ("Gather", "EmbedLayerNormalization", "QEmbedLayerNormalization")


def _fix_inputs(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Write the given shapes into the graph inputs; refuse symbolic dims left open."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    names = [i.name for i in inputs]
    if unknown := sorted(set(shapes) - set(names)):
        raise ValueError(f"input_shapes names {unknown}, but the model's inputs are {names}")
    for vi in inputs:
        tensor = vi.type.tensor_type
        model_dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        given = shapes.get(vi.name)
        if given is None:
            if not tensor.HasField("shape") or None in model_dims:
                dims = [d.dim_param or "?" for d in tensor.shape.dim]
                raise ValueError(
                    f"input {vi.name!r} has symbolic dims {dims}: give its shape in input_shapes"
                    f", e.g. {{{vi.name!r}: (1, ...)}}"
                )
            continue
        if tensor.HasField("shape") and len(model_dims) != len(given):
            raise ValueError(f"input {vi.name!r} has rank {len(model_dims)}, got shape {given}")
        for i, (fixed, value) in enumerate(zip(model_dims, given, strict=False)):
            if fixed is not None and fixed != value:
                raise ValueError(f"input {vi.name!r} dim {i} is {fixed} in the model, not {value}")
        del tensor.shape.dim[:]
        for value in given:
            tensor.shape.dim.add().dim_value = int(value)
    first = inputs[0].type.tensor_type.shape.dim if inputs else []
    return int(first[0].dim_value) if len(first) else 1


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's symbolic shape inference (knows com.microsoft ops) plus rules for the ops it
    lacks. Its `infer_shapes` wrapper is unrolled (internals `dispatcher_`, `_preprocess`,
    `_infer_impl`, as of onnxruntime 1.32) to add those rules, and so that an incomplete run
    raises a clear error instead of writing `sym_shape_infer_temp.onnx` into the cwd."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    del model.graph.value_info[:]  # the exporter's symbolic dims would fight the fixed ones
    ssi = SymbolicShapeInference(2**31 - 1, auto_merge=True, guess_output_rank=False, verbose=0)
    ssi.dispatcher_.update(_contrib_rules(ssi))
    ssi._preprocess(model)
    complete = False
    while ssi.run_:
        complete = ssi._infer_impl()
    ssi._update_output_from_vi()
    if not complete:
        known = ssi.known_vi_

        def typed(name: str) -> bool:
            return name in known and known[name].type.tensor_type.elem_type != 0

        stuck = [n for n in model.graph.node if not all(typed(o) for o in n.output if o)]
        where = f" at node {stuck[0].name!r} ({stuck[0].domain or 'ai.onnx'}.{stuck[0].op_type})"
        raise ValueError(f"shape inference stopped{where if stuck else ''}: no shape rule for it")
    return ssi.out_mp_


def _contrib_rules(ssi) -> dict[str, Callable]:
    """Shape rules for com.microsoft ops missing from ORT's symbolic inference (1.32)."""

    def dtype(node, i: int) -> int:
        name = node.input[i]
        if name in ssi.known_vi_:
            return ssi.known_vi_[name].type.tensor_type.elem_type
        return ssi.initializers_[name].data_type

    def put(node, i: int, elem: int, shape: list) -> None:
        vi = helper.make_tensor_value_info(node.output[i], elem, shape)
        ssi.known_vi_[node.output[i]].CopyFrom(vi)

    def q_attention(node) -> None:
        x, w = ssi._get_shape(node, 0), ssi._get_shape(node, 1)
        sizes = _attrs(node).get("qkv_hidden_sizes")
        put(node, 0, dtype(node, 3), [*x[:2], sizes[2] if sizes else w[1] // 3])

    def q_embed(node) -> None:
        ids, table = ssi._get_shape(node, 0), ssi._get_shape(node, 2)
        put(node, 0, dtype(node, 8), [*ids, table[1]])
        if len(node.output) > 1 and node.output[1]:
            put(node, 1, TensorProto.INT32, [ids[0]])

    def to_float(node) -> None:  # float output, dtype of the scale at input 2
        ssi._compute_matmul_shape(node, dtype(node, 2))

    def fused_matmul(node) -> None:
        a, b, at = ssi._get_shape(node, 0), ssi._get_shape(node, 1), _attrs(node)
        a = [*a[:-2], a[-1], a[-2]] if at.get("transA") else a
        b = [*b[:-2], b[-1], b[-2]] if at.get("transB") else b
        batch = ssi._broadcast_shapes(a[:-2], b[:-2])
        put(node, 0, dtype(node, 0), [*batch, a[-2], b[-1]])

    return {
        "QAttention": q_attention,
        "QEmbedLayerNormalization": q_embed,
        "DynamicQuantizeMatMul": to_float,
        "MatMulIntegerToFloat": to_float,
        "FusedMatMul": fused_matmul,
    }


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _nbytes(elem: int, shape: tuple[int, ...] | None) -> int:
    if shape is None:
        return 0
    if elem in _FOUR_BIT:
        return math.ceil(math.prod(shape) / 2)
    size = np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize if elem else 0
    return math.prod(shape) * size


class _Graph:
    """Tensor types/shapes after inference, constants (with stored bytes), and the nodes left
    after folding the constant-only ones."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.types: dict[str, tuple[int, tuple[int, ...] | None]] = {}
        for vi in [*g.input, *g.value_info, *g.output]:
            t = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            shape = tuple(dims) if t.HasField("shape") and None not in dims else None
            self.types[vi.name] = (t.elem_type, shape)
        self.types.update({t.name: (t.data_type, tuple(t.dims)) for t in g.initializer})
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.consts = {name: _nbytes(*self.types[name]) for name in self.inits}
        self.unknown_ops: set[str] = set()
        self._values: dict[str, np.ndarray | None] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.folded = 0
        for node in g.node:
            if self._foldable(node):
                self.folded += 1
                for i, out in enumerate(node.output):
                    self.consts[out] = self._folded_bytes(node, i)
            else:
                self.nodes.append(node)

    def _foldable(self, node: onnx.NodeProto) -> bool:
        if node.op_type in ("Shape", "Size"):  # static once the input shapes are fixed
            return self.shape(node.input[0]) is not None
        return not node.op_type.startswith("Random") and all(
            i in self.consts for i in node.input if i
        )

    def _folded_bytes(self, node: onnx.NodeProto, i: int) -> int:
        ins = [x for x in node.input if x]
        if node.op_type == "DequantizeLinear":  # stays quantized: the kernel reads int8/int4
            return sum(self.consts[x] for x in ins)
        if node.op_type in _LAYOUT:
            return self.consts[ins[0]]
        if node.op_type == "Constant" and "value" in (at := _attrs(node)):
            return _nbytes(at["value"].data_type, tuple(at["value"].dims))
        return self.nbytes(node.output[i])

    def dtype(self, name: str) -> int:
        return self.types.get(name, (0, None))[0]

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.types.get(name, (0, None))[1]

    def elems(self, name: str) -> int:
        shape = self.shape(name)
        return math.prod(shape) if shape is not None else 0

    def nbytes(self, name: str) -> int:
        return _nbytes(*self.types.get(name, (0, None)))

    def dq_source(self, name: str) -> onnx.NodeProto | None:
        """The DequantizeLinear feeding `name` (through layout ops), if any."""
        node = self.producer.get(name)
        while node is not None and node.op_type in _LAYOUT:
            node = self.producer.get(node.input[0])
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def value(self, name: str) -> np.ndarray | None:
        """A constant's value (weights through DequantizeLinear / layout ops), else None."""
        if name not in self._values:
            self._values[name] = self._evaluate(name) if name in self.consts else None
        return self._values[name]

    def _evaluate(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node, at = self.producer[name], _attrs(self.producer[name])
        if node.op_type == "Constant":
            return numpy_helper.to_array(at["value"]) if "value" in at else None
        args = [self.value(i) if i else None for i in node.input]
        x, op = args[0] if args else None, node.op_type
        rest = args[1] if len(args) > 1 else None
        if x is None or op not in (*_LAYOUT, "DequantizeLinear", "Cast"):
            return None
        if op == "DequantizeLinear":
            zp = args[2] if len(args) > 2 else None
            return _dequantize(x, rest, zp, at.get("axis", 1), at.get("block_size", 0))
        if op == "Transpose":
            return np.transpose(x, at.get("perm"))
        if op == "Reshape" and rest is not None:
            return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(rest.tolist())])
        if op == "Flatten":
            return x.reshape(math.prod(x.shape[: at.get("axis", 1)]), -1)
        axes = tuple(rest.tolist()) if rest is not None else at.get("axes")
        if op == "Squeeze":
            return np.squeeze(x, axis=None if axes is None else tuple(axes))
        if op == "Unsqueeze":
            return np.expand_dims(x, tuple(axes))
        if op == "Cast":
            return x.astype(helper.tensor_dtype_to_np_dtype(at["to"]))
        return x  # Identity


def _dequantize(x, scale, zp, axis: int, block: int) -> np.ndarray:
    """(x - zero_point) * scale for per-tensor, per-axis and blocked quantization."""
    x = x.astype(np.float32)
    scale = scale.astype(np.float32)
    zp = np.zeros_like(scale) if zp is None else zp.astype(np.float32)
    axis %= max(x.ndim, 1)
    if block:
        scale, zp = (np.repeat(t, block, axis=axis) for t in (scale, zp))
        scale, zp = (np.take(t, range(x.shape[axis]), axis=axis) for t in (scale, zp))
    elif scale.ndim == 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (x - zp) * scale


@dataclass
class _Matrix:
    macs: int
    dims: tuple[int, int, int] | None
    operands: tuple[str, ...]  # the multiplied tensors (for precision)
    rows: np.ndarray | None = None  # the weight as (output units, reduction)
    group_ok: bool = True  # groups of 4 along the reduction stay within one kernel position
    extra_flops: int = 0  # bias adds, attention softmax


def _inp(node: onnx.NodeProto, i: int | None) -> str:
    return node.input[i] if i is not None and i < len(node.input) else ""


def _weight(g: _Graph, node, idx: int, zp_idx: int | None = None, zp_axis: int = -1):
    """The constant at input `idx` minus its zero point (zeros are zeros), or None."""
    w = g.value(_inp(node, idx))
    zp = g.value(_inp(node, zp_idx))
    if w is None or zp is None:
        return w
    zp = zp.astype(np.int32)
    if zp.ndim == 1 and zp.size > 1:
        zp = zp.reshape([-1 if i == zp_axis % w.ndim else 1 for i in range(w.ndim)])
    return w.astype(np.int32) - zp


def _matmul(a_i=0, b_i=1, b_zp=None, bias=None) -> Callable[..., _Matrix | None]:
    """MatMul and its variants, Gemm: MACs = output elements x K."""

    def rule(g: _Graph, node, at: dict) -> _Matrix | None:
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
        return _Matrix(macs, (macs // max(k * n, 1), k, n), operands, rows, True, extra)

    return rule


def _conv(w_i=1, zp_i=None, bias=2) -> Callable[..., _Matrix | None]:
    def rule(g: _Graph, node, at: dict) -> _Matrix | None:
        w, out = g.shape(node.input[w_i]), g.shape(node.output[0])
        if w is None or out is None:
            return None
        k = math.prod(w[1:])
        macs = math.prod(out) * k
        value = _weight(g, node, w_i, zp_i, zp_axis=0)
        rows = None if value is None else np.moveaxis(value, 1, -1).reshape(w[0], -1)
        extra = math.prod(out) if _inp(node, bias) else 0
        dims = (out[0] * math.prod(out[2:]), k, w[0])
        return _Matrix(macs, dims, (node.input[0], node.input[w_i]), rows, w[1] % 4 == 0, extra)

    return rule


def _matmul_nbits(g: _Graph, node, at: dict) -> _Matrix | None:
    a = g.shape(node.input[0])
    if a is None:
        return None
    m, k, n = math.prod(a[:-1]), at["K"], at["N"]
    extra = m * n if _inp(node, 5) else 0
    return _Matrix(m * k * n, (m, k, n), (node.input[0],), None, True, extra)


def _attention(w_i=1, zp_i=None, past_i=4) -> Callable[..., _Matrix | None]:
    """Attention / QAttention: QKV projection of the input, then QK^T and AV per head."""

    def rule(g: _Graph, node, at: dict) -> _Matrix | None:
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
        return _Matrix(
            macs, (b * s, d_in, w[1]), (node.input[0], node.input[w_i]), rows, True, extra
        )

    return rule


def _mha(g: _Graph, node, at: dict) -> _Matrix | None:
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
    return _Matrix(b * s * kv_len * (d + out[-1]), dims, operands, None, True, extra)


def _einsum(g: _Graph, node, at: dict) -> _Matrix | None:
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
    return _Matrix(macs, (macs // max(k * n, 1), k, n), tuple(node.input[:2]))


_MATRIX: dict[str, Callable[..., _Matrix | None]] = {
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


def _sparsity(rows: np.ndarray | None, group_ok: bool) -> tuple[float, bool]:
    if rows is None or rows.size == 0:
        return 0.0, False
    nonzero = rows != 0
    nm = group_ok and rows.shape[1] % 4 == 0
    nm = nm and bool((nonzero.reshape(rows.shape[0], -1, 4).sum(axis=2) <= 2).all())
    return float(1.0 - nonzero.mean()), nm


def _matrix_precision(g: _Graph, node: onnx.NodeProto, mat: _Matrix) -> str:
    if node.op_type in _INTEGER_OPS:
        return "int8"
    if node.op_type != "MatMulNBits":
        sources = [g.dq_source(name) for name in mat.operands]
        if all(sources):
            kinds = {g.dtype(s.input[0]) for s in sources}
            if kinds <= _FOUR_BIT:
                return "int4"
            return "fp8" if kinds <= _FP8 else "int8"
        first = next(n for n, s in zip(mat.operands, sources, strict=True) if s is None)
        return _PRECISION.get(g.dtype(first), "fp32")
    return _PRECISION.get(g.dtype(node.input[0]), "fp32")


def _other_flops(g: _Graph, node: onnx.NodeProto, at: dict) -> int:
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


def _node_cost(g: _Graph, node: onnx.NodeProto, index: int) -> NodeCost:
    at = _attrs(node)
    rule = _MATRIX.get(node.op_type)
    mat = rule(g, node, at) if rule else None
    if rule and mat is None:
        g.unknown_ops.add(f"{node.op_type} (shapes unknown)")
    fused_qdq = False
    if mat is not None:
        precision = _matrix_precision(g, node, mat)
        fused_qdq = node.op_type not in _INTEGER_OPS and precision in ("int8", "int4", "fp8")
        flops = 2 * mat.macs + mat.extra_flops
        sparsity, nm = _sparsity(mat.rows, mat.group_ok)
    else:
        first = (_PRECISION.get(g.dtype(i)) for i in node.input if i)
        precision = next((p for p in first if p), "fp32")
        flops, sparsity, nm = _other_flops(g, node, at), 0.0, False
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
