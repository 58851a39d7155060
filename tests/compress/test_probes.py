"""Probes: an edit the layout allows but the model rejects when run is found once, on a copy,
with the model's own error; the teacher is never touched."""

from __future__ import annotations

import pytest
import torch
from tiny_transformers import TEXT, FirstOutput, Tiny, bert
from torch import nn
from transformers import GPT2Config, GPT2Model, MPNetConfig, MPNetModel, SwinConfig, SwinModel

from autoaccel.compress import probes
from autoaccel.compress.layout import NoLayout, find_layout


def mpnet() -> Tiny:
    """MPNet: one relative-position bias with the teacher's head count, added in every layer."""
    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=66,
    )
    return Tiny("mpnet", FirstOutput(MPNetModel(config), TEXT), TEXT, 4, 2, 64)


def gpt2() -> FirstOutput:
    """GPT-2: Conv1D layers and one fused query/key/value projection split in forward."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    return FirstOutput(GPT2Model(config), TEXT)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_mpnet_heads_fail_when_run_but_its_ffn_neurons_can_go():
    tiny = mpnet()
    found = find_layout(tiny.model)
    assert found.heads_reason is None and found.heads == 4  # the structure alone allows it
    before = _snapshot(tiny.model)
    why = probes.heads(tiny.model, tiny.inputs(1))
    assert why.startswith("RuntimeError:") and "(4)" in why  # the teacher's 4 heads
    assert probes.ffn(tiny.model, tiny.inputs(1)) == ""
    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # pruned a copy only


def test_a_bert_passes_every_probe():
    tiny = bert()
    args = tiny.inputs(1)
    assert probes.heads(tiny.model, args) == probes.ffn(tiny.model, args) == ""


def test_torch_pruning_failure_on_gpt2_is_caught_and_a_plain_network_passes():
    args = bert().inputs(1)
    why = probes.channels(gpt2(), args)
    assert why.split(":")[0] in {"TypeError", "RuntimeError", "ValueError", "IndexError"}
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    assert probes.channels(mlp, (torch.randn(1, 8),)) == ""


def test_an_error_is_one_short_line():
    def edit(model: nn.Module) -> None:
        raise ValueError("first line\nsecond line " + "x" * 500)

    why = probes.failure(nn.Linear(2, 2), edit, (torch.zeros(1, 2),))
    assert why == "ValueError: first line"


def test_swin_stages_that_widen_the_model_are_no_layer_stack():
    """Swin's `encoder.layers` holds stages (each a stack of blocks, twice as wide as the
    last); dropping or pruning "layers" there would cut stages. Its blocks form two stacks,
    which the layout does not support: it says so instead of reading stages as layers."""
    torch.manual_seed(0)
    config = SwinConfig(
        image_size=16, patch_size=2, embed_dim=8, depths=[2, 2], num_heads=[2, 4], window_size=4
    )
    with pytest.raises(NoLayout, match="several layer stacks"):
        find_layout(SwinModel(config))
