"""One way to name layers everywhere: type names, exact qualified names, ``re:`` regexes.

``"Linear"`` matches every ``nn.Linear``; ``"layers.0.c1"`` matches that module only;
``"re:.*head.*"`` matches qualified names by regex. Pruning and quantization take
``targets`` and ``ignore`` lists in this form.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence

from torch import nn

from slimkit.errors import RecipeError, StepError, quote


def matches(name: str, module: nn.Module, pattern: str) -> bool:
    """Whether the module called ``name`` is selected by ``pattern``."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return pattern == name or pattern == type(module).__name__


def select(
    model: nn.Module,
    targets: Sequence[str],
    ignore: Sequence[str] = (),
) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(name, module)`` for modules matched by a target and by no ignore pattern."""
    for name, module in model.named_modules():
        if any(matches(name, module, p) for p in targets) and not any(
            matches(name, module, p) for p in ignore
        ):
            yield name, module


def check_names_exist(model: nn.Module, patterns: Sequence[str], what: str) -> None:
    """Refuse an exact layer name that ``model`` does not have.

    A misspelt name would otherwise select nothing and silently change nothing. Regexes and
    type names (``Conv2d``, or any layer type the model uses) may legitimately match nothing.
    """
    names = {name for name, _ in model.named_modules()}
    types = {type(m).__name__ for m in model.modules()}
    for p in patterns:
        is_type = p in types or isinstance(getattr(nn, p, None), type)
        if not p.startswith("re:") and not is_type and p not in names:
            close = difflib.get_close_matches(p, names | types, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise StepError(
                f"{what} names layer {quote(p)}, which this model does not have.{hint} "
                "Use a module name, a type name (Conv2d) or re:<regex>."
            )


def validate_patterns(patterns: Sequence[str]) -> list[str]:
    """Check that ``re:`` patterns compile; used by configs at construction."""
    for p in patterns:
        if p.startswith("re:"):
            try:
                re.compile(p[3:])
            except re.error as err:
                raise RecipeError(
                    f"Layer pattern {quote(p)} is not a valid regex: {err}."
                ) from None
    return list(patterns)


def output_layers(model: nn.Module) -> list[nn.Module]:
    """The last Linear of the model: its outputs are the classes (the head), and all must stay."""
    linears: list[nn.Module] = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1:]
