"""Open a candidate in its engine and return a `Predict` function with its settings pinned."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from autoaccel.machine import usable_cores
from autoaccel.techniques import Candidate
from autoaccel.workloads.base import Inputs, Predict

_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def open_runner(candidate: Candidate, input_names: tuple[str, ...]) -> Predict:
    if candidate.backend == "torch":
        return _torch_runner(candidate, input_names)
    return _ort_runner(candidate)


def _ort_runner(candidate: Candidate) -> Predict:
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
    sess = ort.InferenceSession(
        str(candidate.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
    )
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
