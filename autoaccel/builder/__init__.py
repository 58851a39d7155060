"""Turn a recipe into a runnable candidate: torch model -> ONNX -> graph passes -> quantize.

Every model-changing step is cached under `<cache>/models/<key>/model.onnx`, where the key
chains the workload's fingerprint with each step's model-changing settings, so trials that
share a prefix (same fusion, different threads) never rebuild it. A step is built in a
temporary folder that is renamed into place: a crash never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from autoaccel.errors import InfeasibleRecipe
from autoaccel.techniques import BuildContext, Candidate, Stage, by_stage, config_of
from autoaccel.techniques.base import Technique, TrainingMonitor
from autoaccel.techniques.runtime import BACKENDS, ONNX_BACKENDS, TORCH_BACKENDS
from autoaccel.workloads.base import Workload
from autoaccel.workloads.onnx_facts import copy_onnx

EXPORT_SETTINGS = {"opset": 17, "exporter": "torchscript", "v": 2}


def build_candidate(
    recipe: dict[str, Any],
    workload: Workload,
    cache_dir: Path,
    monitor: Callable[[str], TrainingMonitor] | None = None,
) -> Candidate:
    """Build the candidate a recipe describes, reusing cached steps.

    `monitor(stage_name)`, when given, supplies the watcher of each training step (the
    search's early-stopping rule); a cached step never trains, so it is never watched.
    """
    backend = recipe.get("runtime.backend", "onnxruntime")
    recipe = {**recipe, "runtime.backend": backend}  # techniques' conditions read it
    if backend not in BACKENDS:
        raise InfeasibleRecipe(
            f"runtime.backend {backend!r} is unknown; use one of {BACKENDS}", "unknown_backend"
        )
    if backend in TORCH_BACKENDS and not workload.torch_model_available():
        raise InfeasibleRecipe(
            f"{workload.name} has no torch model to run with {backend}", "no_torch_model"
        )
    _check_streams(recipe)  # before any training: the runtime would refuse it only at the end
    candidate = Candidate(backend=backend)
    torch_steps, export_key = _torch_plan(recipe, workload)
    key = torch_steps[-1][2] if torch_steps else workload.fingerprint()
    exported = (cache_dir / "models" / export_key / "model.onnx").exists()
    if workload.torch_model_available() and (backend in TORCH_BACKENDS or not exported):
        candidate = _torch_stage(candidate, workload, torch_steps, cache_dir, monitor)
    if backend in ONNX_BACKENDS:  # ONNX Runtime and OpenVINO run the same exported graph
        key = export_key
        changed = bool(torch_steps)
        candidate = _step(candidate, cache_dir, key, lambda c, d: _export(c, workload, d, changed))
    for tech in by_stage():
        if tech.stage == Stage.TORCH or not tech.is_active(recipe):
            continue
        config = config_of(tech, recipe, workload)
        session = {p.name for p in tech.params(workload) if p.session}
        if tech.changes_model(config):
            moved = _moved(tech, config, workload)
            model_config = {k: v for k, v in config.items() if k not in session or k in moved}
            key = _chain(key, tech.name, model_config)
            candidate = _step(
                candidate,
                cache_dir,
                key,
                lambda c, d, t=tech, cfg=config: t.apply(c, cfg, BuildContext(workload, d)),
            )
        candidate = candidate.with_session(**{k: v for k, v in config.items() if k in session})
    if backend == "torch_compile":
        # the runner compiles for the timed shape when it opens (see evaluate/runners.py)
        warmup = workload.latency_inputs(1)
        candidate = replace(candidate, info={**candidate.info, "warmup_inputs": warmup})
    return candidate


def trains(recipe: dict[str, Any], workload: Workload, cache_dir: Path) -> bool:
    """Whether building `recipe` would run a training loop: a torch step that trains
    (`TorchTechnique.trains`) and is not cached yet. What the early-stopping rule may save."""
    backend = recipe.get("runtime.backend", "onnxruntime")
    torch_steps, export_key = _torch_plan({**recipe, "runtime.backend": backend}, workload)
    if backend in ONNX_BACKENDS and (cache_dir / "models" / export_key / "model.onnx").exists():
        return False
    return any(
        tech.trains(config) and not (cache_dir / "torch" / key / "state.pt").exists()
        for tech, config, key in torch_steps
    )


def _torch_plan(recipe: dict[str, Any], workload: Workload) -> tuple[list, str]:
    """The active torch steps as (technique, config, cache key), each key chaining the ones
    before it from the workload's fingerprint, and the key of their ONNX export."""
    key = workload.fingerprint()
    torch_steps = []
    for tech in by_stage():
        if tech.stage == Stage.TORCH and tech.is_active(recipe):
            config = config_of(tech, recipe, workload)
            if tech.changes_model(config):
                # students trained with the logits loss (the old one was only right for
                # softmax outputs): a key of their own; others keep theirs (caches stay valid)
                salt = {"outputs": "logits"} if workload.output_kind == "logits" else {}
                key = _chain(key, tech.name, {**config, **salt})
                torch_steps.append((tech, config, key))
    return torch_steps, _chain(key, "export", EXPORT_SETTINGS)


def _check_streams(recipe: dict[str, Any]) -> None:
    """OpenVINO splits its threads between streams and quietly runs fewer streams than
    threads: a recipe that asks for more is infeasible, known before anything is built."""
    from autoaccel.machine import usable_cores

    if recipe["runtime.backend"] != "openvino":
        return
    streams = int(recipe.get("runtime.ov_streams", 1))
    threads = int(recipe.get("runtime.intra_op_threads", usable_cores()))
    if streams > threads:
        raise InfeasibleRecipe(
            f"OpenVINO cannot run runtime.ov_streams {streams} on {threads} thread(s); give "
            "each stream at least one thread",
            "openvino_streams",
        )


def _torch_stage(
    candidate: Candidate, workload: Workload, steps, cache_dir: Path, monitor=None
) -> Candidate:
    """Distil / prune the teacher. A trained result is cached as a state dict under
    `cache/torch/<key>/` and reloaded into the cheaply rebuilt architecture
    (`torch.load(weights_only=True)`), so a trial that shares it never trains again.

    A run not cached continues, where it can, a shorter run's checkpoint kept under
    `cache/torch/checkpoints/` (same teacher, start, loss, data and settings but the
    steps); the note says how many steps it ran and from which checkpoint."""
    import torch

    from autoaccel.compress.checkpoints import CheckpointStore
    from autoaccel.techniques._training import resumable

    model = workload.torch_model()
    store = CheckpointStore(cache_dir / "torch" / "checkpoints")
    store = store.keyed({"workload": workload.fingerprint()})  # the teacher
    seconds, notes = 0.0, list(candidate.notes)
    for tech, config, key in steps:
        folder = cache_dir / "torch" / key
        student = tech.structure(model, config, workload)
        if (folder / "state.pt").exists():
            student.load_state_dict(torch.load(folder / "state.pt", weights_only=True))
            meta = json.loads((folder / "meta.json").read_text())
            notes.append(f"{tech.describe(config)} (cached; trained {meta['seconds']:.0f} s)")
        else:
            watch = monitor(tech.name) if monitor is not None else None
            with resumable(store) as runs:
                spent = tech.train(student, workload.torch_model(), config, workload, watch)
            resumed = [(r.resumed_from, r.steps_run) for r in runs if r.resumed_from]
            seconds += spent
            bf16 = any(r.precision == "bf16" for r in runs)
            meta = {"seconds": spent, "config": config, "resumed": resumed}
            meta["precision"] = "bf16 autocast" if bf16 else "fp32"
            _save_state(folder, student.state_dict(), meta)
            how = f"trained {spent:.0f} s" + (", bf16 autocast" if bf16 else "")
            notes.append(f"{tech.describe(config)} ({how}{_continued(resumed)})")
        model = student.eval()
    return replace(candidate, torch_model=model, train_seconds=seconds, notes=tuple(notes))


def _continued(resumed: list[tuple[int, int]]) -> str:
    """'; 280 steps run from the 120-step checkpoint' for a run that continued one."""
    return "".join(f"; {run} steps run from the {at}-step checkpoint" for at, run in resumed)


def _save_state(folder: Path, state: dict, meta: dict) -> None:
    import torch

    with _atomic_folder(folder) as tmp:
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps(meta, default=str))


@contextlib.contextmanager
def _atomic_folder(final: Path):
    """Yield a temporary sibling folder that becomes `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:  # another worker finished the same step first: keep theirs
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _moved(tech: Technique, config: dict[str, Any], workload: Workload) -> set[str]:
    """`tech.shapes_model` settings away from their default in `config`."""
    defaults = {p.name: p.default for p in tech.params(workload)}
    return {k for k in tech.shapes_model if k in config and config[k] != defaults.get(k)}


def _chain(key: str, step: str, config: dict[str, Any]) -> str:
    blob = json.dumps([key, step, config], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _step(candidate: Candidate, cache_dir: Path, key: str, make) -> Candidate:
    """Run `make(candidate, workdir)` once per key; later calls reuse its model file."""
    final = cache_dir / "models" / key
    if not (final / "model.onnx").exists():
        with _atomic_folder(final) as workdir:
            made = make(candidate, workdir)
            if made.onnx_path != workdir / "model.onnx":
                raise RuntimeError(f"build step wrote {made.onnx_path}, not {workdir}/model.onnx")
            added = made.notes[len(candidate.notes) :]
            meta = {"notes": list(added), "info": made.info}
            (workdir / "meta.json").write_text(json.dumps(meta, default=str))
    meta = json.loads((final / "meta.json").read_text())
    return replace(
        candidate,
        onnx_path=final / "model.onnx",
        torch_model=None,
        notes=(*candidate.notes, *meta["notes"]),
        info={**candidate.info, **meta["info"]},
    )


def _export(
    candidate: Candidate, workload: Workload, workdir: Path, changed: bool = False
) -> Candidate:
    """The given ONNX file as it is, unless torch steps changed its (converted) model."""
    out = workdir / "model.onnx"
    given = workload.onnx_model()
    if given is not None and not changed:
        copy_onnx(given, out)
        return replace(candidate, onnx_path=out)
    from autoaccel.builder.onnx_export import export_onnx

    model = candidate.torch_model or workload.torch_model()
    export_onnx(model, workload, out)
    return replace(
        candidate,
        onnx_path=out,
        notes=(*candidate.notes, "exported to ONNX"),
        info={**candidate.info, "fusion": workload.fusion_options(model)},
    )
