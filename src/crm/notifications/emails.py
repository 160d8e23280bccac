"""Notification emails in the user's language (English or Russian), plain text plus HTML.

The texts are messages of the same catalogs as the API's errors (`crm/locale/`, `docs/platform.md`)."""

from __future__ import annotations

from html import escape
from typing import Any

from crm.core.i18n import gettext_noop, translate

#: Subject line per kind; `%(name)s` is what the notification is about (else its own title).
SUBJECTS: dict[str, str] = {
    "task_assigned": gettext_noop("Task assigned to you: %(name)s"),
    "task_due": gettext_noop("Task due within 24 hours: %(name)s"),
    "task_overdue": gettext_noop("Task overdue: %(name)s"),
    "deal_won": gettext_noop("Deal won: %(name)s"),
    "record_assigned": gettext_noop("Assigned to you: %(name)s"),
    "project_status_changed": gettext_noop("Project status changed: %(name)s"),
    "sync_failed": gettext_noop("Sync failed: %(name)s"),
    "low_stock": gettext_noop("Low stock: %(name)s"),
    "webhook_disabled": gettext_noop("A webhook was disabled"),
}
FOOTER = gettext_noop("You receive this email because of your notification settings in the CRM.")
GREETING = gettext_noop("Hello, %(name)s!")


def language_of(value: str | None) -> str:
    return "ru" if (value or "").lower().startswith("ru") else "en"


def _text(message: str, lang: str, **values: str) -> str:
    translated = translate(message, lang)
    return translated % values if "%(" in translated else translated


def render(
    kind: str, language: str, full_name: str, title: str, body: str | None, data: dict[str, Any]
) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one notification email."""
    lang = language_of(language)
    name = str(data.get("name") or title)
    template = SUBJECTS.get(kind)
    subject = _text(template, lang, name=name) if template else title
    greeting = _text(GREETING, lang, name=full_name)
    footer = _text(FOOTER, lang)
    lines = [greeting, "", subject]
    if body:
        lines += ["", body]
    lines += ["", "--", footer]
    text = "\n".join(lines) + "\n"
    html_body = f"<p>{escape(body)}</p>" if body else ""
    html = (
        f'<!doctype html><html lang="{lang}"><body>'
        f"<p>{escape(greeting)}</p>"
        f"<p><strong>{escape(subject)}</strong></p>{html_body}"
        f'<hr><p style="color:#777">{escape(footer)}</p></body></html>'
    )
    return subject, text, html
