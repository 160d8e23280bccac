"""Which file column feeds which field: the job's mapping, then headers equal to field names."""

from __future__ import annotations

from collections.abc import Mapping

from crm.imports.fields import CUSTOM_FIELD_PREFIX, ENTITIES, accepts


class MappingError(ValueError):
    """The mapping or the headers cannot be used (answered as 422)."""


def _norm(header: str) -> str:
    return header.strip().casefold()


def resolve_columns(entity: str, headers: list[str], mapping: Mapping[str, str | None]) -> dict[int, str]:
    """Column index → field. A mapping value of null or "" ignores that column; headers the mapping
    leaves out map themselves when they equal a field name in any case (`cf.<key>` for custom fields);
    other columns are ignored."""
    spec = ENTITIES[entity]
    by_header: dict[str, int] = {}
    for index, header in enumerate(headers):
        if header:
            by_header.setdefault(_norm(header), index)

    columns: dict[int, str] = {}
    mapped: set[int] = set()
    for header, field in mapping.items():
        found = by_header.get(_norm(header))
        if found is None:
            raise MappingError(f"mapping: the file has no column {header!r}")
        mapped.add(found)
        if field is None or not str(field).strip():
            continue
        target = _field_name(str(field).strip())
        if not accepts(entity, target):
            raise MappingError(f"mapping: {field!r} is not a field of {entity}")
        columns[found] = target

    for index, header in enumerate(headers):
        if index in mapped or not header:
            continue
        target = _field_name(header.strip())
        if accepts(entity, target):
            columns[index] = target

    seen: dict[str, int] = {}
    for index, field in sorted(columns.items()):
        if field in seen:
            raise MappingError(
                f"columns {headers[seen[field]]!r} and {headers[index]!r} both map to {field!r}"
            )
        seen[field] = index
    if not columns:
        raise MappingError(
            f"no column maps to a field of {entity}; expected headers such as {', '.join(spec.fields[:4])}"
        )
    return columns


def mapped_fields(entity: str, mapping: Mapping[str, str | None]) -> list[str]:
    """The fields a mapping targets, checked without the file's headers (an XLSX upload is not parsed
    before the worker runs it): each must be a field of the entity, none named twice."""
    targets: dict[str, str] = {}
    for header, field in mapping.items():
        if field is None or not str(field).strip():
            continue
        target = _field_name(str(field).strip())
        if not accepts(entity, target):
            raise MappingError(f"mapping: {field!r} is not a field of {entity}")
        if target in targets:
            raise MappingError(f"columns {targets[target]!r} and {header!r} both map to {target!r}")
        targets[target] = header
    return list(targets)


def _field_name(name: str) -> str:
    """Field names compare in any case; a custom field key keeps its own case."""
    if name[: len(CUSTOM_FIELD_PREFIX)].casefold() == CUSTOM_FIELD_PREFIX:
        return CUSTOM_FIELD_PREFIX + name[len(CUSTOM_FIELD_PREFIX) :].strip()
    return name.casefold()
