"""ONNX Runtime's static int8 (QDQ): the calibration data reader, and batches its histogram
calibrators accept.

Entropy and percentile calibration stack every tensor's values over the calibration batches
before they flatten them (`HistogramCollector.collect_value`), so batches of different sizes
(12 images cut 8 + 4) fail with numpy's "inhomogeneous shape". The statistics are over all
values at once, so re-cutting the same rows into single-row batches changes nothing but the
batch count; where the batches already agree they are used as given.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def uniform_batches(batches: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """`batches` as given when every batch has the same shapes, else the same rows one per
    batch (when their shapes past the batch dimension agree; otherwise as given)."""
    shapes = {tuple((k, v.shape) for k, v in sorted(b.items())) for b in batches}
    rows = {tuple((k, v.shape[1:]) for k, v in sorted(b.items())) for b in batches}
    if len(shapes) <= 1 or len(rows) > 1:
        return batches
    return [
        {k: v[i : i + 1] for k, v in batch.items()}
        for batch in batches
        for i in range(len(next(iter(batch.values()))))
    ]


def extra_options() -> dict[str, Any]:
    """What ORT's quantizers need told about a fused graph."""
    import onnx

    # Fused transformer ops (com.microsoft) carry no type info for the quantizer's shape
    # inference; without a default type it refuses them.
    return {"DefaultTensorType": onnx.TensorProto.FLOAT}


def int8_static(src, out, config: dict[str, Any], batches: list[dict]) -> None:
    """QDQ int8 of the matrix products at `src`, activations calibrated on `batches` by
    `config["calibration"]`, weights per channel or per tensor."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(uniform_batches(batches))

        def get_next(self):
            return next(self._it, None)

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[config["calibration"]]
    quantize_static(
        str(src),
        str(out),
        _Reader(),
        quant_format=QuantFormat.QDQ,  # QOperator is slow on x64 (ORT warns)
        per_channel=config["per_channel"],
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
        # The compute-heavy ops only: quantizing softmax / layer-norm / mask arithmetic
        # costs quality (MiniLM task quality fell from .56 to .09 with every op in QDQ) and
        # constant mask tensors break the entropy/percentile histograms.
        op_types_to_quantize=["MatMul", "Gemm", "Conv"],
        extra_options=extra_options(),
    )
