"""Open a candidate in its engine and return a `Predict` function with its settings pinned."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from autoaccel.errors import InfeasibleRecipe
from autoaccel.machine import usable_cores
from autoaccel.techniques import Candidate
from autoaccel.workloads.base import Inputs, Predict

_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def open_runner(
    candidate: Candidate, input_names: tuple[str, ...], device: str = "cpu"
) -> Predict:
    """The candidate opened in its engine on `device` ("cpu", or "cuda" for a measured GPU:
    ONNX Runtime's TensorRT / CUDA execution providers, or torch on the GPU)."""
    if device == "cuda":
        return _cuda_runner(candidate, input_names)
    if candidate.backend == "torch":
        return _torch_runner(candidate, input_names)
    if candidate.backend == "torch_compile":
        return _torch_compile_runner(candidate, input_names)
    if candidate.backend == "openvino":
        return _openvino_runner(candidate)
    return _ort_runner(candidate)


def _cuda_runner(candidate: Candidate, input_names: tuple[str, ...]) -> Predict:
    """A CUDA GPU: ONNX graphs on ONNX Runtime's GPU providers, torch models on torch's CUDA
    build. Outputs come back to host memory, so every call waits for the GPU to finish."""
    if candidate.backend == "onnxruntime":
        import onnxruntime as ort

        gpu = [
            p
            for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
            if p in ort.get_available_providers()
        ]
        if not gpu:
            raise InfeasibleRecipe("ONNX Runtime has no CUDA execution provider here", "no_cuda")
        sess = _ort_session(candidate, [*gpu, "CPUExecutionProvider"])
        wanted = {i.name for i in sess.get_inputs()}

        def predict_ort(inputs: Inputs) -> np.ndarray:
            return sess.run(None, {k: v for k, v in inputs.items() if k in wanted})[0]

        return predict_ort
    if candidate.backend == "torch":
        import torch

        if not torch.cuda.is_available():
            raise InfeasibleRecipe("torch has no CUDA device here", "no_cuda")
        import copy

        model = copy.deepcopy(candidate.torch_model).eval().to("cuda")  # the CPU copy stays

        def predict_torch(inputs: Inputs) -> np.ndarray:
            with torch.inference_mode():
                args = (torch.from_numpy(inputs[n]).to("cuda") for n in input_names)
                return model(*args).cpu().numpy()

        return predict_torch
    raise InfeasibleRecipe(
        f"{candidate.backend} is not run on the CUDA GPU (onnxruntime and torch are)",
        "not_on_gpu",
    )


def ort_session_options(candidate: Candidate):
    """The ONNX Runtime session options a candidate's session settings ask for (also what
    benchmarks/roofline.py profiles with)."""
    import onnxruntime as ort

    session = candidate.session
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _GRAPH_LEVELS[session.get("graph_level", "all")]
    )
    opts.intra_op_num_threads = int(session.get("intra_op_threads", usable_cores()))
    parallel = session.get("execution_mode") == "parallel"
    opts.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    opts.inter_op_num_threads = 0 if parallel else 1
    opts.log_severity_level = 3
    for key, value in ort_config_entries(session).items():
        opts.add_session_config_entry(key, value)
    return opts


def ort_config_entries(session: dict[str, Any]) -> dict[str, str]:
    """ORT config entries the session settings ask for (`compile.skip_layer_norm`)."""
    apart = session.get("skip_layer_norm", True) is False
    return {"optimization.disable_specified_optimizers": "SkipLayerNormFusion"} if apart else {}


_ORT_NO_KERNEL = "Could not find an implementation for"


def _ort_session(candidate: Candidate, providers: list[str]) -> Any:
    """The candidate's ONNX Runtime session. A provider with no kernel for an op at the
    graph's type (ORT's NOT_IMPLEMENTED, e.g. bf16 ops on the CPU provider) is infeasible;
    any other error loading the graph is a failure and propagates."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            str(candidate.onnx_path),
            sess_options=ort_session_options(candidate),
            providers=providers,
        )
    except Exception as exc:
        text = str(exc)
        if type(exc).__name__ != "NotImplemented" or _ORT_NO_KERNEL not in text:
            raise
        node = text.split(_ORT_NO_KERNEL, 1)[1].strip().splitlines()[0][:200]
        raise InfeasibleRecipe(
            f"ONNX Runtime ({providers[0]}) has no kernel for {node} at this graph's types; "
            "choose another quantize.mode or runtime.backend",
            "ort_kernel",
        ) from exc


def _ort_runner(candidate: Candidate) -> Predict:
    sess = _ort_session(candidate, ["CPUExecutionProvider"])
    wanted = {i.name for i in sess.get_inputs()}

    def predict(inputs: Inputs) -> np.ndarray:
        return sess.run(None, {k: v for k, v in inputs.items() if k in wanted})[0]

    return predict


def _torch_runner(candidate: Candidate, input_names: tuple[str, ...]) -> Callable:
    import torch

    model = candidate.torch_model.eval()
    threads = int(candidate.session.get("intra_op_threads", usable_cores()))

    def predict(inputs: Inputs) -> np.ndarray:
        # torch's thread count is process-wide: pin it on every call, it costs nanoseconds
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            out = model(*(torch.from_numpy(inputs[name]) for name in input_names))
        return out.numpy()

    return predict


# -- OpenVINO ----------------------------------------------------------------------------------


@functools.cache
def _ov_core() -> Any:
    import openvino as ov

    return ov.Core()


def ov_config(session: dict[str, Any]) -> dict[Any, Any]:
    """The CPU plugin properties a candidate's OpenVINO settings stand for."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    precision = {"f32": ov.Type.f32, "bf16": ov.Type.bf16}[session.get("ov_precision", "f32")]
    mode = {
        "latency": hints.PerformanceMode.LATENCY,
        "throughput": hints.PerformanceMode.THROUGHPUT,
    }
    return {
        # always explicit: on a CPU with AVX512-BF16 / AMX OpenVINO's own default is bf16
        hints.inference_precision: precision,
        hints.performance_mode: mode[session.get("ov_hint", "latency")],
        props.streams.num: int(session.get("ov_streams", 1)),
        props.inference_num_threads: int(session.get("intra_op_threads", usable_cores())),
    }


def open_openvino(candidate: Candidate) -> Any:
    """The candidate's ONNX graph compiled for OpenVINO's CPU plugin with its settings
    (`ov.CompiledModel`). An op or opset OpenVINO cannot read or compile, or a precision or
    stream count this CPU cannot give, raises `InfeasibleRecipe` with a one-line reason; any
    other OpenVINO error is a failure and propagates as itself."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = _ov_core()
    try:
        model = core.read_model(str(candidate.onnx_path))
    except Exception as exc:  # OpConversionFailure and friends arrive as RuntimeError
        if (known := _ov_infeasible("read", exc)) is None:
            raise
        raise known from exc
    try:
        compiled = core.compile_model(model, "CPU", ov_config(candidate.session))
    except Exception as exc:
        if (known := _ov_infeasible("compile", exc)) is None:
            raise
        raise known from exc
    wanted = candidate.session.get("ov_precision", "f32")
    if wanted == "bf16" and (
        "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        or compiled.get_property(hints.inference_precision) != ov.Type.bf16
    ):
        raise InfeasibleRecipe(
            "OpenVINO: this CPU has no bf16 support (AVX512-BF16 or AMX), it would run f32; "
            "use runtime.ov_precision f32",
            "openvino_precision",
        )
    streams = int(candidate.session.get("ov_streams", 1))
    if (got := int(compiled.get_property(props.streams.num))) != streams:
        # e.g. 2 streams on 1 thread: OpenVINO quietly runs 1, the recipe would be mislabelled
        threads = compiled.get_property(props.inference_num_threads)
        raise InfeasibleRecipe(
            f"OpenVINO runs {got} stream(s), not runtime.ov_streams {streams}, with "
            f"{threads} thread(s); give each stream at least one thread",
            "openvino_streams",
        )
    return compiled


def _openvino_runner(candidate: Candidate) -> Predict:
    compiled = open_openvino(candidate)
    request = compiled.create_infer_request()  # one request: one inference at a time
    wanted = {name for port in compiled.inputs for name in port.get_names()}

    def predict(inputs: Inputs) -> np.ndarray:
        feed = {k: v for k, v in inputs.items() if k in wanted}
        # share_inputs: no copy of the (contiguous) arrays in; the output comes back copied
        return request.infer(feed, share_inputs=True)[0]

    return predict


_OV_KNOWN = (  # (text in OpenVINO's error, kind): what OpenVINO genuinely cannot run
    ("function builder that satisfies the requested opset version", "openvino_opset"),
    ("Couldn't find operator set's version for domain", "openvino_opset"),
    ("Domain isn't supported", "openvino_opset"),
    ("Unsupported operation of type", "openvino_op"),
    ("is not supported by the CPU plugin", "openvino_op"),
    ("doesn't support BF16 precision", "openvino_precision"),
    ("Unsupported value_info type", "openvino_io"),  # a sequence or map: skl2onnx's ZipMap
)
_OV_NO_CONVERSION = "No conversion rule found for operations:"


def _ov_infeasible(step: str, exc: Exception) -> InfeasibleRecipe | None:
    """The recipe's known reason, in one line, when OpenVINO's multi-line C++ error is one of
    the things it cannot run (ops without a conversion or a CPU kernel, an opset or domain it
    cannot read, a precision this CPU lacks); None for anything else (a failure)."""
    import openvino as ov

    version = ov.get_version().split("-")[0]
    text = str(exc)
    if _OV_NO_CONVERSION in text:
        ops = text.split(_OV_NO_CONVERSION, 1)[1].strip().splitlines()[0].strip()
        names = [op.strip() for op in ops.split(",")]
        made_by, change = ("", "")
        if any(n.startswith("com.microsoft.Q") for n in names):
            # quantize_dynamic turns fused Attention / EmbedLayerNormalization into these
            made_by, change = (
                "ONNX Runtime's quantized fused ops: int8 dynamic on a fused graph",
                "use compile.fusion false or quantize.mode int8_static, or ",
            )
        elif any(n.startswith("com.microsoft.") for n in names):
            made_by, change = (
                "ONNX Runtime contrib ops",
                "leave out the step that made them, or ",
            )
        made_by = f" ({made_by})" if made_by else ""
        return InfeasibleRecipe(
            f"OpenVINO {version} cannot convert op(s) {ops}{made_by}; {change}run this graph "
            "with runtime.backend onnxruntime",
            "openvino_op",
        )
    for marker, kind in _OV_KNOWN:
        line = next((ln.strip() for ln in text.splitlines() if marker in ln), None)
        if line is not None:
            return InfeasibleRecipe(
                f"OpenVINO {version} cannot {step} this graph: {line[:240]}; run it with "
                "runtime.backend onnxruntime",
                kind,
            )
    return None


# -- torch.compile -----------------------------------------------------------------------------


def _torch_compile_runner(candidate: Candidate, input_names: tuple[str, ...]) -> Callable:
    """The torch model compiled by inductor with static shapes (`dynamic=False`).

    Static shapes mean one compilation per input shape, and the quality data comes in many
    shapes (MiniLM: ~15 sequence lengths, ~20 s of compiling each here). So a shape is
    compiled when it is timed: the candidate's latency shape when the runner opens (warm-up),
    and any other shape the first time the same inputs are run twice in a row (what every
    timing loop does). A one-off batch (quality evaluation) runs the same module eagerly;
    each compilation is checked against eager on its inputs, so the quality figure holds for
    the compiled model too.
    """
    import torch
    import torch._dynamo
    import torch._inductor.config

    model = candidate.torch_model.eval()
    threads = int(candidate.session.get("intra_op_threads", usable_cores()))
    mode = candidate.session.get("compile_mode", "default")
    # Dynamo keeps compiled code per code object (the shared forward) across modules: without
    # a reset, after 8 trials' models (recompile_limit) it silently runs them eagerly.
    torch._dynamo.reset()
    compiled = torch.compile(model, mode=mode, dynamic=False)
    ready: set[tuple] = set()  # input signatures compiled for
    last: list[Any] = [None]  # the previous call's inputs (the same object again: a timed loop)

    def signature(inputs: Inputs) -> tuple:
        return tuple((inputs[n].shape, inputs[n].dtype.str) for n in input_names)

    def run(fn, inputs: Inputs):
        with torch.inference_mode():
            return fn(*(torch.from_numpy(inputs[name]) for name in input_names))

    def compile_for(inputs: Inputs) -> None:
        # inductor's C++ kernels are generated for the thread count in force when compiling
        torch.set_num_threads(threads)
        try:
            # max-autotune writes its benchmark tables and a JSON line of choice stats per
            # autotuned op to stderr (they would break the progress UI)
            quiet = {"autotune_num_choices_displayed": 0}
            if hasattr(torch._inductor.config, "max_autotune_report_choices_stats"):
                quiet["max_autotune_report_choices_stats"] = False
            with torch._inductor.config.patch(**quiet):
                got = run(compiled, inputs)
        except Exception as exc:  # inductor's own bugs stay failures, with their traceback
            if (missing := _toolchain_missing(exc)) is None:
                raise
            first = str(missing).strip().splitlines()[0][:240] if str(missing).strip() else ""
            raise InfeasibleRecipe(
                f"torch.compile ({mode}) cannot compile on this machine: "
                f"{type(missing).__name__}: {first}; use another runtime.backend",
                "torch_compile_toolchain",
            ) from exc
        want = run(model, inputs)
        if not torch.allclose(got, want, rtol=1e-3, atol=1e-4):
            diff = float((got - want).abs().max())
            raise ValueError(
                f"torch.compile ({mode}) output differs from eager by {diff:.3g} on inputs "
                f"of shape {[inputs[n].shape for n in input_names]}: the compiled model is wrong"
            )
        ready.add(signature(inputs))

    warmup = candidate.info.get("warmup_inputs")
    if warmup is not None:
        compile_for(warmup)

    def predict(inputs: Inputs) -> np.ndarray:
        if torch.get_num_threads() != threads:  # process-wide: pin it on every call
            torch.set_num_threads(threads)
        if signature(inputs) not in ready:
            if inputs is not last[0]:
                last[0] = inputs
                return run(model, inputs).numpy()
            compile_for(inputs)
        return run(compiled, inputs).numpy()

    return predict


def _toolchain_missing(exc: BaseException) -> BaseException | None:
    """The exception in `exc`'s chain saying inductor lacks its compiler on this machine (no
    working C++ compiler, no or too old Triton), or None. torch wraps it in
    BackendCompilerFailed (`inner_exception`) or InductorError (`__cause__`)."""
    from torch._inductor import exc as inductor

    names = ("InvalidCxxCompiler", "TritonMissing", "GPUTooOldForTriton")
    missing = tuple(getattr(inductor, n) for n in names if hasattr(inductor, n))
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, missing):
            return current
        seen.add(id(current))
        current = (
            getattr(current, "inner_exception", None) or current.__cause__ or current.__context__
        )
    return None
