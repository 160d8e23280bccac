from __future__ import annotations

from crm.core.errors import BadRequest, Conflict, Forbidden, NotFound


class OrganizationRequired(BadRequest):
    code = "organization_required"

    def __init__(self) -> None:
        super().__init__("Send the organization in the X-Organization-ID header")


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
