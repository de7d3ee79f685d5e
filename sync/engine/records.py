"""Records as the engine sees them: each side's raw values turned into canonical values by field key, and back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sync.mapping.model import EntityMapping
from sync.mapping.transforms import Canonical, TransformError, from_dynamics, from_marketo, to_dynamics, to_marketo

if TYPE_CHECKING:
    from sync.connectors.dynamics.client import DataverseClient

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
OptionSets = Mapping[str, Mapping[int, str]]  # Dataverse column -> option value -> label


def option_sets(dynamics: DataverseClient, entity: EntityMapping) -> OptionSets:
    """The labels of every choice column the entity maps (one metadata read each, cached by the client)."""
    return {f.dynamics: dynamics.option_set(entity.table, f.dynamics) for f in entity.fields if f.transform == "choice"}


def dynamics_select(entity: EntityMapping, extra: tuple[str, ...] = ()) -> list[str]:
    """The columns to read from Dataverse for an entity."""
    return list(dict.fromkeys([*(f.dynamics_read_column for f in entity.synced_fields), *extra]))


def marketo_fields(entity: EntityMapping, extra: tuple[str, ...] = ()) -> list[str]:
    return list(dict.fromkeys([*(f.marketo for f in entity.synced_fields), *extra]))


def dynamics_canonical(
    entity: EntityMapping,
    raw: Mapping[str, Any],
    options: OptionSets,
    annotations: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Canonical], list[str]]:
    """Canonical values of a Dataverse row (only the mapped fields present in `raw`), and one message per bad field.
    References are not among them: their values come from the link state (see references.py)."""
    values: dict[str, Canonical] = {}
    problems: list[str] = []
    for field in entity.fields:
        column = field.dynamics_read_column
        if column not in raw:
            continue
        formatted = None
        if field.transform == "lookup_name":
            formatted = raw.get(column + FORMATTED) or ((annotations or {}).get(column) or {}).get(FORMATTED[1:])
        try:
            value = from_dynamics(field, raw[column], options.get(field.dynamics), formatted)
        except TransformError as exc:
            problems.append(str(exc))
            continue
        placeholder = entity.required_defaults.get(field.dynamics)
        values[field.key] = None if placeholder is not None and value == placeholder else value
    return values, problems


def marketo_canonical(entity: EntityMapping, raw: Mapping[str, Any]) -> tuple[dict[str, Canonical], list[str]]:
    values: dict[str, Canonical] = {}
    problems: list[str] = []
    for field in entity.synced_fields:
        if field.marketo not in raw:
            continue
        try:
            values[field.key] = from_marketo(field, raw[field.marketo])
        except TransformError as exc:
            problems.append(str(exc))
    return values, problems


def dynamics_raw(entity: EntityMapping, values: Mapping[str, Canonical], options: OptionSets) -> dict[str, Any]:
    """Dataverse columns for canonical values by field key. Raises TransformError naming the field.

    A required column's default (e.g. lastname "[not provided]") is how Dynamics spells "blank": it reads as None
    (so the placeholder never reaches Marketo) and a blank is written as it (so a required column is never emptied).
    """
    columns: dict[str, Any] = {}
    for key, value in values.items():
        field = entity.field(key)
        written = to_dynamics(field, value, options.get(field.dynamics))
        if written in (None, "") and field.dynamics in entity.required_defaults:
            written = entity.required_defaults[field.dynamics]
        columns[field.dynamics] = written
    return columns


def marketo_raw(entity: EntityMapping, values: Mapping[str, Canonical]) -> dict[str, Any]:
    return {(field := entity.field(key)).marketo: to_marketo(field, value) for key, value in values.items()}
