"""Local SQLite stores (Optuna's study store, MLflow's tracking store) that are whole or absent.

Why: MLflow builds its SQLite schema with about 1,700 statements over dozens of migrations
(4 s on 2 cores) and SQLite runs schema changes outside one transaction; a `kill -9` in
those seconds left `mlflow.db` at a half-way revision that MLflow, and so every later start,
refused. So:

- a new store is built beside its final name (`.mlflow.db.building-<pid>`) and moved into
  place (`os.replace`, atomic) only when its schema is at the head revision: the final name
  never holds half a store;
- a store found behind the head revision and holding nothing (what an interrupted start of
  an earlier autoaccel left) is set aside and built again;
- a store from an older MLflow or Optuna that holds data is upgraded on a copy with the
  library's own migrations, the original kept as `<name>.bak-<revision>`, and the copy moved
  into place only when complete, with a one-line note.

Every step runs under the caller's `autoaccel.workers.sqlite_lock`. Server databases
(PostgreSQL, MySQL) are left to their own transactions.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from autoaccel.errors import UserError

Kind = Literal["optuna", "mlflow"]
_SIBLINGS = ("-journal", "-wal", "-shm")
_WORK = (".building-", ".upgrading-")


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///` URL; None for any other store."""
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def stderr_note(message: str) -> None:
    """Where a note goes when the caller gives no `note` (one line on stderr)."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def prepare_sqlite_store(url: str, kind: Kind, note: Callable[[str], None] | None = None) -> None:
    """Make the SQLite store at `url` whole and at this library's head schema before it is
    opened: build it aside if missing, rebuild it if an interrupted start left it half-made,
    upgrade it (with a backup) if an older library made it. Call under `sqlite_lock`."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        return  # another kind of store, or a missing folder the store reports itself
    note = note or stderr_note
    for noisy in ("mlflow", "alembic"):  # schema-migration chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        _remove_abandoned_work(path)
        if not path.exists():
            _build(path, kind)
            return
        current, head, known, empty = _inspect(path, kind)
        if current == head:
            return
        if current is not None and current not in known:
            raise UserError(
                f"{path}: this {_LABEL[kind]} store was made by a newer {_LABEL[kind]} "
                f"(schema {current}; this one, {_version(kind)}, knows up to {head}); "
                f"upgrade it here (pip install -U {kind}) or pass another --runs-dir"
            )
        if empty:  # replaced whole: the remains stay under the name until then
            _build(path, kind)
            note(
                f"{path.name} in {path.parent} was left half-built by an interrupted start "
                f"(schema {current or 'none'}) and held nothing; built it again"
            )
            return
        backup = _upgrade(path, kind, current, head)
        note(
            f"upgraded the {_LABEL[kind]} store {path} from schema {current or 'none'} to "
            f"{head} ({_LABEL[kind]} {_version(kind)}); the old one is kept as {backup.name}"
        )
    except UserError:
        raise
    except Exception as exc:
        if disk_problem(exc):
            raise UserError(disk_message(exc, path.parent)) from None
        raise


_LABEL = {"optuna": "Optuna", "mlflow": "MLflow"}


def _version(kind: Kind) -> str:
    import importlib.metadata

    return importlib.metadata.version(kind)


def _script(kind: Kind, url: str):
    """The library's own alembic migrations (what `mlflow db upgrade` and `optuna storage
    upgrade` run)."""
    from alembic.script import ScriptDirectory

    if kind == "mlflow":
        from mlflow.store.db.utils import _get_alembic_config

        return ScriptDirectory.from_config(_get_alembic_config(url))
    import optuna.storages._rdb as rdb

    return ScriptDirectory(str(Path(rdb.__file__).parent / "alembic"))


def _inspect(path: Path, kind: Kind) -> tuple[str | None, str, set[str], bool]:
    """(current revision or None, head revision, known revisions, holds no data). Plain
    sqlite3: opening it rolls back a hot journal or recovers a WAL, as SQLite does."""
    script = _script(kind, f"sqlite:///{path}")
    head = script.get_current_head()
    known = {r.revision for r in script.walk_revisions()}
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as con:
        tables = {n for (n,) in con.execute("select name from sqlite_master where type='table'")}
        current = None
        if "alembic_version" in tables:
            row = con.execute("select version_num from alembic_version").fetchone()
            current = row[0] if row else None

        def rows(table: str, where: str = "") -> int:
            return con.execute(f'select count(*) from "{table}" {where}').fetchone()[0]

        if kind == "optuna":
            empty = "studies" not in tables or rows("studies") == 0
        else:  # data is anything beyond the default experiment and workspace
            skip = {"alembic_version", "workspaces", "experiments"}
            empty = all(rows(t) == 0 for t in tables - skip if not t.startswith("sqlite_"))
            if "experiments" in tables:
                empty = empty and rows("experiments", "where experiment_id != 0") == 0
    return current, head, known, empty


def _build(path: Path, kind: Kind) -> None:
    """A new store at the head schema, made under a temporary name and moved into place."""
    from autoaccel.store_templates import copy_template, save_template

    work = path.with_name(f".{path.name}.building-{os.getpid()}")
    _remove(work)
    version = _version(kind)
    if copy_template(kind, version, work):
        try:
            _check_head(work, kind)
        except Exception:  # not a store at this version's head: build it as below
            _remove(work)
        else:
            _move_into_place(work, path)
            return
    url = f"sqlite:///{work}"
    if kind == "mlflow":
        import sqlalchemy
        from mlflow.store.db.utils import _initialize_tables

        engine = sqlalchemy.create_engine(url)
        try:
            _initialize_tables(engine)  # what MLflow's own store does on a new database
        finally:
            engine.dispose()
    else:
        import optuna

        storage = optuna.storages.RDBStorage(url)
        storage.engine.dispose()
    _check_head(work, kind)
    with contextlib.closing(sqlite3.connect(work)) as con:  # a template holds no WAL
        con.execute("pragma journal_mode=delete")
    save_template(kind, version, work)
    _move_into_place(work, path)


def _upgrade(path: Path, kind: Kind, current: str | None, head: str) -> Path:
    """Upgrade a copy, keep the original as `<name>.bak-<revision>`, then move the copy into
    place: killed at any moment, the store under its name is the old or the new one, whole."""
    backup = path.with_name(f"{path.name}.bak-{current or 'unversioned'}")
    if backup.exists():
        import time

        backup = backup.with_name(f"{backup.name}-{time.strftime('%Y%m%dT%H%M%S')}")
    _snapshot(path, backup)
    work = path.with_name(f".{path.name}.upgrading-{os.getpid()}")
    _snapshot(path, work)
    url = f"sqlite:///{work}"
    try:
        if kind == "mlflow":
            import sqlalchemy
            from mlflow.store.db.utils import _upgrade_db

            engine = sqlalchemy.create_engine(url)
            try:
                _upgrade_db(engine)  # what `mlflow db upgrade` runs
            finally:
                engine.dispose()
        else:
            import optuna

            storage = optuna.storages.RDBStorage(  # what `optuna storage upgrade` opens
                url, skip_compatibility_check=True, skip_table_creation=True
            )
            with _root_logging_kept():
                storage.upgrade()
            storage.engine.dispose()
        _check_head(work, kind)
    except Exception as exc:
        _remove(work)
        if disk_problem(exc):
            raise
        raise UserError(
            f"{path}: cannot upgrade this {_LABEL[kind]} store from schema {current} to "
            f"{head} ({summary(exc)}); it is left as it was: open it with the "
            f"{_LABEL[kind]} version that made it, or move it away to start a new store"
        ) from None
    _move_into_place(work, path)
    return backup


@contextlib.contextmanager
def _root_logging_kept():
    """Optuna's migration environment configures logging from its alembic.ini (disabling
    every existing logger) when the root logger has no handler; give it one meanwhile."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _check_head(path: Path, kind: Kind) -> None:
    current, head, _, _ = _inspect(path, kind)
    if current != head:
        raise RuntimeError(f"{path.name}: schema {current} after migrating, not {head}")


def _snapshot(source: Path, target: Path) -> None:
    """A consistent copy through SQLite's backup API (committed pages, WAL included)."""
    partial = target.with_name(f"{target.name}.partial")
    _remove(partial)
    with (
        contextlib.closing(sqlite3.connect(source, timeout=30)) as src,
        contextlib.closing(sqlite3.connect(partial)) as dst,
    ):
        src.backup(dst)
    _sync(partial)
    os.replace(partial, target)


def _move_into_place(work: Path, path: Path) -> None:
    """Atomically replace `path` by the finished `work` store. The old file's journal, WAL
    and shared-memory files go first: SQLite would apply them to the new file."""
    with contextlib.closing(sqlite3.connect(work)) as con:  # no WAL of its own to leave
        con.execute("pragma journal_mode=delete")
    _sync(work)
    for suffix in _SIBLINGS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    os.replace(work, path)
    _sync(path.parent)


def _remove(path: Path) -> None:
    for name in (str(path), *(f"{path}{s}" for s in _SIBLINGS)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _remove_abandoned_work(path: Path) -> None:
    """Temporary stores of processes that died while building or upgrading (their pid is in
    the name: a live one, on this machine, is still working)."""
    for stale in path.parent.glob(f".{path.name}.*-*"):
        mark = next((m for m in _WORK if m in stale.name), None)
        if mark is None:
            continue
        pid = stale.name.split(mark, 1)[1].split("-", 1)[0].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    for partial in path.parent.glob(f"{path.name}.bak-*.partial"):  # an unfinished backup
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sync(path: Path) -> None:
    """Flush to disk before a rename relies on it (a power cut must not leave an empty file
    under the final name)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- errors a person can act on ------------------------------------------------------------

_FULL = ("database or disk is full", "no space left on device", "disk quota exceeded")
_READ_ONLY = ("attempt to write a readonly database", "read-only file system")
_IO = ("disk i/o error",)  # SQLite's word for a write refused below it (often a full disk)

Problem = Literal["full", "read-only", "io"]


def disk_problem(exc: BaseException) -> Problem | None:
    """Whether `exc` (or its cause) is a full, read-only or failing disk rather than a bug."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return "full"
        if isinstance(seen, OSError) and seen.errno == errno.EROFS:
            return "read-only"
        text = str(seen).lower()
        for markers, problem in ((_FULL, "full"), (_READ_ONLY, "read-only"), (_IO, "io")):
            if any(marker in text for marker in markers):
                return problem
        seen = seen.__cause__ or seen.__context__
    return None


def disk_message(
    exc: BaseException, folder: Path | None, server: str = "the database server"
) -> str:
    """One line for a full or read-only disk: the folder (or the `server` whose disk it is),
    the cause, and how to continue."""
    filename = getattr(exc, "filename", None)
    if folder is None and filename:
        folder = Path(filename).parent
    where = f"{folder}" if folder is not None else f"{server}'s disk"
    continue_ = "then run the same command to continue (finished trials are kept)"
    problem = disk_problem(exc)
    if problem == "io" and folder is not None and _free_bytes(folder) < 1 << 20:
        problem = "full"
    if problem == "read-only":
        return (
            f"{where}: cannot write there, the file system is read-only ({summary(exc)}); "
            f"make it writable or pass another --runs-dir, {continue_}"
        )
    if problem == "io":
        return (
            f"{where}: a write there failed ({summary(exc)}); check that the disk has space "
            f"and works (dmesg), or pass another --runs-dir, {continue_}"
        )
    return (
        f"{where}: the disk is full ({summary(exc)}); free some space there or pass another "
        f"--runs-dir, {continue_}"
    )


def _free_bytes(folder: Path) -> int:
    import shutil

    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 30  # unknown: do not claim it is full


def summary(exc: BaseException | str, limit: int = 240) -> str:
    """The first line of an error, whole: a long one ends at its last full sentence or word
    before `limit`, never mid-word."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    text = " ".join(lines[0].split())
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    sentence = head.rfind(". ")
    if sentence >= 40:  # a whole sentence reads better than most of a second one
        return head[: sentence + 1]
    return head[: head.rfind(" ")].rstrip(",;:( ") + " ..."
