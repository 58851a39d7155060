"""Re-pairing the cheapest models with the most efficient builds, on a hand-made study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from recombine_study import BASELINE, CHOICES, ORT, OV_BF16, OV_F32, TEACHER, _student, _trial

from autoaccel.recombine import (
    CROSSES,
    SMALLER_MODELS,
    SWEEP,
    USER_ATTR,
    Recombination,
    auto_count,
    build_effects,
    enqueue,
    fit,
    is_model_key,
    proposals,
    ranked_halves,
)
from autoaccel.space import SearchSpace, suggest_recipe
from autoaccel.workers import counted


@pytest.fixture
def study():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0))  # 0: the slow build
    s.add_trial(_trial(_student(2), ORT, 5.0))  # 1: fastest feasible model
    s.add_trial(_trial(TEACHER, OV_BF16, 8.0))  # 2: the fast build, 2.5x on one model
    s.add_trial(_trial(_student(1), OV_F32, 2.0, drop=0.05))  # 3: out of the limit
    s.add_trial(_trial(_student(3), OV_F32, 6.0))  # 4
    return s


def test_model_half_is_the_torch_stage_techniques():
    assert is_model_key("distill.layers") and is_model_key("prune.amount")
    assert not is_model_key("runtime.backend") and not is_model_key("quantize.mode")
    assert not is_model_key("compile.fusion") and not is_model_key("nonsense.key")


def test_halves_are_ranked_from_feasible_trials_only(study):
    models, builds = ranked_halves(study, BASELINE)
    # trial 3's model is the fastest but out of the limit: never re-paired
    assert [h.recipe for h in models] == [_student(2), _student(3), TEACHER]
    assert models[0].score < models[1].score < models[2].score
    assert [h.recipe for h in builds] == [OV_BF16, OV_F32, ORT]
    assert builds[0].score < builds[1].score < builds[2].score


def test_a_build_is_judged_on_the_same_model_not_by_how_small_its_model_was():
    # builds A and B ran the same large model (B 2x faster); C ran only a tiny model
    trials = [
        _trial(TEACHER, ORT, 40.0),
        _trial(TEACHER, OV_BF16, 20.0),
        _trial(_student(1), OV_F32, 2.0),
    ]
    effects = build_effects(trials)
    ort, bf16, f32 = (effects[tuple(sorted(b.items()))] for b in (ORT, OV_BF16, OV_F32))
    assert bf16 < f32 < ort  # C is not credited with its model's speed
    assert ort - bf16 > 0.5  # most of log(2) is the build's


def test_a_model_is_ranked_by_its_own_cost_not_by_the_build_it_ran_on():
    # the 2-layer student only ever ran on the build that is 5x slower on the teacher
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 40.0))
    s.add_trial(_trial(TEACHER, OV_BF16, 8.0))
    s.add_trial(_trial(_student(2), ORT, 10.0))
    s.add_trial(_trial(_student(3), OV_BF16, 3.0))
    models, _ = ranked_halves(s, BASELINE)
    assert [h.recipe for h in models] == [_student(2), _student(3), TEACHER]


def test_students_that_differ_only_in_training_are_one_architecture():
    long = {**_student(2), "distill.steps": 400}
    trials = [
        _trial(_student(2), ORT, 10.0),
        _trial(long, OV_BF16, 2.0, choices={"distill.steps": [150, 400]}),
        _trial(TEACHER, ORT, 40.0),
    ]
    effects = fit(trials)
    assert len(effects.models) == 2  # the two students share one cost


def test_proposals_skip_what_was_tried_and_put_the_best_pairs_first(study):
    crosses = [(p["model_trial"], p["build_trial"]) for p in proposals(study, BASELINE, 9)]
    # each half by its fastest trial: ORT by trial 1 (5 ms); (1, 1), (4, 4) and (2, 2) are
    # trials themselves, teacher + ORT is trial 0's recipe
    assert crosses == [(1, 2), (1, 4), (4, 2), (4, 1), (2, 4)]
    first = proposals(study, BASELINE, 2)
    assert [p["recipe"] for p in first] == [{**_student(2), **OV_BF16}, {**_student(2), **OV_F32}]


def test_nothing_to_re_pair_without_two_halves_to_cross():
    s = optuna.create_study(directions=["maximize", "minimize"])
    assert proposals(s, BASELINE, 9) == []
    s.add_trial(_trial(_student(2), ORT, 5.0))
    assert proposals(s, BASELINE, 9) == []  # one trial: its own halves only


def test_enqueued_crosses_are_asked_first_and_build_the_joined_recipe(study):
    chosen = enqueue(study, BASELINE, 2)
    assert len(chosen) == 2
    assert enqueue(study, BASELINE, 2)[0]["recipe"] == {**_student(3), **OV_BF16}  # not again
    blocks: dict = {}
    for key, values in CHOICES.items():
        tech, name = key.split(".")
        blocks.setdefault(tech, {})[name] = values
    space = SearchSpace("t", Path("t.yaml"), blocks)
    trial = study.ask()
    recipe = suggest_recipe(trial, space, None)
    assert {k: recipe[k] for k in chosen[0]["recipe"]} == chosen[0]["recipe"]
    assert trial.user_attrs[USER_ATTR] == {"model": 1, "build": 2}


def test_recombination_stages_come_in_order_each_once_the_last_ones_trials_are_asked():
    assert auto_count(10) == 0 and auto_count(20) == 5 and auto_count(100) == 25
    assert auto_count(1000) == 25
    assert [n for _, n in Recombination(25).stages] == [11, 3, 3, 8]
    late = Recombination(3)  # too few for smaller models: crosses, then one sweep
    assert not late.due(96, 100, 0.0, None)
    assert late.due(97, 100, 0.0, None) == (CROSSES, 2)
    assert not late.due(98, 100, 0.0, None)
    assert late.due(99, 100, 0.0, None) == (SWEEP, 1)
    assert [s for s, _ in Recombination(2).stages] == [CROSSES]
    staged = Recombination(20)
    assert not staged.due(79, 100, 0.0, None)
    assert staged.due(80, 100, 0.0, None) == (CROSSES, 8)  # the stage is taken
    assert not staged.due(87, 100, 0.0, None)
    assert not staged.due(88, 100, 0.0, None, waiting=1)  # a cross not asked yet
    assert staged.due(88, 100, 0.0, None) == (SMALLER_MODELS, 3)
    assert not staged.due(90, 100, 0.0, None)
    assert staged.due(91, 100, 0.0, None) == (SMALLER_MODELS, 3)  # the second round
    assert not staged.due(93, 100, 0.0, None)
    assert staged.due(94, 100, 0.0, None) == (SWEEP, 6)  # the second round has run
    assert not staged.due(99, 100, 0.0, None)
    assert [n for _, n in Recombination(12).stages] == [4, 2, 2, 4]
    timed = Recombination(20)  # with a time budget: each stage as soon as the last has run
    assert not timed.due(10, 10_000, 79.0, 100.0)
    assert timed.due(10, 10_000, 81.0, 100.0) == (CROSSES, 8)
    assert not timed.due(12, 10_000, 88.0, 100.0, waiting=6)
    assert timed.due(18, 10_000, 90.0, 100.0) == (SMALLER_MODELS, 3)
    assert timed.due(21, 10_000, 94.0, 100.0) == (SMALLER_MODELS, 3)
    assert timed.due(24, 10_000, 96.0, 100.0) == (SWEEP, 6)
    assert not timed.due(30, 10_000, 99.0, 100.0)
    assert not Recombination(0).due(99, 100, 0.0, None)


def test_a_search_ends_with_crosses_of_its_own_trials(tmp_path, cache_teacher):
    import autoaccel
    from autoaccel.recombine import is_model_key

    runs = cache_teacher(tmp_path / "runs")
    fast = {"measure_seconds": 0.03, "space": "quick", "isolate": False}
    result = autoaccel.search("seed-mlp", budget=8, recombine=3, runs_dir=runs, **fast)
    study = optuna.load_study(study_name="seed-mlp-quick", storage=f"sqlite:///{runs}/optuna.db")
    crossed = [t for t in study.trials if USER_ATTR in t.user_attrs]
    assert 1 <= len(crossed) <= 3 and all(t.number >= 5 for t in crossed)
    for t in crossed:
        assert t.state.name == "COMPLETE"
        why = t.user_attrs[USER_ATTR]
        if "variant_of" in why or "swept" in why:  # build changes; the last, a sweep
            source = study.trials[why.get("variant_of", why.get("swept"))].params
            assert t.params[why["changed"]] != source[why["changed"]]
            continue
        model = study.trials[t.user_attrs[USER_ATTR]["model"]].user_attrs["recipe"]
        build = study.trials[t.user_attrs[USER_ATTR]["build"]].user_attrs["recipe"]
        joined = {
            **{k: v for k, v in model.items() if is_model_key(k)},
            **{k: v for k, v in build.items() if not is_model_key(k)},
        }
        assert t.user_attrs["recipe"] == joined and t.state.name == "COMPLETE"
    notes = result.recommendation["notes"]
    assert any("re-pair the models" in n or "change one build setting" in n for n in notes)
    assert counted(study.trials, 8) == 8  # 8 recipes judged (and any sampler repeats)


def test_with_one_model_the_reserved_trials_change_one_setting_of_the_best_build():
    from autoaccel.recombine import variants

    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0))
    s.add_trial(_trial(TEACHER, OV_F32, 12.0))
    s.add_trial(_trial(TEACHER, {**OV_F32, "quantize.mode": "int8_dynamic"}, 9.0))  # best
    s.add_trial(_trial(_student(1), OV_BF16, 2.0, drop=0.05))  # bf16 fast, out of the limit
    assert proposals(s, BASELINE, 9) == []  # one feasible model half: nothing to cross
    changes = variants(s, BASELINE, 9)
    # bf16 ran fast (on the infeasible student too: latency does not depend on quality);
    # onnxruntime ran slow; the other quantize mode was tried already; a change that gives
    # back a recipe already run (trial 1 on onnxruntime is trial 0) is no variant
    assert [(c["variant_of"], c["changed"], c["recipe"][c["changed"]]) for c in changes] == [
        (2, "runtime.ov_precision", "bf16"),
        (2, "runtime.backend", "onnxruntime"),
        (1, "runtime.ov_precision", "bf16"),
    ]
    assert "runtime.ov_precision" not in changes[1]["recipe"]  # off with onnxruntime
    assert changes[0]["params"] == {**TEACHER, **OV_BF16, "quantize.mode": "int8_dynamic"}
    assert len(variants(s, BASELINE, 1)) == 1
    chosen = enqueue(s, BASELINE, 2)
    assert [c["changed"] for c in chosen] == ["runtime.ov_precision", "runtime.backend"]
    asked = s.ask()
    assert asked.user_attrs[USER_ATTR] == {"variant_of": 2, "changed": "runtime.ov_precision"}


def test_a_slower_recipe_one_setting_from_the_fastest_is_a_base_too():
    """The fastest recipe within the limit is f32 without int8; a slower one has int8 and bf16
    but two streams, which every timing says is slow: its one-setting fix comes first, and
    a setting that broke the limit on every trial of this model (fp16) is never proposed."""
    from autoaccel.recombine import variants

    more = {"runtime.ov_streams": [1, 2], "quantize.mode": ["none", "int8_dynamic", "fp16"]}
    f32, bf16 = ({**OV_F32, "runtime.ov_streams": 1}, {**OV_BF16, "runtime.ov_streams": 2})
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, f32, 5.0, choices=more))  # 0: fastest within the limit
    s.add_trial(_trial(TEACHER, {**f32, "runtime.ov_streams": 2}, 9.0, choices=more))  # 1
    s.add_trial(_trial(TEACHER, {**bf16, "quantize.mode": "int8_dynamic"}, 6.0, choices=more))
    s.add_trial(_trial(TEACHER, {**f32, "quantize.mode": "fp16"}, 3.0, 0.05, more))
    changes = variants(s, BASELINE, 20)
    first = changes[0]
    assert (first["variant_of"], first["changed"]) == (2, "runtime.ov_streams")
    assert first["recipe"] == {
        **TEACHER,
        **bf16,
        "quantize.mode": "int8_dynamic",
        "runtime.ov_streams": 1,
    }
    assert first["expected_ms"] < 5.0
    expected = [c["expected_ms"] for c in changes]
    assert expected == sorted(expected)
    assert {c["variant_of"] for c in changes} >= {0, 2}
    assert all(c["recipe"]["quantize.mode"] != "fp16" for c in changes)


def test_a_search_trains_smaller_models_in_two_rounds_each_as_long_as_allowed(
    tmp_path, cache_teacher
):
    import autoaccel

    runs = cache_teacher(tmp_path / "runs")
    space = tmp_path / "students.yaml"
    space.write_text(
        "version: 1\ntechniques:\n  runtime:\n    backend: [onnxruntime, torch]\n"
        "  distill:\n    mode: [student]\n    width: [1.0, 0.5, 0.25]\n    steps: [20, 40]\n"
    )
    options = {"measure_seconds": 0.03, "isolate": False, "targets": ["cpu-local"]}
    result = autoaccel.search(
        "seed-mlp",
        budget=7,
        recombine=5,  # 2 crosses (or build changes), one smaller model per round, 1 sweep
        max_accuracy_drop=0.3,
        space=str(space),
        runs_dir=runs,
        **options,
    )
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{runs}/optuna.db")
    smaller = [t for t in study.trials if "smaller_than" in t.user_attrs.get(USER_ATTR, {})]
    for trial in smaller:
        assert trial.state.name == "COMPLETE"
        source = study.trials[trial.user_attrs[USER_ATTR]["smaller_than"]]
        assert trial.params["distill.width"] < source.params["distill.width"]
        assert trial.params["distill.steps"] == 40  # a smaller student trains the longest
    assert 1 <= len(smaller) <= 2
    # the second round was enqueued once the first had run: a smaller model still (from the
    # first round's where it kept quality), or where none is left, a build change
    assert [t for t in study.trials if USER_ATTR in t.user_attrs and t.number > smaller[0].number]
    notes = result.recommendation["notes"]
    assert any("one setting smaller than the cheapest within the limit" in n for n in notes)
