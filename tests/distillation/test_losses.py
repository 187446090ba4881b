"""The KD loss against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from slimkit.distillation import kd_loss


def test_soft_term_matches_a_hand_computed_kl():
    student = torch.tensor([[0.0, math.log(3.0)]])  # softmax at T=1: [1/4, 3/4]
    teacher = torch.tensor([[0.0, 0.0]])  # [1/2, 1/2]
    # KL(teacher || student) = 1/2 ln((1/2)/(1/4)) + 1/2 ln((1/2)/(3/4)) = 1/2 ln(4/3)
    assert float(kd_loss(student, teacher, None, temperature=1.0, alpha=1.0)) == pytest.approx(
        0.5 * math.log(4 / 3), rel=1e-6
    )


def test_temperature_softens_and_t_squared_rescales():
    student = torch.tensor([[0.0, 2 * math.log(3.0)]])  # at T=2: [1/4, 3/4]
    teacher = torch.tensor([[0.0, 0.0]])
    got = float(kd_loss(student, teacher, None, temperature=2.0, alpha=1.0))
    assert got == pytest.approx(4 * 0.5 * math.log(4 / 3), rel=1e-6)


def test_alpha_mixes_soft_and_hard_terms():
    student = torch.tensor([[0.0, math.log(3.0)]])
    teacher = torch.tensor([[0.0, 0.0]])
    labels = torch.tensor([1])
    soft = 0.5 * math.log(4 / 3)
    hard = -math.log(3 / 4)
    got = float(kd_loss(student, teacher, labels, temperature=1.0, alpha=0.25))
    assert got == pytest.approx(0.25 * soft + 0.75 * hard, rel=1e-6)


def test_kl_is_averaged_per_example_and_zero_for_identical_logits():
    s = torch.randn(5, 4)
    assert float(kd_loss(s, s.clone(), None, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)
    one = kd_loss(s[:1], torch.zeros(1, 4), None, alpha=1.0)
    two = kd_loss(s[:1].repeat(2, 1), torch.zeros(2, 4), None, alpha=1.0)
    assert float(one) == pytest.approx(float(two), rel=1e-6)


def test_hard_term_needs_labels():
    with pytest.raises(ValueError, match="needs labels unless alpha == 1"):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), None, alpha=0.5)
