"""One ranked list across entities, in one statement.

Each entity contributes a subquery over its live rows of the organization that match either
- full text: the row's stored `search_vector` (`russian` configuration) against the query's own lexemes,
  each as a prefix (`иванов` → `'иван':*`, so "Иванов", "Иванова" and a half-typed "Ива" all match), or
- trigram: `q <% title`, the word similarity of the query to the title reaching
  `pg_trgm.word_similarity_threshold` (0.6 by default), which forgives typos ("Иваноф", "Ivanv").
Both conditions are served by the GIN indexes on `search_vector` and on the title.
The rank is `ts_rank` plus the mean of the word and whole-string trigram similarities of the query to
the title, so a title that is exactly the query ranks above one that contains it, and both above a
stemmed or misspelt match. The subqueries are glued with UNION ALL, ordered by rank and paged; the
total rides along as a window count, so a page costs one round trip (two only for a page past the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    ScalarSelect,
    Select,
    String,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from crm.models import Company, Contact, Deal, Project

#: The text search configuration the stored vectors were built with.
CONFIG: ColumnElement[Any] = literal_column("'russian'::regconfig")
ENTITY_TYPES = ("contacts", "companies", "deals", "projects")


def prefix_tsquery(q: str) -> ScalarSelect[Any]:
    """`q`'s lexemes as parsed and stemmed by the `russian` configuration, each as a prefix, ANDed.

    Built from `to_tsvector(q)` so that words, emails and numbers are split exactly as in the stored
    vectors; every lexeme is quoted (backslashes and quotes escaped) so no input is tsquery syntax.
    NULL when `q` has no lexemes (only stop words or punctuation): then only trigrams match."""
    lexeme = func.unnest(func.tsvector_to_array(func.to_tsvector(CONFIG, q))).column_valued("lexeme")
    quoted = func.replace(func.replace(lexeme, "\\", "\\\\"), "'", "''")
    term = literal("'") + quoted + literal("':*")
    return select(cast(func.string_agg(term, literal(" & ")), TSQUERY)).scalar_subquery()


def _subtitle(*parts: ColumnElement[Any] | InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    return func.nullif(func.concat_ws(" · ", *parts), "")


class SearchRepository:
    """Every subquery is scoped to one organization and to live (not deleted) rows."""

    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _arm(
        self, kind: str, model: Any, title: Any, subtitle: ColumnElement[Any], q: str, tsq: ScalarSelect[Any]
    ) -> Select[Any]:
        # Word similarity finds the query inside the title; whole-string similarity prefers the title
        # that is nothing but the query ("Иванов" over "Иванов и партнёры").
        closeness = (func.word_similarity(q, title) + func.similarity(q, title)) / 2
        rank = func.coalesce(func.ts_rank(model.search_vector, tsq), 0) + closeness
        return select(
            literal(kind, String).label("type"),
            model.id.label("id"),
            title.label("title"),
            subtitle.label("subtitle"),
            rank.label("rank"),
        ).where(
            model.organization_id == self.organization_id,
            model.deleted_at.is_(None),
            or_(model.search_vector.op("@@")(tsq), literal(q).op("<%")(title)),
        )

    def _arms(self, q: str, types: Sequence[str]) -> list[Select[Any]]:
        tsq = prefix_tsquery(q)
        arms = []
        if "contacts" in types:
            arms.append(
                self._arm(
                    "contact", Contact, Contact.full_name, _subtitle(Contact.email, Contact.phone), q, tsq
                )
            )
        if "companies" in types:
            inn = literal("ИНН ") + Company.inn
            arms.append(self._arm("company", Company, Company.name, _subtitle(inn, Company.industry), q, tsq))
        if "deals" in types:
            money = cast(Deal.amount, String) + literal(" ") + Deal.currency
            arms.append(self._arm("deal", Deal, Deal.title, _subtitle(money, Deal.stage), q, tsq))
        if "projects" in types:
            subtitle = _subtitle(Project.external_code, Project.city, Project.status)
            arms.append(self._arm("project", Project, Project.name, subtitle, q, tsq))
        return arms

    async def search(
        self, q: str, types: Sequence[str], limit: int, offset: int
    ) -> tuple[list[Row[Any]], int]:
        arms = self._arms(q, types)
        if not arms:
            return [], 0
        hits = union_all(*arms).subquery("hit") if len(arms) > 1 else arms[0].subquery("hit")
        stmt = (
            select(hits, func.count().over().label("total"))
            .order_by(hits.c.rank.desc(), hits.c.type, hits.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        rows = list((await self.session.execute(stmt)).all())
        if rows:
            return rows, int(rows[0].total)
        if offset == 0:
            return [], 0
        total = await self.session.scalar(select(func.count()).select_from(hits))
        return [], int(total or 0)
