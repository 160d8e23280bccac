"""All routers, assembled: `/api/v1/...` plus the root-level compatibility paths."""

from __future__ import annotations

from fastapi import APIRouter

from crm.activities.router import router as activities_router
from crm.api_keys.router import router as api_keys_router
from crm.auth.router import router as auth_router
from crm.contacts.router import router as contacts_router
from crm.custom_fields.router import router as custom_fields_router
from crm.organizations.router import router as organizations_router
from crm.system.router import router as system_router
from crm.users.router import router as users_router

api_v1 = APIRouter(prefix="/api/v1")
api_v1.include_router(auth_router)
api_v1.include_router(organizations_router)
api_v1.include_router(api_keys_router)
api_v1.include_router(contacts_router)
api_v1.include_router(activities_router)
api_v1.include_router(custom_fields_router)

root = APIRouter()
root.include_router(system_router)
root.include_router(users_router)
