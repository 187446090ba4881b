"""Regularization that prepares a model for compression: penalties as functions of a model."""

from slimkit.regularization.penalties import (
    RegularizeConfig,
    bn_l1,
    group_lasso,
    induced_sparsity,
    l1,
    l2,
    penalty,
)

__all__ = [
    "RegularizeConfig",
    "bn_l1",
    "group_lasso",
    "induced_sparsity",
    "l1",
    "l2",
    "penalty",
]
