"""torch -> ONNX export.

The TorchScript exporter (`dynamo=False`) is used on purpose: ONNX Runtime's transformer
fusions (Attention, SkipLayerNormalization) recognise its graphs, and it writes one
self-contained file. Its deprecation warnings are silenced here, in one place.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from autoaccel.errors import UserError
from autoaccel.workloads.base import Workload


def export_onnx(model, workload: Workload, out: Path) -> None:
    import onnx
    import torch

    example = workload.latency_inputs(1)
    args = tuple(torch.from_numpy(example[name]) for name in workload.input_names)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                args,
                str(out),
                input_names=list(workload.input_names),
                output_names=["output"],
                dynamic_axes=workload.dynamic_axes,
                opset_version=17,
                dynamo=False,
            )
    except Exception as exc:
        raise UserError(
            f"workload {workload.name}: its torch model cannot be exported to ONNX "
            f"({str(exc).strip().splitlines()[0][:200]}); make forward() traceable "
            "or pass an exported model with --model/--data"
        ) from None
    onnx.checker.check_model(str(out))
