"""Tiny transformers built from configs with random weights (nothing is downloaded): the
architectures layer students and head / FFN pruning must handle, each with example inputs."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertModel,
    RobertaConfig,
    RobertaModel,
    ViTConfig,
    ViTForImageClassification,
)


class FirstOutput(nn.Module):
    """Calls a Hugging Face model with keyword inputs and returns one tensor (logits, or the
    mean of the last hidden states over real tokens): what a workload exports."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, args, strict=True)))
        if hasattr(out, "logits"):
            return out.logits
        mask = args[self.names.index("attention_mask")][..., None].to(out.last_hidden_state)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1)


@dataclass
class Tiny:
    """A model, its input names and a function making inputs of (batch, length)."""

    name: str
    model: nn.Module
    names: tuple[str, ...]
    heads: int
    layers: int
    ffn: int

    def inputs(self, batch: int, length: int = 7) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(batch * 100 + length)
        if self.names == ("pixel_values",):
            return (torch.randn(batch, 3, 16, 16, generator=gen),)
        ids = torch.randint(3, 100, (batch, length), generator=gen)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, -2:] = 0  # one padded row, so the mask matters
        return ids, mask


TEXT = ("input_ids", "attention_mask")


def bert() -> Tiny:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    return Tiny("bert", FirstOutput(BertForSequenceClassification(config), TEXT), TEXT, 4, 4, 64)


def vit() -> Tiny:
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        num_labels=5,
    )
    names = ("pixel_values",)
    return Tiny("vit", FirstOutput(ViTForImageClassification(config), names), names, 4, 3, 48)


def distilbert() -> Tiny:
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=100, dim=32, n_layers=3, n_heads=2, hidden_dim=64, max_position_embeddings=64
    )
    return Tiny("distilbert", FirstOutput(DistilBertModel(config), TEXT), TEXT, 2, 3, 64)


def roberta() -> Tiny:
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=100,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
    )
    return Tiny("roberta", FirstOutput(RobertaModel(config), TEXT), TEXT, 4, 3, 96)


BUILDERS = {"bert": bert, "vit": vit, "distilbert": distilbert, "roberta": roberta}


def onnx_matches_torch(model: nn.Module, tiny: Tiny) -> float:
    """Export `model` as the project does (TorchScript exporter, opset 17, dynamic batch and
    length), run it in ONNX Runtime on inputs of another shape than at export, and return
    the largest difference from the torch module's outputs."""
    names = list(tiny.names)
    axes = {n: {0: "batch"} if n == "pixel_values" else {0: "batch", 1: "sequence"} for n in names}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            tiny.inputs(2, 7),
            buffer,
            input_names=names,
            output_names=["output"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    args = tiny.inputs(3, 11)
    with torch.no_grad():
        expected = model(*args).numpy()
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})[0]
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max())
