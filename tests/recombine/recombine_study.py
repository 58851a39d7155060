"""Hand-made studies for the re-pairing tests: trials with chosen recipes and timings."""

from __future__ import annotations

import optuna

BASELINE = {"accuracy": 0.90, "latency_ms": 20.0}
CHOICES = {
    "runtime.backend": ["onnxruntime", "openvino"],
    "runtime.ov_precision": ["f32", "bf16"],
    "distill.mode": ["none", "student"],
    "distill.layers": [1, 2, 3],
    "distill.width": [1.0],
    "distill.steps": [150],
    "quantize.mode": ["none", "int8_dynamic"],
}
ORT = {"runtime.backend": "onnxruntime", "quantize.mode": "none"}
OV_BF16 = {"runtime.backend": "openvino", "runtime.ov_precision": "bf16", "quantize.mode": "none"}
OV_F32 = {"runtime.backend": "openvino", "runtime.ov_precision": "f32", "quantize.mode": "none"}
TEACHER = {"distill.mode": "none"}


def _student(layers: int) -> dict:
    return {
        "distill.mode": "student",
        "distill.layers": layers,
        "distill.width": 1.0,
        "distill.steps": 150,
    }


def _trial(
    model: dict,
    build: dict,
    ms: float,
    drop: float = 0.0,
    choices: dict | None = None,
    limits: dict | None = None,
):
    params = {**model, **build}
    choices = {**CHOICES, **(choices or {})}
    dists = {k: optuna.distributions.CategoricalDistribution(choices[k]) for k in params}
    result = {
        "target": "cpu-local",
        "latency_ms": ms,
        "objective_ms": ms,
        "latency_p90_ms": ms * 1.1,
        "latency_source": "measured",
        "size_mb": 1.0,
        "quality": {"accuracy": 0.9 - drop},
    }
    return optuna.trial.create_trial(
        values=[0.9 - drop, ms],
        params=params,
        distributions=dists,
        user_attrs={"recipe": params, "result": result},
        constraints={"accuracy_drop": drop - 0.01, **(limits or {})},
    )
