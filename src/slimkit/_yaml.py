"""YAML that someone else wrote, read as inert and bounded data.

``yaml.safe_load`` already refuses tags, so nothing is evaluated. What it does not bound is
size: a few kilobytes of anchors and aliases can name a tree of billions of values, which is
cheap to load (the aliases share objects) but hangs anything that walks it: validation,
hashing, an error message quoting it. So a file is size-capped before parsing, and the loaded
value is measured as it would expand, without expanding it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# A recipe is a page of settings; generous caps still stop a hostile file long before harm.
MAX_BYTES = 4 << 20
MAX_VALUES = 200_000


class YamlError(ValueError):
    """The file is not YAML slimkit will read; the message says why, for the caller to wrap."""


def load_yaml(path: Path) -> Any:
    """Parse the YAML file ``path``; raise :class:`YamlError` when it is unreadable, not UTF-8,
    not YAML, larger than :data:`MAX_BYTES`, or expands to more than :data:`MAX_VALUES`."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise YamlError(f"cannot be read ({err.strerror or err})") from None
    if len(raw) > MAX_BYTES:
        raise YamlError(f"is larger than {MAX_BYTES >> 20} MiB, far more than any recipe needs")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise YamlError("is not UTF-8 text") from None
    return load_yaml_text(text)


def load_yaml_text(text: str) -> Any:
    """Parse YAML ``text`` (a recipe, or a mapping given on the command line), bounded like
    :func:`load_yaml`."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise YamlError(f"is larger than {MAX_BYTES >> 20} MiB, far more than any recipe needs")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise YamlError(f"is not valid YAML: {' '.join(str(err).split())[:300]}") from None
    except RecursionError:
        raise YamlError("nests its values too deeply to be a recipe") from None
    check_expanded_size(data)
    return data


def check_expanded_size(data: Any, limit: int = MAX_VALUES) -> int:
    """How many values ``data`` holds with every shared (aliased) part counted where it occurs.

    Walks each distinct list or mapping once (iteratively: deep nesting cannot overflow the
    stack), so a tree of 9**10 leaves is measured in a few thousand steps and refused.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, finished = stack.pop()
        if not isinstance(node, dict | list):
            continue
        key = id(node)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[key] > limit:
                raise YamlError(
                    f"expands to more than {limit:,} values (through anchors and aliases); "
                    "a recipe this large is not one slimkit will read"
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlError("contains a value that includes itself (a recursive alias)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children)
    return sizes.get(id(data), 1)
