"""A float16 ONNX graph computed in float32, its inputs and outputs unchanged.

A model exported in half precision (for a GPU, or to halve the file) is what some users have.
The int8 and int4 quantizers start from float32 weights (ORT's writes an invalid graph from
float16 ones, NNCF binds float16 and float32 to one QuantizeLinear, the int4 quantizer finds
no weight), and CPUs compute float16 through casts anyway. So those modes quantize this
float32 copy: every float16 constant becomes float32, every cast to float16 a cast to float32,
and casts at the graph's edges keep the signature the user's data feeds.
"""

from __future__ import annotations

from pathlib import Path

from autoaccel.errors import InfeasibleRecipe
from autoaccel.workloads.onnx_facts import is_float16

__all__ = ["as_float32", "is_float16"]

F16, F32 = 10, 1
"""onnx.TensorProto.FLOAT16 and FLOAT."""


def as_float32(src: Path, out: Path) -> None:
    """Write `src` with float32 compute to `out` (same input and output names and types)."""
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    if any(a.type == onnx.AttributeProto.GRAPH for n in graph.node for a in n.attribute):
        raise InfeasibleRecipe(
            "a float16 graph with control flow (If / Loop / Scan subgraphs) is not widened to "
            "float32, which the int8 and int4 quantizers need",
            "quantize_float16",
        )
    for tensor in graph.initializer:
        _widen(tensor)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                _widen(attr.t)
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == F16:
                attr.i = F32
            elif attr.name == "dtype" and attr.i == F16:  # EyeLike, RandomNormal, ...
                attr.i = F32
    edges = []
    for graph_input in graph.input:
        if graph_input.type.tensor_type.elem_type == F16:
            inner = f"{graph_input.name}__float32"
            for node in graph.node:
                node.input[:] = [inner if i == graph_input.name else i for i in node.input]
            edges.append(onnx.helper.make_node("Cast", [graph_input.name], [inner], to=F32))
    for graph_output in graph.output:
        if graph_output.type.tensor_type.elem_type == F16:
            inner = f"{graph_output.name}__float32"
            for node in graph.node:
                node.output[:] = [inner if o == graph_output.name else o for o in node.output]
                node.input[:] = [inner if i == graph_output.name else i for i in node.input]
            edges.append(onnx.helper.make_node("Cast", [inner], [graph_output.name], to=F16))
    graph.node.extend(edges)
    nodes = list(graph.node)  # the output casts at the end, the input casts before their users
    del graph.node[:]
    graph.node.extend([n for n in nodes if _is_input_cast(n, graph)] + [
        n for n in nodes if not _is_input_cast(n, graph)
    ])  # fmt: skip
    del graph.value_info[:]  # float16 types recorded inside the graph no longer hold
    large = model.ByteSize() > 1_800_000_000  # twice the bytes: past protobuf's 2 GB, beside it
    onnx.save(model, str(out), save_as_external_data=large, location=f"{Path(out).name}.data")
    onnx.checker.check_model(str(out))


def _widen(tensor) -> None:
    import onnx.numpy_helper as nh

    if tensor.data_type == F16:
        tensor.CopyFrom(nh.from_array(nh.to_array(tensor).astype("float32"), tensor.name))


def _is_input_cast(node, graph) -> bool:
    names = {i.name for i in graph.input}
    return node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in names and (
        node.output[0] == f"{node.input[0]}__float32"
    )  # fmt: skip
