"""Runtime choice and its session settings: which engine runs the model, with how many threads.

PyTorch eager fp32 is the baseline. Two engines run the exported ONNX graph (and so take the
ONNX-level techniques: fusion, quantization): ONNX Runtime and OpenVINO. Two run the torch
module the torch-level techniques produced: PyTorch eager and torch.compile (inductor).
Every parameter here is a session setting: it changes how the model runs, never the file.
"""

from __future__ import annotations

from typing import Any

from autoaccel.machine import runs_bf16, usable_cores
from autoaccel.techniques.base import BuildContext, Candidate, Param, Stage, Technique

ONNX_BACKENDS = ("onnxruntime", "openvino")
"""Engines that run the exported ONNX graph (the ONNX-stage techniques apply)."""
TORCH_BACKENDS = ("torch", "torch_compile")
"""Engines that run the torch module (only the torch-stage techniques apply)."""
BACKENDS = (*ONNX_BACKENDS, *TORCH_BACKENDS)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")

_ENGINES = {
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "torch": "PyTorch eager",
    "torch_compile": "torch.compile",
}
_OPENVINO = {"runtime.backend": ("openvino",)}


class Runtime(Technique):
    name = "runtime"
    stage = Stage.RUNTIME

    def params(self, workload) -> tuple[Param, ...]:
        torch_ok = workload is None or workload.torch_model_available()
        backends = BACKENDS if torch_ok else ONNX_BACKENDS
        if workload is not None and workload.torch_compile_reason():
            backends = tuple(b for b in backends if b != "torch_compile")
        return (
            Param(
                "backend",
                "onnxruntime",
                choices=backends,
                session=True,
                help="engine that runs the model",
            ),
            Param(
                "intra_op_threads",
                usable_cores(),
                low=1,
                high=256,
                integer=True,
                session=True,
                help="threads inside one operator (ORT intra_op_num_threads, OpenVINO "
                "INFERENCE_NUM_THREADS, torch threads)",
            ),
            Param(
                "execution_mode",
                "sequential",
                choices=("sequential", "parallel"),
                when={"runtime.backend": ("onnxruntime",)},
                session=True,
                help="ORT: run independent graph branches one after another or in parallel",
            ),
            Param(
                "ov_precision",
                "f32",
                # a build this CPU cannot run is no trial: bf16 only where it computes bf16
                choices=("f32", "bf16") if workload is None or runs_bf16() else ("f32",),
                when=_OPENVINO,
                session=True,
                help="OpenVINO INFERENCE_PRECISION_HINT: f32, or bf16 on CPUs with AVX512-BF16 "
                "/ AMX (OpenVINO's own default there is bf16; not offered on a CPU without)",
            ),
            Param(
                "ov_hint",
                "latency",
                choices=("latency", "throughput"),
                when=_OPENVINO,
                session=True,
                help="OpenVINO PERFORMANCE_HINT: tune for one request at a time or many",
            ),
            Param(
                "ov_streams",
                1,
                choices=(1, 2),
                when=_OPENVINO,
                session=True,
                help="OpenVINO NUM_STREAMS: parallel inference streams, the threads split "
                "between them",
            ),
            Param(
                "compile_mode",
                "default",
                choices=COMPILE_MODES,
                when={"runtime.backend": ("torch_compile",)},
                session=True,
                help="torch.compile mode (inductor, static shapes); max-autotune benchmarks "
                "GEMM templates while compiling",
            ),
        )

    def describe(self, config: dict[str, Any]) -> str:
        backend = config.get("backend", "onnxruntime")
        threads = config.get("intra_op_threads", usable_cores())
        thread_text = f"{threads} thread{'s' if threads != 1 else ''}"
        if backend == "openvino":
            streams = config.get("ov_streams", 1)
            parts = [
                f"OpenVINO, {config.get('ov_precision', 'f32')} where not quantized",
                f"{config.get('ov_hint', 'latency')} hint",
                *([f"{streams} streams"] if streams != 1 else []),
                thread_text,
            ]
            return ", ".join(parts)
        if backend == "torch_compile":
            return f"torch.compile ({config.get('compile_mode', 'default')}), {thread_text}"
        mode = ", parallel execution" if config.get("execution_mode") == "parallel" else ""
        return f"{_ENGINES[backend]}, {thread_text}{mode}"

    def changes_model(self, config: dict[str, Any]) -> bool:
        return False

    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        return candidate  # session settings only (see changes_model)
