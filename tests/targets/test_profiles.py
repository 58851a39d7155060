"""Hardware profiles in hardware_profiles/: every file loads, every figure names its source,
derived peaks agree with their arithmetic, and bad files fail with a one-line `UserError` that
names the file and the field."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from autoaccel.errors import UserError
from autoaccel.targets.profile import (
    PROFILES_DIR,
    Figure,
    HardwareProfile,
    load_profile,
    load_profiles,
    select_profiles,
)

REQUIRED = (
    "nvidia-h100-sxm",
    "nvidia-a100-80gb",
    "nvidia-l4",
    "nvidia-t4",
    "nvidia-jetson-orin",
    "google-tpu-v4",
    "google-tpu-v5e",
    "amd-alveo-u250",
    "google-edge-tpu",
    "hailo-8",
    "cpu-local",
)
EXTRA = ("amd-alveo-u280", "aws-inferentia2")

# Figures the datasheet marks "unconf." (or that it does not give at all): their source must
# say "unconfirmed" so an estimate resting on them can be traced.
UNCONFIRMED = (
    ("nvidia-h100-sxm", "price_per_hour_usd"),
    ("nvidia-a100-80gb", "price_per_hour_usd"),
    ("nvidia-l4", "price_per_hour_usd"),
    ("nvidia-jetson-orin", "memory.bandwidth_gbps"),
    ("nvidia-jetson-orin", "peak_tops.fp16"),
    ("google-tpu-v4", "memory.on_chip_mb"),
    ("google-tpu-v4", "interconnect.bandwidth_gbps"),
    ("google-tpu-v5e", "power_w"),
    ("amd-alveo-u250", "fpga.dsp_count"),
    ("amd-alveo-u250", "memory.on_chip_mb"),
    ("amd-alveo-u250", "power_w"),
    ("amd-alveo-u280", "fpga.dsp_count"),
    ("amd-alveo-u280", "memory.on_chip_mb"),
    ("amd-alveo-u280", "power_w"),
    ("google-edge-tpu", "memory.on_chip_mb"),
    ("hailo-8", "memory.on_chip_mb"),
    ("aws-inferentia2", "power_w"),
)


@pytest.fixture(scope="module")
def profiles() -> dict[str, HardwareProfile]:
    return load_profiles()


def _figures(node: Any, path: str = "") -> Iterator[tuple[str, Figure]]:
    """Every `Figure` inside a profile, with its dotted path."""
    if isinstance(node, Figure):
        yield path, node
    elif isinstance(node, BaseModel):
        for field in type(node).model_fields:
            yield from _figures(getattr(node, field), f"{path}.{field}" if path else field)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _figures(value, f"{path}.{key}")


def _figure(profile: HardwareProfile, dotted: str) -> Figure:
    node: Any = profile
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    assert isinstance(node, Figure), dotted
    return node


def test_load_profiles_every_yaml_loads(profiles: dict[str, HardwareProfile]) -> None:
    files = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    assert files and sorted(profiles) == files


def test_required_profiles_all_present(profiles: dict[str, HardwareProfile]) -> None:
    missing = [n for n in (*REQUIRED, *EXTRA) if n not in profiles]
    assert not missing


def test_profile_name_matches_file_name(profiles: dict[str, HardwareProfile]) -> None:
    for path in PROFILES_DIR.glob("*.yaml"):
        assert profiles[path.stem].name == path.stem


def test_every_figure_has_a_source(profiles: dict[str, HardwareProfile]) -> None:
    for name, profile in profiles.items():
        figures = list(_figures(profile))
        assert figures, name
        for path, fig in figures:
            assert fig.source.strip(), f"{name}: {path}"
        assert profile.efficiency.source.strip(), name
        if profile.systolic is not None:
            assert profile.systolic.source.strip(), name


@pytest.mark.parametrize(("name", "dotted"), UNCONFIRMED)
def test_unconfirmed_figure_source_says_unconfirmed(
    profiles: dict[str, HardwareProfile], name: str, dotted: str
) -> None:
    assert "unconfirmed" in _figure(profiles[name], dotted).source.lower()


@pytest.mark.parametrize(
    ("name", "dotted", "word"),
    [
        ("nvidia-l4", "peak_tops.int8", "derived"),
        ("nvidia-h100-sxm", "interconnect.bandwidth_gbps", "derived"),
        ("nvidia-t4", "interconnect.efficiency", "assumed"),
        ("cpu-local", "peak_tops.fp32", "derived"),
        ("cpu-local", "memory.bandwidth_gbps", "measured"),
        ("cpu-local", "efficiency.overhead_us", "calibrate"),
        ("amd-alveo-u250", "fpga.clock_mhz", "assumed"),
    ],
)
def test_derived_or_assumed_figure_source_says_so(
    profiles: dict[str, HardwareProfile], name: str, dotted: str, word: str
) -> None:
    assert word in _figure(profiles[name], dotted).source.lower()


def test_peaks_and_bandwidths_in_declared_units(profiles: dict[str, HardwareProfile]) -> None:
    """Tera-ops/s and GB/s: a value in ops/s or bytes/s would be off by 1e9 or more."""
    for name, p in profiles.items():
        for prec, fig in p.peak_tops.items():
            assert 0.01 <= fig.value <= 1e4, f"{name} {prec}"
        assert 0.1 <= p.memory.bandwidth_gbps.value <= 1e5, name
        assert 0.01 <= p.memory.capacity_gb.value <= 1e4, name
        assert 0.5 <= p.power_w.value <= 2000, name


def test_fpga_peak_equals_dsp_formula_within_1_percent(
    profiles: dict[str, HardwareProfile],
) -> None:
    fpgas = [p for p in profiles.values() if p.kind == "fpga"]
    assert {p.name for p in fpgas} >= {"amd-alveo-u250", "amd-alveo-u280"}
    for p in fpgas:
        assert p.fpga is not None
        assert "int8" in p.fpga.macs_per_dsp
        for prec, macs in p.fpga.macs_per_dsp.items():
            expected = 2 * p.fpga.dsp_count.value * p.fpga.clock_mhz.value * 1e6 * macs.value
            assert p.peak_tops[prec].value * 1e12 == pytest.approx(expected, rel=0.01), (
                f"{p.name} {prec}"
            )


@pytest.mark.parametrize("name", ["google-edge-tpu", "hailo-8"])
def test_edge_asic_native_precisions_int8_only(
    profiles: dict[str, HardwareProfile], name: str
) -> None:
    assert profiles[name].native_precisions == ["int8"]
    assert set(profiles[name].peak_tops) == {"int8"}


def test_sparsity_t4_none_and_ampere_hopper_2x(profiles: dict[str, HardwareProfile]) -> None:
    assert not profiles["nvidia-t4"].sparsity.nm_2_4
    for name in ("nvidia-a100-80gb", "nvidia-h100-sxm", "nvidia-l4", "nvidia-jetson-orin"):
        sparsity = profiles[name].sparsity
        assert sparsity.nm_2_4 and sparsity.speedup is not None, name
        assert sparsity.speedup.value == 2.0, name


def test_t4_has_no_bf16(profiles: dict[str, HardwareProfile]) -> None:
    assert "bf16" not in profiles["nvidia-t4"].peak_tops
    assert "bf16" not in profiles["nvidia-t4"].native_precisions


def test_tpus_have_128_systolic_and_no_fp32(profiles: dict[str, HardwareProfile]) -> None:
    for name in ("google-tpu-v4", "google-tpu-v5e"):
        p = profiles[name]
        assert p.systolic is not None and (p.systolic.rows, p.systolic.cols) == (128, 128)
        assert "fp32" not in p.native_precisions


def test_multi_device_profiles_have_per_direction_links(
    profiles: dict[str, HardwareProfile],
) -> None:
    for name, p in profiles.items():
        if p.max_devices > 1:
            assert p.interconnect is not None, name
            assert 0 < p.interconnect.efficiency.value <= 1, name
    assert profiles["nvidia-h100-sxm"].interconnect.bandwidth_gbps.value == 450
    assert profiles["nvidia-jetson-orin"].max_devices == 1


def test_cpu_local_peaks_follow_lane_ratios(profiles: dict[str, HardwareProfile]) -> None:
    peaks = profiles["cpu-local"].peak_tops
    assert peaks["bf16"].value == pytest.approx(2 * peaks["fp32"].value, rel=0.01)
    assert peaks["int8"].value == pytest.approx(4 * peaks["fp32"].value, rel=0.01)


def test_select_profiles_names_and_none(profiles: dict[str, HardwareProfile]) -> None:
    assert list(select_profiles(["nvidia-t4", "cpu-local"])) == ["nvidia-t4", "cpu-local"]
    assert set(select_profiles(None)) == set(profiles)


def test_select_profiles_unknown_raises_naming_choices() -> None:
    with pytest.raises(UserError) as exc:
        select_profiles(["nope"])
    msg = str(exc.value)
    assert "nope" in msg and "nvidia-h100-sxm" in msg and "cpu-local" in msg
    assert "\n" not in msg


def test_load_profiles_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no hardware_profiles folder"):
        load_profiles(tmp_path / "absent")


# --- bad files -------------------------------------------------------------------------------


def _base(name: str = "nvidia-t4") -> dict[str, Any]:
    return yaml.safe_load((PROFILES_DIR / f"{name}.yaml").read_text())


def _write(tmp_path: Path, data: dict[str, Any], stem: str | None = None) -> Path:
    path = tmp_path / f"{stem or data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _error(path: Path) -> str:
    with pytest.raises(UserError) as exc:
        load_profile(path)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


def test_load_profile_valid_copy_loads(tmp_path: Path) -> None:
    assert load_profile(_write(tmp_path, _base())).name == "nvidia-t4"


def test_load_profile_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nkind: gpu\npeak_tops: {fp32: [1, 2\n")
    msg = _error(path)
    assert "line" in msg and "not valid YAML" in msg


def test_load_profile_not_a_mapping_raises(tmp_path: Path) -> None:
    path = tmp_path / "listy.yaml"
    path.write_text("- a\n- b\n")
    assert "mapping" in _error(path)


def _drop(data: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[part]
    del data[last]


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


@pytest.mark.parametrize(
    ("base", "change", "field"),
    [
        ("nvidia-t4", lambda d: _set(d, "colour", "green"), "colour"),
        ("nvidia-t4", lambda d: _set(d, "memory.bandwidth_gbps.value", -1), "bandwidth_gbps"),
        ("nvidia-t4", lambda d: _drop(d, "peak_tops.fp32.source"), "peak_tops.fp32.source"),
        ("nvidia-t4", lambda d: _set(d, "power_w.source", ""), "power_w.source"),
        ("nvidia-t4", lambda d: _set(d, "kind", "npu"), "kind"),
        ("google-tpu-v5e", lambda d: _drop(d, "systolic"), "systolic"),
        ("nvidia-t4", lambda d: _drop(d, "interconnect"), "interconnect"),
        ("nvidia-t4", lambda d: d["native_precisions"].append("bf16"), "native_precisions"),
        ("amd-alveo-u250", lambda d: _drop(d, "fpga"), "fpga"),
        (
            "nvidia-t4",
            lambda d: _set(d, "efficiency.compute", [[1e9, 0.5], [1e6, 0.1]]),
            "efficiency.compute",
        ),
    ],
    ids=[
        "unknown_key",
        "negative_value",
        "missing_source",
        "empty_source",
        "unknown_kind",
        "tpu_without_systolic",
        "multi_device_without_interconnect",
        "native_precision_without_peak",
        "fpga_without_fpga_block",
        "efficiency_not_ascending",
    ],
)
def test_load_profile_bad_field_raises_naming_file_and_field(
    tmp_path: Path, base: str, change: Any, field: str
) -> None:
    data = copy.deepcopy(_base(base))
    change(data)
    msg = _error(_write(tmp_path, data))
    assert field in msg, msg
    assert "README" in msg


def test_load_profile_name_not_matching_file_raises(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, _base(), stem="other-name"))
    assert "name" in msg and "'nvidia-t4'" in msg and "'other-name'" in msg
