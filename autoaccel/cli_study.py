"""The `autoaccel` commands over a finished or running study: `ui`, `techniques`, `report` and
`export`. Plain functions; `autoaccel.cli` registers them on its app (in `--help` order).

Heavy libraries are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

StudyOpt = Annotated[
    str | None, typer.Option(help="Study name (default: the only study in the storage).")
]
RunsDirOpt = Annotated[Path, typer.Option(help="The runs folder of your searches.")]
StorageOpt = Annotated[
    str | None, typer.Option(help="Optuna storage URL (default sqlite:///<runs-dir>/optuna.db).")
]
TrackingOpt = Annotated[
    str | None, typer.Option(help="MLflow tracking URI (default sqlite:///<runs-dir>/mlflow.db).")
]


def ui(
    runs_dir: Annotated[Path, typer.Option(help="The runs folder of your searches.")] = Path(
        "runs"
    ),
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow store (default sqlite:///<runs-dir>/mlflow.db).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 5000,
) -> None:
    """Open the MLflow UI over the search's store (Ctrl-C stops it)."""
    import subprocess

    from autoaccel.config import RunPaths
    from autoaccel.errors import UserError

    paths = RunPaths(runs_dir)
    uri = tracking_uri or paths.tracking_uri()
    if tracking_uri is None and not (paths.root / "mlflow.db").exists():
        raise UserError(
            f"no MLflow store at {paths.root / 'mlflow.db'}; run `autoaccel search` "
            "first or pass --runs-dir/--tracking-uri"
        )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        paths.artifacts.as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    typer.echo(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C to stop")
    try:
        subprocess.run(cmd, env=env, check=False)
    except KeyboardInterrupt:
        pass


def techniques() -> None:
    """List every technique and the parameters a search space may set."""
    from rich.console import Console
    from rich.table import Table

    from autoaccel.techniques import REGISTRY

    table = Table("key", "values", "default", "active when", "what it does")
    for tech in REGISTRY.values():
        for p in tech.params(None):
            values = (
                ", ".join(map(str, p.choices))
                if p.choices is not None
                else f"{p.low:g} .. {p.high:g}"
            )
            when = " & ".join(f"{k} in {list(v)}" for k, v in {**tech.requires, **p.when}.items())
            table.add_row(f"{tech.name}.{p.name}", values, str(p.default), when, p.help)
    console = Console()
    console.print(table)
    console.print(
        "Hardware is not searched: every build is measured here and projected on each target "
        "of the space's top-level `targets:` block (names; plan grid: batch_size, data, "
        "tensor, pipeline, micro_batches) — see `autoaccel targets list`.",
        highlight=False,
    )


def _log_to_parent(paths, tracking_uri: str | None, study: str, files: list[Path]) -> None:
    """Attach files to the study's latest MLflow parent run, when there is a store."""
    from autoaccel.tracking import Tracker

    if tracking_uri or (paths.root / "mlflow.db").exists():
        tracker = Tracker(tracking_uri or paths.tracking_uri(), study, paths.artifacts)
        if (parent := tracker.latest_parent()) is not None:
            tracker.log_files(parent, files)
            typer.echo(f"logged to MLflow run {parent}")


def report(
    study: StudyOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.md/report.html (default runs/<study>).")
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    prefer: Annotated[
        str, typer.Option(help="Recommendation objective: latency, cost or energy.")
    ] = "latency",
) -> None:
    """Write the hardware-selection report (Markdown + self-contained HTML) of a study and log
    it to the study's latest MLflow parent run."""
    from autoaccel.config import RunPaths
    from autoaccel.errors import UserError
    from autoaccel.report import write_report
    from autoaccel.study import load_existing_study

    if prefer not in ("latency", "cost", "energy"):
        raise UserError(f"--prefer {prefer!r}: use latency, cost or energy")
    paths = RunPaths(runs_dir)
    found = load_existing_study(study, storage or paths.storage_url())
    folder = out or paths.study_dir(found.study_name)
    md, html_path = write_report(found, folder, prefer=prefer)
    _log_to_parent(paths, tracking_uri, found.study_name, [md, html_path])
    typer.echo(f"wrote {html_path} and {md}")


def export(
    out: Annotated[Path, typer.Option(help="Where to write the ONNX model (sidecar: .json).")],
    recommended: Annotated[
        bool, typer.Option("--recommended", help="Export the study's recommendation.")
    ] = False,
    trial: Annotated[int | None, typer.Option(help="Export this trial instead.")] = None,
    study: StudyOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    prefer: Annotated[
        str, typer.Option(help="With --recommended: latency, cost or energy.")
    ] = "latency",
    workload: Annotated[
        str | None, typer.Option(help="Override the workload the study recorded.")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="Override: your ONNX model.")] = None,
    data: Annotated[Path | None, typer.Option(help="Override: your .npz data.")] = None,
    tolerance: Annotated[
        float,
        typer.Option(help="Largest allowed difference of the re-checked quality (metric units)."),
    ] = 0.002,
) -> None:
    """Rebuild a trial's model from its recorded recipe, re-check its quality, and write the
    ONNX file plus a JSON sidecar (recipe, runtime settings, expected figures)."""
    from autoaccel.config import RunPaths
    from autoaccel.errors import UserError
    from autoaccel.export import ExportMismatch, export_trial, pick_trial
    from autoaccel.study import load_existing_study

    if recommended == (trial is not None):
        raise UserError("give exactly one of --recommended or --trial N")
    if out.suffix != ".onnx":
        raise UserError(f"--out {out}: name the model file with .onnx (e.g. model.onnx)")
    paths = RunPaths(runs_dir)
    found = load_existing_study(study, storage or paths.storage_url())
    frozen = pick_trial(found, trial, prefer)
    wl = None
    if workload or model or data:
        from autoaccel.workloads import load_workload

        wl = load_workload(workload, paths.cache, model, data)
    try:
        done = export_trial(found, frozen, out, paths.cache, wl, tolerance)
    except ExportMismatch as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(1)
    typer.echo(
        f"trial {done.trial}: wrote {done.model} and {done.sidecar}; quality re-checked "
        f"{done.quality:.4f} (recorded {done.recorded:.4f})"
    )
    _log_to_parent(paths, tracking_uri, found.study_name, [done.model, done.sidecar])
