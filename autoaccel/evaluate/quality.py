"""Quality, judged once per built model.

The same model file is often run by several trials: the same build with other threads,
execution mode, OpenVINO streams or hints, which change how fast it runs but not what it
computes. Its quality is judged once and kept under `<cache>/quality/<key>.json`, the key
being the workload's fingerprint, the model's content hash and the runtime's arithmetic
(`numerics`): the engine, and OpenVINO's inference precision (bf16 computes other numbers).
torch.compile's quality is eager torch's (its runner judges quality eagerly and checks every
compiled shape against eager), so the two share.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from autoaccel.techniques import Candidate
from autoaccel.workloads.base import Predict, Workload


def numerics(candidate: Candidate) -> str:
    """The part of the runtime settings that changes the numbers a model computes."""
    if candidate.backend == "openvino":
        return f"openvino-{candidate.session.get('ov_precision', 'f32')}"
    if candidate.backend == "torch_compile":
        return "torch"
    return candidate.backend


def model_digest(candidate: Candidate) -> str:
    """Content hash of the built model: its ONNX file (and external data beside it), or the
    torch module's structure and weights."""
    h = hashlib.sha256()
    if candidate.onnx_path is not None:
        path = Path(candidate.onnx_path)
        memo = path.with_name(path.name + ".sha256")
        if memo.exists():  # model files in the build cache never change once written
            return memo.read_text().strip()
        for part in sorted(path.parent.glob(path.name + "*")):
            if part.suffix != ".sha256" and part.is_file():
                with part.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
        digest = h.hexdigest()
        _write_atomic(memo, digest)
        return digest
    model = candidate.torch_model
    h.update(repr(model).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def quality_key(candidate: Candidate, workload: Workload) -> str:
    blob = json.dumps([workload.fingerprint(), model_digest(candidate), numerics(candidate)])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def judge_quality(
    candidate: Candidate, workload: Workload, predict: Predict, cache_dir: Path
) -> tuple[dict[str, float], bool]:
    """The workload's quality figures for this model, and whether they came from the cache.
    Non-finite figures mean broken outputs: ValueError, never cached."""
    path = cache_dir / "quality" / f"{quality_key(candidate, workload)}.json"
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            return {k: float(v) for k, v in stored["quality"].items()}, True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: judge again and rewrite it
    t0 = time.perf_counter()
    quality = workload.evaluate(predict)
    bad = [k for k, v in quality.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"non-finite quality figure(s) {bad}: the candidate's outputs are broken")
    record: dict[str, Any] = {
        "quality": quality,
        "numerics": numerics(candidate),
        "seconds": time.perf_counter() - t0,
    }
    _write_atomic(path, json.dumps(record))
    return quality, False


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
