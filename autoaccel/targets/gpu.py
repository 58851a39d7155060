"""GPU: the plain roofline (`roofline.py`), with per-kernel launch overhead.

`efficiency.overhead_us` is paid once per node: it is what makes batch-1 small models
launch-bound on fast GPUs (batch-1 LLM decode reached ~81 % of the memory floor on L4 but only
27 % on H100; datasheet "Achieved efficiency"). 2:4 weights run at `sparsity.speedup` on tensor
cores that support it (Ampere/Ada/Hopper); unstructured sparsity gains nothing. A non-native
precision runs in the next wider native format (fp8 on A100 runs as fp16).
"""

from __future__ import annotations

from autoaccel.targets.roofline import RooflineTarget


class GpuTarget(RooflineTarget):
    kind = "gpu"
