"""Models giving one number per row (regression heads, rerankers) are judged as scores: by
Spearman with real-valued labels, or by R^2 to the fp32 model's scores, never by a cosine of
scalars (their sign agreement) or an argmax over one column (always 0)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from support_hf import _bert_config, _quiet, copy_tokenizer, sentences

from autoaccel.errors import UserError
from autoaccel.techniques._training import distillation_loss
from autoaccel.workloads import load_workload
from autoaccel.workloads.base import classify_outputs
from autoaccel.workloads.onnx_file import OnnxFileWorkload
from autoaccel.workloads.similarity import r2


def _score_model(tmp_path):
    """x (batch x 4) -> one score per row."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    path = tmp_path / "score.onnx"
    torch.onnx.export(
        net.eval(), (torch.zeros(1, 4),), str(path), input_names=["x"],
        dynamic_axes={"x": {0: "batch"}}, dynamo=False,
    )  # fmt: skip
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy().reshape(-1)
    return path, x, y


def test_scores_without_labels_are_judged_by_r2_to_the_fp32_scores(tmp_path):
    path, x, _ = _score_model(tmp_path)
    np.savez(tmp_path / "d.npz", x=x)
    workload = OnnxFileWorkload(path, tmp_path / "d.npz", convert=False)
    assert workload.metric == "teacher_r2" and "teacher_cosine" not in workload.metrics
    exact = workload.evaluate(workload.reference_predict)
    assert exact == {"teacher_r2": pytest.approx(1.0)}
    # scores off by a scale keep every sign, so a cosine would still say 1.0
    halved = workload.evaluate(lambda inputs: workload.reference_predict(inputs) * 0.5)
    assert halved["teacher_r2"] < 0.9


def test_scores_with_real_labels_are_judged_by_spearman(tmp_path):
    path, x, y = _score_model(tmp_path)
    np.savez(tmp_path / "d.npz", x=x, y_val=y + 0.01)
    workload = OnnxFileWorkload(path, tmp_path / "d.npz", convert=False)
    assert workload.metric == "spearman" and "r2" in workload.metrics
    got = workload.evaluate(workload.reference_predict)
    assert got["spearman"] == pytest.approx(1.0) and 0.9 < got["r2"] < 1.0
    reversed_ = workload.evaluate(lambda inputs: -workload.reference_predict(inputs))
    assert reversed_["spearman"] == pytest.approx(-1.0)


@pytest.mark.parametrize("sigmoid", [False, True])
def test_one_output_with_0_1_labels_is_a_binary_classifier(tmp_path, sigmoid):
    path, x, y = _score_model(tmp_path)
    if sigmoid:  # the same scores squashed into [0, 1]: the threshold moves to 0.5
        import onnx
        from onnx import helper

        model = onnx.load(str(path))
        out = model.graph.output[0].name
        model.graph.node[-1].output[0] = "raw"
        model.graph.node.append(helper.make_node("Sigmoid", ["raw"], [out]))
        onnx.save(model, str(path))
    labels = (y > 0).astype(np.int64)
    labels[:5] = 1 - labels[:5]  # five rows the model gets wrong
    calib = x[:10] + 1.0  # rows of their own: every row of x judges
    np.savez(tmp_path / "d.npz", x=x, y_val=labels, x_calib=calib)
    workload = OnnxFileWorkload(path, tmp_path / "d.npz", convert=False)
    assert workload.metric == "accuracy" and "spearman" in workload.metrics
    assert f"thresholded at {0.5 if sigmoid else 0:g}" in workload.metric_description
    got = workload.evaluate(workload.reference_predict)
    assert got["accuracy"] == pytest.approx(1 - 5 / len(x))


def test_real_labels_for_a_classifier_are_refused(tiny_onnx_files, tmp_path):
    x = np.load(tiny_onnx_files[1])["x_val"]
    np.savez(tmp_path / "d.npz", x_val=x, y_val=np.linspace(0, 1, len(x)))
    with pytest.raises(UserError, match="y_val holds real values"):
        OnnxFileWorkload(tiny_onnx_files[0], tmp_path / "d.npz", convert=False)


def test_one_number_per_row_is_the_scores_kind_with_a_squared_error_loss():
    assert classify_outputs(np.zeros((4, 1)), np.array([0.5, 1.0, 2.0, 3.0]))[0] == "scores"
    assert classify_outputs(np.zeros(4), None)[0] == "scores"
    loss = distillation_loss("scores", {})
    teacher = torch.tensor([[1.0], [2.0], [3.0]])
    assert float(loss(teacher.clone(), teacher, None)) == 0.0
    assert float(loss(teacher * 0.5, teacher, None)) > 0.0


def test_r2_is_one_when_exact_zero_at_the_mean_and_negative_when_worse():
    truth = np.array([1.0, 2.0, 3.0])
    assert r2(truth, truth) == 1.0
    assert r2(np.full(3, 2.0), truth) == 0.0
    assert r2(-truth, truth) < 0.0


@pytest.fixture(scope="module")
def score_folder(tmp_path_factory):
    """A BertForSequenceClassification with one output (num_labels 1), and rated texts."""
    from transformers import BertForSequenceClassification

    _quiet()
    root = tmp_path_factory.mktemp("scores")
    torch.manual_seed(0)
    BertForSequenceClassification(_bert_config(num_labels=1)).save_pretrained(root / "reg")
    copy_tokenizer(root / "reg")
    texts = sentences(40)
    pd.DataFrame({"text": texts, "label": np.linspace(0, 5, 40)}).to_csv(root / "r.csv")
    pd.DataFrame({"text": texts, "label": ["high"] * 40}).to_csv(root / "bad.csv")
    return root


def test_a_one_output_folder_is_judged_as_scores(score_folder, tmp_path):
    workload = load_workload(None, tmp_path, score_folder / "reg", score_folder / "r.csv")
    assert (workload.metric, workload.output_kind) == ("spearman", "scores")
    assert any("regression or ranking head" in note for note in workload.notes())
    model = workload.torch_model()

    def predict(inputs):
        with torch.no_grad():
            return model(*(torch.from_numpy(inputs[n]) for n in workload.input_names)).numpy()

    got = workload.evaluate(predict)
    assert set(got) == {"spearman", "r2"} and -1.0 <= got["spearman"] <= 1.0


def test_a_one_output_folder_with_word_labels_is_refused(score_folder, tmp_path):
    with pytest.raises(UserError, match="labels must be numbers; 'high'"):
        load_workload(None, tmp_path, score_folder / "reg", score_folder / "bad.csv")
