"""What MLflow shows a person beyond the figures: trial run names that say the recipe, the
frontier as a table on the parent run, and the recommended model as an MLflow model (ONNX
flavour, with its input and output signature) registered under the study's name.

The MLflow calls go through `autoaccel.tracking.Tracker` (its client and its parent run);
this module decides what is shown.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from autoaccel.errors import describe
from autoaccel.evaluate.runners import ort_config_entries

_BACKENDS = {"onnxruntime": "ORT", "openvino": "OV", "torch_compile": "torch.compile"}
_QUANTIZE = {
    "int8_dynamic": "int8-dyn",
    "int8_static": "int8-static",
    "int4_weight": "int4-w",
    "fp16": "fp16",
}
_PRUNE = {"nm_2_4": "2:4", "structured": "struct", "unstructured": "sparse"}
_GRAPH_LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}  # ORT's enum values


def run_name(number: int, recipe: dict[str, Any]) -> str:
    """A trial run's name: its number and its recipe in a few words, e.g. "t7 ORT fused
    int8-dyn 2thr", so the runs list reads without opening each run (the number stays the
    `trial` tag, which is how runs are looked up)."""
    words = [f"t{number}"]
    backend = str(recipe.get("runtime.backend", "onnxruntime"))
    words.append(_BACKENDS.get(backend, backend))
    if recipe.get("runtime.ov_precision") not in (None, "f32"):
        words.append(str(recipe["runtime.ov_precision"]))
    if recipe.get("distill.mode") == "student":
        layers = recipe.get("distill.layers")
        words.append(f"student-{layers}L" if layers is not None else "student")
    prune = str(recipe.get("prune.mode", "none"))
    if prune != "none":
        word = _PRUNE.get(prune, prune.replace("_", "-"))
        amount = recipe.get("prune.amount")
        words.append(f"{word}-{float(amount):.0%}" if amount and prune != "nm_2_4" else word)
    if recipe.get("compile.fusion") in (True, "true", "True"):
        words.append("fused")
    quantize = str(recipe.get("quantize.mode", "none"))
    if quantize != "none":
        words.append(_QUANTIZE.get(quantize, quantize))
    if (threads := recipe.get("runtime.intra_op_threads")) is not None:
        words.append(f"{threads}thr")
    return " ".join(words)


def frontier_table(front: list, recommended: int | None) -> Any:
    """The measured frontier (fastest first) as a DataFrame for MLflow's table view: the
    columns of `frontier.csv`, the speedup's interval, which point is recommended, each
    point's run name, then the recipe."""
    import pandas as pd

    rows = []
    for p in front:
        ci = p.speedup_ci or (None, None)
        rows.append(
            {
                "trial": p.trial,
                "run": run_name(p.trial, p.recipe),
                "recommended": p.trial == recommended,
                "description": p.description,
                "target": p.target,
                "accuracy": p.accuracy,
                "accuracy_drop": p.accuracy_drop,
                "latency_ms": p.latency_ms,
                "latency_p90_ms": p.latency_p90_ms,
                "latency_source": p.latency_source,
                "speedup": p.speedup,
                "speedup_ci_low": ci[0],
                "speedup_ci_high": ci[1],
                "confirmed": p.confirmed,
                "size_mb": p.size_mb,
                **{k: str(v) for k, v in sorted(p.recipe.items())},
            }
        )
    return pd.DataFrame(rows)


def log_recommended(search, name: str, pick: dict[str, Any]) -> str | None:
    """Log the recommended recipe's ONNX model on the parent run and register it under the
    study's name (`name`). The file is the one the search built (the build cache); its
    signature is the workload's latency inputs and what the model returns for them. A model
    that cannot be logged is a warning with its reason, never a failed search; while the
    tracking server does not answer, it is logged when it answers again. Returns the
    registered version, or None (already logged on this run, the warning, or later)."""
    try:
        from autoaccel.export import onnx_build

        if search.tracker.offline:  # logged when the server answers again
            search.tracker.defer(log_recommended, search, name, pick)
            return None
        candidate = onnx_build(pick["recipe"], search.workload, search.paths.cache)
        signature = _signature(candidate.onnx_path, search.workload.latency_inputs(1))
        tags = {"study": name, "trial": str(pick["trial"])}
        tags["description"] = str(pick.get("description", ""))
        return log_model(
            search.tracker,
            candidate.onnx_path,
            name,
            signature,
            params=pick["recipe"],
            tags=tags,
            session_options=session_options(candidate),
        )
    except Exception as exc:  # the outputs are written regardless: say why, go on
        reason = describe(exc)
        search.emit(
            "warning", f"the recommended model was not logged to MLflow ({name}): {reason}"
        )
        return None


def log_model(
    tracker,
    model: Path,
    registered_name: str,
    signature: Any,
    params: dict[str, Any],
    tags: dict[str, str],
    session_options: dict[str, Any] | None = None,
) -> str | None:
    """`model` (an ONNX file) as an MLflow model of the tracker's parent run (ONNX flavour,
    with `signature`), registered as a new version of `registered_name`. None when that run
    already holds a version for the same `tags["trial"]` (a re-run that added no trial and
    recommends the same).

    The logged model is created here, in the parent run's experiment: given only `run_id`
    and no active run, `mlflow.onnx.log_model` files it under the Default experiment (and
    its files under that experiment's folder, the launching directory's `mlruns/0`), where
    the runs table's Models column, which searches the run's own experiment for logged
    models by `source_run_id`, never finds it."""
    import mlflow.onnx
    import onnx

    run_id = tracker.ensure_parent(adopt=True)
    if run_id is None:
        raise RuntimeError(f"the MLflow server at {tracker.uri} does not answer")
    there = tracker.client.search_model_versions(
        f"name = '{registered_name}' and run_id = '{run_id}'"
    )
    if any(v.tags.get("trial") == tags.get("trial") for v in there):
        return None
    graph = onnx.load(str(model))
    logged = _create_logged_model(tracker.client, run_id, params, tags)
    with contextlib.redirect_stderr(io.StringIO()):  # "Successfully registered model ..."
        info = mlflow.onnx.log_model(
            graph,
            name="model",
            model_id=logged.model_id,
            run_id=run_id,
            signature=signature,
            registered_model_name=registered_name,
            pip_requirements=mlflow.onnx.get_default_pip_requirements(),  # else inferred: slow
            onnx_session_options=session_options,
            tags=tags,  # the registered version's
        )
    return str(info.registered_model_version)


def _create_logged_model(client, run_id: str, params: dict[str, Any], tags: dict[str, str]):
    """A pending logged model of `run_id`, in that run's experiment, with what
    `mlflow.onnx.log_model` would have given it: the run's params over `params`, `tags`
    with MLflow's context tags (user, source)."""
    from mlflow.tracking.context import registry as context

    run = client.get_run(run_id)
    merged = {**params, **run.data.params}
    return client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name="model",
        source_run_id=run_id,
        params={k: str(v) for k, v in merged.items()},
        tags={k: str(v) for k, v in context.resolve_tags(tags).items()},
    )


def session_options(candidate) -> dict[str, Any] | None:
    """The recipe's ONNX Runtime settings in MLflow's `onnx_session_options` form, so the
    served model runs as it was measured (None for a graph another runtime ran)."""
    if candidate.backend != "onnxruntime":
        return None
    session = candidate.session
    out: dict[str, Any] = {}
    if "graph_level" in session:
        out["graph_optimization_level"] = _GRAPH_LEVELS[session["graph_level"]]
    if "intra_op_threads" in session:
        out["intra_op_num_threads"] = int(session["intra_op_threads"])
    if "execution_mode" in session:
        parallel = session["execution_mode"] == "parallel"
        out["execution_mode"] = "parallel" if parallel else "sequential"
        out["inter_op_num_threads"] = 0 if parallel else 1
    if entries := ort_config_entries(session):
        out["extra_session_config"] = entries
    return out or None


def _signature(model: Path, inputs: dict[str, Any]):
    """Inputs and outputs as the model takes and gives them (the batch dimension left
    free), from one run of the workload's latency inputs."""
    import onnxruntime as ort
    from mlflow.models import infer_signature

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, inputs), strict=True))
    return infer_signature(inputs, outputs)
