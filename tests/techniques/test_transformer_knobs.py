"""Distill and prune on any transformer the layout reader understands (issue 17, item 3):
tiny Hugging Face classifiers and encoders built from configs (random weights, nothing
downloaded) get layer students and head pruning through the real build, exported to ONNX
and run there; what does not apply is said once, with the reason."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertModel,
    ViTConfig,
    ViTForImageClassification,
)

from autoaccel.builder import build_candidate
from autoaccel.evaluate import evaluate_candidate
from autoaccel.techniques import REGISTRY, search_notes
from autoaccel.workloads.base import Workload

ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}
COMPRESSED = {
    "distill.mode": "student",
    "distill.layers": 2,
    "distill.width": 0.5,
    "distill.steps": 4,
    "prune.mode": "structured",
    "prune.amount": 0.25,
    "prune.heads": 0.5,
}
TEXT = ("input_ids", "attention_mask")


class _Out(nn.Module):
    """A Hugging Face model called with keyword inputs, returning one tensor."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, args, strict=True)))
        return out.logits if hasattr(out, "logits") else out.last_hidden_state[:, 0]


def _bert() -> nn.Module:
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    return _Out(BertForSequenceClassification(config), TEXT)


def _vit() -> nn.Module:
    config = ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=5,
    )
    return _Out(ViTForImageClassification(config), ("pixel_values",))


def _distilbert() -> nn.Module:
    config = DistilBertConfig(
        vocab_size=100, dim=32, n_layers=3, n_heads=4, hidden_dim=64, max_position_embeddings=64
    )
    return _Out(DistilBertModel(config), TEXT)


class TinyModel(Workload):
    """A random-weight model on random inputs, judged by agreement with its own labels."""

    metric, metric_description = "accuracy", "agreement with the teacher's classes"
    train_lr = 1e-3

    def __init__(self, name: str, net: nn.Module, names: tuple[str, ...], kind: str) -> None:
        torch.manual_seed(0)
        self.name, self.net, self.input_names = name, net.eval(), names
        self.output_kind = kind
        self.dynamic_axes = {n: {0: "batch"} for n in names}
        gen = np.random.default_rng(0)
        if names == ("pixel_values",):
            self.x = {"pixel_values": gen.normal(size=(48, 3, 16, 16)).astype(np.float32)}
        else:
            self.x = {
                "input_ids": gen.integers(3, 100, size=(48, 8)),
                "attention_mask": np.ones((48, 8), dtype=np.int64),
            }
        with torch.no_grad():
            out = self.net(*[torch.from_numpy(self.x[n]) for n in names]).numpy()
        self.labels = out.argmax(1) if kind == "logits" else None

    def torch_model(self) -> nn.Module:
        return self.net

    def identity(self) -> dict:
        return {"arch": self.name, "v": 1}

    def latency_inputs(self, batch_size: int = 1) -> dict:
        return {k: np.ascontiguousarray(v[:batch_size]) for k, v in self.x.items()}

    def calibration_inputs(self) -> list:
        return [self.latency_inputs(8)]

    def training_batches(self) -> list:
        return self.batches_of({k: v[:32] for k, v in self.x.items()}, self._train_labels(), 16)

    def _train_labels(self) -> np.ndarray | None:
        return None if self.labels is None else self.labels[:32]

    def evaluate(self, predict) -> dict[str, float]:
        out = predict({k: v[32:] for k, v in self.x.items()})
        if self.labels is None:
            return {"accuracy": float(np.isfinite(out).mean())}
        return {"accuracy": float((out.argmax(1) == self.labels[32:]).mean())}


WORKLOADS = {
    "bert": lambda: TinyModel("tiny-bert", _bert(), TEXT, "logits"),
    "vit": lambda: TinyModel("tiny-vit", _vit(), ("pixel_values",), "logits"),
    "distilbert": lambda: TinyModel("tiny-distilbert", _distilbert(), TEXT, "embedding"),
}
LAYERS = {"bert": 4, "vit": 3, "distilbert": 3}


@pytest.fixture
def one_training_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autoaccel.machine.training_threads", lambda *a, **k: 1)


@pytest.mark.parametrize("arch", list(WORKLOADS))
def test_layer_and_head_knobs_are_offered_from_the_models_layout(arch):
    workload = WORKLOADS[arch]()
    layers = {p.name: p for p in REGISTRY["distill"].params(workload)}["layers"]
    assert layers.choices == tuple(range(1, LAYERS[arch] + 1))
    assert "heads" in {p.name for p in REGISTRY["prune"].params(workload)}
    assert search_notes(workload) == []  # everything applies: nothing to say


@pytest.mark.parametrize("arch", list(WORKLOADS))
def test_student_pruned_by_heads_builds_and_runs_in_onnx_runtime_like_torch(
    arch, tmp_path, one_training_thread
):
    workload = WORKLOADS[arch]()
    dense = build_candidate(ORT, workload, tmp_path)
    small = build_candidate({**ORT, **COMPRESSED}, workload, tmp_path)
    in_torch = build_candidate({**COMPRESSED, "runtime.backend": "torch"}, workload, tmp_path)
    assert small.train_seconds > 0 and in_torch.train_seconds == 0.0  # one student, cached

    graph = onnx.load(str(small.onnx_path)).graph
    softmaxes = [n for n in graph.node if n.op_type == "Softmax"]
    assert len(softmaxes) == 2  # one attention per kept layer
    weights = {t.name: t for t in graph.initializer}
    dense_graph = onnx.load(str(dense.onnx_path)).graph
    assert sum(np.prod(t.dims) for t in weights.values()) < 0.7 * sum(
        np.prod(t.dims) for t in dense_graph.initializer
    )
    onnx_quality = evaluate_candidate(small, workload, time_it=False).quality["accuracy"]
    torch_quality = evaluate_candidate(in_torch, workload, time_it=False).quality["accuracy"]
    assert onnx_quality == pytest.approx(torch_quality, abs=1e-9)

    import onnxruntime as ort

    session = ort.InferenceSession(str(small.onnx_path), providers=["CPUExecutionProvider"])
    inputs = workload.latency_inputs(5)
    with torch.no_grad():
        args = [torch.from_numpy(inputs[n]) for n in workload.input_names]
        expected = in_torch.torch_model(*args)
    got = session.run(None, inputs)[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def _torch_encoder_classifier() -> nn.Module:
    class EncoderClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
            self.head = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(x).mean(1))

    torch.manual_seed(0)
    return EncoderClassifier()


class _Vectors(TinyModel):
    def __init__(self, name: str, net: nn.Module) -> None:
        torch.manual_seed(0)
        self.name, self.net, self.input_names = name, net.eval(), ("x",)
        self.output_kind, self.dynamic_axes = "logits", {"x": {0: "batch"}}
        self.x = {"x": np.random.default_rng(0).normal(size=(48, 5, 16)).astype(np.float32)}
        with torch.no_grad():
            self.labels = self.net(torch.from_numpy(self.x["x"])).numpy().argmax(1)


def test_torch_encoder_gets_layer_students_and_says_once_why_heads_are_not_searched():
    workload = _Vectors("torch-encoder", _torch_encoder_classifier())
    assert "layers" in {p.name for p in REGISTRY["distill"].params(workload)}
    assert "heads" not in {p.name for p in REGISTRY["prune"].params(workload)}
    (line,) = search_notes(workload)
    assert line.startswith("prune.heads: not searched") and "MultiheadAttention" in line
    student = REGISTRY["distill"].structure(
        workload.torch_model(), {"mode": "student", "layers": 2, "width": 0.5}, workload
    )
    assert (
        len(student.encoder.layers) == 2 and student.encoder.layers[0].linear1.out_features == 16
    )


class _FusedAttention(nn.Module):
    """timm-style attention: one Linear makes query, key and value together."""

    def __init__(self, width: int, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = (
            heads,
            nn.Linear(width, 3 * width),
            nn.Linear(width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1), -1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


def test_transformer_whose_stack_cannot_be_read_is_told_once_with_what_a_probe_found():
    """No layout, and torch-pruning's channel removal breaks the fused attention's reshape
    (tried once on a copy): structured pruning and students are left out, each said once."""
    torch.manual_seed(0)
    net = nn.Sequential(_FusedAttention(16), nn.Flatten(), nn.Linear(5 * 16, 4))
    workload = _Vectors("fused-attention", net)
    assert workload.transformer_layout() is None
    assert REGISTRY["distill"].params(workload) == ()
    prune = {p.name: p for p in REGISTRY["prune"].params(workload)}
    assert "heads" not in prune and "structured" not in prune["mode"].choices
    assert "nm_2_4" in prune["mode"].choices
    stack, channels = search_notes(workload)
    assert stack.startswith("distill.layers, prune.heads: not searched")
    assert "looks like a transformer" in stack and "no list of encoder layers" in stack
    assert channels.startswith("distill, prune.mode structured: not searched: torch-pruning")
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in channels


def test_onnx_optimizer_hint_no_longer_claims_a_transformer(transformer_like, seed_mlp):
    """`onnx_model_type` is ONNX Runtime's fusion hint, not a layout: an MLP claiming "bert"
    gets no layer or head knobs, and nothing is said for a plain MLP."""
    for workload in (transformer_like, seed_mlp):
        assert "heads" not in {p.name for p in REGISTRY["prune"].params(workload)}
        assert "layers" not in {p.name for p in REGISTRY["distill"].params(workload)}
    assert search_notes(seed_mlp) == []


def test_a_student_trains_with_the_teachers_embedding_tables_kept(one_training_thread):
    from autoaccel.compress.distillation import default_layers, layer_student
    from autoaccel.techniques._training import distill_into

    workload = WORKLOADS["bert"]()
    teacher = workload.torch_model()
    student = layer_student(teacher, default_layers(4, 2))
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    assert distill_into(student, teacher, workload, 6, {}) > 0
    after = dict(student.named_parameters())
    tables = [n for n in before if "embeddings" in n and n.endswith("embeddings.weight")]
    assert len(tables) == 3  # word, position, token type
    assert all(torch.equal(before[n], after[n]) for n in tables)  # kept as the teacher's
    assert all(after[n].requires_grad for n in tables)  # and trainable again after
    changed = [n for n in before if "encoder" in n and not torch.equal(before[n], after[n])]
    assert changed  # the layers did train


def _session_ops(candidate, path) -> set[str]:
    """The op types of the graph ONNX Runtime runs for `candidate` (its own session options)."""
    import onnxruntime as ort

    from autoaccel.evaluate.runners import ort_session_options

    opts = ort_session_options(candidate)
    opts.optimized_model_filepath = str(path)
    ort.InferenceSession(str(candidate.onnx_path), opts, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_skip_layer_norm_false_keeps_residual_add_and_layer_norm_apart(tmp_path):
    from autoaccel.evaluate.runners import open_runner
    from autoaccel.tracking_views import session_options

    workload = WORKLOADS["bert"]()
    workload.onnx_model_type = "bert"  # offers the offline fusions
    recipe = {**ORT, "quantize.mode": "none", "compile.fusion": True}
    recipe["compile.graph_level"] = "extended"
    fused = build_candidate(recipe, workload, tmp_path)
    apart = build_candidate({**recipe, "compile.skip_layer_norm": False}, workload, tmp_path)
    assert fused.onnx_path != apart.onnx_path  # the offline fusion honours it too
    assert "SkipLayerNormalization" in _session_ops(fused, tmp_path / "fused.onnx")
    ran = _session_ops(apart, tmp_path / "apart.onnx")
    assert "SkipLayerNormalization" not in ran and "LayerNormalization" in ran
    # unfused offline, the session alone would fuse them: told not to
    plain = build_candidate({**ORT, "quantize.mode": "none"}, workload, tmp_path)
    unfused = build_candidate({**ORT, "compile.skip_layer_norm": False}, workload, tmp_path)
    assert plain.onnx_path == unfused.onnx_path  # default fusion: no model change
    assert unfused.session["skip_layer_norm"] is False
    inputs = workload.latency_inputs(4)
    np.testing.assert_allclose(
        open_runner(apart, workload.input_names)(inputs),
        open_runner(fused, workload.input_names)(inputs),
        atol=1e-5,
    )
    # the served model runs as it was measured
    entry = {"optimization.disable_specified_optimizers": "SkipLayerNormFusion"}
    assert session_options(apart)["extra_session_config"] == entry
    assert "extra_session_config" not in session_options(fused)
    assert "Add + LayerNorm unfused" in REGISTRY["compile"].describe(
        {"fusion": True, "graph_level": "extended", "skip_layer_norm": False}
    )
