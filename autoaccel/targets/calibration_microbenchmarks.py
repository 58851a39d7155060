"""The micro-benchmark graphs `autoaccel calibrate` times to fit the CPU cost model.

Each `Micro` builds one small ONNX graph (with onnx.helper) and its feeds: fp32 MatMul from
1x64x64 to 512x1024x1024 and two Convs (compute-bound), element-wise Add from 1e3 to 3e7
elements (memory-bound, from cache to DRAM), chains of 16 and 64 tiny Adds (per-op dispatch),
int8 products (MatMulInteger, the dynamic-quantization patterns of MatMul and Conv, a QDQ
MatMul), the vector ops of a transformer (Softmax, LayerNormalization, erf-GELU, Transpose) and
the ONNX Runtime contrib ops fusion produces (Attention, SkipLayerNormalization, BiasGelu).
`micro_suite` lists them; `autoaccel.targets.calibrate` times them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Micro:
    """One single-op (or one-pattern) graph: its name, what it exercises and how to build it."""

    name: str
    kind: str  # "compute", "memory", "overhead", "int8" or "vector"
    build: Callable[[np.random.Generator], tuple[Any, dict[str, np.ndarray]]]


def _model(nodes, inputs, outputs, inits=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "micro", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _tensor(name: str, elem: int, shape: Sequence[int]):
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, list(shape))


def fp32_matmul_builder(m: int, k: int, n: int) -> Callable:
    """The builder of an fp32 [m, k] x [k, n] MatMul graph with a constant weight."""

    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        w = numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "w")
        model = _model(
            [helper.make_node("MatMul", ["x", "w"], ["y"])],
            [_tensor("x", TensorProto.FLOAT, (m, k))],
            [_tensor("y", TensorProto.FLOAT, (m, n))],
            [w],
        )
        return model, {"x": rng.standard_normal((m, k), dtype=np.float32)}

    return build


def add_chain_builder(length: int, size: int) -> Callable:
    """x + y, then `length - 1` more adds of y: element-wise work, no weights. Rows of 1,000
    elements: ONNX's data propagation walks a 1-D tensor element by element (10 s at 3e7)."""
    cols = 1000 if size % 1000 == 0 else size
    shape = (size // cols, cols)

    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper

        names = ["x", *(f"t{i}" for i in range(1, length)), "z"]
        nodes = [helper.make_node("Add", [a, "y"], [b]) for a, b in itertools.pairwise(names)]
        model = _model(
            nodes,
            [_tensor("x", TensorProto.FLOAT, shape), _tensor("y", TensorProto.FLOAT, shape)],
            [_tensor("z", TensorProto.FLOAT, shape)],
        )
        feeds = {n: rng.standard_normal(shape, dtype=np.float32) for n in ("x", "y")}
        return model, feeds

    return build


def _int8_weight(rng: np.random.Generator, k: int, n: int):
    from onnx import numpy_helper

    return numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "w")


def _matmul_integer(m: int, k: int, n: int) -> Callable:
    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        zero = numpy_helper.from_array(np.array(128, np.uint8), "xz")
        model = _model(
            [helper.make_node("MatMulInteger", ["x", "w", "xz"], ["y"])],
            [_tensor("x", TensorProto.UINT8, (m, k))],
            [_tensor("y", TensorProto.INT32, (m, n))],
            [_int8_weight(rng, k, n), zero],
        )
        return model, {"x": rng.integers(0, 256, (m, k), dtype=np.uint8)}

    return build


def _dynamic_int8(m: int, k: int, n: int) -> Callable:
    """The pattern quantize_dynamic writes: DynamicQuantizeLinear, MatMulInteger, rescale."""

    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        scale = numpy_helper.from_array(np.array(0.01, np.float32), "ws")
        nodes = [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["yi"]),
            helper.make_node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", "ws"], ["s"]),
            helper.make_node("Mul", ["yf", "s"], ["y"]),
        ]
        model = _model(
            nodes,
            [_tensor("x", TensorProto.FLOAT, (m, k))],
            [_tensor("y", TensorProto.FLOAT, (m, n))],
            [_int8_weight(rng, k, n), scale],
        )
        return model, {"x": rng.standard_normal((m, k), dtype=np.float32)}

    return build


def qdq_matmul_builder(m: int, k: int, n: int) -> Callable:
    """The pattern quantize_static writes (QDQ around a MatMul); ORT fuses it to int8."""

    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        consts = [
            _int8_weight(rng, k, n),
            numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
            numpy_helper.from_array(np.array(0, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            numpy_helper.from_array(np.array(128, np.uint8), "z"),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
            helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
            helper.make_node("MatMul", ["xd", "wd"], ["y0"]),
            helper.make_node("QuantizeLinear", ["y0", "s", "z"], ["yq"]),
            helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"]),
        ]
        model = _model(
            nodes,
            [_tensor("x", TensorProto.FLOAT, (m, k))],
            [_tensor("y", TensorProto.FLOAT, (m, n))],
            consts,
        )
        return model, {"x": rng.standard_normal((m, k), dtype=np.float32)}

    return build


def _conv(batch: int, cin: int, cout: int, hw: int) -> Callable:
    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32)
        model = _model(
            [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
            [_tensor("x", TensorProto.FLOAT, (batch, cin, hw, hw))],
            [_tensor("y", TensorProto.FLOAT, (batch, cout, hw, hw))],
            [numpy_helper.from_array(w, "w")],
        )
        return model, {"x": rng.standard_normal((batch, cin, hw, hw), dtype=np.float32)}

    return build


def _unary(op: str, shape: Sequence[int], **attrs: Any) -> Callable:
    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper

        out = shape if op != "Transpose" else [shape[i] for i in attrs["perm"]]
        model = _model(
            [helper.make_node(op, ["x"], ["y"], **attrs)],
            [_tensor("x", TensorProto.FLOAT, shape)],
            [_tensor("y", TensorProto.FLOAT, out)],
        )
        return model, {"x": rng.standard_normal(shape, dtype=np.float32)}

    return build


def _layer_norm(rows: int, width: int) -> Callable:
    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        consts = [
            numpy_helper.from_array(np.ones(width, np.float32), "g"),
            numpy_helper.from_array(np.zeros(width, np.float32), "b"),
        ]
        model = _model(
            [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)],
            [_tensor("x", TensorProto.FLOAT, (rows, width))],
            [_tensor("y", TensorProto.FLOAT, (rows, width))],
            consts,
        )
        return model, {"x": rng.standard_normal((rows, width), dtype=np.float32)}

    return build


def _erf_gelu(rows: int, width: int) -> Callable:
    """GELU as exporters write it: x * 0.5 * (1 + erf(x / sqrt 2))."""

    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        consts = [
            numpy_helper.from_array(np.array(math.sqrt(2), np.float32), "r2"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        ]
        nodes = [
            helper.make_node("Div", ["x", "r2"], ["d"]),
            helper.make_node("Erf", ["d"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["a"]),
            helper.make_node("Mul", ["x", "a"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"]),
        ]
        model = _model(
            nodes,
            [_tensor("x", TensorProto.FLOAT, (rows, width))],
            [_tensor("y", TensorProto.FLOAT, (rows, width))],
            consts,
        )
        return model, {"x": rng.standard_normal((rows, width), dtype=np.float32)}

    return build


def _dynamic_int8_conv(batch: int, cin: int, cout: int, hw: int) -> Callable:
    """The pattern quantize_dynamic writes for a Conv: DynamicQuantizeLinear, ConvInteger."""

    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        w = rng.integers(-127, 128, (cout, cin, 3, 3), dtype=np.int8)
        consts = [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
        ]
        nodes = [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("ConvInteger", ["xq", "w", "xz"], ["yi"], pads=[1, 1, 1, 1]),
            helper.make_node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", "ws"], ["s"]),
            helper.make_node("Mul", ["yf", "s"], ["y"]),
        ]
        model = _model(
            nodes,
            [_tensor("x", TensorProto.FLOAT, (batch, cin, hw, hw))],
            [_tensor("y", TensorProto.FLOAT, (batch, cout, hw, hw))],
            consts,
        )
        return model, {"x": rng.standard_normal((batch, cin, hw, hw), dtype=np.float32)}

    return build


def _contrib(op: str, shapes: dict[str, Sequence[int]], out: Sequence[int], **attrs) -> Callable:
    """One ONNX Runtime contrib op (com.microsoft) of a fused transformer graph; inputs named
    in `shapes` are fed, inputs "w"/"b"/"g" are weights (hidden x 3 hidden, or a vector)."""

    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper, numpy_helper

        feeds = {n: rng.standard_normal(s, dtype=np.float32) for n, s in shapes.items()}
        hidden, names, consts = out[-1], list(shapes), []
        if op == "Attention":
            consts.append(
                numpy_helper.from_array(
                    rng.standard_normal((hidden, 3 * hidden), dtype=np.float32) * 0.05, "w"
                )
            )
            consts.append(numpy_helper.from_array(np.zeros(3 * hidden, np.float32), "b"))
            names += ["w", "b"]
        else:
            if op == "SkipLayerNormalization":
                consts.append(numpy_helper.from_array(np.ones(hidden, np.float32), "g"))
                names.append("g")
            consts.append(numpy_helper.from_array(np.zeros(hidden, np.float32), "b"))
            names.append("b")
        node = helper.make_node(op, names, ["y"], domain="com.microsoft", **attrs)
        inputs = [_tensor(n, TensorProto.FLOAT, s) for n, s in shapes.items()]
        model = _model([node], inputs, [_tensor("y", TensorProto.FLOAT, out)], consts)
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return model, feeds

    return build


def micro_suite(quick: bool = False) -> list[Micro]:
    """The graphs `run_microbenchmarks` times; `quick` keeps a small, fast subset."""
    mm = [(1, 64, 64), (1, 256, 256), (1, 1024, 1024), (16, 256, 256), (64, 512, 512)]
    mm += [(128, 384, 1536), (128, 1024, 1024), (512, 1024, 1024)]
    adds = [1_000, 10_000, 100_000, 1_000_000, 10_000_000, 30_000_000]
    suite = [
        Micro(f"matmul {m}x{k}x{n} fp32", "compute", fp32_matmul_builder(m, k, n))
        for m, k, n in mm
    ]
    suite += [Micro(f"add {s:.0e} fp32", "memory", add_chain_builder(1, s)) for s in adds]
    suite += [Micro(f"{n} adds of 1e3", "overhead", add_chain_builder(n, 1_000)) for n in (16, 64)]
    suite += [
        Micro("conv 1x16x28x28 -> 32 3x3", "compute", _conv(1, 16, 32, 28)),
        Micro("conv 32x16x28x28 -> 32 3x3", "compute", _conv(32, 16, 32, 28)),
        Micro("matmulinteger 16x256x256", "int8", _matmul_integer(16, 256, 256)),
        Micro("matmulinteger 128x1024x1024", "int8", _matmul_integer(128, 1024, 1024)),
        Micro("dynamic int8 128x384x1536", "int8", _dynamic_int8(128, 384, 1536)),
        Micro("qdq int8 128x384x384", "int8", qdq_matmul_builder(128, 384, 384)),
        Micro("dynamic int8 conv 1x16x28x28 -> 32", "int8", _dynamic_int8_conv(1, 16, 32, 28)),
        Micro("softmax 12x128x128", "vector", _unary("Softmax", (12, 128, 128), axis=-1)),
        Micro("layernorm 128x384", "vector", _layer_norm(128, 384)),
        Micro("erf gelu 128x1536", "vector", _erf_gelu(128, 1536)),
        Micro("erf gelu 1x1024", "vector", _erf_gelu(1, 1024)),
        Micro("transpose 128x12x32", "memory", _unary("Transpose", (128, 12, 32), perm=[1, 0, 2])),
        Micro(
            "fused attention 1x128x384, 12 heads",
            "compute",
            _contrib("Attention", {"x": (1, 128, 384)}, (1, 128, 384), num_heads=12),
        ),
        Micro(
            "fused skip layernorm 1x128x384",
            "vector",
            _contrib(
                "SkipLayerNormalization", {"x": (1, 128, 384), "s": (1, 128, 384)}, (1, 128, 384)
            ),
        ),
        Micro(
            "fused bias gelu 1x128x1536",
            "vector",
            _contrib("BiasGelu", {"x": (1, 128, 1536)}, (1, 128, 1536)),
        ),
    ]
    if quick:
        keep = {"matmul 1x64x64 fp32", "matmul 64x512x512 fp32", "add 1e+03 fp32"}
        keep |= {"add 1e+06 fp32", "16 adds of 1e3", "matmulinteger 16x256x256"}
        keep |= {"layernorm 128x384"}
        suite = [m for m in suite if m.name in keep]
    return suite


def copy_bandwidth(nbytes: int = 256 * 2**20, repeats: int = 5) -> tuple[float, str]:
    """DRAM bandwidth in GB/s as a numpy copy reaches it (read + write counted, best of
    `repeats`), with its source. `nbytes` should dwarf the caches (256 MiB: 8x a 32 MiB L3)."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    gbps = 2 * nbytes / best / 1e9
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return gbps, (
        f"measured here ({socket.gethostname()}, {when}): numpy copy of "
        f"{nbytes / 2**20:.0f} MiB, read + write counted, best of {repeats}: {gbps:.1f} GB/s"
    )
