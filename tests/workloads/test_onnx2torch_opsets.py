"""ONNX files of opset 18-21 (what torch.onnx.export writes by default) convert to torch: the
operator versions onnx2torch lacks are added, and each matches ONNX Runtime."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from autoaccel.workloads.onnx_file import OnnxFileWorkload
from autoaccel.workloads.onnx_torch import load_onnx2torch


def _graph(tmp_path, nodes, inits, out_shape, opset: int, name: str = "g.onnx"):
    """A one-input (x: 2x3x4 float) graph of `nodes` at `opset`, saved and checked."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _both(path):
    """(ONNX Runtime's output, the onnx2torch conversion's) on one random input."""
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    module = load_onnx2torch().convert(onnx.load(str(path)))
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    return want[0], got.numpy()


def _ints(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax", "ReduceL2"])
@pytest.mark.parametrize("opset", [18, 20])
def test_a_reduction_with_its_axes_as_an_input_converts(tmp_path, op, opset):
    node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)
    path = _graph(tmp_path, [node], [_ints("axes", [1])], [2, 4], opset)
    want, got = _both(path)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_of_opset_20_converts_with_its_approximation(tmp_path, approximate):
    node = helper.make_node("Gelu", ["x"], ["y"], approximate=approximate)
    want, got = _both(_graph(tmp_path, [node], [], [2, 3, 4], 20))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_reshape_with_allowzero_converts(tmp_path):
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=1)
    path = _graph(tmp_path, [node], [_ints("shape", [6, -1])], [6, 4], 21)
    want, got = _both(path)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("axis", "shape"), [(3, [24, 1]), (0, [1, 24]), (-1, [6, 4]), (1, [2, 12]), (2, [6, 4])]
)
@pytest.mark.parametrize("opset", [13, 21])
def test_flatten_converts_at_every_axis_the_rank_included(tmp_path, axis, shape, opset):
    # the legacy exporter flattens a [batch, tokens] mask at axis 2 in BERT graphs; onnx2torch's
    # own converter failed there ("Dimension out of range"), so MiniLM lost its torch version
    node = helper.make_node("Flatten", ["x"], ["y"], axis=axis)
    want, got = _both(_graph(tmp_path, [node], [], shape, opset))
    assert got.shape == want.shape == tuple(shape)
    np.testing.assert_array_equal(got, want)


def test_a_newer_version_using_what_the_old_converter_lacks_is_refused(tmp_path):
    pads = _ints("pads", [1, 1])
    node = helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"])
    path = _graph(tmp_path, [node], [pads, _ints("axes", [2])], [2, 3, 6], 18)
    with pytest.raises(NotImplementedError, match="axes input"):
        _both(path)


def test_a_default_torch_onnx_export_is_converted_and_checked(tmp_path):
    """torch.onnx.export's default exporter: opset 18+, allowzero Reshapes, external data."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.GELU(), torch.nn.Flatten(), torch.nn.Linear(144, 5)
    )
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net.eval(), (torch.zeros(2, 1, 8, 8),), input_names=["x"],
            dynamic_shapes=({0: batch},), verbose=False,
        )  # fmt: skip
    program.save(str(tmp_path / "net.onnx"), external_data=True)
    model = onnx.load(str(tmp_path / "net.onnx"), load_external_data=False)
    assert model.opset_import[0].version >= 18
    x = np.random.default_rng(0).normal(size=(40, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    workload = OnnxFileWorkload(tmp_path / "net.onnx", tmp_path / "data.npz")
    assert workload.torch_model_available(), workload.notes()
    assert any("its outputs match ONNX Runtime's" in note for note in workload.notes())


@pytest.mark.parametrize(("opset", "shape"), [(13, [0, -1]), (14, [-1, 12]), (21, [-1, 12])])
def test_a_reshape_traces_under_torch_compile(tmp_path, opset, shape):
    # onnx2torch built a torch.Size of the shape tensor's elements, which torch.compile
    # cannot trace: every torch_compile trial of a converted skl2onnx regressor failed
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    path = _graph(tmp_path, [node], [_ints("shape", shape)], [2, 12], opset)
    want, got = _both(path)
    np.testing.assert_array_equal(got, want)
    module = load_onnx2torch().convert(onnx.load(str(path)))
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32))
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="eager")
    np.testing.assert_array_equal(compiled(x).numpy(), module(x).numpy())
