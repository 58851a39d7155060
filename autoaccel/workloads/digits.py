"""scikit-learn's digits (8x8 images, 10 classes): the seed article's MLP and a small CNN.

Split (fixed, stratified, seed 0): 70 % train, 30 % validation. Training and calibration use
only the train part; accuracy is judged only on the validation part. The trained weights are
cached under the runs cache so every trial and every run judges the same teacher.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path

import numpy as np

from autoaccel.workloads.base import Batch, Inputs, Predict, Workload

_TRAIN_EPOCHS = 60
_SEED = 0


def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, test_size=0.3, random_state=_SEED, stratify=y)


class _DigitsWorkload(Workload):
    output_kind = "probabilities"
    train_lr = 1e-3
    metric = "accuracy"
    metric_description = "top-1 accuracy on the digits validation split (540 images)"
    metric_ranges = {"accuracy": (0.0, 1.0)}
    input_names = ("x",)
    dynamic_axes = {"x": {0: "batch"}}
    architecture = ""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        x_train, x_val, y_train, y_val = _digits_split()
        self.x_train, self.y_train = self._shape(x_train), y_train
        self.x_val, self.y_val = self._shape(x_val), y_val
        self._model = None

    def _shape(self, x: np.ndarray) -> np.ndarray:
        return x

    @abstractmethod
    def _build(self):  # -> torch.nn.Module
        """The untrained network; each digits workload defines its own architecture."""

    def identity(self) -> dict:
        return {"arch": self.architecture, "epochs": _TRAIN_EPOCHS, "seed": _SEED, "v": 2}

    def torch_model(self):
        if self._model is None:
            self._model = self._load_or_train()
        return self._model

    def _load_or_train(self):
        import torch

        path = self.cache_dir / "workloads" / f"{self.name}-{self.fingerprint()}.pt"
        torch.manual_seed(_SEED)  # initial weights are part of the deterministic training
        model = self._build()
        if path.exists():
            model.load_state_dict(torch.load(path, weights_only=True))
        else:
            self._train(model)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # writers in parallel: own files
            torch.save(model.state_dict(), tmp)
            tmp.replace(path)
        return model.eval()

    def _train(self, model) -> None:
        """Deterministic training: seeded init and batch order, Adam, minibatches of 64."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # results differ in the last bits across thread counts
        try:
            self._epochs(model)
        finally:
            torch.set_num_threads(threads)

    def _epochs(self, model) -> None:
        import torch

        gen = torch.Generator().manual_seed(_SEED)
        x = torch.from_numpy(self.x_train)
        y = torch.from_numpy(self.y_train).long()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(_TRAIN_EPOCHS):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 64):
                idx = order[i : i + 64]
                opt.zero_grad()
                loss = torch.nn.functional.nll_loss(torch.log(model(x[idx]) + 1e-9), y[idx])
                loss.backward()
                opt.step()
        model.eval()

    def training_batches(self) -> list[Batch]:
        """The train split only, never the validation split."""
        return digits_training_batches(self)

    def latency_inputs(self, batch_size: int = 1) -> Inputs:
        return {"x": np.ascontiguousarray(self.x_val[:batch_size])}

    def calibration_inputs(self) -> list[Inputs]:
        return [{"x": self.x_train[i : i + 32]} for i in range(0, 256, 32)]

    def evaluate(self, predict: Predict) -> dict[str, float]:
        out = predict({"x": self.x_val})
        return {"accuracy": float(np.mean(np.argmax(out, axis=1) == self.y_val))}


class SeedMLP(_DigitsWorkload):
    """The seed article's network: Dense(64, relu) -> Dense(10, softmax) on 64 pixel inputs."""

    name = "seed-mlp"
    architecture = "dense64-relu-dense10-softmax"

    def _build(self):
        from torch import nn

        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))


class DigitsCNN(_DigitsWorkload):
    """A small CNN on the 8x8 images: two 3x3 conv layers, max-pool, two dense layers."""

    name = "digits-cnn"
    architecture = "conv16-conv32-pool-dense64-dense10-softmax"

    def _shape(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(-1, 1, 8, 8)

    def _build(self):
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
            nn.Softmax(dim=1),
        )


def digits_training_batches(workload: _DigitsWorkload, batch_size: int = 64) -> list[Batch]:
    """The digits train split in its (already shuffled, stratified) order, with labels."""
    x, y = workload.x_train, workload.y_train
    return [
        ({"x": np.ascontiguousarray(x[i : i + batch_size])}, np.asarray(y[i : i + batch_size]))
        for i in range(0, len(x), batch_size)
    ]
