"""The message catalogs: every message the API can answer with has a Russian translation."""

from __future__ import annotations

import re

import pydantic_core
import pytest

from crm.core import i18n
from crm.locale import check

_NAMES = re.compile(r"%\((\w+)\)[sd]")


class TestCompleteness:
    def test_every_message_has_a_russian_translation(self) -> None:
        missing = check.missing("ru")

        assert not missing, (
            f"{len(missing)} messages without a Russian translation; add them to "
            f"src/crm/locale/ru/LC_MESSAGES/messages.po (`make i18n` prints these entries):\n\n"
            + check.as_po(missing)
        )

    def test_the_source_walk_finds_the_messages_of_every_kind(self) -> None:
        found = {m.text for m in check.messages_in_code()}

        # A default detail, an f-string raise, a helper's message, a validator's ValueError, a
        # conflict table and a status guard's reason.
        assert "This email is already registered" in found
        assert "Sync job %(job_id)s of this integration is still active" in found
        assert "a new task cannot be due in the past" in found
        assert "not a possible phone number" in found
        assert "A contact with this email already exists" in found
        assert "%(name)s is required" in found
        assert "Cannot move from %(current)s to %(target)s; %(current)s is final" in found

    def test_every_pydantic_error_type_is_checked(self) -> None:
        types = {m.context for m in check.pydantic_messages()}

        assert types == {e["type"] for e in pydantic_core._pydantic_core.list_all_errors()}
        assert set(i18n.catalog("ru").types) >= types

    def test_a_catalog_without_the_entries_misses_them(self) -> None:
        empty = i18n.MessageCatalog("ru", None)

        assert empty.translate("This email is already registered") is None
        assert len(check.missing("xx")) == len(check.every_message())

    def test_translations_use_the_placeholders_of_their_message(self) -> None:
        messages = i18n.catalog("ru")
        entries = [*messages.singular.items(), *((k, t) for k, ts in messages.plural.items() for t in ts)]

        wrong = [
            (msgid, text)
            for (_, msgid), text in entries
            if set(_NAMES.findall(text)) != set(_NAMES.findall(msgid))
        ]

        assert not wrong


class TestTranslate:
    @pytest.mark.parametrize(
        ("english", "russian"),
        [
            ("Contact not found", "Контакт не найден"),
            (
                "owner_id: no such record in this organization",
                "owner_id: в этой организации нет такой записи",
            ),
            ("full_name: may not be null", "full_name: не может быть null"),
            ("Too many requests; try again in 12 s.", "Слишком много запросов; повторите через 12 с."),
            (
                "client is required; industry is required",
                "нужен клиент (client); нужна отрасль (industry)",
            ),
            (
                "Value error, not a possible phone number",
                "Недопустимое значение: такого номера телефона не бывает",
            ),
            ("Industry not found", "Отрасль не найдена"),
        ],
    )
    def test_english_details_are_matched_and_filled(self, english: str, russian: str) -> None:
        assert i18n.translate(english, "ru") == russian
        assert i18n.translate(english, "en") == english

    def test_an_unknown_message_stays_english(self) -> None:
        assert i18n.translate("Something nobody wrote", "ru") == "Something nobody wrote"
        # `%(message)s` must itself be a message: a field name and free text are left alone.
        assert i18n.translate("name: free text", "ru") == "name: free text"

    @pytest.mark.parametrize(
        ("n", "word"), [(1, "символа"), (2, "символов"), (5, "символов"), (11, "символов"), (21, "символа")]
    )
    def test_validation_messages_by_type_with_russian_plurals(self, n: int, word: str) -> None:
        english = f"String should have at least {n} character{'' if n == 1 else 's'}"

        text = i18n.catalog("ru").validation("string_too_short", english, {"min_length": n})

        assert text == f"Строка должна содержать не менее {n} {word}"

    def test_choices_are_joined_in_russian(self) -> None:
        expected = "'new', 'won' or 'lost'"

        text = i18n.catalog("ru").validation("enum", f"Input should be {expected}", {"expected": expected})

        assert text == "Значение должно быть одним из: 'new', 'won' или 'lost'"

    def test_our_text_under_a_standard_type_is_translated_as_text(self) -> None:
        text = i18n.catalog("ru").validation(
            "less_than_equal", "page × page_size may skip at most 10000 rows", {"le": 10000}
        )

        assert text == "page × page_size может пропустить не более 10000 строк"


class TestNegotiate:
    @pytest.mark.parametrize(
        ("header", "language"),
        [
            (None, "en"),
            ("", "en"),
            ("ru", "ru"),
            ("ru-RU", "ru"),
            ("RU_ru", "ru"),
            ("ru;q=0.9,en;q=0.8", "ru"),
            ("en;q=0.8, ru;q=0.9", "ru"),
            ("en-US,en;q=0.9,ru;q=0.8", "en"),
            ("de-DE, ru;q=0.5", "ru"),
            ("de, fr;q=0.9", "en"),
            ("ru;q=0", "en"),
            ("*", "en"),
            ("ru;q=oops, en", "en"),
        ],
    )
    def test_accept_language(self, header: str | None, language: str) -> None:
        assert i18n.negotiate(header) == language
