"""Knobs the model's layout allows but that break it when run are left out before the
search, each with the model's own error said once (`compress.probes`): no trial is spent
failing on them."""

from __future__ import annotations

import torch
from test_transformer_knobs import TEXT, TinyModel, _Out
from transformers import GPT2Config, GPT2Model, MPNetConfig, MPNetModel

from autoaccel.techniques import REGISTRY, search_notes


def _params(workload, technique: str) -> dict:
    return {p.name: p for p in REGISTRY[technique].params(workload)}


def test_mpnet_keeps_students_and_ffn_pruning_but_not_its_heads():
    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=66,
    )
    workload = TinyModel("tiny-mpnet", _Out(MPNetModel(config), TEXT), TEXT, "embedding")
    prune, distill = _params(workload, "prune"), _params(workload, "distill")
    assert "heads" not in prune and "structured" in prune["mode"].choices
    assert distill["layers"].choices == (1, 2, 3) and 0.5 in distill["width"].choices
    (line,) = search_notes(workload)
    assert line.startswith("prune.heads: not searched: the attention heads of tiny-mpnet")
    assert "a copy with heads removed does not run (RuntimeError" in line


def test_gpt2_gets_layer_students_but_no_narrowing_and_is_told_why():
    """GPT-2's blocks hold Conv1D projections and one packed query/key/value: its stack is
    read by its attention module's name (layers to keep, checked by a probe), its heads and
    FFN neurons are not, and nothing narrows it."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=4, n_head=2, n_positions=64)
    workload = TinyModel("tiny-gpt2", _Out(GPT2Model(config), TEXT), TEXT, "embedding")
    distill = _params(workload, "distill")
    assert distill["layers"].choices == (1, 2, 3, 4) and distill["width"].choices == (1.0,)
    prune = _params(workload, "prune")
    assert "heads" not in prune and "structured" not in prune["mode"].choices
    heads, ffn = search_notes(workload)
    assert heads.startswith("prune.heads: not searched: the attention heads of tiny-gpt2")
    assert ffn.startswith("distill.width, prune.mode structured: not searched")
    student = REGISTRY["distill"].structure(
        workload.torch_model(), {"mode": "student", "layers": 2, "width": 1.0}, workload
    )
    assert len(student.model.h) == student.model.config.n_layer == 2
    with torch.no_grad():
        assert student(*workload.example_args()).shape == (1, 32)


def test_albert_one_shared_layer_offers_narrower_students_not_fewer_layers(tmp_path):
    """ALBERT keeps one layer and runs it num_hidden_layers times: "keep 1 of 1 layers" would
    be the teacher again, so only width is searched, through its feed-forward block."""
    from transformers import AlbertConfig, AlbertModel

    from autoaccel.compress.layout import find_layout, get

    torch.manual_seed(0)
    config = AlbertConfig(
        vocab_size=100,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    workload = TinyModel("tiny-albert", _Out(AlbertModel(config), TEXT), TEXT, "embedding")
    distill = _params(workload, "distill")
    assert "layers" not in distill and distill["width"].choices[-1] == 0.25
    (line,) = search_notes(workload)
    assert line.startswith("distill.layers: not searched: the layer stack of tiny-albert")
    student = REGISTRY["distill"].structure(
        workload.torch_model(), {"mode": "student", "width": 0.5, "steps": 0}, workload
    )
    (block,) = find_layout(student).blocks
    assert get(block.ffn.ups[0]).out_features == 32  # 64 -> 32 neurons
    args = workload.example_args()
    with torch.no_grad():
        assert student(*args).shape == workload.torch_model()(*args).shape


class _FixedDepth(torch.nn.Module):
    """An encoder whose forward walks a fixed number of layers: a student breaks it."""

    def __init__(self) -> None:
        super().__init__()
        layer = [torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True) for _ in range(4)]
        self.layers, self.head = torch.nn.ModuleList(layer), torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = self.layers[i](x)
        return self.head(x.mean(1))


def test_a_stack_a_student_cannot_run_with_is_no_layout_and_says_why():
    from test_transformer_knobs import _Vectors

    torch.manual_seed(0)
    workload = _Vectors("fixed-depth", _FixedDepth())
    assert workload.transformer_layout() is None
    reason = workload.transformer_layout_reason()
    assert reason.startswith("a copy with half the layers of layers does not run (IndexError")
    assert "layers" not in _params(workload, "distill")
