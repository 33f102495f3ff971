"""A small plugin registry: attacks (and later defenses, detectors) register under a name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from bastion.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> factory. ``@registry.register("pgd")`` on a class or function adds it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            return factory

        return add

    def create(self, name: str, **params: object) -> T:
        """Build the entry ``name`` with keyword parameters; unknown names list the known ones."""
        return self[name](**params)

    def __getitem__(self, name: str) -> Callable[..., T]:
        """The factory (class) registered as ``name``; unknown names list the known ones."""
        if name not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

    def __contains__(self, name: object) -> bool:
        return name in self._entries
