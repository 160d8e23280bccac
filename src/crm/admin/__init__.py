"""Administration: integrations, users (superusers), system health and inbound provider webhooks."""
