"""Pruning operations on torch modules (no search logic).

- Zeroing: magnitude (L1) unstructured pruning, local or global, and N:M semi-structured
  sparsity, with `torch.nn.utils.prune` so fine-tuning keeps the pattern while the
  re-parametrisation is in place; `make_permanent` bakes the zeros into plain weights.
- Removing: `structured` removes channels / neurons of any traceable model with
  torch-pruning's dependency graph (coupled layers shrink together); `transformer` removes
  attention heads and feed-forward neurons of a BERT encoder by slicing its Linear layers.

Importance everywhere is the L1 norm of the weights a unit owns (a channel's filter and the
next layer's matching inputs; a head's Q/K/V rows and output-projection columns; an FFN
neuron's row in the up-projection and column in the down-projection).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

_PRUNABLE = (nn.Linear, nn.Conv2d)


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _PRUNABLE)]


def unstructured(model: nn.Module, amount: float, scope: str = "local") -> nn.Module:
    """Zero the `amount` smallest-magnitude weights per layer ("local") or model-wide."""
    if scope == "global":
        prune.global_unstructured(
            [(m, "weight") for m in _layers(model)],
            pruning_method=prune.L1Unstructured,
            amount=amount,
        )
    else:
        for m in _layers(model):
            prune.l1_unstructured(m, "weight", amount=amount)
    return model


def n_m_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Keep the n largest of every m consecutive weights along the reduction (input) axis."""
    w = weight.detach()
    flat = (
        w.reshape(w.shape[0], -1)
        if w.dim() == 2
        else w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)
    )
    groups = flat.abs().reshape(flat.shape[0], -1, m)
    keep = groups.topk(n, dim=2).indices
    mask = torch.zeros_like(groups).scatter_(2, keep, 1.0).reshape(flat.shape)
    if w.dim() == 2:
        return mask
    return mask.reshape(w.shape[0], w.shape[2], w.shape[3], w.shape[1]).permute(0, 3, 1, 2)


def n_m_sparsity(model: nn.Module, n: int = 2, m: int = 4) -> list[str]:
    """Apply N:M masks to every layer whose reduction size divides by m; names the skipped."""
    skipped = []
    for name, layer in model.named_modules():
        if not isinstance(layer, _PRUNABLE):
            continue
        # groups of m run along the input features (Conv2d: input channels per kernel position)
        if layer.weight.shape[1] % m:
            skipped.append(name)
            continue
        prune.custom_from_mask(layer, "weight", mask=n_m_mask(layer.weight, n, m))
    return skipped


def check_n_m(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """Whether every group of m weights along the reduction axis has at most n non-zeros."""
    w = weight.detach()
    flat = (
        w.reshape(w.shape[0], -1)
        if w.dim() == 2
        else w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)
    )
    return bool((flat.reshape(flat.shape[0], -1, m).ne(0).sum(2) <= n).all())


def freeze_zeros(model: nn.Module) -> nn.Module:
    """Mask today's zero weights so training cannot revive them (recovery fine-tuning)."""
    for m in _layers(model):
        if not prune.is_pruned(m) and bool((m.weight == 0).any()):
            prune.custom_from_mask(m, "weight", mask=(m.weight != 0).float())
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Remove pruning re-parametrisations: plain `weight` tensors with the zeros baked in."""
    for m in _layers(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over every Linear / Conv2d weight."""
    total = zeros = 0
    for m in _layers(model):
        total += m.weight.numel()
        zeros += int((m.weight == 0).sum())
    return zeros / max(total, 1)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def structured(model: nn.Module, amount: float, example_inputs: tuple) -> nn.Module:
    """Remove `amount` of every hidden layer's channels / neurons (in place; returns it).

    torch-pruning traces the model and prunes coupled layers together (a conv's output
    channels with the next layer's inputs, through Flatten). The final classifier's outputs
    are never pruned: its class count is the model's contract.
    """
    import torch_pruning as tp

    last = _layers(model)[-1]
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs,
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=amount,
        ignored_layers=[last],
    )
    pruner.step()
    return model


def transformer(encoder: nn.Module, heads_fraction: float, ffn_fraction: float) -> nn.Module:
    """Remove attention heads and feed-forward neurons from every layer of `encoder.bert`.

    Uniform per layer (the same head count everywhere) so ONNX Runtime's attention fusion,
    which takes one head count, still applies.
    """
    for layer in encoder.bert.encoder.layer:
        attn = layer.attention.self
        heads = attn.num_attention_heads
        drop_heads = min(heads - 1, round(heads_fraction * heads))
        if drop_heads:
            _drop_heads(layer, drop_heads)
        inner = layer.intermediate.dense.out_features
        drop = min(inner - 1, round(ffn_fraction * inner))
        if drop:
            score = layer.intermediate.dense.weight.abs().sum(
                1
            ) + layer.output.dense.weight.abs().sum(0)
            keep = score.argsort(descending=True)[: inner - drop].sort().values
            layer.intermediate.dense = _slice(layer.intermediate.dense, keep, dim=0)
            layer.output.dense = _slice(layer.output.dense, keep, dim=1)
    return encoder


def _drop_heads(layer: nn.Module, drop: int) -> None:
    attn, out = layer.attention.self, layer.attention.output.dense
    heads = attn.num_attention_heads
    size = attn.attention_head_size
    score = torch.zeros(heads)
    for h in range(heads):
        rows = slice(h * size, (h + 1) * size)
        score[h] = sum(lin.weight[rows].abs().sum() for lin in (attn.query, attn.key, attn.value))
        score[h] += out.weight[:, rows].abs().sum()
    kept = score.argsort(descending=True)[: heads - drop].sort().values
    index = torch.cat([torch.arange(h * size, (h + 1) * size) for h in kept.tolist()])
    for name in ("query", "key", "value"):
        setattr(attn, name, _slice(getattr(attn, name), index, dim=0))
    layer.attention.output.dense = _slice(out, index, dim=1)
    attn.num_attention_heads = heads - drop
    attn.all_head_size = size * (heads - drop)


def _slice(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller Linear keeping `index` of its outputs (dim 0) or inputs (dim 1)."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    out_f, in_f = weight.shape
    new = nn.Linear(in_f, out_f, bias=linear.bias is not None)
    new.weight.data.copy_(weight)
    if linear.bias is not None:
        bias = linear.bias.detach()
        new.bias.data.copy_(bias.index_select(0, index) if dim == 0 else bias)
    return new
