"""sentence-transformers folders whose pipeline ends in a Dense projection (LaBSE, the
distiluse models): read from modules.json, computed like sentence-transformers, refused in
one line where autoaccel cannot compute it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from support_hf import sentence_embedder, sentences

from autoaccel.builder import build_candidate
from autoaccel.errors import UserError
from autoaccel.workloads import load_workload
from autoaccel.workloads.st_modules import read_pipeline

ST = "sentence_transformers.models."
TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": ST + "Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST + "Pooling"}
DENSE = {"idx": 2, "name": "2", "path": "2_Dense", "type": ST + "Dense"}
NORMALIZE = {"idx": 3, "name": "3", "path": "3_Normalize", "type": ST + "Normalize"}


def _with_dense(folder: Path, modules: list[dict], activation: str = "Tanh", save=True) -> Path:
    """The tiny 32-wide embedder with a Dense 32 -> 8 module and the given modules.json."""
    sentence_embedder(folder)
    dense = folder / "2_Dense"
    dense.mkdir()
    config = {"in_features": 32, "out_features": 8, "bias": True,
              "activation_function": f"torch.nn.modules.activation.{activation}"}  # fmt: skip
    (dense / "config.json").write_text(json.dumps(config))
    if save:
        gen = torch.Generator().manual_seed(0)
        save_file({"linear.weight": torch.randn(8, 32, generator=gen),
                   "linear.bias": torch.randn(8, generator=gen)},
                  str(dense / "model.safetensors"))  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def test_dense_is_read_in_order_and_said(tmp_path):
    found = read_pipeline(_with_dense(tmp_path / "m", [TRANSFORMER, POOLING, DENSE, NORMALIZE]))
    assert (found.pooling, found.normalize) == ("mean", True)
    ((dense),) = found.dense
    assert (dense.in_features, dense.out_features, dense.activation) == (32, 8, "Tanh")
    assert found.source == "mean pooling, Dense 32->8 tanh, L2-normalised (modules.json)"


def test_embedding_goes_through_the_dense_layer_in_torch_and_in_onnx(tmp_path):
    folder = _with_dense(tmp_path / "m", [TRANSFORMER, POOLING, DENSE, NORMALIZE])
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": sentences(20)}).to_csv(texts, index=False)
    workload = load_workload(None, tmp_path / "cache", folder, texts)
    inputs = workload.tokenize((["good calm day", "sad cold night"],))
    args = [torch.from_numpy(inputs[n]) for n in workload.input_names]
    model = workload.torch_model()
    with torch.no_grad():
        got = model(*args)
        hidden = model.inner(input_ids=args[0], attention_mask=args[1])[0]
        mask = args[1].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        layer = model.dense[0].linear
        expected = torch.nn.functional.normalize(torch.tanh(layer(pooled)), dim=1)
    assert got.shape == (2, 8)
    torch.testing.assert_close(got, expected)
    candidate = build_candidate({"runtime.backend": "onnxruntime"}, workload, tmp_path / "c")
    import onnxruntime as ort

    onnx_out = ort.InferenceSession(str(candidate.onnx_path)).run(None, inputs)[0]
    np.testing.assert_allclose(onnx_out, got.numpy(), atol=1e-5)
    assert any("Dense 32->8 tanh" in n for n in workload.notes())


@pytest.mark.parametrize(
    ("modules", "activation", "save", "says"),
    [
        ([TRANSFORMER, POOLING, DENSE], "Softsign", True, "Dense activation .*Softsign"),
        ([TRANSFORMER, DENSE, POOLING], "Tanh", True, "module Dense comes where autoaccel"),
        ([TRANSFORMER, POOLING, NORMALIZE, DENSE], "Tanh", True, "module Dense comes where"),
        ([TRANSFORMER, POOLING, DENSE], "Tanh", False, "a Dense module without weights"),
    ],
)
def test_a_dense_pipeline_autoaccel_cannot_compute_is_one_line(
    tmp_path, modules, activation, save, says
):
    folder = _with_dense(tmp_path / "m", modules, activation, save)
    with pytest.raises(UserError, match=says):
        read_pipeline(folder)


def test_an_encoder_only_folder_loads_the_class_it_names(tmp_path):
    """A T5EncoderModel folder (sentence-T5): AutoModel would build the encoder-decoder and
    leave its decoder at random; the class config.json names is loaded instead."""
    from support_hf import copy_tokenizer
    from transformers import T5Config, T5EncoderModel

    folder = sentence_embedder(tmp_path / "st")  # its modules.json and pooling
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    torch.manual_seed(0)
    config = T5Config(vocab_size=30522, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16)
    T5EncoderModel(config).save_pretrained(folder)
    copy_tokenizer(folder)
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": sentences(20)}).to_csv(texts, index=False)
    workload = load_workload(None, tmp_path / "cache", folder, texts)
    assert type(workload.torch_model().inner).__name__ == "T5EncoderModel"
    inputs = workload.tokenize((["good calm day"],))
    with torch.no_grad():
        vector = workload.torch_model()(*[torch.from_numpy(v) for v in inputs.values()])
    assert vector.shape == (1, 32) and torch.isfinite(vector).all()
