"""Training in bf16 autocast against fp32, on this CPU: seconds and quality of the same students.

For each student (MiniLM distilled students of the default space, a digits-cnn student and
a seed-mlp one), the same recipe is trained twice from the same start, once per precision
(`AUTOACCEL_TRAIN_PRECISION`), alternating which goes first, after an untimed run that fills
the teacher-output cache, and judged on the workload's own figures. `autoaccel` trains in bf16
by default only where the CPU has bf16 units (AMX or AVX512-BF16) and the model has at least
`BF16_MIN_PARAMS` trainable parameters; this is the measurement behind that default.

    .venv/bin/python benchmarks/bf16_training.py [--steps 400] [--cache /tmp/bf16-cache]

Writes benchmarks/results/bf16-training.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import write  # benchmarks/ is run as a folder of scripts

from autoaccel.evaluate.runners import open_runner
from autoaccel.machine import cpu_flags
from autoaccel.techniques import REGISTRY, Candidate
from autoaccel.techniques._training import frozen_embeddings
from autoaccel.workloads import load_workload

STUDENTS = {
    "minilm": [
        {"mode": "student", "layers": 1, "width": 1.0},
        {"mode": "student", "layers": 2, "width": 1.0},
        {"mode": "student", "layers": 4, "width": 0.5},
    ],
    "digits-cnn": [{"mode": "student", "width": 0.5}],
    "seed-mlp": [{"mode": "student", "width": 0.5}],
}


def train_once(workload, config: dict, precision: str) -> dict:
    """One student trained from the recipe in `precision`; its time and quality."""
    os.environ["AUTOACCEL_TRAIN_PRECISION"] = precision
    distill = REGISTRY["distill"]
    teacher = workload.torch_model()
    student = distill.structure(teacher, config, workload)
    with frozen_embeddings(student):  # what distill_into trains, and what the threshold counts
        trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    seconds = distill.train(student, teacher, config, workload, None)
    wall = time.perf_counter() - t0
    candidate = Candidate(backend="torch", torch_model=student.eval())
    predict = open_runner(candidate, workload.input_names)
    quality = workload.evaluate(predict)
    return {
        "train_seconds": seconds,
        "wall_seconds": wall,
        "trainable_params": trainable,
        "quality": quality,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bf16-cache")
    parser.add_argument("--workloads", default="minilm-search,digits-cnn,seed-mlp")
    args = parser.parse_args()
    flags = cpu_flags() or frozenset()
    out, table = {}, []
    for k, name in enumerate(args.workloads.split(",")):
        workload = load_workload(name, args.cache)
        kind = "minilm" if name.startswith("minilm") else name
        # an untimed run first: the teacher's outputs on the training split are computed once
        # per process and read by every later run, as in a search (else the first run pays)
        train_once(workload, {**STUDENTS[kind][0], "steps": args.steps}, "fp32")
        for j, student in enumerate(STUDENTS[kind]):
            config = {**student, "steps": args.steps}
            order = ("fp32", "bf16") if (k + j) % 2 == 0 else ("bf16", "fp32")
            runs = {p: train_once(workload, config, p) for p in order}
            label = f"{name} " + ", ".join(f"{a} {v}" for a, v in student.items() if a != "mode")
            out[label] = {"config": config, "order": list(order), **runs}
            metric = workload.metric
            f, b = runs["fp32"], runs["bf16"]
            table.append(
                [
                    label,
                    f"{f['trainable_params']:,}",
                    f"{f['train_seconds']:.1f} / {b['train_seconds']:.1f}",
                    f"{f['train_seconds'] / b['train_seconds']:.2f}x",
                    f"{f['quality'][metric]:.4f} / {b['quality'][metric]:.4f}",
                    f"{b['quality'][metric] - f['quality'][metric]:+.4f}",
                ]
            )
            print(" | ".join(table[-1]), f"load {os.getloadavg()[0]:.2f}", flush=True)
    os.environ.pop("AUTOACCEL_TRAIN_PRECISION", None)
    payload = {
        "protocol": f"each student trained {args.steps} steps from the same start in fp32 and "
        "in bf16 autocast (weights, optimizer and loss fp32), alternating order; quality is "
        "the workload's primary figure, really run",
        "bf16_units": sorted(flags & {"amx_bf16", "avx512_bf16"}),
        "load_average_end": os.getloadavg(),
        "students": out,
    }
    header = ["student", "trainable params", "train s fp32 / bf16", "speedup"]
    header += ["quality fp32 / bf16", "bf16 - fp32"]
    write("bf16-training", payload, table, header)


if __name__ == "__main__":
    main()
