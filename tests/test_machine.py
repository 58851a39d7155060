"""Machine facts that decide how autoaccel computes here: the training precision."""

from __future__ import annotations

import pytest

from autoaccel import machine
from autoaccel.errors import UserError


@pytest.mark.parametrize(
    ("flags", "params", "expected"),
    [
        ({"avx512f", "amx_bf16"}, 2_000_000, "bf16"),
        ({"avx512f", "avx512_bf16"}, 1_000_000, "bf16"),
        ({"avx512f", "amx_bf16"}, 999_999, "fp32"),  # too small: the casts outweigh the gain
        ({"avx2", "fma"}, 2_000_000, "fp32"),
        (None, 2_000_000, "fp32"),  # unreadable flags: no guess
    ],
)
def test_training_precision_follows_the_cpus_bf16_units_and_the_models_size(
    monkeypatch, flags, params, expected
):
    monkeypatch.delenv("AUTOACCEL_TRAIN_PRECISION", raising=False)
    monkeypatch.setattr(machine, "cpu_flags", lambda: None if flags is None else frozenset(flags))
    assert machine.training_precision(params) == expected


def test_training_precision_override_and_its_error(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setenv("AUTOACCEL_TRAIN_PRECISION", "BF16")
    assert machine.training_precision(10) == "bf16"  # forced, whatever the size
    monkeypatch.setenv("AUTOACCEL_TRAIN_PRECISION", "FP32")
    assert machine.training_precision(10**8) == "fp32"
    monkeypatch.setenv("AUTOACCEL_TRAIN_PRECISION", "fp8")
    with pytest.raises(UserError, match="AUTOACCEL_TRAIN_PRECISION='fp8': use one of fp32, bf16"):
        machine.training_precision(10)
