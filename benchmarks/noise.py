"""Does the quoted speedup survive a busy machine? The same searches on a quiet machine and
with 1 and 2 competing CPU-bound processes, repeated, and the figure each one quotes.

    .venv/bin/python benchmarks/noise.py [--loads 0,1,2] [--repeats 5] \\
        [--workloads digits-cnn,minilm] [--budget 6] [--runs-dir /tmp/noise-runs]

Each repeat is a search of its own study (same workload, space, seed and budget) in one runs
folder, so builds and quality judgements are cached after the first and the repeats differ in
their timings only. `digits-cnn` searches the `quick` space; `minilm` searches a runtime-only
space (backends, threads, int8) so that a repeat takes a minute, not an hour of distillation.
A competing process is `python -c "while True: pass"`, started before the search and killed
after it. Per repeat the script records the verdict, the quoted speedup with its interval and
rounds, and the figure the old rule would have quoted (the baseline timed alone when the
search started against the candidate's own timing in its trial). Per load level it reports the
spread of the quoted figure and its largest deviation from the quiet median.

Goal (issue 16): under load 2 on 2 cores, the quoted figure within +-20 % of the quiet one, or
the search refuses to rank ("too-noisy") and says why; no digits-cnn figure above 50x.
Writes benchmarks/results/noise.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

MINILM_SPACE = """version: 1
description: runtime choices only (the noise benchmark)
techniques:
  runtime:
    backend: [onnxruntime, openvino, torch]
    intra_op_threads: [1, 2]
  quantize:
    mode: [none, int8_dynamic]
    per_channel: [true]
"""
SPACES = {"digits-cnn": "quick", "minilm": None}
SPIN = "while True: pass"


def _spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def _one(workload: str, space: str, budget: int, runs: Path, study: str) -> dict[str, Any]:
    import autoaccel

    t0 = time.perf_counter()
    result = autoaccel.search(
        workload,
        budget=budget,
        runs_dir=runs,
        space=space,
        study=study,
        targets=["cpu-local"],
        seed=0,
    )
    rec = result.recommendation
    quoted = rec["recommended"] or (rec.get("closest") or [None])[0]
    row: dict[str, Any] = {
        "verdict": rec["verdict"],
        "seconds": time.perf_counter() - t0,
        "load_avg_1min": os.getloadavg()[0],
        "warnings": result.warnings,
    }
    if quoted:
        base = rec["baseline"]
        ci = quoted.get("speedup_ci") or [None, None]
        paired_ms = quoted.get("paired_ms") or [None, None]
        row.update(
            trial=quoted["trial"],
            recipe=quoted["description"],
            speedup=quoted["speedup"],
            ci_low=ci[0],
            ci_high=ci[1],
            rounds=quoted.get("rounds"),
            contended=quoted.get("contended"),
            # the old rule: the baseline timed alone at the start, the candidate in its trial
            unpaired=base["latency_ms"] / quoted["latency_ms"],
            candidate_ms=paired_ms[0],
            baseline_in_window_ms=paired_ms[1],
            baseline_alone_ms=base["latency_ms"],
        )
    return row


def _summary(rows: list[dict[str, Any]], quiet: float | None) -> dict[str, Any]:
    figures = [r["speedup"] for r in rows if r.get("speedup") and r["verdict"] == "recommend"]
    old = [r["unpaired"] for r in rows if r.get("unpaired")]
    out: dict[str, Any] = {
        "repeats": len(rows),
        "verdicts": {
            v: sum(r["verdict"] == v for r in rows) for v in {r["verdict"] for r in rows}
        },
        "quoted": figures,
        "old_rule": old,
    }
    if figures:
        out.update(
            median=statistics.median(figures),
            spread=max(figures) / min(figures),
            max=max(figures),
        )
        if quiet:
            out["max_deviation"] = max(abs(f / quiet - 1) for f in figures)
    if old:
        out.update(old_median=statistics.median(old), old_max=max(old))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", default="0,1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workloads", default="digits-cnn,minilm")
    ap.add_argument("--budget", type=int, default=6)
    ap.add_argument("--runs-dir", type=Path, default=None)
    ap.add_argument("--name", default="noise")
    args = ap.parse_args()
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="noise-"))
    runs.mkdir(parents=True, exist_ok=True)
    space_file = runs / "minilm-runtime.yaml"
    space_file.write_text(MINILM_SPACE)
    loads = [int(x) for x in args.loads.split(",")]
    results: dict[str, Any] = {}
    table = []
    for workload in args.workloads.split(","):
        space = SPACES.get(workload) or str(space_file)
        per_load: dict[int, list[dict[str, Any]]] = {}
        quiet = None
        for load in loads:
            rows = []
            for rep in range(args.repeats):
                procs = _spinners(load)
                try:
                    time.sleep(1.0 if load else 0.0)
                    row = _one(workload, space, args.budget, runs, f"{workload}-l{load}-r{rep}")
                finally:
                    _stop(procs)
                row.update(load=load, repeat=rep)
                print(
                    f"{workload} load {load} repeat {rep}: {row['verdict']} "
                    f"{row.get('speedup', float('nan')):.2f}x "
                    f"({row.get('ci_low') or float('nan'):.2f}-"
                    f"{row.get('ci_high') or float('nan'):.2f}), old rule "
                    f"{row.get('unpaired', float('nan')):.2f}x, {row['seconds']:.0f} s",
                    flush=True,
                )
                rows.append(row)
            per_load[load] = rows
            summary = _summary(rows, quiet)
            if load == 0 and summary.get("median"):
                quiet = summary["median"]
                summary = _summary(rows, quiet)
            results.setdefault(workload, {})[str(load)] = {"summary": summary, "rows": rows}
            table.append(
                [
                    workload,
                    str(load),
                    ", ".join(f"{k} {v}" for k, v in sorted(summary["verdicts"].items())),
                    " ".join(f"{f:.2f}" for f in summary["quoted"]) or "-",
                    f"{summary['spread']:.2f}" if "spread" in summary else "-",
                    f"{summary['max_deviation']:.0%}" if "max_deviation" in summary else "-",
                    " ".join(f"{f:.2f}" for f in summary["old_rule"]) or "-",
                ]
            )
    header = [
        "workload",
        "competing processes",
        "verdicts",
        "quoted speedups",
        "spread (max/min)",
        "max deviation from quiet median",
        "old rule (baseline alone at start)",
    ]
    write(args.name, {"budget": args.budget, "results": results}, table, header)


if __name__ == "__main__":
    main()
