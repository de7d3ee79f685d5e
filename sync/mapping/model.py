"""The field mapping: which entities sync, which fields, which way, and who wins a conflict.

Loaded from YAML or JSON (the packaged default.yaml, or SYNC_MAPPING_FILE) and validated; a bad mapping fails at
start with a MappingError naming the file, the entity and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Direction = Literal["both", "to_marketo", "to_dynamics"]
System = Literal["dynamics", "marketo"]
Transform = Literal["text", "trim", "email", "choice", "datetime", "date", "boolean", "number", "lookup_name"]

DEFAULT_MAPPING_FILE = Path(__file__).with_name("default.yaml")


class MappingError(ValueError):
    """The mapping file is invalid; the message names the file, the entity and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMapping(_Strict):
    dynamics: str = Field(min_length=1, description="Dataverse column (for lookups: the lookup column, e.g. ownerid)")
    marketo: str = Field(min_length=1, description="Marketo REST field name")
    direction: Direction = "both"
    transform: Transform = "text"
    winner: System | None = Field(default=None, description="overrides the entity's conflict winner for this field")

    @property
    def key(self) -> str:
        """The field's name in snapshots and plans (its Marketo name: unique within an entity)."""
        return self.marketo

    @property
    def dynamics_read_column(self) -> str:
        """The column to $select: lookups are read as _<name>_value."""
        return f"_{self.dynamics}_value" if self.transform == "lookup_name" else self.dynamics

    @model_validator(mode="after")
    def _check(self) -> FieldMapping:
        if self.transform == "lookup_name" and self.direction != "to_marketo":
            raise ValueError("a lookup_name field can only flow to_marketo (a display name cannot be written back)")
        return self


class LinkFields(_Strict):
    marketo_type: str = "dynamicsType"
    marketo_is_deleted: str = "dynamicsIsDeleted"
    marketo_created_date: str = "dynamicsCreatedDate"
    marketo_sync_to_dynamics: str = "syncToDynamics"
    dynamics_marketo_id: str = "new_marketopersonid"
    dynamics_sync_filter: str = "new_synctomkto"


class DeletePolicy(_Strict):
    propagate_to_marketo: bool = False
    propagate_to_dynamics: bool = False


class Qualification(_Strict):
    """A record of this entity made from another's by qualification takes over that record's Marketo person."""

    entity: str = Field(min_length=1, description="the entity qualified from, e.g. lead")
    column: str = Field(min_length=1, description="the lookup to it on this table, e.g. originatingleadid")


class EntityMapping(_Strict):
    name: str = ""
    table: str = Field(min_length=1)
    marketo_object: Literal["persons"] = "persons"
    marketo_id_field: str = Field(min_length=1, description="Marketo person field holding this record's Dynamics id")
    person_type: str = Field(min_length=1, description='the value of the Marketo type field, e.g. "Lead"')
    direction: Direction = "both"
    conflict_winner: System
    create_in_dynamics: bool = False
    order: int = 100
    required_defaults: dict[str, str] = Field(default_factory=dict)
    qualified_from: Qualification | None = None
    fields: list[FieldMapping] = Field(min_length=1)

    @property
    def primary_key(self) -> str:
        return f"{self.table}id"

    def field_direction(self, field: FieldMapping) -> Direction:
        """A one-way entity makes every field one-way."""
        return field.direction if self.direction == "both" else self.direction

    def winner_for(self, field: FieldMapping) -> System:
        return field.winner or self.conflict_winner

    def field(self, key: str) -> FieldMapping:
        return next(f for f in self.fields if f.key == key)


class MappingConfig(_Strict):
    link_fields: LinkFields = Field(default_factory=LinkFields)
    deletes: DeletePolicy = Field(default_factory=DeletePolicy)
    entities: dict[str, EntityMapping]

    def entity(self, name: str) -> EntityMapping:
        try:
            return self.entities[name]
        except KeyError:
            raise MappingError(f"unknown entity {name!r}; configured: {', '.join(self.entities)}") from None

    def ordered_entities(self) -> list[EntityMapping]:
        return sorted(self.entities.values(), key=lambda e: (e.order, e.name))


def _check_entity(entity: EntityMapping, links: LinkFields) -> None:
    seen_marketo: set[str] = set()
    seen_dynamics: set[str] = set()
    reserved_marketo = {
        links.marketo_type,
        links.marketo_is_deleted,
        links.marketo_created_date,
        links.marketo_sync_to_dynamics,
        entity.marketo_id_field,
        "id",
    }
    reserved_dynamics = {links.dynamics_marketo_id, links.dynamics_sync_filter, f"{entity.table}id"}
    for field in entity.fields:
        where = f"entity {entity.name!r}, field {field.dynamics!r}"
        if field.marketo in seen_marketo:
            raise MappingError(f"{where}: Marketo field {field.marketo!r} is mapped twice")
        if field.dynamics in seen_dynamics:
            raise MappingError(f"{where}: Dynamics column {field.dynamics!r} is mapped twice")
        if field.marketo in reserved_marketo:
            raise MappingError(f"{where}: Marketo field {field.marketo!r} is a link field the sync maintains")
        if field.dynamics in reserved_dynamics:
            raise MappingError(f"{where}: Dynamics column {field.dynamics!r} is a link column the sync maintains")
        seen_marketo.add(field.marketo)
        seen_dynamics.add(field.dynamics)
    for column in entity.required_defaults:
        if column not in seen_dynamics:
            raise MappingError(f"entity {entity.name!r}, field {column!r}: a required default for an unmapped column")


def _describe_validation_error(exc: ValidationError, raw: dict[str, Any]) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = list(err["loc"])
    parts: list[str] = []
    if len(loc) >= 2 and loc[0] == "entities":
        parts.append(f"entity {loc[1]!r}")
        if len(loc) >= 4 and loc[2] == "fields" and isinstance(loc[3], int):
            fields = (raw.get("entities", {}).get(loc[1], {}) or {}).get("fields") or []
            name = fields[loc[3]].get("dynamics") if loc[3] < len(fields) and isinstance(fields[loc[3]], dict) else None
            parts.append(f"field {name or '#' + str(loc[3] + 1)!r}")
            loc = loc[4:]
        else:
            loc = loc[2:]
    where = ", ".join(parts)
    setting = ".".join(str(p) for p in loc)
    message = err["msg"].removeprefix("Value error, ")
    return ", ".join(p for p in (where, setting) if p) + f": {message}"


def parse_mapping(raw: Any, source: str = "<mapping>") -> MappingConfig:
    if not isinstance(raw, dict):
        raise MappingError(f"{source}: the mapping must be a mapping with an 'entities' key")
    raw = dict(raw)
    entities = raw.get("entities")
    if isinstance(entities, dict):
        raw["entities"] = {
            name: ({**body, "name": name} if isinstance(body, dict) else body) for name, body in entities.items()
        }
    try:
        config = MappingConfig.model_validate(raw)
    except ValidationError as exc:
        raise MappingError(f"{source}: {_describe_validation_error(exc, raw)}") from None
    try:
        for entity in config.entities.values():
            _check_entity(entity, config.link_fields)
            if entity.qualified_from and entity.qualified_from.entity not in config.entities:
                raise MappingError(
                    f"entity {entity.name!r}, qualified_from: unknown entity {entity.qualified_from.entity!r}"
                )
    except MappingError as exc:
        raise MappingError(f"{source}: {exc}") from None
    return config


def load_mapping(path: Path | None = None) -> MappingConfig:
    """The mapping from `path` (YAML or JSON), or the packaged default."""
    path = path or DEFAULT_MAPPING_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc.strerror})") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise MappingError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    return parse_mapping(raw, str(path))
