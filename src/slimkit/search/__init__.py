"""``slimkit auto``: a joint search over pruning, distillation and quantization."""

from slimkit.search.auto import auto
from slimkit.search.config import AutoConfig, AutoResult, BackendChoice, Objective
from slimkit.search.pareto import pareto_front

__all__ = ["AutoConfig", "AutoResult", "BackendChoice", "Objective", "auto", "pareto_front"]
