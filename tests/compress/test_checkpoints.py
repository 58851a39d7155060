"""Resumable checkpoints: a longer run continues a shorter one's and ends where a fresh run
would; the store keeps one per key and stays under its size."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from autoaccel.compress.checkpoints import CheckpointStore
from autoaccel.compress.distillation import WSD, train


def _teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def _student(width: int = 12) -> nn.Module:
    """Dropout, so a resumed run must also restore the RNG to match a fresh one."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Dropout(0.2), nn.Linear(width, 4))


def _batches(n: int = 5) -> list:
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((8, 6)).astype(np.float32) for _ in range(n)]
    return [({"x": xi}, rng.integers(0, 4, 8)) for xi in x]


def _mse(student_out, teacher_out, labels):
    return ((student_out - teacher_out) ** 2).mean()


def _train(student, steps, store=None, lr=1e-2, batches=None):
    batches = _batches() if batches is None else batches
    return train(
        student,
        _teacher(),
        batches,
        _mse,
        steps,
        lr,
        0,
        ("x",),
        threads=1,
        **({"checkpoints": store} if store is not None else {}),
    )


def test_continued_run_equals_fresh_run_of_the_full_length(tmp_path):
    store = CheckpointStore(tmp_path)
    short = _train(_student(), 150, store)
    assert short.resumed_from == 0 and store.steps() == []  # keyed below the root
    continued = _student()
    stats = _train(continued, 400, store)
    assert stats.resumed_from == WSD(150).stable_end == 120
    assert stats.steps_run == 280
    fresh = _student()
    _train(fresh, 400)
    for a, b in zip(continued.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert stats.last_loss == pytest.approx(_train(_student(), 400).last_loss, rel=1e-5)


def test_resumed_run_checks_only_the_monitor_fractions_after_its_start(tmp_path):
    store = CheckpointStore(tmp_path)
    _train(_student(), 150, store)
    seen = []
    student = _student()
    train(
        student,
        _teacher(),
        _batches(),
        _mse,
        400,
        1e-2,
        0,
        ("x",),
        threads=1,
        checkpoints=store,
        monitor=lambda model, f: seen.append(f),
        monitor_at=(0.25, 0.5),
    )
    assert seen == [0.5]  # 25 % (step 100) lies before the checkpoint at 120


def test_shorter_run_than_a_kept_checkpoint_starts_fresh(tmp_path):
    store = CheckpointStore(tmp_path)
    _train(_student(), 400, store)  # keeps step 320
    stats = _train(_student(), 150, store)  # its stable phase ends at 120: nothing usable
    assert stats.resumed_from == 0


@pytest.mark.parametrize(
    "change",
    [
        {"lr": 2e-2},
        {"width": 10},  # another structure
        {"batches": "other"},
        {"start": "other"},  # same structure, other starting weights
    ],
)
def test_run_never_resumes_another_runs_checkpoint(tmp_path, change):
    store = CheckpointStore(tmp_path)
    _train(_student(), 150, store)
    student = _student(change.get("width", 12))
    if "start" in change:
        with torch.no_grad():
            student[0].weight.add_(1e-3)
    batches = _batches(6) if "batches" in change else None
    stats = _train(student, 400, store, lr=change.get("lr", 1e-2), batches=batches)
    assert stats.resumed_from == 0


def test_store_keeps_only_the_furthest_checkpoint_per_key(tmp_path):
    store = CheckpointStore(tmp_path).keyed({"run": 1})
    store.save(120, {"w": torch.zeros(3)})
    store.save(320, {"w": torch.ones(3)})
    store.save(200, {"w": torch.zeros(3)})  # a further one is kept: ignored
    assert store.steps() == [320]
    assert store.latest(upto=319) is None
    step, state = store.latest(upto=400)
    assert step == 320 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in store.folder.iterdir()] == ["320.pt"]  # no temporary file left
    assert CheckpointStore(tmp_path).keyed({"run": 2}).latest(upto=1000) is None


def test_store_evicts_the_least_recently_used_over_its_size(tmp_path):
    big = {"w": torch.zeros(25_000)}  # ~100 kB each
    stores = [CheckpointStore(tmp_path, max_bytes=250_000).keyed({"run": i}) for i in range(3)]
    stores[0].save(10, big)
    stores[1].save(10, big)
    os.utime(stores[0].folder / "10.pt", (1, 1))  # the oldest use
    stores[2].save(10, big)
    assert [s.steps() for s in stores] == [[], [10], [10]]


def test_a_student_holding_an_expanded_one_element_tensor_has_a_digest():
    # onnx2torch keeps scalar constants expanded to shape [1] with stride 0: the digest that
    # keys a run's checkpoint failed on them, so every training trial of such a model failed
    from autoaccel.compress.distillation import weights_digest

    def student(value: int) -> nn.Module:
        model = _student()
        model.register_buffer("scalar", torch.tensor(value).expand(1))
        return model

    assert student(3).scalar.stride() == (0,)
    assert weights_digest(student(3)) == weights_digest(student(3))
    assert weights_digest(student(3)) != weights_digest(student(4))
