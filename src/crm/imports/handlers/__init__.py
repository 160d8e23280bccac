"""Per-entity import logic, one module per entity on the shared bulk writing of `base.py`: validate a
row with the entity's own rules, then write a chunk of rows in a handful of statements."""

from __future__ import annotations

from crm.imports.handlers.base import Context, Handler, Outcome, Row
from crm.imports.handlers.companies import CompanyHandler
from crm.imports.handlers.contacts import ContactHandler
from crm.imports.handlers.deals import DealHandler
from crm.imports.handlers.projects import ProjectHandler

HANDLERS: dict[str, type[Handler]] = {
    "contacts": ContactHandler,
    "companies": CompanyHandler,
    "projects": ProjectHandler,
    "deals": DealHandler,
}

__all__ = [
    "HANDLERS",
    "CompanyHandler",
    "ContactHandler",
    "Context",
    "DealHandler",
    "Handler",
    "Outcome",
    "ProjectHandler",
    "Row",
]
