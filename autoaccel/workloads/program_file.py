"""A TorchScript (`torch.jit.save`) or torch.export (`torch.export.save`, .pt2) program file as
the model, judged on `.npz` arrays (`npz_data` says the format).

Only the two safe loaders ever read the file: `torch.jit.load` and `torch.export.load`. A
pickled file (`torch.save` of a module or a state dict) is recognised by its layout and
refused before anything is unpickled, since unpickling can run arbitrary code.

The program is a torch model: PyTorch eager fp32 is the baseline, and it is exported to ONNX
for ONNX Runtime / OpenVINO, quantization and graph passes. A torch.export program's linear
and 2-D convolution calls are made nn.Linear / nn.Conv2d modules over its own parameters
(`fx_layers.export_layers`), so pruning and students apply to it. A TorchScript program's
layers are compiled code, so there is nothing for pruning to zero or remove nor for a student
to narrow, and fine-tuning a copy of the same shape toward itself changes nothing:
distillation and pruning are left out (`torch_edit_reason`). A program with several outputs
is judged and accelerated on its first, and the search says so.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads.base import Inputs
from autoaccel.workloads.fx_layers import export_layers
from autoaccel.workloads.npz_data import InputSpec
from autoaccel.workloads.npz_workload import NpzWorkload

SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".jit", ".torchscript", ".ptl")
"""File names routed here even when the content is no zip (so the error names the format)."""
SAVE_HOW = (
    "save the model with torch.jit.save(torch.jit.trace(model, example), 'model.pt') or "
    "torch.export.save(torch.export.export(model, example), 'model.pt2')"
)


def is_program_file(path: Path) -> bool:
    """Whether `--model` is meant as a torch program file (by suffix or zip layout)."""
    path = Path(path)
    return path.suffix.lower() in SUFFIXES or (path.is_file() and zipfile.is_zipfile(path))


def program_kind(path: Path) -> str:
    """ "torchscript" or "export", read from the archive's layout (never unpickled)."""
    if not path.is_file():
        raise UserError(f"--model {path}: no such file; give the path of an existing file")
    if not zipfile.is_zipfile(path):
        raise UserError(
            f"--model {path}: not a TorchScript or torch.export program file (not a zip "
            f"archive), nor an ONNX model; {SAVE_HOW}"
        )
    with zipfile.ZipFile(path) as archive:
        names = [n.split("/", 1)[-1] for n in archive.namelist()]
    if "models/model.json" in names or "archive_format" in names:
        return "export"
    if any(n.startswith("code/") for n in names) and "data.pkl" in names:
        return "torchscript"
    if "data.pkl" in names:
        raise UserError(
            f"--model {path}: a pickled file (torch.save of a module or its weights), which is "
            f"never loaded (unpickling can run code); {SAVE_HOW}"
        )
    raise UserError(f"--model {path}: not a TorchScript or torch.export program file; {SAVE_HOW}")


def _as_module(program: Any, kind: str, args: tuple) -> tuple[Any, int]:
    """The program as the module autoaccel runs, returning its first output, and how many
    outputs it has. A torch.export program is wrapped in `FirstOutput`; a TorchScript program
    returning several is wrapped and traced (the ONNX exporter takes a TorchScript program
    only inside another traced one; the program's own code, control flow and dynamic batch
    included, stays a call to it)."""
    import torch

    from autoaccel.workloads.onnx_torch import FirstOutput

    with torch.no_grad():
        out = program(*args)
    several = isinstance(out, tuple | list) and len(out) > 0
    count = len(out) if several else 1
    if kind != "torchscript":
        return FirstOutput(program).eval(), count
    if not several:
        return program.eval(), count
    with torch.no_grad():
        traced = torch.jit.trace(FirstOutput(program), args, check_trace=False)
    return traced.eval(), count


class ProgramFileWorkload(NpzWorkload):
    """`--model model.pt|model.pt2 --data d.npz [--train-data t.npz]`."""

    def __init__(
        self,
        model: Path,
        data: Path,
        train_data: Path | None = None,
        judge_rows: int | None = None,
    ) -> None:
        model, data = Path(model), Path(data)
        self.kind = program_kind(model)
        for path, flag in ((data, "--data"), (train_data, "--train-data")):
            if path is not None and not Path(path).is_file():
                raise UserError(f"{flag} {path}: no such file; give the path of an existing file")
        program, specs = _load(model, self.kind)
        self.layers = export_layers(program) if self.kind == "export" else 0
        super().__init__(model, data, train_data, specs, judge_rows)
        first = self.batches(self.judge.inputs, 2)[0]
        try:
            self._model, outputs = _as_module(program, self.kind, self._args(first))
            probe = self.reference_predict(first)
        except Exception as exc:
            raise UserError(
                f"--model {model}: the program does not run on --data's first rows "
                f"({_first_line(exc)}); give one array per input of forward() "
                f"({', '.join(self.input_names)}) in the shapes and dtypes it takes"
            ) from None
        if not np.issubdtype(probe.dtype, np.floating):
            raise UserError(
                f"--model {model}: its first output is {probe.dtype}, not floating point "
                "(scores, logits or vectors); return those from forward()"
            )
        self.settle_metric(probe)
        what = "TorchScript" if self.kind == "torchscript" else "torch.export"
        if self.layers:
            self._notes.append(
                f"a torch.export program: its {self.layers} linear and convolution calls run as "
                "nn.Linear / nn.Conv2d holding its own parameters (the same outputs), so "
                "pruning, students and fine-tuning apply"
            )
        else:
            self._notes.append(f"a {what} program: {self.torch_edit_reason()}")
        if outputs > 1:
            self._notes.append(
                f"forward() returns {outputs} outputs: the first ({_shape(probe)}) is the one "
                "judged, and the builds return it alone"
            )

    def _args(self, inputs: Inputs) -> tuple:
        import torch

        return tuple(torch.from_numpy(inputs[n]) for n in self.input_names)

    def torch_model(self) -> Any:
        return self._model

    def torch_edit_reason(self) -> str:
        """Why distillation and pruning are left out ("" where they apply: a torch.export
        program whose linear and convolution calls became modules)."""
        if self.layers:
            return ""
        what = "TorchScript" if self.kind == "torchscript" else "torch.export"
        return (
            f"its layers are compiled {what} code, not nn.Linear / nn.Conv2d modules, so "
            "pruning has nothing to zero or remove and no smaller student can be derived "
            "(give an ONNX file for onnx2torch's conversion, or a Workload factory)"
        )

    def torch_compile_reason(self) -> str:
        if self.kind != "torchscript":
            return ""
        return f"torch.compile does not compile TorchScript programs ({self.name})"

    def reference_predict(self, inputs: Inputs) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._model(*self._args(inputs))
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"forward() returns a {type(out).__name__}, not one tensor; save a module "
                "that returns the logits or vectors alone"
            )
        return out.float().numpy() if out.is_floating_point() else out.numpy()

    def baseline_description(self) -> str:
        return f"{self.name}: PyTorch eager fp32 ({self.kind} program), batch 1"


def _load(path: Path, kind: str) -> tuple[Any, tuple[InputSpec, ...]]:
    """The program (safe loaders only) and its inputs: names, and for torch.export the dims
    (symbolic ones as None) and dtypes it was exported with."""
    import torch

    try:
        if kind == "torchscript":
            program = torch.jit.load(str(path), map_location="cpu")
        else:
            exported = torch.export.load(str(path))
    except Exception as exc:
        raise UserError(
            f"--model {path}: cannot be loaded as a {kind} program ({_first_line(exc)}); "
            f"{SAVE_HOW}"
        ) from None
    if kind == "torchscript":
        names = [a.name for a in program.forward.schema.arguments][1:]  # without self
        if not names:
            raise UserError(f"--model {path}: its forward() takes no inputs; nothing to feed it")
        return program.eval(), tuple(InputSpec(n, None) for n in names)
    program = exported.module()
    # The exported graph fixed dropout / batch-norm behaviour when it was made; train() and
    # eval() only raise here, so the ordinary nn.Module flags are restored (training it
    # updates parameters in the behaviour it was exported with).
    for method in ("train", "eval"):
        program.__dict__.pop(method, None)
    wanted = set(exported.graph_signature.user_inputs)
    specs = []
    for node in exported.graph.nodes:
        if node.op == "placeholder" and node.name in wanted:
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor):
                raise UserError(
                    f"--model {path}: input {node.name!r} is not a tensor; --model/--data "
                    "feeds tensors only"
                )
            dims = tuple(d if isinstance(d, int) else None for d in val.shape)
            dtype = torch.empty((), dtype=val.dtype).numpy().dtype
            specs.append(InputSpec(node.name, dims, dtype))
    return program, tuple(specs)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__


def _shape(rows: np.ndarray) -> str:
    """An output's shape in words, its batch dimension as "rows"."""
    return " x ".join(["rows", *map(str, rows.shape[1:])])
