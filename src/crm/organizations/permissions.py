"""The one place where roles become permissions. Routes ask for permissions, never roles."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MANAGER = "manager"
    MEMBER = "member"


#: Widest first; a role may only be granted by someone holding it or a wider one.
ROLE_ORDER = [Role.OWNER, Role.ADMIN, Role.MANAGER, Role.MEMBER]

RECORDS = ("contacts", "companies", "deals", "tasks", "projects")

READ_ALL = frozenset(
    [f"{r}:read" for r in RECORDS]
    + [
        "organization:read",
        "members:read",
        "pipelines:read",
        "activities:read",
        "analytics:read",
        "custom_fields:read",
        "dictionaries:read",
        "inventory:read",
        "sales:read",
        "notifications:read",
        "search:read",
    ]
)

MEMBER = READ_ALL | {"comments:write", "tasks:write_own"}

MANAGER = MEMBER | frozenset(
    [f"{r}:write" for r in RECORDS]
    + [f"{r}:delete" for r in ("contacts", "companies", "deals", "tasks")]
    + ["projects:status", "imports:run", "exports:run", "dictionaries:write"]
)

ADMIN = MANAGER | {
    "organization:update",
    "members:manage",
    "deals:move_back",
    "records:restore",
    "projects:delete",
    "companies:delete_client",
    "pipelines:manage",
    "custom_fields:manage",
    "api_keys:manage",
    "integrations:manage",
    "sync:run",
    "webhooks:manage",
    "alerts:manage",
    "audit:read",
    "roles:manage",
}

OWNER = ADMIN | {"organization:delete", "owners:manage"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(OWNER),
    Role.ADMIN: frozenset(ADMIN),
    Role.MANAGER: frozenset(MANAGER),
    Role.MEMBER: frozenset(MEMBER),
}

#: Every permission string there is, plus scopes that only API keys carry.
ALL_PERMISSIONS: frozenset[str] = frozenset(OWNER)
API_KEY_SCOPES: frozenset[str] = ALL_PERMISSIONS | {"users:read"}

BUILT_IN_ROLES: frozenset[str] = frozenset(r.value for r in Role)
#: Powers that stay with the owner role: custom roles (§5) may hold any permission but these.
OWNER_ONLY: frozenset[str] = frozenset({"organization:delete", "owners:manage"})
CUSTOM_ROLE_PERMISSIONS: frozenset[str] = ALL_PERMISSIONS - OWNER_ONLY


def permissions_for(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def role_permissions(role: str, custom: list[str] | None) -> frozenset[str]:
    """What a membership's role grants: a built-in role's set, else its custom role's list (a
    custom role can never carry owner-only permissions, whatever is stored)."""
    if role in ROLE_PERMISSIONS:
        return ROLE_PERMISSIONS[role]
    return frozenset(custom or ()) & CUSTOM_ROLE_PERMISSIONS


def rank(role: str) -> int:
    """0 for owner (widest) up to 3 for member; unknown roles rank last."""
    try:
        return ROLE_ORDER.index(Role(role))
    except ValueError:
        return len(ROLE_ORDER)
