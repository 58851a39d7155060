"""`autoaccel` command line. Heavy libraries are imported inside commands so `--help` is fast.

Bad input (a `UserError`) prints one line and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find the fastest way to run a trained model within an accuracy limit.",
    pretty_exceptions_enable=False,
)

_DEBUG = {"on": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    _DEBUG["on"] = debug


@app.command()
def search(
    workload: Annotated[
        str | None,
        typer.Option(
            help="Built-in workload (minilm, minilm-search, seed-mlp, digits-cnn) or "
            "package.module:factory "
            "(imports and runs your code). Default: minilm."
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Your own ONNX model (with --data instead of --workload).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help=".npz with x_val, y_val (labels) and optional x_calib, for --model."),
    ] = None,
    space: Annotated[
        str,
        typer.Option(
            help="Search space: a name in search_spaces/ (default, quick) or a YAML path."
        ),
    ] = "default",
    budget: Annotated[
        int,
        typer.Option(
            help="Total finished trials the study should have; re-running continues up to it."
        ),
    ] = 20,
    max_accuracy_drop: Annotated[
        float,
        typer.Option(
            help="Accuracy limit: the largest allowed drop of the workload's quality metric "
            "below the baseline, in the metric's own units (0.01 = 1 point of top-1 accuracy, "
            "or 0.01 Spearman)."
        ),
    ] = 0.01,
    metric: Annotated[
        str | None,
        typer.Option(
            help="The quality figure the accuracy limit applies to and the search maximises "
            "(default: the workload's primary one). minilm also offers teacher_cosine and "
            "teacher_recall_at_10 (agreement with the fp32 model's vectors) and its three "
            "task scores; a wrong name lists what the workload offers."
        ),
    ] = None,
    sampler: Annotated[str, typer.Option(help="Optuna sampler: tpe, nsga2 or random.")] = "tpe",
    seed: Annotated[int, typer.Option(help="Sampler seed (reproducible searches).")] = 0,
    study: Annotated[
        str | None,
        typer.Option(
            help="Study name (default: <workload>-<space>); the same name continues a study."
        ),
    ] = None,
    runs_dir: Annotated[
        Path, typer.Option(help="Folder for every output: stores, cache, study folders.")
    ] = Path("runs"),
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL (default sqlite:///<runs-dir>/optuna.db)."),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default sqlite:///<runs-dir>/mlflow.db)."),
    ] = None,
    measure_seconds: Annotated[
        float, typer.Option(help="Timed-run budget per candidate, seconds (after warm-up).")
    ] = 1.5,
    prefer: Annotated[
        str,
        typer.Option(
            help="What the recommendation minimises among candidates within the accuracy "
            "limit: latency, cost ($ per million inferences) or energy (J per inference)."
        ),
    ] = "latency",
    scenario: Annotated[
        str,
        typer.Option(
            help="What the study optimises (after MLPerf Inference): single-stream (batch-1 "
            "latency), offline (throughput at the best batch size) or server (queries per "
            "second under --latency-bound-ms with dynamic batching, simulated from measured "
            "batch latencies)."
        ),
    ] = "single-stream",
    latency_bound_ms: Annotated[
        float, typer.Option(help="server: the p99 latency bound in ms.")
    ] = 100.0,
    arrival_rate: Annotated[
        float | None,
        typer.Option(help="server: also report p50/p99 at this Poisson arrival rate (qps)."),
    ] = None,
    n_jobs: Annotated[
        int,
        typer.Option(
            help="Worker processes on this study (each runs trials; timings never overlap, "
            "but training shares the cores)."
        ),
    ] = 1,
    targets: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated hardware profiles to search over (autoaccel targets list); "
            "cpu-local is measured, the others estimated. Default: the space's list, else all."
        ),
    ] = None,
    trial_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds one candidate may take (build, training, evaluation); past it the "
            "candidate is stopped and its trial fails. Default: no limit."
        ),
    ] = None,
    isolate: Annotated[
        bool,
        typer.Option(
            help="Judge candidates in a worker process of their own, so a crash or hang in "
            "native code fails one trial, not the search. --no-isolate saves the worker's "
            "start-up (seconds) at that risk."
        ),
    ] = True,
) -> None:
    """Search acceleration recipes; write the frontier and a recommendation."""
    from autoaccel.config import SearchConfig
    from autoaccel.console import SearchDisplay
    from autoaccel.errors import UserError
    from autoaccel.search_run import Search

    cfg = SearchConfig.build(
        workload=workload,
        model=model,
        data=data,
        space=space,
        budget=budget,
        max_accuracy_drop=max_accuracy_drop,
        metric=metric,
        sampler=sampler,
        seed=seed,
        study=study,
        runs_dir=runs_dir,
        storage=storage,
        tracking_uri=tracking_uri,
        measure_seconds=measure_seconds,
        targets=_split(targets),
        prefer=prefer,
        scenario=scenario,
        latency_bound_ms=latency_bound_ms,
        arrival_rate=arrival_rate,
        trial_timeout=trial_timeout,
        isolate=isolate,
    )
    if not 1 <= n_jobs <= 64:
        raise UserError(f"--n-jobs {n_jobs}: use 1 to 64 worker processes")
    helpers = _start_workers(n_jobs - 1)
    display = SearchDisplay(cfg.budget)
    try:
        with display:
            result = Search(cfg, display.handle).run()
    finally:
        failed = _stop_workers(helpers)
    display.final(result)
    if failed:
        raise UserError(f"{failed} of {n_jobs - 1} extra worker(s) failed; see their trials")


def _start_workers(count: int) -> list:
    """`count` more `autoaccel search` processes with this command's arguments (without
    --n-jobs): they join the same study, so the budget is shared exactly (autoaccel.workers)."""
    import subprocess

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--n-jobs":
            skip = True
        elif not arg.startswith("--n-jobs="):
            args.append(arg)
    cmd = [sys.executable, "-m", "autoaccel.cli", *args]
    quiet = subprocess.DEVNULL
    return [subprocess.Popen(cmd, stdout=quiet, stderr=quiet) for _ in range(count)]


def _stop_workers(workers: list) -> int:
    """Wait for the extra workers (stop them if this one was interrupted); how many failed."""
    import subprocess

    failed = 0
    for proc in workers:
        try:
            failed += proc.wait() != 0
        except KeyboardInterrupt:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return failed


@app.command()
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


@app.command()
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
    Console().print(table)


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


def _log_to_parent(paths, tracking_uri: str | None, study: str, files: list[Path]) -> None:
    """Attach files to the study's latest MLflow parent run, when there is a store."""
    from autoaccel.tracking import Tracker

    if tracking_uri or (paths.root / "mlflow.db").exists():
        tracker = Tracker(tracking_uri or paths.tracking_uri(), study, paths.artifacts)
        if (parent := tracker.latest_parent()) is not None:
            tracker.log_files(parent, files)
            typer.echo(f"logged to MLflow run {parent}")


@app.command()
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


@app.command()
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


@app.command()
def calibrate(
    runs_dir: Annotated[Path, typer.Option(help="Where the calibration is kept.")] = Path("runs"),
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads to calibrate (default: usable cores).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Fewer micro-benchmarks (a smoke run).")] = False,
) -> None:
    """Fit the cpu-local cost model to micro-benchmarks timed on this machine; estimates for
    cpu-local (e.g. in benchmarks/costmodel_fidelity.py) use it from then on."""
    from autoaccel.config import RunPaths
    from autoaccel.targets.calibrate import calibrate as run_calibration
    from autoaccel.targets.calibrate import calibration_path

    paths = RunPaths(runs_dir).prepare()
    typer.echo("timing micro-benchmarks (keep the machine otherwise idle) ...")
    fitted = run_calibration(paths.root, threads=threads, quick=quick)
    shown = ", ".join(
        f"{k} {v:.3g}" for k, v in fitted.items() if isinstance(v, float) and "eta" in k
    )
    typer.echo(
        f"cpu-local, {fitted.get('threads')} threads: {shown}; fit error (median) "
        f"{fitted.get('fit_mdape', float('nan')):.1f} % -> {calibration_path(paths.root)}"
    )


targets_app = typer.Typer(
    help="Hardware targets: the profiles in hardware_profiles/.", no_args_is_help=True
)
app.add_typer(targets_app, name="targets")


@targets_app.command("list")
def targets_list() -> None:
    """One line per target: kind, main peak rates, memory bandwidth, power, how it is timed."""
    from rich.console import Console
    from rich.table import Column, Table

    from autoaccel.targets.profile import load_profiles

    table = Table("kind", "peak (dense, TOPS)", "memory GB/s", "power W", "latency")
    table.columns.insert(0, Column("target", no_wrap=True))
    for name, prof in load_profiles().items():
        peaks = ", ".join(f"{p} {f.value:.4g}" for p, f in prof.peak_tops.items())
        how = "measured" if name == "cpu-local" else f"estimated:{name}"
        table.add_row(
            name,
            prof.kind,
            peaks,
            f"{prof.memory.bandwidth_gbps.value:g}",
            f"{prof.power_w.value:g}",
            how,
        )
    Console().print(table)


@targets_app.command("show")
def targets_show(name: Annotated[str, typer.Argument(help="A target from `targets list`.")]):
    """Every figure of one profile with its source."""
    import yaml

    from autoaccel.errors import UserError
    from autoaccel.targets.profile import load_profiles

    profiles = load_profiles()
    if name not in profiles:
        raise UserError(
            f"targets show {name}: no such target; choose from {', '.join(profiles)} "
            "(autoaccel targets list)"
        )
    prof = profiles[name]
    typer.echo(yaml.safe_dump(prof.model_dump(exclude_none=True), sort_keys=False, width=99))


def _split(value: str | None) -> list[str] | None:
    """ "a, b" -> ["a", "b"]; None stays None."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def main() -> None:
    """The console script: bad input of any kind (a `UserError` from our validation, or a
    command-line usage error from click) is one `error:` line on stderr and exit code 2."""
    from autoaccel.errors import UserError

    try:  # typer 0.2x vendors click; its exceptions are not click's
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older typer on the real click
        from click import exceptions as click

    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        if _DEBUG["on"]:
            raise
        _fail(str(exc), 2)
    except click.NoArgsIsHelpError as exc:  # bare `autoaccel`: help was printed
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # unknown option or command, wrong type, missing option
        where = exc.ctx.command_path if exc.ctx is not None else "autoaccel"
        _fail(f"{_one_line(exc.format_message()).rstrip('.')}; see `{where} --help`", 2)
    except click.ClickException as exc:
        _fail(_one_line(exc.format_message()), exc.exit_code)
    except KeyboardInterrupt:
        code = 130
    if code == 130:  # typer turns Ctrl-C into exit code 130
        typer.secho(
            "interrupted: the frontier so far is written; run the same command to continue",
            err=True,
        )
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(f"error: {_one_line(message)}", err=True, fg="red")
    sys.exit(code)


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    main()
