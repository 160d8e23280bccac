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
    + ["projects:status", "imports:run", "exports:run"]
)

ADMIN = MANAGER | {
    "organization:update",
    # Dictionaries are the agency's reference lists, managed by its admins (PROJECTS.md, §20.12).
    "dictionaries:write",
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


#: One line on what each permission lets its holder do (`GET /api/v1/permissions`).
PERMISSION_DESCRIPTIONS: dict[str, str] = {
    "organization:read": "See the organization's profile and settings.",
    "organization:update": "Change the organization's profile and settings.",
    "organization:delete": "Delete the organization (owners only).",
    "owners:manage": "Grant and take away the owner role (owners only).",
    "members:read": "See the members, their roles and the roles there are.",
    "members:manage": "Add and remove members and change their roles.",
    "roles:manage": "Define, change and delete custom roles.",
    "api_keys:manage": "Create, list and revoke the organization's API keys.",
    "contacts:read": "See contacts.",
    "contacts:write": "Create and edit contacts.",
    "contacts:delete": "Delete contacts.",
    "companies:read": "See companies.",
    "companies:write": "Create and edit companies.",
    "companies:delete": "Delete companies.",
    "companies:delete_client": "Delete a company that is the client of an investment project.",
    "deals:read": "See deals.",
    "deals:write": "Create and edit deals and move them forward through the pipeline.",
    "deals:delete": "Delete deals.",
    "deals:move_back": "Move a deal back to an earlier stage or reopen a closed one.",
    "tasks:read": "See tasks.",
    "tasks:write": "Create and edit any task.",
    "tasks:write_own": "Edit the tasks assigned to you.",
    "tasks:delete": "Delete tasks.",
    "projects:read": "See investment projects.",
    "projects:write": "Create and edit investment projects, their team and support measures.",
    "projects:status": "Move an investment project to another status.",
    "projects:delete": "Delete investment projects.",
    "records:restore": "Restore deleted records.",
    "comments:write": "Comment on records.",
    "activities:read": "See the activity history of records.",
    "pipelines:read": "See the sales pipelines and their stages.",
    "pipelines:manage": "Create and change sales pipelines and their stages.",
    "analytics:read": "See dashboards, funnels and reports.",
    "custom_fields:read": "See the custom field definitions.",
    "custom_fields:manage": "Define, change and delete custom fields.",
    "dictionaries:read": "See the dictionaries (industries, districts, support programs, providers).",
    "dictionaries:write": "Add, change and remove dictionary entries (owners and admins).",
    "inventory:read": "See products and stock.",
    "sales:read": "See sales and purchases.",
    "notifications:read": "See your notifications.",
    "search:read": "Search across records.",
    "imports:run": "Import records from spreadsheets.",
    "exports:run": "Export records to CSV or Excel.",
    "integrations:manage": "Connect and configure integrations such as MoySklad.",
    "sync:run": "Start synchronizations with the integrations.",
    "webhooks:manage": "Manage the integrations' webhooks.",
    "alerts:manage": "Define and change alerts.",
    "audit:read": "Read the audit log.",
    "users:read": "API keys only: read the user list of the compatibility endpoint.",
}
