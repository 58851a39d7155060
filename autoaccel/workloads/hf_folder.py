"""A local Hugging Face model folder (config + weights, as `save_pretrained` writes it) as a
workload: no Python from the user, nothing downloaded.

The task comes from config.json (`...ForSequenceClassification` -> text classification,
`...ForImageClassification` -> image classification, a sentence-transformers `modules.json`
-> sentence embedding), or from `--task`. Sentence embeddings pool as the folder's
sentence-transformers config says (mean / cls / max, then L2 norm where a Normalize module is
listed). The data are ordinary files (`data_files`); the task's own module
(`hf_text`, `hf_image`) judges them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from abc import abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads import judging_rows
from autoaccel.workloads.base import Workload
from autoaccel.workloads.data_files import Columns

TASKS = ("text-classification", "sentence-embedding", "image-classification")
ORT_MODEL_TYPES = {"bert": "bert"}
"""HF model_type -> ONNX Runtime transformer-optimizer type (`compile.fusion`), for those whose
fusions were checked on a model of the type."""
WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
OPTION_KEYS = (
    "task", "text_column", "label_column", "score_column", "train_data", "max_length",
    "judge_rows",
)  # fmt: skip
PROTOCOL_VERSION = "hf-folder-v1"
"""Bump when tokenisation, splitting or scoring changes so cached figures are not reused."""


@dataclass(frozen=True)
class Options:
    """The data and task options of `--model FOLDER` (CLI names in the messages)."""

    task: str | None = None
    columns: Columns = field(default_factory=Columns)
    train_data: Path | None = None
    max_length: int | None = None
    judge_rows: int | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> Options:
        raw = {k: v for k, v in (raw or {}).items() if v is not None}
        unknown = sorted(set(raw) - set(OPTION_KEYS))
        if unknown:
            raise UserError(f"unknown workload option(s) {unknown}; use {', '.join(OPTION_KEYS)}")
        task = raw.get("task")
        if task is not None and task not in TASKS:
            raise UserError(f"--task {task}: use one of {', '.join(TASKS)}")
        text = raw.get("text_column")
        texts = tuple(t.strip() for t in str(text).split(",")) if text else None
        if texts is not None and (not all(texts) or len(texts) > 2):
            raise UserError(f"--text-column {text}: give one column name, or two (a,b) for pairs")
        length = raw.get("max_length")
        if length is not None and not 2 <= int(length) <= 100_000:
            raise UserError(f"--max-length {length}: give a token count of 2 or more")
        return cls(
            task,
            Columns(texts, raw.get("label_column"), raw.get("score_column")),
            Path(raw["train_data"]) if raw.get("train_data") else None,
            None if length is None else int(length),
            judging_rows.checked(raw.get("judge_rows")),
        )

    def identity(self) -> dict[str, Any]:
        cols = self.columns
        out = {"task": self.task, "text": cols.text, "label": cols.label, "score": cols.score,
               "max_length": self.max_length}  # fmt: skip
        if self.judge_rows is not None:  # absent otherwise: earlier caches keep their keys
            out["judge_rows"] = self.judge_rows
        return out


@dataclass(frozen=True)
class Folder:
    """What a model folder is, read from its files (nothing loaded yet)."""

    path: Path
    config: dict[str, Any]
    task: str
    pooling: str = "mean"
    normalize: bool = False
    pooling_source: str = ""
    max_seq_length: int | None = None
    dense: tuple = ()
    """sentence-transformers Dense modules after pooling (`st_modules.Dense`)."""

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    def id2label(self) -> dict[int, str]:
        raw = self.config.get("id2label") or {}
        if raw:
            return {int(k): str(v) for k, v in raw.items()}
        return {i: f"LABEL_{i}" for i in range(int(self.config.get("num_labels", 2)))}


def is_model_folder(path: Path) -> bool:
    """Whether `--model` names a folder (an HF model, or something to refuse as one)."""
    return Path(path).is_dir()


def read_folder(path: Path, task: str | None) -> Folder:
    """config.json, the weights and the task, checked; one line per problem."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(
            f"--model {path}: not a Hugging Face model folder (no config.json); give the "
            "folder save_pretrained wrote, or an .onnx file"
        )
    try:
        config = json.loads(config_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"--model {config_file}: not valid JSON ({exc}); fix the file") from None
    if not any((path / w).is_file() for w in WEIGHTS):
        raise UserError(
            f"--model {path}: has config.json but no weights ({', '.join(WEIGHTS[::2])}); "
            "save the model with save_pretrained"
        )
    _check_architecture(path, config)
    _check_head(path, config, task)
    found = task or _task_from_config(path, config)
    if found is None:
        raise UserError(
            f"--model {path}: config.json does not say the task (architecture "
            f"{_arch(config)}); give --task {' | '.join(TASKS)}"
        )
    folder = Folder(path, config, found)
    if found == "sentence-embedding":
        folder = _with_pooling(folder)
    return folder


def _arch(config: dict) -> str:
    return ", ".join(config.get("architectures") or []) or "none listed"


def _check_architecture(path: Path, config: dict) -> None:
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    unknown = [a for a in config.get("architectures") or [] if not hasattr(transformers, a)]
    if model_type not in CONFIG_MAPPING_NAMES or unknown:
        what = f"architecture {unknown[0]!r}" if unknown else f"model_type {model_type!r}"
        raise UserError(
            f"--model {path}: config.json names {what}, which transformers "
            f"{transformers.__version__} does not know (custom code is never run); use a "
            "model of a built-in architecture, or export it to ONNX and pass the .onnx file"
        )


OTHER_HEADS = {
    "ForTokenClassification": "token classification",
    "ForQuestionAnswering": "question answering",
    "ForMaskedLM": "masked language modelling",
    "ForCausalLM": "text generation",
    "ForConditionalGeneration": "sequence-to-sequence generation",
    "ForMultipleChoice": "multiple choice",
    "ForPreTraining": "pre-training",
    "ForObjectDetection": "object detection",
    "ForSemanticSegmentation": "semantic segmentation",
    "ForMaskedImageModeling": "masked image modelling",
}
"""Heads of tasks autoaccel has no judge for, by the architecture name's ending."""


def _check_head(path: Path, config: dict, task: str | None) -> None:
    """Refuse a folder whose architecture is a head of another task: as a classifier it
    would get a head initialised at random, so every figure would be noise. Its encoder can
    still be judged as a sentence embedding (`--task sentence-embedding`)."""
    for arch in config.get("architectures") or []:
        other = next((t for end, t in OTHER_HEADS.items() if arch.endswith(end)), None)
        if other is None or task == "sentence-embedding":
            continue
        encoder = "give --task sentence-embedding to judge its encoder's vectors, or "
        if arch.endswith("ForConditionalGeneration"):  # an encoder-decoder: no vectors alone
            encoder = ""
        raise UserError(
            f"--model {path}: config.json names {arch}, a {other} model; autoaccel judges "
            f"{', '.join(TASKS)} folders: {encoder}export the model to ONNX and pass the "
            ".onnx file with an .npz of inputs (judged by agreement with its own outputs)"
        )


def _task_from_config(path: Path, config: dict) -> str | None:
    for arch in config.get("architectures") or []:
        if arch.endswith("ForSequenceClassification"):
            return "text-classification"
        if arch.endswith("ForImageClassification"):
            return "image-classification"
    if (path / "modules.json").is_file():
        return "sentence-embedding"
    return None


def _with_pooling(folder: Folder) -> Folder:
    """Pooling, Dense layers, normalisation and length from the sentence-transformers files."""
    from autoaccel.workloads.st_modules import read_pipeline

    found = read_pipeline(folder.path)
    return replace(
        folder,
        pooling=found.pooling,
        normalize=found.normalize,
        pooling_source=found.source,
        max_seq_length=found.max_seq_length,
        dense=found.dense,
    )


def offline() -> None:
    """Keep transformers and the hub from the network: everything comes from the folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class HFWorkload(Workload):
    """What every task shares: loading, identity, what the search says at its start."""

    task_class = "AutoModel"
    train_lr = 5e-5

    def __init__(
        self, folder: Folder, data: Path | None, options: Options, cache_dir: Path
    ) -> None:
        """`data` is the `--data` file, or None for a built-in workload that brings its own
        judging data (`minilm`) and says what it is in its own `identity()`."""
        self.folder, self.options = folder, options
        self.data_path = None if data is None else Path(data)
        self.cache_dir = Path(cache_dir)
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.path.resolve().name)[:60] or "model"
        self.onnx_model_type = ORT_MODEL_TYPES.get(folder.model_type)
        self._model = None
        self._notes: list[str] = []

    def _load_model(self) -> Any:
        """The fp32 HF model of `task_class`, from the folder only (never the network)."""
        offline()
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        auto = self._model_class(transformers)
        try:
            model, info = auto.from_pretrained(
                self.folder.path,
                local_files_only=True,
                attn_implementation="eager",
                dtype=torch.float32,
                output_loading_info=True,
            )
        except Exception as exc:
            raise UserError(
                f"--model {self.folder.path}: cannot be loaded for {self.folder.task} "
                f"({_first_line(exc)}); check --task or the folder"
            ) from None
        missing = [k for k in info.get("missing_keys") or () if self._needs(k)]
        if missing:
            raise UserError(
                f"--model {self.folder.path}: as {auto.__name__.removeprefix('Auto')} "
                f"({self.folder.task}) it lacks {len(missing)} weight(s) ({', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}) that would start at random, so every "
                "figure would be noise; check --task, or save the trained model whole"
            )
        return model.eval()

    def _model_class(self, transformers: Any) -> Any:
        """The task's Auto class; for an embedding, the base model class the folder names
        (`T5EncoderModel`: AutoModel would build the encoder-decoder, without its decoder)."""
        if self.folder.task == "sentence-embedding":
            for arch in self.folder.config.get("architectures") or []:
                if "For" not in arch and arch.endswith("Model") and hasattr(transformers, arch):
                    return getattr(transformers, arch)
        return getattr(transformers, self.task_class)

    def _needs(self, weight: str) -> bool:
        """Whether the task's output depends on this weight (an embedding pools the hidden
        states, never a pooler layer the folder may not have saved)."""
        return not (self.folder.task == "sentence-embedding" and "pooler" in weight)

    def torch_model(self):  # -> torch.nn.Module
        if self._model is None:
            self._model = self._wrap(self._load_model()).eval()
        return self._model

    @abstractmethod
    def _wrap(self, model):
        """The task's torch wrapper (`hf_modules`): named inputs in, one tensor out."""

    def notes(self) -> list[str]:
        """What the search states once at its start: the data split, shapes, pooling."""
        return [f"{self.name}: {line}" for line in self._notes]

    def identity(self) -> dict:
        return {
            "model": _digest([self.folder.path / "config.json", *self._weight_files()]),
            "data": None if self.data_path is None else _digest(_files(self.data_path)),
            "train": None if self.options.train_data is None
            else _digest(_files(self.options.train_data)),
            "options": self.options.identity(),
            "task": self.folder.task,
            "protocol": PROTOCOL_VERSION,
        }  # fmt: skip

    def _weight_files(self) -> list[Path]:
        from autoaccel.workloads.st_modules import dense_files

        path = self.folder.path
        own = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
        return own + dense_files(self.folder.dense)

    def fusion_options(self, model) -> dict:
        """Heads and attention width of the (possibly pruned) model's first attention."""
        for module in model.modules():
            heads = getattr(module, "num_attention_heads", None)
            width = getattr(module, "all_head_size", None)
            if isinstance(heads, int) and isinstance(width, int):
                return {"num_heads": heads, "hidden_size": width}
        return {}

    def teacher_predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The fp32 torch teacher as a `Predict`."""
        import torch

        model = self.torch_model()
        with torch.inference_mode():
            args = [torch.from_numpy(inputs[n]) for n in self.input_names]
            return model(*args).float().numpy()


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def _digest(files: list[Path]) -> str:
    sha = hashlib.sha256()
    for file in files:
        sha.update(file.name.encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()[:16]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__


def load_folder_workload(
    model: Path, data: Path, raw_options: dict[str, Any] | None, cache_dir: Path
) -> Workload:
    """The workload for `--model FOLDER --data FILE` and the task's options."""
    options = Options.parse(raw_options)
    folder = read_folder(Path(model), options.task)
    if not Path(data).exists():
        raise UserError(f"--data {data}: no such file or folder; give an existing path")
    if options.train_data is not None and not options.train_data.exists():
        raise UserError(
            f"--train-data {options.train_data}: no such file or folder; give an existing path"
        )
    if folder.task == "image-classification":
        from autoaccel.workloads.hf_image import ImageClassification

        return ImageClassification(folder, Path(data), options, cache_dir)
    from autoaccel.workloads.hf_scores import TextScores, is_score_head
    from autoaccel.workloads.hf_text import SentenceEmbedding, TextClassification

    cls = TextClassification if folder.task == "text-classification" else SentenceEmbedding
    cls = TextScores if cls is TextClassification and is_score_head(folder) else cls
    return cls(folder, Path(data), options, cache_dir)
