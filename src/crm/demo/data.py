"""Realistic demo data in bulk (binary COPY), for trying the product and for benchmarks.

Rows are generated and copied in chunks, so memory stays flat however many are asked for.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

from crm.core.db import create_sessionmaker, session_scope
from crm.pipelines.service import ensure_default_pipeline

FIRST = [
    "Иван",
    "Мария",
    "Алексей",
    "Ольга",
    "Дмитрий",
    "Анна",
    "Сергей",
    "Елена",
    "Андрей",
    "Наталья",
    "John",
    "Emma",
    "Michael",
    "Sophia",
    "David",
    "Olivia",
    "James",
    "Ava",
    "Robert",
    "Mia",
]
LAST = [
    "Иванов",
    "Смирнова",
    "Кузнецов",
    "Попова",
    "Соколов",
    "Лебедева",
    "Козлов",
    "Новикова",
    "Морозов",
    "Петрова",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
]
COMPANY_A = ["Северный", "Южная", "Global", "Prime", "Альфа", "Бета", "Nord", "Smart", "Eco", "Техно"]
COMPANY_B = ["Ветер", "Логистика", "Systems", "Trade", "Строй", "Сервис", "Foods", "Labs", "Group", "Маркет"]
INDUSTRIES = ["Retail", "Manufacturing", "IT", "Logistics", "Agriculture", "Construction", "Finance"]
STATUSES = ["new", "in_progress", "won", "lost"]
#: Records are created over the year before the run (the newest about two months ago, so that their
#: deals have moved through stages by now): this month's dashboard and the funnel show something.
SPAN = int(timedelta(days=330).total_seconds())
BACK = timedelta(days=400)
CHUNK = 10_000

CONTACT_COLUMNS = [
    "organization_id",
    "full_name",
    "email",
    "phone",
    "phone_raw",
    "company_id",
    "job_title",
    "source",
    "tags",
    "custom_fields",
    "created_at",
    "updated_at",
]
COMPANY_COLUMNS = ["organization_id", "name", "kind", "industry", "source", "created_at", "updated_at"]
DEAL_COLUMNS = [
    "id",
    "organization_id",
    "title",
    "amount",
    "currency",
    "contact_id",
    "company_id",
    "pipeline_id",
    "stage",
    "status",
    "closed_at",
    "lost_reason",
    "created_at",
    "updated_at",
]
TASK_COLUMNS = [
    "organization_id",
    "title",
    "deal_id",
    "contact_id",
    "due_date",
    "priority",
    "status",
    "completed_at",
    "created_at",
    "updated_at",
]
ACTIVITY_COLUMNS = [
    "organization_id",
    "entity_type",
    "entity_id",
    "action",
    "changes",
    "payload",
    "created_at",
]
TASK_TITLES = ["Позвонить", "Отправить КП", "Встреча", "Follow up", "Согласовать договор", "Выставить счёт"]
HISTORY_COLUMNS = [
    "organization_id",
    "deal_id",
    "pipeline_id",
    "field",
    "from_value",
    "to_value",
    "created_at",
    "left_at",
]

Progress = Callable[[str, int], None]


def _chunks(total: int, make: Callable[[int], tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, total, CHUNK):
        yield [make(i) for i in range(start, min(start + CHUNK, total))]


async def _copy(
    conn: asyncpg.Connection,
    table: Literal["company", "contact"],
    columns: list[str],
    org: int,
    count: int,
    make: Callable[[int], tuple[Any, ...]],
    report: Progress,
) -> list[int]:
    """COPY `count` rows made by `make` into `table` (a chunk at a time, reported as it goes); the
    ids they got."""
    label = {"company": "companies", "contact": "contacts"}[table]
    for rows in _chunks(count, make):
        await conn.copy_records_to_table(table, records=rows, columns=columns)
        report(label, len(rows))
    newest = f"SELECT id FROM {table} WHERE organization_id = $1 ORDER BY id DESC LIMIT $2"  # noqa: S608 - a literal table
    return [r["id"] for r in await conn.fetch(newest, org, count)]


async def _default_pipeline(dsn: str, conn: asyncpg.Connection, org: int) -> tuple[int, list[str]]:
    """The organization's default pipeline (made by the pipelines service when missing) and its
    active stage keys in order."""
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with session_scope(create_sessionmaker(engine)) as db:
            pipeline_id = (await ensure_default_pipeline(db, org)).id
    finally:
        await engine.dispose()
    rows = await conn.fetch(
        "SELECT key FROM pipeline_stage WHERE pipeline_id = $1 AND NOT is_archived ORDER BY position",
        pipeline_id,
    )
    keys = [r["key"] for r in rows]
    if not keys:
        raise ValueError("the default pipeline has no active stages")
    return pipeline_id, keys


async def generate(
    dsn: str,
    org: int,
    *,
    contacts: int,
    deals: int,
    companies: int | None = None,
    seed: int = 1,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Add companies, contacts, deals (with stage history and activities) and tasks to organization
    `org`: deals in every stage of the default pipeline, tasks open, overdue and done."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    report = progress or (lambda _what, _n: None)
    companies = companies if companies is not None else max(1, contacts // 20)
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM organization WHERE id = $1 AND deleted_at IS NULL", org):
            raise ValueError(f"organization {org} does not exist")
        pipeline_id, stages = await _default_pipeline(dsn, conn, org)
        # Fewer deals reach each later stage.
        stage_weights = [len(stages) - i for i in range(len(stages))]
        now = datetime.now(UTC)
        epoch = now - BACK
        tag = f"{seed}-{int(now.timestamp())}"

        def company(i: int) -> tuple[Any, ...]:
            created = epoch + timedelta(seconds=rng.randrange(SPAN))
            name = f"{rng.choice(COMPANY_A)} {rng.choice(COMPANY_B)} {i + 1}"
            return (org, name, "legal_entity", rng.choice(INDUSTRIES), "import", created, created)

        company_ids = await _copy(conn, "company", COMPANY_COLUMNS, org, companies, company, report)

        def contact(i: int) -> tuple[Any, ...]:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            created = epoch + timedelta(seconds=rng.randrange(SPAN))
            number = f"+7921{rng.randrange(10_000_000):07d}"
            return (
                org,
                f"{last} {first}",
                f"demo.{tag}.{i}@example.com",
                number,
                number,
                rng.choice(company_ids),
                rng.choice(["CEO", "CTO", "Buyer", "Manager", None]),
                "import",
                [rng.choice(["vip", "b2b", "b2c", "partner"])],
                "{}",
                created,
                created,
            )

        contact_ids: list[int | None] = [
            *await _copy(conn, "contact", CONTACT_COLUMNS, org, contacts, contact, report)
        ] or [None]

        first_id = int(await conn.fetchval("SELECT nextval(pg_get_serial_sequence('deal', 'id'))"))
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('deal', 'id'), {first_id + deals})")
        history: list[tuple[Any, ...]] = []

        activities: list[tuple[Any, ...]] = []

        def deal(i: int) -> tuple[Any, ...]:
            deal_id = first_id + i
            # The first deals cover every stage, so the funnel has no empty step.
            weighted = rng.choices(range(len(stages)), stage_weights)[0]
            stage_index = i if i < len(stages) else weighted
            status = "won" if i == 0 else rng.choices(STATUSES, [30, 40, 20, 10])[0]
            created = epoch + timedelta(seconds=rng.randrange(SPAN))
            at, previous = created, None
            for n, key in enumerate(stages[: stage_index + 1]):
                left = min(at + timedelta(hours=rng.randrange(1, 24 * 20)), now)
                # The last stage's stay is still open; the others end when the next one starts.
                left_at = left if n < stage_index else None
                history.append((org, deal_id, pipeline_id, "stage", previous, key, at, left_at))
                action = "created" if previous is None else "stage_changed"
                changes = "{}" if previous is None else f'{{"stage": ["{previous}", "{key}"]}}'
                activities.append((org, "deal", deal_id, action, changes, "{}", at))
                entered, previous, at = at, key, left
            closed = None
            if status in ("won", "lost"):
                # Closed within the last six weeks (the first deal today), after its last stage began.
                recent = now if i == 0 else now - timedelta(minutes=rng.randrange(60 * 24 * 42))
                closed = min(max(entered, recent), now)
            return (
                deal_id,
                org,
                f"Deal {i + 1}",
                Decimal(rng.randrange(10_000, 5_000_000)) / 100,
                "RUB",
                rng.choice(contact_ids),
                rng.choice(company_ids),
                pipeline_id,
                stages[stage_index],
                status,
                closed,
                "price" if status == "lost" else None,
                created,
                at,
            )

        for rows in _chunks(deals, deal):
            await conn.copy_records_to_table("deal", records=rows, columns=DEAL_COLUMNS)
            await conn.copy_records_to_table("deal_history", records=history, columns=HISTORY_COLUMNS)
            await conn.copy_records_to_table("activity", records=activities, columns=ACTIVITY_COLUMNS)
            history.clear()
            activities.clear()
            report("deals", len(rows))

        task_count = max(1, deals // 2)

        def task(i: int) -> tuple[Any, ...]:
            created = now - timedelta(seconds=rng.randrange(int(timedelta(days=60).total_seconds())))
            due = created + timedelta(days=rng.randrange(1, 30))
            status = rng.choices(["open", "in_progress", "done"], [50, 20, 30])[0]
            completed = min(due, now) if status == "done" else None
            return (
                org,
                f"{rng.choice(TASK_TITLES)} #{i + 1}",
                first_id + rng.randrange(deals) if deals else None,
                rng.choice(contact_ids),
                due,
                rng.choice(["low", "normal", "normal", "high"]),
                status,
                completed,
                created,
                completed or created,
            )

        for rows in _chunks(task_count, task):
            await conn.copy_records_to_table("task", records=rows, columns=TASK_COLUMNS)
            report("tasks", len(rows))
        # VACUUM sets the visibility map, so index-only scans (lists, the funnel) skip the heap.
        for table in ("company", "contact", "deal", "deal_history", "task", "activity"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        return {"companies": companies, "contacts": contacts, "deals": deals, "tasks": task_count}
    finally:
        await conn.close()
