"""Error messages in the caller's language: English, as written in the code, or Russian.

The English text a raise site writes is the message id; the Russian forms live in a gettext catalog
(`crm/locale/ru/LC_MESSAGES/messages.po`) read with Babel. A message with variable parts has a catalog
entry with named placeholders (`%(field)s: no such record in this organization`); each such entry is
compiled once into a matcher, so an English detail is recognised and its Russian form is filled with the
same values. Two placeholder names are special: `%(message)s` must itself be a catalogued message (it is
translated too, or the entry does not match), `%(error)s` is translated when it is one and kept otherwise.

Pydantic's validation messages are catalogued by error type (the entry's context), so a validation error
is translated from its `type` and `ctx`; their English templates are matchers as well, for messages that
reach an answer without their context. `docs/platform.md` says how to add a message.
"""

from __future__ import annotations

import functools
import gettext
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

DEFAULT_LANGUAGE = "en"
#: Languages answered; English needs no catalog (the messages are written in it).
LANGUAGES = ("en", "ru")
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "messages"

_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%%")
#: A placeholder that must itself be a message (translated, or the entry does not apply).
STRICT = "message"
#: A placeholder translated when it is a message and kept as it is otherwise.
SOFT = "error"


# Accept-Language ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def negotiate(header: str | None) -> str:
    """The language to answer in for an `Accept-Language` header: the acceptable language with the
    highest q-value among ours (`ru-RU` is `ru`; `*` and unknown languages are English)."""
    if not header:
        return DEFAULT_LANGUAGE
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = tag.strip().lower().replace("_", "-").split("-", 1)[0]
        if quality > 0 and language:
            ranked.append((-quality, position, language))
    for _, _, language in sorted(ranked):
        if language in LANGUAGES:
            return language
        if language == "*":
            return DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


# Catalogs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Matcher:
    """One catalog entry with placeholders, recognising the English messages it stands for."""

    msgid: str
    context: str | None
    regex: re.Pattern[str]
    names: tuple[str, ...]
    literal: int  # characters outside the placeholders: longer wins among several matches
    anchor: str  # its longest literal part: a text without it is not tried against the regex


def _pattern(template: str) -> tuple[re.Pattern[str], tuple[str, ...], int, str]:
    parts: list[str] = []
    literals: list[str] = []
    names: list[str] = []
    literal = 0
    position = 0
    for found in _PLACEHOLDER.finditer(template):
        text = template[position : found.start()]
        literals.append(text)
        parts.append(re.escape(text))
        literal += len(text)
        name = found.group(1)
        if name is None:  # "%%"
            parts.append("%")
            literal += 1
        elif name in names:
            parts.append(f"(?P={name})")
        else:
            parts.append(f"(?P<{name}>[^;]+?)")
            names.append(name)
        position = found.end()
    parts.append(re.escape(template[position:]))
    literals.append(template[position:])
    literal += len(template) - position
    anchor = max(literals, key=len)
    return re.compile("".join(parts), re.DOTALL), tuple(names), literal, anchor


@functools.lru_cache(maxsize=1024)
def placeholder_names(template: str) -> tuple[str, ...]:
    """The placeholders of a message id, each once, in order."""
    return tuple(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)))


def has_placeholders(template: str) -> bool:
    return any(found.group(1) for found in _PLACEHOLDER.finditer(template))


def english(template: str, values: Mapping[str, Any]) -> str:
    """An English message id filled with its values (what a raise site would have written)."""
    return template % dict(values) if has_placeholders(template) else template.replace("%%", "%")


class MessageCatalog:
    """The translations of one language, looked up by the English message (or error type)."""

    def __init__(self, language: str, catalog: Catalog | None) -> None:
        self.language = language
        self.singular: dict[tuple[str | None, str], str] = {}
        self.plural: dict[tuple[str | None, str], tuple[str, ...]] = {}
        #: Pydantic error type → (its singular msgid, its plural msgid or None).
        self.types: dict[str, tuple[str, str | None]] = {}
        self.matchers: list[_Matcher] = []
        self.exact: dict[str, str] = {}
        matchers: list[_Matcher] = []
        self._plural_index: Callable[[int], int] = lambda n: int(n != 1)
        if catalog is None:
            return
        self._plural_index = gettext.c2py(catalog.plural_expr)
        for message in catalog:
            if not message.id or message.fuzzy:
                continue
            context = message.context
            ids = _texts(message.id)
            strings = _texts(message.string)
            if not ids or not all(strings):
                continue
            if len(ids) > 1:
                self.plural[(context, ids[0])] = tuple(strings)
            else:
                self.singular[(context, ids[0])] = strings[0]
            if context is not None:
                self.types[context] = (ids[0], ids[1] if len(ids) > 1 else None)
            for msgid in ids:
                if has_placeholders(msgid):
                    matchers.append(_Matcher(ids[0], context, *_pattern(msgid)))
        self.matchers = sorted(matchers, key=lambda m: -m.literal)
        self.exact = {msgid: text for (context, msgid), text in self.singular.items() if context is None}
        # An entry of a validation error type translates its English message met without the type.
        for (_, msgid), text in self.singular.items():
            if not has_placeholders(msgid):
                self.exact.setdefault(msgid, text)

    # Lookups -------------------------------------------------------------------------------------

    def translate(self, text: str) -> str | None:
        """The translation of an English message, or None when the catalog has no entry for it."""
        found = self.exact.get(text)
        if found is not None:
            return found
        for matcher in self.matchers:
            if matcher.anchor not in text:
                continue
            match = matcher.regex.fullmatch(text)
            if match is None:
                continue
            result = self._fill(matcher.context, matcher.msgid, match.groupdict())
            if result is not None:
                return result
        return None

    def gettext(self, text: str) -> str:
        """The translation of an English message, or the message itself."""
        translated = self.translate(text)
        return text if translated is None else translated

    def validation(self, error_type: str, msg: str, ctx: Mapping[str, Any] | None) -> str:
        """A validation message: pydantic's own message of a type is translated from the type and
        its context; any other (a validator's, or our text under a standard type) by its English."""
        known = self.types.get(error_type)
        if known is not None:
            singular, plural = known
            names = placeholder_names(singular)
            context = ctx or {}
            if all(name in context for name in names):
                values = {name: context[name] for name in names}
                count = _count(values)
                template = plural if plural is not None and count != 1 else singular
                if english(template, {k: str(v) for k, v in values.items()}) == msg:
                    filled = self._fill(error_type, singular, values)
                    if filled is not None:
                        return filled
        return self.gettext(msg)

    def _fill(self, context: str | None, msgid: str, values: dict[str, Any]) -> str | None:
        converted: dict[str, Any] = {}
        for name, value in values.items():
            if name == STRICT or name.startswith(STRICT + "_"):
                inner = self.translate(str(value))
                if inner is None:
                    return None
                converted[name] = inner
            elif name == SOFT:
                converted[name] = self.gettext(str(value))
            elif name.startswith("expected") and self.language == "ru":
                converted[name] = _or(str(value))
            else:
                converted[name] = value
        key = (context, msgid)
        texts = self.plural.get(key)
        if texts is not None:
            index = self._plural_index(_count(values))
            template = texts[min(index, len(texts) - 1)]
        else:
            single = self.singular.get(key)
            if single is None:
                return None
            template = single
        try:
            return template % converted if has_placeholders(template) else template.replace("%%", "%")
        except (KeyError, TypeError, ValueError):
            return None


def _count(values: Mapping[str, Any]) -> int:
    """The number a plural message is about: its first whole-number value."""
    for value in values.values():
        if isinstance(value, int) or str(value).isdigit():
            return int(value)
    return 1


def _texts(value: object) -> tuple[str, ...]:
    """A catalog message's id or string as a tuple (one item, or the plural forms)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    return ()


def _or(value: str) -> str:
    """`'a', 'b' or 'c'` (pydantic's list of choices) in Russian."""
    head, sep, tail = value.rpartition(" or ")
    return f"{head} или {tail}" if sep else value


def _read(language: str) -> Catalog | None:
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.exists():
        return None
    with path.open("rb") as fp:
        return read_po(fp, locale=language, domain=DOMAIN)


@functools.cache
def catalog(language: str) -> MessageCatalog:
    """The catalog of a language, read and compiled once per process."""
    return MessageCatalog(language, None if language == DEFAULT_LANGUAGE else _read(language))


def load() -> None:
    """Read every catalog now (at startup) rather than on the first error answered."""
    for language in LANGUAGES:
        catalog(language)


def gettext_noop(text: str) -> str:
    """Marks a message kept as data and translated where it is used (an email's subject), so the
    catalog check finds it."""
    return text


def translate(text: str, language: str) -> str:
    """An English message in `language` (the message itself when it has no translation)."""
    if language == DEFAULT_LANGUAGE:
        return text
    return catalog(language).gettext(text)


def translate_extra(extra: Mapping[str, Any], language: str) -> Mapping[str, Any]:
    """A problem's extra members with the messages among them in `language`: each `errors[].msg`
    and the `reasons` of a refused status move."""
    if language == DEFAULT_LANGUAGE or not ("errors" in extra or "reasons" in extra):
        return extra
    out = dict(extra)
    if "errors" in out:
        out["errors"] = translate_errors(out["errors"], language)
    reasons = out.get("reasons")
    if isinstance(reasons, list):
        out["reasons"] = [translate(r, language) if isinstance(r, str) else r for r in reasons]
    return out


def translate_errors(errors: Any, language: str) -> Any:
    """A problem's `errors` list with each `msg` in `language` (items are copied, not changed)."""
    if language == DEFAULT_LANGUAGE or not isinstance(errors, list):
        return errors
    messages = catalog(language)
    out = []
    for item in errors:
        if isinstance(item, Mapping) and isinstance(item.get("msg"), str):
            item = {**item, "msg": messages.gettext(item["msg"])}
        out.append(item)
    return out
