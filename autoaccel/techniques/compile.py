"""Graph compilation in ONNX Runtime: the session's graph optimization level and, for
transformers, the offline fusions of `onnxruntime.transformers` (Attention, LayerNorm, GELU).

`skip_layer_norm` False keeps each residual Add and the LayerNormalization after it apart:
the offline fusion leaves them, and the session is told not to fuse them (ORT does at graph
level extended and above). ORT 1.32's SkipLayerNormalization CPU kernel costs about 1.2 us
per 192-wide row: on an AVX2 EPYC it took 29 % of an int8 MiniLM student's
kernel time at batch 8, and the same graph with Add + LayerNormalization ran 1.70 against
2.14 ms at batch 1, 12.3 against 15.8 ms at batch 8 (the fp32 teacher on int8: 11.2 against
14.0 ms), outputs equal to 4e-8.

Why `fusion` is searched on ONNX Runtime only: OpenVINO fuses attention, layer norm
and GELU itself, and ORT's fused ops only stand in its way. In three MiniLM studies on an
AVX-512 EPYC, every pair of OpenVINO NNCF int8 trials that differed only in `fusion` ran
slower fused (10 of 10 pairs, 1.14-1.77x; the full model 6.21 against 8.67 ms, and teacher
cosine 0.9923 against 0.9896, since NNCF leaves the QKV weights of ORT's Attention op float),
the fp32 pair ran the same (15.13 / 15.21 ms), and int8 dynamic on a fused graph makes
QAttention, which OpenVINO cannot read. Searching it there only spent trials: one study's
switch sweep moved an ORT pick to OpenVINO with its fusion kept, and never timed the unfused
build that the study before had picked. A recipe given whole (export, a replayed trial)
still applies it as written.
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
    shapes_model = ("skip_layer_norm",)  # the offline fusion honours it too

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
        if workload is None or workload.onnx_model_type:  # transformers
            params.append(
                Param(
                    "fusion",
                    False,
                    choices=(False, True),
                    when={"runtime.backend": ("onnxruntime",)},  # OpenVINO: see above
                    help="fuse attention / layer norm / GELU with onnxruntime.transformers",
                )
            )
            params.append(
                Param(
                    "skip_layer_norm",
                    True,
                    choices=(True, False),
                    when={"runtime.backend": ("onnxruntime",)},
                    session=True,
                    help="let ORT fuse each residual Add with its LayerNorm "
                    "(SkipLayerNormalization); False keeps the two ops",
                )
            )
        return tuple(params)

    def describe(self, config: dict[str, Any]) -> str | None:
        parts = ["transformer fusions"] if config.get("fusion") else []
        if "graph_level" in config:
            parts.append(f"graph level {config['graph_level']}")
        if config.get("skip_layer_norm") is False:
            parts.append("Add + LayerNorm unfused")
        return " + ".join(parts) or None

    def changes_model(self, config: dict[str, Any]) -> bool:
        return bool(config.get("fusion", False))

    def apply(self, candidate: Candidate, config: dict[str, Any], ctx: BuildContext) -> Candidate:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        model_type = ctx.workload.onnx_model_type
        options = FusionOptions(model_type)
        options.enable_skip_layer_norm = config.get("skip_layer_norm", True)
        with quiet():
            optimized = optimize_model(
                str(candidate.onnx_path),
                model_type=model_type,
                opt_level=0,  # fusions only: the session applies the chosen graph level
                optimization_options=options,
                use_gpu=False,
                **candidate.info.get("fusion", {}),  # heads/width it cannot always detect
            )
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        out = ctx.workdir / "model.onnx"
        optimized.save_model_to_file(str(out))
        note = "fused " + ", ".join(f"{k} x{v}" for k, v in sorted(fused.items()))
        return replace(candidate, onnx_path=out, notes=(*candidate.notes, note))
