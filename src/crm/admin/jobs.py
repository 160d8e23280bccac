"""Admin jobs: re-encrypting integration credentials after a key rotation; importing this module
also installs the worker heartbeat (`crm.admin.heartbeat`)."""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.admin import heartbeat as _heartbeat  # noqa: F401  (installs the worker bootstep)
from crm.integrations.crypto import CredentialsUnreadable, rotate_credentials
from crm.models import Integration
from crm.worker.app import celery_app
from crm.worker.runtime import job_session, run_async


async def rotate_all_credentials(db: AsyncSession) -> tuple[int, int]:
    """Re-encrypt every integration's credentials with the first `ENCRYPTION_KEY`; returns
    (rotated, unreadable). Once done, older keys can be removed from the setting."""
    rotated = unreadable = 0
    rows = await db.scalars(select(Integration).order_by(Integration.id).with_for_update())
    for integration in rows:
        try:
            integration.credentials_encrypted = rotate_credentials(integration.credentials_encrypted)
        except (InvalidToken, CredentialsUnreadable):  # written with a key no longer configured
            unreadable += 1
            continue
        rotated += 1
    await db.flush()
    return rotated, unreadable


async def rotate_credentials_body() -> tuple[int, int]:
    async with job_session() as db:
        return await rotate_all_credentials(db)


@celery_app.task(name="admin.rotate_credentials", acks_late=True)
def rotate_credentials_job() -> tuple[int, int]:
    return run_async(rotate_credentials_body())
