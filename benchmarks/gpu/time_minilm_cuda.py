"""Time MiniLM-shaped BERT encoders on a CUDA GPU with plain PyTorch (run on the lent GPU
machine, which has torch + transformers but not autoaccel's other dependencies).

Weights are random (BertConfig of all-MiniLM-L6-v2: hidden 384, 12 heads, FFN 1536, 128
tokens): latency depends on shapes, not values. For each depth, precision and batch size it
records the median of 50 timed forward passes (CUDA events, after 10 warm-ups), in eager mode
and replayed as one CUDA graph (no Python or launch overhead), and writes JSON to argv[1].
"""

from __future__ import annotations

import json
import statistics
import sys

import torch
from transformers import BertConfig, BertModel

BASE = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def timed(fn, runs: int = 50) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end))
    return statistics.median(out)


def main() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 is fp32 (the profile's fp32 peak)
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    for layers in (6, 3, 2, 1):
        for name, dtype in DTYPES.items():
            cfg = BertConfig(**{**BASE, "num_hidden_layers": layers}, attn_implementation="sdpa")
            model = BertModel(cfg).eval().cuda().to(dtype)
            for batch in (1, 8, 32):
                ids = torch.randint(0, 30522, (batch, 128), device="cuda")
                mask = torch.ones_like(ids)
                with torch.inference_mode():
                    eager = timed(lambda m=model, i=ids, a=mask: m(input_ids=i, attention_mask=a))
                    graph_ms = None
                    try:
                        stream = torch.cuda.Stream()
                        stream.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(stream):
                            for _ in range(3):
                                model(input_ids=ids, attention_mask=mask)
                        torch.cuda.current_stream().wait_stream(stream)
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph):
                            model(input_ids=ids, attention_mask=mask)
                        graph_ms = timed(graph.replay)
                    except Exception as exc:  # capture can fail on some versions: say so
                        graph_ms = f"capture failed: {type(exc).__name__}: {exc}"[:200]
                rows.append(
                    {
                        "layers": layers,
                        "precision": name,
                        "batch": batch,
                        "eager_ms": eager,
                        "cuda_graph_ms": graph_ms,
                    }
                )
                print(rows[-1], flush=True)
            torch.cuda.empty_cache()
    info = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tf32": False,
        "protocol": "median of 50 CUDA-event-timed forwards after 10 warm-ups; 128 tokens",
    }
    with open(sys.argv[1], "w") as f:
        json.dump({"device": info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
