"""Providers are found through the `crm.integrations` entry point group, so another installed
distribution can add one without touching this code."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from crm.integrations.base import Provider

ENTRY_POINT_GROUP = "crm.integrations"


class UnknownProvider(LookupError):
    pass


@cache
def provider_factories() -> dict[str, object]:
    """Name → factory (a class or a zero-argument callable returning a provider)."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


def provider_names() -> list[str]:
    return sorted(provider_factories())


def get_provider(name: str) -> Provider:
    """A fresh provider instance (providers may hold an HTTP client; close it with `aclose`)."""
    factory = provider_factories().get(name)
    if factory is None or not callable(factory):
        raise UnknownProvider(name)
    provider = factory()
    if not isinstance(provider, Provider):
        raise UnknownProvider(name)
    return provider


def reload_providers() -> None:
    """Forget the discovered providers (after installing a distribution at runtime, in tests)."""
    provider_factories.cache_clear()


def provider_entities(name: str) -> tuple[str, ...]:
    """The entities a provider syncs, in its sync order (read from the class, no instance made)."""
    factory = provider_factories().get(name)
    if factory is None:
        raise UnknownProvider(name)
    entities = getattr(factory, "entities", None)
    if entities is None:
        entities = get_provider(name).entities
    return tuple(entities)
