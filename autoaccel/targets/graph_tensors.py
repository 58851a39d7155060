"""The analysed graph's tensors: dtypes, shapes, stored bytes and constant values.

`autoaccel.targets.graph.analyze` needs to ask, for any tensor name, what type and shape it
has after shape inference, how many bytes it occupies as stored, and (for weights) what its
value is. `FoldedGraph` answers those questions and folds away the constant-only nodes, as ONNX
Runtime does, so the per-op rules of `autoaccel.targets.graph_ops` see only the nodes that run.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP8_DTYPES = {
    getattr(TensorProto, f"FLOAT8{s}") for s in ("E4M3FN", "E4M3FNUZ", "E5M2", "E5M2FNUZ")
}
FOUR_BIT_DTYPES = {TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT4E2M1}
PRECISION_OF_DTYPE = {
    TensorProto.FLOAT: "fp32",
    TensorProto.FLOAT16: "fp16",
    TensorProto.BFLOAT16: "bf16",
}
PRECISION_OF_DTYPE |= {
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "int8",
    **dict.fromkeys(FP8_DTYPES, "fp8"),
}
PRECISION_OF_DTYPE |= {TensorProto.INT4: "int4", TensorProto.UINT4: "int4"}
"""The precision name (`NodeCost.precision`) of an ONNX element type."""
LAYOUT_OPS = frozenset("Transpose Reshape Squeeze Unsqueeze Flatten Identity".split())
"""Ops that only rearrange a tensor: a weight traced through them keeps its stored bytes."""


def node_attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def stored_bytes(elem: int, shape: tuple[int, ...] | None) -> int:
    """Bytes of a tensor of ONNX element type `elem` (int4: half a byte); 0 if shape unknown."""
    if shape is None:
        return 0
    if elem in FOUR_BIT_DTYPES:
        return math.ceil(math.prod(shape) / 2)
    size = np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize if elem else 0
    return math.prod(shape) * size


class FoldedGraph:
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
        self.consts = {name: stored_bytes(*self.types[name]) for name in self.inits}
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
        if node.op_type in LAYOUT_OPS:
            return self.consts[ins[0]]
        if node.op_type == "Constant" and "value" in (at := node_attributes(node)):
            return stored_bytes(at["value"].data_type, tuple(at["value"].dims))
        return self.nbytes(node.output[i])

    def dtype(self, name: str) -> int:
        return self.types.get(name, (0, None))[0]

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.types.get(name, (0, None))[1]

    def elems(self, name: str) -> int:
        shape = self.shape(name)
        return math.prod(shape) if shape is not None else 0

    def nbytes(self, name: str) -> int:
        return stored_bytes(*self.types.get(name, (0, None)))

    def dq_source(self, name: str) -> onnx.NodeProto | None:
        """The DequantizeLinear feeding `name` (through layout ops), if any."""
        node = self.producer.get(name)
        while node is not None and node.op_type in LAYOUT_OPS:
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
        node, at = self.producer[name], node_attributes(self.producer[name])
        if node.op_type == "Constant":
            return numpy_helper.to_array(at["value"]) if "value" in at else None
        args = [self.value(i) if i else None for i in node.input]
        x, op = args[0] if args else None, node.op_type
        rest = args[1] if len(args) > 1 else None
        if x is None or op not in (*LAYOUT_OPS, "DequantizeLinear", "Cast"):
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
