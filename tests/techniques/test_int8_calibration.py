"""Static int8's calibration batches: histogram calibrators need batches of one shape."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from autoaccel.techniques.int8_calibration import int8_static, uniform_batches


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 8, 8)).astype(np.float32)


def test_batches_of_one_shape_are_kept_and_mixed_sizes_recut_into_rows():
    same = [{"x": _rows(4)}, {"x": _rows(4, 1)}]
    assert uniform_batches(same) is same
    mixed = [{"x": _rows(8)}, {"x": _rows(4, 1)}]
    recut = uniform_batches(mixed)
    assert len(recut) == 12 and all(b["x"].shape == (1, 3, 8, 8) for b in recut)
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in recut]),
                                  np.concatenate([b["x"] for b in mixed]))  # fmt: skip
    lengths = [{"ids": np.zeros((2, 5), np.int64)}, {"ids": np.zeros((1, 7), np.int64)}]
    assert uniform_batches(lengths) is lengths  # rows of other lengths: nothing to agree on


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_every_calibration_runs_on_twelve_images_cut_eight_and_four(tmp_path, calibration):
    """Entropy and percentile failed with numpy's "inhomogeneous shape" on these batches."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    src, out = tmp_path / "net.onnx", tmp_path / "int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, 8, 8),), str(src), input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}}, dynamo=False)  # fmt: skip
    batches = [{"x": _rows(8)}, {"x": _rows(4, 1)}]
    int8_static(src, out, {"calibration": calibration, "per_channel": True}, batches)
    x = _rows(5, 2)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert np.abs(got[0] - expected).max() < 0.1 * np.abs(expected).max()
