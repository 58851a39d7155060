"""The plan grid a target is projected over: batch sizes and parallel degrees.

A plan is not searched (it changes no build and nothing that is measured here): every build is
projected on every estimated target over that target's own grid, at no trial cost. The grid
comes from the search space's `targets:` block (defaults below); a target keeps the plans its
profile can run (`max_devices`), and micro-batches only where a pipeline can use them and
they divide the batch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from typing import Any

from autoaccel.targets.base import Plan, Target


@dataclass(frozen=True)
class PlanGrid:
    """The values each plan dimension may take (every combination a target can run)."""

    batch_size: tuple[int, ...] = (1, 8, 32)
    data: tuple[int, ...] = (1, 2, 4, 8)
    tensor: tuple[int, ...] = (1, 2, 4, 8)
    pipeline: tuple[int, ...] = (1, 2, 4)
    micro_batches: tuple[int, ...] = (1, 2, 4, 8)

    @classmethod
    def from_block(cls, block: dict[str, Any] | None) -> PlanGrid:
        """From a validated `targets:` block (lists of positive integers per dimension).
        Without a block: the default grid. With one, a dimension it leaves out is not used
        (1: batch 1, no parallelism of that kind), as a technique left out does nothing."""
        if not block or not any(f.name in block for f in fields(cls)):
            return cls()
        return cls(**{f.name: tuple(block.get(f.name, [1])) for f in fields(cls)})

    def plans_for(self, target: Target) -> list[Plan]:
        """Every plan of the grid `target` can run, single-device plans first."""
        most = target.max_devices()
        out = []
        for b, d, t, p in itertools.product(
            self.batch_size, self.data, self.tensor, self.pipeline
        ):
            if d * t * p > most:
                continue
            micro = [m for m in self.micro_batches if m > 1 and b % m == 0] if p > 1 else []
            out += [Plan(b, d, t, p, m) for m in (1, *micro)]
        return sorted(out, key=lambda q: (q.devices, q.batch_size, q.tensor, q.pipeline))


GRID_KEYS = tuple(f.name for f in fields(PlanGrid))
"""The keys a space file's `targets:` block may set (plus `names`)."""


def describe_plan(plan: dict[str, int] | Plan) -> str:
    """A few words: "batch 8, tensor parallel 2" ("batch 1, one device" when plain)."""
    p = plan if isinstance(plan, dict) else plan.__dict__
    parts = [f"batch {p.get('batch_size', 1)}"]
    for key, label in (("data", "data"), ("tensor", "tensor"), ("pipeline", "pipeline")):
        if p.get(key, 1) > 1:
            parts.append(f"{label} parallel {p[key]}")
    if p.get("pipeline", 1) > 1 and p.get("micro_batches", 1) > 1:
        parts.append(f"{p['micro_batches']} micro-batches")
    if len(parts) == 1:
        parts.append("one device")
    return ", ".join(parts)
