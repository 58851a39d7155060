"""`autoaccel` command line. Heavy libraries are imported inside commands so `--help` is fast.

This module is the entry point (`main`, the app, `search`); the other commands are in
`autoaccel.cli_study` (ui, techniques, report, export) and `autoaccel.cli_targets` (calibrate,
targets list|show).

Bad input (a `UserError`) prints one line and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from autoaccel.cli_study import export, report, techniques, ui
from autoaccel.cli_targets import calibrate, targets_app

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
        Path | None,
        typer.Option(
            help="Your own model, with --data instead of --workload: a local Hugging Face "
            "folder (config.json + weights + tokenizer or image processor; nothing is "
            "downloaded), an .onnx file, or a TorchScript / torch.export program (.pt, .pt2)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Judging data for --model: a .csv, .tsv, .jsonl or .parquet table, or a "
            "folder of images per class (a model folder); an .npz with one array per model "
            "input by its name (or x_val), optional y_val labels and <input>_calib arrays (a "
            "model file). Without --train-data a fixed 20 % of it calibrates and trains, and "
            "the search says which."
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="What a model folder does, where its config.json does not say: "
            "text-classification, sentence-embedding or image-classification."
        ),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            help="The table's text column, or two (a,b) for pairs. Default: text_a,text_b, "
            "sentence1,sentence2, text or sentence, the first present."
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            help="The table's class column (the model's id2label names or class indices). "
            "Default: label."
        ),
    ] = None,
    score_column: Annotated[
        str | None,
        typer.Option(
            help="The table's similarity rating of each pair (sentence embeddings: judged by "
            "Spearman of cosine vs it). Default: score."
        ),
    ] = None,
    train_data: Annotated[
        Path | None,
        typer.Option(
            help="Data that calibrates and trains (distillation, fine-tuning), in the format "
            "of --data, labels optional; then all of --data judges."
        ),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option(help="Token limit of a text model folder (default: its max_seq_length)."),
    ] = None,
    judge_rows: Annotated[
        int | None,
        typer.Option(help="Judge every build on N judging rows (a fixed subset), not all."),
    ] = None,
    space: Annotated[
        str,
        typer.Option(
            help="Search space: a name in search_spaces/ (default, quick) or a YAML path."
        ),
    ] = "default",
    budget: Annotated[
        int | None,
        typer.Option(
            help="Total finished trials the study should have; re-running continues up to it "
            "(default 20; with --time-budget alone, no trial limit)."
        ),
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            help="Wall-clock budget of this run, e.g. 45m, 1h30m, 600s: the search ends at the "
            "first trial boundary after it and writes every output. With --budget, whichever "
            "comes first; a resumed search gets a new time budget."
        ),
    ] = None,
    max_accuracy_drop: Annotated[
        float,
        typer.Option(
            help="Accuracy limit: the largest allowed drop of the workload's quality metric "
            "below the baseline, in the metric's own units (0.01 = 1 point of top-1 accuracy, "
            "or 0.01 Spearman), not a percentage: half the metric's range or more is refused."
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
    limit: Annotated[
        list[str] | None,
        typer.Option(
            help="More limits, NAME=DROP, repeatable (--limit task_quality=0.01 --limit "
            "teacher_recall_at_10=0.2): a candidate is feasible only within every one; each "
            "NAME a figure the workload reports. One on --metric replaces --max-accuracy-drop."
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
            help="Comma-separated hardware targets every build is projected on (autoaccel "
            "targets list); default: every profile. Every trial is measured here on cpu-local "
            "(and cuda-local when a CUDA GPU is present) whatever this says."
        ),
    ] = None,
    trial_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds one candidate may take (build, training, evaluation); past it the "
            "candidate is stopped and its trial fails. Default: 5x the study's median trial, at "
            "least 10 min (30 min until 5 trials have finished)."
        ),
    ] = None,
    recombine: Annotated[
        int | None,
        typer.Option(
            help="Trials kept at the end to re-pair models with builds, train smaller ones, "
            "sweep runtimes x formats; default: budget/4 (20+), at most 25; 0: off."
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
    from autoaccel.config import MAX_BUDGET, SearchConfig
    from autoaccel.console import SearchDisplay
    from autoaccel.errors import UserError
    from autoaccel.search_run import Search

    cfg = SearchConfig.build(
        workload=workload,
        model=model,
        data=data,
        workload_options=_options(
            task=task,
            text_column=text_column,
            label_column=label_column,
            score_column=score_column,
            train_data=None if train_data is None else str(train_data),
            max_length=max_length,
            judge_rows=judge_rows,
        ),
        space=space,
        budget=budget,
        time_budget=time_budget,
        max_accuracy_drop=max_accuracy_drop,
        metric=metric,
        limits=limit or [],
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
        recombine=recombine,
        isolate=isolate,
    )
    if not 1 <= n_jobs <= 64:
        raise UserError(f"--n-jobs {n_jobs}: use 1 to 64 worker processes")
    helpers = _start_workers(n_jobs - 1)
    display = SearchDisplay(None if cfg.budget == MAX_BUDGET else cfg.budget)
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


# The other commands live in their own modules (plain functions, no import of this one);
# registering them here, after `search`, keeps `--help`'s order.
app.command()(ui)
app.command()(techniques)
app.command()(report)
app.command()(export)
app.command()(calibrate)
app.add_typer(targets_app, name="targets")


def _options(**given: str | int | None) -> dict[str, str | int]:
    return {k: v for k, v in given.items() if v is not None}  # the workload validates them


def _split(value: str | None) -> list[str] | None:
    """ "a, b" -> ["a", "b"]; None stays None."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


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
    except OSError as exc:  # a full or read-only disk while writing outputs: not a bug
        from autoaccel.stores import disk_message, disk_problem

        if _DEBUG["on"] or disk_problem(exc) not in ("full", "read-only"):
            raise
        _fail(disk_message(exc, None), 2)
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
