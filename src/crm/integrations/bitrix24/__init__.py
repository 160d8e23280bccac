"""Bitrix24 provider: CRM contacts, companies and deals through an inbound webhook."""
