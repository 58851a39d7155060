"""The build cache: one model file per distinct model-changing prefix, written atomically;
a longer training run continues a shorter one's checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

import autoaccel.builder
from autoaccel.builder import build_candidate

ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}
DYNAMIC = {**ORT, "quantize.mode": "int8_dynamic", "quantize.per_channel": True}


def _hidden_entries(cache):
    models = cache / "models"
    return [p.name for p in models.iterdir() if p.name.startswith(".")]


def test_same_recipe_reuses_model_file_when_built_twice(seed_mlp, tmp_path):
    first = build_candidate(DYNAMIC, seed_mlp, tmp_path)
    mtime = first.onnx_path.stat().st_mtime_ns
    second = build_candidate(DYNAMIC, seed_mlp, tmp_path)
    assert second.onnx_path == first.onnx_path
    assert second.onnx_path.stat().st_mtime_ns == mtime
    assert second.notes == first.notes == ("exported to ONNX", "quantized int8_dynamic")


def test_cached_step_is_not_rerun_when_built_again(seed_mlp, tmp_path, monkeypatch):
    build_candidate(DYNAMIC, seed_mlp, tmp_path)

    def boom(*args, **kwargs):
        raise AssertionError("export ran again")

    monkeypatch.setattr(autoaccel.builder, "_export", boom)
    assert build_candidate(DYNAMIC, seed_mlp, tmp_path).onnx_path.exists()


def test_recipes_differing_only_in_session_settings_share_model_file(seed_mlp, tmp_path):
    a = build_candidate({**DYNAMIC, "runtime.intra_op_threads": 1}, seed_mlp, tmp_path)
    b = build_candidate(
        {
            **DYNAMIC,
            "runtime.intra_op_threads": 2,
            "runtime.execution_mode": "parallel",
            "compile.graph_level": "basic",
        },
        seed_mlp,
        tmp_path,
    )
    assert a.onnx_path == b.onnx_path
    assert a.session != b.session
    assert len(list((tmp_path / "models").iterdir())) == 2  # export + quantize


def test_different_quantize_modes_give_different_model_files(seed_mlp, tmp_path):
    paths = {
        mode: build_candidate({**ORT, "quantize.mode": mode}, seed_mlp, tmp_path).onnx_path
        for mode in ("none", "fp16", "int8_dynamic", "int8_static")
    }
    assert len(set(paths.values())) == 4
    contents = {p.read_bytes() for p in paths.values()}
    assert len(contents) == 4


def test_quantize_settings_give_different_files_when_mode_is_the_same(seed_mlp, tmp_path):
    static = {**ORT, "quantize.mode": "int8_static", "quantize.per_channel": True}
    minmax = build_candidate({**static, "quantize.calibration": "minmax"}, seed_mlp, tmp_path)
    entropy = build_candidate({**static, "quantize.calibration": "entropy"}, seed_mlp, tmp_path)
    assert minmax.onnx_path != entropy.onnx_path


def test_unquantized_build_exports_once_and_shares_export_with_quantized(seed_mlp, tmp_path):
    plain = build_candidate({**ORT, "quantize.mode": "none"}, seed_mlp, tmp_path)
    build_candidate(DYNAMIC, seed_mlp, tmp_path)
    folders = sorted(p for p in (tmp_path / "models").iterdir())
    assert plain.onnx_path.parent in folders
    assert len(folders) == 2


def test_workloads_with_different_identity_never_share_cache(seed_mlp, digits_cnn, tmp_path):
    a = build_candidate(DYNAMIC, seed_mlp, tmp_path)
    b = build_candidate(DYNAMIC, digits_cnn, tmp_path)
    assert a.onnx_path != b.onnx_path


def test_build_leaves_no_temp_folder_behind(seed_mlp, tmp_path):
    for mode in ("none", "fp16", "int8_dynamic", "int8_static"):
        build_candidate({**ORT, "quantize.mode": mode}, seed_mlp, tmp_path)
    assert _hidden_entries(tmp_path) == []
    assert all((p / "model.onnx").is_file() for p in (tmp_path / "models").iterdir())


def test_failed_build_leaves_no_temp_folder_and_no_cache_entry(seed_mlp, tmp_path, monkeypatch):
    def crash(candidate, workload, workdir, changed=False):
        (workdir / "model.onnx").write_bytes(b"half a model")
        raise RuntimeError("crashed mid-export")

    monkeypatch.setattr(autoaccel.builder, "_export", crash)
    with pytest.raises(RuntimeError, match="crashed mid-export"):
        build_candidate(ORT, seed_mlp, tmp_path)
    assert list((tmp_path / "models").iterdir()) == []
    monkeypatch.undo()
    candidate = build_candidate(ORT, seed_mlp, tmp_path)  # the next build starts clean
    assert candidate.onnx_path.read_bytes() != b"half a model"


# --- continued training ---------------------------------------------------------------------

TORCH = {"runtime.backend": "torch"}


def _student(steps: int, **extra) -> dict:
    return {
        **TORCH,
        "distill.mode": "student",
        "distill.width": 0.5,
        "distill.steps": steps,
        **extra,
    }


def _finetuned(steps: int) -> dict:
    return {
        **TORCH,
        "prune.mode": "unstructured",
        "prune.amount": 0.5,
        "prune.finetune_steps": steps,
    }


@pytest.fixture
def one_training_thread(monkeypatch):
    """Fresh and continued runs on the same thread count: equal to the last bit."""
    import autoaccel.machine

    monkeypatch.setattr(autoaccel.machine, "training_threads", lambda: 1)


def _state(candidate) -> dict:
    return candidate.torch_model.state_dict()


def test_longer_student_continues_the_shorter_ones_checkpoint(
    seed_mlp, tmp_path, one_training_thread
):
    short = build_candidate(_student(150), seed_mlp, tmp_path)
    assert "checkpoint" not in short.notes[-1]
    longer = build_candidate(_student(400), seed_mlp, tmp_path)
    assert longer.notes[-1].endswith("; 280 steps run from the 120-step checkpoint)")
    metas = [json.loads(p.read_text()) for p in (tmp_path / "torch").glob("*/meta.json")]
    assert sorted(m["resumed"] for m in metas) == [[], [[120, 280]]]
    fresh = build_candidate(_student(400), seed_mlp, tmp_path / "fresh")
    assert "checkpoint" not in fresh.notes[-1]
    for name, value in _state(fresh).items():
        torch.testing.assert_close(_state(longer)[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "other", [{"distill.temperature": 2.0}, {"distill.alpha": 0.5}, {"distill.width": 0.75}]
)
def test_student_never_continues_a_checkpoint_of_other_settings(
    seed_mlp, tmp_path, one_training_thread, other
):
    build_candidate(_student(150), seed_mlp, tmp_path)
    longer = build_candidate(_student(400, **other), seed_mlp, tmp_path)
    assert "checkpoint" not in longer.notes[-1]


def test_longer_recovery_fine_tune_continues_the_shorter_ones_checkpoint(
    seed_mlp, tmp_path, one_training_thread
):
    build_candidate(_finetuned(150), seed_mlp, tmp_path)
    longer = build_candidate(_finetuned(400), seed_mlp, tmp_path)
    assert "280 steps run from the 120-step checkpoint" in longer.notes[-1]
    fresh = build_candidate(_finetuned(400), seed_mlp, tmp_path / "fresh")
    for name, value in _state(fresh).items():
        torch.testing.assert_close(_state(longer)[name], value, rtol=1e-5, atol=1e-6)


def test_more_openvino_streams_than_threads_is_infeasible_before_any_training(
    seed_mlp, tmp_path, monkeypatch
):
    """OpenVINO would quietly run fewer streams; the build says so before it trains."""
    from autoaccel.errors import InfeasibleRecipe

    def no_training(*args, **kwargs):
        raise AssertionError("trained a recipe that cannot run")

    monkeypatch.setattr(autoaccel.builder, "_torch_stage", no_training)
    recipe = {**_student(50), "runtime.backend": "openvino", "runtime.ov_streams": 2}
    with pytest.raises(InfeasibleRecipe) as refused:
        build_candidate({**recipe, "runtime.intra_op_threads": 1}, seed_mlp, tmp_path)
    assert refused.value.kind == "openvino_streams" and "1 thread" in str(refused.value)
    assert not (tmp_path / "models").exists()


def test_trains_says_whether_a_build_would_run_a_training_loop(seed_mlp, tmp_path):
    """What the early-stopping rule's untrained timing is spent on: only builds that train."""
    from autoaccel.builder import trains

    student = _student(20)
    assert trains(student, seed_mlp, tmp_path)
    build_candidate(student, seed_mlp, tmp_path)
    assert not trains(student, seed_mlp, tmp_path)  # cached
    pruned = {**student, "prune.mode": "unstructured", "prune.amount": 0.5}
    assert not trains({**pruned, "prune.finetune_steps": 0}, seed_mlp, tmp_path)  # no loop
    assert trains({**pruned, "prune.finetune_steps": 5}, seed_mlp, tmp_path)
    assert not trains({**student, "distill.steps": 0}, seed_mlp, tmp_path)


def test_a_build_trained_in_bf16_says_so_in_its_note_and_meta(seed_mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOACCEL_TRAIN_PRECISION", "bf16")  # seed-mlp is below the threshold
    student = {**ORT, "distill.mode": "student", "distill.width": 0.5, "distill.steps": 20}
    built = build_candidate(student, seed_mlp, tmp_path)
    assert any("bf16 autocast" in note for note in built.notes), built.notes
    metas = [json.loads(m.read_text()) for m in (tmp_path / "torch").glob("*/meta.json")]
    assert [m["precision"] for m in metas] == ["bf16 autocast"]
    monkeypatch.setenv("AUTOACCEL_TRAIN_PRECISION", "fp32")
    again = build_candidate({**student, "distill.steps": 30}, seed_mlp, tmp_path)
    assert not any("bf16" in note for note in again.notes), again.notes
