"""Shared fixtures: one cache per session, so each tiny teacher is trained once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from autoaccel.workloads.digits import DigitsCNN, SeedMLP


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train on one thread: on a busy 2-core machine two threads make training ~10x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def single_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


SEEDED_RATES = {
    "compute_eta": 0.28,
    "vector_eta": 0.06,
    "memory_eta": 0.4,
    "cache_eta": 1.8,
    "overhead_us": 0.35,
    "run_overhead_us": 10.0,
}
"""Rates of a full calibration on a 2-core EPYC VM: plausible, and never timed in a test."""


@pytest.fixture(scope="session", autouse=True)
def seeded_calibration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A search in a test copies this calibration instead of timing one on first use (~15 s
    each): `AUTOACCEL_CALIBRATION` names it, and subprocesses inherit it."""
    import json

    from autoaccel.machine import usable_cores
    from autoaccel.targets.calibrate import SEED_ENV, cpu_model_name

    path = tmp_path_factory.mktemp("calibration-seed") / "cpu-local.json"
    entry = {
        **SEEDED_RATES,
        "threads": usable_cores(),
        "cpu": cpu_model_name(),
        "host": "test-seed",
        "when": "2026-11-25T00:00:00+00:00",
        "suite": "seeded by tests/conftest.py",
        "n_samples": 31,
        "fit_mdape": 11.0,
        "load_avg_1min": 0.5,
    }
    payload = {"format": 1, "profile": "cpu-local", "by_threads": {str(usable_cores()): entry}}
    path.write_text(json.dumps(payload))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SEED_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def seed_mlp(cache_dir: Path) -> SeedMLP:
    workload = SeedMLP(cache_dir)
    with one_torch_thread():
        workload.torch_model()
    return workload


class TransformerLike(SeedMLP):
    """seed-mlp claiming an ONNX Runtime transformer model type (never trained or built)."""

    name = "transformer-like"
    onnx_model_type = "bert"


@pytest.fixture(scope="session")
def transformer_like(cache_dir: Path) -> SeedMLP:
    return TransformerLike(cache_dir)


@pytest.fixture(scope="session")
def digits_cnn(cache_dir: Path) -> DigitsCNN:
    workload = DigitsCNN(cache_dir)
    with one_torch_thread():
        workload.torch_model()
    return workload


@pytest.fixture(scope="session")
def cache_teacher(request: pytest.FixtureRequest):
    """`cache_teacher(runs_dir, name)` puts the session's trained teacher (seed-mlp or
    digits-cnn) in `runs_dir/cache/workloads`, where a search looks before it trains one.
    The file is the one that search would write: training is seeded and deterministic and the
    file is named by the workload's fingerprint. Each search in a new runs folder otherwise
    trains it again (3-7 s of CPU, twice when two workers start together)."""
    import shutil

    fixtures = {"seed-mlp": "seed_mlp", "digits-cnn": "digits_cnn"}

    def put(runs_dir: Path, name: str = "seed-mlp") -> Path:
        workload = request.getfixturevalue(fixtures[name])
        weights = f"{workload.name}-{workload.fingerprint()}.pt"
        folder = Path(runs_dir) / "cache" / "workloads"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workload.cache_dir / "workloads" / weights, folder / weights)
        return Path(runs_dir)

    return put


def _write_linear_onnx(folder: Path, n_features: int = 4, n_classes: int = 3) -> Path:
    """A tiny classifier exported from torch (Linear + Softmax), batch axis dynamic."""
    import warnings

    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(n_features, n_classes), torch.nn.Softmax(dim=1))
    path = folder / "tiny.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, n_features),),
            str(path),
            input_names=["features"],
            output_names=["output"],
            dynamic_axes={"features": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def _predict_with_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="session")
def tiny_onnx_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.onnx, data.npz) whose labels are the model's own predictions (accuracy 1.0)."""
    folder = tmp_path_factory.mktemp("tiny-onnx")
    model = _write_linear_onnx(folder)
    x_val = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y_val = _predict_with_onnx(model, x_val).argmax(axis=1)
    data = folder / "data.npz"
    np.savez(data, x_val=x_val, y_val=y_val)
    return model, data


@pytest.fixture(scope="session")
def onnx_only(tiny_onnx_files: tuple[Path, Path]):
    """An ONNX workload kept ONNX-only (no onnx2torch conversion): the path where the
    torch-level techniques and backends do not apply."""
    from autoaccel.workloads.onnx_file import OnnxFileWorkload

    return OnnxFileWorkload(*tiny_onnx_files, convert=False)


@pytest.fixture(scope="session", autouse=True)
def store_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder of empty-store templates for the session (autoaccel.store_templates): the
    first search builds MLflow's schema, every later new runs folder copies it, and nothing
    is written to the user's cache."""
    path = tmp_path_factory.mktemp("store-templates")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOACCEL_STORE_TEMPLATES", str(path))
        yield path


@pytest.fixture(scope="session", autouse=True)
def shared_machine_tolerated() -> Iterator[None]:
    """Tests run beside other work (a CI runner, a second test job): a search in a test must
    not wait for a quiet machine nor refuse to rank because of it. The tests of the busy
    detector itself (tests/evaluate/test_paired.py) set their own threshold."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOACCEL_BUSY_CORES", "1000")
        yield


# -- the order `make test` hands modules out in ----------------------------------------------
# `--dist loadfile --no-loadscope-reorder`: a module's tests stay on one worker (its module
# fixtures, a trained teacher or a finished search, are built once), and modules are handed
# out in collection order. pytest-xdist's default order (most tests first) left the modules of
# a few long tests (workers, README, scenarios, scale-out) for the end, one worker busy with
# them while the other waited: the modules that take longest come first.
HEAVIEST_FIRST = (
    "test_readme_commands.py",
    "test_scale_out.py",
    "test_search_scenarios.py",
    "test_workers.py",
    "test_isolation.py",
    "test_cli.py",
    "test_search.py",
    "test_stores.py",
    "test_tracking_outbox.py",
    "test_time_limits.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-module order
