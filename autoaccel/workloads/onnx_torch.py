"""An ONNX file as a torch module (onnx2torch), used only once its outputs are checked.

The torch-level techniques (distillation, pruning, the PyTorch runtimes) need a torch module;
a user who gives an ONNX file has none. onnx2torch rebuilds the graph from torch modules
(Gemm -> nn.Linear, Conv -> nn.Conv2d, ...), so pruning and students work on it; autoaccel uses
the result only when its first output matches ONNX Runtime's on every judging row within
`RTOL`/`ATOL`, and otherwise says why not and leaves those techniques out.

onnx2torch imports torchvision for two converters (NonMaxSuppression, RoiAlign). This
project's CPU torch has no matching torchvision (the PyPI build is CUDA-linked and fails to
load), so where torchvision cannot be imported those two converter modules are registered
empty: graphs holding those operators are then refused by onnx2torch like any unsupported one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoaccel.workloads.base import Inputs
from autoaccel.workloads.fx_layers import linear_and_trainable

RTOL, ATOL = 1e-3, 1e-4
"""The converted module is used when |torch - ORT| <= ATOL + RTOL * |ORT| on every output
value of the judging rows (the float32 reorderings of two kernel libraries stay far inside)."""
_TORCHVISION_CONVERTERS = ("nms", "roialign")


def load_onnx2torch() -> Any:
    """The onnx2torch module; raises ImportError where it is not installed."""
    if importlib.util.find_spec("onnx2torch") is None:
        raise ImportError("onnx2torch is not installed")
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a build for another torch
        for name in _TORCHVISION_CONVERTERS:
            full = f"onnx2torch.node_converters.{name}"
            sys.modules.setdefault(full, types.ModuleType(full))
    import onnx2torch

    from autoaccel.workloads.onnx2torch_opsets import register

    register()  # the opset 16-21 versions it lacks (torch.onnx's default exporter writes 18+)
    # its Slice indexes with a list, which torch 2.x warns about on every call: noise to a user
    warnings.filterwarnings("ignore", category=UserWarning, module="onnx2torch")
    return onnx2torch


class FirstOutput(torch.nn.Module):
    """A module returning only its inner module's first output: the one autoaccel judges,
    exports (as "output") and distils toward."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.inner(*args)
        return out[0] if isinstance(out, tuple | list) else out


def convert_checked(
    onnx_path: Path,
    reference: Callable[[Inputs], np.ndarray],
    batches: list[Inputs],
    input_names: tuple[str, ...],
) -> tuple[Any | None, str]:
    """The converted module (eval mode) and a sentence saying so, or None and the reason.

    `reference` is ONNX Runtime on the given file; `batches` the judging rows."""
    try:
        onnx2torch = load_onnx2torch()
    except ImportError:
        return None, (
            "onnx2torch is not installed (`pip install --no-deps onnx2torch`), so there is no "
            "torch version of it"
        )
    version = importlib.metadata.version("onnx2torch")
    try:
        converted = onnx2torch.convert(str(onnx_path))
    except Exception as exc:
        return None, f"onnx2torch {version} cannot convert it ({_first_line(exc)})"
    linears = linear_and_trainable(converted)  # weights trainable, MatMuls prunable
    module = FirstOutput(converted).eval()
    worst, rows = 0.0, 0
    for batch in batches:
        want = np.asarray(reference(batch), dtype=np.float64)
        try:
            with torch.inference_mode():
                args = [torch.from_numpy(batch[n]) for n in input_names]
                got = module(*args).detach().double().numpy()
        except Exception as exc:
            return None, f"its onnx2torch {version} conversion fails to run ({_first_line(exc)})"
        if got.shape != want.shape:
            return None, (
                f"its onnx2torch {version} conversion gives outputs of shape {got.shape}, "
                f"not {want.shape}"
            )
        excess = np.abs(got - want) - (ATOL + RTOL * np.abs(want))
        if not np.isfinite(got).all() or excess.max(initial=0.0) > 0:
            diff = float(np.nanmax(np.abs(got - want)))
            return None, (
                f"its onnx2torch {version} conversion differs from ONNX Runtime by up to "
                f"{diff:.3g} on the judging rows (tolerance {ATOL:g} + {RTOL:g} x |value|)"
            )
        worst = max(worst, float(np.abs(got - want).max(initial=0.0)))
        rows += len(want)
    as_linear = f" ({linears} MatMuls by a constant weight as nn.Linear)" if linears else ""
    return module, (
        f"converted to torch with onnx2torch {version}: its outputs match ONNX Runtime's on "
        f"all {rows} judging rows (max |diff| {worst:.2g}, tolerance {ATOL:g} + {RTOL:g} x "
        f"|value|){as_linear}, so distillation, pruning and the PyTorch runtimes work on it; "
        "the baseline stays ONNX Runtime on the given file"
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__
