"""Does timing a candidate interleaved with PyTorch eager slow eager down?

The paired rule (`autoaccel/evaluate/paired.py`) and vs_peers time rows in alternating blocks
in one process. If a runtime's threads stayed busy after its block (spinning, pinning), the
next block would run slower and every ratio against it would move. This times PyTorch eager
fp32 in three positions, in rounds: after an eager block, right after a block of a study's
pick, and one second after it. Equal medians: the order does not matter.

    .venv/bin/python benchmarks/interleave_check.py --runs-dir /tmp/vsp2-runs \\
        --study minilm-search-default --study minilm-search-default-teacher_cosine

Writes benchmarks/results/interleave-check.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _common import write  # benchmarks/ is run as a folder of scripts
from vs_peers import autoaccel_row

from autoaccel.evaluate.measure import MeasureConfig, time_runs, warm_up
from autoaccel.evaluate.runners import open_runner
from autoaccel.techniques import Candidate

POSITIONS = ("after an eager block", "right after the pick's block", "1 s after the pick's block")


def _p50(samples: list[int]) -> float:
    return float(np.median(np.asarray(samples) / 1e6))


def check(runs_dir: Path, study: str, rounds: int, block_s: float) -> dict:
    """Eager's latency in each position, over `rounds` rounds of `block_s`-second blocks."""
    info, candidate, workload = autoaccel_row(runs_dir, study)
    inputs = workload.latency_inputs(1)
    teacher = Candidate(backend="torch", torch_model=workload.torch_model())
    eager = open_runner(teacher, workload.input_names)
    pick = open_runner(candidate, workload.input_names)
    run_eager, run_pick = (lambda: eager(inputs)), (lambda: pick(inputs))
    warm_up(run_eager, MeasureConfig())
    warm_up(run_pick, MeasureConfig())
    samples: dict[str, list[int]] = {p: [] for p in POSITIONS}
    pick_samples: list[int] = []
    for _ in range(rounds):
        samples[POSITIONS[0]] += time_runs(run_eager, 5, block_s, 10**6)
        pick_samples += time_runs(run_pick, 5, block_s, 10**6)
        samples[POSITIONS[1]] += time_runs(run_eager, 5, block_s, 10**6)
        pick_samples += time_runs(run_pick, 5, block_s, 10**6)
        time.sleep(1.0)
        samples[POSITIONS[2]] += time_runs(run_eager, 5, block_s, 10**6)
    return {
        "study": study,
        "trial": info["trial"],
        "pick": info["description"],
        "eager_p50_ms": {p: _p50(s) for p, s in samples.items()},
        "eager_runs": {p: len(s) for p, s in samples.items()},
        "pick_p50_ms": _p50(pick_samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--study", action="append", required=True, help="repeatable")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block-seconds", type=float, default=1.0)
    args = parser.parse_args()
    load = list(os.getloadavg())
    results = [check(args.runs_dir, s, args.rounds, args.block_seconds) for s in args.study]
    table = [
        [
            f"{r['study']} trial {r['trial']}",
            *(f"{r['eager_p50_ms'][p]:.2f}" for p in POSITIONS),
            f"{r['pick_p50_ms']:.2f}",
        ]
        for r in results
    ]
    header = ["pick timed beside eager", *(f"eager p50 ms, {p}" for p in POSITIONS), "pick p50 ms"]
    payload = {
        "rounds": args.rounds,
        "block_seconds": args.block_seconds,
        "load_average_at_start": load,
        "load_average_at_end": list(os.getloadavg()),
        "results": results,
    }
    write("interleave-check", payload, table, header)


if __name__ == "__main__":
    main()
