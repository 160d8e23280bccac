"""Alert queries. Every statement is scoped to one organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, String, and_, cast, exists, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert

from crm.core.repository import TenantRepository
from crm.inventory.repository import total_stock
from crm.models import Alert, Product

#: The partial unique index `uq_alert_org_key_open`: one open alert per key.
OPEN_WHERE = text("acknowledged_at IS NULL AND resolved_at IS NULL")
LOW_STOCK = "low_stock"
SYNC_FAILED = "sync_failed"


def status_clause(status: str) -> ColumnElement[bool]:
    if status == "open":
        return and_(Alert.acknowledged_at.is_(None), Alert.resolved_at.is_(None))
    if status == "acknowledged":
        return and_(Alert.acknowledged_at.is_not(None), Alert.resolved_at.is_(None))
    return Alert.resolved_at.is_not(None)


class AlertRepository(TenantRepository[Alert]):
    model = Alert

    async def list(
        self, kind: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Alert], int]:
        stmt = self.base()
        if kind is not None:
            stmt = stmt.where(Alert.kind == kind)
        if status is not None:
            stmt = stmt.where(status_clause(status))
        return await self.page(stmt, [Alert.created_at.desc(), Alert.id.desc()], limit, offset)

    async def raise_low_stock(self) -> Sequence[Row[Any]]:
        """One open alert per live stocked product whose total stock is below its `min_stock` and
        that has no unresolved (open or acknowledged) alert yet. Concurrent runs cannot raise two:
        the partial unique index turns the second insert into nothing. Returns the new alerts."""
        org = self.organization_id
        stock = total_stock(org, Product.id).label("stock")
        key = literal("low_stock:product:") + cast(Product.id, String)
        unresolved = exists().where(
            Alert.organization_id == org, Alert.key == key, Alert.resolved_at.is_(None)
        )
        low = (
            select(Product.id, Product.name, Product.min_stock, stock)
            .where(
                Product.organization_id == org,
                Product.min_stock.is_not(None),
                Product.kind == "product",
                Product.archived.is_(False),
                ~unresolved,
            )
            .subquery("low")
        )
        candidates = select(
            literal(org).label("organization_id"),
            literal(LOW_STOCK).label("kind"),
            (literal("low_stock:product:") + cast(low.c.id, String)).label("key"),
            literal("warning").label("severity"),
            func.left(literal("Low stock: ") + low.c.name, 300).label("title"),
            func.format(
                "Stock %s is below the minimum %s",
                func.trim_scale(low.c.stock),
                func.trim_scale(low.c.min_stock),
            ).label("message"),
            literal("product").label("entity_type"),
            low.c.id.label("entity_id"),
            func.jsonb_build_object(
                "product_id", low.c.id, "stock", low.c.stock, "min_stock", low.c.min_stock
            ).label("data"),
        ).where(low.c.stock < low.c.min_stock)
        columns = [
            "organization_id",
            "kind",
            "key",
            "severity",
            "title",
            "message",
            "entity_type",
            "entity_id",
            "data",
        ]
        stmt = (
            insert(Alert)
            .from_select(columns, candidates)
            .on_conflict_do_nothing(index_elements=["organization_id", "key"], index_where=OPEN_WHERE)
            .returning(Alert.id, Alert.entity_id, Alert.title, Alert.message, Alert.data)
        )
        return (await self.session.execute(stmt)).all()

    async def resolve_low_stock(self, now: datetime) -> int:
        """Resolve the unresolved low-stock alerts whose product is no longer below its minimum (or
        has no minimum, was archived or is gone)."""
        org = self.organization_id
        still_low = exists().where(
            Product.organization_id == org,
            Product.id == Alert.entity_id,
            Product.min_stock.is_not(None),
            Product.kind == "product",
            Product.archived.is_(False),
            total_stock(org, Product.id) < Product.min_stock,
        )
        stmt = (
            update(Alert)
            .where(
                Alert.organization_id == org,
                Alert.kind == LOW_STOCK,
                Alert.resolved_at.is_(None),
                ~still_low,
            )
            .values(resolved_at=now)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(stmt)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def raise_once(self, values: dict[str, Any]) -> int | None:
        """Insert an open alert unless one with its key is open; the new id, or None."""
        stmt = (
            insert(Alert)
            .values(organization_id=self.organization_id, **values)
            .on_conflict_do_nothing(index_elements=["organization_id", "key"], index_where=OPEN_WHERE)
            .returning(Alert.id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def update_open(self, key: str, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(Alert)
            .where(Alert.organization_id == self.organization_id, Alert.key == key, status_clause("open"))
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def resolve_key(self, key: str, now: datetime) -> int:
        result = await self.session.execute(
            update(Alert)
            .where(
                Alert.organization_id == self.organization_id, Alert.key == key, Alert.resolved_at.is_(None)
            )
            .values(resolved_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
