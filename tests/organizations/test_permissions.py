"""The role → permission map (§5): the one place where roles become permissions."""

from __future__ import annotations

import itertools

import pytest

from crm.organizations.permissions import (
    ALL_PERMISSIONS,
    API_KEY_SCOPES,
    BUILT_IN_ROLES,
    CUSTOM_ROLE_PERMISSIONS,
    OWNER_ONLY,
    ROLE_ORDER,
    ROLE_PERMISSIONS,
    Role,
    permissions_for,
    rank,
    role_permissions,
)


class TestRolePermissions:
    def test_each_role_holds_everything_of_the_narrower_ones(self) -> None:
        for wider, narrower in itertools.pairwise(ROLE_ORDER):
            assert ROLE_PERMISSIONS[narrower] < ROLE_PERMISSIONS[wider], (wider, narrower)

    @pytest.mark.parametrize(
        ("role", "allowed", "refused"),
        [
            ("owner", {"organization:delete", "owners:manage", "members:manage"}, set()),
            (
                "admin",
                {"members:manage", "api_keys:manage", "integrations:manage", "organization:update"},
                {"organization:delete", "owners:manage"},
            ),
            (
                "manager",
                {"contacts:write", "deals:delete", "imports:run"},
                {"members:manage", "api_keys:manage", "organization:update"},
            ),
            (
                "member",
                {"contacts:read", "members:read", "comments:write", "tasks:write_own"},
                {"contacts:write", "members:manage", "api_keys:manage"},
            ),
        ],
    )
    def test_role_grants(self, role: str, allowed: set[str], refused: set[str]) -> None:
        permissions = permissions_for(role)
        assert allowed <= permissions
        assert not refused & permissions

    def test_unknown_role_grants_nothing(self) -> None:
        assert permissions_for("superuser") == frozenset()

    def test_users_read_is_a_key_only_scope(self) -> None:
        assert "users:read" in API_KEY_SCOPES
        assert "users:read" not in ALL_PERMISSIONS
        assert ALL_PERMISSIONS < API_KEY_SCOPES


class TestRank:
    @pytest.mark.parametrize(
        ("role", "expected"), [("owner", 0), ("admin", 1), ("manager", 2), ("member", 3)]
    )
    def test_widest_first(self, role: str, expected: int) -> None:
        assert rank(role) == expected

    def test_unknown_roles_rank_last(self) -> None:
        assert rank("custom") == len(Role)


class TestRolePermissionsOfAMembership:
    def test_built_in_role_ignores_any_stored_list(self) -> None:
        assert role_permissions("member", ["members:manage"]) == permissions_for("member")

    def test_custom_role_grants_its_list(self) -> None:
        assert role_permissions("auditor", ["audit:read", "contacts:read"]) == {"audit:read", "contacts:read"}

    def test_custom_role_never_grants_owner_only_or_unknown_permissions(self) -> None:
        stored = ["audit:read", "owners:manage", "organization:delete", "users:read", "made:up"]
        assert role_permissions("sneaky", stored) == {"audit:read"}

    def test_missing_custom_role_grants_nothing(self) -> None:
        assert role_permissions("ghost", None) == frozenset()

    def test_custom_roles_may_hold_everything_an_admin_holds(self) -> None:
        assert permissions_for("admin") == CUSTOM_ROLE_PERMISSIONS
        assert permissions_for("owner") - permissions_for("admin") == OWNER_ONLY
        assert "roles:manage" in permissions_for("admin")
        assert {"owner", "admin", "manager", "member"} == BUILT_IN_ROLES
