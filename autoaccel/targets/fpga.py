"""FPGA: peak from the fabric, layers as a dataflow pipeline.

Peak ops/s = 2 x DSP count x clock x MACs per DSP at the precision (datasheet "Formulas", FPGA;
k = 2 int8 MACs per DSP48E2, achieved 1.75-2), used instead of `peak_tops` where `fpga.
macs_per_dsp` lists the precision. Weights stay on chip when they fit `on_chip_mb` (hls4ml keeps
all weights on chip); otherwise they stream from DRAM and count in the bandwidth term.

Latency ~ sum of the per-node roofline times (one sample crosses every layer). Throughput: in a
dataflow design (FINN, hls4ml) every layer is its own stage and the stages overlap, so the rate
is set by the slowest stage ("throughput ~ f_clk / max stage cycles"), but no faster than the
shared DSPs and DRAM allow: interval = max(max node time, sum compute, sum memory). Launch
overheads overlap too, so throughput can exceed batch / latency.
"""

from __future__ import annotations

from collections.abc import Sequence

from autoaccel.targets.roofline import NodeTime, RooflineTarget


class FpgaTarget(RooflineTarget):
    kind = "fpga"

    def peak(self, precision: str) -> float:
        fabric = self.profile.fpga
        if fabric and precision in fabric.macs_per_dsp:
            k = fabric.macs_per_dsp[precision].value
            return 2 * fabric.dsp_count.value * fabric.clock_mhz.value * 1e6 * k
        return super().peak(precision)

    def interval(self, times: Sequence[NodeTime]) -> float:
        return max(
            max(t.total for t in times),
            sum(t.compute for t in times),
            sum(t.memory for t in times),
        )
