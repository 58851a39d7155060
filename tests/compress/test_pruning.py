"""Pruning on real modules: sparsity reached and kept through training, 2:4 groups, structured
removal that shrinks the exported ONNX graph, and head / FFN removal on a tiny random BERT."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper, shape_inference
from torch import nn
from transformers import BertConfig, BertModel

from autoaccel.compress import pruning
from autoaccel.workloads.digits import DigitsCNN, SeedMLP
from autoaccel.workloads.minilm import SentenceEncoder


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsCNN:
    return DigitsCNN(tmp_path_factory.mktemp("cache"))


def _cnn(digits: DigitsCNN) -> nn.Module:
    torch.manual_seed(0)
    return digits._build().eval()


def _mlp(digits: DigitsCNN) -> nn.Module:
    torch.manual_seed(0)
    return SeedMLP(digits.cache_dir)._build().eval()


def _images(digits: DigitsCNN, n: int) -> torch.Tensor:
    return torch.from_numpy(digits.x_train[:n])


def _finetune(model: nn.Module, x: torch.Tensor, y: np.ndarray, steps: int = 5) -> None:
    """A few Adam steps with a large learning rate: every weight the optimiser may move moves."""
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    target = torch.from_numpy(y[: len(x)]).long()
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.nll_loss(torch.log(model(x) + 1e-9), target).backward()
        opt.step()
    model.eval()


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


@pytest.mark.parametrize("scope", ["local", "global"])
def test_unstructured_reaches_requested_sparsity_and_keeps_zeros_when_finetuned(
    digits: DigitsCNN, scope: str
) -> None:
    model = _cnn(digits)
    pruning.unstructured(model, 0.6, scope)
    assert pruning.sparsity(model) == pytest.approx(0.6, abs=0.02)
    if scope == "local":  # every layer, not just the total
        assert all(
            float((w == 0).float().mean()) == pytest.approx(0.6, abs=0.02) for w in _weights(model)
        )
    zeros = [(w == 0).clone() for w in _weights(model)]

    _finetune(model, _images(digits, 64), digits.y_train)

    assert all(bool((w[z] == 0).all()) for w, z in zip(_weights(model), zeros, strict=True))
    assert pruning.sparsity(model) == pytest.approx(0.6, abs=0.02)


def test_make_permanent_removes_reparametrisation_and_keeps_zeros(digits: DigitsCNN) -> None:
    model = _cnn(digits)
    pruning.unstructured(model, 0.5, "global")
    assert any(name.endswith("weight_orig") for name, _ in model.named_parameters())
    before = pruning.sparsity(model)

    pruning.make_permanent(model)

    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not any(n.endswith(("weight_orig", "weight_mask")) for n in names)
    assert all(isinstance(w, nn.Parameter) for w in _weights(model))
    assert pruning.sparsity(model) == before


def test_unstructured_rejects_unknown_scope(digits: DigitsCNN) -> None:
    with pytest.raises(ValueError, match="scope"):
        pruning.unstructured(_cnn(digits), 0.5, "layerwise")


def _numpy_groups(weight: torch.Tensor, m: int) -> np.ndarray:
    """Groups of m along the input axis, computed independently of the library's reshapes."""
    w = weight.detach().numpy()
    if w.ndim == 4:  # (out, in, kh, kw): input channels innermost at each kernel position
        w = np.transpose(w, (0, 2, 3, 1))
    return w.reshape(w.shape[0], -1, w.shape[-1] // m, m)


def test_two_four_sparsity_leaves_two_of_every_four_inputs_also_after_finetuning(
    digits: DigitsCNN,
) -> None:
    model = _cnn(digits)
    skipped = pruning.n_m_sparsity(model, 2, 4)
    assert skipped == ["0"]  # the first conv has a single input channel: nothing to group
    pruned = _weights(model)[1:]

    for w in pruned:
        assert pruning.check_n_m(w, 2, 4)
        assert (np.count_nonzero(_numpy_groups(w, 4), axis=-1) == 2).all()  # random: exactly 2
    _finetune(model, _images(digits, 64), digits.y_train)
    for w in pruned:
        assert pruning.check_n_m(w, 2, 4)
        assert (np.count_nonzero(_numpy_groups(w, 4), axis=-1) <= 2).all()

    pruning.make_permanent(model)
    assert all(pruning.check_n_m(w, 2, 4) for w in _weights(model)[1:])


def test_check_n_m_rejects_a_dense_weight() -> None:
    assert not pruning.check_n_m(torch.ones(3, 8), 2, 4)
    assert pruning.check_n_m(torch.tensor([[1.0, 0, 0, 2, 0, 0, 3, 4]]), 2, 4)


def _export(model: nn.Module, args: tuple, names: list[str], axes: dict, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=["out"],
            dynamic_axes={**axes, "out": {0: "batch"}},
        )
    return path


def _weight_elements_and_macs(path: Path) -> tuple[int, int]:
    """Initializer elements, and multiply-accumulates per sample of every Conv/Gemm/MatMul
    (a Conv's weight size times its output's spatial size; a Gemm's weight size)."""
    model = shape_inference.infer_shapes(onnx.load(str(path)))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.value_info, *model.graph.output)
    }
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            macs += inits[node.input[1]].size * int(np.prod(shapes[node.output[0]][2:]))
        elif node.op_type in ("Gemm", "MatMul"):
            macs += sum(inits[i].size for i in node.input[:2] if i in inits)
    return sum(a.size for a in inits.values()), macs


@pytest.mark.parametrize("build", [_cnn, _mlp], ids=["digits-cnn", "seed-mlp"])
def test_structured_shrinks_model_and_onnx_graph_keeping_output_shape(
    digits: DigitsCNN, build, tmp_path: Path
) -> None:
    model = build(digits)
    x = _images(digits, 5) if build is _cnn else _images(digits, 5).reshape(5, 64)
    before_params = pruning.count_params(model)
    dense = _export(model, (x[:1],), ["x"], {"x": {0: "batch"}}, tmp_path / "dense.onnx")

    pruning.structured(model, 0.5, (x[:1],))

    assert pruning.count_params(model) < 0.6 * before_params
    assert _weights(model)[-1].shape[0] == 10  # the classifier keeps every class
    with torch.no_grad():
        out = model(x).numpy()
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)
    small = _export(model, (x[:1],), ["x"], {"x": {0: "batch"}}, tmp_path / "small.onnx")
    dense_elems, dense_macs = _weight_elements_and_macs(dense)
    small_elems, small_macs = _weight_elements_and_macs(small)
    assert small_elems < 0.6 * dense_elems
    assert small_macs < 0.6 * dense_macs
    session = ort.InferenceSession(str(small), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], out, atol=1e-5)


def test_structured_respects_ignored_layers(digits: DigitsCNN) -> None:
    model = _cnn(digits)
    pruning.structured(model, 0.5, (_images(digits, 1),), ignored_layers=[model[0]])
    assert model[0].out_channels == 16  # and so the next conv keeps its 16 inputs
    assert model[2].in_channels == 16
    assert model[2].out_channels == 16


class _HeadFirst(nn.Module):
    """A residual CNN whose classifier is registered before the layers that feed it."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(16, 10)
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.body = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        return self.classifier(torch.relu(h + self.body(h)).mean((2, 3)))


def test_structured_keeps_the_classes_of_the_layer_that_runs_last(digits: DigitsCNN) -> None:
    torch.manual_seed(0)
    model = _HeadFirst().eval()
    x = _images(digits, 3)
    pruning.structured(model, 0.5, (x[:1],))
    assert model.classifier.out_features == 10
    assert model.classifier.in_features == 8  # the residual sum's channels went together
    assert [model.stem[0].out_channels, model.body[3].out_channels] == [8, 8]
    with torch.no_grad():
        assert model(x).shape == (3, 10)


def _tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertModel(config).eval()


def _tokens(batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(batch * 100 + length)
    ids = torch.randint(1, 100, (batch, length), generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, -2:] = 0  # one padded row, so the mask matters
    return ids, mask


def test_transformer_with_zero_fractions_changes_nothing() -> None:
    bert = _tiny_bert()
    ids, mask = _tokens(2, 9)
    with torch.no_grad():
        before = bert(input_ids=ids, attention_mask=mask)[0]
        pruning.transformer(bert, heads_fraction=0.0, ffn_fraction=0.0)
        after = bert(input_ids=ids, attention_mask=mask)[0]
    assert torch.equal(before, after)
    assert bert.encoder.layer[0].attention.self.query.out_features == 32


def test_transformer_halves_heads_and_ffn_and_exports_to_onnx(tmp_path: Path) -> None:
    encoder = SentenceEncoder(_tiny_bert()).eval()  # the MiniLM wrapper, holding `.bert`
    params = pruning.count_params(encoder)

    pruning.prune_transformer(encoder, heads_fraction=0.5, ffn_fraction=0.5)

    assert pruning.count_params(encoder) < params
    for layer in encoder.bert.encoder.layer:
        attn = layer.attention.self
        assert (attn.num_attention_heads, attn.all_head_size) == (2, 16)
        assert [attn.query.out_features, attn.key.out_features, attn.value.out_features] == [
            16
        ] * 3
        assert layer.attention.output.dense.in_features == 16
        assert layer.intermediate.dense.out_features == 32
        assert layer.output.dense.in_features == 32
    names = ["input_ids", "attention_mask"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    path = _export(encoder, _tokens(2, 7), names, axes, tmp_path / "bert.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, mask = _tokens(3, 11)  # another batch size and length than at export
    with torch.no_grad():
        expected = encoder(ids, mask).numpy()
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert got.shape == (3, 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_transformer_removes_the_weakest_units_exactly() -> None:
    """Removing a head or FFN neuron equals zeroing its columns in the following projection."""
    bert = _tiny_bert()
    with torch.no_grad():
        for layer in bert.encoder.layer:  # head 2 becomes the weakest by far
            for lin in (layer.attention.self.query, layer.attention.self.key):
                lin.weight[16:24] *= 0.01
            layer.attention.self.value.weight[16:24] *= 0.01
            layer.attention.output.dense.weight[:, 16:24] *= 0.01
    reference = copy.deepcopy(bert)
    weakest = []
    with torch.no_grad():
        for layer in reference.encoder.layer:
            up = layer.intermediate.dense.weight.numpy()
            down = layer.output.dense.weight.numpy()
            score = np.abs(up).sum(1) + np.abs(down).sum(0)
            drop = np.argsort(score)[:16]  # 25 % of 64
            weakest.append(drop)
            layer.output.dense.weight[:, drop] = 0
            layer.attention.output.dense.weight[:, 16:24] = 0

    pruning.transformer(bert, heads_fraction=0.25, ffn_fraction=0.25)

    ids, mask = _tokens(2, 9)
    with torch.no_grad():
        got = bert(input_ids=ids, attention_mask=mask)[0]
        expected = reference(input_ids=ids, attention_mask=mask)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for layer, ref, drop in zip(bert.encoder.layer, reference.encoder.layer, weakest, strict=True):
        q = ref.attention.self.query.weight
        torch.testing.assert_close(layer.attention.self.query.weight, torch.cat([q[:16], q[24:]]))
        kept = np.setdiff1d(np.arange(64), drop)
        torch.testing.assert_close(
            layer.intermediate.dense.weight, ref.intermediate.dense.weight[kept]
        )


def test_transformer_keeps_at_least_one_head() -> None:
    bert = _tiny_bert()
    pruning.transformer(bert, heads_fraction=0.9, ffn_fraction=0.0)
    assert all(layer.attention.self.num_attention_heads == 1 for layer in bert.encoder.layer)
    ids, mask = _tokens(1, 5)
    with torch.no_grad():
        assert bert(input_ids=ids, attention_mask=mask)[0].shape == (1, 5, 32)
