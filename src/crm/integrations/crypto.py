"""Credentials at rest: Fernet with key rotation (`ENCRYPTION_KEY` holds one or more comma-separated
keys; the first encrypts, all decrypt)."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from crm.config import get_settings


class CredentialsUnreadable(Exception):
    """Stored credentials were encrypted with a key that is no longer configured."""


@cache
def _fernet(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])


def _current() -> MultiFernet:
    return _fernet(get_settings().encryption_key)


def encrypt_credentials(credentials: dict[str, Any]) -> bytes:
    return _current().encrypt(orjson.dumps(credentials))


def decrypt_credentials(token: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(_current().decrypt(bytes(token)))
    except InvalidToken as exc:
        raise CredentialsUnreadable("credentials cannot be decrypted with the configured keys") from exc
    if not isinstance(value, dict):
        raise CredentialsUnreadable("stored credentials are not an object")
    return value


def rotate_credentials(token: bytes) -> bytes:
    """Re-encrypt with the first (newest) key."""
    return _current().rotate(bytes(token))


def mask_credentials(credentials: dict[str, Any]) -> dict[str, str]:
    """What the API shows: every value replaced by `***`."""
    return dict.fromkeys(credentials, "***")
