"""Errors a person can act on.

A `UserError` is bad input: the CLI prints its one-line message and exits with code 2, no
traceback. Anything else is a bug or a failing candidate and is handled where it happens.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input. The message names what is wrong and how to fix it, on one line."""


INFEASIBLE_KINDS: dict[str, str] = {
    "unknown_backend": "runtime.backend names no backend autoaccel has",
    "no_torch_model": "a torch backend on a workload that has only an ONNX model",
    "no_cuda": "no CUDA device (or ONNX Runtime CUDA provider) on this machine",
    "not_on_gpu": "a backend that is not run on the CUDA GPU",
    "openvino_op": "OpenVINO has no conversion (or CPU kernel) for an op of the graph",
    "openvino_opset": "OpenVINO cannot read the graph's opset version or op domain",
    "openvino_io": "OpenVINO cannot read a graph input or output of a sequence or map type",
    "openvino_precision": "this CPU lacks the precision asked of OpenVINO (bf16)",
    "openvino_streams": "OpenVINO runs fewer streams than asked on these threads",
    "ort_kernel": "ONNX Runtime's provider has no kernel for an op at this type",
    "torch_compile_toolchain": "torch.compile lacks its compiler here (C++ compiler, Triton)",
    "quantize_calibration": "static quantization's calibrator collected nothing on this graph",
    "quantize_nothing": "int4 weight-only found no MatMul weight to quantize",
    "quantize_graph_io": "NNCF cannot take a graph with a sequence or map input or output",
    "prune_nothing": "sparsity found no nn.Linear or nn.Conv2d weight to zero",
    "quantize_float16": "a float16 graph the quantizers cannot take as float32 (control flow)",
    "server_bound": "the server scenario meets the latency bound at no arrival rate",
    "unnamed": "raised without a kind (give one where it is raised)",
}
"""Why a recipe cannot run, as a short countable name (`InfeasibleRecipe.kind`)."""


class InfeasibleRecipe(Exception):
    """A recipe that a target or backend genuinely cannot run, for a known, named reason
    (`kind`, one of INFEASIBLE_KINDS; e.g. a runtime that lacks the chosen format).

    The trial is PRUNED with this reason and the sampler learns to avoid it. Anything else
    a candidate raises is a failure (FAIL, with its traceback): a bug must never pass for an
    impossible recipe, so raise this only where the cause is recognised.
    """

    def __init__(self, reason: str, kind: str = "unnamed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    def __reduce__(self):  # keep the kind across processes (pickle passes only `args`)
        return (type(self), (self.reason, self.kind))


class CandidateFailed(Exception):
    """A candidate that failed where its exception could not travel as itself: in the
    isolated worker (its reason and traceback are carried as text), or by crashing or
    running past `--trial-timeout`."""

    def __init__(self, reason: str, trace: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.trace = trace


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, short enough for a tag or a table cell. OpenVINO's
    C++ errors open with where they were thrown ("Exception from src/...", "Check '...'
    failed at ..."): the first line that says what went wrong is taken instead."""
    if isinstance(exc, CandidateFailed):
        return exc.reason
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(_WHERE)] or lines
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


_WHERE = ("Exception from ", "Check '")
"""How a C++ runtime's error line that only says where it was thrown begins."""
