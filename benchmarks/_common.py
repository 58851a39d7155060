"""Shared helpers for the benchmark scripts: timing side by side and writing results."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    from autoaccel.machine import usable_cores

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": usable_cores(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write(name: str, payload: dict[str, Any], table: list[list[str]], header: list[str]) -> None:
    """Write results/<name>.json and results/<name>.md (a Markdown table) and print it."""
    RESULTS.mkdir(exist_ok=True)
    payload = {"machine": machine(), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    md = f"# {name}\n\nMachine: {payload['machine']}\n\n" + "\n".join(lines) + "\n"
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
