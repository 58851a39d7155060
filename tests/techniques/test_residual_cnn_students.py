"""Width students of a residual CNN (issue 17, item 3): a ResNet-style net with BatchNorm, a
strided block with a 1x1 projection shortcut and global pooling, ending in logits, trained
here briefly on scikit-learn's digits. torch-pruning's dependency graph narrows the layers a
residual sum couples together; the student is built, distilled, exported to ONNX and run
through the real build, and keeps the teacher's accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from autoaccel.builder import build_candidate
from autoaccel.evaluate import evaluate_candidate
from autoaccel.techniques import search_notes
from autoaccel.workloads.base import Workload

ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}


class Residual(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (a 1x1 conv-BN where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.blocks = nn.Sequential(Residual(16, 16, 1), Residual(16, 32, 2))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(torch.relu(self.stem(x)))
        return self.fc(h.mean((2, 3)))


class ResNetDigits(Workload):
    """A user's workload: no output_kind (logits are detected), digits train / val split."""

    name, metric = "resnet-digits", "accuracy"
    metric_description = "top-1 accuracy on the digits validation split"
    input_names, dynamic_axes = ("x",), {"x": {0: "batch"}}
    train_lr = 2e-3

    def __init__(self, net: nn.Module, data: tuple) -> None:
        self.net = net.eval()
        self.x_train, self.x_val, self.y_train, self.y_val = data

    def torch_model(self) -> nn.Module:
        return self.net

    def identity(self) -> dict:
        return {"weights": "trained in the test", "arch": "tiny-resnet"}

    def latency_inputs(self, batch_size: int = 1) -> dict:
        return {"x": np.ascontiguousarray(self.x_val[:batch_size])}

    def calibration_inputs(self) -> list:
        return [{"x": self.x_train[:64]}]

    def training_batches(self) -> list:
        return self.batches_of({"x": self.x_train}, self.y_train)

    def evaluate(self, predict) -> dict[str, float]:
        return {"accuracy": float((predict({"x": self.x_val}).argmax(1) == self.y_val).mean())}


@pytest.fixture(scope="module")
def workload() -> ResNetDigits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    data = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    torch.manual_seed(0)
    net = TinyResNet()
    xt, yt = torch.from_numpy(data[0]), torch.from_numpy(data[2]).long()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine: one thread is fastest and repeatable
    try:
        net.train()
        for _ in range(6):
            order = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 64):
                idx = order[i : i + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return ResNetDigits(net, data)


@pytest.fixture
def one_training_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autoaccel.machine.training_threads", lambda *a, **k: 1)


def _convs(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_residual_cnn_has_no_transformer_layout_and_nothing_is_said(workload):
    assert workload.transformer_layout() is None
    assert "no list of encoder layers" in workload.transformer_layout_reason()
    assert workload.output_kind == "logits"
    assert search_notes(workload) == [search_notes(workload)[0]]  # the output kind alone
    assert "outputs are logits" in search_notes(workload)[0]


@pytest.mark.parametrize("width", [0.5, 0.75])
def test_width_student_of_residual_cnn_keeps_accuracy_within_two_points(
    workload, width, tmp_path, one_training_thread
):
    recipe = {**ORT, "distill.mode": "student", "distill.width": width, "distill.steps": 300}
    teacher = evaluate_candidate(build_candidate(ORT, workload, tmp_path), workload, time_it=False)
    student = build_candidate(recipe, workload, tmp_path)
    in_torch = build_candidate({**recipe, "runtime.backend": "torch"}, workload, tmp_path)

    narrow = in_torch.torch_model
    assert _convs(narrow) == [round(width * c) for c in _convs(workload.torch_model())]
    assert narrow.fc.out_features == 10  # the classes are the model's contract
    import onnxruntime as ort

    session = ort.InferenceSession(str(student.onnx_path), providers=["CPUExecutionProvider"])
    x = workload.x_val[:7]
    with torch.no_grad():
        expected = narrow(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, atol=1e-4)

    accuracy = evaluate_candidate(student, workload, time_it=False).quality["accuracy"]
    assert teacher.quality["accuracy"] > 0.93
    assert accuracy >= teacher.quality["accuracy"] - 0.02
