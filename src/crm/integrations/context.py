from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from crm.integrations.base import ProviderContext
from crm.integrations.crypto import decrypt_credentials
from crm.models import Integration


def provider_context(integration: Integration) -> ProviderContext:
    """Decrypted credentials and settings of a stored integration, for its provider."""
    settings = dict(integration.settings or {})
    return ProviderContext(
        organization_id=integration.organization_id,
        integration_id=integration.id,
        base_url=integration.base_url,
        credentials=decrypt_credentials(integration.credentials_encrypted),
        settings=settings,
        state=dict(settings.get("_state", {})),
    )


Settings = TypeVar("Settings", bound=BaseModel)


def provider_settings(schema: type[Settings], ctx: ProviderContext) -> Settings:
    """A provider's settings from the integration's (keys the schema does not know, such as the saved
    `_state`, left out)."""
    return schema.model_validate({k: v for k, v in ctx.settings.items() if k in schema.model_fields})


class _Closable(Protocol):
    async def aclose(self) -> None: ...


Client = TypeVar("Client", bound=_Closable)


class ClientsByContext(Generic[Client]):
    """A provider's clients, one per context (shared by its entities), closed with the provider."""

    def __init__(self) -> None:
        self._clients: dict[int, tuple[ProviderContext, Client]] = {}

    def get(self, ctx: ProviderContext, make: Callable[[], Client]) -> Client:
        known = self._clients.get(id(ctx))
        if known is not None and known[0] is ctx:
            return known[1]
        client = make()
        self._clients[id(ctx)] = (ctx, client)
        return client

    def forget(self, ctx: ProviderContext) -> None:
        self._clients.pop(id(ctx), None)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            await client.aclose()
