"""cpu-local is the machine that runs the search: its profile is derived here (cores, clock,
SIMD and int8/bf16 instructions -> peaks; memory; caches), the YAML is only a template, and
the power and price of measured points say where they come from (set by the user, or
assumed)."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoaccel.cli import app
from autoaccel.machine import usable_cores
from autoaccel.targets import load_targets
from autoaccel.targets.calibration_file import calibration_path, store_user_figures
from autoaccel.targets.local_cpu import (
    TEMPLATE,
    CpuFacts,
    derive_peaks,
    local_profile,
    read_cpu_facts,
    this_machine,
)
from autoaccel.targets.measured import cpu_target
from autoaccel.targets.profile import load_profile

ZEN3 = CpuFacts(
    host="box",
    model="AMD EPYC 7B13",
    vendor="AMD",
    arch="x86_64",
    family=25,
    cores=4,
    cores_from="os.sched_getaffinity",
    clock_ghz=2.5,
    clock_from="/proc/cpuinfo 'cpu MHz' 2500",
    flags=frozenset({"avx", "avx2", "fma", "sse2"}),
    memory_gb=16.0,
    memory_from="/proc/meminfo MemTotal 15,625,000 KiB",
    cache_mb=35.7,
    cache_from="sysfs caches L2 4 x 0.5 MiB + L3 1 x 32 MiB = 35.7 MB",
)


def test_peaks_follow_cores_clock_and_simd_width():
    peaks = derive_peaks(ZEN3)
    assert peaks["fp32"].value == pytest.approx(4 * 2.5e9 * 32 / 1e12)  # 2 FMA pipes x 8 lanes
    assert peaks["int8"].value == pytest.approx(2 * peaks["fp32"].value)  # no VNNI
    assert "bf16" not in peaks  # no bf16 instructions: not native, no peak
    assert all(f.source.startswith("derived here:") for f in peaks.values())
    assert "4 cores" in peaks["fp32"].source and "2.500 GHz" in peaks["fp32"].source


def test_vnni_bf16_and_zen4_half_width_avx512_change_the_peaks():
    zen4 = dataclasses.replace(ZEN3, flags=ZEN3.flags | {"avx512f", "avx512_vnni", "avx512_bf16"})
    peaks = derive_peaks(zen4)
    assert peaks["fp32"].value == pytest.approx(4 * 2.5e9 * 32 / 1e12)  # two 256-bit halves
    assert peaks["int8"].value == pytest.approx(4 * peaks["fp32"].value)
    assert peaks["bf16"].value == pytest.approx(2 * peaks["fp32"].value)
    xeon = dataclasses.replace(zen4, vendor="Intel", family=6)
    assert derive_peaks(xeon)["fp32"].value == pytest.approx(4 * 2.5e9 * 64 / 1e12)


def test_the_derived_profile_names_this_machines_facts_with_derived_here_sources():
    facts = read_cpu_facts()
    profile = load_targets(["nvidia-l4"])["cpu-local"].profile
    assert facts.model in profile.description and facts.host in profile.description
    assert facts.cores == usable_cores() or "cgroup" in facts.cores_from
    for figure in (*profile.peak_tops.values(), profile.memory.capacity_gb):
        assert figure.source.startswith("derived here:"), figure.source
    assert profile.memory.capacity_gb.value == pytest.approx(facts.memory_gb, rel=0.01)
    expected = {"fp32", "int8"} | (
        {"bf16"} if {"avx512_bf16", "amx_bf16"} & facts.flags else set()
    )
    assert set(profile.native_precisions) == expected
    # no calibration yet: the bandwidth is an assumption and says so
    assert profile.memory.bandwidth_gbps.source.startswith("assumed:")
    assert profile.power_w.source.startswith(f"assumed: {facts.cores} cores x 3.75 W")


def test_the_yaml_is_a_template_that_claims_no_machine():
    template = load_profile(TEMPLATE)
    text = TEMPLATE.read_text()
    assert "template" in template.description.lower()
    assert "EPYC" not in text and "measured here on" not in text
    assert template.efficiency.source.startswith("assumed")


def test_power_and_price_the_user_sets_price_measured_points_with_their_source(tmp_path: Path):
    store_user_figures(tmp_path, {"power_w": 20.0, "price_per_hour_usd": 0.36}, "box")
    profile = this_machine(tmp_path)
    assert profile.power_w.value == 20.0 and "set by the user on 20" in profile.power_w.source
    priced = cpu_target(profile).priced(2.0)
    assert priced["energy_j"] == pytest.approx(20.0 * 2.0 / 1000)
    assert priced["cost_per_million_usd"] == pytest.approx(0.36 / 3600 * 2.0 / 1000 * 1e6)
    assert priced["power_source"].startswith("set by the user on")
    assert priced["price_source"].startswith("set by the user on")
    assert "20 W (set by the user" in priced["energy_source"]
    assert priced["calibration"] is None  # not calibrated: nothing to name


def test_without_the_users_figures_measured_points_say_they_are_assumed():
    priced = load_targets(["nvidia-l4"])["cpu-local"].priced(1.0)
    assert priced["power_source"].startswith("assumed:")
    assert priced["price_source"].startswith("assumed, unconfirmed:")


def test_calibrate_prices_only_stores_the_users_figures_without_timing(tmp_path: Path):
    runs = tmp_path / "runs"
    argv = ["calibrate", "--runs-dir", str(runs), "--power-w", "95", "--prices-only"]
    out = CliRunner().invoke(app, [*argv, "--price-per-hour", "1.2"])
    assert out.exit_code == 0, out.output
    stored = json.loads(calibration_path(runs).read_text())
    assert stored["by_threads"] == {}  # nothing timed
    assert stored["user"]["power_w"]["value"] == 95.0
    assert socket.gethostname() in stored["user"]["price_per_hour_usd"]["source"]
    assert this_machine(runs).price_per_hour_usd.value == 1.2
    bad = CliRunner().invoke(app, ["calibrate", "--runs-dir", str(runs), "--prices-only"])
    assert bad.exit_code != 0


def test_targets_show_cpu_local_prints_the_profile_derived_here():
    shown = CliRunner().invoke(app, ["targets", "show", "cpu-local"])
    assert shown.exit_code == 0 and "derived here:" in shown.output


def test_local_profile_keeps_the_templates_curves():
    template = load_profile(TEMPLATE)
    profile = local_profile(template, ZEN3)
    assert profile.efficiency == template.efficiency
    assert profile.memory.on_chip_mb.value == pytest.approx(35.7)
    assert profile.price_per_hour_usd.value == pytest.approx(4 * 0.058)
