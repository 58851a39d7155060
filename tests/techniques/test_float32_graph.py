"""A user's float16 ONNX file: the int8 and int4 quantizers run on its float32 copy, whose
inputs and outputs stay float16; and NNCF treats any graph with attention as a transformer,
whoever exported it."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from autoaccel.builder import build_candidate
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.techniques.float32_graph import as_float32, is_float16
from autoaccel.techniques.quantize import _has_attention
from autoaccel.workloads.onnx_file import OnnxFileWorkload


class TinyAttention(torch.nn.Module):
    """One self-attention block and a classifier: scores are a product of two activations."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, 4)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1)
        return self.head(self.norm(x + scores @ v).mean(1))


def _export(model: torch.nn.Module, path, shape) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.zeros(*shape),), str(path), input_names=["x"],
            output_names=["logits"], dynamic_axes={"x": {0: "batch"}}, opset_version=17,
            dynamo=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(fp32 attention model, its float16 twin with float16 inputs and outputs, the twin's
    data, the fp32 model's data)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    folder = tmp_path_factory.mktemp("fp16")
    torch.manual_seed(0)
    _export(TinyAttention(), folder / "fp32.onnx", (1, 6, 16))
    half = convert_float_to_float16(onnx.load(str(folder / "fp32.onnx")), keep_io_types=False)
    onnx.save(half, str(folder / "fp16.onnx"))
    x = np.random.default_rng(0).normal(size=(120, 6, 16)).astype(np.float16)
    np.savez(folder / "data.npz", x=x)
    np.savez(folder / "data32.npz", x=x.astype(np.float32))
    return folder / "fp32.onnx", folder / "fp16.onnx", folder / "data.npz", folder / "data32.npz"


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]


def test_the_float32_copy_keeps_the_signature_and_the_outputs(files, tmp_path):
    _, half, data, _ = files
    assert is_float16(half) and not is_float16(files[0])
    description = OnnxFileWorkload(half, data, convert=False).baseline_description()
    assert "ONNX Runtime float16 on the given file" in description
    as_float32(half, tmp_path / "wide.onnx")
    wide = onnx.load(str(tmp_path / "wide.onnx"))
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in wide.graph.initializer)
    assert [(i.name, i.type.tensor_type.elem_type) for i in wide.graph.input] == [
        ("x", onnx.TensorProto.FLOAT16)
    ]
    assert wide.graph.output[0].name == "logits"
    assert wide.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    x = np.load(data)["x"][:8]
    got, want = _run(tmp_path / "wide.onnx", x), _run(half, x)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=2e-2)


@pytest.mark.parametrize("mode", ["int8_dynamic", "int8_static", "int8_nncf", "int4_weight"])
def test_every_quantizer_builds_a_float16_file_that_runs_close_to_it(files, tmp_path, mode):
    _, half, data, _ = files
    workload = OnnxFileWorkload(half, data, convert=False)
    recipe = {"runtime.backend": "onnxruntime", "quantize.mode": mode}
    candidate = build_candidate(recipe, workload, tmp_path)
    assert any("float16 graph computed in float32" in note for note in candidate.notes)
    quality = evaluate_candidate(candidate, workload, MeasureConfig().scaled(0.05)).quality
    assert quality["teacher_cosine"] > 0.9, quality


def test_attention_is_found_in_the_graph_and_a_plain_classifier_has_none(files, tiny_onnx_files):
    assert _has_attention(onnx.load(str(files[0])).graph)
    assert _has_attention(onnx.load(str(files[1])).graph)
    assert not _has_attention(onnx.load(str(tiny_onnx_files[0])).graph)  # Linear + Softmax


def test_nncf_quantizes_an_attention_file_as_a_transformer(files, tmp_path):
    fp32, _, _, data = files
    workload = OnnxFileWorkload(fp32, data, convert=False)
    assert workload.onnx_model_type is None  # nothing but the graph says it is a transformer
    recipe = {"runtime.backend": "openvino", "quantize.mode": "int8_nncf"}
    candidate = build_candidate(recipe, workload, tmp_path)
    assert any("(transformer model type)" in note for note in candidate.notes)
