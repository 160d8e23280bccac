from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations.crypto import decrypt_credentials
from crm.models import Activity, Integration, SyncJob
from tests.admin import probe_provider
from tests.admin.conftest import API, SECRET_KEY, create_integration, integration_body, stored
from tests.factories import Factory, assert_problem, join_another_org

pytestmark = pytest.mark.usefixtures("probe")


def assert_masked(body: dict[str, Any]) -> None:
    assert set(body["credentials"].values()) <= {"***"}
    assert SECRET_KEY not in json.dumps(body)
    assert "acme-account" not in json.dumps(body)


class TestCreate:
    async def test_creates_encrypted_and_masked(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        before = datetime.now(UTC)
        response = await client.post(API, json=integration_body(), headers=admin.headers)

        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["Location"] == f"{API}/{body['id']}"
        assert response.headers["ETag"] == '"1"'
        assert response.headers["Cache-Control"] == "no-store"
        assert body["credentials"] == {"api_key": "***", "account": "***"}
        assert_masked(body)
        assert body["provider"] == "probe"
        assert body["base_url"] == "http://127.0.0.1:9/api"
        assert body["settings"] == {"page_size": 20}
        assert body["sync_interval_minutes"] == 15
        assert body["last_sync_at"] is None
        assert body["last_sync_status"] is None
        next_sync = datetime.fromisoformat(body["next_sync_at"])
        assert before + timedelta(minutes=15) <= next_sync <= datetime.now(UTC) + timedelta(minutes=15)

        row = await stored(db, body["id"])
        assert row.organization_id == admin.org_id
        assert body["webhook_url"] == (
            f"http://testserver/api/v1/integrations/{row.id}/webhook?token={row.webhook_secret}"
        )
        assert len(row.webhook_secret) >= 40
        raw = bytes(row.credentials_encrypted)
        assert SECRET_KEY.encode() not in raw
        assert b"acme-account" not in raw
        assert decrypt_credentials(raw) == {"api_key": SECRET_KEY, "account": "acme-account"}
        activity = await db.scalar(
            select(Activity).where(Activity.entity_type == "integration", Activity.entity_id == row.id)
        )
        assert activity is not None
        assert activity.action == "created"
        assert SECRET_KEY not in json.dumps(activity.changes)

    async def test_defaults(self, client: AsyncClient, factory: Factory, override_settings: Any) -> None:
        override_settings(moysklad_sync_interval_minutes=42)
        admin = await factory.actor("admin")
        body = integration_body(sync_interval_minutes=None)
        del body["base_url"], body["settings"], body["enabled"]
        response = await client.post(API, json=body, headers=admin.headers)

        assert response.status_code == 201, response.text
        created = response.json()
        assert created["base_url"] == "https://probe.example.com/api/v1"
        assert created["sync_interval_minutes"] == 42
        assert created["enabled"] is True
        assert created["settings"] == {}

    async def test_unknown_provider(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        admin = await factory.actor("admin")
        response = await client.post(API, json=integration_body(provider="nope"), headers=admin.headers)

        body = assert_problem(response, 422, "unknown_provider")
        assert body["errors"][0]["loc"] == ["body", "provider"]
        assert await db.scalar(select(func.count()).select_from(Integration)) == 0

    async def test_credentials_checked_against_provider_schema(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        response = await client.post(
            API,
            json=integration_body(credentials={"api_key": "Qz7#k"}, settings={"page_size": 1000}),
            headers=admin.headers,
        )

        body = assert_problem(response, 422, "validation_error")
        locs = [e["loc"] for e in body["errors"]]
        assert ["body", "credentials", "api_key"] in locs
        assert "Qz7#k" not in response.text
        assert ["body", "settings", "page_size"] in locs
        assert await db.scalar(select(func.count()).select_from(Integration)) == 0

    async def test_settings_checked_against_provider_schema(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        admin = await factory.actor("admin")
        response = await client.post(
            API, json=integration_body(settings={"page_size": 0}), headers=admin.headers
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "settings", "page_size"]

    async def test_reserved_settings_keys_refused(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        response = await client.post(
            API, json=integration_body(settings={"_state": {"token": "x"}}), headers=admin.headers
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "settings", "_state"]

    @pytest.mark.parametrize("interval", [0, 1441, -5])
    async def test_interval_bounds(self, client: AsyncClient, factory: Factory, interval: int) -> None:
        admin = await factory.actor("admin")
        response = await client.post(
            API, json=integration_body(sync_interval_minutes=interval), headers=admin.headers
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "sync_interval_minutes"]

    async def test_server_owned_fields_refused(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        for field, value in (("webhook_secret", "mine"), ("organization_id", 1), ("last_sync_status", "ok")):
            response = await client.post(API, json=integration_body(**{field: value}), headers=admin.headers)
            assert_problem(response, 422, "validation_error")

    async def test_idempotent_create(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        admin = await factory.actor("admin")
        headers = {**admin.headers, "Idempotency-Key": "create-1"}
        first = await client.post(API, json=integration_body(), headers=headers)
        again = await client.post(API, json=integration_body(), headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert await db.scalar(select(func.count()).select_from(Integration)) == 1


class TestSsrf:
    async def test_loopback_refused_when_private_not_allowed(
        self, client: AsyncClient, factory: Factory, override_settings: Any, db: AsyncSession
    ) -> None:
        override_settings(allow_private_integration_urls=False)
        admin = await factory.actor("admin")
        for url in ("http://127.0.0.1:8000/api", "http://localhost/api", "http://[::1]/", "http://10.1.2.3/"):
            response = await client.post(API, json=integration_body(base_url=url), headers=admin.headers)
            body = assert_problem(response, 422, "url_not_allowed")
            assert body["errors"][0]["loc"] == ["body", "base_url"]
        assert await db.scalar(select(func.count()).select_from(Integration)) == 0

    async def test_loopback_allowed_when_private_allowed(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        await create_integration(client, admin, base_url="http://127.0.0.1:8000/api")

    @pytest.mark.parametrize(
        "url",
        [
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://0.0.0.0:8080/",
            "http://[::]/",
            "http://[::ffff:169.254.169.254]/",
        ],
    )
    async def test_link_local_and_unspecified_always_refused(
        self, client: AsyncClient, factory: Factory, url: str
    ) -> None:
        admin = await factory.actor("admin")
        response = await client.post(API, json=integration_body(base_url=url), headers=admin.headers)
        assert_problem(response, 422, "url_not_allowed")

    @pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "not a url"])
    async def test_only_http_schemes(self, client: AsyncClient, factory: Factory, url: str) -> None:
        admin = await factory.actor("admin")
        response = await client.post(API, json=integration_body(base_url=url), headers=admin.headers)
        assert_problem(response, 422, "url_not_allowed")

    async def test_update_and_test_checked_too(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        response = await client.patch(
            f"{API}/{created['id']}", json={"base_url": "http://169.254.169.254/"}, headers=admin.headers
        )
        assert_problem(response, 422, "url_not_allowed")
        response = await client.post(
            f"{API}/test",
            json={
                "provider": "probe",
                "base_url": "http://[fe80::1]/",
                "credentials": {"api_key": SECRET_KEY},
            },
            headers=admin.headers,
        )
        assert_problem(response, 422, "url_not_allowed")


class TestReadUpdateDelete:
    async def test_list_and_get(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        first = await create_integration(client, admin, name="First")
        second = await create_integration(client, admin, name="Second")

        response = await client.get(API, headers=admin.headers)
        assert response.status_code == 200
        page = response.json()
        assert page["total"] == 2
        assert page["limit"] == 50
        assert page["offset"] == 0
        assert [i["id"] for i in page["items"]] == [second["id"], first["id"]]
        for item in page["items"]:
            assert_masked(item)

        response = await client.get(f"{API}/{first['id']}", headers=admin.headers)
        assert response.status_code == 200
        assert response.headers["ETag"] == '"1"'
        assert response.json() == first

    async def test_patch_replaces_credentials(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        old = bytes((await stored(db, created["id"])).credentials_encrypted)

        response = await client.patch(
            f"{API}/{created['id']}",
            json={"credentials": {"api_key": "new-secret-key-9"}, "name": "Renamed"},
            headers={**admin.headers, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["credentials"] == {"api_key": "***"}
        assert body["name"] == "Renamed"
        assert body["version"] == 2
        assert response.headers["ETag"] == '"2"'
        assert "new-secret-key-9" not in response.text
        row = await stored(db, created["id"])
        assert bytes(row.credentials_encrypted) != old
        assert decrypt_credentials(row.credentials_encrypted) == {"api_key": "new-secret-key-9"}

    async def test_patch_mask_keeps_stored_value(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        response = await client.patch(
            f"{API}/{created['id']}",
            json={"credentials": {"api_key": "***", "account": "other-account"}},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        row = await stored(db, created["id"])
        assert decrypt_credentials(row.credentials_encrypted) == {
            "api_key": SECRET_KEY,
            "account": "other-account",
        }

    async def test_patch_drops_provider_session_with_new_credentials(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        row = await stored(db, created["id"])
        row.settings = {**row.settings, "_state": {"access_token": "remote-session-token"}}
        await db.flush()
        response = await client.get(f"{API}/{created['id']}", headers=admin.headers)
        assert "remote-session-token" not in response.text
        assert "_state" not in response.json()["settings"]

        response = await client.patch(
            f"{API}/{created['id']}", json={"settings": {"page_size": 5}}, headers=admin.headers
        )
        assert response.json()["settings"] == {"page_size": 5}
        assert (await stored(db, created["id"])).settings["_state"] == {
            "access_token": "remote-session-token"
        }

        response = await client.patch(
            f"{API}/{created['id']}",
            json={"credentials": {"api_key": "another-key-77"}},
            headers=admin.headers,
        )
        assert response.status_code == 200
        assert "_state" not in (await stored(db, created["id"])).settings

    async def test_patch_stale_version(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        response = await client.patch(
            f"{API}/{created['id']}", json={"name": "Stale"}, headers={**admin.headers, "If-Match": '"7"'}
        )
        assert_problem(response, 412, "version_mismatch")
        assert (await stored(db, created["id"])).name == "Warehouse"

    async def test_patch_invalid_credentials_writes_nothing(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        response = await client.patch(
            f"{API}/{created['id']}",
            json={"credentials": {"account": "x"}, "name": "Changed"},
            headers=admin.headers,
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "credentials", "api_key"]
        row = await stored(db, created["id"])
        assert row.name == "Warehouse"
        assert row.version == 1
        assert decrypt_credentials(row.credentials_encrypted)["api_key"] == SECRET_KEY

    async def test_patch_interval_moves_next_sync(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        response = await client.patch(
            f"{API}/{created['id']}", json={"sync_interval_minutes": 600}, headers=admin.headers
        )
        assert response.status_code == 200
        next_sync = datetime.fromisoformat(response.json()["next_sync_at"])
        assert next_sync > datetime.now(UTC) + timedelta(minutes=590)
        response = await client.patch(f"{API}/{created['id']}", json={"enabled": None}, headers=admin.headers)
        assert_problem(response, 422, "validation_error")

    async def test_delete(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        response = await client.delete(f"{API}/{created['id']}", headers=admin.headers)
        assert response.status_code == 204
        assert await stored(db, created["id"]) is None
        response = await client.get(f"{API}/{created['id']}", headers=admin.headers)
        assert_problem(response, 404, "not_found")

    async def test_delete_refused_while_job_active(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        job = SyncJob(organization_id=admin.org_id, integration_id=created["id"], status="running")
        db.add(job)
        await db.flush()
        response = await client.delete(f"{API}/{created['id']}", headers=admin.headers)
        body = assert_problem(response, 409, "job_already_running")
        assert body["job_id"] == job.id
        assert await stored(db, created["id"]) is not None


class TestConnectionTest:
    async def test_saved_ok(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        response = await client.post(f"{API}/{created['id']}/test", headers=admin.headers)
        assert response.status_code == 200
        assert response.json() == {"ok": True, "detail": "connected to http://127.0.0.1:9/api"}
        assert probe_provider.SEEN[-1][1] == {"api_key": SECRET_KEY, "account": "acme-account"}

    async def test_saved_refused(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin, credentials={"api_key": "refused-key-1"})
        response = await client.post(f"{API}/{created['id']}/test", headers=admin.headers)
        assert response.status_code == 200
        assert response.json() == {"ok": False, "detail": "authentication failed (401)"}

    async def test_unsaved_ok(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        admin = await factory.actor("admin")
        response = await client.post(
            f"{API}/test",
            json={"provider": "probe", "credentials": {"api_key": SECRET_KEY}, "settings": {"page_size": 3}},
            headers=admin.headers,
        )
        assert response.status_code == 200
        assert response.json() == {"ok": True, "detail": "connected to https://probe.example.com/api/v1"}
        assert probe_provider.SEEN[-1] == (
            "https://probe.example.com/api/v1",
            {"api_key": SECRET_KEY},
            {"page_size": 3},
        )
        assert await db.scalar(select(func.count()).select_from(Integration)) == 0

    @pytest.mark.parametrize(
        ("key", "detail"),
        [
            ("provider-error-key-1", "the remote refused key ***"),
            ("crash-key-0001", "the connection test failed (RuntimeError)"),
        ],
    )
    async def test_provider_failures_are_ok_false_without_secrets(
        self, client: AsyncClient, factory: Factory, key: str, detail: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        admin = await factory.actor("admin")
        response = await client.post(
            f"{API}/test", json={"provider": "probe", "credentials": {"api_key": key}}, headers=admin.headers
        )
        assert response.status_code == 200
        assert response.json() == {"ok": False, "detail": detail}
        captured = capfd.readouterr()
        assert key not in captured.out + captured.err

    async def test_unsaved_validation(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        response = await client.post(
            f"{API}/test", json={"provider": "probe", "credentials": {}}, headers=admin.headers
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "credentials", "api_key"]
        response = await client.post(f"{API}/test", json={"provider": "nope"}, headers=admin.headers)
        assert_problem(response, 422, "unknown_provider")


async def test_secrets_never_in_logs(
    client: AsyncClient, factory: Factory, capfd: pytest.CaptureFixture[str]
) -> None:
    admin = await factory.actor("admin")
    created = await create_integration(client, admin)
    await client.get(API, headers=admin.headers)
    await client.patch(
        f"{API}/{created['id']}", json={"credentials": {"api_key": "crash-and-burn-1"}}, headers=admin.headers
    )
    await client.post(f"{API}/{created['id']}/test", headers=admin.headers)
    await client.post(API, json=integration_body(credentials={"api_key": "x"}), headers=admin.headers)
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    for secret in (SECRET_KEY, "acme-account", "crash-and-burn-1"):
        assert secret not in logs


class TestProviders:
    async def test_installed_providers_with_their_schemas(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        admin = await factory.actor("admin")

        response = await client.get("/api/v1/admin/providers", headers=admin.headers)

        assert response.status_code == 200, response.text
        listed = {p["name"]: p for p in response.json()}
        # The built-in ones and the plugin distribution this test installed (`probe`).
        assert {"moysklad", "bitrix24", "portal", "probe"} <= set(listed)
        assert "kaspi" not in listed  # a plugin that is not installed is unknown
        bitrix = listed["bitrix24"]
        if bitrix["title"] == "Битрикс24":  # the real provider (not the probe standing in for it)
            assert bitrix["entities"] == ["companies", "contacts", "deals"]
            assert {"webhook_user_id", "webhook_secret", "application_token"} <= set(
                bitrix["credentials_schema"]["properties"]
            )
        probe = listed["probe"]
        assert "api_key" in probe["credentials_schema"]["properties"]
        assert probe["settings_schema"]["type"] == "object"
        assert listed["moysklad"]["default_base_url"].startswith("https://")


class TestAccess:
    async def test_member_forbidden_on_every_admin_route(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        created = await create_integration(client, admin)
        org_id = admin.org_id
        from crm.models import Organization

        org = await factory.db.get(Organization, org_id)
        for role in ("member", "manager"):
            actor = await factory.actor(role, org=org)
            for method, path, body in admin_routes(created["id"]):
                response = await client.request(method, path, json=body, headers=actor.headers)
                assert_problem(response, 403, "permission_denied")

    async def test_other_organization_is_not_found(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        created = await create_integration(client, owner)
        stranger = await factory.actor("owner")
        path = f"{API}/{created['id']}"
        for method, url, body in (
            ("GET", path, None),
            ("PATCH", path, {"name": "Mine"}),
            ("DELETE", path, None),
            ("POST", f"{path}/test", None),
        ):
            response = await client.request(method, url, json=body, headers=stranger.headers)
            assert_problem(response, 404, "not_found")
        listing = await client.get(API, headers=stranger.headers)
        assert listing.json()["total"] == 0
        assert (await stored(db, created["id"])).name == "Warehouse"

    async def test_anonymous_and_no_org(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        await join_another_org(factory.db, admin.user)
        assert_problem(await client.get(API), 401, "not_authenticated")
        assert_problem(await client.get(API, headers=admin.auth), 400, "organization_required")


def admin_routes(integration_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", API, None),
        ("POST", API, integration_body()),
        ("POST", f"{API}/test", {"provider": "probe", "credentials": {"api_key": SECRET_KEY}}),
        ("GET", f"{API}/{integration_id}", None),
        ("PATCH", f"{API}/{integration_id}", {"name": "x"}),
        ("DELETE", f"{API}/{integration_id}", None),
        ("POST", f"{API}/{integration_id}/test", None),
        ("GET", "/api/v1/admin/health", None),
        ("GET", "/api/v1/admin/providers", None),
    ]
