"""МойСклад (MoySklad JSON API 1.2) provider: client, mapping and the provider plugin."""
