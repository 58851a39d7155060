"""A study's recommendation against a recipe recommended earlier (another study, often another
machine), both rebuilt here from their recipes and timed interleaved with PyTorch eager fp32
at batch 1 and 8, each judged on MiniLM's search, held-out and full judging sets.

Why: a speedup quoted on one machine does not carry to another (the eager baseline's speed
differs between CPUs); "at least as fast as the earlier study's pick" is only meaningful when
both picks run side by side on the same CPU.

    .venv/bin/python benchmarks/recipes_side_by_side.py --runs-dir /tmp/acc100 \\
        --study minilm-default --earlier benchmarks/results/vs_peers.json --name acc100

The earlier recipe is the `autoaccel recommendation` row's recipe in a vs_peers result JSON.
`--recipe NAME=FILE.json` (repeatable) adds any recipe (a JSON object of search parameters),
built with the study's cache, e.g. the study's own trained student on another runtime:

    .venv/bin/python benchmarks/recipes_side_by_side.py --runs-dir /tmp/vsp-runs \
        --study minilm-search-default --recipe "student on OpenVINO bf16=r.json" --name x

Writes benchmarks/results/recipes-<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import write  # benchmarks/ is run as a folder of scripts
from vs_peers import SPLITS, autoaccel_row, judge, load, time_rows

from autoaccel.builder import build_candidate
from autoaccel.techniques import Candidate, describe_recipe
from autoaccel.workloads.minilm import MiniLMWorkload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--study", default="minilm-default")
    parser.add_argument("--earlier", type=Path, help="a vs_peers result JSON")
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="NAME=FILE.json",
        help="another recipe to put beside them (repeatable)",
    )
    parser.add_argument("--name", required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs = args.runs_dir.resolve()
    study, pick, study_workload = autoaccel_row(runs, args.study)
    cache = runs / "cache"
    workloads = {
        "search": MiniLMWorkload(cache, split="search"),
        "holdout": MiniLMWorkload(cache, split="holdout"),
        "all": MiniLMWorkload(cache),
    }
    teacher = workloads["all"].torch_model()
    rows: dict[str, tuple[Candidate, str]] = {
        "PyTorch eager fp32": (Candidate(backend="torch", torch_model=teacher), "all cores"),
        f"{args.study} (this study), trial {study['trial']}": (pick, study["description"]),
    }
    old = None
    if args.earlier is not None:
        old = json.loads(args.earlier.read_text())["autoaccel"]
        rows[f"{old['study']} (earlier), trial {old['trial']}"] = (
            build_candidate(old["recipe"], workloads["all"], cache),
            old["description"],
        )
    extra = {}
    for item in args.recipe:
        name, _, path = item.partition("=")
        extra[name] = json.loads(Path(path).read_text())
        built = build_candidate(extra[name], study_workload, cache)  # the study's students
        rows[name] = (built, describe_recipe(extra[name]))
    print(f"load before: {load()}", flush=True)
    quality = judge(rows, workloads)
    timing = time_rows(rows, workloads["all"], args.seconds, args.rounds)
    eager = "PyTorch eager fp32"
    table = []
    for name, (_, description) in rows.items():
        q = quality[name]
        drops = {s: q[s]["task_quality"] - quality[eager][s]["task_quality"] for s in SPLITS}
        ms = {b: timing[b]["latency"][name]["median_ms"] for b in timing}
        speed = {b: timing[b]["latency"][eager]["median_ms"] / ms[b] for b in timing}
        table.append(
            [
                name,
                " / ".join(f"{q[s]['task_quality']:.4f} ({drops[s]:+.4f})" for s in SPLITS),
                f"{q['all']['teacher_cosine']:.3f}",
                " / ".join(f"{ms[b]:.2f}" for b in timing),
                " / ".join(f"{speed[b]:.2f}x" for b in timing),
                description,
            ]
        )
    payload = {
        "this_study": study,
        "earlier": old and {k: old[k] for k in ("study", "trial", "recipe", "description")},
        "recipes": extra,
        "quality": quality,
        "timing": timing,
        "load_after": load(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    header = [
        "row",
        "task_quality search / held-out / all (change vs eager)",
        "teacher cosine",
        "ms batch 1 / 8",
        "vs eager batch 1 / 8",
        "recipe",
    ]
    write(f"recipes-{args.name}", payload, table, header)


if __name__ == "__main__":
    main()
