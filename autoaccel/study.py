"""The Optuna study: storage, sampler, budget, and the guard against mixing studies.

Objectives: quality (maximize) and latency in ms (minimize). The accuracy limit is an Optuna
constraint (`trial.set_constraint`, feasible when <= 0), which Optuna's samplers and
`study.best_trials` honour.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from autoaccel.errors import UserError
from autoaccel.stores import disk_message, disk_problem, prepare_sqlite_store, sqlite_path, summary
from autoaccel.workers import counted, sqlite_lock

DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "nsga2", "random")
FINISHED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.FAIL,
    optuna.trial.TrialState.PRUNED,
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_study_name(name: str) -> str:
    if not _NAME.match(name):
        raise UserError(
            f"--study {name!r}: use letters, digits, '.', '_' or '-' (no spaces or path "
            "separators), at most 100 characters"
        )
    return name


def make_sampler(name: str, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=max(4, min(20, budget // 4))
        )
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            group=True,  # conditional parameters (e.g. calibration only for int8 static)
            constant_liar=True,  # concurrent workers don't all try the same point
            n_startup_trials=max(4, min(10, budget // 4)),
        )
    raise UserError(f"--sampler {name!r}: use one of {', '.join(SAMPLERS)}")


RETRY_DELAYS_S = (1, 2, 4, 8, 15, 30)
"""Waits between tries when the database connection drops: about a minute in all, enough for
a database restart or a fail-over; then the search stops with one line and can be resumed."""

_CONNECTION_LOST = (
    "could not connect",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "connection to server",
    "connection reset",
    "connection timed out",
    "timeout expired",
    "the database system is",
    "lost connection",
    "gone away",
    "ssl syscall error",
)


_REFUSED = ("authentication failed", "does not exist", "permission denied", "no password")


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` (or its cause) is a dropped or refused database connection: worth
    retrying, unlike a wrong password or a missing table."""
    from sqlalchemy.exc import DBAPIError

    while exc is not None:
        text = str(exc).lower()
        if any(marker in text for marker in _REFUSED):
            return False  # the server answered and said no: retrying cannot help
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        if any(marker in text for marker in _CONNECTION_LOST):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retrying(method):
    import functools

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if getattr(_retrying_now, "active", False):  # a wrapped call inside another one:
            return method(self, *args, **kwargs)  # the outer one retries the whole call
        _retrying_now.active = True
        try:
            return _with_retries(method, self, *args, **kwargs)
        finally:
            _retrying_now.active = False

    return call


_retrying_now = threading.local()


def _with_retries(method, self, *args, **kwargs):
    """`method`, tried again after each wait of `RETRY_DELAYS_S` while the connection is
    lost; then StoreUnavailable (one line, exit 2, resumable)."""
    import time

    for wait in (*RETRY_DELAYS_S, None):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if disk_problem(exc):  # waiting cannot help; stop with what is done kept
                path = sqlite_path(self.url)
                raise StoreUnavailable(disk_message(exc, path.parent if path else None)) from None
            if not connection_lost(exc):
                raise
            if wait is None:
                raise StoreLost(
                    f"the study store stopped answering ({_one_line(exc)}) after "
                    f"{len(RETRY_DELAYS_S) + 1} tries over {sum(RETRY_DELAYS_S)} s; when "
                    "it is back, run the same command to continue (the trial that was "
                    "running is failed and nothing finished is lost)"
                ) from None
            warnings.warn(
                f"study store connection lost ({_one_line(exc)}); retrying in {wait} s",
                stacklevel=2,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


class StoreUnavailable(UserError):
    """The study store cannot be used: its disk is full or read-only, or its database went
    away (`StoreLost`). What was done is kept; the same command continues."""


class StoreLost(StoreUnavailable):
    """The database went away mid-search and did not come back within the retries."""


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose every call is retried with backoff (`RETRY_DELAYS_S`) when
    the database connection drops; SQLAlchemy's pre-ping replaces stale pooled connections."""


for _name in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    "record_heartbeat",
    # what Optuna's _CachedStorage calls on the storage it wraps
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    "_get_trials",
    "_set_trial_param",
):
    setattr(RetryingRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage (SQLite, PostgreSQL, MySQL) with Optuna's heartbeat, so trials of a
    worker that died are failed by the others (`autoaccel.workers`), and with retries when
    a database server's connection drops."""
    from autoaccel.workers import GRACE_S, HEARTBEAT_S, tune_sqlite

    # the ask-and-tell loop starts each trial's heartbeat itself (autoaccel.workers.heartbeat)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    sqlite = url.startswith("sqlite")
    storage = RetryingRDBStorage(
        url,
        engine_kwargs={} if sqlite else {"pool_pre_ping": True},
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
    )
    if sqlite:
        tune_sqlite(storage.engine)
    return storage


def open_study(
    name: str,
    storage: str,
    sampler: optuna.samplers.BaseSampler,
    identity: dict[str, Any],
    note: Callable[[str], None] | None = None,
) -> optuna.Study:
    """Create or continue a study; refuse to continue one made for a different job. A local
    SQLite store is made whole first (`autoaccel.stores`: built aside and moved into place,
    or upgraded with a backup); `note` gets the one-line notes that say so (default: stderr).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with sqlite_lock(storage):  # workers starting at once race on a new store
            prepare_sqlite_store(storage, "optuna", note)
            study = _create(name, storage, sampler)
    except UserError:
        raise
    except Exception as exc:
        if disk_problem(exc):
            path = sqlite_path(storage)
            raise UserError(disk_message(exc, path.parent if path else None)) from None
        raise UserError(
            f"--storage {shown_url(storage)}: cannot open the study store ({_one_line(exc)}); "
            "check the URL and that the database is reachable and writable"
        ) from None
    recorded = study.user_attrs.get("identity")
    if recorded is None:
        study.set_user_attr("identity", identity)
    elif recorded != identity:
        keys = [*identity, *(k for k in recorded if k not in identity)]
        diffs = [k for k in keys if recorded.get(k) != identity.get(k)]
        raise UserError(
            f"study {name!r} was created with a different {', '.join(diffs)} "
            f"({', '.join(f'{k}={recorded.get(k)!r}' for k in diffs)}); "
            "give a new --study name to start a separate study"
        )
    return study


def _create(name: str, url: str, sampler) -> optuna.Study:
    """Create or load the study. Workers starting together on a new database race to create
    its tables and the study (a server's unique-key error, SQLite's "already exists"): the
    loser waits a moment and tries again, then finds what the winner made."""
    import random
    import time

    for attempt in range(6):
        try:
            return optuna.create_study(
                study_name=name,
                storage=make_storage(url),
                sampler=sampler,
                directions=list(DIRECTIONS),
                load_if_exists=True,
            )
        except Exception as exc:
            text = str(exc).lower()
            raced = any(m in text for m in ("already exists", "duplicate key", "unique"))
            if not raced or attempt == 5:
                raise
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


def load_existing_study(name: str | None, storage: str) -> optuna.Study:
    """An existing study (for `report`, `export`): never creates a store or a study."""
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).exists():
        raise UserError(
            f"--storage {storage}: no such study store; run `autoaccel search` first or pass "
            "--runs-dir/--storage"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        names = optuna.get_all_study_names(storage=storage)
    except Exception as exc:
        raise UserError(
            f"--storage {shown_url(storage)}: cannot open it ({_one_line(exc)})"
        ) from None
    if name is None:
        if len(names) != 1:
            listed = ", ".join(names) or "none"
            raise UserError(f"give --study NAME; the store holds these studies: {listed}")
        name = names[0]
    if name not in names:
        raise UserError(
            f"--study {name!r}: no such study in {shown_url(storage)}; "
            f"known: {', '.join(names) or 'none'}"
        )
    return optuna.load_study(study_name=name, storage=storage)


def finished_count(study: optuna.Study, budget: int) -> int:
    """Finished trials that count toward `budget` (`workers.counted`: surplus ones, asked by a
    concurrent worker after the budget was reached, do not; repeats are free up to it)."""
    return counted(study.get_trials(deepcopy=False, states=FINISHED), budget)


def shown_url(url: str) -> str:
    """A database URL fit to print or log: the password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def _one_line(exc: BaseException) -> str:
    """The error's own words for a lost connection: the innermost exception of the chain
    that names it (psycopg's "connection refused", not Optuna's "exception raised during
    the commit ... invalid data" wrapper around it), else the error itself."""
    said, link = exc, exc
    while link is not None:
        if any(marker in str(link).lower() for marker in _CONNECTION_LOST):
            said = link
        link = link.__cause__ or link.__context__
    return summary(said)
