"""`POST /register`: the online shop's customer sign-up (compatibility contract, SPEC §11)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from crm.config import get_settings
from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.ratelimit import limit_per_ip
from crm.core.schemas import from_row
from crm.registration.schemas import RegistrationRead, RegistrationRequest
from crm.registration.service import RegistrationService

router = APIRouter(prefix="", tags=["shop"])


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=RegistrationRead,
    dependencies=[Depends(limit_per_ip("public_register", "rate_limit_public_register_per_ip"))],
    responses=errors(400, 422, 429, 503),
)
async def register_customer(
    data: RegistrationRequest, request: Request, db: SessionDep, response: Response
) -> RegistrationRead:
    """Register a shop customer (no auth): a contact with `source=registration` in the organization
    named by `REGISTRATION_ORGANIZATION`. An email already registered → 400; a missing `name` or
    `email` → 422; `phone` is echoed as typed. Rate limited per IP."""
    service = RegistrationService(db, request.app.state.redis, get_settings())
    contact = await service.register(data)
    response.headers["Location"] = f"/api/v1/contacts/{contact.id}"
    response.headers["Cache-Control"] = "no-store"
    return from_row(
        RegistrationRead,
        contact,
        name=contact.full_name,
        email=contact.email or data.email,
        phone=data.phone,
        registered_at=contact.created_at,
    )
