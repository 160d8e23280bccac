from __future__ import annotations

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
