"""The search configuration, validated once at the edge (CLI or Python API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoaccel.errors import UserError

if TYPE_CHECKING:
    from autoaccel.workloads.base import Workload


DEFAULT_BUDGET = 20
MAX_BUDGET = 100_000


class SearchConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    workload: str | None = Field(None, description="built-in name or package.module:factory")
    model: Path | None = None
    data: Path | None = None
    workload_options: dict[str, str | int] = Field(
        default_factory=dict,
        description="a model folder's task and data options (--task, --text-column, ...)",
    )
    space: str = "default"
    budget: int = Field(DEFAULT_BUDGET, ge=1, le=MAX_BUDGET)
    time_budget: float | None = Field(None, description="seconds; see autoaccel.time_limits")
    max_accuracy_drop: float = Field(0.01, ge=0.0)  # the upper bound: check_accuracy_drop
    metric: str | None = Field(None, description="the quality figure the limit applies to")
    limits: dict[str, float] = Field(
        default_factory=dict,
        description="more limits, each a figure the workload reports -> its largest allowed "
        "drop below the baseline (--limit NAME=DROP); one on `metric` replaces "
        "max_accuracy_drop",
    )
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    seed: int | None = Field(0, ge=0, le=2**31 - 1)  # numpy's seeds, with room to resume
    study: str | None = None
    runs_dir: Path = Path("runs")
    storage: str | None = None
    tracking_uri: str | None = None
    measure_seconds: float = Field(1.5, gt=0.0, le=120.0)
    prefer: Literal["latency", "cost", "energy"] = "latency"
    scenario: Literal["single-stream", "offline", "server"] = "single-stream"
    latency_bound_ms: float = Field(100.0, gt=0.0, le=1e6)
    arrival_rate: float | None = Field(None, gt=0.0, le=1e7)
    targets: list[str] | None = Field(
        None,
        description="hardware targets every build is projected on (default: the space's "
        "`targets.names`, else every profile); cpu-local is always measured",
    )
    isolate: bool = Field(True, description="judge candidates in a worker process of their own")
    trial_timeout: float | None = Field(None, gt=0.0, le=7 * 24 * 3600.0)
    recombine: int | None = Field(
        None,
        ge=0,
        le=MAX_BUDGET,
        description="trials kept at the end for re-pairing the cheapest models with the most "
        "efficient builds, for smaller models next to them and for the fastest models on every "
        "runtime and numeric format (autoaccel.recombine); None: a quarter of the budget, at "
        "most 25; 0: off",
    )

    def recombine_count(self) -> int:
        from autoaccel.recombine import auto_count

        return auto_count(self.budget) if self.recombine is None else self.recombine

    @classmethod
    def build(cls, **values) -> SearchConfig:
        """Validate, turning pydantic's report into one line that names the option. Budgets:
        trials, wall-clock time, or both (whichever comes first); with only a time budget the
        trial count is open."""
        from autoaccel.time_limits import parse_duration

        if values.get("time_budget") is not None:
            values["time_budget"] = parse_duration(values["time_budget"])
            if values.get("budget") is None:
                values["budget"] = MAX_BUDGET
        elif values.get("budget") is None:
            values.pop("budget", None)
        if isinstance(values.get("limits"), list | tuple):  # the CLI's NAME=DROP strings
            values["limits"] = parse_limits(values["limits"])
        try:
            cfg = cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
            raise UserError(f"--{field} {err.get('input')!r}: {err['msg']}") from None
        check_accuracy_drop(cfg.max_accuracy_drop)
        for name, drop in cfg.limits.items():
            check_accuracy_drop(drop, option=f"--limit {name}=")
        if cfg.trial_timeout is not None and not cfg.isolate:
            raise UserError(
                "--trial-timeout needs candidates in their own process to stop them: "
                "drop --no-isolate"
            )
        check_storage(cfg.storage, cfg.runs_dir)
        check_tracking_uri(cfg.tracking_uri)
        return cfg

    def check_limit(self, workload: Workload, figures: list[str]) -> SearchConfig:
        """The limits against the figures the workload reports (`figures`, its primary
        first), once it is loaded and before anything is written; returns the config with a
        `--limit` on the judged metric as its max_accuracy_drop and the other limits left."""
        for name in self.limits:
            if name not in figures:
                raise UserError(
                    f"--limit {name}=...: workload {workload.name} reports "
                    f"{', '.join(figures)}; use one of those"
                )
        main = self.limits.get(workload.metric, self.max_accuracy_drop)
        others = {k: v for k, v in sorted(self.limits.items()) if k != workload.metric}
        option = f"--limit {workload.metric}=" if workload.metric in self.limits else None
        check_accuracy_drop(main, workload.metric, workload.metric_range(), option)
        for name, drop in others.items():
            check_accuracy_drop(drop, name, workload.metric_ranges.get(name), f"--limit {name}=")
        return self.model_copy(update={"max_accuracy_drop": main, "limits": others})


def parse_limits(items: list[str] | tuple[str, ...]) -> dict[str, float]:
    """`--limit NAME=DROP` values as {name: drop}, one line naming any malformed one."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        try:
            drop = float(value) if sep and name.strip() else None
        except ValueError:
            drop = None
        if drop is None or drop != drop or drop < 0 or drop == float("inf"):
            raise UserError(
                f"--limit {item!r}: write NAME=DROP, a figure the workload reports and its "
                "largest allowed drop below the baseline, e.g. --limit teacher_cosine=0.01"
            )
        if name.strip() in out:
            raise UserError(f"--limit {name.strip()}: given twice; give each figure one limit")
        out[name.strip()] = drop
    return out


def check_accuracy_drop(
    drop: float,
    metric: str | None = None,
    bounds: tuple[float, float] | None = None,
    option: str | None = None,
) -> None:
    """Refuse a limit a person cannot mean, most often a percentage typed where the metric's
    own units belong (`1` for one point of accuracy in [0, 1] allows any model). Without the
    metric (the edge, before the workload loads): at most 1, as every quality figure here is
    a fraction. With its range: under half the range (a drop of half an accuracy scale, or
    one whole unit of Spearman, is no limit); with no known range: under 1."""
    flag = option or "--max-accuracy-drop "  # how the user wrote it: "--limit name="
    hint = (
        f"for {drop:g} point{'' if drop == 1 else 's'} use {flag}{drop / 100:g}"
        if drop <= 100
        else f"give a fraction, e.g. {flag}0.01 for one point"
    )
    option = f"{flag}{drop:g}"
    if metric is None:
        if drop > 1:
            raise UserError(
                f"{option}: must be less than or equal to 1, a drop in the metric's own units "
                f"(accuracy lies in [0, 1]); {hint}"
            )
        return
    if bounds is None:
        if drop >= 1:
            raise UserError(
                f"{option}: a whole unit of {metric}, no limit on a fraction (the workload "
                f"declares no range for {metric}); {hint}"
            )
        return
    low, high = bounds
    width = high - low
    if drop >= width / 2:
        allows = "any model" if drop >= width else f"{drop / width:.0%} of that range"
        raise UserError(
            f"{option}: the metric {metric} lies in [{low:g}, {high:g}], so a drop of "
            f"{drop:g} allows {allows}; {hint}"
        )


# Checks of the two store URLs before anything is written: a search that fails on them after
# it has begun leaves a runs folder, a study or an MLflow experiment behind.

_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}


def check_storage(url: str | None, runs_dir: Path) -> None:
    """`--storage`: an SQLAlchemy URL whose database is known, whose SQLite folder exists (or
    is the runs folder, which the search creates) and whose server, if any, answers."""
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(
            f"--storage {url}: not a database URL; use e.g. sqlite:///path/to/optuna.db "
            "or postgresql://user@host/db"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise UserError(
            f"--storage {shown}: unknown database {parsed.drivername!r}; use sqlite:///..., "
            "postgresql://... or mysql://..."
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        _check_sqlite_file("--storage", shown, parsed.database, runs_dir)
    elif parsed.host:
        port = parsed.port or _PORTS.get(backend)
        _check_reachable("--storage", shown, parsed.host, port, "the database server")


def check_tracking_uri(uri: str | None) -> None:
    """`--tracking-uri`: an SQLite store's folder must be creatable (MLflow creates it), and
    a server (http, a database) must answer now, not after minutes of retries."""
    if uri is None:
        return
    from urllib.parse import urlsplit

    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if scheme in ("http", "https"):
        try:
            parts = urlsplit(uri)
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise UserError(
                f"--tracking-uri {uri}: not a valid URL; use e.g. http://host:5000"
            ) from None
        if parts.hostname and not _proxied(parts.hostname):
            _check_reachable("--tracking-uri", uri, parts.hostname, port, "the MLflow server")
    elif scheme == "sqlite" or scheme in _PORTS:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(uri)
        except ArgumentError:
            raise UserError(
                f"--tracking-uri {uri}: not a database URL; use e.g. sqlite:///path/mlflow.db"
            ) from None
        if scheme == "sqlite":
            _check_sqlite_file("--tracking-uri", uri, parsed.database, None)
        elif parsed.host:
            port = parsed.port or _PORTS[scheme]
            shown = parsed.render_as_string(hide_password=True)
            _check_reachable("--tracking-uri", shown, parsed.host, port, "the database server")


def _check_sqlite_file(option: str, url: str, database: str | None, runs_dir: Path | None):
    """The SQLite file's folder must exist (or be `runs_dir`, which the search creates); with
    `runs_dir` None the folder may be missing as long as it can be created."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser().resolve()
    if path.is_dir():
        raise UserError(f"{option} {url}: {path} is a folder; name a database file in it")
    folder = path.parent
    if folder.is_dir() or (runs_dir is not None and folder == Path(runs_dir).resolve()):
        return
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if runs_dir is None and existing.is_dir():
        return  # MLflow creates the missing folders
    if not existing.is_dir():
        raise UserError(
            f"{option} {url}: {existing} is a file, not a folder; choose a path in a folder"
        )
    raise UserError(
        f"{option} {url}: folder {folder} does not exist; create it first or choose a path "
        "in an existing folder"
    )


def _proxied(host: str) -> bool:
    """Whether requests to `host` go through a proxy (then only the proxy can tell)."""
    import urllib.request

    return bool(urllib.request.getproxies()) and not urllib.request.proxy_bypass(host)


def _check_reachable(option: str, url: str, host: str, port: int | None, what: str) -> None:
    import socket

    if port is None:
        return
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UserError(
            f"{option} {url}: cannot reach {host}:{port} ({reason}); start {what} or correct "
            "the URL"
        ) from None


class RunPaths:
    """Where every output of a search lives; `--runs-dir` moves all of it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def prepare(self) -> RunPaths:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.cache.mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"--runs-dir {self.root}: cannot create it ({exc.strerror}); "
                "choose a folder you can write to"
            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise UserError(
                f"--runs-dir {self.root}: not writable; make it writable (or choose another "
                "folder) and run the same command to continue"
            )
        return self

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    def storage_url(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def study_dir(self, study: str) -> Path:
        return self.root / study
