"""Runtime choice and its session settings: which engine runs the model, with how many threads.

PyTorch eager fp32 is the baseline; ONNX Runtime is the engine the ONNX-level techniques need.
Every parameter here is a session setting: it changes how the model runs, never the file.
"""

from __future__ import annotations

from typing import Any

from autoaccel.machine import usable_cores
from autoaccel.techniques.base import BuildContext, Candidate, Param, Stage, Technique

_BACKENDS = ("onnxruntime", "torch")


class Runtime(Technique):
    name = "runtime"
    stage = Stage.RUNTIME
    requires = {"target.name": ("cpu-local",)}  # estimated targets run the ONNX graph

    def params(self, workload) -> tuple[Param, ...]:
        torch_ok = workload is None or workload.torch_model_available()
        return (
            Param(
                "backend",
                "onnxruntime",
                choices=_BACKENDS if torch_ok else ("onnxruntime",),
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
                help="threads inside one operator (ORT intra_op_num_threads, torch threads)",
            ),
            Param(
                "execution_mode",
                "sequential",
                choices=("sequential", "parallel"),
                when={"runtime.backend": ("onnxruntime",)},
                session=True,
                help="ORT: run independent graph branches one after another or in parallel",
            ),
        )

    def describe(self, config: dict[str, Any]) -> str:
        engine = {"onnxruntime": "ONNX Runtime", "torch": "PyTorch eager"}[config["backend"]]
        threads = config["intra_op_threads"]
        mode = ", parallel execution" if config.get("execution_mode") == "parallel" else ""
        return f"{engine}, {threads} thread{'s' if threads != 1 else ''}{mode}"

    def changes_model(self, config: dict[str, Any]) -> bool:
        return False

    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        return candidate  # session settings only (see changes_model)
