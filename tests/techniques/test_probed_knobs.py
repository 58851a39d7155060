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


def test_gpt2_gets_no_student_and_no_structured_pruning_and_is_told_why():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    workload = TinyModel("tiny-gpt2", _Out(GPT2Model(config), TEXT), TEXT, "embedding")
    assert REGISTRY["distill"].params(workload) == ()
    modes = _params(workload, "prune")["mode"].choices
    assert "structured" not in modes and {"unstructured", "nm_2_4"} <= set(modes)
    stack, channels = search_notes(workload)
    assert "looks like a transformer" in stack
    assert channels.startswith("distill, prune.mode structured: not searched: torch-pruning")
    assert "a pruned copy fails" in channels


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
