"""onnx2torch converters for the operator versions of opsets 16-21 that it lacks.

torch.onnx.export's default exporter (dynamo, torch >= 2.9) writes opset 18 or newer, and
onnx2torch 1.5.15 knows many operators only up to opset 13-17: it refuses a plain Conv + Gemm
network at "Reshape version 19", so a user's freshly exported file got no distillation, no
pruning and no PyTorch runtime. Most of those newer versions only widened the accepted types
(bfloat16, float8, int4): they reuse the last converter as they are. The reductions of
opset 18 take their axes as an input instead of an attribute: they get a converter that reads
a constant axes input. Flatten gets a converter of its own at every version (onnx2torch's
fails when the axis is the input's rank). Whatever these produce is still used only when its
outputs match ONNX Runtime's on every judging row (`onnx_torch.convert_checked`).

Imported only by `onnx_torch.load_onnx2torch`, once onnx2torch has imported.
"""

from __future__ import annotations

from typing import Any

import torch
from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
from onnx2torch.node_converters.registry import (
    _CONVERTER_REGISTRY,
    OperationDescription,
    add_converter,
)
from onnx2torch.node_converters.reshape import OnnxReshape
from onnx2torch.utils.common import (
    OnnxMapping,
    OperationConverterResult,
    get_const_value,
    onnx_mapping_from_node,
)
from onnx2torch.utils.custom_export_to_onnx import DefaultExportToOnnx

SAME_AS = {
    # operator: ((newer version, the registered version whose converter it reuses), ...)
    "AveragePool": ((19, 11),),  # dilations: a non-default value fails the output check
    "Cast": ((19, 13), (21, 13)),  # float8 / int4 types, `saturate` for float8 only
    "Constant": ((19, 13), (21, 13)),
    "ConstantOfShape": ((20, 9), (21, 9)),
    "Equal": ((19, 13),),  # string types
    "GreaterOrEqual": ((16, 12),),  # bfloat16
    "Identity": ((19, 16), (21, 16)),
    "IsInf": ((20, 10),),
    "IsNaN": ((20, 13),),
    "LessOrEqual": ((16, 12),),
    "Shape": ((19, 15), (21, 15)),
    "Split": ((18, 13),),  # num_outputs: an uneven last part fails the output check
    "Squeeze": ((21, 13),),
    "Transpose": ((21, 13),),
    "Unsqueeze": ((21, 13),),
    "Where": ((16, 9),),  # bfloat16
}
GUARDED = {
    # operator: ((newer version, reused version, what the reused converter cannot do), ...)
    "Pad": tuple((v, 13, "Pad with an axes input or wrap mode") for v in (18, 19, 21)),
    "Resize": tuple((v, 13, "Resize with antialias, axes or an aspect policy") for v in (18, 19)),
    "ScatterND": ((18, 16, "ScatterND with max or min reduction"),),
}
REDUCTIONS_18 = (
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSumSquare",
)  # fmt: skip
"""Reductions whose axes became an input in opset 18 (ReduceMax and ReduceMin again in 20,
for boolean types)."""


def register() -> None:
    """Add the converters onnx2torch lacks (once; a version it has is left alone)."""

    def missing(op: str, version: int) -> bool:
        return OperationDescription("", op, version) not in _CONVERTER_REGISTRY

    for op, pairs in SAME_AS.items():
        for newer, older in pairs:
            known = _CONVERTER_REGISTRY.get(OperationDescription("", op, older))
            if known is not None and missing(op, newer):
                add_converter(operation_type=op, version=newer)(known)
    for op, triples in GUARDED.items():
        for newer, older, what in triples:
            known = _CONVERTER_REGISTRY.get(OperationDescription("", op, older))
            if known is not None and missing(op, newer):
                add_converter(operation_type=op, version=newer)(_guarded(known, what))
    for version in (5, 13, 14, 19, 21):  # 14 refuses allowzero=1; all: torch.compile
        _CONVERTER_REGISTRY[OperationDescription("", "Reshape", version)] = _reshape
    for version in (1, 9, 11, 13, 21):  # every Flatten: onnx2torch's fails at axis == rank
        _CONVERTER_REGISTRY[OperationDescription("", "Flatten", version)] = _flatten
    if missing("Gelu", 20):
        add_converter(operation_type="Gelu", version=20)(_gelu)
    for op in REDUCTIONS_18:
        for version in (18, 20) if op in ("ReduceMax", "ReduceMin") else (18,):
            if missing(op, version):
                add_converter(operation_type=op, version=version)(_reduce_with_axes_input)


def _reduce_with_axes_input(node: Any, graph: Any) -> Any:
    """A reduction whose axes are a constant input (or absent: every axis)."""

    axes = None
    if len(node.input_values) > 1 and node.input_values[1]:
        try:
            axes = [int(a) for a in get_const_value(node.input_values[1], graph).tolist()]
        except KeyError:
            what = f"{node.operation_type} with axes computed at run time"
            raise NotImplementedError(what) from None
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        raise NotImplementedError(f"{node.operation_type} with noop_with_empty_axes")
    module = OnnxReduceStaticAxes(
        operation_type=node.operation_type,
        axes=axes or None,
        keepdims=node.attributes.get("keepdims", 1),
    )
    mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
    return OperationConverterResult(torch_module=module, onnx_mapping=mapping)


def _unsupported(node: Any) -> bool:
    """Whether a node uses what its opset 18-21 version added to the reused converter's."""
    inputs, attrs = node.input_values, node.attributes
    if node.operation_type == "Pad":
        return (len(inputs) > 3 and bool(inputs[3])) or attrs.get("mode", "constant") == "wrap"
    if node.operation_type == "Resize":
        return bool(attrs.get("antialias", 0)) or "axes" in attrs or (
            attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch"
        )  # fmt: skip
    return attrs.get("reduction", "none") in ("max", "min")


def _guarded(known: Any, what: str) -> Any:
    def converter(node: Any, graph: Any) -> Any:
        if _unsupported(node):
            raise NotImplementedError(what)
        return known(node, graph)

    return converter


def _flatten(node: Any, graph: Any) -> Any:
    """Flatten at any axis, 0 and the input's rank included."""
    return OperationConverterResult(
        torch_module=OnnxFlattenAnyAxis(node.attributes.get("axis", 1)),
        onnx_mapping=onnx_mapping_from_node(node),
    )


class OnnxFlattenAnyAxis(torch.nn.Module):
    """ONNX Flatten: shape (product of the dims before `axis`, product of the rest), where
    onnx2torch's own flattens to 1-D when `axis` is the rank (the legacy exporter writes such
    a Flatten of a [batch, tokens] mask in BERT-like graphs) and then fails."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        if axis == 0:
            return x.reshape(1, -1)
        head = torch.flatten(x, 0, axis - 1)
        return torch.flatten(head, 1) if head.dim() > 1 else head.unsqueeze(1)


def _gelu(node: Any, graph: Any) -> Any:
    """Gelu (opset 20): torch's GELU, exact or with the tanh approximation."""

    approximate = node.attributes.get("approximate", "none")
    return OperationConverterResult(
        torch_module=torch.nn.GELU(approximate=approximate),
        onnx_mapping=onnx_mapping_from_node(node),
    )


def _reshape(node: Any, graph: Any) -> Any:
    """Reshape with `allowzero=1` (torch.onnx's dynamo exporter writes it everywhere): a 0 in
    the shape is then a size of 0, which is torch.reshape's own reading; onnx2torch refuses it.
    Without it, onnx2torch's reading in ints (`OnnxReshapeInts`), which torch.compile takes."""
    module = OnnxReshapeAllowZero() if node.attributes.get("allowzero") else OnnxReshapeInts()
    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))


class OnnxReshapeInts(OnnxReshape):
    """onnx2torch's Reshape (a 0 keeps that input dimension), read as plain ints: its own
    reading builds a torch.Size of 0-d tensors, which torch.compile cannot trace."""

    @staticmethod
    def _do_reshape(input_tensor: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = [int(d) for d in shape.tolist()]
        return torch.reshape(input_tensor, [input_tensor.shape[i] if d == 0 else d
                                            for i, d in enumerate(dims)])  # fmt: skip


class OnnxReshapeAllowZero(OnnxReshape):
    """torch.reshape as it is; exported back to ONNX as Reshape(allowzero=1)."""

    def forward(self, input_tensor: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        def _forward() -> torch.Tensor:
            return torch.reshape(input_tensor, torch.Size(shape))

        if torch.onnx.is_in_onnx_export():
            attrs = {"allowzero_i": 1}
            return DefaultExportToOnnx.export(_forward, "Reshape", input_tensor, shape, attrs)
        return _forward()
