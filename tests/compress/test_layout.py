"""A transformer's layout read from its structure and config: the layer stack, each layer's
attention (heads x head size) and feed-forward Linears, or the reason there is none."""

from __future__ import annotations

import pytest
import torch
from tiny_transformers import BUILDERS
from torch import nn

from autoaccel.compress import layout
from autoaccel.compress.layout import NoLayout, find_layout, looks_like_transformer

STACKS = {
    "bert": "model.bert.encoder.layer",
    "vit": "model.vit.layers",
    "distilbert": "model.transformer.layer",
    "roberta": "model.encoder.layer",
}


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_layout_finds_stack_heads_and_ffn_of_each_hugging_face_architecture(arch):
    tiny = BUILDERS[arch]()
    found = find_layout(tiny.model)
    assert found.path == STACKS[arch]
    assert found.num_layers == tiny.layers
    assert found.heads == tiny.heads
    assert found.heads_reason is None and found.ffn_reason is None
    assert found.config is not None and hasattr(found.config, "to_dict")
    for block in found.blocks:
        q, k, v = (layout.get(s) for s in block.attention.qkv)
        assert len({id(q), id(k), id(v)}) == 3
        out = layout.get(block.attention.output)
        width = block.attention.heads * block.attention.head_size
        assert q.out_features == width and out.in_features == width
        (up,) = (layout.get(s) for s in block.ffn.ups)
        down = layout.get(block.ffn.down)
        assert (up.out_features, down.in_features) == (tiny.ffn, tiny.ffn)
        assert down.out_features == q.in_features  # back to the model width
        assert out not in (up, down)


class _PlainAttention(nn.Module):
    """A user's attention keeping no head count: only its Linears."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2), -1)
        return self.o(a @ self.v(x))


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.attn = _PlainAttention(width)
        self.up, self.down = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.down(torch.relu(self.up(x)))


class _UserEncoder(nn.Module):
    def __init__(self, width: int = 16, layers: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_Block(width) for _ in range(layers))
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1))


def test_layout_of_a_users_encoder_without_head_count_gives_layers_but_no_heads():
    found = find_layout(_UserEncoder())
    assert (found.path, found.num_layers, found.heads) == ("blocks", 3, None)
    assert "no head count" in found.heads_reason
    assert found.ffn_reason is None
    assert found.blocks[0].ffn.down == (found.blocks[0].module, "down")


def test_layout_of_torch_transformer_encoder_has_layers_and_ffn_but_no_heads():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2)
    found = find_layout(encoder)
    assert (found.path, found.num_layers) == ("layers", 2)
    assert "MultiheadAttention" in found.heads_reason
    ffn = found.blocks[1].ffn
    assert ffn.ups == ((found.blocks[1].module, "linear1"),)
    assert ffn.down == (found.blocks[1].module, "linear2")


def test_layout_is_not_found_for_a_cnn_and_says_why():
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(NoLayout, match="no list of encoder layers"):
        find_layout(cnn)
    assert looks_like_transformer(cnn) is None


def test_layout_refuses_two_layer_stacks_naming_them():
    class TwoTowers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text, self.image = _UserEncoder(), _UserEncoder()

    with pytest.raises(NoLayout, match="several layer stacks") as info:
        find_layout(TwoTowers())
    assert "text.blocks" in str(info.value) and "image.blocks" in str(info.value)


def test_transformer_evidence_comes_from_config_or_attention_modules():
    assert "num_attention_heads" in looks_like_transformer(BUILDERS["bert"]().model)
    assert "attn" in looks_like_transformer(_UserEncoder())
    mha = nn.Sequential(nn.Linear(4, 4))
    mha.add_module("mixer", nn.MultiheadAttention(4, 2))
    assert "mixer" in looks_like_transformer(mha)
