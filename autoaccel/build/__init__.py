"""Turn a recipe into a runnable candidate: torch model -> ONNX -> graph passes -> quantize.

Every model-changing step is cached under `<cache>/models/<key>/model.onnx`, where the key
chains the workload's fingerprint with each step's model-changing settings, so trials that
share a prefix (same fusion, different threads) never rebuild it. A step is built in a
temporary folder that is renamed into place: a crash never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from autoaccel.errors import InfeasibleRecipe
from autoaccel.techniques import BuildContext, Candidate, Stage, by_stage, config_of
from autoaccel.workloads.base import Workload

EXPORT_SETTINGS = {"opset": 17, "exporter": "torchscript"}


def build_candidate(recipe: dict[str, Any], workload: Workload, cache_dir: Path) -> Candidate:
    """Build the candidate a recipe describes, reusing cached steps."""
    backend = recipe.get("runtime.backend", "onnxruntime")
    recipe = {**recipe, "runtime.backend": backend}  # techniques' conditions read it
    if backend == "torch":
        if not workload.torch_model_available():
            raise InfeasibleRecipe(f"{workload.name} has no torch model to run in PyTorch")
        candidate = Candidate(backend="torch", torch_model=workload.torch_model())
    else:
        candidate = Candidate(backend="onnxruntime")
    key = workload.fingerprint()
    for tech in by_stage():
        if backend == "onnxruntime" and tech.stage > Stage.TORCH and candidate.onnx_path is None:
            key = _chain(key, "export", EXPORT_SETTINGS)
            candidate = _step(candidate, cache_dir, key, lambda c, d: _export(c, workload, d))
        if not tech.is_active(recipe):
            continue
        config = config_of(tech, recipe, workload)
        session = {p.name for p in tech.params(workload) if p.session}
        if tech.changes_model(config):
            model_config = {k: v for k, v in config.items() if k not in session}
            key = _chain(key, tech.name, model_config)
            candidate = _step(
                candidate,
                cache_dir,
                key,
                lambda c, d, t=tech, cfg=config: t.apply(c, cfg, BuildContext(workload, d)),
            )
        candidate = candidate.with_session(**{k: v for k, v in config.items() if k in session})
    return candidate


def _chain(key: str, step: str, config: dict[str, Any]) -> str:
    blob = json.dumps([key, step, config], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _step(candidate: Candidate, cache_dir: Path, key: str, make) -> Candidate:
    """Run `make(candidate, workdir)` once per key; later calls reuse its model file."""
    final = cache_dir / "models" / key
    if not (final / "model.onnx").exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
        try:
            made = make(candidate, workdir)
            if made.onnx_path != workdir / "model.onnx":
                raise RuntimeError(f"build step wrote {made.onnx_path}, not {workdir}/model.onnx")
            added = made.notes[len(candidate.notes) :]
            (workdir / "notes.json").write_text(json.dumps(list(added)))
            try:
                os.rename(workdir, final)
            except OSError:  # another worker finished the same step first: use theirs
                if not (final / "model.onnx").exists():
                    raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    notes = json.loads((final / "notes.json").read_text())
    return replace(
        candidate,
        onnx_path=final / "model.onnx",
        torch_model=None,
        notes=(*candidate.notes, *notes),
    )


def _export(candidate: Candidate, workload: Workload, workdir: Path) -> Candidate:
    out = workdir / "model.onnx"
    given = workload.onnx_model()
    if given is not None:
        shutil.copyfile(given, out)
        return replace(candidate, onnx_path=out)
    from autoaccel.build.export import export_onnx

    export_onnx(candidate.torch_model or workload.torch_model(), workload, out)
    return replace(candidate, onnx_path=out, notes=(*candidate.notes, "exported to ONNX"))
