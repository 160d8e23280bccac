"""Email delivery: a job sends one message through the SMTP server of `SMTP_URL`."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from crm.config import get_settings
from crm.worker.app import celery_app

DEFAULT_SENDER = "crm@localhost"
TIMEOUT_SECONDS = 30


def send_email_body(
    to: str, subject: str, body: str, smtp_url: str | None = None, html: str | None = None
) -> bool:
    """Send a plain-text message (with an HTML alternative when `html` is given); False when email
    is off (no `SMTP_URL`).

    `smtp://[user:password@]host[:port][?from=sender&starttls=true]`, or `smtps://…` for TLS from
    the start. SMTP and connection errors propagate, so that the job retries."""
    url = smtp_url or get_settings().smtp_url
    if not url:
        return False
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = parts.hostname or "localhost"
    secure = parts.scheme == "smtps"
    port = parts.port or (465 if secure else 25)
    message = EmailMessage()
    message["From"] = query.get("from", DEFAULT_SENDER)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="crm")
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    smtp: smtplib.SMTP
    if secure:
        smtp = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
    with smtp:
        if not secure and query.get("starttls", "").lower() in ("1", "true", "yes"):
            smtp.starttls(context=ssl.create_default_context())
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(message)
    return True


@celery_app.task(
    name="notifications.send_email",
    acks_late=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    # A recipient the server refuses stays refused: retrying would not help.
    dont_autoretry_for=(smtplib.SMTPRecipientsRefused,),
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=8,
)
def send_email(to: str, subject: str, body: str, html: str | None = None) -> bool:
    """Deliver one email; SMTP and connection errors are retried with exponential backoff."""
    return send_email_body(to, subject, body, html=html)
