"""Field transforms: each side's raw value <-> one canonical value, and how two canonical values compare.

Canonical values are plain JSON scalars (str, int, float, bool or None); snapshots hold them, merges compare them.
Empty strings are None: "blank" means the same thing on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from sync.mapping.model import FieldMapping

Canonical = str | int | float | bool | None


class TransformError(ValueError):
    """A value cannot be carried across; the message names the field and the value."""


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _parse_datetime(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise TransformError(f"{field}: {value!r} is not a date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _to_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise TransformError(f"{field}: {value!r} is not a boolean")


def _to_number(value: Any, field: str) -> int | float:
    if isinstance(value, bool):
        raise TransformError(f"{field}: {value!r} is not a number")
    if isinstance(value, int | float):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        raise TransformError(f"{field}: {value!r} is not a number") from None
    return int(number) if number.is_integer() else number


def _common(field: FieldMapping, value: Any, side: str) -> Canonical:
    """Transforms that read the same on both sides."""
    value = _blank_to_none(value)
    if value is None:
        return None
    name = f"{side} {field.dynamics if side == 'Dynamics' else field.marketo}"
    match field.transform:
        case "text" | "choice" | "lookup_name":
            return str(value)
        case "reference":  # another stream's key: a Dataverse GUID, compared as Dataverse spells it
            return str(value).strip().lower() or None
        case "trim" | "email":
            return str(value).strip() or None
        case "datetime":
            return _parse_datetime(value, name).strftime("%Y-%m-%dT%H:%M:%SZ")
        case "date":
            if isinstance(value, date) and not isinstance(value, datetime):
                return value.isoformat()
            if "T" in str(value):
                return _parse_datetime(value, name).date().isoformat()
            try:
                return date.fromisoformat(str(value).strip()[:10]).isoformat()
            except ValueError:
                raise TransformError(f"{name}: {value!r} is not a date") from None
        case "boolean":
            return _to_bool(value, name)
        case "number":
            return _to_number(value, name)
    raise TransformError(f"{name}: unknown transform {field.transform!r}")  # pragma: no cover - Literal-checked


def from_dynamics(
    field: FieldMapping,
    value: Any,
    options: Mapping[int, str] | None = None,
    formatted: str | None = None,
) -> Canonical:
    """A Dataverse value as canonical. `options` maps choice values to labels; `formatted` is a lookup's name."""
    if field.transform == "lookup_name":
        return _common(field, formatted, "Dynamics")
    if field.transform == "choice":
        value = _blank_to_none(value)
        if value is None:
            return None
        labels = options or {}
        try:
            return labels[int(value)]
        except (KeyError, ValueError, TypeError):
            raise TransformError(f"Dynamics {field.dynamics}: option value {value!r} has no label") from None
    return _common(field, value, "Dynamics")


def from_marketo(field: FieldMapping, value: Any) -> Canonical:
    return _common(field, value, "Marketo")


def to_dynamics(field: FieldMapping, value: Canonical, options: Mapping[int, str] | None = None) -> Any:
    """A canonical value as Dataverse wants it written."""
    if value is None:
        return None
    if field.transform == "choice":
        wanted = str(value).strip().casefold()
        for option_value, label in (options or {}).items():
            if label.casefold() == wanted:
                return option_value
        known = ", ".join(sorted((options or {}).values()))
        raise TransformError(f"Dynamics {field.dynamics}: unknown option label {value!r} (known: {known})")
    if field.transform == "lookup_name":
        raise TransformError(f"Dynamics {field.dynamics}: a lookup's display name cannot be written")
    if field.transform == "reference":
        raise TransformError(f"Dynamics {field.dynamics}: a reference flows to Marketo only")
    return value


def to_marketo(field: FieldMapping, value: Canonical) -> Any:
    return value


def comparable(field: FieldMapping, value: Canonical) -> Canonical:
    """The form two values are compared in: e-mails and choice labels ignore case."""
    if isinstance(value, str) and field.transform in ("email", "choice"):
        return value.casefold()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def same(field: FieldMapping, left: Canonical, right: Canonical) -> bool:
    return comparable(field, left) == comparable(field, right)
