from __future__ import annotations

from crm.core.errors import BadRequest, Conflict, Forbidden, NotFound, UnprocessableEntity


class OrganizationRequired(BadRequest):
    code = "organization_required"

    def __init__(self, organizations: list[dict[str, object]] | None = None) -> None:
        super().__init__(
            "You are a member of several organizations: send the one to act in as X-Organization-ID",
            organizations=organizations or [],
        )


class NotAMember(Forbidden):
    code = "not_a_member"

    def __init__(self) -> None:
        super().__init__("You are not a member of this organization")


class OrganizationNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Organization not found")


class OrganizationSlugTaken(Conflict):
    code = "organization_slug_taken"

    def __init__(self) -> None:
        super().__init__("This slug is taken")


class MemberExists(Conflict):
    code = "member_exists"

    def __init__(self) -> None:
        super().__init__("This user is already a member")


class MemberNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Member not found")


class UserNotFound(NotFound):
    code = "user_not_found"

    def __init__(self) -> None:
        super().__init__("No user with this email; they must register first")


class LastOwner(Conflict):
    code = "last_owner"

    def __init__(self) -> None:
        super().__init__("The last owner cannot be removed or demoted")


class OwnerRequired(Forbidden):
    def __init__(self, detail: str = "Only an owner may grant, change or remove the owner role") -> None:
        super().__init__(detail)


class RoleTooWide(Forbidden):
    def __init__(self) -> None:
        super().__init__("You cannot grant, change or remove a role wider than your own")


class RoleNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Role not found")


class RoleNameTaken(Conflict):
    code = "role_name_taken"

    def __init__(self) -> None:
        super().__init__("The organization already has a role with this name")


class RoleInUse(Conflict):
    code = "role_in_use"

    def __init__(self, holders: int) -> None:
        super().__init__(f"{holders} member(s) hold this role; give them another role first", holders=holders)


class UnknownRole(UnprocessableEntity):
    def __init__(self, name: str) -> None:
        msg = f"Unknown role {name!r}: use a built-in role or a custom role of this organization"
        super().__init__(msg, errors=[{"loc": ["body", "role"], "msg": msg, "type": "value_error"}])
