"""The installed integration providers as `GET /admin/providers` lists them."""

from __future__ import annotations

from typing import Any

import structlog

from crm.admin.schemas import ProviderInfo
from crm.admin.service import load_provider
from crm.integrations.registry import provider_factories, provider_names

log = structlog.get_logger(__name__)


async def installed_providers() -> list[ProviderInfo]:
    """Every provider the `crm.integrations` entry points name, described from its class (or, for a
    factory function, from an instance made and closed again)."""
    found = []
    for name in provider_names():
        try:
            described: Any = provider_factories()[name]
            instance = None
            if not all(hasattr(described, a) for a in ("entities", "credentials_schema", "settings_schema")):
                instance = described = load_provider(name)
            try:
                info = ProviderInfo(
                    name=name,
                    title=str(getattr(described, "title", None) or name),
                    entities=list(described.entities),
                    default_base_url=getattr(described, "default_base_url", None),
                    credentials_schema=described.credentials_schema.model_json_schema(),
                    settings_schema=described.settings_schema.model_json_schema(),
                )
            finally:
                if instance is not None:
                    await instance.aclose()
        except Exception:  # a plugin that fails to load is left out (and logged), never a 500
            log.warning("provider_unloadable", provider=name, exc_info=True)
            continue
        found.append(info)
    return found
