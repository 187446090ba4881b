"""The knowledge-distillation loss of Hinton, Vinyals & Dean (2015), as a pure function."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float = 4.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """``alpha * T² * KL(p_teacher‖p_student) + (1 - alpha) * CE(student, labels)``.

    Both distributions are softened by ``T``; the ``T²`` factor keeps the soft term's gradients
    on the scale of the hard term's as ``T`` grows (Hinton et al., section 2). With ``alpha = 1``
    no labels are needed. KL is averaged over the batch (``batchmean``), the true KL per example.

    >>> s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    >>> float(kd_loss(s, t, None, temperature=2.0, alpha=1.0))
    0.0
    """
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature**2)
    if alpha == 1.0:
        return soft
    if labels is None:
        raise ValueError("kd_loss needs labels unless alpha == 1 (soft targets only)")
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student, labels)
