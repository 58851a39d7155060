"""Image classification from a model folder, judged on a folder of images per class.

Images of any size are prepared by the folder's own image processor
(`preprocessor_config.json`: resize, crop, rescale, normalise), once, and kept as
`pixel_values`. Judged by top-1 accuracy (and macro F1); the subfolder names are the labels
(the model's `id2label` names, or class indices).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads.base import Batch, Inputs, Predict
from autoaccel.workloads.data_files import Rows, class_indices, load_image, read_images, split
from autoaccel.workloads.hf_folder import Folder, HFWorkload, Options
from autoaccel.workloads.judging_rows import cap_judging

EVAL_BATCH, TRAIN_BATCH = 32, 16
CALIB_ROWS, CALIB_BATCH = 64, 8


class ImageClassification(HFWorkload):
    """`...ForImageClassification`: pixel values -> class logits."""

    task_class = "AutoModelForImageClassification"
    output_kind = "logits"
    metric = "accuracy"
    metrics = {"macro_f1": "macro-averaged F1 over the classes, on the judging images"}
    metric_ranges = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0)}
    input_names = ("pixel_values",)
    dynamic_axes = {"pixel_values": {0: "batch"}}

    def __init__(self, folder: Folder, data: Path, options: Options, cache_dir: Path) -> None:
        super().__init__(folder, data, options, cache_dir)
        self.processor = self._load_processor()
        rows = _read(data, "--data")
        if rows.labels is None:  # read_images gives labels for --data always; kept as a check
            raise UserError(f"--data {data}: put each class's images in a subfolder")
        classes = folder.id2label()
        rows.labels = class_indices(rows.labels, classes, f"--data {data.name} (subfolder names)")
        train = None
        if options.train_data is not None:
            train = _read(options.train_data, "--train-data")
            if train.labels is not None:
                where = f"--train-data {options.train_data.name} (subfolder names)"
                train.labels = class_indices(train.labels, classes, where)
        train_name = options.train_data.name if options.train_data else ""
        parts = cap_judging(
            split(rows, train, False, data.name, train_name), options.judge_rows, "images"
        )
        if len(parts.train) == 0:
            raise UserError(
                f"--data {data.name}: nothing is left to calibrate on; give --train-data"
            )
        self.judge, self.train = parts.judge, parts.train
        self.metric_description = (
            f"top-1 accuracy on {len(self.judge)} judging images of {data.name}"
        )
        self._pixels: dict[str, np.ndarray] = {}
        shape = "x".join(map(str, self.pixels("train")[0].shape))
        self._notes += [
            parts.statement,
            f"images prepared by the folder's image processor to {shape}; latency timed at "
            "batch 1",
        ]

    def _load_processor(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoImageProcessor

        try:
            return AutoImageProcessor.from_pretrained(self.folder.path, local_files_only=True)
        except Exception as exc:
            raise UserError(
                f"--model {self.folder.path}: no usable image processor ({_first(exc)}); save "
                "it into the folder (image_processor.save_pretrained)"
            ) from None

    def _wrap(self, model):
        from autoaccel.workloads.hf_modules import ImageClassifier

        return ImageClassifier(model)

    def pixels(self, part: str) -> np.ndarray:
        """`pixel_values` of every image of one part ("judge" or "train"), made once."""
        if part not in self._pixels:
            rows = self.judge if part == "judge" else self.train
            mode = "L" if self.folder.config.get("num_channels") == 1 else "RGB"  # grey models
            out = []
            for start in range(0, len(rows), 64):
                images = [load_image(p, mode) for p in rows.inputs[0][start : start + 64]]
                values = self.processor(images=images, return_tensors="np")["pixel_values"]
                out.append(np.asarray(values, dtype=np.float32))
            if len({a.shape[1:] for a in out}) > 1:
                raise UserError(
                    f"--data {self.data_path}: images of different sizes, and the model's image "
                    "processor does not resize them (do_resize false); resize them to one size"
                )
            self._pixels[part] = np.ascontiguousarray(np.concatenate(out))
        return self._pixels[part]

    def latency_inputs(self, batch_size: int = 1) -> Inputs:
        return {"pixel_values": np.repeat(self.pixels("train")[:1], batch_size, axis=0)}

    def calibration_inputs(self) -> list[Inputs]:
        """Up to 64 evenly spaced training images, 8 a batch."""
        pixels = self.pixels("train")
        picks = np.unique(np.linspace(0, len(pixels) - 1, CALIB_ROWS).round().astype(int))
        return [
            {"pixel_values": pixels[picks[s : s + CALIB_BATCH]]}
            for s in range(0, len(picks), CALIB_BATCH)
        ]

    def training_batches(self) -> list[Batch]:
        """Training images in a fixed shuffled order, 16 a batch (labels where known)."""
        order = np.random.default_rng(0).permutation(len(self.train))
        labels = None if self.train.labels is None else self.train.labels[order]
        return self.batches_of({"pixel_values": self.pixels("train")[order]}, labels, TRAIN_BATCH)

    def evaluate(self, predict: Predict) -> dict[str, float]:
        from sklearn.metrics import f1_score

        pixels = self.pixels("judge")
        logits = [
            np.asarray(predict({"pixel_values": pixels[s : s + EVAL_BATCH]}))
            for s in range(0, len(pixels), EVAL_BATCH)
        ]
        pred, truth = np.concatenate(logits).argmax(axis=1), self.judge.labels
        return {
            "accuracy": float(np.mean(pred == truth)),
            "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
        }


def _read(path: Path, option: str) -> Rows:
    if not path.is_dir():
        raise UserError(
            f"{option} {path}: the model takes images; give a folder with one subfolder of "
            "images per class"
        )
    return read_images(path, option)


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__
