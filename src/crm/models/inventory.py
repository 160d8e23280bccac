"""Inventory and sales data synced from providers (SPEC §10): folders, products, stores, stock levels,
sales and purchase documents with positions. Every row keeps its source and external id; rows that
reference another synced row keep the provider's id too (`*_external_id`) and the local id once known."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from crm.core.models import (
    Base,
    IdMixin,
    SourceMixin,
    TenantMixin,
    TimestampMixin,
    name_search_indexes,
)


def _external_key(table: str) -> Index:
    return Index(
        f"uq_{table}_org_source_external_id", "organization_id", "source", "external_id", unique=True
    )


class ProductFolder(IdMixin, TenantMixin, TimestampMixin, SourceMixin, Base):
    __tablename__ = "product_folder"
    __table_args__ = (_external_key("product_folder"),)

    name: Mapped[str] = mapped_column(String(300))
    path_name: Mapped[str | None] = mapped_column(String(1000))
    parent_external_id: Mapped[str | None] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("product_folder.id", ondelete="SET NULL")
    )
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    remote_updated_at: Mapped[datetime | None]


class Product(IdMixin, TenantMixin, TimestampMixin, SourceMixin, Base):
    """A product or a service (`kind`); prices in roubles, stock figures in the product's unit."""

    __tablename__ = "product"
    __table_args__ = (
        _external_key("product"),
        Index("ix_product_org_name", "organization_id", "name", "id"),
        Index("ix_product_folder_id", "folder_id"),
        *name_search_indexes("product", "name"),
    )

    kind: Mapped[str] = mapped_column(String(20), default="product", server_default="product")
    name: Mapped[str] = mapped_column(String(500))
    code: Mapped[str | None] = mapped_column(String(100))
    article: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    uom: Mapped[str | None] = mapped_column(String(50))
    folder_external_id: Mapped[str | None] = mapped_column(String(100))
    folder_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("product_folder.id", ondelete="SET NULL")
    )
    sale_price: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    buy_price: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str] = mapped_column(String(3), default="RUB", server_default="RUB")
    min_stock: Mapped[Decimal | None] = mapped_column(Numeric(18, 3))
    #: Set once an admin chose `min_stock`: a sync no longer overwrites it with the provider's value.
    min_stock_manual: Mapped[bool] = mapped_column(default=False, server_default="false")
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    remote_updated_at: Mapped[datetime | None]
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('russian', coalesce(name, '') || ' ' || coalesce(code, '') || ' ' "
            "|| coalesce(article, ''))",
            persisted=True,
        ),
    )


class Store(IdMixin, TenantMixin, TimestampMixin, SourceMixin, Base):
    __tablename__ = "store"
    __table_args__ = (_external_key("store"),)

    name: Mapped[str] = mapped_column(String(300))
    address: Mapped[str | None] = mapped_column(String(500))
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    remote_updated_at: Mapped[datetime | None]


class StockLevel(IdMixin, TenantMixin, TimestampMixin, Base):
    """Stock of a product in a store as last reported by the provider (`external_id` is
    `<product external id>:<store external id>`)."""

    __tablename__ = "stock_level"
    __table_args__ = (
        UniqueConstraint("organization_id", "source", "product_external_id", "store_external_id"),
        Index("ix_stock_level_product", "product_id"),
        Index("ix_stock_level_store", "organization_id", "store_id"),
    )

    source: Mapped[str] = mapped_column(String(20))
    product_external_id: Mapped[str] = mapped_column(String(100))
    store_external_id: Mapped[str] = mapped_column(String(100))
    product_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("product.id", ondelete="CASCADE"))
    store_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("store.id", ondelete="CASCADE"))
    stock: Mapped[Decimal] = mapped_column(Numeric(18, 3), default=Decimal("0"), server_default="0")
    reserve: Mapped[Decimal] = mapped_column(Numeric(18, 3), default=Decimal("0"), server_default="0")
    in_transit: Mapped[Decimal] = mapped_column(Numeric(18, 3), default=Decimal("0"), server_default="0")


class _Document(IdMixin, TenantMixin, TimestampMixin, SourceMixin):
    __tablename__: str
    kind: Mapped[str] = mapped_column(String(30))
    number: Mapped[str | None] = mapped_column(String(100))
    moment: Mapped[datetime]
    counterparty_external_id: Mapped[str | None] = mapped_column(String(100))
    company_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("company.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("contact.id", ondelete="SET NULL"))
    store_external_id: Mapped[str | None] = mapped_column(String(100))
    store_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("store.id", ondelete="SET NULL"))
    total_amount: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal("0"), server_default="0")
    currency: Mapped[str] = mapped_column(String(3), default="RUB", server_default="RUB")
    state: Mapped[str | None] = mapped_column(String(100))
    applicable: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    description: Mapped[str | None] = mapped_column(Text)
    remote_updated_at: Mapped[datetime | None]

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:
        table = cls.__tablename__
        return (_external_key(table), Index(f"ix_{table}_org_moment", "organization_id", "kind", "moment"))


class _Position(IdMixin, TenantMixin):
    product_external_id: Mapped[str | None] = mapped_column(String(100))
    product_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("product.id", ondelete="SET NULL"))
    quantity: Mapped[Decimal] = mapped_column(Numeric(18, 3))
    price: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    discount: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal("0"), server_default="0")
    vat: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal("0"), server_default="0")
    #: Cost of the goods per unit, when the provider reports it (shipments); else the buy price is used.
    cost: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))


class SalesDocument(_Document, Base):
    """Customer orders (`customer_order`) and shipments (`demand`)."""

    __tablename__ = "sales_document"


class SalesDocumentPosition(_Position, Base):
    __tablename__ = "sales_document_position"
    __table_args__ = (
        Index("ix_sales_document_position_document", "document_id"),
        Index("ix_sales_document_position_product", "product_id"),
    )

    document_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("sales_document.id", ondelete="CASCADE"))


class PurchaseDocument(_Document, Base):
    """Supplies (`supply`) and purchase orders (`purchase_order`)."""

    __tablename__ = "purchase_document"


class PurchaseDocumentPosition(_Position, Base):
    __tablename__ = "purchase_document_position"
    __table_args__ = (Index("ix_purchase_document_position_document", "document_id"),)

    document_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("purchase_document.id", ondelete="CASCADE")
    )
