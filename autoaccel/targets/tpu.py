"""TPU: the roofline with matmuls padded to the systolic array.

XLA tiles a matmul (M, K, N) in 8-row chunks of M and `systolic.rows` x `systolic.cols` tiles of
K x N, padding the rest (datasheet "Formulas", TPU): the share of useful work is
u = MKN / (ceil(M/8)8 x ceil(K/R)R x ceil(N/C)C), and compute takes F / (u x P x eta_c). N = 129
on a 128-wide array pads to 256 and wastes half the MXU.

fp32 (and tf32) matmuls on a TPU without an fp32 peak run on the bf16 MXU in three passes
(bf16_3x, XLA's precision HIGH): peak = bf16 / 3. Assumed: XLA's default fp32 matmul precision
uses bf16 passes (DEFAULT is one pass, HIGHEST six); three keep near-fp32 accuracy.
"""

from __future__ import annotations

import math

from autoaccel.targets.base import NodeCost
from autoaccel.targets.roofline import RooflineTarget

FP32_PASSES = 3


def padding_utilisation(dims: tuple[int, int, int], rows: int, cols: int) -> float:
    """Useful share of the padded (M, K, N) product."""
    m, k, n = dims
    padded = math.ceil(m / 8) * 8 * math.ceil(k / rows) * rows * math.ceil(n / cols) * cols
    return m * k * n / padded if padded else 1.0


class TpuTarget(RooflineTarget):
    kind = "tpu"

    def emulate(self, node: NodeCost) -> tuple[float, str]:
        if node.precision in ("fp32", "tf32") and "bf16" in self.profile.native_precisions:
            note = f"{node.precision} runs as bf16 x{FP32_PASSES} passes on {self.name}"
            return self.peak("bf16") / FP32_PASSES, note
        return super().emulate(node)

    def compute_time(self, node: NodeCost, peak: float) -> float:
        time = super().compute_time(node, peak)
        systolic = self.profile.systolic
        if node.matmul_dims and systolic:
            time /= padding_utilisation(node.matmul_dims, systolic.rows, systolic.cols)
        return time
