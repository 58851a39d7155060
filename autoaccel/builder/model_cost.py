"""What a model half costs per query before anything is trained: the FLOPs of its untrained
structure on the workload's own batch-1 input.

Distillation and pruning decide a model's shape without training it (`structure`), and the
shape decides the work; so a search can rank a student it has never trained against the ones
it has, exactly, for the price of one forward pass (torch's `FlopCounterMode` counts matrix
products and convolutions: the work a dense runtime does). Zeroed weights (unstructured, 2:4)
count in full: no runtime this version builds for skips them.
"""

from __future__ import annotations

from typing import Any

from autoaccel.builder import _torch_plan
from autoaccel.workloads.base import Workload


def untrained_model(recipe: dict[str, Any], workload: Workload):
    """The torch-stage techniques' model for `recipe`, built without training (its weights
    are the teacher's, cut to shape)."""
    model = workload.torch_model()
    for tech, config, _ in _torch_plan(recipe, workload)[0]:
        model = tech.structure(model, config, workload)
    return model.eval()


def forward_flops(recipe: dict[str, Any], workload: Workload) -> float:
    """FLOPs of one batch-1 forward pass of the model half of `recipe`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = untrained_model(recipe, workload)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*workload.example_args())
    return float(counter.get_total_flops())
