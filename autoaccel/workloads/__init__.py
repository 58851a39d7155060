"""Workloads: a registry of built-ins plus a user's own (`pkg.module:factory`, a Hugging Face
model folder + data files, or an ONNX / TorchScript / torch.export file + npz)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    options: dict[str, Any] | None = None,
) -> Workload:
    """Resolve `--workload` / `--model --data` (and `--metric`) to a workload object
    (validated here, once). `options` are a model folder's task and data options
    (`hf_folder.OPTION_KEYS`: task, text_column, label_column, score_column, train_data,
    max_length, judge_rows)."""
    workload = _resolve(name, cache_dir, model, data, options or {})
    workload.choose_metric(metric)
    return workload


def workload_notes(workload: Workload) -> list[str]:
    """What a workload states once at the start of a search (a model folder: how its data
    was split, the timed shape), beside the techniques' notes."""
    notes = getattr(workload, "notes", None)
    return list(notes()) if callable(notes) else []


def workload_spec(
    name: str | None, model: Path | None, data: Path | None, options: dict[str, Any], metric: str
) -> dict[str, Any]:
    """What a study records so that `export` reloads the same workload: paths made absolute."""
    kept = {k: v for k, v in options.items() if v is not None}
    if kept.get("train_data"):
        kept["train_data"] = str(Path(kept["train_data"]).resolve())
    return {
        "workload": name,
        "model": None if model is None else str(Path(model).resolve()),
        "data": None if data is None else str(Path(data).resolve()),
        "options": kept,
        "metric": metric,
    }


def _resolve(
    name: str | None,
    cache_dir: Path,
    model: Path | None,
    data: Path | None,
    options: dict[str, Any],
):
    given = sorted(k for k, v in options.items() if v is not None)
    if model is not None or data is not None:
        if model is None or data is None:
            raise UserError(
                "--model and --data go together: give both (a model folder and its data "
                "file, or an .onnx / .pt / .pt2 file and an .npz)"
            )
        if name is not None:
            raise UserError("give either --workload or --model/--data, not both")
        from autoaccel.workloads.hf_folder import is_model_folder, load_folder_workload

        if is_model_folder(Path(model)):
            return load_folder_workload(Path(model), Path(data), options, cache_dir)
        extra = [k for k in given if k not in ("train_data", "judge_rows")]
        if extra:
            raise UserError(
                f"{_flags(extra)}: only for a Hugging Face model folder, not --model "
                f"{model}; drop {'it' if len(extra) == 1 else 'them'} (a model file takes an "
                ".npz, --train-data and --judge-rows)"
            )
        train = Path(options["train_data"]) if options.get("train_data") else None
        from autoaccel.workloads.judging_rows import checked
        from autoaccel.workloads.program_file import ProgramFileWorkload, is_program_file

        rows = checked(options.get("judge_rows"))
        if is_program_file(Path(model)):
            return ProgramFileWorkload(Path(model), Path(data), train, judge_rows=rows)
        from autoaccel.workloads.onnx_file import OnnxFileWorkload

        return OnnxFileWorkload(Path(model), Path(data), train, judge_rows=rows)
    if given:
        raise UserError(
            f"{_flags(given)}: only with --model FOLDER --data FILE; give those, or drop "
            f"{'it' if len(given) == 1 else 'them'}"
        )
    name = name or "minilm"
    if name in BUILTIN:
        return BUILTIN[name](cache_dir)
    if ":" in name:
        return _from_factory(name)
    raise UserError(
        f"unknown workload {name!r}; use one of {', '.join(BUILTIN)}, "
        "package.module:factory, --model FOLDER --data FILE, or --model m.onnx|m.pt2 --data "
        "d.npz"
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


def _flags(keys: list[str]) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in keys)


def _summary(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


__all__ = [
    "BUILTIN",
    "Inputs",
    "Predict",
    "Workload",
    "load_workload",
    "workload_spec",
    "workload_notes",
]
