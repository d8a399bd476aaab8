"""One registry type for every swappable part: backbone weights, heads, data sources, strategies,
episode classifiers, CAM methods.

A :class:`Registry` is a read-only mapping from names to entries (a factory, a spec dataclass, ...)
with one way to add an entry (:meth:`Registry.register`, usable as a decorator) and one error for an
unknown name: a ``KeyError`` that lists the known names, as timm's ``create_model`` does. This
module imports nothing of cfer, so every layer can use it.

Example:
    >>> HEADS: Registry[type] = Registry("head")
    >>> @HEADS.register("linear")
    ... class LinearHead: ...
    >>> HEADS["mlp"]
    Traceback (most recent call last):
    KeyError: "unknown head 'mlp'; known heads: ['linear']"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar, overload

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Entries by name, with a helpful error for unknown names.

    Args:
        kind: What an entry is, in the singular ("strategy", "data source"), for error messages.
        normalize: Maps a user-given name to its registry key (e.g. lower-casing); identity if None.
            Applied both when registering and when looking up.
    """

    def __init__(self, kind: str, normalize: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self._normalize = normalize or (lambda name: name)
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Add ``entry`` under ``name``; without ``entry``, a decorator that registers what it wraps.

        Args:
            name: The name users pass.
            entry: The entry; omit to use the method as a decorator.

        Returns:
            The entry (so decorated functions and classes stay usable as they are).

        Raises:
            ValueError: If ``name`` is already registered.
        """

        def add(item: T) -> T:
            key = self._normalize(name)
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = item
            return item

        return add if entry is None else add(entry)

    def key(self, name: str) -> str:
        """The registry key of ``name`` (after normalisation).

        Raises:
            KeyError: If no entry has that key; the message lists the known names.
        """
        key = self._normalize(name)
        if key not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; known {self._plural}: {sorted(self._entries)}")
        return key

    def __getitem__(self, name: str) -> T:
        return self._entries[self.key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"

    @property
    def _plural(self) -> str:
        if self.kind.endswith("y") and not self.kind.endswith(("ay", "ey", "oy")):
            return self.kind[:-1] + "ies"
        return self.kind + ("es" if self.kind.endswith(("s", "sh", "ch")) else "s")
