"""Tiny Hugging Face model folders and data files for the tests (nothing is downloaded: the
tokenizer files are the bundled MiniLM's, the weights random)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
WORDS = "good bad great awful fine poor lovely nasty happy sad calm angry warm cold bright dull"


def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _bert_config(**extra):
    from transformers import BertConfig

    return BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **extra,
    )


def copy_tokenizer(folder: Path) -> None:
    from autoaccel.workloads.minilm import model_dir

    for name in TOKENIZER_FILES:
        shutil.copy(model_dir() / name, folder / name)


def text_classifier(folder: Path, labels: tuple[str, ...] = ("neg", "pos")) -> Path:
    """A 2-layer, 32-wide BertForSequenceClassification with its tokenizer."""
    import torch
    from transformers import BertForSequenceClassification

    _quiet()
    torch.manual_seed(0)
    config = _bert_config(
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    copy_tokenizer(folder)
    return folder


def sentence_embedder(
    folder: Path, pooling: str = "mean", normalize: bool = True, kind: str = "bert"
) -> Path:
    """A tiny encoder (BertModel, or DistilBertModel with `kind="distilbert"`) laid out as
    sentence-transformers saves one (modules.json, pooling)."""
    import torch

    _quiet()
    torch.manual_seed(0)
    if kind == "distilbert":
        from transformers import DistilBertConfig, DistilBertModel

        config = DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
        )
        DistilBertModel(config).save_pretrained(folder)
    else:
        from transformers import BertModel

        BertModel(_bert_config(architectures=["BertModel"])).save_pretrained(folder)
    copy_tokenizer(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    flags = {
        f"pooling_mode_{m}_token{'s' if m != 'cls' else ''}": m == pooling
        for m in ("cls", "mean", "max")
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    return folder


def image_classifier(folder: Path, labels: tuple[str, ...] = ("circle", "square")) -> Path:
    """A 2-layer ViT for 16x16 images with its image processor."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    _quiet()
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct short sentences of the words above."""
    rng = np.random.default_rng(seed)
    words = WORDS.split()
    out: dict[str, None] = {}
    while len(out) < n:
        size = int(rng.integers(2, 7))
        out[" ".join(rng.choice(words, size)) + f" {len(out)}"] = None
    return list(out)


def image_folder(root: Path, per_class: int = 6, labels=("circle", "square"), sizes=(16, 24)):
    """One subfolder of small PNGs per class, of mixed sizes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in labels:
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            size = sizes[i % len(sizes)]
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root
