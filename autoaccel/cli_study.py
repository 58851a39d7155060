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
    """Open the MLflow UI over the search's store (Ctrl-C or SIGTERM stops it and its
    server)."""
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
    _check_port_free(host, port)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    page = start_page(f"http://{_url_host(host)}:{port}", _study_experiments(uri))
    typer.echo(f"MLflow UI on {page} (store {uri}); Ctrl-C to stop")
    code = _serve_until_stopped(cmd, env)
    if code not in (0, None):
        typer.secho(
            f"error: the MLflow server on port {port} stopped with exit code {code} "
            "(its output is above)",
            err=True,
            fg="red",
        )
        sys.exit(1)


def start_page(base: str, experiment_ids: list[str]) -> str:
    """The page `ui` sends a person to: the study's runs (its only experiment's runs tab),
    else the experiments list. The UI's own start page is its GenAI home, where no study is
    shown; `workflowType=machine_learning` keeps the runs view (Models column, charts)
    rather than the GenAI tabs (traces, evaluations) it would pick for the experiment."""
    query = "?workflowType=machine_learning"
    if len(experiment_ids) == 1:
        return f"{base}/#/experiments/{experiment_ids[0]}/runs{query}"
    return f"{base}/#/experiments{query}"


def _study_experiments(uri: str) -> list[str]:
    """The ids of the store's active experiments that hold runs (the studies; MLflow's
    Default one holds none), read through MLflow's client. Empty for a local SQLite store
    not made yet, or one that cannot be read: the experiments list is then the page."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        return [
            e.experiment_id
            for e in client.search_experiments()
            if client.search_runs([e.experiment_id], max_results=1)
        ]
    except Exception:  # the server still serves the store, or says why it cannot
        return []


def _url_host(host: str) -> str:
    """`host` as it stands in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _check_port_free(host: str, port: int) -> None:
    """A busy port is one line naming it and the option to change it (exit 2), not a server
    that logs "address already in use" and exits 0."""
    import errno
    import socket

    from autoaccel.errors import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as the server will: a port in TIME_WAIT is free, one with a listener is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is already in use (another `autoaccel ui` or "
                    "MLflow server?); stop it or pass --port with a free port"
                ) from None
            raise UserError(f"cannot serve on {host}:{port}: {exc.strerror}") from None


def _serve_until_stopped(cmd: list[str], env: dict[str, str]) -> int | None:
    """Run the MLflow server in a process group of its own and stop the whole group (its
    workers included) when this command gets SIGTERM, SIGINT (Ctrl-C) or SIGHUP, so no server
    is left holding the port. Returns the server's exit code, None when we stopped it."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    asked: list[float] = []  # when a stop signal came

    def stop(_signum, _frame) -> None:
        asked.append(time.monotonic())
        _signal_group(proc.pid, signal.SIGTERM)

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if asked and time.monotonic() - asked[0] > 10:
                    _signal_group(proc.pid, signal.SIGKILL)  # deaf to SIGTERM
    finally:
        _end_group(proc)  # the server's own workers too, whatever ended it
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if asked:
        typer.echo("stopped the MLflow UI")
        return None
    return code


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _end_group(proc) -> None:
    """SIGTERM to what is left of the server's group, SIGKILL after 5 s."""
    import signal
    import time

    if proc.poll() is None:
        proc.terminate()
    deadline = time.monotonic() + 5
    while _signal_group(proc.pid, signal.SIGTERM):
        proc.poll()  # reap the server itself so it does not count as left
        if time.monotonic() > deadline:
            _signal_group(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    try:
        proc.wait(timeout=5)
    except Exception:
        proc.kill()


def techniques() -> None:
    """List every technique and the parameters a search space may set."""
    from rich.console import Console
    from rich.table import Table

    from autoaccel.techniques import REGISTRY

    console = Console()
    rows = []
    for tech in REGISTRY.values():
        for p in tech.params(None):
            values = (
                ", ".join(map(str, p.choices))
                if p.choices is not None
                else f"{p.low:g} .. {p.high:g}"
            )
            when = "; ".join(_when(k, v) for k, v in {**tech.requires, **p.when}.items())
            rows.append((f"{tech.name}.{p.name}", values, str(p.default), when, p.help))
    width = max(len(r[0]) for r in rows)  # a key is what a user types: never cut
    if console.width >= 150:
        table = Table("key", "values", "default", "active when", "what it does")
        table.columns[0].no_wrap, table.columns[0].min_width = True, width
        for row in rows:
            table.add_row(*row)
    else:  # narrow: the key, then everything else in one wrapped column
        table = Table("key", "values (default) · active when · what it does", show_lines=True)
        table.columns[0].no_wrap, table.columns[0].min_width = True, width
        for key, values, default, when, what in rows:
            table.add_row(
                key,
                f"{values} (default {default})" + (f"\nwhen {when}" if when else "") + f"\n{what}",
            )
    console.print(table)
    console.print(
        "Hardware is not searched: every build is measured here and projected on each target "
        "of the space's top-level `targets:` block (names; plan grid: batch_size, data, "
        "tensor, pipeline, micro_batches) — see `autoaccel targets list`.",
        highlight=False,
    )


def _when(key: str, values) -> str:
    """`runtime.backend = onnxruntime`, or `quantize.mode in int8_dynamic, int8_static`."""
    values = list(values)
    if len(values) == 1:
        return f"{key} = {values[0]}"
    return f"{key} in {', '.join(map(str, values))}"


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
