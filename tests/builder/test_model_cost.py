"""A model half's work, counted on its untrained structure."""

from __future__ import annotations

import torch

from autoaccel.builder.model_cost import forward_flops, untrained_model

STUDENT = {"distill.mode": "student", "distill.steps": 40}


def test_a_narrower_student_does_less_work_and_zeroed_weights_do_the_same(seed_mlp):
    teacher = forward_flops({"distill.mode": "none"}, seed_mlp)
    half = forward_flops({**STUDENT, "distill.width": 0.5}, seed_mlp)
    quarter = forward_flops({**STUDENT, "distill.width": 0.25}, seed_mlp)
    sparse = forward_flops({"prune.mode": "unstructured", "prune.amount": 0.5}, seed_mlp)
    assert 0 < quarter < half < 0.75 * teacher
    assert sparse == teacher  # a dense runtime multiplies the zeros too


def test_a_student_is_cut_from_the_teacher_and_leaves_the_teacher_whole(digits_cnn):
    teacher = digits_cnn.torch_model()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = untrained_model({**STUDENT, "distill.width": 0.5}, digits_cnn)
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters()
    )
    after = digits_cnn.torch_model().state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert forward_flops({**STUDENT, "distill.width": 0.5}, digits_cnn) < forward_flops(
        {"distill.mode": "none"}, digits_cnn
    )
