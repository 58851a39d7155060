"""Text tasks of a model folder: sequence classification and sentence embeddings.

Texts are tokenised by the folder's own tokenizer, padded to the longest text of a batch and
cut at the model's length (`--max-length`, else the sentence-transformers `max_seq_length`,
else the model's positions). Latency is timed on one fixed shape, batch x the 95th
percentile of the judging texts' token counts, filled with real training tokens.

Classification is judged by top-1 accuracy (and macro F1) against the label column; sentence
embeddings by the Spearman correlation of the two texts' cosine with the score column, as
`minilm` judges its pairs (same batching, so the same model and pairs give the same figure),
or, without scores, by agreement with the fp32 model's vectors (`teacher_cosine`).

`minilm` is a `SentenceEmbedding` too, whose texts come from its own data instead of `--data`
(the `_load_data`, `_train_columns`, `_latency_text` and `_agreement_texts` hooks).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads.base import Batch, Inputs, Predict
from autoaccel.workloads.data_files import Rows, class_indices, read_table, split
from autoaccel.workloads.hf_folder import Folder, HFWorkload, Options, offline
from autoaccel.workloads.judging_rows import cap_judging
from autoaccel.workloads.similarity import row_cosines, spearman, unit_rows

EVAL_BATCH = 32
TRAIN_BATCH = 16
CALIB_ROWS, CALIB_BATCH = 64, 8


class TextWorkload(HFWorkload):
    """Tokenisation, the split and the shapes shared by both text tasks."""

    task_class = "AutoModel"
    by_text = False
    """Split `--data` by texts (pairs judged only inside the judging texts) or by rows."""
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    dynamic_axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
    }

    def __init__(
        self, folder: Folder, data: Path | None, options: Options, cache_dir: Path
    ) -> None:
        super().__init__(folder, data, options, cache_dir)
        self._tokenizer = None
        self._batches: list[Batch] | None = None
        self.max_length = options.max_length or self._model_length()
        self._load_data()

    def _load_data(self) -> None:
        """Where the judging and training texts come from: `--data` (and `--train-data`),
        split by `data_files.split`; also sets `seq_len`, the timed length. A workload with
        data of its own (`minilm`) overrides this."""
        data, options = self.data_path, self.options
        assert data is not None  # only a workload with its own _load_data goes without
        rows = _read(data, options, "--data")
        train = _read(options.train_data, options, "--train-data") if options.train_data else None
        rows, train = self._targets(rows, train)
        train_name = options.train_data.name if options.train_data else ""
        parts = split(rows, train, self.by_text and len(rows.inputs) == 2, data.name, train_name)
        unit = "pairs" if len(rows.inputs) == 2 else "rows"
        parts = cap_judging(parts, options.judge_rows, unit)
        if len(parts.train) == 0:
            raise UserError(
                f"--data {data.name}: nothing is left to calibrate and train on after the split; "
                "give --train-data"
            )
        self.judge, self.train, self.statement = parts.judge, parts.train, parts.statement
        self.input_names = self._input_names(rows)
        self.dynamic_axes = {n: {0: "batch", 1: "sequence"} for n in self.input_names}
        lengths = self.tokenize(self._judge_columns())["attention_mask"].sum(axis=1)
        self.seq_len = int(max(2, min(self.max_length, np.percentile(lengths, 95).round())))
        self._notes += [
            parts.statement,
            f"latency timed at batch 1 x {self.seq_len} tokens (the 95th percentile of the "
            f"judging texts' token counts); texts are cut at {self.max_length} tokens",
        ]

    @property
    def tokenizer(self):
        """The folder's own tokenizer, loaded on first use."""
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    def _load_tokenizer(self):
        offline()
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.folder.path, local_files_only=True)
        except Exception as exc:
            raise UserError(
                f"--model {self.folder.path}: no usable tokenizer ({_first(exc)}); save the "
                "tokenizer into the folder (tokenizer.save_pretrained)"
            ) from None

    def _model_length(self) -> int:
        cap = int(self.folder.config.get("max_position_embeddings") or 512)
        found = self.folder.max_seq_length or getattr(self.tokenizer, "model_max_length", cap)
        return int(min(found, cap))

    def _input_names(self, rows: Rows) -> tuple[str, ...]:
        return ("input_ids", "attention_mask")

    def _targets(self, rows: Rows, train: Rows | None) -> tuple[Rows, Rows | None]:
        return rows, train

    def tokenize(
        self,
        columns: tuple[list[str], ...] | list[str],
        length: int | None = None,
        cut: int | None = None,
    ) -> Inputs:
        """int64 model inputs of a list of texts, or of a tuple of columns (text pairs): padded
        to the longest row, or to exactly `length` tokens; cut at `cut` tokens (default
        `max_length`) by the tokenizer, so a cut row still ends as the model expects."""
        if isinstance(columns, list):
            columns = (columns,)
        enc = self.tokenizer(
            *[list(c) for c in columns],
            padding="max_length" if length else "longest",
            truncation=True,
            max_length=length or cut or self.max_length,
            return_tensors="np",
        )
        return {n: np.ascontiguousarray(enc[n], dtype=np.int64) for n in self.input_names}

    def _train_columns(self) -> tuple[list[str], ...]:
        """What the model reads per example: the row's text (or pair) by default."""
        return self.train.inputs

    def _judge_columns(self) -> tuple[list[str], ...]:
        return self.judge.inputs

    def _latency_text(self) -> str:
        """A text longer than `seq_len` tokens: training texts run together."""
        return " ".join(self.train.texts()[:200])

    def latency_inputs(self, batch_size: int = 1) -> Inputs:
        """A training text cut at `seq_len`: real tokens in every place (no padding a runtime
        could skip), shape (batch_size, seq_len)."""
        one = self.tokenize(([self._latency_text()],), length=self.seq_len)
        return {n: np.repeat(a, batch_size, axis=0) for n, a in one.items()}

    def calibration_inputs(self) -> list[Inputs]:
        """Up to 64 evenly spaced training rows, 8 a batch, all `seq_len` tokens long."""
        cols = self._train_columns()
        picks = np.unique(np.linspace(0, len(cols[0]) - 1, CALIB_ROWS).round().astype(int))
        return [
            self.tokenize(tuple([c[i] for i in picks[s : s + CALIB_BATCH]] for c in cols),
                          length=self.seq_len)
            for s in range(0, len(picks), CALIB_BATCH)
        ]  # fmt: skip

    def _train_labels(self) -> np.ndarray | None:
        return None

    def training_batches(self) -> list[Batch]:
        """`batches_by_length()` at 16 rows x `max_length`, made once: the same list every call
        (checkpoints and cached teacher outputs are keyed by its content)."""
        if self._batches is None:
            self._batches = self.batches_by_length()
        return self._batches

    def batches_by_length(
        self, batch_size: int = TRAIN_BATCH, max_length: int | None = None
    ) -> list[Batch]:
        """Training rows sorted by token count and cut into batches (little padding: roughly
        twice the steps per second of random batches), the batch order then shuffled with a
        fixed seed so a cycle does not run from the shortest to the longest; rows cut at
        `max_length` tokens (default the workload's)."""
        if max_length is not None and max_length > self.max_length:
            raise ValueError(f"max_length {max_length} exceeds the workload's {self.max_length}")
        cols, labels = self._train_columns(), self._train_labels()
        lengths = self.tokenize(cols)["attention_mask"].sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return [
            (
                self.tokenize(tuple([c[i] for i in chunks[k]] for c in cols), cut=max_length),
                None if labels is None else labels[chunks[k]],
            )
            for k in np.random.default_rng(0).permutation(len(chunks))
        ]

    def run(self, predict: Predict, columns: tuple[list[str], ...]) -> np.ndarray:
        """`predict` over rows in their order, batched by character length (as `minilm`)."""
        n = len(columns[0])
        size = [sum(len(c[i]) for c in columns) for i in range(n)]
        order = sorted(range(n), key=lambda i: (size[i], i))
        out: np.ndarray | None = None
        for start in range(0, n, EVAL_BATCH):
            idx = order[start : start + EVAL_BATCH]
            got = np.asarray(predict(self.tokenize(tuple([c[i] for i in idx] for c in columns))))
            if got.ndim != 2 or got.shape[0] != len(idx):
                raise ValueError(f"predict returned shape {got.shape} for a batch of {len(idx)}")
            if not np.isfinite(got).all():  # a broken candidate fails its trial, not scores 0
                raise ValueError("the candidate produced non-finite (NaN/inf) outputs")
            if out is None:
                out = np.zeros((n, got.shape[1]), dtype=np.float32)
            out[idx] = got
        assert out is not None
        return out


class TextClassification(TextWorkload):
    """`...ForSequenceClassification`: one text, or a pair, per row -> class logits."""

    task_class = "AutoModelForSequenceClassification"
    output_kind = "logits"
    metric = "accuracy"
    metrics = {"macro_f1": "macro-averaged F1 over the classes, on the judging rows"}
    metric_ranges = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0)}

    def __init__(self, folder: Folder, data: Path, options: Options, cache_dir: Path) -> None:
        super().__init__(folder, data, options, cache_dir)
        self.metric_description = (
            f"top-1 accuracy on {len(self.judge)} judging rows of {data.name}"
        )

    def _wrap(self, model):
        from autoaccel.workloads.hf_modules import TextClassifier

        return TextClassifier(model)

    def _input_names(self, rows: Rows) -> tuple[str, ...]:
        pair = len(rows.inputs) == 2 and "token_type_ids" in self.tokenizer.model_input_names
        names = super()._input_names(rows)
        return (*names, "token_type_ids") if pair else names

    def _targets(self, rows: Rows, train: Rows | None) -> tuple[Rows, Rows | None]:
        classes = self.folder.id2label()
        if rows.labels is None:
            raise UserError(
                f"--data {rows.source}: no label column to judge the classifier by; name it "
                "with --label-column NAME"
            )
        col = self.options.columns.label or "label"
        rows.labels = class_indices(rows.labels, classes, f"--label-column {col} ({rows.source})")
        if train is not None and train.labels is not None:
            where = f"--label-column {col} ({train.source})"
            train.labels = class_indices(train.labels, classes, where)
        return rows, train

    def _train_labels(self) -> np.ndarray | None:
        return self.train.labels

    def evaluate(self, predict: Predict) -> dict[str, float]:
        from sklearn.metrics import f1_score

        pred = self.run(predict, self.judge.inputs).argmax(axis=1)
        truth = self.judge.labels
        return {
            "accuracy": float(np.mean(pred == truth)),
            "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
        }


class SentenceEmbedding(TextWorkload):
    """An encoder + pooling: text -> vector, judged on rated pairs or against itself."""

    output_kind = "embedding"
    by_text = True
    metric_ranges = {"spearman": (-1.0, 1.0), "teacher_cosine": (-1.0, 1.0)}

    def _load_data(self) -> None:
        super()._load_data()
        self.texts = self.judge.texts()
        agreement = (
            f"mean cosine between the candidate's and the fp32 model's embeddings of the "
            f"{len(self.texts)} judging texts"
        )
        if self.judge.scores is not None:
            self.metric = "spearman"
            self.metric_description = (
                f"Spearman of embedding cosine vs the score column over {len(self.judge)} "
                f"pairs of {self.data_path.name}"
            )
            self.metrics = {"teacher_cosine": agreement}
        else:
            self.metric, self.metric_description, self.metrics = "teacher_cosine", agreement, {}
        self._notes.append(f"sentence embedding: {self.folder.pooling_source}")

    def _wrap(self, model):
        from autoaccel.workloads.hf_modules import SentenceEmbedder

        dense = None
        if self.folder.dense:
            from autoaccel.workloads.st_modules import load_dense

            dense = load_dense(self.folder.dense)
        return SentenceEmbedder(model, self.folder.pooling, self.folder.normalize, dense)

    def _targets(self, rows: Rows, train: Rows | None) -> tuple[Rows, Rows | None]:
        if rows.scores is not None and len(rows.inputs) != 2:
            raise UserError(
                f"--data {rows.source}: a score column rates pairs, but one text column was "
                "given; name two with --text-column a,b"
            )
        return rows, train

    def _train_columns(self) -> tuple[list[str], ...]:
        return (self.train.texts(),)  # each text of a pair is embedded alone

    def _judge_columns(self) -> tuple[list[str], ...]:
        return (self.judge.texts(),)

    def embed(self, predict: Predict, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts` in their order; batched by length so short words pay little."""
        return self.run(predict, (texts,))

    def _agreement_texts(self) -> list[str]:
        """The texts a candidate's vectors are held to the fp32 model's on."""
        return self.texts

    def teacher_embeddings(self, texts: list[str] | None = None, tag: str = "") -> np.ndarray:
        """The fp32 teacher's embeddings of `texts` (the agreement texts by default), cached
        per fingerprint under `tag`."""
        name = f"{self.name}-{self.fingerprint()}-teacher{'-' + tag if tag else ''}.npy"
        path = self.cache_dir / "workloads" / name
        if path.exists():
            return np.load(path)
        emb = self.embed(self.teacher_predict, self._agreement_texts() if texts is None else texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        tmp.replace(path)
        return emb

    def evaluate(self, predict: Predict) -> dict[str, float]:
        emb = unit_rows(self.embed(predict, self.texts))
        scores = {}
        if self.judge.scores is not None:
            row = {t: k for k, t in enumerate(self.texts)}
            a = emb[[row[t] for t in self.judge.inputs[0]]]
            b = emb[[row[t] for t in self.judge.inputs[1]]]
            scores["spearman"] = spearman(row_cosines(a, b), self.judge.scores)
        teacher = unit_rows(self.teacher_embeddings())
        scores["teacher_cosine"] = float(np.mean(row_cosines(emb, teacher)))
        return scores


def _read(path: Path, options: Options, option: str) -> Rows:
    if path.is_dir() or path.suffix.lower() == ".npz":
        what = "a folder of images" if path.is_dir() else "an .npz (that goes with an .onnx model)"
        raise UserError(
            f"{option} {path}: {what}, but the model takes text; give a table (.csv, .tsv, "
            ".jsonl, .parquet) with a text column"
        )
    return read_table(path, options.columns, option)


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__
