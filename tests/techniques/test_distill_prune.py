"""Compression that removes work: distilled students and pruned models, built for real."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from autoaccel.builder import build_candidate
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.techniques import REGISTRY

ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}
FAST = MeasureConfig().scaled(0.02)


def _weights(path) -> list[np.ndarray]:
    model = onnx.load(str(path))
    return [
        numpy_helper.to_array(t) for t in model.graph.initializer if t.dims and len(t.dims) >= 2
    ]


def _n_weights(path) -> int:
    return sum(w.size for w in _weights(path))


def _macs(path) -> int:
    """MACs of the Conv/Gemm/MatMul weights at batch 1 for the digits CNN (8x8 and 4x4 maps)."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        weights = [inits[i] for i in node.input if i in inits and inits[i].ndim >= 2]
        if node.op_type == "Conv" and weights:
            total += weights[0].size * 64  # both convs run on the 8x8 map (padding 1)
        elif node.op_type in ("Gemm", "MatMul") and weights:
            total += weights[0].size
    return total


def test_structured_pruning_shrinks_the_exported_graph(digits_cnn, cache_dir):
    dense = build_candidate(ORT, digits_cnn, cache_dir)
    pruned = build_candidate(
        {**ORT, "prune.mode": "structured", "prune.amount": 0.5, "prune.finetune_steps": 100},
        digits_cnn,
        cache_dir,
    )
    assert _n_weights(pruned.onnx_path) < 0.6 * _n_weights(dense.onnx_path)
    assert _macs(pruned.onnx_path) < 0.6 * _macs(dense.onnx_path)
    quality = evaluate_candidate(pruned, digits_cnn, FAST).quality["accuracy"]
    assert 0.8 < quality <= 1.0


def test_two_four_sparsity_survives_fine_tuning_and_export(seed_mlp, cache_dir):
    c = build_candidate(
        {**ORT, "prune.mode": "nm_2_4", "prune.finetune_steps": 50}, seed_mlp, cache_dir
    )
    for w in _weights(c.onnx_path):  # Gemm B is [out, in]: groups of 4 along `in`
        groups = w.reshape(w.shape[0], -1, 4)
        assert (np.count_nonzero(groups, axis=2) <= 2).all()
    assert c.train_seconds > 0


@pytest.mark.parametrize("mode", ["unstructured", "unstructured_global"])
def test_unstructured_zeros_are_kept_through_fine_tuning(seed_mlp, cache_dir, mode):
    c = build_candidate(
        {**ORT, "prune.mode": mode, "prune.amount": 0.6, "prune.finetune_steps": 40},
        seed_mlp,
        cache_dir,
    )
    weights = np.concatenate([w.ravel() for w in _weights(c.onnx_path)])
    assert np.mean(weights == 0) == pytest.approx(0.6, abs=0.05)


def test_distilled_student_is_cached_and_reused_without_training(digits_cnn, cache_dir):
    recipe = {**ORT, "distill.mode": "student", "distill.width": 0.5, "distill.steps": 150}
    first = build_candidate(recipe, digits_cnn, cache_dir)
    assert first.train_seconds > 0
    # same student, different downstream step: the student is reloaded, never retrained
    again = build_candidate({**recipe, "quantize.mode": "int8_dynamic"}, digits_cnn, cache_dir)
    assert again.train_seconds == 0.0
    torch_run = build_candidate({**recipe, "runtime.backend": "torch"}, digits_cnn, cache_dir)
    assert torch_run.train_seconds == 0.0 and torch_run.torch_model is not None
    assert any("cached" in note for note in torch_run.notes)
    assert _n_weights(first.onnx_path) < 0.5 * _n_weights(
        build_candidate(ORT, digits_cnn, cache_dir).onnx_path
    )


def test_student_quality_is_reported_and_close_to_the_teacher(digits_cnn, cache_dir):
    recipe = {**ORT, "distill.mode": "student", "distill.width": 0.5, "distill.steps": 150}
    student = evaluate_candidate(build_candidate(recipe, digits_cnn, cache_dir), digits_cnn, FAST)
    assert student.quality["accuracy"] > 0.9


def test_compression_is_not_offered_without_a_torch_model(onnx_only):
    assert REGISTRY["prune"].params(onnx_only) == ()
    assert REGISTRY["distill"].params(onnx_only) == ()


@pytest.mark.parametrize("mode", ["unstructured", "nm_2_4"])
def test_sparsity_over_a_model_without_linear_or_conv_layers_is_infeasible(mode):
    """Zeroing nothing must not pass for a sparse model (it was described as one)."""
    import torch

    from autoaccel.errors import InfeasibleRecipe

    class OwnWeights(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(8, 4))

        def forward(self, x):
            return x @ self.w

    config = {"mode": mode, "amount": 0.5}
    with pytest.raises(InfeasibleRecipe, match="no nn.Linear or nn.Conv2d") as info:
        REGISTRY["prune"].structure(OwnWeights(), config, workload=None)
    assert info.value.kind == "prune_nothing"
