"""Knowledge distillation: its config, losses as pure functions, students built from teachers."""

from slimkit.distillation.configs import DistillConfig, StudentConfig
from slimkit.distillation.losses import kd_loss

__all__ = ["DistillConfig", "StudentConfig", "kd_loss"]
