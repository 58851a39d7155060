"""Calibration of the cpu-local cost model: time small ONNX graphs here, fit the CPU model's
measured rates to them, and keep the result in `<runs>/calibration/cpu-local.json`.

The micro-benchmarks (`micro_suite`, 31 graphs) are built with onnx.helper: fp32 MatMul from
1x64x64 to 512x1024x1024 and two Convs (compute-bound), element-wise Add from 1e3 to 3e7
elements (memory-bound, from cache to DRAM), chains of 16 and 64 tiny Adds (per-op dispatch),
int8 products (MatMulInteger, the dynamic-quantization patterns of MatMul and Conv, a QDQ
MatMul), the vector ops of a transformer (Softmax, LayerNormalization, erf-GELU, Transpose) and
the ONNX Runtime contrib ops fusion produces (Attention, SkipLayerNormalization, BiasGelu).
Each is opened like a candidate (`open_runner`), timed by the protocol
(`measure_interleaved`) and analysed by `autoaccel.targets.graph.analyze`, so the measured
time and the modelled one count the same nodes. `fit` then picks the rates of the contract in
`autoaccel.targets.cpu` (compute_eta, vector_eta, memory_eta, cache_eta, overhead_us,
run_overhead_us, plus an op type's own compute_eta / vector_eta where it runs far from the
rest) that minimise the squared error of log(time).

Intra-op threads change compute-bound ops ~1.9x here and the cost model has no notion of
threads, so a calibration is per thread count: the file keeps one entry per count (merged on
write) and `apply_calibration` picks the one a session runs with (the nearest one calibrated).
Other work on this shared machine slows the timings, 2-thread ones most; each entry records
the 1-minute load average it was measured under.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.errors import UserError
from autoaccel.evaluate.measure import MeasureConfig, measure_interleaved
from autoaccel.targets.base import GraphCost, Plan
from autoaccel.targets.cpu import CpuTarget
from autoaccel.targets.profile import HardwareProfile

PROFILE_NAME = "cpu-local"
CALIBRATION_PROTOCOL = MeasureConfig().scaled(0.4)
"""Timing budget per micro-benchmark: 31 graphs, ~15-20 s per thread count on 2 cores."""
FITTED = ("compute_eta", "vector_eta", "memory_eta", "cache_eta", "overhead_us", "run_overhead_us")
"""The machine-wide rates `fit` always writes (see `autoaccel.targets.cpu` for each)."""
_START = (0.5, 0.1, 1.0, 3.0, 0.5, 5.0)
_BOUNDS = (1e-3, 1e3)
FORMAT = 1


def calibration_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / "calibration" / f"{PROFILE_NAME}.json"


# ---------------------------------------------------------------- micro-benchmark graphs


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


def _matmul(m: int, k: int, n: int) -> Callable:
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


def _add_chain(length: int, size: int) -> Callable:
    """x + y, then `length - 1` more adds of y: element-wise work, no weights."""

    def build(rng: np.random.Generator):
        from onnx import TensorProto, helper

        names = ["x", *(f"t{i}" for i in range(1, length)), "z"]
        nodes = [helper.make_node("Add", [a, "y"], [b]) for a, b in itertools.pairwise(names)]
        model = _model(
            nodes,
            [_tensor("x", TensorProto.FLOAT, (size,)), _tensor("y", TensorProto.FLOAT, (size,))],
            [_tensor("z", TensorProto.FLOAT, (size,))],
        )
        feeds = {n: rng.standard_normal(size, dtype=np.float32) for n in ("x", "y")}
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


def _qdq_matmul(m: int, k: int, n: int) -> Callable:
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
    suite = [Micro(f"matmul {m}x{k}x{n} fp32", "compute", _matmul(m, k, n)) for m, k, n in mm]
    suite += [Micro(f"add {s:.0e} fp32", "memory", _add_chain(1, s)) for s in adds]
    suite += [Micro(f"{n} adds of 1e3", "overhead", _add_chain(n, 1_000)) for n in (16, 64)]
    suite += [
        Micro("conv 1x16x28x28 -> 32 3x3", "compute", _conv(1, 16, 32, 28)),
        Micro("conv 32x16x28x28 -> 32 3x3", "compute", _conv(32, 16, 32, 28)),
        Micro("matmulinteger 16x256x256", "int8", _matmul_integer(16, 256, 256)),
        Micro("matmulinteger 128x1024x1024", "int8", _matmul_integer(128, 1024, 1024)),
        Micro("dynamic int8 128x384x1536", "int8", _dynamic_int8(128, 384, 1536)),
        Micro("qdq int8 128x384x384", "int8", _qdq_matmul(128, 384, 384)),
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


# ---------------------------------------------------------------- timing


def run_microbenchmarks(
    threads: int, cfg: MeasureConfig = CALIBRATION_PROTOCOL, quick: bool = False
) -> list[dict[str, Any]]:
    """Time each micro-benchmark graph here and analyse it.

    Each sample: name, kind, threads, measured_ms (median), p90_ms, n_runs and graph (the
    `GraphCost` of the same file). Sessions are opened like a candidate's (`open_runner`:
    graph level all, sequential, `threads` intra-op threads) and timed interleaved.
    """
    import onnx

    from autoaccel.evaluate.runners import open_runner
    from autoaccel.targets.graph import analyze
    from autoaccel.techniques import Candidate

    rng = np.random.default_rng(0)
    suite = micro_suite(quick)
    graphs: dict[str, GraphCost] = {}
    fns: dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory(prefix="autoaccel-calibrate-") as tmp:
        for i, micro in enumerate(suite):
            model, feeds = micro.build(rng)
            path = Path(tmp) / f"micro{i}.onnx"
            onnx.save(model, str(path))
            graphs[micro.name] = analyze(path, {k: v.shape for k, v in feeds.items()})
            session = {"intra_op_threads": threads, "graph_level": "all"}
            candidate = Candidate(backend="onnxruntime", onnx_path=path, session=session)
            predict = open_runner(candidate, tuple(feeds))
            fns[micro.name] = lambda p=predict, f=feeds: p(f)
        latencies = measure_interleaved(fns, cfg, rounds=4)
    return [
        {
            "name": micro.name,
            "kind": micro.kind,
            "threads": threads,
            "measured_ms": latencies[micro.name].median_ms,
            "p90_ms": latencies[micro.name].p90_ms,
            "n_runs": latencies[micro.name].n_runs,
            "graph": graphs[micro.name],
        }
        for micro in suite
    ]


# ---------------------------------------------------------------- fitting


def calibrated_profile(profile: HardwareProfile, values: dict[str, float]) -> HardwareProfile:
    return profile.model_copy(update={"calibrated": {**(profile.calibrated or {}), **values}})


def predict_ms(profile: HardwareProfile, graph: GraphCost) -> float:
    """The CPU model's latency of `graph` as analysed (its first dim is the batch, so the
    plan's batch is the graph's own: nothing is rescaled)."""
    return CpuTarget(profile).estimate(graph, Plan(batch_size=graph.batch_size)).latency_ms


def _own_op(graph: GraphCost) -> str | None:
    """The per-op key a sample can fit: its only matrix op type, else its only op type that
    does arithmetic; None when several share the work."""
    matrix = {n.op_type for n in graph.nodes if n.macs}
    vector = {n.op_type for n in graph.nodes if n.flops and not n.macs}
    if len(matrix) == 1:
        return f"compute_eta.{matrix.pop()}"
    return f"vector_eta.{vector.pop()}" if not matrix and len(vector) == 1 else None


def _least_squares(
    profile: HardwareProfile,
    samples: Sequence[dict[str, Any]],
    keys: Sequence[str],
    start: Sequence[float],
    fixed: dict[str, float],
) -> tuple[dict[str, float], float]:
    """Factors `keys` minimising sum (log predicted - log measured)^2, from three starts."""
    from scipy.optimize import least_squares

    measured = np.log([s["measured_ms"] for s in samples])
    graphs = [s["graph"] for s in samples]
    lo, hi = math.log(_BOUNDS[0]), math.log(_BOUNDS[1])

    def residuals(x: np.ndarray) -> np.ndarray:
        prof = calibrated_profile(profile, {**fixed, **dict(zip(keys, np.exp(x), strict=True))})
        return np.log([predict_ms(prof, g) for g in graphs]) - measured

    best = None
    for factor in (1.0, 0.3, 3.0):
        x0 = np.clip(np.log(np.asarray(start, dtype=float) * factor), lo + 1e-6, hi - 1e-6)
        result = least_squares(residuals, x0, bounds=(lo, hi), diff_step=1e-3)
        if best is None or result.cost < best.cost:
            best = result
    values = {k: float(v) for k, v in zip(keys, np.exp(best.x), strict=True)}
    return values, 2 * float(best.cost)


def fit(profile: HardwareProfile, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The measured rates of `autoaccel.targets.cpu` that minimise the squared error of
    log(time) between `samples`' measured_ms and the CPU model of `profile` with them.

    First the machine-wide rates (compute_eta, vector_eta, memory_eta, cache_eta,
    overhead_us, run_overhead_us) on all samples; then, one op type at a time, the op type
    whose own rate (fitted on the samples whose work is that op type alone) differs most from
    the machine-wide one, if by more than 1.5x, is kept and the machine-wide rates refitted
    without its pull; until no op type differs that much."""
    if not samples:
        raise ValueError("fit needs at least one sample")
    groups: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        if (key := _own_op(sample["graph"])) is not None:
            groups.setdefault(key, []).append(sample)
    own: dict[str, float] = {}
    rates, _ = _least_squares(profile, samples, FITTED, _START, own)
    while len(own) < len(groups):
        candidates = {}
        for key, group in groups.items():
            if key not in own:
                general = rates[key.split(".")[0]]
                value, _ = _least_squares(profile, group, [key], [general], {**rates, **own})
                candidates[key] = (abs(math.log(value[key] / general)), value[key])
        key, (distance, value) = max(candidates.items(), key=lambda kv: kv[1][0])
        if distance <= math.log(1.5):
            break
        own[key] = value
        rates, _ = _least_squares(profile, samples, FITTED, [rates[k] for k in FITTED], own)
    fitted = {**rates, **own}
    prof = calibrated_profile(profile, fitted)
    errors = [abs(predict_ms(prof, s["graph"]) / s["measured_ms"] - 1) * 100 for s in samples]
    return {
        **{k: round(v, 6) for k, v in sorted(fitted.items(), key=lambda kv: kv[0] not in FITTED)},
        "threads": int(samples[0].get("threads") or 0),
        "cpu": cpu_model_name(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "n_samples": len(samples),
        "fit_mdape": round(float(np.median(errors)), 2),
    }


def cpu_model_name() -> str:
    """lscpu's "Model name" (falling back to /proc/cpuinfo), "unknown" if neither says."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


# ---------------------------------------------------------------- the calibration file


def calibrate(
    runs_dir: Path,
    threads: int | None = None,
    cfg: MeasureConfig = CALIBRATION_PROTOCOL,
    quick: bool = False,
) -> dict[str, Any]:
    """Time the micro-benchmarks with `threads` intra-op threads (default: the usable cores),
    fit the CPU model to them, and store the result as this thread count's entry of
    `<runs_dir>/calibration/cpu-local.json` (other counts' entries are kept). Returns it."""
    from autoaccel.machine import usable_cores
    from autoaccel.targets.profile import PROFILES_DIR, load_profile

    threads = threads or usable_cores()
    profile = load_profile(PROFILES_DIR / f"{PROFILE_NAME}.yaml")
    load = os.getloadavg()[0]
    samples = run_microbenchmarks(threads, cfg, quick=quick)
    result = fit(profile, samples)
    # other work on the machine slows the timings (2-thread ones most): keep the evidence
    result["load_avg_1min"] = round(max(load, os.getloadavg()[0]), 2)
    fitted = calibrated_profile(profile, {k: v for k, v in result.items() if _is_rate(k)})
    result["samples"] = [
        {
            "name": s["name"],
            "kind": s["kind"],
            "measured_ms": round(s["measured_ms"], 5),
            "predicted_ms": round(predict_ms(fitted, s["graph"]), 5),
            "n_runs": s["n_runs"],
        }
        for s in samples
    ]
    path = calibration_path(runs_dir)
    entries: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(UserError):  # a corrupt file is replaced, not merged
            entries = _read(path)
    entries[str(threads)] = result
    _write_atomic(path, {"format": FORMAT, "profile": PROFILE_NAME, "by_threads": entries})
    return result


def _write_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _is_rate(key: str) -> bool:
    """A key `autoaccel.targets.cpu` reads as a measured rate (machine-wide or per op type)."""
    return key in FITTED or key.split(".")[0] in ("compute_eta", "vector_eta") and "." in key


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def _read(path: Path) -> dict[str, dict[str, Any]]:
    """The file's entries by thread count, validated; anything wrong is a `UserError`."""
    fix = "delete it or run autoaccel calibrate again"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read the calibration ({exc.strerror}); {fix}") from None
    except ValueError:
        raise UserError(f"{path}: the calibration is not valid JSON; {fix}") from None
    entries = data.get("by_threads") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise UserError(f"{path}: no calibration entries (by_threads); {fix}")
    for threads, entry in entries.items():
        rates = {k: v for k, v in entry.items() if _is_rate(k)} if isinstance(entry, dict) else {}
        bad = not str(threads).isdigit() or not set(FITTED) <= set(rates)
        bad = bad or not all(_positive(v) for v in rates.values())
        if bad:
            raise UserError(
                f"{path}: calibration entry {threads!r} lacks positive {', '.join(FITTED)}; {fix}"
            )
    return entries


def calibrated_threads(runs_dir: Path) -> set[int]:
    """The intra-op thread counts `<runs_dir>/calibration/cpu-local.json` has entries for."""
    path = calibration_path(runs_dir)
    return {int(t) for t in _read(path)} if path.exists() else set()


def load_calibration(runs_dir: Path, threads: int | None = None) -> dict[str, float | str] | None:
    """The stored entry for `threads` (default: the usable cores; another count's entry if
    that one was never calibrated), as `HardwareProfile.calibrated` values; None if no file."""
    from autoaccel.machine import usable_cores

    path = calibration_path(runs_dir)
    if not path.exists():
        return None
    entries = _read(path)
    want = threads or usable_cores()
    key = min(entries, key=lambda t: (abs(int(t) - want), -int(t)))
    return {k: v for k, v in entries[key].items() if isinstance(v, int | float | str)}


def apply_calibration(
    profile: HardwareProfile, runs_dir: Path, threads: int | None = None
) -> HardwareProfile:
    """`profile` with this machine's calibration (for `threads` intra-op threads, default the
    usable cores) when it is cpu-local and `<runs_dir>/calibration/cpu-local.json` exists;
    otherwise `profile` unchanged. A corrupt file is a one-line `UserError`."""
    if profile.name != PROFILE_NAME:
        return profile
    data = load_calibration(runs_dir, threads)
    return profile if data is None else profile.model_copy(update={"calibrated": data})
