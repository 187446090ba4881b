"""Name → object registries, filled at the definition site with a decorator.

Models, data sets, step types, runtimes and metrics each keep one ``Registry``; ``slimkit list``
reads them, so anything registered is discoverable without a hand-kept list.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from slimkit.errors import SlimkitError, quote

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects of one kind.

    >>> colours = Registry[str]("colour")
    >>> _ = colours.add("red", "#f00")
    >>> colours.get("red")
    '#f00'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def add(self, name: str, obj: T, help: str | None = None) -> T:
        """Register ``obj`` under ``name``; a name can be taken only once."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        self._help[name] = help if help is not None else _first_doc_line(obj)
        return obj

    def register(self, name: str, help: str | None = None) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorator(obj: T) -> T:
            return self.add(name, obj, help)

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name lists the close matches."""
        try:
            return self._items[name]
        except KeyError:
            raise SlimkitError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._items, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        return f"Unknown {self.kind} {quote(name)}.{hint} Known: {', '.join(sorted(self._items))}."

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def values(self) -> tuple[T, ...]:
        """Every registered object, in the order it was registered."""
        return tuple(self._items.values())

    def help(self, name: str) -> str:
        """One line describing ``name`` (its docstring's first line unless given)."""
        return self._help[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._items)


def _first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
