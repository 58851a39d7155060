"""A user's own ONNX model judged on their own `.npz` validation data.

The archive holds `x_val` (inputs, batch first), `y_val` (class labels) and optionally
`x_calib` (calibration inputs; without it the first 256 rows of `x_val` are used, which then
also judge: give `x_calib` from training data for an unbiased figure). Quality is
top-1 accuracy. There is no torch model, so torch-level techniques are skipped and the
baseline is ONNX Runtime fp32 with a default session.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads.base import Inputs, Predict, Workload


class OnnxFileWorkload(Workload):
    metric = "accuracy"
    metric_description = "top-1 accuracy on the user's x_val / y_val"
    metric_ranges = {"accuracy": (0.0, 1.0)}

    def __init__(self, model: Path, data: Path) -> None:
        import onnx

        self.model_path, self.data_path = Path(model), Path(data)
        for path, flag in ((self.model_path, "--model"), (self.data_path, "--data")):
            if not path.is_file():
                raise UserError(f"{flag} {path}: no such file; give the path of an existing file")
        try:
            proto = onnx.load(str(self.model_path), load_external_data=False)
            onnx.checker.check_model(proto)
        except Exception as exc:
            raise UserError(
                f"--model {self.model_path}: not a valid ONNX model ({_first_line(exc)}); "
                "export it again with torch.onnx.export or check the file"
            ) from None
        inits = {i.name for i in proto.graph.initializer}
        graph_inputs = [i for i in proto.graph.input if i.name not in inits]
        if len(graph_inputs) != 1:
            raise UserError(
                f"--model {self.model_path}: has {len(graph_inputs)} inputs; --model/--data "
                "supports one input tensor (use --workload package.module:factory otherwise)"
            )
        self.input_names = (graph_inputs[0].name,)
        self.dynamic_axes = {}
        self.name = self.model_path.stem
        self.x_val, self.y_val, self.x_calib = self._load_data(graph_inputs[0])
        self._digest = hashlib.sha256(
            self.model_path.read_bytes() + self.data_path.read_bytes()
        ).hexdigest()[:16]

    def _load_data(self, graph_input) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import onnx

        save = "save it with numpy.savez(path, x_val=..., y_val=...)"
        if not zipfile.is_zipfile(self.data_path):  # np.load would talk of pickles here
            raise UserError(
                f"--data {self.data_path}: not a readable .npz archive (not a zip of .npy "
                f"arrays); {save}"
            )
        try:
            with np.load(self.data_path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except ValueError as exc:
            if "pickle" not in str(exc):
                raise UserError(
                    f"--data {self.data_path}: not a readable .npz archive "
                    f"({_first_line(exc)}); {save}"
                ) from None
            raise UserError(
                f"--data {self.data_path}: holds object arrays, which are not loaded (they "
                "could run code); store numeric arrays, e.g. x_val.astype('float32')"
            ) from None
        except Exception as exc:
            raise UserError(
                f"--data {self.data_path}: not a readable .npz archive ({_first_line(exc)}); "
                f"{save}"
            ) from None
        missing = [k for k in ("x_val", "y_val") if k not in arrays]
        if missing:
            raise UserError(
                f"--data {self.data_path}: missing array(s) {', '.join(missing)}; "
                f"it has {sorted(arrays)} — save x_val (inputs) and y_val (labels)"
            )
        x_val, y_val = arrays["x_val"], arrays["y_val"]
        if len(x_val) != len(y_val) or len(x_val) == 0:
            raise UserError(
                f"--data {self.data_path}: x_val has {len(x_val)} rows but y_val has "
                f"{len(y_val)}; give one label per input row"
            )
        if y_val.ndim != 1 or not np.issubdtype(y_val.dtype, np.number):
            raise UserError(
                f"--data {self.data_path}: y_val has shape {'x'.join(map(str, y_val.shape))} "
                f"and dtype {y_val.dtype}; give one integer class index per row "
                "(y.argmax(axis=1) for one-hot labels)"
            )
        dims = graph_input.type.tensor_type.shape.dim
        expected = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        for key in ("x_val", "x_calib"):
            if key in arrays:
                _check_shape(key, arrays[key], expected, self.data_path)
        # A model exported without dynamic axes takes one batch size only: feed it that.
        self.fixed_batch: int | None = expected[0] if expected and expected[0] else None
        dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
        x_calib = arrays.get("x_calib", x_val[:256])
        return x_val.astype(dtype), y_val, x_calib.astype(dtype)

    def onnx_model(self) -> Path:
        return self.model_path

    def identity(self) -> dict:
        return {"digest": self._digest}

    def _batches(self, x: np.ndarray, size: int) -> list[np.ndarray]:
        """Slices of `size` rows; with a fixed-batch model the last one is padded by
        repeating its last row (the caller drops the padding's outputs)."""
        out = []
        for i in range(0, len(x), size):
            chunk = x[i : i + size]
            if self.fixed_batch and len(chunk) < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), 0)])
            out.append(np.ascontiguousarray(chunk))
        return out

    def latency_inputs(self, batch_size: int = 1) -> Inputs:
        size = self.fixed_batch or batch_size
        return {self.input_names[0]: self._batches(self.x_val[:size], size)[0]}

    def calibration_inputs(self) -> list[Inputs]:
        size = self.fixed_batch or 32
        return [{self.input_names[0]: b} for b in self._batches(self.x_calib, size)]

    def evaluate(self, predict: Predict) -> dict[str, float]:
        batches = self._batches(self.x_val, self.fixed_batch or 256)
        out = np.concatenate([predict({self.input_names[0]: b}) for b in batches])
        out = out[: len(self.x_val)]
        return {"accuracy": float(np.mean(np.argmax(out, axis=1) == self.y_val))}


def _check_shape(key: str, array: np.ndarray, expected: list, path: Path) -> None:
    if not np.issubdtype(array.dtype, np.number):
        raise UserError(f"--data {path}: {key} has dtype {array.dtype}; store numbers")
    if array.ndim != len(expected) or any(
        e is not None and e != a for e, a in zip(expected[1:], array.shape[1:], strict=False)
    ):
        want = "x".join("N" if e is None else str(e) for e in expected)
        raise UserError(
            f"--data {path}: {key} has shape {'x'.join(map(str, array.shape))} but the model "
            f"takes {want}; reshape the array to match the model's input"
        )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
