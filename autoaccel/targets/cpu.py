"""CPU: the roofline, corrected by the calibration of this machine.

`autoaccel calibrate` times micro-benchmarks here and writes `calibrated` in the profile; these
keys are the contract with it (all optional floats; other keys, such as when, are ignored):

- compute_scale: measured / modelled compute efficiency; eta_c x compute_scale, at most 1.
- memory_scale: the same for memory bandwidth; eta_m x memory_scale, at most 1.
- overhead_us: measured fixed cost per op (ONNX Runtime dispatch), replacing the profile's.

Without them it is the plain roofline of the profile (nn-Meter, MobiSys 2021, shows per-kernel
models reach +-10 % on mobile CPUs; the error of this one is measured, not assumed).
"""

from __future__ import annotations

from autoaccel.targets.roofline import RooflineTarget


class CpuTarget(RooflineTarget):
    kind = "cpu"

    def _fitted(self, key: str, default: float) -> float:
        value = (self.profile.calibrated or {}).get(key, default)
        return float(value) if isinstance(value, int | float) else default

    def eta_compute(self, flops: float) -> float:
        return min(1.0, super().eta_compute(flops) * self._fitted("compute_scale", 1.0))

    def eta_memory(self, nbytes: float) -> float:
        return min(1.0, super().eta_memory(nbytes) * self._fitted("memory_scale", 1.0))

    def overhead_s(self) -> float:
        return self._fitted("overhead_us", super().overhead_s() * 1e6) * 1e-6
