"""Search space files: validated once with messages naming file and key; suggestion rules."""

from __future__ import annotations

import os
import textwrap

import optuna
import pytest

from autoaccel.errors import UserError
from autoaccel.space import SPACES_DIR, load_space, suggest_recipe
from autoaccel.techniques import REGISTRY

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _space(tmp_path, text: str):
    return load_space(str(_write(tmp_path, text)))


def _recipes(space, workload, n: int, enqueue: list[dict] | None = None) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for params in enqueue or []:
        study.enqueue_trial(params)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(suggest_recipe(trial, space, workload))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("name", sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
def test_shipped_space_loads(name):
    space = load_space(name)
    assert space.name == name
    assert set(space.blocks) <= set(REGISTRY)
    assert {"distill", "quantize"} <= set(space.blocks)  # compression + quantization jointly
    assert space.blocks["quantize"]["mode"]
    assert len(space.digest()) == 16


def test_shipped_spaces_include_default_and_quick():
    assert {"default", "quick"} <= {p.stem for p in SPACES_DIR.glob("*.yaml")}
    assert load_space("default").digest() != load_space("quick").digest()


def test_unknown_space_name_lists_shipped_spaces():
    with pytest.raises(UserError, match="no-such-space.*default.*quick"):
        load_space("no-such-space")


BAD_SPACES = {
    "malformed-yaml": ("techniques: [unclosed\n", ["not valid YAML"]),
    "missing-techniques": ("version: 1\n", ["'techniques:'"]),
    "unknown-technique": (
        "techniques:\n  sparsify: {}\n",
        ["techniques.sparsify", "runtime, distill, prune, compile, quantize"],
    ),
    "unknown-param": (
        "techniques:\n  runtime:\n    cores: [1]\n",
        ["techniques.runtime.cores", "intra_op_threads"],
    ),
    "choice-not-allowed": (
        "techniques:\n  quantize:\n    mode: [int4]\n",
        ["techniques.quantize.mode", "int4", "int8_dynamic"],
    ),
    "bool-for-categorical": (
        "techniques:\n  compile:\n    fusion: [0]\n",
        ["techniques.compile.fusion", "[0]"],
    ),
    "wrong-type": (
        'techniques:\n  runtime:\n    intra_op_threads: ["two"]\n',
        ["techniques.runtime.intra_op_threads", "'two'", "integer"],
    ),
    "float-for-integer": (
        "techniques:\n  runtime:\n    intra_op_threads: {low: 1, high: 2.5}\n",
        ["techniques.runtime.intra_op_threads", "2.5"],
    ),
    "out-of-range": (
        "techniques:\n  runtime:\n    intra_op_threads: [0, 2]\n",
        ["techniques.runtime.intra_op_threads", "0", "[1, 256]"],
    ),
    "low-above-high": (
        "techniques:\n  runtime:\n    intra_op_threads: {low: 4, high: 2}\n",
        ["techniques.runtime.intra_op_threads", "low 4", "high 2"],
    ),
    "range-bad-keys": (
        "techniques:\n  runtime:\n    intra_op_threads: {min: 1, max: 2}\n",
        ["techniques.runtime.intra_op_threads", "low"],
    ),
    "block-not-mapping": (
        "techniques:\n  quantize: [fp16]\n",
        ["techniques.quantize", "must map"],
    ),
    "empty-choice-list": (
        "techniques:\n  quantize:\n    mode: []\n",
        ["techniques.quantize.mode", "empty list"],
    ),
    "unknown-top-level-key": (
        "version: 1\nsampler: tpe\ntechniques:\n  runtime: {}\n",
        ["unknown top-level", "sampler"],
    ),
    "unsupported-version": (
        "version: 2\ntechniques:\n  runtime: {}\n",
        ["version 2", "version: 1"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPACES))
def test_bad_space_raises_user_error_naming_file_and_key(tmp_path, case):
    text, expected = BAD_SPACES[case]
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_space(str(path))
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message


def test_malformed_yaml_message_names_the_line(tmp_path):
    path = _write(tmp_path, "version: 1\ntechniques:\n  runtime: {backend: [torch]\n")
    with pytest.raises(UserError, match=r"line \d+"):
        load_space(str(path))


def test_scalar_choice_is_accepted_as_one_value_list(tmp_path):
    space = _space(tmp_path, "techniques:\n  quantize:\n    mode: fp16\n")
    assert space.blocks == {"quantize": {"mode": ["fp16"]}}


def test_calibration_is_suggested_only_when_mode_is_int8_static(tmp_path, seed_mlp):
    space = load_space("default")
    recipes = _recipes(space, seed_mlp, 120)  # enough random draws to reach every int8 mode
    modes = set()
    for recipe in recipes:
        mode = recipe.get("quantize.mode")
        modes.add(mode)
        assert ("quantize.calibration" in recipe) == (mode == "int8_static"), recipe
        assert ("quantize.per_channel" in recipe) == (mode in ("int8_dynamic", "int8_static"))
    assert {"int8_static", "int8_dynamic", None} <= modes  # None: the torch backend


def test_onnx_settings_are_absent_when_backend_is_torch(seed_mlp):
    space = load_space("default")
    (recipe,) = _recipes(space, seed_mlp, 1, enqueue=[{"runtime.backend": "torch"}])
    assert recipe["runtime.backend"] == "torch"
    assert not [k for k in recipe if k.startswith(("quantize.", "compile."))]
    assert "runtime.execution_mode" not in recipe
    assert "runtime.intra_op_threads" in recipe


def test_enqueued_int8_static_recipe_gets_calibration(seed_mlp):
    space = load_space("default")
    enqueue = [{"runtime.backend": "onnxruntime", "quantize.mode": "int8_static"}]
    (recipe,) = _recipes(space, seed_mlp, 1, enqueue=enqueue)
    assert recipe["quantize.mode"] == "int8_static"
    assert recipe["quantize.calibration"] in ("minmax", "entropy", "percentile")


def test_params_missing_from_yaml_take_defaults_and_are_not_searched(tmp_path, seed_mlp):
    space = _space(tmp_path, "techniques:\n  quantize:\n    mode: [int8_static]\n")
    study = optuna.create_study()
    trial = study.ask()
    recipe = suggest_recipe(trial, space, seed_mlp)
    assert trial.params == {"quantize.mode": "int8_static"}
    assert recipe == {
        "runtime.backend": "onnxruntime",
        "runtime.intra_op_threads": len(os.sched_getaffinity(0)),
        "runtime.execution_mode": "sequential",
        "distill.mode": "none",
        "prune.mode": "none",
        "compile.graph_level": "all",
        "quantize.mode": "int8_static",
        "quantize.per_channel": True,
        "quantize.calibration": "minmax",
    }


def test_numeric_range_is_suggested_within_bounds(tmp_path, seed_mlp):
    space = _space(tmp_path, "techniques:\n  runtime:\n    intra_op_threads: {low: 2, high: 5}\n")
    values = {r["runtime.intra_op_threads"] for r in _recipes(space, seed_mlp, 20)}
    assert values <= {2, 3, 4, 5} and len(values) > 1
    assert all(isinstance(v, int) for v in values)


def test_fusion_is_never_suggested_when_workload_has_no_model_type(seed_mlp):
    recipes = _recipes(load_space("default"), seed_mlp, 15)
    assert not any("compile.fusion" in r for r in recipes)


def test_torch_backend_is_never_suggested_when_workload_is_onnx_only(onnx_only):
    recipes = _recipes(load_space("default"), onnx_only, 20)
    assert {r["runtime.backend"] for r in recipes} <= {"onnxruntime", "openvino"}
    assert all("quantize.mode" in r for r in recipes)


def test_targets_block_sets_names_and_plan_grid_without_searching_them(tmp_path):
    space = _space(
        tmp_path,
        "targets:\n  names: [cpu-local, nvidia-l4]\n  batch_size: [1, 4]\n  tensor: [1, 2]\n"
        "techniques:\n  quantize:\n    mode: [none]\n",
    )
    assert space.targets == {
        "names": ["cpu-local", "nvidia-l4"],
        "batch_size": [1, 4],
        "tensor": [1, 2],
    }
    assert "target" not in space.blocks


@pytest.mark.parametrize(
    "text, words",
    [
        ("techniques:\n  target:\n    batch_size: [1]\n", "no longer searched"),
        ("targets:\n  batch: [1]\ntechniques: {}\n", "targets.batch is unknown"),
        ("targets:\n  tensor: [0]\ntechniques: {}\n", "integers from 1"),
        ("targets:\n  names: []\ntechniques: {}\n", "empty list"),
        ("targets: 3\ntechniques: {}\n", "must map"),
    ],
)
def test_bad_targets_block_is_one_line_user_error(tmp_path, text, words):
    with pytest.raises(UserError, match=words):
        _space(tmp_path, text)


def test_a_study_whose_choices_this_model_no_longer_has_is_refused_in_one_line(
    tmp_path, seed_mlp, onnx_only
):
    """The backends a torch model had ([onnxruntime, torch]) are not an ONNX-only model's
    ([onnxruntime]): Optuna would raise mid-search, so the continuation is refused first."""
    from autoaccel.space import check_choices

    space = _space(tmp_path, "techniques:\n  runtime:\n    backend: [onnxruntime, torch]\n")
    study = optuna.create_study(study_name="s", sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    suggest_recipe(trial, space, seed_mlp)
    study.tell(trial, 0.0)
    check_choices(study, space, seed_mlp)  # the same choices: continues
    said = r"over \['onnxruntime', 'torch'\]; for this model on this machine it can take"
    with pytest.raises(UserError, match=said + r" \['onnxruntime'\]"):
        check_choices(study, space, onnx_only)
