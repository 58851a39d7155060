"""An ONNX model with several named inputs (ids + mask), its arrays by input name, and a
search of it from the command line."""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pytest

from autoaccel.builder import build_candidate
from autoaccel.errors import UserError
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.workloads.onnx_file import OnnxFileWorkload


def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def two_input_model(folder):
    """(model.onnx, data.npz): a tiny token classifier taking input_ids + attention_mask
    (ids and mask by their ONNX names; labels are the model's own top class)."""
    import torch

    class MaskedMean(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)
            self.hidden, self.out = torch.nn.Linear(16, 16), torch.nn.Linear(16, 3)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).float()
            pooled = (self.embed(input_ids) * mask).sum(1) / (mask.sum(1) + 1e-6)
            return self.out(torch.relu(self.hidden(pooled)))

    torch.manual_seed(0)
    net = MaskedMean().eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(60, 7))
    mask = (np.arange(7) < rng.integers(2, 8, size=(60, 1))).astype(np.int64)
    path = folder / "two.onnx"
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        labels = net(torch.from_numpy(ids), torch.from_numpy(mask)).argmax(1).numpy()
        _quiet_export(net, (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1])), path,
                      {"input_ids": axes, "attention_mask": axes})  # fmt: skip
    np.savez(folder / "two.npz", input_ids=ids, attention_mask=mask, y_val=labels)
    return path, folder / "two.npz"


def _quiet_export(net, args, path, axes) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, args, str(path), input_names=list(axes), output_names=["logits"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip


def test_two_input_onnx_model_takes_arrays_by_input_name(tmp_path):
    model, data = two_input_model(tmp_path)
    workload = OnnxFileWorkload(model, data, convert=False)
    assert workload.input_names == ("input_ids", "attention_mask")
    assert workload.judge.inputs["input_ids"].dtype == np.int64
    candidate = build_candidate({"runtime.backend": "onnxruntime"}, workload, tmp_path / "c")
    evaluation = evaluate_candidate(candidate, workload, MeasureConfig().scaled(0.02))
    assert evaluation.quality == {"accuracy": 1.0}
    assert set(workload.latency_inputs(1)) == {"input_ids", "attention_mask"}


@pytest.mark.parametrize(
    ("arrays", "says"),
    [
        ({"input_ids": np.zeros((60, 7, 2), np.int64)}, "input_ids has shape 60x7x2 but the "
         "model takes NxN"),
        ({"input_ids": np.zeros((60, 7), np.float32)}, "input_ids has dtype float32 but the "
         "model takes int64"),
        ({"attention_mask": np.ones((59, 7), np.int64)}, "input_ids has 60 rows, "
         "attention_mask has 59 rows"),
    ],
)  # fmt: skip
def test_two_input_data_not_matching_an_input_names_it_and_both_shapes(tmp_path, arrays, says):
    model, data = two_input_model(tmp_path)
    given = dict(np.load(data))
    given.update(arrays)
    with pytest.raises(UserError, match=re.escape(says)):
        OnnxFileWorkload(model, _npz(tmp_path, "bad.npz", **given), convert=False)


def test_two_input_onnx_model_searches_from_the_command_line(tmp_path, monkeypatch, capsys):
    """`autoaccel search --model two.onnx --data two.npz`, end to end: a tiny space, two
    trials, the split and the onnx2torch check stated at the start."""
    from autoaccel import cli

    model, data = two_input_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text("version: 1\ntechniques:\n  quantize:\n    mode: [none, int8_dynamic]\n")
    argv = ["autoaccel", "search", "--model", str(model), "--data", str(data), "--space",
            str(space), "--budget", "2", "--measure-seconds", "0.03", "--targets", "cpu-local",
            "--no-isolate"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setitem(cli._DEBUG, "on", True)
    cli.main()
    out = " ".join(capsys.readouterr().out.split())
    assert "judging on 48 rows of two.npz; 12 other rows calibrate and train" in out
    assert "ONNX Runtime fp32" in out
    assert list((tmp_path / "runs").glob("*/recommendation.json"))


def test_an_onnx_model_with_several_outputs_says_which_one_is_judged(tmp_path):
    import torch

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.a(x), self.b(x)

    torch.manual_seed(0)
    path = tmp_path / "heads.onnx"
    axes = {"x": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoHeads().eval(), (torch.zeros(1, 4),), str(path), input_names=["x"],
                          output_names=["scores", "extra"], dynamic_axes=axes,
                          dynamo=False)  # fmt: skip
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    workload = OnnxFileWorkload(path, _npz(tmp_path, "x.npz", x=x), convert=False)
    (said,) = [n for n in workload.notes() if "2 outputs" in n]
    assert "has 2 outputs (scores, extra): the first, scores, is the one judged" in said
    assert workload.reference_predict({"x": x[:5]}).shape == (5, 3)
