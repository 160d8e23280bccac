"""`crm demo-data`: bulk demo rows that the API then serves like any others."""

from __future__ import annotations

from itertools import pairwise

from crm.demo.data import generate
from tests.conftest import TEST_DATABASE_URL


async def test_generated_rows_are_served_by_the_api(committing_client, redis):
    client = committing_client
    user = {"email": "demo-owner@example.com", "password": "Demo-Owner-Pass-4821", "full_name": "Owner"}
    assert (await client.post("/api/v1/auth/register", json=user)).status_code == 201
    login = await client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": user["password"]}
    )
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    org = (await client.post("/api/v1/organizations", json={"name": "Demo"}, headers=auth)).json()
    headers = {**auth, "X-Organization-ID": str(org["id"])}

    added = await generate(
        TEST_DATABASE_URL.replace("+asyncpg", ""), org["id"], contacts=300, deals=120, companies=15
    )
    assert added == {"companies": 15, "contacts": 300, "deals": 120, "tasks": 60}

    assert (await client.get("/api/v1/contacts", headers=headers)).json()["total"] == 300
    assert (await client.get("/api/v1/companies", headers=headers)).json()["total"] == 15
    deals = (await client.get("/api/v1/deals?limit=200", headers=headers)).json()
    assert deals["total"] == 120
    # Deals sit in the organization's default pipeline, created once by the pipelines service.
    pipelines = (await client.get("/api/v1/pipelines", headers=headers)).json()
    assert pipelines["total"] == 1
    keys = [s["key"] for s in pipelines["items"][0]["stages"]]
    assert {d["stage"] for d in deals["items"]} <= set(keys)

    funnel = (await client.get("/api/v1/analytics/deals/funnel", headers=headers)).json()
    stages = funnel["stages"]
    assert stages[0]["reached"] == 120  # every deal entered the first stage
    assert sum(s["count"] for s in stages) == 120
    assert all(a["reached"] >= b["reached"] for a, b in pairwise(stages))
    assert all(s["count"] > 0 for s in stages)  # a deal in every stage

    # The dashboard shows something on day one: open deals, a deal won this month, tasks overdue.
    dashboard = (await client.get("/api/v1/analytics/dashboard", headers=headers)).json()["crm"]
    assert dashboard["open_deals"] > 0
    assert dashboard["won_this_month"]["count"] >= 1
    assert dashboard["overdue_tasks"] > 0
    tasks = (await client.get("/api/v1/tasks?limit=200", headers=headers)).json()
    assert tasks["total"] == 60
    assert {t["status"] for t in tasks["items"]} >= {"open", "done"}
    deal_id = deals["items"][0]["id"]
    timeline = await client.get(f"/api/v1/deals/{deal_id}/activities", headers=headers)
    assert timeline.status_code == 200, timeline.text
    assert timeline.json()["total"] >= 1
