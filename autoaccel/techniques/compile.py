"""Graph compilation in ONNX Runtime: the session's graph optimization level and, for
transformers, the offline fusions of `onnxruntime.transformers` (Attention, LayerNorm, GELU).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from autoaccel.techniques._quiet import quiet
from autoaccel.techniques.base import BuildContext, Candidate, Param, Stage, Technique

GRAPH_LEVELS = ("disable", "basic", "extended", "all")


class Compile(Technique):
    name = "compile"
    stage = Stage.ONNX
    requires = {"runtime.backend": ("onnxruntime", "openvino")}  # the ONNX backends

    def params(self, workload) -> tuple[Param, ...]:
        params = [
            Param(
                "graph_level",
                "all",
                choices=GRAPH_LEVELS,
                when={"runtime.backend": ("onnxruntime",)},  # OpenVINO has its own compiler
                session=True,
                help="ORT graph optimization level (constant folding, fusions, layout)",
            )
        ]
        if workload is None or workload.onnx_model_type:
            params.append(
                Param(
                    "fusion",
                    False,
                    choices=(False, True),
                    help="fuse attention / layer norm / GELU with onnxruntime.transformers",
                )
            )
        return tuple(params)

    def describe(self, config: dict[str, Any]) -> str | None:
        parts = ["transformer fusions"] if config.get("fusion") else []
        if "graph_level" in config:
            parts.append(f"graph level {config['graph_level']}")
        return " + ".join(parts) or None

    def changes_model(self, config: dict[str, Any]) -> bool:
        return bool(config.get("fusion", False))

    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        from onnxruntime.transformers.optimizer import optimize_model

        with quiet():
            optimized = optimize_model(
                str(candidate.onnx_path),
                model_type=ctx.workload.onnx_model_type,
                opt_level=0,  # fusions only: the session applies the chosen graph level
                use_gpu=False,
                **candidate.info.get("fusion", {}),  # heads/width it cannot always detect
            )
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        out = ctx.workdir / "model.onnx"
        optimized.save_model_to_file(str(out))
        note = "fused " + ", ".join(f"{k} x{v}" for k, v in sorted(fused.items()))
        return replace(candidate, onnx_path=out, notes=(*candidate.notes, note))
