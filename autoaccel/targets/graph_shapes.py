"""Fixing a candidate's input shapes and inferring every other tensor's shape from them.

`autoaccel.targets.graph.analyze` counts work at fixed input shapes, so it first writes them
into the graph inputs (`fix_input_shapes`) and then runs onnxruntime's symbolic shape
inference (`infer_shapes`), which knows the com.microsoft ops; the few it lacks (QAttention and
QEmbedLayerNormalization of int8 dynamic fused graphs, ...) get rules here. Where a rule gives
up (a reshape target computed at run time, as in graphs converted back from torch), ONNX
Runtime runs the graph once at those shapes and its tensors' shapes are taken.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import TensorProto, helper

from autoaccel.targets.graph_tensors import node_attributes


def fix_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Write the given shapes into the graph inputs; refuse symbolic dims left open.
    Returns the batch size: the first input's first dim (1 if it has none)."""
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


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every tensor's static shape: ONNX's own (C++) inference when the graph uses standard
    ops only and it resolves every output, else ORT's symbolic inference. The fast path
    keeps a search from importing sympy (about a second per process) for plain graphs."""
    if all(node.domain in ("", "ai.onnx") for node in model.graph.node):
        inferred = _onnx_shapes(model)
        if inferred is not None:
            return inferred
    try:
        return _symbolic_shapes(model)
    except Exception as exc:  # a rule that gives up (a Reshape to a shape of unknown rank)
        return _run_shapes(model, exc)


def _run_shapes(model: onnx.ModelProto, why: Exception) -> onnx.ModelProto:
    """The shapes ONNX Runtime computes when it runs the graph once on zeros of the fixed
    input shapes: exact for the shapes that do not depend on input values (a graph converted
    back from torch computes its reshape targets at run time, which static rules cannot
    follow). `why` is what the static inference raised; it is raised again if this fails."""
    import numpy as np
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    listed = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in listed:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                listed.add(name)
    try:
        session = ort.InferenceSession(
            probe.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        feeds = {}
        for spec in session.get_inputs():
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(_ORT_TYPES[spec.type]))
            feeds[spec.name] = np.zeros(spec.shape, dtype)
        values = session.run(None, feeds)
    except Exception:
        raise why from None
    inferred = onnx.ModelProto()
    inferred.CopyFrom(model)
    del inferred.graph.value_info[:]
    outputs = {o.name for o in inferred.graph.output}
    for out, value in zip(session.get_outputs(), values, strict=True):
        value = np.asarray(value)
        info = helper.make_tensor_value_info(
            out.name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)
        )
        target = inferred.graph.output if out.name in outputs else inferred.graph.value_info
        if out.name in outputs:
            next(o for o in target if o.name == out.name).CopyFrom(info)
        else:
            target.append(info)
    return inferred


_ORT_TYPES = {
    f"tensor({name})": value
    for name, value in (
        ("float", TensorProto.FLOAT), ("float16", TensorProto.FLOAT16),
        ("double", TensorProto.DOUBLE), ("int64", TensorProto.INT64),
        ("int32", TensorProto.INT32), ("int8", TensorProto.INT8), ("uint8", TensorProto.UINT8),
        ("bool", TensorProto.BOOL), ("bfloat16", TensorProto.BFLOAT16),
    )
}  # fmt: skip


def _onnx_shapes(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """ONNX's shape inference with data propagation, or None when any node output is left
    without a type or a fully static shape."""
    trial = onnx.ModelProto()
    trial.CopyFrom(model)
    del trial.graph.value_info[:]  # the exporter's symbolic dims would fight the fixed ones
    try:
        out = onnx.shape_inference.infer_shapes(trial, strict_mode=True, data_prop=True)
    except Exception:  # an op ONNX cannot infer: the symbolic path knows more
        return None
    known = {vi.name: vi for vi in (*out.graph.value_info, *out.graph.output, *out.graph.input)}
    for node in out.graph.node:
        for name in node.output:
            vi = known.get(name) if name else None
            if name and vi is None:
                return None
            if vi is not None:
                t = vi.type.tensor_type
                if t.elem_type == 0 or not t.HasField("shape"):
                    return None
                if any(not d.HasField("dim_value") for d in t.shape.dim):
                    return None
    return out


def _symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
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
        sizes = node_attributes(node).get("qkv_hidden_sizes")
        put(node, 0, dtype(node, 3), [*x[:2], sizes[2] if sizes else w[1] // 3])

    def q_embed(node) -> None:
        ids, table = ssi._get_shape(node, 0), ssi._get_shape(node, 2)
        put(node, 0, dtype(node, 8), [*ids, table[1]])
        if len(node.output) > 1 and node.output[1]:
            put(node, 1, TensorProto.INT32, [ids[0]])

    def to_float(node) -> None:  # float output, dtype of the scale at input 2
        ssi._compute_matmul_shape(node, dtype(node, 2))

    def fused_matmul(node) -> None:
        a, b, at = ssi._get_shape(node, 0), ssi._get_shape(node, 1), node_attributes(node)
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
