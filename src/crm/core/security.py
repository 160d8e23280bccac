"""Password hashing (Argon2id), JWTs and secret hashing."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from crm.config import Settings

TokenType = Literal["access", "refresh"]

# OWASP's Argon2id minimum: m=19 MiB, t=2, p=1.
password_hash = PasswordHash((Argon2Hasher(memory_cost=19456, time_cost=2, parallelism=1),))
_DUMMY_HASH = password_hash.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return password_hash.hash(password)


def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """Check a password; returns (ok, new_hash) where new_hash is set when the stored hash
    uses older parameters. Unknown users are checked against a dummy hash for equal timing."""
    if hashed is None:
        password_hash.verify(password, _DUMMY_HASH)
        return False, None
    try:
        return password_hash.verify_and_update(password, hashed)
    except Exception:  # an unreadable stored hash is a failed login, not a crash
        return False, None


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    session_id: int
    type: TokenType
    jti: str
    exp: datetime


class InvalidToken(Exception):
    pass


def create_token(
    settings: Settings, *, user_id: int, session_id: int, type: TokenType, jti: str | None = None
) -> tuple[str, TokenClaims]:
    now = datetime.now(UTC)
    lifetime = (
        timedelta(minutes=settings.access_token_expire_minutes)
        if type == "access"
        else timedelta(days=settings.refresh_token_expire_days)
    )
    claims = TokenClaims(
        user_id=user_id, session_id=session_id, type=type, jti=jti or uuid.uuid4().hex, exp=now + lifetime
    )
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "sid": session_id,
        "type": type,
        "jti": claims.jti,
        "iat": now,
        "exp": claims.exp,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    return jwt.encode(payload, settings.secret_key, algorithm=settings.jwt_algorithm), claims


LEEWAY = timedelta(seconds=30)
_VERIFIED_MAX = 10_000
#: Tokens whose signature and claims were already verified, keyed by (signing key, token). Checking a
#: signature costs far more than the rest of a cached request; expiry is still checked on every use.
_verified: OrderedDict[tuple[str, str], TokenClaims] = OrderedDict()


def decode_token(settings: Settings, token: str, expected: TokenType) -> TokenClaims:
    """Verify signature, algorithm (allowlist only), audience, issuer, expiry and type."""
    key = (settings.secret_key, token)
    cached = _verified.get(key)
    if cached is not None:
        if cached.type != expected:
            raise InvalidToken("wrong token type")
        if cached.exp + LEEWAY < datetime.now(UTC):
            _verified.pop(key, None)
            raise InvalidToken("Signature has expired")
        return cached
    claims = _decode(settings, token, expected)
    _verified[key] = claims
    if len(_verified) > _VERIFIED_MAX:
        _verified.popitem(last=False)
    return claims


def _decode(settings: Settings, token: str, expected: TokenType) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=30,
            options={"require": ["exp", "iat", "sub", "sid", "type", "jti", "iss", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if payload.get("type") != expected:
        raise InvalidToken("wrong token type")
    try:
        return TokenClaims(
            user_id=int(payload["sub"]),
            session_id=int(payload["sid"]),
            type=expected,
            jti=str(payload["jti"]),
            exp=datetime.fromtimestamp(int(payload["exp"]), UTC),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidToken("malformed claims") from exc
