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
    return flags is None or _bf16_units(flags)


def _bf16_units(flags: frozenset[str]) -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & flags)


TRAIN_PRECISIONS = ("fp32", "bf16")
BF16_MIN_PARAMS = 1_000_000
"""Trainable parameters from which bf16 autocast pays (benchmarks/results/bf16-training.md:
MiniLM students of 1.9-4.9M train 1.39-1.65x faster; the digits CNN and seed MLP, ~10^4
parameters, train 17-24 % slower, their products too small to outweigh the casts)."""


def training_precision(trainable_params: int) -> str:
    """What a student or recovery fine-tune computes in: `bf16` autocast where the CPU has
    bf16 arithmetic units (AMX or AVX512-BF16 flags present) and the model has at least
    `BF16_MIN_PARAMS` trainable parameters, else `fp32`. Weights, optimizer and loss stay
    fp32 either way, and task quality held within 4e-4 on every student measured.
    `AUTOACCEL_TRAIN_PRECISION=fp32` (or `bf16`) overrides, e.g. to reproduce an fp32 run;
    another value is a UserError (a search checks it before it writes anything)."""
    from autoaccel.errors import UserError

    wanted = os.environ.get("AUTOACCEL_TRAIN_PRECISION", "").strip().lower()
    if wanted:
        if wanted not in TRAIN_PRECISIONS:
            raise UserError(
                f"AUTOACCEL_TRAIN_PRECISION={wanted!r}: use one of {', '.join(TRAIN_PRECISIONS)}"
                " (or unset it: bf16 where the CPU has bf16 units)"
            )
        return wanted
    flags = cpu_flags()
    units = flags is not None and _bf16_units(flags)
    return "bf16" if units and trainable_params >= BF16_MIN_PARAMS else "fp32"


def machine_info() -> dict[str, object]:
    """Which machine measured a figure: measured latencies from different machines are
    never compared as if they came from one."""
    import socket

    return {"host": socket.gethostname(), "cpu": cpu_model(), "threads": usable_cores()}
