"""Fixed-function accelerator (Edge TPU, Hailo-8, ...): native formats only, else a roofline.

Unlike a GPU, such a chip has no wider format to fall back on: the Coral Edge TPU compiles only
fully int8-quantized models (datasheet table), so a matrix node in any non-native precision
makes the recipe infeasible, with the quantization that would fix it. Element-wise nodes are
costed at the widest native peak (memory-bound anyway). A chip without external DRAM
(`memory.capacity_gb` 0, e.g. Hailo-8) must hold every weight on chip (`roofline.py`).
"""

from __future__ import annotations

from autoaccel.targets.base import GraphCost, Plan
from autoaccel.targets.roofline import RooflineTarget


class AsicTarget(RooflineTarget):
    kind = "asic"

    def check(self, graph: GraphCost, plan: Plan) -> None:
        super().check(graph, plan)
        for node in graph.nodes:
            if node.macs and node.precision not in self.profile.native_precisions:
                raise self.infeasible(node)
