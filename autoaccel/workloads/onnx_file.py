"""A user's own ONNX model judged on their own `.npz` arrays (`npz_data` says the format).

The model may have any number of named inputs; each array is checked against its input's
rank, fixed dims and dtype before anything runs. The baseline is the given file in ONNX
Runtime (fp32, default session): what the user has. The torch-level techniques apply through
`onnx_torch`'s conversion where it reproduces ONNX Runtime's outputs on the judging rows;
otherwise the search says why they are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads.base import Inputs
from autoaccel.workloads.npz_data import InputSpec
from autoaccel.workloads.npz_workload import NpzWorkload
from autoaccel.workloads.onnx_facts import external_files, is_float16


class OnnxFileWorkload(NpzWorkload):
    """`--model m.onnx --data d.npz [--train-data t.npz]`. `convert=False` keeps it ONNX-only
    (no onnx2torch conversion: the torch-level techniques are left out)."""

    def __init__(
        self,
        model: Path,
        data: Path,
        train_data: Path | None = None,
        convert: bool = True,
        judge_rows: int | None = None,
    ) -> None:
        model, data = Path(model), Path(data)
        for path, flag in ((model, "--model"), (data, "--data"), (train_data, "--train-data")):
            if path is not None and not Path(path).is_file():
                raise UserError(f"{flag} {path}: no such file; give the path of an existing file")
        super().__init__(model, data, train_data, read_onnx_inputs(model), judge_rows)
        self._session: Any = None
        self._torch: tuple[Any, str] | None = None if convert else (None, "")
        try:
            probe = self.reference_predict(self.batches(self.judge.inputs, 2)[0])
        except UserError:
            raise
        except Exception as exc:
            raise UserError(
                f"--model {model}: ONNX Runtime cannot run it on --data's first rows "
                f"({_first_line(exc)}); check the arrays against the model's inputs"
            ) from None
        self.settle_metric(np.asarray(probe))
        names = [o.name for o in self._session.get_outputs()]
        if len(names) > 1:
            self._notes.append(
                f"the model has {len(names)} outputs ({', '.join(names)}): the first, "
                f"{names[0]}, is the one judged; builds of the file keep them all, builds "
                "through its torch conversion return the first alone"
            )

    def weight_files(self) -> list[Path]:
        return external_files(self.model_path)

    def onnx_model(self) -> Path:
        return self.model_path

    def reference_predict(self, inputs: Inputs) -> np.ndarray:
        if self._session is None:
            import onnxruntime as ort

            self._session = ort.InferenceSession(
                str(self.model_path), providers=["CPUExecutionProvider"]
            )
        return self._session.run(None, inputs)[0]

    def torch_model_available(self) -> bool:
        """Whether a checked torch conversion exists (converted once, on first use)."""
        return self._converted()[0] is not None

    def torch_model(self) -> Any:
        return self._converted()[0]

    def _converted(self) -> tuple[Any, str]:
        if self._torch is None:
            from autoaccel.workloads.onnx_torch import convert_checked

            batches = self.batches(self.judge.inputs, 256)
            if self.label_output:  # an argmax's labels carry no gradient to train toward
                module, line = None, "its judged output is integer class labels"
            else:
                module, line = convert_checked(
                    self.model_path, self.reference_predict, batches, self.input_names
                )
            if module is None:
                line = (
                    f"no torch version: {line}; distillation, pruning and the PyTorch runtimes "
                    "are left out"
                )
            self._torch = (module, line)
            self._notes.append(line)
        return self._torch

    def notes(self) -> list[str]:
        self._converted()  # states whether the torch-level techniques apply, and why
        return super().notes()

    def baseline_description(self) -> str:
        precision = "float16" if is_float16(self.model_path) else "fp32"
        return f"{self.name}: ONNX Runtime {precision} on the given file, default session, batch 1"


def read_onnx_inputs(path: Path) -> tuple[InputSpec, ...]:
    """The graph's inputs (initializers excluded), checked to be a valid model."""
    import onnx

    try:
        # by path: the checker then finds external data files (and models over 2 GB)
        onnx.checker.check_model(str(path))
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(
            f"--model {path}: not a valid ONNX model ({_first_line(exc)}); export it again "
            "with torch.onnx.export or check the file"
        ) from None
    inits = {i.name for i in proto.graph.initializer}
    specs = []
    for graph_input in proto.graph.input:
        if graph_input.name in inits:
            continue
        tensor = graph_input.type.tensor_type
        if not graph_input.type.HasField("tensor_type"):
            raise UserError(
                f"--model {path}: input {graph_input.name!r} is not a tensor (a sequence or "
                "map); --model/--data feeds tensors only"
            )
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        specs.append(
            InputSpec(graph_input.name, dims if tensor.HasField("shape") else None, dtype)
        )
    if not specs:
        raise UserError(f"--model {path}: the graph takes no inputs; nothing to feed it")
    return tuple(specs)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__
