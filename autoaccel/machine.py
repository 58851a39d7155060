"""Facts about the machine autoaccel runs on."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not the host's count."""
    return len(os.sched_getaffinity(0))
