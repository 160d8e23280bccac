"""Notification emails in the user's language (English or Russian), plain text plus HTML."""

from __future__ import annotations

from html import escape
from typing import Any

#: Subject line per kind and language; `{title}` is the notification's own title.
SUBJECTS: dict[str, dict[str, str]] = {
    "task_assigned": {"en": "Task assigned to you: {name}", "ru": "Вам назначена задача: {name}"},
    "task_due": {
        "en": "Task due within 24 hours: {name}",
        "ru": "Срок задачи истекает в течение суток: {name}",
    },
    "task_overdue": {"en": "Task overdue: {name}", "ru": "Задача просрочена: {name}"},
    "deal_won": {"en": "Deal won: {name}", "ru": "Сделка выиграна: {name}"},
    "record_assigned": {"en": "Assigned to you: {name}", "ru": "Вам назначено: {name}"},
    "project_status_changed": {
        "en": "Project status changed: {name}",
        "ru": "Статус проекта изменён: {name}",
    },
    "sync_failed": {"en": "Sync failed: {name}", "ru": "Ошибка синхронизации: {name}"},
    "low_stock": {"en": "Low stock: {name}", "ru": "Мало на складе: {name}"},
    "webhook_disabled": {"en": "A webhook was disabled", "ru": "Вебхук отключён"},
}
FOOTER = {
    "en": "You receive this email because of your notification settings in the CRM.",
    "ru": "Вы получили это письмо согласно вашим настройкам уведомлений в CRM.",
}
GREETING = {"en": "Hello, {name}!", "ru": "Здравствуйте, {name}!"}


def language_of(value: str | None) -> str:
    return "ru" if (value or "").lower().startswith("ru") else "en"


def render(
    kind: str, language: str, full_name: str, title: str, body: str | None, data: dict[str, Any]
) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one notification email."""
    lang = language_of(language)
    name = str(data.get("name") or title)
    template = SUBJECTS.get(kind, {}).get(lang)
    subject = template.format(name=name) if template else title
    lines = [GREETING[lang].format(name=full_name), "", subject]
    if body:
        lines += ["", body]
    lines += ["", "--", FOOTER[lang]]
    text = "\n".join(lines) + "\n"
    html_body = f"<p>{escape(body)}</p>" if body else ""
    html = (
        f'<!doctype html><html lang="{lang}"><body>'
        f"<p>{escape(GREETING[lang].format(name=full_name))}</p>"
        f"<p><strong>{escape(subject)}</strong></p>{html_body}"
        f'<hr><p style="color:#777">{escape(FOOTER[lang])}</p></body></html>'
    )
    return subject, text, html
