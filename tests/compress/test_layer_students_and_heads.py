"""Layer students and head / FFN pruning on BERT, ViT, DistilBERT and RoBERTa built from
configs (random weights): fewer layers, heads and neurons, exported to ONNX and run there
with the torch module's outputs."""

from __future__ import annotations

import pytest
import torch
from tiny_transformers import BUILDERS, onnx_matches_torch
from torch import nn

from autoaccel.compress import layout
from autoaccel.compress.distillation import default_layers, layer_student
from autoaccel.compress.layout import NoLayout, attention_shape, find_layout
from autoaccel.compress.pruning import count_params, transformer

ARCHS = pytest.mark.parametrize("arch", list(BUILDERS))


def _out(model: nn.Module, args: tuple) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(*args)


@ARCHS
def test_layer_student_keeps_evenly_spaced_layers_and_updates_the_config(arch):
    tiny = BUILDERS[arch]()
    teacher_layout = find_layout(tiny.model)
    keep = default_layers(tiny.layers, 2)
    student = layer_student(tiny.model, keep)

    found = find_layout(student)
    assert found.num_layers == 2
    assert found.config.num_hidden_layers == 2  # n_layers on DistilBERT, by its alias
    assert teacher_layout.num_layers == tiny.layers  # the teacher is untouched
    assert teacher_layout.config.num_hidden_layers == tiny.layers
    assert count_params(student) < count_params(tiny.model)
    assert not {p.data_ptr() for p in student.parameters()} & {
        p.data_ptr() for p in tiny.model.parameters()
    }
    last_kept = layout.get(teacher_layout.blocks[keep[-1]].ffn.down).weight
    assert torch.equal(layout.get(found.blocks[-1].ffn.down).weight, last_kept)
    assert onnx_matches_torch(student, tiny) < 1e-4


@ARCHS
def test_layer_student_keeping_every_layer_reproduces_the_teacher(arch):
    tiny = BUILDERS[arch]()
    student = layer_student(tiny.model, range(tiny.layers))
    args = tiny.inputs(2)
    torch.testing.assert_close(_out(student, args), _out(tiny.model, args))


@ARCHS
def test_head_and_ffn_pruning_halves_every_layer_and_exports_to_onnx(arch):
    tiny = BUILDERS[arch]()
    before = count_params(tiny.model)
    transformer(tiny.model, heads_fraction=0.5, ffn_fraction=0.5)

    found = find_layout(tiny.model)  # read again from the pruned modules
    assert found.heads == tiny.heads // 2
    for block in found.blocks:
        attention = block.attention
        assert attention.heads == tiny.heads // 2
        width = attention.heads * attention.head_size
        assert all(layout.get(s).out_features == width for s in attention.qkv)
        assert layout.get(attention.output).in_features == width
        assert layout.get(block.ffn.down).in_features == tiny.ffn // 2
        for name in layout.HEAD_COUNT_ATTRS:  # what readers (fusion options) see
            if isinstance(getattr(attention.owner, name, None), int):
                assert getattr(attention.owner, name) == tiny.heads // 2
    assert count_params(tiny.model) < before
    head_size = found.blocks[0].attention.head_size
    assert attention_shape(tiny.model) == (tiny.heads // 2, tiny.heads // 2 * head_size)
    assert onnx_matches_torch(tiny.model, tiny) < 1e-4


def test_pruned_student_of_vit_still_classifies_images():
    tiny = BUILDERS["vit"]()
    student = layer_student(tiny.model, [0, 2])
    transformer(student, heads_fraction=0.25, ffn_fraction=0.25)
    assert find_layout(student).heads == 3
    assert _out(student, tiny.inputs(4)).shape == (4, 5)


def test_head_pruning_refused_with_the_reason_where_heads_cannot_be_read():
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    with pytest.raises(NoLayout, match="MultiheadAttention"):
        transformer(encoder, heads_fraction=0.5, ffn_fraction=0.0)
    assert attention_shape(encoder) is None
    student = layer_student(encoder, [0, 2])  # layers and FFN neurons still go
    transformer(student, heads_fraction=0.0, ffn_fraction=0.5)
    assert (student.num_layers, len(student.layers)) == (2, 2)
    assert student.layers[1].linear1.out_features == 32
    x = torch.randn(2, 5, 32)
    assert _out(student, (x,)).shape == (2, 5, 32)


def test_layer_student_rejects_impossible_layer_choices():
    tiny = BUILDERS["distilbert"]()
    with pytest.raises(ValueError, match="keep_layers"):
        layer_student(tiny.model, [2, 1])
    with pytest.raises(ValueError, match="keep_layers"):
        layer_student(tiny.model, [0, 3])
    with pytest.raises(NoLayout):
        layer_student(nn.Sequential(nn.Linear(4, 4)), [0])
