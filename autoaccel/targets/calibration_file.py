"""The calibration file: `<runs>/calibration/cpu-local.json`, one entry per thread count.

`autoaccel.targets.calibrate` stores each fitted entry here (`store_calibration_entry`, merged
with the other thread counts' entries, written atomically); `apply_calibration` reads the entry
a session runs with (the nearest thread count calibrated) into the cpu-local profile. Besides
the fitted rates an entry records its evidence: host, cpu, when, threads, the 1-minute load
average while timing, the suite, the fit's median error and the memory bandwidth measured.

`user` holds the power and price the user set (`autoaccel calibrate --power-w W
--price-per-hour USD`), each `{value, source}` with the date it was set; they price every
measured point instead of the per-core assumptions. A file that is not valid is a one-line
`UserError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from autoaccel.errors import UserError
from autoaccel.targets.calibration_fit import FITTED, is_rate_key
from autoaccel.targets.profile import Figure, HardwareProfile

PROFILE_NAME = "cpu-local"
FORMAT = 1


def calibration_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / "calibration" / f"{PROFILE_NAME}.json"


USER_FIGURES = ("power_w", "price_per_hour_usd")


def store_calibration_entry(runs_dir: Path, threads: int, entry: dict[str, Any]) -> None:
    """Write `entry` as the `threads` entry of the calibration file, keeping the other thread
    counts' entries and the user's figures."""
    _update(runs_dir, entries={str(threads): entry})


def store_user_figures(runs_dir: Path, figures: dict[str, float], host: str) -> dict[str, Any]:
    """Keep the user's power (W) and price (USD per hour) of this machine; returns them as
    stored, each with a source naming the date it was set."""
    today = dt.date.today().isoformat()
    stored = {
        key: {"value": float(value), "source": f"set by the user on {today} (host {host})"}
        for key, value in figures.items()
        if key in USER_FIGURES
    }
    _update(runs_dir, user=stored)
    return stored


def _update(
    runs_dir: Path, entries: dict[str, Any] | None = None, user: dict[str, Any] | None = None
) -> None:
    path = calibration_path(runs_dir)
    data: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(UserError):  # a corrupt file is replaced, not merged
            data = _read_file(path)
    payload = {
        "format": FORMAT,
        "profile": PROFILE_NAME,
        "by_threads": {**data.get("by_threads", {}), **(entries or {})},
        "user": {**data.get("user", {}), **(user or {})},
    }
    _write_atomic(path, payload)


def _write_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def _read(path: Path) -> dict[str, dict[str, Any]]:
    """The file's entries by thread count, validated; anything wrong is a `UserError`."""
    return _read_file(path)["by_threads"]


def _read_file(path: Path) -> dict[str, Any]:
    """The whole file (`by_threads` entries, `user` figures), validated."""
    fix = "delete it or run autoaccel calibrate again"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read the calibration ({exc.strerror}); {fix}") from None
    except ValueError:
        raise UserError(f"{path}: the calibration is not valid JSON; {fix}") from None
    entries = data.get("by_threads") if isinstance(data, dict) else None
    user = (data.get("user") or {}) if isinstance(data, dict) else {}
    if not isinstance(user, dict) or not all(
        key in USER_FIGURES
        and isinstance(fig, dict)
        and _positive(fig.get("value"))
        and len(str(fig.get("source") or "")) >= 3
        for key, fig in user.items()
    ):
        raise UserError(
            f"{path}: user figures must be power_w / price_per_hour_usd, each a positive value "
            f"with a source; {fix}"
        )
    if not isinstance(entries, dict) or not (entries or user):
        raise UserError(f"{path}: no calibration entries (by_threads); {fix}")
    for threads, entry in entries.items():
        rates = (
            {k: v for k, v in entry.items() if is_rate_key(k)} if isinstance(entry, dict) else {}
        )
        bad = not str(threads).isdigit() or not set(FITTED) <= set(rates)
        bad = bad or not all(_positive(v) for v in rates.values())
        if bad:
            raise UserError(
                f"{path}: calibration entry {threads!r} lacks positive {', '.join(FITTED)}; {fix}"
            )
    return {"by_threads": entries, "user": user}


def load_user_figures(runs_dir: Path) -> dict[str, Figure]:
    """The power and price the user set for this machine (none set: empty)."""
    path = calibration_path(runs_dir)
    if not path.exists():
        return {}
    user = _read_file(path)["user"]
    return {k: Figure(value=float(v["value"]), source=str(v["source"])) for k, v in user.items()}


def calibration_entry(runs_dir: Path, threads: int) -> dict[str, Any] | None:
    """The stored entry for exactly `threads` intra-op threads, None if there is none."""
    path = calibration_path(runs_dir)
    return _read(path).get(str(threads)) if path.exists() else None


def calibrated_threads(runs_dir: Path) -> set[int]:
    """The intra-op thread counts `<runs_dir>/calibration/cpu-local.json` has entries for."""
    path = calibration_path(runs_dir)
    return {int(t) for t in _read(path)} if path.exists() else set()


def load_calibration(runs_dir: Path, threads: int | None = None) -> dict[str, float | str] | None:
    """The stored entry for `threads` (default: the usable cores; another count's entry if
    that one was never calibrated), as `HardwareProfile.calibrated` values; None if no file."""
    path = calibration_path(runs_dir)
    return read_calibration_file(path, threads) if path.exists() else None


def read_calibration_file(path: Path, threads: int | None = None) -> dict[str, float | str] | None:
    """`load_calibration` of the file at `path` (None when it holds only user figures)."""
    from autoaccel.machine import usable_cores

    entries = _read(path)
    if not entries:
        return None
    want = threads or usable_cores()
    key = min(entries, key=lambda t: (abs(int(t) - want), -int(t)))
    return {k: v for k, v in entries[key].items() if isinstance(v, int | float | str)}


def apply_calibration(
    profile: HardwareProfile, runs_dir: Path, threads: int | None = None
) -> HardwareProfile:
    """`profile` with this machine's calibration (for `threads` intra-op threads, default the
    usable cores) when it is cpu-local and `<runs_dir>/calibration/cpu-local.json` exists:
    the fitted rates, and the memory bandwidth measured with them (the rates are shares of
    it); otherwise `profile` unchanged. A corrupt file is a one-line `UserError`."""
    if profile.name != PROFILE_NAME:
        return profile
    data = load_calibration(runs_dir, threads)
    if data is None:
        return profile
    update: dict[str, Any] = {"calibrated": data}
    measured = data.get("memory_bandwidth_gbps")
    if _positive(measured):
        source = str(data.get("memory_bandwidth_source") or "measured here by the calibration")
        figure = Figure(value=float(measured), source=source)
        update["memory"] = profile.memory.model_copy(update={"bandwidth_gbps": figure})
    return profile.model_copy(update=update)
