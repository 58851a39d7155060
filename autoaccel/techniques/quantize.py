"""Quantization with ONNX Runtime's tooling: fp16, int8 dynamic, int8 static QDQ.

Per-channel weight scales matter for transformer quality (MiniLM: cosine to the teacher .993
per-channel vs .955 per-tensor); static quantization calibrates activations on the workload's
calibration batches, which never overlap the data that judges quality.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from autoaccel.errors import InfeasibleRecipe
from autoaccel.techniques._quiet import quiet
from autoaccel.techniques.base import BuildContext, Candidate, Param, Stage, Technique

MODES = ("none", "fp16", "int8_dynamic", "int8_static")
CALIBRATIONS = ("minmax", "entropy", "percentile")
_INT8 = ("int8_dynamic", "int8_static")


class Quantize(Technique):
    name = "quantize"
    stage = Stage.ONNX
    requires = {"runtime.backend": ("onnxruntime",)}

    def params(self, workload) -> tuple[Param, ...]:
        return (
            Param("mode", "none", choices=MODES, help="numeric format of weights/activations"),
            Param(
                "per_channel",
                True,
                choices=(True, False),
                when={"quantize.mode": _INT8},
                help="one int8 scale per output channel instead of per tensor",
            ),
            Param(
                "calibration",
                "minmax",
                choices=CALIBRATIONS,
                when={"quantize.mode": ("int8_static",)},
                help="how activation ranges are chosen from the calibration batches",
            ),
        )

    def describe(self, config: dict[str, Any]) -> str | None:
        mode = config["mode"]
        if mode == "none":
            return "fp32"
        if mode == "fp16":
            return "fp16"
        scale = "per-channel" if config.get("per_channel") else "per-tensor"
        if mode == "int8_dynamic":
            return f"int8 dynamic {scale}"
        return f"int8 static QDQ {scale}, {config['calibration']} calibration"

    def changes_model(self, config: dict[str, Any]) -> bool:
        return config["mode"] != "none"

    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        mode = config["mode"]
        out = ctx.workdir / "model.onnx"
        with quiet():
            if mode == "fp16":
                _to_fp16(candidate.onnx_path, out)
            elif mode == "int8_dynamic":
                _int8_dynamic(candidate.onnx_path, out, config["per_channel"])
            else:
                batches = ctx.workload.calibration_inputs()
                try:
                    _int8_static(candidate.onnx_path, out, config, batches)
                except ValueError as exc:
                    if "Histogram has not been collected" not in str(exc):
                        raise
                    raise InfeasibleRecipe(
                        f"int8 static with {config['calibration']} calibration collected no "
                        "histograms on this graph (ORT's calibrator and fused transformer ops);"
                        " minmax calibration or an unfused graph works"
                    ) from None
        return replace(candidate, onnx_path=out, notes=(*candidate.notes, f"quantized {mode}"))


def _to_fp16(src, out) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(out))


def _extra_options() -> dict[str, Any]:
    import onnx

    # Fused transformer ops (com.microsoft) carry no type info for the quantizer's shape
    # inference; without a default type it refuses them.
    return {"DefaultTensorType": onnx.TensorProto.FLOAT}


def _int8_dynamic(src, out, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(out),
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        extra_options=_extra_options(),
    )


def _int8_static(src, out, config: dict[str, Any], batches: list[dict]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

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
        extra_options=_extra_options(),
    )
