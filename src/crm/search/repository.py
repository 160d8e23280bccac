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

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    ScalarSelect,
    Select,
    String,
    case,
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


_PHONE_CHARS = re.compile(r"^[\d\s()+.\-]+$")


def phone_digits(q: str) -> str | None:
    """The digits to look for in stored E.164 phones when `q` looks like a phone number typed in any
    common format (`912 345-67-89`, `8 (912) 345-67-89`, `+7 912 3456789`), else None. A Russian
    trunk `8` before ten digits is the country code `7`; shorter numbers match as the phone's end."""
    if not _PHONE_CHARS.match(q):
        return None
    digits = re.sub(r"\D", "", q)
    if len(digits) < 5:
        return None
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    return digits


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _subtitle(*parts: ColumnElement[Any] | InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    return func.nullif(func.concat_ws(" · ", *parts), "")


class SearchRepository:
    """Every subquery is scoped to one organization and to live (not deleted) rows."""

    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _arm(
        self,
        kind: str,
        model: Any,
        title: Any,
        subtitle: ColumnElement[Any],
        q: str,
        tsq: ScalarSelect[Any],
        also: ColumnElement[bool] | None = None,
    ) -> Select[Any]:
        # Word similarity finds the query inside the title; whole-string similarity prefers the title
        # that is nothing but the query ("Иванов" over "Иванов и партнёры").
        closeness = (func.word_similarity(q, title) + func.similarity(q, title)) / 2
        # Tiers before scores: the title that is the query, then titles starting with it (and phone
        # matches), then everything else by score (§20.13). Scores stay below 10.
        wanted = " ".join(q.split()).lower()
        pattern = _escape_like(wanted) + "%"
        normalized = func.lower(func.regexp_replace(func.btrim(title), r"\s+", " ", "g"))
        tier = case(
            (normalized == wanted, 20),
            (normalized.like(pattern, escape="\\"), 10),
            *([(also, 10)] if also is not None else []),
            else_=0,
        )
        rank = tier + func.coalesce(func.ts_rank(model.search_vector, tsq), 0) + closeness
        matches = [model.search_vector.op("@@")(tsq), literal(q).op("<%")(title)]
        if also is not None:
            matches.append(also)
        return select(
            literal(kind, String).label("type"),
            model.id.label("id"),
            title.label("title"),
            subtitle.label("subtitle"),
            rank.label("rank"),
        ).where(
            model.organization_id == self.organization_id,
            model.deleted_at.is_(None),
            or_(*matches),
        )

    def _arms(self, q: str, types: Sequence[str]) -> list[Select[Any]]:
        tsq = prefix_tsquery(q)
        arms = []
        if "contacts" in types:
            digits = phone_digits(q)
            by_phone = Contact.phone.like(f"%{digits}") if digits else None
            subtitle = _subtitle(Contact.email, Contact.phone)
            arms.append(self._arm("contact", Contact, Contact.full_name, subtitle, q, tsq, by_phone))
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
