"""The mapping: the streams (entities) that sync, their fields, references, filters, direction and conflict winner.

A stream is a declaration: its Dataverse table, its Marketo target (persons, a CRM object or a custom object), its
key on each side, its fields with transforms, its direction, its sync filter and its references to other streams (a
lookup column that becomes the other stream's Marketo key). The engine runs every stream the same way; the order of
streams comes from their references (see streams.py). Loaded from YAML or JSON (the packaged default.yaml, or
SYNC_MAPPING_FILE) and validated; a bad mapping fails at start with a MappingError naming the file, the stream and
the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Direction = Literal["both", "to_marketo", "to_dynamics"]
System = Literal["dynamics", "marketo"]
Transform = Literal[
    "text", "trim", "email", "choice", "datetime", "date", "boolean", "number", "lookup_name", "reference", "map"
]
OnDelete = Literal["keep", "delete"]
TeamOwnerPolicy = Literal["team", "administrator", "sales_person"]
CRM_OBJECTS = ("companies", "salespersons", "opportunities", "opportunities/roles")
CUSTOM_OBJECT = re.compile(r"^customobjects/[A-Za-z][A-Za-z0-9_]*$")
# The Marketo key that holds a Dataverse row's id, per CRM object (Adobe's recipe for a non-native CRM).
DEFAULT_MARKETO_KEYS = {
    "companies": "externalCompanyId",
    "salespersons": "externalSalesPersonId",
    "opportunities": "externalOpportunityId",
    "opportunities/roles": "externalOpportunityId",  # with leadId and role: the compound key
}
# Person fields Marketo takes from the person's company once it has one (Sync Leads refuses them then: 1021).
MARKETO_COMPANY_FIELDS = frozenset(
    {
        "company",
        "site",
        "billingStreet",
        "billingCity",
        "billingState",
        "billingCountry",
        "billingPostalCode",
        "website",
        "mainPhone",
        "annualRevenue",
        "numberOfEmployees",
        "industry",
        "sicCode",
    }
)

DEFAULT_MAPPING_FILE = Path(__file__).with_name("default.yaml")


class MappingError(ValueError):
    """The mapping file is invalid; the message names the file, the entity and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """A test on a row's column: `in` (one of) or `not_in` (none of) the values."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    column: str = Field(min_length=1)
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Condition:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError(f"when on {self.column!r}: give exactly one of 'in' and 'not_in'")
        return self

    def holds(self, raw: Mapping[str, Any]) -> bool:
        value = raw.get(self.column)
        if isinstance(value, str) and value == "":
            value = None
        return value in self.in_ if self.in_ is not None else value not in (self.not_in or [])


class SourceCase(_Strict):
    """Read the field from another column when a condition holds: e.g. amount from actualvalue once won."""

    when: Condition
    dynamics: str = Field(min_length=1)


class FieldMapping(_Strict):
    dynamics: str = Field(min_length=1, description="Dataverse column (for lookups: the lookup column, e.g. ownerid)")
    marketo: str = Field(min_length=1, description="Marketo REST field name")
    direction: Direction = "both"
    transform: Transform = "text"
    winner: System | None = Field(default=None, description="overrides the entity's conflict winner for this field")
    never_blank: bool = Field(default=False, description="a blank source value is not written (e.g. a company link)")
    required: bool = Field(default=False, description="a blank value is a record error (Marketo requires the field)")
    cases: list[SourceCase] = Field(
        default_factory=list, description="the first case whose condition holds names the column read instead"
    )
    values: dict[Any, Any] | None = Field(default=None, description="transform map: Dataverse value -> Marketo value")

    @property
    def key(self) -> str:
        """The field's name in snapshots and plans (its Marketo name: unique within an entity)."""
        return self.marketo

    @property
    def dynamics_read_column(self) -> str:
        """The column to $select: lookups are read as _<name>_value."""
        return f"_{self.dynamics}_value" if self.transform in ("lookup_name", "reference") else self.dynamics

    def source_column(self, raw: Mapping[str, Any]) -> str:
        """The column this row's value comes from: the first case that holds, else `dynamics`."""
        return next((case.dynamics for case in self.cases if case.when.holds(raw)), self.dynamics)

    @property
    def extra_read_columns(self) -> list[str]:
        """Columns read besides the field's own: its cases' columns and the columns their conditions test."""
        return [c for case in self.cases for c in (case.dynamics, case.when.column)]

    @property
    def one_way(self) -> bool:
        return bool(self.cases) or self.transform == "map"

    @model_validator(mode="after")
    def _check(self) -> FieldMapping:
        if self.transform == "map" and not self.values:
            raise ValueError("transform: map needs values: {<Dataverse value>: <Marketo value>, ...}")
        if self.values is not None and self.transform != "map":
            raise ValueError("values is for transform: map")
        if self.cases and self.transform in ("lookup_name", "reference", "choice"):
            raise ValueError(f"cases cannot be combined with transform: {self.transform}")
        if self.transform == "lookup_name" and self.direction != "to_marketo":
            raise ValueError("a lookup_name field can only flow to_marketo (a display name cannot be written back)")
        if self.transform == "reference" and self.direction != "to_marketo":
            raise ValueError("a reference can only flow to_marketo (declare it under references)")
        return self


class Fallback(_Strict):
    """Where a reference looks when its column points at none of its targets: another lookup column of the row,
    or (with `via`) a lookup of the row that column points at (e.g. the customer contact's parentcustomerid)."""

    column: str = Field(min_length=1, description="a lookup column of the row, e.g. customerid")
    via: str | None = Field(default=None, description="a lookup column of the row it points at, e.g. parentcustomerid")


class Reference(_Strict):
    """A lookup column that becomes another stream's Marketo key: e.g. a contact's parentcustomerid ->
    externalCompanyId. The lookup's target table picks the stream; a target no listed stream syncs writes nothing.
    `fallbacks` are tried in order while the lookup is blank or points at a table none of the targets syncs."""

    column: str = Field(min_length=1, description="the lookup column, e.g. parentcustomerid or ownerid")
    marketo: str = Field(min_length=1, description="the Marketo field written, e.g. externalCompanyId")
    targets: list[str] = Field(min_length=1, description="the streams it may point at, e.g. [systemuser, team]")
    fallbacks: list[Fallback] = Field(default_factory=list)

    @property
    def read_columns(self) -> list[str]:
        """The lookup columns to $select (as _<name>_value) on the stream's own table."""
        return list(dict.fromkeys(f"_{c}_value" for c in [self.column, *(f.column for f in self.fallbacks)]))

    def as_field(self) -> FieldMapping:
        # Marketo cannot take a person out of a company, so a company link is never blanked.
        never_blank = self.marketo == "externalCompanyId"
        return FieldMapping(
            dynamics=self.column,
            marketo=self.marketo,
            direction="to_marketo",
            transform="reference",
            never_blank=never_blank,
        )


class FilterRule(_Strict):
    """Rows whose column holds one of `not_in` (or none of `in`) do not sync: skipped, and a linked row's Marketo
    record is kept as it is (not updated, not deleted), as the native sync does with new_synctomkto."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    column: str = Field(min_length=1)
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    reason: str = Field(default="", description="what the operator reads for a skipped row")

    @model_validator(mode="after")
    def _one_of(self) -> FilterRule:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError(f"filter on {self.column!r}: give exactly one of 'in' and 'not_in'")
        return self

    def rejects(self, value: Any) -> bool:
        if isinstance(value, str) and value == "":
            value = None
        if self.in_ is not None:
            return value not in self.in_
        return value in (self.not_in or [])

    def describe(self) -> str:
        return self.reason or (
            f"{self.column} is not one of {self.in_}" if self.in_ is not None else f"{self.column} is {self.not_in}"
        )


class OwnerPolicy(_Strict):
    """What a record owned by a team points at in Marketo (externalSalesPersonId)."""

    teams: TeamOwnerPolicy = Field(
        default="team", description="team: the team's own sales person; administrator: its admin's; sales_person"
    )
    sales_person: str | None = Field(default=None, description="with teams: sales_person, the externalSalesPersonId")

    @model_validator(mode="after")
    def _check(self) -> OwnerPolicy:
        if self.teams == "sales_person" and not self.sales_person:
            raise ValueError("teams: sales_person needs sales_person: <externalSalesPersonId>")
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


class RoleRules(_Strict):
    """An opportunities/roles stream: which persons are an opportunity's contact roles, and with what role name."""

    opportunity: str = Field(default="opportunity", description="the opportunities stream the roles belong to")
    persons: str = Field(default="contact", description="the person stream of the contacts (leadId comes from it)")
    customer_role: str = Field(default="Customer", min_length=1, max_length=50, description="the customer contact's")
    stakeholder_role: str = Field(
        default="Stakeholder", min_length=1, max_length=50, description="a connection without a connection role"
    )
    connection_table: str = Field(default="connection", description="the stakeholders: active connections")


class EntityMapping(_Strict):
    """One stream: a Dataverse table and its Marketo target, keys, fields, references, filter and direction."""

    name: str = ""
    table: str = Field(min_length=1)
    marketo_object: str = Field(
        default="persons", description="persons, companies, salespersons, opportunities, or customobjects/<apiName>"
    )
    marketo_key: str = Field(default="", description="CRM objects: the Marketo dedupe field holding the row's id")
    marketo_id_field: str = Field(default="", description="persons: the Marketo field holding the Dynamics id")
    person_type: str = Field(default="", description='persons: the value of the Marketo type field, e.g. "Lead"')
    direction: Direction = "both"
    conflict_winner: System | None = None
    create_in_dynamics: bool = False
    sync_filter: bool = Field(default=True, description="the table has the new_synctomkto column")
    filter: list[FilterRule] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    on_delete: OnDelete = Field(default="keep", description="CRM objects: what a deleted row does to its record")
    required_defaults: dict[str, str] = Field(default_factory=dict)
    qualified_from: Qualification | None = None
    roles: RoleRules | None = Field(default=None, description="opportunities/roles: where the roles come from")
    fields: list[FieldMapping] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_target(self) -> EntityMapping:
        target = self.marketo_object
        if target == "persons":
            if not self.marketo_id_field or not self.person_type:
                raise ValueError("a persons stream needs marketo_id_field and person_type")
            if self.direction == "both" and self.conflict_winner is None:
                raise ValueError("a two-way stream needs conflict_winner: dynamics or marketo")
        elif target in CRM_OBJECTS or CUSTOM_OBJECT.match(target):
            if self.direction != "to_marketo":
                raise ValueError(f"{target} sync one way: set direction: to_marketo")
            if self.create_in_dynamics or self.qualified_from:
                raise ValueError(f"{target}: create_in_dynamics and qualified_from are for persons")
            if not self.marketo_key and target not in DEFAULT_MARKETO_KEYS:
                raise ValueError(f"{target}: give marketo_key, the Marketo field that holds the row's id")
        else:
            known = ", ".join(["persons", *CRM_OBJECTS, "customobjects/<apiName>"])
            raise ValueError(f"marketo_object {target!r} is not one of {known}")
        if (target == "opportunities/roles") != (self.roles is not None):
            raise ValueError("an opportunities/roles stream, and only it, takes roles: {opportunity, persons, ...}")
        if self.roles is not None and (self.fields or self.references):
            raise ValueError("a roles stream writes externalOpportunityId, leadId, role and isPrimary: no fields")
        if not self.fields and not self.references and self.roles is None:
            raise ValueError("a stream needs at least one field")
        return self

    @property
    def is_persons(self) -> bool:
        return self.marketo_object == "persons"

    @property
    def key_field(self) -> str:
        """CRM objects: the Marketo field keyed on the Dataverse id (externalCompanyId for companies, ...)."""
        return self.marketo_key or DEFAULT_MARKETO_KEYS.get(self.marketo_object, "")

    @property
    def primary_key(self) -> str:
        return f"{self.table}id"

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> EntityMapping:
        """A copy whose cached properties are worked out again (`update` may change what they derive from)."""
        copied = super().model_copy(update=update, deep=deep)
        for cached in ("synced_fields", "fields_by_key", "reference_fields"):
            copied.__dict__.pop(cached, None)
        return copied

    @cached_property
    def synced_fields(self) -> list[FieldMapping]:
        """The mapped fields and, after them, the references as one-way fields (their values are resolved).
        Cached (the model is frozen): every record's mapping asks for them."""
        return [*self.fields, *(r.as_field() for r in self.references)]

    @cached_property
    def reference_fields(self) -> frozenset[str]:
        """The Marketo fields its references write (asked for every record's merge)."""
        return frozenset(r.marketo for r in self.references)

    @cached_property
    def fields_by_key(self) -> dict[str, FieldMapping]:
        found: dict[str, FieldMapping] = {}
        for synced in self.synced_fields:
            found.setdefault(synced.key, synced)
        return found

    def field_direction(self, field: FieldMapping) -> Direction:
        """A one-way entity makes every field one-way."""
        return field.direction if self.direction == "both" else self.direction

    def winner_for(self, field: FieldMapping) -> System:
        return field.winner or self.conflict_winner or "dynamics"

    def field(self, key: str) -> FieldMapping:
        return self.fields_by_key[key]

    def reference_targets(self) -> list[str]:
        """The streams its records point at (a roles stream: its opportunities and their persons)."""
        names = [t for r in self.references for t in r.targets]
        names += [self.roles.opportunity, self.roles.persons] if self.roles else []
        return [n for n in dict.fromkeys(names) if n != self.name]

    def depends_on(self) -> list[str]:
        """The streams this one must follow: its references' targets, and the stream it is qualified from."""
        names = [t for r in self.references for t in r.targets]
        if self.roles:
            names += [self.roles.opportunity, self.roles.persons]
        if self.qualified_from:
            names.append(self.qualified_from.entity)
        return [n for n in dict.fromkeys(names) if n != self.name]


class MappingConfig(_Strict):
    link_fields: LinkFields = Field(default_factory=LinkFields)
    deletes: DeletePolicy = Field(default_factory=DeletePolicy)
    owners: OwnerPolicy = Field(default_factory=OwnerPolicy)
    entities: dict[str, EntityMapping]

    def entity(self, name: str) -> EntityMapping:
        try:
            return self.entities[name]
        except KeyError:
            raise MappingError(f"unknown entity {name!r}; configured: {', '.join(self.entities)}") from None

    def ordered_entities(self) -> list[EntityMapping]:
        """Every stream after the streams it points at (declaration order otherwise)."""
        return [self.entities[name] for name in dependency_order(self.entities)]

    def person_streams(self) -> list[EntityMapping]:
        return [e for e in self.ordered_entities() if e.is_persons]

    def stream_for_table(self, table: str) -> EntityMapping | None:
        return next((e for e in self.entities.values() if e.table == table), None)


def dependency_order(streams: Mapping[str, EntityMapping]) -> list[str]:
    """A topological order of the streams by their references (ties keep declaration order). A cycle is a
    MappingError naming the streams on it."""
    done: list[str] = []
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            loop = [*path[path.index(name) :], name]
            raise MappingError(f"a cycle of references between streams: {' -> '.join(loop)}")
        state[name] = "visiting"
        for target in streams[name].depends_on():
            if target in streams:
                visit(target, [*path, name])
        state[name] = "done"
        done.append(name)

    for name in streams:
        visit(name, [])
    return done


def _check_entity(entity: EntityMapping, config: MappingConfig) -> None:
    links = config.link_fields
    seen_marketo: set[str] = set()
    seen_dynamics: set[str] = set()
    if entity.is_persons:
        reserved_marketo = {
            links.marketo_type,
            links.marketo_is_deleted,
            links.marketo_created_date,
            links.marketo_sync_to_dynamics,
            entity.marketo_id_field,
            "id",
        }
        reserved_dynamics = {links.dynamics_marketo_id, links.dynamics_sync_filter, f"{entity.table}id"}
    else:
        reserved_marketo = {entity.key_field, "id", "marketoGUID"}
        reserved_dynamics = {links.dynamics_sync_filter, f"{entity.table}id"}
    for field in entity.synced_fields:
        where = f"entity {entity.name!r}, field {field.dynamics!r}"
        if field.marketo in seen_marketo:
            raise MappingError(f"{where}: Marketo field {field.marketo!r} is mapped twice")
        one_way = entity.field_direction(field) == "to_marketo"
        if field.dynamics in seen_dynamics and not one_way:  # a column may feed several fields read one way
            raise MappingError(f"{where}: Dynamics column {field.dynamics!r} is mapped twice")
        if field.one_way and not one_way:
            raise MappingError(f"{where}: cases and transform: map flow to Marketo only (set direction: to_marketo)")
        if field.marketo in reserved_marketo:
            raise MappingError(f"{where}: Marketo field {field.marketo!r} is a link field the sync maintains")
        if field.dynamics in reserved_dynamics:
            raise MappingError(f"{where}: Dynamics column {field.dynamics!r} is a link column the sync maintains")
        seen_marketo.add(field.marketo)
        seen_dynamics.add(field.dynamics)
    for column in entity.required_defaults:
        if column not in seen_dynamics:
            raise MappingError(f"entity {entity.name!r}, field {column!r}: a required default for an unmapped column")
    for reference in entity.references:
        where = f"entity {entity.name!r}, reference {reference.column!r}"
        for target in reference.targets:
            stream = config.entities.get(target)
            if stream is None:
                raise MappingError(f"{where}: unknown stream {target!r}; configured: {', '.join(config.entities)}")
            if stream.is_persons and reference.marketo != "leadId":
                raise MappingError(f"{where}: {target!r} is a persons stream; only leadId can point at a person")
    if entity.qualified_from and entity.qualified_from.entity not in config.entities:
        raise MappingError(f"entity {entity.name!r}, qualified_from: unknown entity {entity.qualified_from.entity!r}")
    if entity.roles is not None:
        opportunity = config.entities.get(entity.roles.opportunity)
        persons = config.entities.get(entity.roles.persons)
        where = f"entity {entity.name!r}, roles"
        if opportunity is None or opportunity.marketo_object != "opportunities":
            raise MappingError(f"{where}: opportunity {entity.roles.opportunity!r} is not an opportunities stream")
        if persons is None or not persons.is_persons:
            raise MappingError(f"{where}: persons {entity.roles.persons!r} is not a persons stream")
        if entity.table != opportunity.table:
            raise MappingError(f"{where}: its table must be the opportunities stream's ({opportunity.table})")


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
            _check_entity(entity, config)
        dependency_order(config.entities)
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
