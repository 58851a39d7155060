"""Score an ONNX MiniLM model on one split of the minilm workload's judging data, with
autoaccel's own metric (`MiniLMWorkload.evaluate`), and print the figures as one JSON line.

Runs in autoaccel's environment (numpy 2). The peer tools that live in their own environments
(Intel Neural Compressor needs numpy < 2) call it as a subprocess, so their accuracy-aware
tuning is judged by exactly the figure autoaccel's search is judged by:

    .venv/bin/python benchmarks/peers/score_onnx.py MODEL.onnx --split search [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from autoaccel.evaluate.runners import open_runner
from autoaccel.techniques import Candidate
from autoaccel.workloads.minilm import MiniLMWorkload
from autoaccel.workloads.minilm_data import SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--split", choices=SPLITS, default="search")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "autoaccel-peer-score",
        help="where the teacher's agreement embeddings are cached",
    )
    args = parser.parse_args()
    workload = MiniLMWorkload(args.cache, split=args.split)
    # ONNX Runtime, all graph optimizations, every core: how the peers' models are deployed
    candidate = Candidate(
        backend="onnxruntime", onnx_path=args.model, session={"graph_level": "all"}
    )
    quality = workload.evaluate(open_runner(candidate, workload.input_names))
    print(json.dumps({"split": args.split, "metric": workload.metric, "quality": quality}))


if __name__ == "__main__":
    main()
