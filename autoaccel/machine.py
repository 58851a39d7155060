"""Facts about the machine autoaccel runs on."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not the host's count."""
    return len(os.sched_getaffinity(0))


def training_threads(look_s: float = 0.2) -> int:
    """Threads for training now: every usable core less those other work keeps busy. All
    cores train about twice as fast as one on a quiet machine, but on a busy one a thread
    that waits for a shared core stalls every step (~10x slower on 2 cores): a short look at
    /proc/stat decides."""
    import math

    from autoaccel.evaluate.contention import sample

    cores = usable_cores()
    other = sample(look_s).other_cores
    return max(1, cores - math.ceil(other - 0.3))


def cpu_model() -> str:
    """The CPU's model name, as the kernel reports it ("unknown" where it does not)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def cpuinfo_value(key: str) -> str | None:
    """The first value of `key` in /proc/cpuinfo ("cpu MHz", "vendor_id", ...), None where
    the kernel does not report it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags as the kernel reports them (x86 `flags`, Arm `Features`);
    None where it does not."""
    for key in ("flags", "Features"):
        value = cpuinfo_value(key)
        if value is not None:
            return frozenset(value.split())
    return None


def runs_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); True where the flags
    cannot be read, so the measurement decides (OpenVINO then refuses, with the reason)."""
    flags = cpu_flags()
    return flags is None or bool({"avx512_bf16", "amx_bf16"} & flags)


def machine_info() -> dict[str, object]:
    """Which machine measured a figure: measured latencies from different machines are
    never compared as if they came from one."""
    import socket

    return {"host": socket.gethostname(), "cpu": cpu_model(), "threads": usable_cores()}
