"""The calibration file: `<runs>/calibration/cpu-local.json`, one entry per thread count.

`autoaccel.targets.calibrate` stores each fitted entry here (`store_calibration_entry`, merged
with the other thread counts' entries, written atomically); `apply_calibration` reads the entry
a session runs with (the nearest thread count calibrated) into the cpu-local profile. A file
that is not valid is a one-line `UserError`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from autoaccel.errors import UserError
from autoaccel.targets.calibration_fit import FITTED, is_rate_key
from autoaccel.targets.profile import HardwareProfile

PROFILE_NAME = "cpu-local"
FORMAT = 1


def calibration_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / "calibration" / f"{PROFILE_NAME}.json"


def store_calibration_entry(runs_dir: Path, threads: int, entry: dict[str, Any]) -> None:
    """Write `entry` as the `threads` entry of the calibration file, keeping the other thread
    counts' entries."""
    path = calibration_path(runs_dir)
    entries: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(UserError):  # a corrupt file is replaced, not merged
            entries = _read(path)
    entries[str(threads)] = entry
    _write_atomic(path, {"format": FORMAT, "profile": PROFILE_NAME, "by_threads": entries})


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
    fix = "delete it or run autoaccel calibrate again"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read the calibration ({exc.strerror}); {fix}") from None
    except ValueError:
        raise UserError(f"{path}: the calibration is not valid JSON; {fix}") from None
    entries = data.get("by_threads") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
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
    return entries


def calibrated_threads(runs_dir: Path) -> set[int]:
    """The intra-op thread counts `<runs_dir>/calibration/cpu-local.json` has entries for."""
    path = calibration_path(runs_dir)
    return {int(t) for t in _read(path)} if path.exists() else set()


def load_calibration(runs_dir: Path, threads: int | None = None) -> dict[str, float | str] | None:
    """The stored entry for `threads` (default: the usable cores; another count's entry if
    that one was never calibrated), as `HardwareProfile.calibrated` values; None if no file."""
    from autoaccel.machine import usable_cores

    path = calibration_path(runs_dir)
    if not path.exists():
        return None
    entries = _read(path)
    want = threads or usable_cores()
    key = min(entries, key=lambda t: (abs(int(t) - want), -int(t)))
    return {k: v for k, v in entries[key].items() if isinstance(v, int | float | str)}


def apply_calibration(
    profile: HardwareProfile, runs_dir: Path, threads: int | None = None
) -> HardwareProfile:
    """`profile` with this machine's calibration (for `threads` intra-op threads, default the
    usable cores) when it is cpu-local and `<runs_dir>/calibration/cpu-local.json` exists;
    otherwise `profile` unchanged. A corrupt file is a one-line `UserError`."""
    if profile.name != PROFILE_NAME:
        return profile
    data = load_calibration(runs_dir, threads)
    return profile if data is None else profile.model_copy(update={"calibrated": data})
