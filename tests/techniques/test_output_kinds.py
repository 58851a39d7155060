"""Outputs of any kind: logits, probabilities or an embedding, declared or detected, each
distilled with the loss that fits it (issue 17, item 2).

The user's case: a residual CNN with BatchNorm that ends in logits, wired in as the README's
own-model workload (no `output_kind`), trained here briefly on scikit-learn's digits.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autoaccel.techniques import REGISTRY
from autoaccel.techniques._training import distillation_loss
from autoaccel.techniques.applicability import not_applicable, output_kind_note, search_notes
from autoaccel.techniques.distill import Distill
from autoaccel.workloads.base import Workload, classify_outputs
from autoaccel.workloads.digits import DigitsCNN

README = Path(__file__).parents[2] / "README.md"
STUDENT = {"mode": "student", "width": 0.5, "steps": 300, "temperature": 4.0, "alpha": 0.7}


class ResidualCNN(nn.Module):
    """conv-BN stem, one residual block of two conv-BN layers, then a dense head to logits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
        )
        self.head = nn.Sequential(
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 32), nn.ReLU(), nn.Linear(32, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(torch.relu(h + self.block(h)))


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


class UserDigits(Workload):
    """A user's workload as the README wires one: no `output_kind`, training data offered."""

    name, metric = "residual-digits", "accuracy"
    metric_description = "top-1 accuracy on the digits validation split"
    input_names, dynamic_axes = ("x",), {"x": {0: "batch"}}
    train_lr = 1e-3

    def __init__(self, net: nn.Module, data: tuple) -> None:
        self.net = net.eval()
        self.x_train, self.x_val, self.y_train, self.y_val = data

    def torch_model(self) -> nn.Module:
        return self.net

    def identity(self) -> dict:
        return {"weights": "trained in the test"}

    def latency_inputs(self, batch_size: int = 1) -> dict:
        return {"x": self.x_val[:batch_size]}

    def calibration_inputs(self) -> list:
        return [{"x": self.x_train[:64]}]

    def training_batches(self) -> list:
        return self.batches_of({"x": self.x_train}, self.y_train)

    def evaluate(self, predict) -> dict[str, float]:
        return {"accuracy": float((predict({"x": self.x_val}).argmax(1) == self.y_val).mean())}


class NoTrainingData(UserDigits):
    training_batches = Workload.training_batches


def _accuracy(model: nn.Module, workload: Workload) -> float:
    def predict(inputs: dict) -> np.ndarray:
        with torch.no_grad():
            return model.eval()(torch.from_numpy(inputs["x"])).numpy()

    return workload.evaluate(predict)["accuracy"]


@pytest.fixture(scope="module")
def data() -> tuple:
    return _digits()


@pytest.fixture(scope="module")
def teacher(data: tuple) -> nn.Module:
    return train_teacher(data)


def train_teacher(data: tuple) -> nn.Module:
    """The residual CNN from random init, 8 epochs of cross-entropy on the train split."""
    torch.manual_seed(0)
    net = ResidualCNN()
    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[2]).long()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as tests/conftest.py's one_torch_thread: a busy 2-core machine
    try:
        net.train()
        for _ in range(8):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 64):
                idx = order[i : i + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


@pytest.fixture
def one_training_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """`train` picks its threads by the machine's load: one here, fast and repeatable."""
    monkeypatch.setattr("autoaccel.machine.training_threads", lambda *a, **k: 1)


def _distilled_accuracy(workload: Workload) -> float:
    teacher = workload.torch_model()
    student = Distill().structure(teacher, STUDENT, workload)
    Distill().train(student, teacher, STUDENT, workload)
    return _accuracy(student, workload)


def test_detection_says_logits_for_a_residual_cnn_without_output_kind(teacher, data):
    workload = UserDigits(teacher, data)
    assert workload.output_kind == "logits"
    assert "integer class labels" in workload.output_kind_reason()
    note = output_kind_note(workload)
    assert note is not None and "outputs are logits" in note and "Hinton KD on the logits" in note
    assert not_applicable(workload) == []


def test_detected_logits_offer_distillation_with_temperature_and_prune_fine_tuning(teacher, data):
    workload = UserDigits(teacher, data)
    assert {"mode", "width", "steps", "temperature", "alpha"} <= {
        p.name for p in REGISTRY["distill"].params(workload)
    }
    assert "finetune_steps" in {p.name for p in REGISTRY["prune"].params(workload)}


def test_student_of_a_logits_teacher_keeps_accuracy_within_three_points(
    teacher, data, one_training_thread
):
    workload = UserDigits(teacher, data)
    teacher_accuracy = _accuracy(teacher, workload)
    assert teacher_accuracy > 0.9
    assert _distilled_accuracy(workload) >= teacher_accuracy - 0.03


def test_student_trained_as_if_logits_were_probabilities_collapses(
    teacher, data, one_training_thread
):
    """The bug this file guards against: log(clamp(logits)) turns every negative logit into
    the same value, so the soft targets say almost nothing and the student is ruined."""
    workload = UserDigits(teacher, data)
    workload.output_kind = "probabilities"  # a wrong declaration: the old, only, classifier path
    assert _distilled_accuracy(workload) < _accuracy(teacher, workload) - 0.1


def test_rule_says_probabilities_for_softmax_rows_with_or_without_labels():
    probs = torch.softmax(torch.randn(16, 10, generator=torch.Generator().manual_seed(0)), 1)
    labels = np.arange(16) % 10
    assert classify_outputs(probs.numpy(), labels)[0] == "probabilities"
    assert classify_outputs(probs.numpy(), None)[0] == "probabilities"


def test_rule_says_logits_for_two_d_outputs_with_integer_labels():
    logits = np.random.default_rng(0).normal(size=(16, 10)).astype(np.float32)
    kind, evidence = classify_outputs(logits, np.arange(16) % 10)
    assert kind == "logits" and "integer class labels" in evidence
    relu_logits = np.abs(logits)  # non-negative, but rows do not sum to 1
    assert classify_outputs(relu_logits, np.arange(16) % 10)[0] == "logits"


def test_rule_says_embedding_without_labels():
    vectors = np.random.default_rng(0).normal(size=(16, 384))
    assert classify_outputs(vectors, None)[0] == "embedding"
    # one column is a score, not a vector: a cosine of scalars is only their sign agreement
    assert classify_outputs(np.abs(vectors[:, :1]), None)[0] == "scores"


def test_rule_places_nothing_when_labels_are_not_class_indices():
    logits = np.random.default_rng(0).normal(size=(16, 10))
    assert classify_outputs(logits, np.linspace(0, 1, 16))[0] is None  # regression targets
    assert classify_outputs(logits, np.arange(16))[0] is None  # 10..15 are not classes
    assert classify_outputs(logits[:, None, :], np.arange(16) % 10)[0] is None  # 3-D


def test_declared_kind_is_kept_and_not_stated(tmp_path):
    digits_cnn = DigitsCNN(tmp_path)  # untrained: a declared kind never runs the model
    assert digits_cnn.output_kind == "probabilities"
    assert digits_cnn.output_kind_reason() == "declared by the workload"
    assert output_kind_note(digits_cnn) is None
    assert digits_cnn._model is None


def test_classifier_loss_without_labels_uses_the_soft_targets_alone():
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    loss = distillation_loss("logits", {"temperature": 2.0, "alpha": 0.7})
    assert loss(logits, logits, None).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(logits, logits, torch.arange(8)).item() > 0  # the hard-label part
    with pytest.raises(ValueError, match="output_kind None"):
        distillation_loss(None, {})


def test_workload_without_training_data_says_why_distillation_is_left_out(teacher, data):
    workload = NoTrainingData(teacher, data)
    assert workload.output_kind is None
    assert REGISTRY["distill"].params(workload) == ()
    prune = {p.name for p in REGISTRY["prune"].params(workload)}
    assert "mode" in prune and "finetune_steps" not in prune  # pruning needs no data
    lines = not_applicable(workload)
    assert [line.split(":")[0] for line in lines] == ["distill", "prune.finetune_steps"]
    assert all("offers no training data" in line for line in lines)


def test_onnx_workload_says_torch_techniques_do_not_apply(onnx_only):
    lines = search_notes(onnx_only)
    assert lines[0].startswith("distill, prune: not searched") and "ONNX model" in lines[0]
    assert "torch_compile" in lines[1]


def test_readme_workload_gets_every_technique_with_detected_logits(tmp_path, monkeypatch):
    """The README's `MyWorkload`, run as written on files made here (a logits MLP)."""
    section = README.read_text().split("**Your own torch model**", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    x, y = np.random.default_rng(0).normal(size=(200, 64)), np.arange(200) % 10
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), tmp_path / "net.pt")
    np.savez(tmp_path / "data.npz", x_train=x[:150], y_train=y[:150], x_val=x[150:], y_val=y[150:])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    workload = namespace["factory"]()
    assert workload.output_kind == "logits"
    assert search_notes(workload) == [output_kind_note(workload)]
    for name in ("distill", "prune"):
        assert REGISTRY[name].params(workload), name


def residual_digits() -> UserDigits:
    """`module:factory` for a search on the user's residual CNN (trained here, a few s)."""
    data = _digits()
    return UserDigits(train_teacher(data), data)


def test_a_search_on_the_residual_cnn_finds_a_distilled_student_within_the_limit(
    tmp_path, one_training_thread
):
    """Issue 17's acceptance for the CNN: the search's distilled student (three quarters of
    the channels, dependency-aware, the logits loss) keeps accuracy within the default limit."""
    import json

    import autoaccel

    space = tmp_path / "space.yaml"
    space.write_text(
        "version: 1\ntechniques:\n  runtime:\n    backend: [onnxruntime]\n  distill:\n"
        "    mode: [student]\n    width: [0.75]\n    steps: [300]\n"
    )
    result = autoaccel.search(
        "test_output_kinds:residual_digits",
        space=str(space),
        budget=1,
        runs_dir=tmp_path / "runs",
        measure_seconds=0.02,
        targets=["cpu-local"],
        isolate=False,
    )
    rec = json.loads((result.out_dir / "recommendation.json").read_text())
    (point,) = [p for p in rec["frontier"] if p["trial"] == 0]
    assert point["recipe"]["distill.width"] == 0.75
    assert rec["baseline"]["accuracy"] > 0.9
    assert point["accuracy"] >= rec["baseline"]["accuracy"] - 0.01  # the default limit
