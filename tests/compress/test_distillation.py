"""Distillation building blocks: losses by hand, layer dropping on the real MiniLM, the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from autoaccel.compress.distillation import (
    WSD,
    default_layers,
    embedding_loss,
    kd_loss,
    layer_student,
    logits_from_probs,
    train,
)
from autoaccel.workloads.digits import digits_training_batches
from autoaccel.workloads.minilm import MiniLMWorkload, minilm_training_batches

SEP_ID = 102  # BERT's [SEP]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> MiniLMWorkload:
    return MiniLMWorkload(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def minilm_batches(minilm: MiniLMWorkload) -> list:
    return minilm_training_batches(minilm)


def _run(model: nn.Module, inputs: dict[str, np.ndarray], names: tuple[str, ...]):
    with torch.no_grad():
        return model(*[torch.from_numpy(inputs[n]) for n in names])


def _narrow_cnn(seed: int = 0) -> nn.Module:
    """Half the digits CNN's width, with dropout so the training seed matters."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
        nn.Softmax(dim=1),
    )


def _digits_kd(student_out, teacher_out, labels):
    s, t = logits_from_probs(student_out), logits_from_probs(teacher_out)
    return kd_loss(s, t, labels, temperature=4.0, alpha=0.7)


# --- losses ---------------------------------------------------------------------------------


def test_kd_loss_equals_the_hand_computed_value():
    # T = 2: teacher logits (2 ln 3, 0) soften to (3/4, 1/4); the student's (0, 0) to (1/2, 1/2)
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    ce = math.log(2.0)  # -log softmax(0, 0)[0]
    expected = 0.5 * 2.0**2 * kl + 0.5 * ce
    loss = kd_loss(student, teacher, torch.tensor([0]), temperature=2.0, alpha=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_zero_for_identical_logits_with_alpha_one_and_ce_part_otherwise():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    labels = torch.tensor([2, 1])
    assert kd_loss(logits, logits, None, temperature=3.0, alpha=1.0).item() == pytest.approx(
        0.0, abs=1e-6
    )
    ce = nn.functional.cross_entropy(logits, labels).item()
    mixed = kd_loss(logits, logits.clone(), labels, temperature=3.0, alpha=0.25).item()
    assert mixed == pytest.approx(0.75 * ce, rel=1e-6)
    with pytest.raises(ValueError, match="labels"):
        kd_loss(logits, logits, None, temperature=3.0, alpha=0.5)


def test_logits_from_probs_recover_the_softened_distribution_and_stay_finite():
    z = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    recovered = logits_from_probs(torch.softmax(z, dim=1))
    for temperature in (1.0, 4.0):
        assert torch.allclose(
            torch.softmax(recovered / temperature, 1), torch.softmax(z / temperature, 1)
        )
    assert torch.isfinite(logits_from_probs(torch.tensor([[1.0, 0.0]]))).all()


def test_embedding_loss_is_zero_when_identical_one_when_orthogonal_two_when_opposite():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert embedding_loss(a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert embedding_loss(a, a.flip(0)).item() == pytest.approx(1.0, abs=1e-6)
    assert embedding_loss(a, -a).item() == pytest.approx(2.0, abs=1e-6)


# --- schedule -------------------------------------------------------------------------------


def test_wsd_schedule_of_a_short_run_is_a_prefix_of_a_longer_ones():
    short, long = WSD(150), WSD(400)
    assert (short.warmup, short.stable_end, long.stable_end) == (30, 120, 320)
    assert [short.factor(s) for s in range(120)] == [long.factor(s) for s in range(120)]
    assert short.factor(0) == pytest.approx(1 / 30) and short.factor(29) == 1.0
    assert short.factor(119) == short.factor(120) == 1.0  # decay starts at the stable end
    decay = [short.factor(s) for s in range(120, 150)]
    assert decay == sorted(decay, reverse=True) and decay[-1] == pytest.approx(1 / 30)


def test_wsd_schedule_of_a_run_under_four_warmups_warms_up_over_a_quarter():
    assert WSD(40).warmup == 10 and WSD(40).stable_end == 32
    assert WSD(1).warmup == 1 and WSD(1).factor(0) == 1.0
    assert all(0 < WSD(n).factor(s) <= 1 for n in (1, 2, 3, 7) for s in range(n))


# --- layer choice and the BERT student ------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "keep", "expected"),
    [
        (6, 2, [0, 5]),
        (6, 3, [0, 2, 5]),
        (6, 4, [0, 1, 3, 5]),
        (6, 6, [0, 1, 2, 3, 4, 5]),
        (12, 4, [0, 3, 7, 11]),
        (6, 1, [0]),
    ],
)
def test_default_layers_are_evenly_spaced_with_first_and_last(total, keep, expected):
    assert default_layers(total, keep) == expected


@pytest.mark.parametrize(("total", "keep"), [(6, 0), (6, 7)])
def test_default_layers_rejects_impossible_counts(total, keep):
    with pytest.raises(ValueError, match="keep"):
        default_layers(total, keep)


@pytest.mark.slow
def test_layer_student_of_minilm_keeps_chosen_layers_as_independent_copies(minilm):
    teacher = minilm.torch_model()
    student = layer_student(teacher, [0, 2, 5])
    assert len(student.bert.encoder.layer) == 3
    assert student.bert.config.num_hidden_layers == 3
    assert len(teacher.bert.encoder.layer) == 6 and teacher.bert.config.num_hidden_layers == 6
    teacher_ptrs = {p.data_ptr() for p in teacher.parameters()}
    assert not teacher_ptrs & {p.data_ptr() for p in student.parameters()}
    assert torch.equal(  # initialised from the teacher's layer 2
        student.bert.encoder.layer[1].output.dense.weight,
        teacher.bert.encoder.layer[2].output.dense.weight,
    )
    inputs = minilm.tokenize(["A short sentence.", "Another, somewhat longer, sentence here."])
    out = _run(student, inputs, minilm.input_names)
    assert out.shape == (2, 384)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    full = layer_student(teacher, range(6))  # keeping every layer reproduces the teacher
    assert torch.allclose(
        _run(full, inputs, minilm.input_names),
        _run(teacher, inputs, minilm.input_names),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="keep_layers"):
        layer_student(teacher, [3, 1])
    with pytest.raises(ValueError, match="keep_layers"):
        layer_student(teacher, [0, 6])


@pytest.mark.slow
def test_minilm_training_batches_hold_every_training_sentence_once(minilm, minilm_batches):
    rows = sum(len(inputs["input_ids"]) for inputs, _ in minilm_batches)
    assert rows == len(minilm.training_texts())
    assert all(labels is None for _, labels in minilm_batches)
    assert all(len(inputs["input_ids"]) <= 16 for inputs, _ in minilm_batches)
    real = sum(int(inputs["attention_mask"].sum()) for inputs, _ in minilm_batches)
    padded = sum(inputs["attention_mask"].size for inputs, _ in minilm_batches)
    assert real / padded > 0.9  # similar lengths batched together
    short = minilm_training_batches(minilm, batch_size=16, max_length=12)
    for inputs, _ in short:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        assert ids.shape[1] <= 12 and ids.dtype == np.int64
        full_rows = mask.sum(axis=1) == ids.shape[1]
        assert (ids[full_rows, -1] == SEP_ID).all()  # a cut row still ends in [SEP]


@pytest.mark.slow
def test_distilling_a_two_layer_student_lowers_held_out_embedding_loss(minilm, minilm_batches):
    teacher = minilm.torch_model()
    teacher_before = teacher.bert.encoder.layer[5].output.dense.weight.clone()
    student = layer_student(teacher, default_layers(6, 2))
    steps = 30
    held_out = minilm_batches[-4:]  # in-order cycling never reaches these in 30 steps
    assert len(minilm_batches) > steps + len(held_out)

    def held_out_loss() -> float:
        names = minilm.input_names
        return float(
            np.mean(
                [
                    embedding_loss(_run(student, x, names), _run(teacher, x, names)).item()
                    for x, _ in held_out
                ]
            )
        )

    before = held_out_loss()
    stats = train(
        student, teacher, minilm_batches, embedding_loss, steps, 1e-4, 0, minilm.input_names
    )
    after = held_out_loss()
    assert stats.steps == steps and stats.seconds > 0
    assert stats.last_loss < stats.first_loss
    assert after < 0.8 * before, (before, after)
    assert torch.equal(teacher.bert.encoder.layer[5].output.dense.weight, teacher_before)
    assert not student.training and not teacher.training


# --- digits ---------------------------------------------------------------------------------


def test_digits_training_batches_are_the_labelled_train_split(digits_cnn):
    batches = digits_training_batches(digits_cnn, batch_size=64)
    x = np.concatenate([inputs["x"] for inputs, _ in batches])
    y = np.concatenate([labels for _, labels in batches])
    assert np.array_equal(x, digits_cnn.x_train) and np.array_equal(y, digits_cnn.y_train)
    assert all(len(labels) <= 64 for _, labels in batches)


def test_distilling_the_digits_cnn_into_a_narrower_cnn_keeps_accuracy(digits_cnn):
    student = _narrow_cnn()
    batches = digits_training_batches(digits_cnn)
    stats = train(student, digits_cnn.torch_model(), batches, _digits_kd, 300, 1e-2, 0, ("x",))
    assert stats.last_loss < stats.first_loss

    def predict(inputs):
        return _run(student, inputs, ("x",)).numpy()

    assert digits_cnn.evaluate(predict)["accuracy"] > 0.85


def test_training_is_deterministic_under_the_seed(digits_cnn):
    batches = digits_training_batches(digits_cnn)
    teacher = digits_cnn.torch_model()
    threads = torch.get_num_threads()

    def weights(seed: int) -> list[torch.Tensor]:
        student = _narrow_cnn()
        outside = torch.get_rng_state()
        # one thread: the default follows the free cores, and bits differ across counts
        train(student, teacher, batches, _digits_kd, 40, 1e-2, seed, ("x",), threads=1)
        assert torch.equal(torch.get_rng_state(), outside)  # the caller's RNG is untouched
        assert not student.training
        return [p.detach().clone() for p in student.parameters()]

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))  # dropout
    assert torch.get_num_threads() == threads


class _CountingTeacher(nn.Module):
    """The digits teacher, counting the batches it is asked for."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_teacher_outputs_are_computed_once_and_shared_across_runs(digits_cnn):
    batches = digits_training_batches(digits_cnn)[:8]
    teacher = _CountingTeacher(digits_cnn.torch_model())
    shared: dict = {}
    first = _narrow_cnn()
    train(first, teacher, batches, _digits_kd, 20, 1e-2, 0, ("x",), teacher_outputs=shared)
    assert teacher.calls == 8 and sorted(shared) == list(range(8))  # one per batch, cycled
    second = _narrow_cnn()
    train(second, teacher, batches, _digits_kd, 20, 1e-2, 0, ("x",), teacher_outputs=shared)
    assert teacher.calls == 8  # the second student read them: no teacher pass at all
    alone = _narrow_cnn()
    train(alone, teacher, batches, _digits_kd, 20, 1e-2, 0, ("x",))
    assert all(
        torch.equal(a, b) for a, b in zip(second.parameters(), alone.parameters(), strict=True)
    )  # shared outputs train the same student as fresh ones


def test_distill_into_shares_teacher_outputs_per_teacher_and_data(digits_cnn):
    from autoaccel.techniques import _training

    teacher = _CountingTeacher(digits_cnn.torch_model())
    for _ in range(2):
        _training.distill_into(_narrow_cnn(), teacher, digits_cnn, 5, {"alpha": 1.0})
    n_batches = len(digits_cnn.training_batches())
    assert teacher.calls == min(5, n_batches)  # the second student paid no teacher pass
    assert len(_training._TEACHER_OUTPUTS[teacher]) == 1  # one entry: same data both times


# --- bf16 autocast --------------------------------------------------------------------------


def test_bf16_autocast_training_learns_keeps_fp32_weights_and_differs_from_fp32(digits_cnn):
    batches = digits_training_batches(digits_cnn)
    teacher = digits_cnn.torch_model()

    def trained(precision: str) -> tuple[nn.Module, object]:
        student = _narrow_cnn()
        stats = train(
            student, teacher, batches, _digits_kd, 150, 1e-2, 0, ("x",), precision=precision
        )
        return student, stats

    bf16, stats = trained("bf16")
    fp32, _ = trained("fp32")
    assert stats.last_loss < stats.first_loss
    assert all(p.dtype == torch.float32 for p in bf16.parameters())  # master weights stay fp32

    def predict(inputs):
        return _run(bf16, inputs, ("x",)).numpy()

    assert digits_cnn.evaluate(predict)["accuracy"] > 0.85
    assert not all(
        torch.equal(a, b) for a, b in zip(bf16.parameters(), fp32.parameters(), strict=True)
    )  # bf16 products round differently: the precision really changed the arithmetic


def test_train_refuses_an_unknown_precision(digits_cnn):
    batches = digits_training_batches(digits_cnn)[:2]
    with pytest.raises(ValueError, match="fp16"):
        train(
            _narrow_cnn(),
            digits_cnn.torch_model(),
            batches,
            _digits_kd,
            2,
            1e-2,
            0,
            ("x",),
            precision="fp16",
        )
