"""Object-level authorization (OWASP API1): every route of the CRM core that takes a record id answers
404 — never 403, never data — to a member of another organization, and changes nothing."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from crm.models import Activity, Company, Contact, CustomField, Deal, Pipeline, Task
from tests.test_route_security import _operations

PREFIXES = ("contacts", "companies", "pipelines", "deals", "tasks", "activities", "custom-fields")

#: A body each write operation accepts, so that validation passes and the id lookup decides.
BODIES: dict[tuple[str, str], dict[str, object]] = {
    ("PUT", "/api/v1/contacts/{contact_id}"): {"full_name": "Intruder"},
    ("PATCH", "/api/v1/contacts/{contact_id}"): {"job_title": "Intruder"},
    ("PUT", "/api/v1/companies/{company_id}"): {"name": "Intruder"},
    ("PATCH", "/api/v1/companies/{company_id}"): {"industry": "Intruder"},
    ("PATCH", "/api/v1/pipelines/{pipeline_id}"): {"name": "Intruder"},
    ("POST", "/api/v1/pipelines/{pipeline_id}/stages"): {"key": "intruder", "name": "Intruder"},
    ("PATCH", "/api/v1/pipelines/{pipeline_id}/stages/{key}"): {"name": "Intruder"},
    ("PUT", "/api/v1/deals/{deal_id}"): {"title": "Intruder"},
    ("PATCH", "/api/v1/deals/{deal_id}"): {"title": "Intruder"},
    ("PATCH", "/api/v1/deals/{deal_id}/stage"): {"stage": "proposal"},
    ("PATCH", "/api/v1/deals/{deal_id}/status"): {"status": "in_progress"},
    ("PUT", "/api/v1/tasks/{task_id}"): {"title": "Intruder"},
    ("PATCH", "/api/v1/tasks/{task_id}"): {"title": "Intruder"},
    ("PATCH", "/api/v1/custom-fields/{field_id}"): {"label": "Intruder"},
}


async def _seed(client, owner) -> tuple[dict[str, int | str], dict[str, int]]:
    """Records of organization A: live ones, and deleted ones for the restore routes."""
    h = owner.headers

    async def post(path: str, body: dict[str, object]) -> dict[str, object]:
        response = await client.post(path, json=body, headers=h)
        assert response.status_code == 201, response.text
        return response.json()

    company = await post("/api/v1/companies", {"name": "Ромашка", "inn": "7707083893"})
    contact = await post("/api/v1/contacts", {"full_name": "Иванов Иван", "company_id": company["id"]})
    deal = await post("/api/v1/deals", {"title": "Big deal", "amount": "100.00", "contact_id": contact["id"]})
    task = await post("/api/v1/tasks", {"title": "Call", "deal_id": deal["id"]})
    field = await post(
        "/api/v1/custom-fields", {"entity": "contact", "key": "vip", "label": "VIP", "type": "boolean"}
    )
    pipelines = (await client.get("/api/v1/pipelines", headers=h)).json()["items"]
    activity = (await client.get("/api/v1/activities", headers=h)).json()["items"][0]
    live: dict[str, int | str] = {
        "contact_id": contact["id"],
        "company_id": company["id"],
        "deal_id": deal["id"],
        "task_id": task["id"],
        "field_id": field["id"],
        "pipeline_id": pipelines[0]["id"],
        "activity_id": activity["id"],
        "key": "lead",
    }
    deleted: dict[str, int] = {}
    for name, path, body in (
        ("contact_id", "/api/v1/contacts", {"full_name": "Gone"}),
        ("company_id", "/api/v1/companies", {"name": "Gone"}),
        ("deal_id", "/api/v1/deals", {"title": "Gone"}),
    ):
        row = await post(path, body)
        assert (await client.delete(f"{path}/{row['id']}", headers=h)).status_code == 204
        deleted[name] = int(row["id"])
    return live, deleted


def _fill(method: str, path: str, live: dict[str, int | str], deleted: dict[str, int]) -> str:
    ids = dict(live)
    if path.endswith("/restore"):
        ids.update(deleted)
    entity = path.split("/")[3]
    record_id = {"contacts": "contact_id", "companies": "company_id", "deals": "deal_id"}.get(entity)
    if record_id:
        ids["record_id"] = ids[record_id]
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)


async def _counts(db) -> tuple[int, ...]:
    out = []
    for model in (Contact, Company, Deal, Task, Pipeline, CustomField, Activity):
        out.append(await db.scalar(select(func.count()).select_from(model)))
    return tuple(out)


async def test_every_record_route_answers_404_to_another_organization(client, factory, db):
    owner_a = await factory.actor("owner")
    owner_b = await factory.actor("owner")
    live, deleted = await _seed(client, owner_a)
    before = await _counts(db)
    # Control: the same ids work for their own organization.
    own = await client.get(f"/api/v1/contacts/{live['contact_id']}", headers=owner_a.headers)
    assert own.status_code == 200

    operations = [(m, p) for m, p, _ in _operations() if "{" in p and p.split("/")[3] in PREFIXES]
    assert len(operations) >= 35  # the walk really covers the CRM core
    wrong = []
    for method, template in operations:
        url = _fill(method, template, live, deleted)
        body = BODIES.get((method, template))
        if method == "POST" and template.endswith("/comments"):
            body = {"text": "Intruder"}
        response = await client.request(method, url, json=body, headers=owner_b.headers)
        if response.status_code != 404 or response.json().get("code") != "not_found":
            wrong.append(f"{method} {template} -> {response.status_code} {response.text[:120]}")
    assert not wrong, "\n".join(wrong)
    db.expunge_all()
    assert await _counts(db) == before  # nothing written by any of those requests
