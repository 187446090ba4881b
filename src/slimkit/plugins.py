"""Plugins: a package extends slimkit without editing it.

A package declares an entry point in the group ``slimkit.plugins``; ``import slimkit`` loads
every one (a module is imported, a callable is called), and the module registers what it adds
with the decorators below, the ones slimkit's own techniques use::

    # pyproject.toml of the user's package
    [project.entry-points."slimkit.plugins"]
    mytools = "mytools.slimkit_plugin"

Each kind of extension has one registration: a pruning method (:func:`register_pruning_method`
on its config, :func:`register_pruner` on its handler), a quantization mode
(:func:`register_quantization_mode`, :func:`register_quantizer`), a model
(:func:`register_model`) or model source form (:func:`register_source_form`), a data set
(:func:`register_dataset`), a runtime (:func:`register_runtime`), a search space
(:func:`register_space`, whose ``draw`` returns steps made with :func:`step`) and a step type
(:func:`register_step`). ``slimkit list`` shows them
with the built-ins, and ``slimkit list plugins`` which plugins loaded.

A plugin that fails to load is reported (a warning, and in ``slimkit list plugins``) and
skipped; ``SLIMKIT_NO_PLUGINS=1`` skips all of them. Entry points come from installed packages,
code the user chose to install: slimkit does not treat them as untrusted input.
"""

from __future__ import annotations

import os
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar

from slimkit.data.sources import register_dataset
from slimkit.models.registry import register_model
from slimkit.models.sources import SourceForm, register_source_form
from slimkit.pruning.configs import PRUNE_METHODS, PruneConfig
from slimkit.pruning.handlers import PruneInputs, register_pruner
from slimkit.quantization.backends import register_quantizer
from slimkit.quantization.configs import QUANT_MODES, QuantizeConfig
from slimkit.recipe import StepSpec, step
from slimkit.runtimes.base import register_runtime
from slimkit.search.space import Space, register_space
from slimkit.steps import register_step

GROUP = "slimkit.plugins"

PruneConfigT = TypeVar("PruneConfigT", bound=type[PruneConfig])
QuantizeConfigT = TypeVar("QuantizeConfigT", bound=type[QuantizeConfig])


def register_pruning_method(name: str) -> Callable[[PruneConfigT], PruneConfigT]:
    """Register a :class:`~slimkit.pruning.PruneConfig` subclass as pruning method ``name``
    (its ``method`` field is ``Literal[name]``); its handler is registered with
    :func:`register_pruner`."""
    return PRUNE_METHODS.register(name)  # type: ignore[return-value]


def register_quantization_mode(name: str) -> Callable[[QuantizeConfigT], QuantizeConfigT]:
    """Register a :class:`~slimkit.quantization.QuantizeConfig` subclass as quantization mode
    ``name``; its handler on each backend is registered with :func:`register_quantizer`."""
    return QUANT_MODES.register(name)  # type: ignore[return-value]


@dataclass(frozen=True)
class Plugin:
    """An entry point of the ``slimkit.plugins`` group and how loading it went."""

    name: str
    value: str
    distribution: str | None
    error: str | None = None


LOADED: list[Plugin] = []


def load_plugins() -> list[Plugin]:
    """Load every ``slimkit.plugins`` entry point once; what loaded, and what failed and why."""
    if LOADED or os.environ.get("SLIMKIT_NO_PLUGINS"):
        return LOADED
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        try:
            target = ep.load()
            if callable(target) and not isinstance(target, types.ModuleType):
                target()
        except Exception as err:  # one broken plugin must not stop slimkit or the others
            error = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"slimkit plugin {ep.name!r} ({ep.value}) failed to load and is skipped: {error}. "
                "Fix or uninstall it; SLIMKIT_NO_PLUGINS=1 skips all plugins.",
                RuntimeWarning,
                stacklevel=2,
            )
            LOADED.append(Plugin(ep.name, ep.value, dist, error))
        else:
            LOADED.append(Plugin(ep.name, ep.value, dist))
    return LOADED


__all__ = [
    "GROUP",
    "Plugin",
    "PruneInputs",
    "SourceForm",
    "Space",
    "StepSpec",
    "load_plugins",
    "register_dataset",
    "register_model",
    "register_pruner",
    "register_pruning_method",
    "register_quantization_mode",
    "register_quantizer",
    "register_runtime",
    "register_source_form",
    "register_space",
    "register_step",
    "step",
]
