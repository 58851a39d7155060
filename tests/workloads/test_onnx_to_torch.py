"""An ONNX file's torch version (onnx2torch): used only once it matches ONNX Runtime, and
otherwise the torch-level techniques are left out with the reason."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnxruntime as ort
import pytest

from autoaccel.builder import build_candidate
from autoaccel.builder.onnx_export import export_onnx
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.techniques import REGISTRY
from autoaccel.techniques.applicability import search_notes
from autoaccel.workloads.onnx_file import OnnxFileWorkload
from autoaccel.workloads.onnx_torch import ATOL, RTOL

if importlib.util.find_spec("onnx2torch") is None:  # imported through onnx_torch only
    pytest.skip("onnx2torch is not installed (pip install --no-deps)", allow_module_level=True)


@pytest.fixture
def two(tmp_path):
    from test_onnx_inputs import two_input_model

    return two_input_model(tmp_path)


def test_converted_module_matches_onnx_runtime_and_unlocks_torch_techniques(two, tmp_path):
    workload = OnnxFileWorkload(*two)
    assert workload.torch_model_available()
    assert REGISTRY["distill"].params(workload) and REGISTRY["prune"].params(workload)
    batch = workload.judge.inputs
    import torch

    with torch.no_grad():
        got = workload.torch_model()(*(torch.from_numpy(batch[n]) for n in workload.input_names))
    want = workload.reference_predict(batch)
    assert np.all(np.abs(got.numpy() - want) <= ATOL + RTOL * np.abs(want))
    assert any("converted to torch with onnx2torch" in n for n in workload.notes())
    assert workload.baseline_description().endswith("ONNX Runtime fp32 on the given file, "
                                                    "default session, batch 1")  # fmt: skip


def test_converted_module_exports_back_to_the_same_onnx_outputs(two, tmp_path):
    """The converted module's own ONNX export (what pruned / distilled candidates go through)
    computes what the user's file computes, at other batch and sequence sizes too."""
    workload = OnnxFileWorkload(*two)
    out = tmp_path / "back.onnx"
    export_onnx(workload.torch_model(), workload, out)
    back = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for rows, length in ((slice(0, 1), 7), (slice(0, 9), 4)):
        feed = {n: workload.judge.inputs[n][rows, :length] for n in workload.input_names}
        want = workload.reference_predict(feed)
        np.testing.assert_allclose(back.run(None, feed)[0], want, rtol=RTOL, atol=ATOL)


def test_pruned_converted_model_is_exported_not_the_given_file(two, tmp_path):
    workload = OnnxFileWorkload(*two)
    recipe = {"runtime.backend": "onnxruntime", "prune.mode": "unstructured", "prune.amount": 0.5}
    candidate = build_candidate(recipe, workload, tmp_path / "c")
    assert "exported to ONNX" in candidate.notes
    assert candidate.onnx_path.read_bytes() != two[0].read_bytes()
    evaluation = evaluate_candidate(candidate, workload, MeasureConfig().scaled(0.02))
    assert evaluation.quality["accuracy"] >= 0.5  # half the weights zeroed, no fine-tuning
    plain = build_candidate({"runtime.backend": "onnxruntime"}, workload, tmp_path / "c")
    assert plain.onnx_path.read_bytes() == two[0].read_bytes()  # no torch step: the file


def _unsupported_onnx(path):
    """Shrink(x): an operator onnx2torch 1.5 has no converter for."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Shrink", ["x"], ["y"], lambd=0.5)],
        "shrink",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_model_onnx2torch_cannot_convert_keeps_onnx_only_and_says_why(tmp_path):
    model = _unsupported_onnx(tmp_path / "shrink.onnx")
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_val=x)
    workload = OnnxFileWorkload(model, tmp_path / "d.npz")
    assert not workload.torch_model_available()
    note = " ".join(workload.notes())
    assert "no torch version: onnx2torch" in note and "Shrink" in note
    assert "left out" in note
    assert any("distill, prune: not searched" in n for n in search_notes(workload))


def test_conversion_that_differs_from_onnx_runtime_is_not_used(two, monkeypatch):
    import torch

    from autoaccel.workloads import onnx_torch

    real = onnx_torch.load_onnx2torch()

    class Off(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(*args) + 0.5

    fake = type("M", (), {"convert": staticmethod(lambda p: Off(real.convert(p)))})
    monkeypatch.setattr(onnx_torch, "load_onnx2torch", lambda: fake)
    workload = OnnxFileWorkload(*two)
    assert not workload.torch_model_available()
    assert any("differs from ONNX Runtime by up to 0.5" in n for n in workload.notes())


def test_without_onnx2torch_the_reason_is_stated(two, monkeypatch):
    from autoaccel.workloads import onnx_torch

    def missing():
        raise ImportError("onnx2torch is not installed")

    monkeypatch.setattr(onnx_torch, "load_onnx2torch", missing)
    workload = OnnxFileWorkload(*two)
    assert not workload.torch_model_available()
    assert any("onnx2torch is not installed" in n for n in workload.notes())


def _matmul_file(tmp_path):
    """y = relu(x @ W1 + b1) @ W2: a graph of MatMuls by constant weights, as transformers are
    exported (no Gemm, so onnx2torch makes no nn.Linear of its own)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=16).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(size=(16, 3)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], inits,
    )  # fmt: skip
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = ort.InferenceSession(str(path)).run(None, {"x": x})[0].argmax(1)
    np.savez(tmp_path / "mlp.npz", x=x, y_val=y)
    return path, tmp_path / "mlp.npz"


def test_matmuls_by_constant_weights_become_trainable_prunable_linears(tmp_path):
    import torch

    from autoaccel.compress.pruning import unstructured

    workload = OnnxFileWorkload(*_matmul_file(tmp_path))
    assert any("2 MatMuls by a constant weight as nn.Linear" in n for n in workload.notes())
    module = workload.torch_model()
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(16, 8), (3, 16)]
    trainable = {tuple(p.shape) for p in module.parameters() if p.requires_grad}
    assert {(16, 8), (16,), (3, 16)} <= trainable  # the bias too: every float initializer
    assert sum(p.numel() for p in module.parameters()) == 8 * 16 + 16 + 16 * 3  # no copies
    unstructured(module, 0.5)
    assert all(float((m.weight == 0).float().mean()) == 0.5 for m in linears)
