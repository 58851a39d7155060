"""Workloads: a registry of built-ins plus a user's own (`pkg.module:factory` or ONNX + npz)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from autoaccel.errors import UserError
from autoaccel.workloads.base import Inputs, Predict, Workload


def _seed_mlp(cache: Path) -> Workload:
    from autoaccel.workloads.digits import SeedMLP

    return SeedMLP(cache)


def _digits_cnn(cache: Path) -> Workload:
    from autoaccel.workloads.digits import DigitsCNN

    return DigitsCNN(cache)


def _minilm(cache: Path) -> Workload:
    from autoaccel.workloads.minilm import MiniLMWorkload

    return MiniLMWorkload(cache)


def _minilm_search(cache: Path) -> Workload:
    from autoaccel.workloads.minilm import MiniLMWorkload

    return MiniLMWorkload(cache, split="search")


BUILTIN: dict[str, Callable[[Path], Workload]] = {
    "minilm": _minilm,
    "minilm-search": _minilm_search,
    "seed-mlp": _seed_mlp,
    "digits-cnn": _digits_cnn,
}


def load_workload(
    name: str | None,
    cache_dir: Path,
    model: Path | None = None,
    data: Path | None = None,
    metric: str | None = None,
) -> Workload:
    """Resolve `--workload` / `--model --data` (and `--metric`) to a workload object
    (validated here, once)."""
    workload = _resolve(name, cache_dir, model, data)
    workload.choose_metric(metric)
    return workload


def _resolve(name: str | None, cache_dir: Path, model: Path | None, data: Path | None):
    if model is not None or data is not None:
        if model is None or data is None:
            raise UserError("--model and --data go together: give both (an .onnx and an .npz)")
        if name is not None:
            raise UserError("give either --workload or --model/--data, not both")
        from autoaccel.workloads.onnx_file import OnnxFileWorkload

        return OnnxFileWorkload(model, data)
    name = name or "minilm"
    if name in BUILTIN:
        return BUILTIN[name](cache_dir)
    if ":" in name:
        return _from_factory(name)
    raise UserError(
        f"unknown workload {name!r}; use one of {', '.join(BUILTIN)}, "
        "package.module:factory, or --model m.onnx --data d.npz"
    )


def _from_factory(spec: str) -> Workload:
    """Import and call a user's factory. This runs the user's own code, by their request."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(
            f"--workload {spec}: give package.module:factory, both parts "
            "(e.g. mypkg.workload:factory)"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"--workload {spec}: cannot import {module_name!r} ({exc}); "
            "make it importable (pip install it or add its folder to PYTHONPATH)"
        ) from None
    except Exception as exc:  # the module's own code failed while importing
        raise UserError(
            f"--workload {spec}: importing {module_name!r} raised {_summary(exc)}; fix the "
            "module (`autoaccel --debug search ...` shows the traceback)"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(
            f"--workload {spec}: {module_name} has no callable {attr!r}; name the function "
            "in it that returns the Workload"
        )
    try:
        workload = factory()
    except UserError:
        raise
    except Exception as exc:  # the user's code failed: say so, keep their traceback for --debug
        raise UserError(
            f"--workload {spec}: {attr}() raised {_summary(exc)}; fix the factory "
            "(`autoaccel --debug search ...` shows the traceback)"
        ) from exc
    if not isinstance(workload, Workload):
        raise UserError(
            f"--workload {spec}: {attr}() returned {type(workload).__name__}, "
            "not an autoaccel.workloads.Workload; return an instance of a Workload subclass"
        )
    return workload


def _summary(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


__all__ = ["BUILTIN", "Inputs", "Predict", "Workload", "load_workload"]
