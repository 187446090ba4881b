"""Knowledge distillation: losses as pure functions of logits."""

from slimkit.distillation.losses import DistillConfig, kd_loss

__all__ = ["DistillConfig", "kd_loss"]
