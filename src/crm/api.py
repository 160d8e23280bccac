"""All routers, assembled: `/api/v1/...` plus the root-level compatibility paths."""

from __future__ import annotations

from fastapi import APIRouter

from crm.activities.router import router as activities_router
from crm.admin.router import router as admin_router
from crm.admin.router import webhook_router as integration_webhook_router
from crm.alerts.router import router as alerts_router
from crm.analytics.router import router as analytics_router
from crm.analytics.sales_router import router as sales_analytics_router
from crm.api_keys.router import router as api_keys_router
from crm.auth.router import router as auth_router
from crm.companies.router import router as companies_router
from crm.contacts.router import router as contacts_router
from crm.custom_fields.router import router as custom_fields_router
from crm.deals.router import router as deals_router
from crm.dictionaries.router import router as dictionaries_router
from crm.exports.router import router as exports_router
from crm.imports.router import router as imports_router
from crm.inventory.router import inventory_router, products_router
from crm.notifications.router import router as notifications_router
from crm.organizations.router import permissions_router
from crm.organizations.router import router as organizations_router
from crm.pipelines.router import router as pipelines_router
from crm.project_reports.router import router as project_reports_router
from crm.projects.router import router as projects_router
from crm.projects.router import user_projects_router
from crm.registration.router import router as registration_router
from crm.sales.router import purchases_router
from crm.sales.router import router as sales_router
from crm.search.router import router as search_router
from crm.support.router import router as support_router
from crm.sync.router import router as sync_router
from crm.system.router import router as system_router
from crm.tasks.router import router as tasks_router
from crm.users.router import router as users_router
from crm.webhooks.router import router as webhooks_router

#: Feature routers served under `/api/v1`. They are included into the app one by one (not through an
#: intermediate router) so that matching a request walks one level of routers, not two.
API_V1_PREFIX = "/api/v1"
api_v1_routers: list[APIRouter] = [
    auth_router,
    organizations_router,
    permissions_router,
    api_keys_router,
    contacts_router,
    companies_router,
    pipelines_router,
    deals_router,
    tasks_router,
    activities_router,
    custom_fields_router,
    search_router,
    analytics_router,
    dictionaries_router,
    project_reports_router,
    projects_router,
    user_projects_router,
    support_router,
    notifications_router,
    admin_router,
    sync_router,
    integration_webhook_router,
    exports_router,
    imports_router,
    products_router,
    inventory_router,
    sales_router,
    purchases_router,
    sales_analytics_router,
    alerts_router,
    webhooks_router,
]

#: Root-level compatibility and operations paths.
root_routers: list[APIRouter] = [system_router, users_router, registration_router]
