"""Function-level authorization (OWASP API5): every operation declares how callers authenticate
and, for tenant data, which permission and tenant scope it needs (SPEC §17)."""

from __future__ import annotations

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from crm.main import create_app

#: Operations anyone may call.
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("POST", "/register"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("GET", "/api/v1/docs"),
    # The documentation pages and their assets (§20.9).
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/docs-assets/redoc.standalone.js"),
    # Provider webhooks: verified by the integration's webhook token (or Bitrix24's application token).
    ("POST", "/api/v1/integrations/{integration_id}/webhook"),
}
#: Operations that authenticate in their body on purpose (documented alternatives of credentials).
SELF_AUTHENTICATED = {("GET", "/users")}
#: Routes for the signed-in user themselves (no tenant): their account, sessions, organizations list.
USER_LEVEL_PREFIXES = ("/api/v1/auth/", "/api/v1/organizations", "/api/v1/permissions")
#: Routes across organizations, for superusers only.
SUPERUSER_PREFIXES = ("/api/v1/admin/users",)


def _calls(dependant: Dependant) -> set[str]:
    names: set[str] = set()
    for sub in dependant.dependencies:
        if sub.call is not None:
            names.add(getattr(sub.call, "__name__", type(sub.call).__name__))
        names |= _calls(sub)
    return names


def _operations() -> list[tuple[str, str, set[str]]]:
    app = create_app()
    out = []
    for route in app.routes:
        # Included routers expose their operations as effective route contexts (path + dependant).
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for ctx in contexts:
            dependant = getattr(ctx, "dependant", None)
            if not isinstance(ctx, APIRoute) and dependant is None:
                continue
            calls = _calls(dependant) if dependant is not None else set()
            for method in sorted(getattr(ctx, "methods", None) or ()):
                out.append((method, ctx.path, calls))
    assert len(out) > 40, "the route walk found too few operations to be trusted"
    return out


def test_every_operation_declares_auth_permission_and_tenant() -> None:
    offenders = []
    for method, path, calls in _operations():
        if (method, path) in PUBLIC or (method, path) in SELF_AUTHENTICATED:
            continue
        permission = {c for c in calls if c.startswith(("require_", "require_path_"))}
        user_only = {"get_current_user", "get_current_auth", "get_claims", "get_superuser"} & calls
        if permission:
            continue  # tenant scope + named permission (X-Organization-ID or /organizations/{id})
        if user_only and path.startswith(USER_LEVEL_PREFIXES):
            continue
        if "get_superuser" in calls and path.startswith(SUPERUSER_PREFIXES):
            continue
        offenders.append(f"{method} {path}: {sorted(calls)}")
    assert not offenders, "operations without auth/permission/tenant declaration:\n" + "\n".join(offenders)


def test_public_allowlist_is_real() -> None:
    """Every allowlisted operation exists, so the allowlist cannot silently grow stale."""
    existing = {(m, p) for m, p, _ in _operations()}
    assert (PUBLIC | SELF_AUTHENTICATED) - {("GET", "/api/v1/docs")} <= existing | {("GET", "/metrics")}
