"""How busy the CPU was with other work while autoaccel timed something.

A timing on a shared machine is only as good as the window it was taken in: on 2 cores, one
other CPU-bound process made a 2-thread PyTorch baseline take over 10 ms in 8 of 300 runs
where 1-thread runs never passed 0.2 ms, and quoted speedups ranged from 13x to 6357x for one
job. `CpuWindow` measures, over the window itself, how many cores *other* processes used
(the machine's busy time from /proc/stat less this process's own CPU time, plus time the
hypervisor stole), so a timing knows whether it was taken on a quiet machine. Where
/proc/stat is missing (not Linux) the 1-minute load average stands in, less this process.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

BUSY_CORES = 0.3
"""Other work using more than this many cores on average (or a tenth of the cores on a big
machine, whichever is more) makes a window busy: a baseline that runs on every core then
waits for the slowest of its threads, and its timings stop meaning what they say."""


@dataclass(frozen=True)
class Contention:
    """Other work during one timing window."""

    other_cores: float  # cores used by other processes, on average over the window
    steal_cores: float  # cores the hypervisor gave to other guests (part of other_cores)
    load_avg: float  # the 1-minute load average at the end of the window
    cores: int
    wall_s: float
    source: str  # "/proc/stat" or "load average"

    @property
    def busy(self) -> bool:
        return self.other_cores > threshold(self.cores)

    def as_dict(self) -> dict:
        return {**asdict(self), "busy": self.busy}

    def words(self) -> str:
        return (
            f"other processes used {self.other_cores:.1f} of {self.cores} cores while it was "
            f"timed (load average {self.load_avg:.1f})"
        )


def threshold(cores: int) -> float:
    """Cores of other work that make a window busy. `AUTOACCEL_BUSY_CORES` overrides it, for
    a machine that is always shared (its figures are then flagged less, not made better)."""
    override = os.environ.get("AUTOACCEL_BUSY_CORES")
    if override:
        try:
            return float(override)
        except ValueError:
            pass
    return max(BUSY_CORES, 0.1 * cores)


def _proc_stat() -> tuple[float, float] | None:
    """(busy seconds of all cores, stolen seconds) since boot, or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class CpuWindow:
    """`with CpuWindow() as w: ...` then `w.result`: the other work during the block."""

    def __enter__(self) -> CpuWindow:
        self._stat = _proc_stat()
        self._own = _own_cpu_s()
        self._t0 = time.perf_counter()
        self.result: Contention | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.result = self.read()

    def read(self) -> Contention:
        """The other work since the window opened (may be called inside it)."""
        wall = max(time.perf_counter() - self._t0, 1e-9)
        own = _own_cpu_s() - self._own
        cores = os.cpu_count() or 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        now = _proc_stat()
        if self._stat is None or now is None:
            # the load average counts this process's runnable threads too; assume it kept
            # about `own / wall` cores busy
            other = max(0.0, load - own / wall)
            return Contention(other, 0.0, load, cores, wall, "load average")
        busy = now[0] - self._stat[0]
        steal = now[1] - self._stat[1]
        other = max(0.0, (busy - own) / wall)
        return Contention(min(other, float(cores)), steal / wall, load, cores, wall, "/proc/stat")


def sample(seconds: float = 0.5) -> Contention:
    """The other work on this machine over the next `seconds` (this process idle)."""
    with CpuWindow() as w:
        time.sleep(seconds)
    assert w.result is not None
    return w.result


PERSISTENT_S = 120.0
"""After a wait that ended with the machine still busy, waits within this many seconds are
cut to one look: a steady load (another job) does not pass, and waiting for it at every
timing would only make the search slower."""
_still_busy_at = -math.inf


def wait_for_quiet(max_wait_s: float, step_s: float = 1.0) -> Contention:
    """Wait (up to `max_wait_s`) for the other work to drop below the busy threshold; return
    the last window seen. A burst (a compile, a test run finishing) often passes in seconds;
    a load that outlasted a recent wait is looked at once, not waited for again."""
    global _still_busy_at
    if time.monotonic() - _still_busy_at < PERSISTENT_S:
        max_wait_s = min(max_wait_s, step_s)
    deadline = time.perf_counter() + max_wait_s
    seen = sample(min(step_s, max_wait_s) or 0.1)
    while seen.busy and time.perf_counter() < deadline:
        seen = sample(step_s)
    if seen.busy:
        _still_busy_at = time.monotonic()
    return seen
