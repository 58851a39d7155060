"""What NNCF's ONNX backend needs of a graph before its int8 post-training quantization.

NNCF 3.4 builds its own view of the graph and fails, deep inside, on graphs that ONNX Runtime
runs fine: an ONNX Runtime fused graph whose contrib ops carry no output types; a same-type
Cast whose output is a graph output (skl2onnx's class labels), which its no-op-Cast pass
removes and then looks up; a sequence or map input or output (skl2onnx's ZipMap), for which
its statistics session is built with an untyped tensor. The first two are mended here, the
third is an infeasible recipe with its reason.
"""

from __future__ import annotations

from typing import Any

from autoaccel.errors import InfeasibleRecipe


def for_nncf(model: Any) -> Any:
    """`model` (an onnx.ModelProto) as NNCF can take it; InfeasibleRecipe where it cannot."""
    graph = model.graph
    odd = [v.name for v in (*graph.input, *graph.output) if not v.type.tensor_type.elem_type]
    if odd:
        raise InfeasibleRecipe(
            f"int8_nncf: NNCF's ONNX backend cannot take a graph whose {', '.join(odd)} is not "
            "a tensor (a sequence or map, e.g. skl2onnx's ZipMap); int8_static and "
            "int8_dynamic quantize the same products",
            "quantize_graph_io",
        )
    _identity_output_casts(model)
    if any(node.domain == "com.microsoft" for node in graph.node):
        # ORT's fused ops (Attention, SkipLayerNormalization) carry no output shapes; NNCF's
        # graph builder needs every edge typed, which ORT's own shape inference provides.
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    return model


def _identity_output_casts(model: Any) -> None:
    """Same-type Casts that give a graph output become Identity (the same values)."""
    import onnx

    typed = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*typed.value_info, *typed.input)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and node.output[0] in outputs and types.get(node.input[0]) == to:
            node.op_type = "Identity"
            del node.attribute[:]
