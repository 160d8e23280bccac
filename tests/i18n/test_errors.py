"""Problem answers in the caller's language (`Accept-Language`): Russian or English; the `code`,
`status`, `type` and each error's `loc` and `type` never change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Contact, Organization
from tests.auth.support import assert_problem
from tests.factories import Actor, Factory

CONTACTS = "/api/v1/contacts"
RU = {"Accept-Language": "ru"}
EN = {"Accept-Language": "en"}
SIGN_UP = {"name": "Ivan Ivanov", "email": "ivan.ivanov@example.ru"}


def assert_language(response: Response, language: str) -> None:
    assert response.headers["content-language"] == language
    assert "Accept-Language" in response.headers["vary"]


def invariant(body: dict[str, Any]) -> dict[str, Any]:
    """What a translation may not change."""
    return {
        "type": body["type"],
        "status": body["status"],
        "code": body["code"],
        "errors": [{"loc": e["loc"], "type": e["type"]} for e in body.get("errors", [])],
    }


@pytest.fixture
async def owner(factory: Factory) -> Actor:
    return await factory.actor("owner")


class TestNotFound:
    async def test_in_russian(self, client: AsyncClient, owner: Actor) -> None:
        response = await client.get(f"{CONTACTS}/999999", headers={**owner.headers, **RU})

        body = assert_problem(response, 404, "not_found")
        assert body["title"] == "Не найдено"
        assert body["detail"] == "Контакт не найден"
        assert_language(response, "ru")

    async def test_in_english_by_default(self, client: AsyncClient, owner: Actor) -> None:
        ru = await client.get(f"{CONTACTS}/999999", headers={**owner.headers, **RU})

        response = await client.get(f"{CONTACTS}/999999", headers=owner.headers)

        body = assert_problem(response, 404, "not_found")
        assert body["title"] == "Not Found"
        assert body["detail"] == "Contact not found"
        assert_language(response, "en")
        assert invariant(body) == invariant(ru.json())

    @pytest.mark.parametrize("header", ["ru-RU", "ru;q=0.9,en;q=0.8", "de-DE, ru;q=0.5", "RU"])
    async def test_russian_variants_and_q_values(
        self, client: AsyncClient, owner: Actor, header: str
    ) -> None:
        response = await client.get(
            f"{CONTACTS}/999999", headers={**owner.headers, "Accept-Language": header}
        )

        assert response.json()["detail"] == "Контакт не найден"
        assert_language(response, "ru")

    @pytest.mark.parametrize("header", ["de", "fr-CH, fr;q=0.9", "en-US,en;q=0.9,ru;q=0.8", "ru;q=0", "*"])
    async def test_unknown_or_less_wanted_languages_are_english(
        self, client: AsyncClient, owner: Actor, header: str
    ) -> None:
        response = await client.get(
            f"{CONTACTS}/999999", headers={**owner.headers, "Accept-Language": header}
        )

        assert response.json()["detail"] == "Contact not found"
        assert_language(response, "en")

    async def test_an_unknown_route_in_russian(self, client: AsyncClient) -> None:
        response = await client.get("/api/v1/no-such-thing", headers=RU)

        body = assert_problem(response, 404, "not_found")
        assert body["title"] == "Не найдено"
        assert body["detail"] == "Не найдено"
        assert_language(response, "ru")


class TestConflict:
    async def test_contact_email_taken_in_russian_and_english(
        self, client: AsyncClient, owner: Actor, db: AsyncSession
    ) -> None:
        created = await client.post(
            CONTACTS, json={"full_name": "Иван", "email": "ivan@example.com"}, headers=owner.headers
        )
        assert created.status_code == 201, created.text
        duplicate = {"full_name": "Другой", "email": "IVAN@example.com"}

        ru = await client.post(CONTACTS, json=duplicate, headers={**owner.headers, **RU})
        en = await client.post(CONTACTS, json=duplicate, headers={**owner.headers, **EN})

        ru_body = assert_problem(ru, 409, "contact_email_taken")
        assert ru_body["title"] == "Конфликт"
        assert ru_body["detail"] == "Контакт с таким email уже существует"
        assert_language(ru, "ru")
        en_body = assert_problem(en, 409, "contact_email_taken")
        assert en_body["title"] == "Conflict"
        assert en_body["detail"] == "A contact with this email already exists"
        assert_language(en, "en")
        assert invariant(ru_body) == invariant(en_body)
        db.expunge_all()
        stored = await db.scalar(
            select(func.count()).select_from(Contact).where(Contact.organization_id == owner.org_id)
        )
        assert stored == 1


class TestValidation:
    async def test_request_validation_in_russian(self, client: AsyncClient, owner: Actor) -> None:
        body = {"email": "not-an-email", "tags": "b2b", "full_name": ""}

        ru = await client.post(CONTACTS, json=body, headers={**owner.headers, **RU})
        en = await client.post(CONTACTS, json=body, headers={**owner.headers, **EN})

        ru_body = assert_problem(ru, 422, "validation_error")
        en_body = assert_problem(en, 422, "validation_error")
        assert invariant(ru_body) == invariant(en_body)
        assert ru_body["title"] == "Некорректные данные"
        assert en_body["title"] == "Unprocessable Entity"
        by_loc = {tuple(e["loc"]): e for e in ru_body["errors"]}
        assert by_loc[("body", "full_name")]["msg"] == "Строка должна содержать не менее 1 символа"
        assert by_loc[("body", "tags")]["msg"] == "Значение должно быть списком"
        en_by_loc = {tuple(e["loc"]): e for e in en_body["errors"]}
        assert en_by_loc[("body", "tags")]["msg"] == "Input should be a valid list"
        first = ru_body["errors"][0]
        assert ru_body["detail"] == f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        assert all(not any("a" <= c <= "z" for c in e["msg"][:3]) for e in ru_body["errors"]), ru_body
        assert_language(ru, "ru")
        assert_language(en, "en")

    async def test_a_missing_field_in_russian(self, client: AsyncClient, owner: Actor) -> None:
        response = await client.post(
            CONTACTS, json={"email": "a@example.com"}, headers={**owner.headers, **RU}
        )

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body", "full_name"]
        assert body["errors"][0]["type"] == "missing"
        assert body["errors"][0]["msg"] == "Обязательное поле"
        assert body["detail"] == "body.full_name: Обязательное поле"

    async def test_validator_messages_in_russian(self, client: AsyncClient, owner: Actor) -> None:
        headers = {**owner.headers, **RU}

        phone = await client.post(CONTACTS, json={"full_name": "Анна", "phone": "12"}, headers=headers)
        email = await client.post(CONTACTS, json={"full_name": "Анна", "email": "anna"}, headers=headers)

        assert assert_problem(phone, 422, "validation_error")["detail"] == (
            "phone: такого номера телефона не бывает"
        )
        [error] = assert_problem(email, 422, "validation_error")["errors"]
        assert error["loc"] == ["body", "email"]
        assert error["type"] == "value_error"
        assert error["msg"] == "Недопустимое значение: В адресе email должен быть знак @."
        # The context stays as pydantic gave it.
        assert error["ctx"] == {"error": "An email address must have an @-sign."}

    async def test_our_text_under_a_standard_type_in_russian(self, client: AsyncClient, owner: Actor) -> None:
        response = await client.get(
            CONTACTS, headers={**owner.auth, "X-Organization-ID": "abc", "Accept-Language": "ru"}
        )

        [error] = assert_problem(response, 422, "validation_error")["errors"]
        assert error["type"] == "int_parsing"
        assert error["msg"].startswith("Ожидается id организации (целое число от 1 до ")

    async def test_a_service_rule_in_russian(self, client: AsyncClient, owner: Actor) -> None:
        created = await client.post(CONTACTS, json={"full_name": "Анна"}, headers=owner.headers)
        assert created.status_code == 201, created.text

        response = await client.patch(
            f"{CONTACTS}/{created.json()['id']}", json={"full_name": None}, headers={**owner.headers, **RU}
        )

        body = assert_problem(response, 422, "validation_error")
        assert body["detail"] == "full_name: не может быть null"
        assert body["errors"] == [
            {"loc": ["body", "full_name"], "msg": "не может быть null", "type": "missing"}
        ]
        assert_language(response, "ru")


class TestRegistration:
    """The online shop's `POST /register`: its own tests expect «уже зарегистрирован»."""

    @pytest.fixture
    async def shop(self, factory: Factory, override_settings: Callable[..., None]) -> Organization:
        org = await factory.org(name="Bionic Shop", slug="bionic-shop")
        override_settings(registration_organization=org.slug, admin_organization=None)
        return org

    async def test_duplicate_in_russian_and_english(self, client: AsyncClient, shop: Organization) -> None:
        first = await client.post("/register", json=SIGN_UP)
        assert first.status_code == 201, first.text

        ru = await client.post("/register", json=SIGN_UP, headers={"Accept-Language": "ru-RU,ru;q=0.9"})
        en = await client.post("/register", json=SIGN_UP)

        ru_body = assert_problem(ru, 400, "email_already_registered")
        assert "уже зарегистрирован" in ru_body["detail"]
        assert ru_body["title"] == "Некорректный запрос"
        assert_language(ru, "ru")
        en_body = assert_problem(en, 400, "email_already_registered")
        assert en_body["detail"] == "This email is already registered"
        assert_language(en, "en")

    async def test_a_missing_name_in_russian(self, client: AsyncClient, shop: Organization) -> None:
        response = await client.post("/register", json={"email": "x@example.ru"}, headers=RU)

        body = assert_problem(response, 422, "validation_error")
        assert {"loc": ["body", "name"], "msg": "Обязательное поле", "type": "missing"} in [
            {k: e[k] for k in ("loc", "msg", "type")} for e in body["errors"]
        ]


class TestOtherAnswers:
    async def test_not_authenticated_in_russian(self, client: AsyncClient) -> None:
        response = await client.get(CONTACTS, headers=RU)

        body = assert_problem(response, 401, "not_authenticated")
        assert body["title"] == "Требуется аутентификация"
        assert body["detail"] == "Требуется аутентификация"
        assert response.headers["www-authenticate"] == "Bearer"
        assert_language(response, "ru")

    async def test_unknown_query_parameter_in_russian(self, client: AsyncClient, owner: Actor) -> None:
        response = await client.get(f"{CONTACTS}?serach=x", headers={**owner.headers, **RU})

        body = assert_problem(response, 422, "unknown_parameter")
        assert body["detail"] == "Неизвестный параметр запроса: serach"
        assert body["parameters"] == ["serach"]

    async def test_successful_answers_are_unchanged(self, client: AsyncClient, owner: Actor) -> None:
        response = await client.get(CONTACTS, headers={**owner.headers, **RU})

        assert response.status_code == 200
        assert "content-language" not in response.headers


class TestBodyTooLarge:
    async def test_refused_before_the_app_in_russian(self, client: AsyncClient, owner: Actor) -> None:
        body = b'{"full_name": "' + b"x" * (1024 * 1024 + 10) + b'"}'

        response = await client.post(
            CONTACTS,
            content=body,
            headers={**owner.headers, "Content-Type": "application/json", "Accept-Language": "ru"},
        )

        problem = assert_problem(response, 413, "payload_too_large")
        assert problem["title"] == "Слишком большой запрос"
        assert problem["detail"] == f"Тело запроса больше {1024 * 1024} байт"
        assert_language(response, "ru")
