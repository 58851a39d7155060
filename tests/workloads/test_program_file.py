"""TorchScript and torch.export program files as `--model`, with `.npz` data."""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from autoaccel.builder import build_candidate
from autoaccel.errors import UserError
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.techniques import REGISTRY
from autoaccel.techniques.applicability import search_notes
from autoaccel.workloads import load_workload
from autoaccel.workloads.program_file import ProgramFileWorkload


class MaskedMean(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        self.out = torch.nn.Linear(16, 3)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        return self.out((self.embed(input_ids) * mask).sum(1) / (mask.sum(1) + 1e-6))


def _program(folder, kind: str):
    """(program file, data.npz): a two-input classifier saved by the safe savers; labels are
    its own top class."""
    torch.manual_seed(0)
    net = MaskedMean().eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(40, 6))
    mask = (np.arange(6) < rng.integers(2, 7, size=(40, 1))).astype(np.int64)
    example = (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2]))
    with torch.no_grad():
        labels = net(torch.from_numpy(ids), torch.from_numpy(mask)).argmax(1).numpy()
    path = _save(net, example, folder, kind)
    np.savez(folder / "data.npz", input_ids=ids, attention_mask=mask, y_val=labels)
    return path, folder / "data.npz"


def _save(net, example: tuple, folder, kind: str):
    """`net` saved by the safe saver of `kind`, batch-dynamic; returns the file."""
    if kind == "torchscript":
        path = folder / "net.pt"
        torch.jit.save(torch.jit.trace(net, example), path)
    else:
        path = folder / "net.pt2"
        batch = torch.export.Dim("batch")
        torch.export.save(
            torch.export.export(net, example, dynamic_shapes=({0: batch},) * 2), path
        )
    return path


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_program_file_is_a_torch_workload_judged_and_exported(tmp_path, kind):
    model, data = _program(tmp_path, kind)
    workload = load_workload(None, tmp_path / "cache", model, data)
    assert isinstance(workload, ProgramFileWorkload) and workload.kind == kind
    assert workload.input_names == ("input_ids", "attention_mask")
    assert workload.torch_model_available() and workload.metric == "accuracy"
    assert "PyTorch eager fp32" in workload.baseline_description()
    for backend in ("torch", "onnxruntime"):
        candidate = build_candidate({"runtime.backend": backend}, workload, tmp_path / "c")
        evaluation = evaluate_candidate(candidate, workload, MeasureConfig().scaled(0.02))
        assert evaluation.quality == {"accuracy": 1.0}
    exported = ort.InferenceSession(str(candidate.onnx_path))
    feed = {n: workload.judge.inputs[n][:5] for n in workload.input_names}
    np.testing.assert_allclose(
        exported.run(None, feed)[0], workload.reference_predict(feed), rtol=1e-4, atol=1e-5
    )


class WithVector(MaskedMean):
    """Returns (class scores, the pooled vector): a model with a second output."""

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / (mask.sum(1) + 1e-6)
        return self.out(pooled), pooled


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_a_program_with_several_outputs_is_judged_on_its_first_and_says_so(tmp_path, kind):
    """A TorchScript program returning a tuple is traced inside a first-output wrapper
    (still batch-dynamic: its own code stays a call), a torch.export one wrapped."""
    torch.manual_seed(0)
    net = WithVector().eval()
    ids = np.random.default_rng(0).integers(0, 50, size=(40, 6))
    mask = np.ones((40, 6), dtype=np.int64)
    example = (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2]))
    with torch.no_grad():
        scores = net(torch.from_numpy(ids), torch.from_numpy(mask))[0].numpy()
    model = _save(net, example, tmp_path, kind)
    np.savez(tmp_path / "data.npz", input_ids=ids, attention_mask=mask, y_val=scores.argmax(1))
    workload = load_workload(None, tmp_path / "cache", model, tmp_path / "data.npz")
    assert any("returns 2 outputs: the first (rows x 3) is the one judged" in n
               for n in workload.notes())  # fmt: skip
    feed = {"input_ids": ids[:7], "attention_mask": mask[:7]}
    np.testing.assert_allclose(workload.reference_predict(feed), scores[:7], rtol=1e-5)
    candidate = build_candidate({"runtime.backend": "onnxruntime"}, workload, tmp_path / "c")
    got = ort.InferenceSession(str(candidate.onnx_path)).run(None, feed)
    assert len(got) == 1
    np.testing.assert_allclose(got[0], scores[:7], rtol=1e-4, atol=1e-5)


def test_torchscript_program_leaves_out_pruning_and_students_with_the_reason(tmp_path):
    workload = ProgramFileWorkload(*_program(tmp_path, "torchscript"))
    assert REGISTRY["distill"].params(workload) == () == REGISTRY["prune"].params(workload)
    lines = search_notes(workload)
    assert any(line.startswith("distill, prune: not searched") for line in lines)
    backends = {p.name: p for p in REGISTRY["runtime"].params(workload)}["backend"].choices
    assert "torch_compile" not in backends
    assert any("torch.compile does not compile TorchScript" in line for line in lines)


def test_export_program_layers_become_modules_that_pruning_works_on(tmp_path):
    """aten.linear / aten.conv2d calls on the program's parameters run as nn.Linear /
    nn.Conv2d holding the same parameters: same outputs, and sparsity acts on them."""
    from autoaccel.compress.pruning import prunable_layers, unstructured

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
    ).eval()  # fmt: skip
    x = np.random.default_rng(0).normal(size=(30, 1, 8, 8)).astype(np.float32)
    path = tmp_path / "cnn.pt2"
    example, batch = (torch.from_numpy(x[:2]),), torch.export.Dim("batch")
    torch.export.save(torch.export.export(net, example, dynamic_shapes=({0: batch},)), path)
    np.savez(tmp_path / "d.npz", x_val=x)  # one input: x_val names it
    workload = ProgramFileWorkload(path, tmp_path / "d.npz")
    assert workload.layers == 2 and workload.torch_edit_reason() == ""
    assert REGISTRY["distill"].params(workload) and REGISTRY["prune"].params(workload)
    assert any("2 linear and convolution calls run as nn.Linear" in n for n in workload.notes())
    model = workload.torch_model()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [type(m).__name__ for m in prunable_layers(model)] == ["Conv2d", "Linear"]
    unstructured(model, 0.5)
    assert all(float((m.weight == 0).float().mean()) == 0.5 for m in prunable_layers(model))


def test_export_program_inputs_not_matching_its_static_dims_name_the_input(tmp_path):
    model, data = _program(tmp_path, "export")
    given = dict(np.load(data))
    given["attention_mask"] = given["attention_mask"][:, :5]
    np.savez(tmp_path / "short.npz", **given)
    with pytest.raises(UserError, match="attention_mask has shape 40x5 but the model takes Nx6"):
        ProgramFileWorkload(model, tmp_path / "short.npz")


def test_torchscript_inputs_it_cannot_run_are_one_line(tmp_path):
    model, data = _program(tmp_path, "torchscript")
    np.savez(tmp_path / "one.npz", input_ids=np.load(data)["input_ids"])
    with pytest.raises(UserError, match="missing array attention_mask"):
        ProgramFileWorkload(model, tmp_path / "one.npz")
    floats = np.random.default_rng(0).normal(size=(20, 6))
    np.savez(tmp_path / "floats.npz", input_ids=floats, attention_mask=floats)
    with pytest.raises(UserError, match="the program does not run on --data's first rows"):
        ProgramFileWorkload(model, tmp_path / "floats.npz")


class _Boom:
    """Unpickling this writes a file: proof that a loader ran pickled code."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_file_is_refused_without_being_unpickled(tmp_path):
    proof = tmp_path / "pickle-ran"
    torch.save({"weights": _Boom(proof)}, tmp_path / "model.pt")
    np.savez(tmp_path / "d.npz", x_val=np.zeros((12, 2), np.float32))
    with pytest.raises(UserError, match="a pickled file .* never loaded"):
        ProgramFileWorkload(tmp_path / "model.pt", tmp_path / "d.npz")
    assert not proof.exists()


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_program_file_searches_from_the_command_line(tmp_path, monkeypatch, capsys, kind):
    from autoaccel import cli

    model, data = _program(tmp_path, kind)
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(
        "version: 1\ntechniques:\n  runtime:\n    backend: [onnxruntime, torch]\n"
        "    intra_op_threads: [1]\n"
    )
    argv = ["autoaccel", "search", "--model", str(model), "--data", str(data), "--space",
            str(space), "--budget", "2", "--measure-seconds", "0.03", "--targets", "cpu-local",
            "--no-isolate"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setitem(cli._DEBUG, "on", True)
    cli.main()
    out = " ".join(capsys.readouterr().out.split())
    assert "judging on 32 rows of data.npz; 8 other rows calibrate and train" in out
    if kind == "torchscript":
        assert "distill, prune: not searched" in out
    else:
        assert "pruning, students and fine-tuning apply" in out
    assert list((tmp_path / "runs").glob("*/recommendation.json"))
