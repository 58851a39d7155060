"""Stores are created whole or not at all, upgraded on a copy with a backup, and a full or
read-only disk stops a search with one line that names the folder, nothing corrupted."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

import autoaccel
from autoaccel import stores
from autoaccel.errors import UserError
from autoaccel.study import StoreUnavailable, make_sampler, make_storage, open_study
from autoaccel.tracking import Tracker

FAST = {"measure_seconds": 0.03, "space": "quick", "isolate": False, "targets": ["cpu-local"]}

KILLED_AT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    way, url, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = 0

    @event.listens_for(Engine, "before_cursor_execute")
    def kill_at(*_):  # SIGKILL this process as it sends its at-th SQL statement
        global count
        count += 1
        if count == at:
            os.kill(os.getpid(), signal.SIGKILL)

    if way == "mlflow-in-place":  # how autoaccel opened a new store before: MLflow builds it
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=url).search_experiments()
    elif way == "mlflow":
        from autoaccel.tracking import Tracker

        Tracker(url, "child", Path(url[len("sqlite:///"):]).parent / "mlartifacts")
    elif way == "optuna-in-place":
        import optuna

        optuna.storages.RDBStorage(url)
    elif way == "optuna":
        from autoaccel.study import make_sampler, open_study

        open_study("child", url, make_sampler("random", 0, 2), {})
    sys.exit(3)  # never killed: `at` lies past the end of the creation
    """
)


def _killed_at(way: str, url: str, statement: int) -> None:
    """Run a child that creates the store `way` and is killed at its `statement`-th SQL
    statement (a real SIGKILL, at a known point of the creation)."""
    child = subprocess.run(
        [sys.executable, "-c", KILLED_AT, way, url, str(statement)], capture_output=True
    )
    assert child.returncode == -signal.SIGKILL, (way, statement, child.stderr[-2000:])


def _revision(db: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(db)) as con:
        try:
            row = con.execute("select version_num from alembic_version").fetchone()
        except sqlite3.OperationalError:
            return None
    return row[0] if row else None


def _head(kind: stores.Kind, db: Path) -> str:
    return stores._script(kind, f"sqlite:///{db}").get_current_head()


def _work_files(folder: Path) -> list[str]:
    return sorted(
        p.name for p in folder.iterdir() if ".building-" in p.name or ".upgrading-" in p.name
    )


def test_a_new_store_appears_whole_under_its_name_and_is_left_alone_after(tmp_path):
    for kind in ("optuna", "mlflow"):
        db = tmp_path / f"{kind}.db"
        stores.prepare_sqlite_store(f"sqlite:///{db}", kind, note=pytest.fail)
        assert _revision(db) == _head(kind, db)
        made = db.stat().st_mtime_ns
        stores.prepare_sqlite_store(f"sqlite:///{db}", kind, note=pytest.fail)
        assert db.stat().st_mtime_ns == made  # whole already: not touched
    assert not _work_files(tmp_path)


@pytest.mark.chaos  # benchmarks/chaos.py injects this fault on every run
def test_store_creation_killed_at_several_points_then_a_search_in_the_folder_continues(
    tmp_path, monkeypatch, cache_teacher
):
    """MLflow's schema is ~1,700 statements: kills at the start, middle and end of it, both
    as MLflow itself builds it in place (how the chaos benchmark broke a runs folder: a
    half-migrated mlflow.db every later start refused) and as autoaccel now builds it
    aside; Optuna's likewise. Then the same folder takes a search to its budget."""
    monkeypatch.setenv("AUTOACCEL_STORE_TEMPLATES", str(tmp_path / "no-templates"))
    runs = cache_teacher(tmp_path / "runs")
    mlflow_db, optuna_db = runs / "mlflow.db", runs / "optuna.db"
    mlflow_url, optuna_url = f"sqlite:///{mlflow_db}", f"sqlite:///{optuna_db}"

    _killed_at("mlflow-in-place", mlflow_url, 900)  # mid-migration, in place
    half = _revision(mlflow_db)
    assert half is not None and half != _head("mlflow", mlflow_db)  # what MLflow refuses
    _killed_at("mlflow", mlflow_url, 40)  # rebuilding aside: killed in its first tables
    assert _revision(mlflow_db) == half  # the final name still holds the old remains
    _killed_at("mlflow", mlflow_url, 1200)  # killed late in the migrations, aside
    _killed_at("mlflow", mlflow_url, 1660)  # killed in the last statements, aside
    assert _revision(mlflow_db) == half
    assert any(n.startswith(".mlflow.db.building-") for n in _work_files(runs))  # the last
    # dead child's half-built store (each start clears those of the dead before it builds)
    _killed_at("optuna-in-place", optuna_url, 20)  # Optuna's tables half-created in place
    _killed_at("optuna", optuna_url, 30)  # and again aside

    result = autoaccel.search("seed-mlp", budget=2, runs_dir=runs, **FAST)

    assert result.n_trials == 2
    assert _revision(mlflow_db) == _head("mlflow", mlflow_db)
    assert _revision(optuna_db) == _head("optuna", optuna_db)
    assert not _work_files(runs)  # the dead children's work is cleared
    notes = " ".join(result.warnings)  # the search's notes reach its warnings
    assert "mlflow.db" in notes and "half-built by an interrupted start" in notes
    with contextlib.closing(sqlite3.connect(mlflow_db)) as con:
        trial_runs = con.execute(
            "select count(*) from tags where key = 'autoaccel.role' and value = 'trial'"
        ).fetchone()[0]
    assert trial_runs == 2


def _mlflow_at(db: Path, revision: str) -> None:
    """An MLflow store as an older MLflow left it: the initial schema migrated up to
    `revision` by MLflow's own migrations."""
    import sqlalchemy
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(str(engine.url))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


def test_an_old_mlflow_store_holding_runs_is_upgraded_on_a_copy_with_a_backup(tmp_path):
    db = tmp_path / "mlflow.db"
    old = "0a8213491aaa"  # an early schema (MLflow 1.x)
    _mlflow_at(db, old)
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute(
            "insert into experiments (experiment_id, name, artifact_location, lifecycle_stage)"
            " values (1, 'earlier', 'file:///nowhere', 'active')"
        )
        con.execute(
            "insert into runs (run_uuid, name, source_type, source_name, entry_point_name, "
            "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
            "artifact_uri, experiment_id) values ('abc', 'r', 'LOCAL', 's', 'e', 'u', "
            "'FINISHED', 1, 2, 'v', 'active', 'file:///nowhere/abc', 1)"
        )
    notes: list[str] = []

    tracker = Tracker(f"sqlite:///{db}", "new", tmp_path / "art", note=notes.append)

    assert _revision(db) == _head("mlflow", db)
    backup = tmp_path / f"mlflow.db.bak-{old}"
    assert _revision(backup) == old  # the original, as it was
    assert len(notes) == 1 and "upgraded the MLflow store" in notes[0] and backup.name in notes[0]
    earlier = tracker.client.get_experiment_by_name("earlier")
    assert [r.info.run_id for r in tracker.client.search_runs([earlier.experiment_id])] == ["abc"]
    assert not _work_files(tmp_path)


def test_an_old_optuna_store_holding_a_study_is_upgraded_with_a_backup(tmp_path):
    import optuna.storages._rdb as rdb
    from alembic import command
    from alembic.config import Config

    db = tmp_path / "optuna.db"
    url = f"sqlite:///{db}"
    config = Config(str(Path(rdb.__file__).parent / "alembic.ini"))
    config.set_main_option("script_location", str(Path(rdb.__file__).parent / "alembic"))
    config.set_main_option("sqlalchemy.url", url)
    with stores._root_logging_kept():
        command.upgrade(config, "v1.3.0.a")  # Optuna 1.3's schema
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("insert into version_info values (1, 12, '1.3.0')")
        con.execute("insert into studies values (1, 'earlier', 'MINIMIZE')")
        con.execute("insert into study_user_attributes values (1, 1, 'identity', '{\"a\": 1}')")
    notes: list[str] = []

    open_study("new", url, make_sampler("random", 0, 2), {}, note=notes.append)

    assert _revision(db) == _head("optuna", db)
    assert _revision(tmp_path / "optuna.db.bak-v1.3.0.a") == "v1.3.0.a"
    assert len(notes) == 1 and "upgraded the Optuna store" in notes[0]
    earlier = optuna.load_study(study_name="earlier", storage=url)
    assert earlier.user_attrs == {"identity": {"a": 1}}
    assert earlier.direction == optuna.study.StudyDirection.MINIMIZE


def test_a_store_made_by_a_newer_library_is_refused_in_one_line_with_the_fix(tmp_path):
    for kind in ("optuna", "mlflow"):
        db = tmp_path / f"{kind}.db"
        stores.prepare_sqlite_store(f"sqlite:///{db}", kind)
        with contextlib.closing(sqlite3.connect(db)) as con, con:
            con.execute("update alembic_version set version_num = 'f00dfeedf00d'")
        with pytest.raises(UserError) as refused:
            if kind == "mlflow":
                Tracker(f"sqlite:///{db}", "x", tmp_path / "art")
            else:
                open_study("x", f"sqlite:///{db}", make_sampler("random", 0, 2), {})
        message = str(refused.value)
        assert "\n" not in message and "made by a newer" in message
        assert f"pip install -U {kind}" in message and str(db) in message
        assert _revision(db) == "f00dfeedf00d"  # left as it was


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_full_study_store_stops_with_one_line_naming_the_folder_and_stays_whole(tmp_path):
    """A real SQLITE_FULL, without root: the store may not grow past its current pages."""
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = make_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)

    def no_room(dbapi_connection, _record):
        pages = dbapi_connection.execute("pragma page_count").fetchone()[0]
        dbapi_connection.execute(f"pragma max_page_count = {pages}")

    event.listen(storage.engine, "connect", no_room)
    storage.engine.dispose()
    with pytest.raises(StoreUnavailable) as full:
        for i in range(2000):
            study.set_user_attr(f"k{i}", "x" * 2000)
    message = str(full.value)
    assert "\n" not in message and str(tmp_path) in message and "the disk is full" in message
    assert "run the same command to continue" in message
    with contextlib.closing(sqlite3.connect(tmp_path / "optuna.db")) as con:
        assert con.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_an_unreachable_tracking_server_is_one_whole_line_with_the_fix(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(UserError) as refused:
        Tracker(f"http://127.0.0.1:{port}", "x", tmp_path)
    message = str(refused.value)
    assert "\n" not in message and "no MLflow server answers there" in message
    assert message.endswith("or give the URI of one that runs")


def test_a_long_error_is_cut_at_a_sentence_or_a_word_never_mid_word():
    mlflow_said = (
        "Detected out-of-date database schema (found version 75868b020152, but expected "
        "dc11669786a5). Take a backup of your database, then run 'mlflow db upgrade "
        "<database_uri>' to migrate your database to the latest schema. NOTE: schema "
        "migration may result in database downtime - please consult your database's docs."
    )
    assert stores.summary(mlflow_said, limit=200) == (
        "Detected out-of-date database schema (found version 75868b020152, but expected "
        "dc11669786a5)."
    )
    words = "word " * 100
    cut = stores.summary(words, limit=42)
    assert cut.endswith("word ...") and len(cut) <= 46
    assert stores.summary("short\nsecond line") == "short"


# -- a real full and read-only disk (a small tmpfs: needs root) ----------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _search(runs: Path, budget: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "autoaccel.cli", "search", "--workload", "seed-mlp"]
    cmd += ["--space", "quick", "--budget", str(budget), "--runs-dir", str(runs)]
    cmd += ["--measure-seconds", "0.03", "--no-isolate", "--targets", "cpu-local"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _fill(folder: Path) -> Path:
    """Take every free byte of `folder`'s file system (unbuffered: the last write fails)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def _whole(runs: Path, budget: int) -> None:
    """Both stores pass SQLite's integrity check; the study has `budget` finished trials,
    none RUNNING, and one MLflow run per trial."""
    for db in ("optuna.db", "mlflow.db"):
        with contextlib.closing(sqlite3.connect(runs / db)) as con:
            assert con.execute("pragma integrity_check").fetchone()[0] == "ok", db
    with contextlib.closing(sqlite3.connect(runs / "optuna.db")) as con:  # nothing held open
        trials = dict(con.execute("select number, state from trials"))
    assert "RUNNING" not in trials.values() and len(trials) == budget
    with contextlib.closing(sqlite3.connect(runs / "mlflow.db")) as con:
        numbers = [
            n
            for (n,) in con.execute(
                "select t.value from tags t join tags r on r.run_uuid = t.run_uuid "
                "and r.key = 'autoaccel.role' and r.value = 'trial' where t.key = 'trial'"
            )
        ]
    assert sorted(map(int, numbers)) == sorted(trials)


def test_a_full_then_read_only_disk_stops_in_one_line_and_the_same_command_continues(
    small_disk, cache_teacher
):
    runs = cache_teacher(small_disk / "runs")
    assert _search(runs, 1).returncode == 0
    _whole(runs, 1)

    filler = _fill(small_disk)
    full = _search(runs, 2)
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 2, full.stderr[-3000:]
    assert lines[-1].startswith("error: ") and "Traceback" not in full.stderr, full.stderr
    assert str(runs) in lines[-1] and "the disk is full" in lines[-1]
    assert "run the same command to continue" in lines[-1]
    filler.unlink()
    _whole(runs, 1)

    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        read_only = _search(runs, 2)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    lines = read_only.stderr.strip().splitlines()
    assert read_only.returncode == 2, read_only.stderr[-3000:]
    assert lines[-1].startswith("error: ") and "Traceback" not in read_only.stderr
    # refused before any store is opened (RunPaths.prepare), or by a store's first write
    assert str(runs) in lines[-1] and ("read-only" in lines[-1] or "not writable" in lines[-1])
    _whole(runs, 1)

    again = _search(runs, 2)
    assert again.returncode == 0, again.stderr[-3000:]
    _whole(runs, 2)


def test_a_new_store_is_copied_from_the_template_its_first_build_left(tmp_path, monkeypatch):
    """A new runs folder skips MLflow's ~1,700 migration statements: the first build keeps
    an empty copy per library version; a template that is not at the head is ignored."""
    from autoaccel import store_templates

    monkeypatch.setenv("AUTOACCEL_STORE_TEMPLATES", str(tmp_path / "templates"))
    first = tmp_path / "a" / "mlflow.db"
    first.parent.mkdir()
    stores.prepare_sqlite_store(f"sqlite:///{first}", "mlflow", note=pytest.fail)
    template = store_templates.template_path("mlflow", stores._version("mlflow"))
    assert template.is_file() and _revision(template) == _head("mlflow", first)
    statements = []
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def count(*_):
        statements.append(1)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        second = tmp_path / "b" / "mlflow.db"
        second.parent.mkdir()
        stores.prepare_sqlite_store(f"sqlite:///{second}", "mlflow", note=pytest.fail)
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert _revision(second) == _head("mlflow", second) and len(statements) < 50
    MlflowClient = pytest.importorskip("mlflow.tracking").MlflowClient
    assert MlflowClient(tracking_uri=f"sqlite:///{second}").search_experiments()  # usable
    # a template left at another revision (a bad copy) is not used: the store is built
    with contextlib.closing(sqlite3.connect(template)) as con:
        con.execute("update alembic_version set version_num = 'not-a-revision'")
        con.commit()
    third = tmp_path / "c" / "mlflow.db"
    third.parent.mkdir()
    stores.prepare_sqlite_store(f"sqlite:///{third}", "mlflow", note=pytest.fail)
    assert _revision(third) == _head("mlflow", third)
