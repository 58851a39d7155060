"""What autoaccel reads from a user's ONNX file besides its inputs.

Its weights may live in separate files (`save_as_external_data`, what torch.onnx's dynamo
exporter writes for large models): wherever autoaccel copies or fingerprints a model, the data
files go with it, or a copy is a model without weights and a changed weight file is a stale
cache hit. It may be a float16 model, which its baseline's description must say and the
quantizers must widen first (`techniques/float32_graph.py`). And it may be quantized already
(int8 QDQ or integer operators), which no quantizer here takes as input.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

FLOAT16 = 10
"""onnx.TensorProto.FLOAT16."""


def is_float16(path: Path) -> bool:
    """Whether the graph holds float16 weights or takes or returns float16 tensors."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    edges = [*graph.input, *graph.output]
    return any(t.data_type == FLOAT16 for t in graph.initializer) or any(
        v.type.tensor_type.elem_type == FLOAT16 for v in edges
    )


QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
    "ConvInteger", "QLinearMatMul", "QLinearConv", "QGemm", "QAttention", "MatMulNBits",
    "DynamicQuantizeMatMul", "QEmbedLayerNormalization",
})  # fmt: skip
"""Operators only a quantized graph holds (standard and com.microsoft)."""


def quantized_ops(path: Path) -> list[str]:
    """The quantized operators the graph holds, sorted; empty for a float model."""
    return sorted(op_types(path) & QUANTIZED_OPS)


def op_types(path: Path) -> frozenset[str]:
    """Every operator type the graph holds. Asked each time the search lists the quantizer's
    parameters, so the file is read once per version."""
    stat = Path(path).stat()
    return _op_types(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _op_types(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return frozenset(node.op_type for node in graph.node)


def external_files(path: Path) -> list[Path]:
    """The data files `path`'s tensors point at (resolved beside the model), in a fixed order."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    proto = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in _get_all_tensors(proto):
        if uses_external_data(tensor):
            entries = {e.key: e.value for e in tensor.external_data}
            locations.add(entries["location"])
    return [Path(path).parent / location for location in sorted(locations)]


def copy_onnx(source: Path, target: Path) -> None:
    """Copy a model and the data files it names, keeping their places relative to it."""
    shutil.copyfile(source, target)
    for data in external_files(source):
        relative = data.relative_to(Path(source).parent)
        (Path(target).parent / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, Path(target).parent / relative)
