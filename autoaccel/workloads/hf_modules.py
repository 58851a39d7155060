"""Torch wrappers that give a Hugging Face model the shape autoaccel exports and trains:
`forward` takes the named inputs positionally (in the workload's `input_names` order) and
returns one tensor, the logits or the pooled sentence embedding.

Each keeps the Hugging Face model at `.model` (layer students and head pruning find its layer
stack by structure: `autoaccel.compress.layout`), or where a subclass's `slot` says: that name
prefixes every weight's and exported node's name, so cached weights and graphs keep it.
"""

from __future__ import annotations

import torch

POOLINGS = ("mean", "cls", "max")


class _Wrapper(torch.nn.Module):
    slot = "model"
    """The attribute that holds the Hugging Face model."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        setattr(self, self.slot, model)

    @property
    def inner(self) -> torch.nn.Module:
        """The wrapped Hugging Face model, whatever `slot` holds it."""
        return getattr(self, self.slot)


class TextClassifier(_Wrapper):
    """A sequence classifier: token ids (and mask, and segment ids for pairs) -> logits."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


class ImageClassifier(_Wrapper):
    """An image classifier: pixel values -> logits."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.inner(pixel_values=pixel_values).logits


class DenseLayer(torch.nn.Module):
    """sentence-transformers' Dense module: `linear`, then the activation (its state-dict
    keys as it saves them; `activation` a torch.nn class name, checked by the reader)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, activation: str) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features, bias=bias)
        self.activation_function = getattr(torch.nn, activation)()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation_function(self.linear(x))


class SentenceEmbedder(_Wrapper):
    """Encoder + pooling (+ Dense layers) (+ L2 norm): what sentence-transformers computes
    for such a folder."""

    def __init__(
        self,
        model: torch.nn.Module,
        pooling: str,
        normalize: bool,
        dense: torch.nn.Module | None = None,
    ) -> None:
        super().__init__(model)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: use one of {POOLINGS}")
        self.pooling, self.normalize = pooling, normalize
        if dense is not None:  # only then: other folders keep their weights' names
            self.dense = dense

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)
        else:
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if hasattr(self, "dense"):
            pooled = self.dense(pooled)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled
