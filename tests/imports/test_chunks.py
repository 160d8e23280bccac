"""Imports spanning several chunks: errors keep the file's order, keys repeated across chunks fail,
atomic / dry-run runs keep every chunk in one transaction; and the contacts insert step on a key
stored meanwhile."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.imports.handlers import ContactHandler, Context, Outcome, Row
from crm.models import Activity, Contact
from tests.factories import Factory
from tests.imports.support import URL, csv_bytes, run_job, upload

HEADER = ["full_name", "email", "phone", "tags"]


def _rows() -> list[list[Any]]:
    """Eleven data rows (rows 2–12): bad cells in rows 4, 8 and 11, row 10 repeats row 3's key."""
    rows: list[list[Any]] = [HEADER]
    for i in range(11):
        rows.append([f"Person {i}", f"p{i}@example.com", f"+7 921 000-00-{i:02d}", "a, b"])
    rows[3][1] = "not-an-email"  # row 4
    rows[7][2] = "12"  # row 8
    rows[9][1] = "p1@example.com"  # row 10: the key of row 3
    rows[10][0] = ""  # row 11
    rows.append(["No Email", "", "", ""])  # row 13: no key, created
    return rows


async def _run(
    client: AsyncClient,
    app: Any,
    maker: async_sessionmaker[AsyncSession],
    actor: Any,
    content: bytes,
    **form: Any,
) -> dict[str, Any]:
    response = await upload(client, actor, content, "contacts", **form)
    assert response.status_code == 202, response.text
    await run_job(app, maker, response.json()["id"], chunk_rows=3)
    response = await client.get(f"{URL}/{response.json()['id']}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _emails(db: AsyncSession, org_id: int) -> list[str | None]:
    db.expunge_all()
    rows = await db.scalars(select(Contact).where(Contact.organization_id == org_id).order_by(Contact.id))
    return [c.email for c in rows]


async def test_chunked_import_reports_in_row_order_and_stores_the_good_rows(
    client: AsyncClient,
    app: Any,
    test_maker: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    factory: Factory,
) -> None:
    actor = await factory.actor("manager")
    body = await _run(client, app, test_maker, actor, csv_bytes(_rows()))

    assert body["status"] == "succeeded"
    assert (body["processed_rows"], body["total_rows"]) == (12, 12)
    assert (body["created"], body["updated"], body["skipped"], body["failed"]) == (8, 0, 0, 4)
    assert [(e["row"], e["column"]) for e in body["errors"]] == [
        (4, "email"),
        (8, "phone"),
        (10, "email"),
        (11, "full_name"),
    ]
    assert body["errors"][2]["message"] == "the same key as row 3"
    emails = await _emails(db, actor.org_id)  # type: ignore[arg-type]
    assert emails == [f"p{i}@example.com" for i in (0, 1, 3, 4, 5, 7)] + ["p10@example.com", None]
    query = select(Contact).where(Contact.organization_id == actor.org_id, Contact.email == "p0@example.com")
    stored = (await db.scalars(query)).one()
    assert (stored.phone, stored.phone_raw, stored.tags, stored.source) == (
        "+79210000000",
        "+7 921 000-00-00",
        ["a", "b"],
        "import",
    )
    assert stored.custom_fields == {}
    assert stored.version == 1

    again = await _run(client, app, test_maker, actor, csv_bytes(_rows()))
    # The keyless row is created again; every keyed row is unchanged.
    assert (again["created"], again["updated"], again["skipped"], again["failed"]) == (1, 0, 7, 4)
    activities = await db.scalar(
        select(func.count())
        .select_from(Activity)
        .where(Activity.organization_id == actor.org_id, Activity.action == "imported")
    )
    assert activities == 2


async def test_chunked_atomic_and_dry_run_write_nothing(
    client: AsyncClient,
    app: Any,
    test_maker: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    factory: Factory,
) -> None:
    actor = await factory.actor("manager")
    atomic = await _run(client, app, test_maker, actor, csv_bytes(_rows()), atomic=True)
    assert atomic["status"] == "failed"
    assert (atomic["created"], atomic["failed"]) == (0, 4)
    dry = await _run(client, app, test_maker, actor, csv_bytes(_rows()), dry_run=True)
    assert dry["status"] == "succeeded"
    assert (dry["created"], dry["failed"]) == (8, 4)
    assert await _emails(db, actor.org_id) == []  # type: ignore[arg-type]

    good = [row for n, row in enumerate(_rows(), start=1) if n not in (4, 8, 10, 11)]
    done = await _run(client, app, test_maker, actor, csv_bytes(good), atomic=True)
    assert (done["status"], done["created"], done["failed"]) == ("succeeded", 8, 0)
    assert len(await _emails(db, actor.org_id)) == 8  # type: ignore[arg-type]


async def test_contact_stored_meanwhile_fails_its_row_instead_of_duplicating(
    db: AsyncSession, factory: Factory
) -> None:
    """The insert step alone (as when another writer stores the email between the chunk's lookup and
    its insert): the conflicting row fails, the others are stored."""
    actor = await factory.actor("manager")
    org_id = actor.org_id
    assert org_id is not None
    db.add(Contact(organization_id=org_id, full_name="Already", email="taken@example.com", source="manual"))
    await db.flush()
    outcome = Outcome()
    handler = ContactHandler(Context(org_id, actor.user.id, "update", {"email": "E-mail"}, outcome))
    rows = [
        Row(2, {}, {}, key="taken@example.com", record={"full_name": "Late", "email": "taken@example.com"}),
        Row(3, {}, {}, key="new@example.com", record={"full_name": "New", "email": "new@example.com"}),
        Row(4, {}, {}, key=None, record={"full_name": "No Email", "email": None}),
    ]
    for row in rows:
        assert handler.creatable(row)

    await handler.insert(db, rows)

    assert (outcome.created, outcome.failed) == (2, 1)
    message = "email taken@example.com was stored by someone else meanwhile"
    assert outcome.errors == [{"row": 2, "column": "E-mail", "message": message}]
    assert await _emails(db, org_id) == ["taken@example.com", "new@example.com", None]
    late = await db.scalar(select(func.count()).select_from(Contact).where(Contact.full_name == "Late"))
    assert late == 0
