"""cpu-local is the machine that runs the search, derived from what it says of itself.

`hardware_profiles/cpu-local.yaml` is only a template (assumed efficiency curves and a per-op
overhead to start from; template peaks). `local_profile` replaces every figure that
describes hardware with this machine's: usable cores (affinity, and a cgroup CPU quota when
lower), clock, SIMD width and int8 / bf16 instructions (/proc/cpuinfo flags) -> dense peaks;
memory (MemTotal, or the cgroup limit) and caches (sysfs). Each such figure's source starts
with `derived here:`. The peaks assume 2 vector pipes per core (both FMA where FMA exists):
true of recent server cores, and the calibration measures the share really reached anyway.

Power and price are the user's (`autoaccel calibrate --power-w W --price-per-hour USD`, kept
in the calibration file), else a per-core assumption that says so. The memory bandwidth is
measured by the calibration (`autoaccel.targets.calibrate`); before one, it is assumed.
`this_machine` puts it all together: template -> derived -> calibrated -> user's figures.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import platform
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoaccel.machine import cpu_flags, cpu_model, cpuinfo_value, usable_cores
from autoaccel.targets.profile import PROFILES_DIR, Figure, HardwareProfile, load_profile

TEMPLATE = PROFILES_DIR / "cpu-local.yaml"
WATTS_PER_CORE = 3.75
"""A server core's share of its package power: AMD EPYC 9654, 360 W TDP / 96 cores."""
USD_PER_CORE_HOUR = 0.058
"""AWS m7a.large (2 vCPUs, each a full Zen 4 core) on demand, ~$0.116 per hour, us-east-1."""
ASSUMED_GBPS_PER_CORE = 8.0
_PIPES = 2  # vector pipes per core (assumed)


@dataclass(frozen=True)
class CpuFacts:
    """What this machine says about its CPU and memory, each with where it was read."""

    host: str
    model: str
    vendor: str
    arch: str
    family: int | None
    cores: int
    cores_from: str
    clock_ghz: float
    clock_from: str
    flags: frozenset[str]
    memory_gb: float
    memory_from: str
    cache_mb: float | None
    cache_from: str


@functools.cache
def read_cpu_facts() -> CpuFacts:
    """This machine's CPU facts (read once per process: they do not change under a search)."""
    cores, cores_from = _cores()
    clock, clock_from = _clock()
    memory, memory_from = _memory()
    cache, cache_from = _cache()
    family = cpuinfo_value("cpu family")
    vendor = cpuinfo_value("vendor_id") or ""
    return CpuFacts(
        host=socket.gethostname(),
        model=cpu_model(),
        vendor={"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(vendor, vendor or "unknown"),
        arch=platform.machine(),
        family=int(family) if family and family.isdigit() else None,
        cores=cores,
        cores_from=cores_from,
        clock_ghz=clock,
        clock_from=clock_from,
        flags=cpu_flags() or frozenset(),
        memory_gb=memory,
        memory_from=memory_from,
        cache_mb=cache,
        cache_from=cache_from,
    )


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cores() -> tuple[int, str]:
    cores = usable_cores()
    quota = (_read("/sys/fs/cgroup/cpu.max") or "max").split()
    if quota and quota[0] != "max" and len(quota) == 2 and float(quota[1]) > 0:
        limit = max(1, math.ceil(float(quota[0]) / float(quota[1])))
        if limit < cores:
            return limit, f"cgroup cpu.max {quota[0]}/{quota[1]}"
    return cores, "os.sched_getaffinity"


def _clock() -> tuple[float, str]:
    """The base clock, from the steadiest source there is (a VM's `cpu MHz` is constant; on
    bare metal it follows the governor, so the cpufreq base or the model name come first)."""
    base = _read("/sys/devices/system/cpu/cpu0/cpufreq/base_frequency")
    if base and base.isdigit():
        return int(base) / 1e6, f"cpufreq base_frequency {int(base) / 1e6:.3f} GHz"
    named = re.search(r"@\s*([\d.]+)\s*GHz", cpu_model())
    if named:
        return float(named.group(1)), f"model name '@ {named.group(1)}GHz'"
    top = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if top and top.isdigit():
        return int(top) / 1e6, f"cpufreq cpuinfo_max_freq {int(top) / 1e6:.3f} GHz"
    mhz = cpuinfo_value("cpu MHz")
    if mhz:
        return float(mhz) / 1e3, f"/proc/cpuinfo 'cpu MHz' {float(mhz):.0f}"
    return 2.5, "assumed: 2.5 GHz, a typical server base clock (no clock readable here)"


def _memory() -> tuple[float, str]:
    total = 0.0
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024 / 1e9
    limit = _read("/sys/fs/cgroup/memory.max")
    if limit and limit.isdigit() and (not total or int(limit) / 1e9 < total):
        return int(limit) / 1e9, f"cgroup memory.max {int(limit):,} bytes"
    if total:
        return total, f"/proc/meminfo MemTotal {total * 1e9 / 1024:,.0f} KiB"
    return 8.0, "assumed: 8 GB (no /proc/meminfo here)"


def _cache() -> tuple[float | None, str]:
    """L2 and L3 the usable cores reach (each cache counted once), from sysfs."""
    seen: dict[tuple[str, str], int] = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        for index in Path(f"/sys/devices/system/cpu/cpu{cpu}/cache").glob("index*"):
            level, kind = _read(f"{index}/level"), _read(f"{index}/type")
            size = _read(f"{index}/size") or ""
            if not level or int(level) < 2 or kind == "Instruction" or not size.endswith("K"):
                continue
            seen[(level, _read(f"{index}/shared_cpu_list") or str(cpu))] = int(size[:-1]) * 1024
    if not seen:
        return None, ""
    by_level: dict[str, list[int]] = {}
    for (level, _), size in seen.items():
        by_level.setdefault(level, []).append(size)
    parts = [f"L{lv} {len(s)} x {s[0] / 2**20:g} MiB" for lv, s in sorted(by_level.items())]
    total = sum(seen.values())
    return total / 1e6, f"sysfs caches {' + '.join(parts)} = {total / 1e6:.1f} MB"


def _vector(facts: CpuFacts) -> tuple[int, bool, str]:
    """(bits a vector pipe computes per instruction, FMA, what says so)."""
    f = facts.flags
    if facts.arch in ("aarch64", "arm64"):
        return 128, True, "NEON (asimd), 128-bit FMA"
    if "avx512f" in f:
        if facts.vendor == "AMD" and facts.family == 25:
            return 256, True, "AVX-512, which Zen 4 (family 25) runs as two 256-bit halves"
        return 512, True, "AVX-512 FMA"
    if "avx2" in f and "fma" in f:
        return 256, True, "AVX2 + FMA"
    if "avx" in f:
        return 256, False, "AVX without FMA (separate add and multiply)"
    return 128, False, "SSE (128-bit, no FMA)"


def derive_peaks(facts: CpuFacts) -> dict[str, Figure]:
    """Dense peaks (tera-ops/s) per precision from cores x clock x ops per cycle."""
    bits, fma, what = _vector(facts)
    per_cycle = _PIPES * bits // 32 * (2 if fma else 1)
    scale = facts.cores * facts.clock_ghz / 1e3  # cores x GHz -> tera-cycles/s
    head = (
        f"derived here: {facts.cores} cores ({facts.cores_from}) x {facts.clock_ghz:.3f} GHz "
        f"({facts.clock_from})"
    )
    peaks = {
        "fp32": Figure(
            value=round(scale * per_cycle, 5),
            source=f"{head} x {per_cycle} fp32 FLOP/cycle ({what}; {_PIPES} vector pipes per "
            "core assumed)",
        )
    }
    f = facts.flags
    if "amx_int8" in f:
        int8, why = 2048, "AMX-INT8: 1024 int8 MACs per cycle per core (unconfirmed)"
    elif {"avx512_vnni", "avx_vnni", "asimddp"} & f:
        int8, why = 4 * per_cycle, "VNNI / dot-product: 4 int8 MACs per 32-bit lane, 4x fp32"
    else:
        int8, why = 2 * per_cycle, "assumed: no VNNI, int8 via multiply-add pairs, 2x fp32"
    peaks["int8"] = Figure(
        value=round(scale * int8, 5), source=f"{head} x {int8} ops/cycle ({why})"
    )
    if "amx_bf16" in f:
        bf16, why = 1024, "AMX-BF16: 512 bf16 MACs per cycle per core (unconfirmed)"
    elif {"avx512_bf16", "bf16"} & f:
        bf16, why = 2 * per_cycle, "AVX512-BF16 / bf16 dot product: 2 MACs per lane, 2x fp32"
    else:
        return peaks
    peaks["bf16"] = Figure(
        value=round(scale * bf16, 5), source=f"{head} x {bf16} FLOP/cycle ({why})"
    )
    return peaks


def local_profile(
    template: HardwareProfile,
    facts: CpuFacts | None = None,
    bandwidth: Figure | None = None,
    user: dict[str, Figure] | None = None,
) -> HardwareProfile:
    """The template with this machine's figures: derived peaks, memory and caches; the
    measured `bandwidth` when given (else assumed per core); the `user`'s power and price
    (keys `power_w`, `price_per_hour_usd`) when set, else assumed per core."""
    facts = facts or read_cpu_facts()
    user = user or {}
    peaks = derive_peaks(facts)
    bits, _, what = _vector(facts)
    cores = facts.cores
    native = [p for p in ("fp32", "bf16", "int8") if p in peaks]
    memory: dict[str, Any] = {
        "capacity_gb": Figure(
            value=round(facts.memory_gb, 2), source=f"derived here: {facts.memory_from}"
        ),
        "bandwidth_gbps": bandwidth
        or Figure(
            value=ASSUMED_GBPS_PER_CORE * cores,
            source=f"assumed: {cores} cores x {ASSUMED_GBPS_PER_CORE:g} GB/s per core until "
            "the calibration measures it here (autoaccel calibrate)",
        ),
    }
    if facts.cache_mb:
        memory["on_chip_mb"] = Figure(
            value=round(facts.cache_mb, 2), source=f"derived here: {facts.cache_from}"
        )
    today = dt.date.today().isoformat()
    power = user.get("power_w") or Figure(
        value=round(WATTS_PER_CORE * cores, 3),
        source=f"assumed: {cores} cores x {WATTS_PER_CORE:g} W per core, a typical server core "
        "(AMD EPYC 9654: 360 W TDP / 96 cores); set yours: autoaccel calibrate --power-w W",
    )
    price = user.get("price_per_hour_usd") or Figure(
        value=round(USD_PER_CORE_HOUR * cores, 4),
        source=f"assumed, unconfirmed: {cores} cores x ${USD_PER_CORE_HOUR:g} per core-hour, a "
        "cloud list price as recalled (AWS m7a.large, 2 vCPUs, ~$0.116/h); set yours: "
        "autoaccel calibrate --price-per-hour USD",
    )
    data = template.model_dump(exclude_none=True)
    data.update(
        vendor=facts.vendor,
        description=(
            f"This machine ({facts.host}, read on {today}): {facts.model}, {cores} usable cores "
            f"({facts.cores_from}), {facts.clock_ghz:.2f} GHz, {what}, "
            f"{facts.memory_gb:.1f} GB memory. Derived when autoaccel starts "
            "(autoaccel/targets/local_cpu.py), not taken from any other machine."
        ),
        peak_tops=peaks,
        native_precisions=native,
        memory=memory,
        power_w=power,
        price_per_hour_usd=price,
        max_devices=1,
    )
    data.pop("calibrated", None)
    return HardwareProfile.model_validate(data)


def this_machine(
    calibration_root: Path | None = None,
    threads: int | None = None,
    template: HardwareProfile | None = None,
) -> HardwareProfile:
    """cpu-local as a search uses it: derived here, then (when `calibration_root` has them)
    the power and price the user set, and the calibration for `threads` (default: the usable
    cores) with the memory bandwidth it measured."""
    from autoaccel.targets.calibration_file import apply_calibration, load_user_figures

    template = template or load_profile(TEMPLATE)
    if calibration_root is None:
        return local_profile(template)
    profile = local_profile(template, user=load_user_figures(calibration_root))
    return apply_calibration(profile, calibration_root, threads)
