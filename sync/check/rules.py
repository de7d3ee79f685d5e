"""The pure core of `python -m sync check`: the mapping and the systems' metadata in, one CheckResult per need out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sync.check.model import CheckedSystem, CheckResult, DataverseFacts, MarketoFacts, Problem, Status, StorageFacts
from sync.connectors.dynamics.metadata import OPTION_SET_CASTS
from sync.connectors.dynamics.models import ColumnMetadata, TableMetadata
from sync.connectors.marketo.models import ObjectDescription
from sync.engine.crm_stream import ADMIN_HINT
from sync.mapping.model import EntityMapping, FieldMapping, LinkFields, MappingConfig
from sync.state.links import BUCKETS

LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
MATCHED_BY_EMAIL = "email"  # the engine looks persons up by email before it creates one
MAPPING_HINT = "or remove the field from the mapping (SYNC_MAPPING_FILE)"
POWER_APPS = "make.powerapps.com > Tables > {table}"


def _result(system: CheckedSystem, item: str, status: Status, message: str, hint: str = "") -> CheckResult:
    return CheckResult(system=system, item=item, status=status, message=message, hint=hint if status != "ok" else "")


def _failed(system: CheckedSystem, problem: Problem) -> CheckResult:
    return _result(system, "access", "fail", problem.message, problem.hint)


def evaluate(
    mapping: MappingConfig,
    dataverse: DataverseFacts,
    marketo: MarketoFacts,
    storage: StorageFacts,
    *,
    daily_budget: int,
) -> list[CheckResult]:
    return [
        *dataverse_results(mapping, dataverse),
        *marketo_results(mapping, marketo, daily_budget),
        *storage_results(storage),
    ]


# --- Dataverse ----------------------------------------------------------------------------------------------------


def dataverse_results(mapping: MappingConfig, facts: DataverseFacts) -> list[CheckResult]:
    if facts.problem is not None:
        return [_failed("dynamics", facts.problem)]
    results = [_result("dynamics", "access", "ok", "token granted; the Web API answered the metadata calls")]
    for entity in mapping.ordered_entities():
        results += _table_results(entity, mapping, facts)
    return results


def _table_results(entity: EntityMapping, mapping: MappingConfig, facts: DataverseFacts) -> list[CheckResult]:
    name = entity.table
    table = facts.tables.get(name)
    if table is None:
        return [
            _result(
                "dynamics",
                f"{name} table",
                "missing",
                f"Dataverse has no table '{name}' (entity {entity.name})",
                "check the entity's table (its logical name) in the mapping (SYNC_MAPPING_FILE)",
            )
        ]
    results = [_result("dynamics", f"{name} table", "ok", f"exists (entity set {table.entity_set_name})")]
    results.append(_change_tracking(table))
    if entity.roles is not None:
        connections = facts.tables.get(entity.roles.connection_table)
        item = f"{entity.roles.connection_table} table"
        if connections is None:
            results.append(_result("dynamics", item, "missing", f"Dataverse has no table (stream {entity.name})"))
        else:
            results.append(_result("dynamics", item, "ok", f"exists (the stakeholders of {entity.name})"))
            results.append(_change_tracking(connections))
    for mapped in entity.fields:
        results.append(_mapped_column(table, entity, mapped, facts.option_sets))
    checked = {f.dynamics for f in entity.fields}
    for mapped in entity.fields:
        for column in dict.fromkeys(mapped.extra_read_columns):
            if column in checked:
                continue
            checked.add(column)
            results.append(
                _column(
                    table,
                    column,
                    purpose=f"a case of Marketo {mapped.marketo}",
                    hint=f"fix the cases of {entity.name}.{mapped.marketo} ({MAPPING_HINT})",
                )
            )
    for reference in entity.references:
        for column in dict.fromkeys(f.column for f in reference.fallbacks if f.column != reference.column):
            results.append(
                _column(
                    table,
                    column,
                    purpose=f"a fallback of {reference.column}, written as Marketo {reference.marketo}",
                    hint=f"fix the fallbacks of {entity.name}.{reference.column} ({MAPPING_HINT})",
                    lookup=True,
                )
            )
        targets = [mapping.entity(t).table for t in reference.targets]
        results.append(
            _column(
                table,
                reference.column,
                purpose=f"a reference to {' or '.join(targets)}, written as Marketo {reference.marketo}",
                hint=f"it is a lookup column: check the name in the references of {entity.name} (SYNC_MAPPING_FILE)",
                lookup=True,
            )
        )
    for rule in entity.filter:
        results.append(
            _column(
                table,
                rule.column,
                purpose="the stream's filter",
                hint=f"fix the filter of {entity.name} (SYNC_MAPPING_FILE)",
            )
        )
    if entity.is_persons:
        results += _link_columns(table, mapping.link_fields, create=entity.create_in_dynamics)
    elif entity.sync_filter:
        results.append(_sync_filter_column(table, mapping.link_fields))
    if entity.qualified_from is not None:
        source = mapping.entity(entity.qualified_from.entity).table
        results.append(
            _column(
                table,
                entity.qualified_from.column,
                purpose=f"the lookup to the {source} it was qualified from",
                hint="it is a standard column: check the name in qualified_from (SYNC_MAPPING_FILE)",
                lookup_to=source,
            )
        )
    return results


def _change_tracking(table: TableMetadata) -> CheckResult:
    name = table.logical_name
    if table.change_tracking:
        return _result("dynamics", f"{name} change tracking", "ok", "enabled")
    return _result(
        "dynamics",
        f"{name} change tracking",
        "missing",
        "change tracking is off: the incremental sync cannot read changes",
        f"{POWER_APPS.format(table=name)} > Properties > Advanced options > Track changes",
    )


def _mapped_column(
    table: TableMetadata,
    entity: EntityMapping,
    mapped: FieldMapping,
    option_sets: dict[tuple[str, str], dict[int, str]],
) -> CheckResult:
    direction = entity.field_direction(mapped)
    writes = direction in ("both", "to_dynamics") and mapped.transform != "lookup_name"
    hint = f"add the column in {POWER_APPS.format(table=table.logical_name)} > Columns, {MAPPING_HINT}"
    return _column(
        table,
        mapped.dynamics,
        purpose=f"mapped to Marketo {mapped.marketo}",
        hint=hint,
        choice=mapped.transform == "choice",
        lookup=mapped.transform == "lookup_name",
        updates=writes,
        creates=writes and entity.create_in_dynamics,
        options=option_sets.get((table.logical_name, mapped.dynamics)),
    )


def _sync_filter_column(table: TableMetadata, links: LinkFields) -> CheckResult:
    name = table.logical_name
    return _column(
        table,
        links.dynamics_sync_filter,
        purpose="link column: which records sync to Marketo",
        hint=f"add a 'Yes/No' column {links.dynamics_sync_filter} in {POWER_APPS.format(table=name)} > Columns, "
        "or set sync_filter: false on the stream (SYNC_MAPPING_FILE)",
        types=("Boolean",),
    )


def _link_columns(table: TableMetadata, links: LinkFields, *, create: bool) -> list[CheckResult]:
    name = table.logical_name
    person_id = links.dynamics_marketo_id
    results = [
        _column(
            table,
            person_id,
            purpose="link column: the Marketo person id",
            hint=f"add a 'Single line of text' column {person_id} (100) in {POWER_APPS.format(table=name)} > Columns",
            types=("String",),
            updates=True,
            creates=create,
        ),
        _sync_filter_column(table, links),
    ]
    item = f"{name} alternate key"
    keyed = [k.name for k in table.keys if k.columns == [person_id]]
    if keyed:
        results.append(_result("dynamics", item, "ok", f"{keyed[0]} on {person_id}"))
    else:
        results.append(
            _result(
                "dynamics",
                item,
                "missing",
                f"no alternate key on {person_id}: the sync upserts and finds records by it",
                f"{POWER_APPS.format(table=name)} > Keys > New key on {person_id}; wait until it shows Active",
            )
        )
    return results


def _column(
    table: TableMetadata,
    name: str,
    *,
    purpose: str,
    hint: str,
    types: tuple[str, ...] = (),
    choice: bool = False,
    lookup: bool = False,
    lookup_to: str | None = None,
    updates: bool = False,
    creates: bool = False,
    options: dict[int, str] | None = None,
) -> CheckResult:
    """One column's line: the first thing wrong with it, or ok."""
    item = f"{table.logical_name}.{name}"
    column = table.columns.get(name)
    if column is None:
        return _result("dynamics", item, "missing", f"no such column ({purpose})", hint)
    problem = _column_problem(column, types, choice, lookup or lookup_to is not None, lookup_to, updates, creates)
    if problem is not None:
        return _result("dynamics", item, "fail", f"{problem} ({purpose})", _fix_for(problem, table.logical_name))
    if choice and not (column.options or options):
        return _result(
            "dynamics",
            item,
            "missing",
            f"the choice column has no options ({purpose})",
            f"add its choices in {POWER_APPS.format(table=table.logical_name)} > Columns > {name}",
        )
    return _result("dynamics", item, "ok", f"{column.type} ({purpose})")


def _column_problem(
    column: ColumnMetadata,
    types: tuple[str, ...],
    choice: bool,
    lookup: bool,
    lookup_to: str | None,
    updates: bool,
    creates: bool,
) -> str | None:
    if types and column.type not in types:
        return f"is a {column.type} column, not {' or '.join(types)}"
    if choice and column.type not in OPTION_SET_CASTS:
        return f"is a {column.type} column, not a choice (transform choice)"
    if lookup and column.type not in LOOKUP_TYPES:
        return f"is a {column.type} column, not a lookup"
    if lookup_to is not None and column.targets and lookup_to not in column.targets:
        return f"looks up {', '.join(column.targets)}, not {lookup_to}"
    if creates and not column.valid_for_create:
        return "cannot be set on create, and the sync creates records"
    if updates and not column.valid_for_update:
        return "is read-only, and the sync writes it"
    return None


def _fix_for(problem: str, table: str) -> str:
    if "the sync" in problem:
        return "map a writable column, or make the field flow to_marketo only (SYNC_MAPPING_FILE)"
    return f"map a column of the right type in SYNC_MAPPING_FILE, or fix the column in {POWER_APPS.format(table=table)}"


# --- Marketo ------------------------------------------------------------------------------------------------------

# The link fields the sync keeps on persons, with the type to create them with.
_LINK_FIELD_TYPES = {
    "marketo_type": "String",
    "marketo_is_deleted": "Boolean",
    "marketo_created_date": "Datetime",
    "marketo_sync_to_dynamics": "Boolean",
}
_WRITTEN_LINK_FIELDS = ("marketo_type", "marketo_is_deleted", "marketo_created_date")


@dataclass
class FieldUse:
    """Why the sync needs one Marketo field (a field can serve several entities)."""

    purposes: list[str] = field(default_factory=list)
    written: bool = False
    link_type: str | None = None  # link fields: the type to create them with


def marketo_field_uses(mapping: MappingConfig) -> dict[str, FieldUse]:
    uses: dict[str, FieldUse] = {}

    def use(name: str, purpose: str, *, written: bool, link_type: str | None = None) -> None:
        entry = uses.setdefault(name, FieldUse(link_type=link_type))
        if purpose not in entry.purposes:
            entry.purposes.append(purpose)
        entry.written = entry.written or written

    persons = mapping.person_streams()
    for entity in persons:
        for mapped in entity.synced_fields:
            written = entity.field_direction(mapped) in ("both", "to_marketo")
            use(mapped.marketo, f"{entity.name}.{mapped.dynamics}", written=written)
    links = mapping.link_fields
    for attribute, data_type in _LINK_FIELD_TYPES.items():
        written = attribute in _WRITTEN_LINK_FIELDS
        use(getattr(links, attribute), "link field", written=written, link_type=data_type)
    for entity in persons:
        use(entity.marketo_id_field, f"link field: the Dynamics {entity.name} id", written=True, link_type="String")
    return uses


def marketo_results(mapping: MappingConfig, facts: MarketoFacts, daily_budget: int) -> list[CheckResult]:
    if facts.problem is not None:
        return [_failed("marketo", facts.problem)]
    results = [_result("marketo", "access", "ok", "token granted; describe answered")]
    for name, use in marketo_field_uses(mapping).items():
        results.append(_marketo_field(name, use, facts))
    results += list(_searchable(mapping, facts))
    for stream in mapping.ordered_entities():
        if not stream.is_persons:
            results += _crm_object(stream, facts)
    results.append(_usage(facts, daily_budget))
    return results


def _crm_object(stream: EntityMapping, facts: MarketoFacts) -> list[CheckResult]:
    """A one-way stream's Marketo object: it exists, its key is its dedupe field, every mapped field is there."""
    target = stream.marketo_object
    described = facts.objects.get(target)
    if described is None:
        custom = target.startswith("customobjects/")
        hint = (
            "custom object types are not created by the sync: " + ADMIN_HINT
            if custom
            else "turn Marketo's native CRM sync off for this instance (1018 CRM enabled), or remove the stream"
        )
        what = f"the custom object type {target.removeprefix('customobjects/')}" if custom else target
        return [
            _result("marketo", f"object {target}", "missing", f"Marketo has no {what} (stream {stream.name})", hint)
        ]
    results = [_result("marketo", f"object {target}", "ok", f"exists (stream {stream.name})")]
    custom = target.startswith("customobjects/")
    fields = {f.name: f for f in described.fields}
    key = stream.key_field
    if [key] != described.dedupe_fields and key not in described.dedupe_fields:
        results.append(
            _result(
                "marketo",
                f"{target}.{key}",
                "fail",
                f"is not the dedupe field of {target} ({', '.join(described.dedupe_fields) or 'none'})",
                f"set marketo_key of {stream.name} to the object's dedupe field (SYNC_MAPPING_FILE)",
            )
        )
    if custom:
        links = {str(r.get("field")) for r in described.relationships if isinstance(r, dict)}
        for reference in stream.references:
            item = f"{target}.{reference.marketo} link"
            if reference.marketo in links:
                results.append(_result("marketo", item, "ok", f"links to {_related(described, reference.marketo)}"))
            else:
                message = f"is not a link field of {target} (links: {', '.join(sorted(links)) or 'none'})"
                results.append(_result("marketo", item, "fail", message, ADMIN_HINT))
    written = [(f.marketo, f"{stream.name}.{f.dynamics}") for f in stream.synced_fields]
    if stream.roles is not None:
        written = [(n, f"{stream.name} roles") for n in ("leadId", "role", "isPrimary")]
    for marketo_name, source in written:
        item = f"{target}.{marketo_name}"
        found = fields.get(marketo_name)
        if found is None:
            results.append(_result("marketo", item, "missing", f"no such field ({source})", MAPPING_HINT))
        elif not found.updateable:
            results.append(
                _result("marketo", item, "fail", f"read-only, and the sync writes it ({stream.name})", MAPPING_HINT)
            )
        else:
            results.append(_result("marketo", item, "ok", f"{found.data_type} ({source})"))
    return results


def _related(described: ObjectDescription, field: str) -> str:
    for relation in described.relationships:
        if isinstance(relation, dict) and relation.get("field") == field:
            related = relation.get("relatedTo") or {}
            return f"{related.get('name', '?')}.{related.get('field', '?')}"
    return "?"


def _marketo_field(name: str, use: FieldUse, facts: MarketoFacts) -> CheckResult:
    item = f"field {name}"
    purpose = ", ".join(use.purposes)
    described = facts.fields.get(name)
    if described is None:
        if use.link_type is not None:
            hint = f"Admin > Field Management > New Custom Field: type {use.link_type}, API name {name}"
        else:
            hint = f"create the field in Admin > Field Management, {MAPPING_HINT}"
        return _result("marketo", item, "missing", f"no person field with this API name ({purpose})", hint)
    if use.written and not described.updateable:
        return _result(
            "marketo",
            item,
            "fail",
            f"read-only for the API, and the sync writes it ({purpose})",
            "map a writable field, or make the field flow to_dynamics only (SYNC_MAPPING_FILE)",
        )
    return _result("marketo", item, "ok", f"{described.data_type} ({purpose})")


def _searchable(mapping: MappingConfig, facts: MarketoFacts) -> Iterator[CheckResult]:
    names = [*dict.fromkeys([e.marketo_id_field for e in mapping.person_streams()] + [MATCHED_BY_EMAIL])]
    for name in names:
        if name not in facts.fields:
            continue  # reported missing above
        item = f"search by {name}"
        if facts.searchable is None:
            yield _result("marketo", item, "info", "not verified: describe2 is not available on this instance")
        elif [name] in facts.searchable:
            yield _result("marketo", item, "ok", "searchable (the sync finds persons by it)")
        else:
            yield _result(
                "marketo",
                item,
                "missing",
                "not searchable: the sync cannot find persons by it",
                f"ask Adobe Marketo Support to make {name} searchable (indexed) for the REST API",
            )


def _usage(facts: MarketoFacts, daily_budget: int) -> CheckResult:
    if facts.used_today is None:
        return _result("marketo", "daily usage", "info", f"not available ({facts.usage_problem or 'no answer'})")
    over = " (over the budget)" if facts.used_today >= daily_budget else ""
    return _result(
        "marketo",
        "daily usage",
        "info",
        f"{facts.used_today:,} API calls so far today (all users), MARKETO_DAILY_CALL_BUDGET is {daily_budget:,}{over}",
    )


# --- Azure Table Storage ------------------------------------------------------------------------------------------


def storage_results(facts: StorageFacts) -> list[CheckResult]:
    if facts.problem is not None:
        return [_result("storage", "state tables", "fail", facts.problem.message, facts.problem.hint)]
    results = [_result("storage", "state tables", "ok", f"{len(facts.tables)} tables ready: {', '.join(facts.tables)}")]
    for entity in facts.legacy_links:
        results.append(
            _result(
                "storage",
                f"{entity} links",
                "fail",
                f"links of {entity} are in the old layout (the one links table of earlier versions): the sync "
                "refuses them until they are moved",
                "run python -m sync migrate-links (with --dry-run first to see how many rows it moves)",
            )
        )
    if facts.links_checked and not facts.legacy_links:
        results.append(
            _result(
                "storage",
                "link layout",
                "ok",
                f"the links of {facts.links_checked} streams are in {BUCKETS} buckets per side, a table each",
            )
        )
    return results
