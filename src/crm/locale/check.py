"""Every message the API can answer with, found in the source, and those without a translation.

Read from the code (an AST walk of the `crm` package), not from a list kept by hand:

* the first argument (or `detail=`) of every call of an `AppError` subclass, and the messages their
  `__init__` passes to `super().__init__` or takes as a default, and their `title`s;
* the message argument of the helpers that build one (`invalid_field`, `problem_response`, ...) and
  the messages kept as data, marked with `gettext_noop` (the notification emails' texts);
* `"msg": ...` of the `errors` items written by hand, and the texts of `raise ValueError(...)` that
  validators turn into a validation message;
* every HTTP status phrase (the problem `title`) and every pydantic error type.

A string is a message as it is; an f-string is a message with placeholders named after what it
interpolates (`f"{field}: no such record"` → `%(field)s: no such record`). `crm i18n-check` (or
`make i18n`) prints the messages a catalog lacks as entries to fill in; a test fails on any of them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import pydantic_core

from crm.core import i18n

PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Roots of the error classes: their subclasses' calls carry a message as first argument.
ERROR_ROOTS = frozenset({"AppError"})
#: Functions that build an error from a message: name → index of the message argument.
HELPERS = {
    "invalid_field": 1,
    "_invalid_reference": 1,
    "problem_response": 2,
    "HTTPException": 1,
    "translate": 0,
    "Guard": 0,
    "gettext_noop": 0,
}
#: Keyword arguments that carry a message wherever they are passed.
MESSAGE_KEYWORDS = frozenset({"forbidden_reason"})
#: Modules whose `ValueError`s never reach an answer (settings checked at start, fixed data, clients of
#: providers whose errors are logged, import rows whose reasons are stored with the import).
VALUE_ERROR_EXEMPT = (
    "config.py",
    "demo/",
    "imports/",
    "integrations/bitrix24/client.py",
    "integrations/bitrix24/mapping.py",
    "integrations/moysklad/client.py",
    "projects/transitions.py",
    "locale/",
)
#: Sample values a placeholder is filled with to check that a catalog entry matches the message; an
#: interpolated message (named `message`, `msg` or `detail` in the code) is filled with a message.
_SAMPLE = "x7"
_SAMPLE_MESSAGE = "Not Found"
_MESSAGE_NAMES = frozenset({i18n.STRICT, "msg", "detail"})


@dataclass(frozen=True, slots=True)
class Message:
    """A message the API can answer with, as a catalog message id."""

    text: str
    where: str
    context: str | None = None  # a pydantic error type
    plural: str | None = None

    def sample(self) -> str:
        """The message as a raise site would write it, with sample values."""

        def value(found: re.Match[str]) -> str:
            name = found.group(1)
            if name is None:
                return "%"
            return _SAMPLE_MESSAGE if name in _MESSAGE_NAMES else _SAMPLE

        return re.sub(r"%\((\w+)\)[sd]|%%", value, self.text)


def _placeholder_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.value
        return _placeholder_name(node.value)
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            if node.func.attr == "join" and node.args:
                return _placeholder_name(node.args[0])
            return _placeholder_name(node.func.value)
        return _placeholder_name(node.func)
    if isinstance(node, ast.ListComp | ast.GeneratorExp):
        return _placeholder_name(node.generators[0].iter)
    return "value"


def _templates(node: ast.expr | None, *, is_id: bool = False) -> Iterator[str]:
    """The message ids an expression can be: a string, an f-string, either branch of `a if c else b`.
    A string is text (its `%` doubled in the id) unless `is_id`: it is then written as an id already."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value if is_id else node.value.replace("%", "%%")
    elif isinstance(node, ast.JoinedStr):
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value).replace("%", "%%"))
            elif isinstance(value, ast.FormattedValue):
                parts.append(f"%({_placeholder_name(value.value)})s")
        yield "".join(parts)
    elif isinstance(node, ast.IfExp):
        yield from _templates(node.body)
        yield from _templates(node.orelse)


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Subscript):  # `Guard[Context](...)`
        return _name(func.value)
    return None


def _assigned(node: ast.Assign | ast.AnnAssign) -> Iterator[tuple[ast.expr, ast.expr | None]]:
    """The (target, value) pairs of an assignment; `code, detail = "x", "..."` gives two."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    for target in targets:
        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
            yield from zip(target.elts, node.value.elts, strict=False)
        else:
            yield target, node.value


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index and not any(isinstance(a, ast.Starred) for a in call.args[: index + 1]):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        yield relative, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _error_classes(modules: list[tuple[str, ast.Module]]) -> set[str]:
    bases: dict[str, set[str]] = {}
    for _, tree in modules:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(n for b in node.bases if (n := _name(b)))
    found = set(ERROR_ROOTS)
    while True:
        more = {name for name, of in bases.items() if name not in found and of & found}
        if not more:
            return found
        found |= more


def _has_words(template: str) -> bool:
    return bool(re.search(r"[A-Za-z]{2,}", re.sub(r"%\(\w+\)[sd]", "", template)))


def messages_in_code() -> list[Message]:
    """Every message the source can answer with (each once, at its first place)."""
    modules = list(_modules())
    errors = _error_classes(modules)
    found: dict[str, Message] = {}

    def add(node: ast.expr | None, where: str, *, is_id: bool = False) -> None:
        for template in _templates(node, is_id=is_id):
            if _has_words(template):
                found.setdefault(template, Message(template, where))

    for relative, tree in modules:
        if relative.startswith("locale/"):
            continue
        value_errors = not relative.startswith(VALUE_ERROR_EXEMPT)
        for node in ast.walk(tree):
            where = f"src/crm/{relative}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ClassDef) and node.name in errors:
                for item in node.body:
                    if isinstance(item, ast.Assign | ast.AnnAssign):
                        for target, value in _assigned(item):
                            if isinstance(target, ast.Name) and target.id in {"title", "detail"}:
                                add(value, f"src/crm/{relative}:{item.lineno}")
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        for default in item.args.defaults + [d for d in item.args.kw_defaults if d]:
                            add(default, f"src/crm/{relative}:{item.lineno}")
                        for call in ast.walk(item):
                            if (
                                isinstance(call, ast.Call)
                                and isinstance(call.func, ast.Attribute)
                                and call.func.attr == "__init__"
                            ):
                                add(_argument(call, 0, "detail"), f"src/crm/{relative}:{call.lineno}")
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg in MESSAGE_KEYWORDS:
                        add(keyword.value, where)
                name = _name(node.func)
                if name in errors:
                    add(_argument(node, 0, "detail"), where)
                    add(_argument(node, 99, "title"), where)
                elif name in HELPERS:
                    argument_name = "detail" if name == "problem_response" else "message"
                    add(_argument(node, HELPERS[name], argument_name), where, is_id=name == "gettext_noop")
                elif name == "ValueError" and value_errors:
                    add(_argument(node, 0, "message"), where)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "msg":
                        add(value, where)
    return list(found.values())


def status_phrases() -> list[Message]:
    return [
        Message(status.phrase, "http.HTTPStatus") for status in HTTPStatus if status >= 400 and status.phrase
    ]


def pydantic_messages() -> list[Message]:
    """Every pydantic error type with its English template as a catalog message id
    (`{name}` → `%(name)s`; `{expected_plural}` makes a singular and a plural id)."""
    out = []
    for error in pydantic_core._pydantic_core.list_all_errors():
        template = error["message_template_python"].replace("%", "%%")
        template = re.sub(
            r"\{(\w+)\}",
            lambda m: "{" + m.group(1) + "}" if m.group(1) == "expected_plural" else f"%({m.group(1)})s",
            template,
        )
        if "{expected_plural}" in template:
            singular = template.replace("{expected_plural}", "")
            plural = template.replace("{expected_plural}", "s")
            out.append(Message(singular, "pydantic_core", context=error["type"], plural=plural))
        else:
            out.append(Message(template, "pydantic_core", context=error["type"]))
    return out


def every_message() -> list[Message]:
    return status_phrases() + messages_in_code() + pydantic_messages()


def missing(language: str) -> list[Message]:
    """The messages `language`'s catalog cannot translate."""
    catalog = i18n.catalog(language)
    out = []
    for message in every_message():
        if message.context is not None:
            if message.context not in catalog.types:
                out.append(message)
        elif catalog.translate(message.sample()) is None:
            out.append(message)
    return out


def as_po(messages: list[Message]) -> str:
    """Catalog entries (untranslated) for `messages`, to paste into a `.po` file and fill in."""
    lines = []
    for message in messages:
        lines.append(f"#: {message.where}")
        if i18n.has_placeholders(message.text):
            lines.append("#, python-format")
        if message.context is not None:
            lines.append(f"msgctxt {_quote(message.context)}")
        lines.append(f"msgid {_quote(message.text)}")
        if message.plural is not None:
            lines += [
                f"msgid_plural {_quote(message.plural)}",
                'msgstr[0] ""',
                'msgstr[1] ""',
                'msgstr[2] ""',
            ]
        else:
            lines.append('msgstr ""')
        lines.append("")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
