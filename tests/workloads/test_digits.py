"""The digits workloads: deterministic cached teachers, the seed article's MLP, clean splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from autoaccel.builder import build_candidate
from autoaccel.evaluate.runners import open_runner
from autoaccel.workloads import load_workload
from autoaccel.workloads.digits import DigitsCNN, SeedMLP


def _weights_file(workload):
    return workload.cache_dir / "workloads" / f"{workload.name}-{workload.fingerprint()}.pt"


def test_training_is_deterministic_when_caches_are_fresh(tmp_path, single_torch_thread):
    first = SeedMLP(tmp_path / "a").torch_model().state_dict()
    second = SeedMLP(tmp_path / "b").torch_model().state_dict()
    assert list(first) == list(second)
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_cached_weights_are_loaded_when_workload_is_built_again(seed_mlp, monkeypatch):
    path = _weights_file(seed_mlp)
    assert path.is_file()
    mtime = path.stat().st_mtime_ns

    def no_training(self, model):
        raise AssertionError("trained again instead of loading the cached weights")

    monkeypatch.setattr(SeedMLP, "_train", no_training)
    again = SeedMLP(seed_mlp.cache_dir).torch_model()
    assert path.stat().st_mtime_ns == mtime
    for key, value in seed_mlp.torch_model().state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
    assert not list(path.parent.glob("*.tmp"))


def test_weights_cache_is_per_workload(seed_mlp, digits_cnn):
    assert seed_mlp.cache_dir == digits_cnn.cache_dir
    assert _weights_file(seed_mlp) != _weights_file(digits_cnn)
    assert seed_mlp.fingerprint() != digits_cnn.fingerprint()


def test_seed_mlp_is_dense64_relu_dense10_softmax(seed_mlp):
    model = seed_mlp.torch_model()
    layers = list(model.children())
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Linear, nn.Softmax]
    assert (layers[0].in_features, layers[0].out_features) == (64, 64)
    assert (layers[2].in_features, layers[2].out_features) == (64, 10)


def test_seed_mlp_outputs_are_probabilities(seed_mlp):
    with torch.no_grad():
        out = seed_mlp.torch_model()(torch.from_numpy(seed_mlp.x_val[:50])).numpy()
    assert out.shape == (50, 10)
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["seed_mlp", "digits_cnn"])
def test_teacher_accuracy_is_above_090(request, name, cache_dir):
    workload = request.getfixturevalue(name)
    candidate = build_candidate(
        {"runtime.backend": "torch", "runtime.intra_op_threads": 1}, workload, cache_dir
    )
    accuracy = workload.evaluate(open_runner(candidate, workload.input_names))["accuracy"]
    assert accuracy > 0.9


def test_digits_cnn_takes_1x8x8_images(digits_cnn):
    assert digits_cnn.x_val.shape[1:] == (1, 8, 8)
    assert digits_cnn.latency_inputs(3)["x"].shape == (3, 1, 8, 8)
    assert digits_cnn.latency_inputs(1)["x"].flags["C_CONTIGUOUS"]


def test_split_is_70_30_and_disjoint(seed_mlp):
    n_train, n_val = len(seed_mlp.x_train), len(seed_mlp.x_val)
    assert n_val == 540 and n_train + n_val == 1797
    val_rows = {row.tobytes() for row in seed_mlp.x_val}
    assert not any(row.tobytes() in val_rows for row in seed_mlp.x_train)


@pytest.mark.parametrize("name", ["seed_mlp", "digits_cnn"])
def test_calibration_inputs_come_from_train_split_not_validation(request, name):
    workload = request.getfixturevalue(name)
    batches = workload.calibration_inputs()
    calib = np.concatenate([b["x"] for b in batches])
    assert len(calib) == 256
    assert calib.dtype == np.float32
    train_rows = {row.tobytes() for row in workload.x_train}
    val_rows = {row.tobytes() for row in workload.x_val}
    assert all(row.tobytes() in train_rows for row in calib)
    assert not any(row.tobytes() in val_rows for row in calib)


def test_builtin_names_load_digits_workloads(cache_dir):
    assert isinstance(load_workload("seed-mlp", cache_dir), SeedMLP)
    assert isinstance(load_workload("digits-cnn", cache_dir), DigitsCNN)
