"""Persons (leads) in memory, with indexes, and the activities every change produces.

Indexes: by id (the dict), by lower-cased e-mail (always), and by any other searchable field once it is first used
as a filter or lookup (then kept up to date on every write).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from emulators.marketo.activities import (
    API_SOURCE,
    CHANGE_DATA_VALUE,
    DELETE_LEAD,
    MERGE_LEADS,
    NEW_LEAD,
    ActivityLog,
    activity_text,
)
from emulators.marketo.clock import Clock, iso
from emulators.marketo.errors import RequestError, skipped
from emulators.marketo.schema import FieldDef, InvalidValue, PersonSchema, coerce, lookup_key

DEFAULT_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")
# The person fields a company holds: a person linked to a company (by externalCompanyId) shows the company's values
# and cannot change them through Sync Leads (1021 "Company update not allowed").
COMPANY_FIELDS = (
    "company",
    "website",
    "mainPhone",
    "annualRevenue",
    "numberOfEmployees",
    "industry",
    "sicCode",
    "billingStreet",
    "billingCity",
    "billingState",
    "billingCountry",
    "billingPostalCode",
)


def _no_company(key: Any) -> dict[str, Any] | None:
    return None


SYSTEM_FIELDS = frozenset({"id", "createdAt", "updatedAt", "leadPartitionId"})
ACTIONS = ("createOrUpdate", "createOnly", "updateOnly", "createDuplicate")


@dataclass(frozen=True)
class Partition:
    id: int
    name: str
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description}


@dataclass(frozen=True)
class ChangeSource:
    """Who made a change, as the activities record it."""

    source: str = API_SOURCE
    reason: str | None = API_SOURCE
    api_method: str | None = "syncLead"
    user: str | None = None
    form_name: str | None = None


API = ChangeSource()


class PersonStore:
    def __init__(self, schema: PersonSchema, log: ActivityLog, clock: Clock) -> None:
        self.schema = schema
        self.log = log
        self.clock = clock
        self.persons: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.indexes: dict[str, dict[Any, set[int]]] = {"email": {}}
        self.partitions = [Partition(1, "Default", "Initial system lead partition")]
        self.deleted: dict[int, float] = {}  # id -> when; merged losers are not here (Marketo: no Delete Lead)
        self.company_of: Callable[[Any], dict[str, Any] | None] = _no_company  # externalCompanyId -> company

    # ----- indexes
    def _index(self, name: str) -> dict[Any, set[int]]:
        index = self.indexes.get(name)
        if index is None:
            definition = self.schema.get(name)
            index = {}
            for ident, values in self.persons.items():
                key = lookup_key(definition, values.get(name))
                if key is not None:
                    index.setdefault(key, set()).add(ident)
            self.indexes[name] = index
        return index

    def _unindex(self, ident: int, name: str, value: Any) -> None:
        index = self.indexes.get(name)
        if index is not None and value is not None:
            key = lookup_key(self.schema.get(name), value)
            members = index.get(key)
            if members is not None:
                members.discard(ident)
                if not members:
                    del index[key]

    def _reindex(self, ident: int, name: str, value: Any) -> None:
        index = self.indexes.get(name)
        if index is not None and value is not None:
            index.setdefault(lookup_key(self.schema.get(name), value), set()).add(ident)

    def drop_field(self, name: str) -> None:
        """An admin removed a custom field: its values are gone."""
        self.indexes.pop(name, None)
        for values in self.persons.values():
            values.pop(name, None)

    # ----- reads
    def find(self, name: str, value: Any) -> list[int]:
        if name == "id":
            key = lookup_key(self.schema.get("id"), value)
            return [key] if key in self.persons else []
        key = lookup_key(self.schema.get(name), value)
        if key is None:
            return []
        return sorted(self._index(name).get(key, ()))

    def view(self, ident: int) -> dict[str, Any]:
        """A person as Marketo shows it: a linked company's values replace the person's own company fields."""
        values = self.persons[ident]
        key = values.get("externalCompanyId")
        company = self.company_of(key) if key is not None else None
        if company is None:
            return values
        return {**values, **{name: company.get(name) for name in COMPANY_FIELDS}}

    def render(self, ident: int, fields: Sequence[str], omit_nulls: bool = False) -> dict[str, Any]:
        """A person as the REST API returns it: `id` whatever `fields` asks for (Marketo always sends it), and
        with `omit_nulls` no null fields (Adobe: a requested field that is not returned is null)."""
        values = self.view(ident)
        rendered = {"id": ident} | {name: values.get(name) for name in fields}
        if omit_nulls:
            return {name: value for name, value in rendered.items() if value is not None}
        return rendered

    def check_fields(self, fields: Iterable[str]) -> None:
        for name in fields:
            if name not in self.schema.fields:
                raise RequestError("1006", f"Field '{name}' not found")

    def check_filter_type(self, filter_type: str) -> FieldDef:
        definition = self.schema.get(filter_type)
        if definition is None:
            raise RequestError("1006", f"Field '{filter_type}' not found")
        if not definition.searchable:
            raise RequestError("1011", f"Field '{filter_type}' not supported")
        return definition

    def filter(self, filter_type: str, values: Sequence[str], limit: int) -> list[int]:
        self.check_filter_type(filter_type)
        found: set[int] = set()
        for value in values:
            found.update(self.find(filter_type, value))
            if len(found) > limit:
                raise RequestError("1003", "Too many results match the filter")
        return sorted(found)

    def partition(self, name: str | None) -> Partition | None:
        wanted = name or "Default"
        return next((item for item in self.partitions if item.name.lower() == wanted.lower()), None)

    def display_name(self, ident: int) -> str:
        values = self.persons.get(ident, {})
        name = " ".join(str(values[key]) for key in ("firstName", "lastName") if values.get(key))
        return name or str(values.get("email") or ident)

    # ----- writes
    def _validate(self, record: dict[str, Any], allow_id: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Coerced values to write, or a skipped result."""
        clean: dict[str, Any] = {}
        fields = self.schema.fields
        for name, value in record.items():
            definition = fields.get(name)
            if definition is None:
                return {}, skipped("1006", f"Field '{name}' not found")
            if name == "id":
                if not allow_id:
                    return {}, skipped("1003", "Field 'id' is only allowed with action 'updateOnly'")
                continue
            if name in SYSTEM_FIELDS or definition.read_only:
                continue  # (unverified) system-managed values in input are ignored
            try:
                clean[name] = coerce(definition, value)
            except InvalidValue as problem:
                return {}, skipped(problem.code, problem.message)
        return clean, None

    def create(
        self,
        values: dict[str, Any],
        source: ChangeSource = API,
        partition: Partition | None = None,
        at: float | None = None,
        created_at: float | None = None,
        quiet: bool = False,
    ) -> int:
        """A new person; quiet=True skips the New Lead activity (seeded persons that predate every token)."""
        now = self.clock.now() if at is None else at
        ident = self.next_id
        self.next_id += 1
        stored = {key: value for key, value in values.items() if value is not None}
        stored["id"] = ident
        stored["createdAt"] = iso(created_at if created_at is not None else now)
        stored["updatedAt"] = iso(now)
        stored["leadPartitionId"] = (partition or self.partitions[0]).id
        self.persons[ident] = stored
        for name in self.indexes:
            value = stored.get(name)
            if value is not None:
                self._reindex(ident, name, value)
        if quiet:
            return ident
        attributes = (
            ("Source Type", source.source),
            ("API Method Name", source.api_method),
            ("Form Name", source.form_name),
            ("Lead Source", stored.get("leadSource")),
            ("Modifying User", source.user),
            ("Created Date", stored["createdAt"][:10]),
        )
        self.log.append(ident, now, NEW_LEAD, attributes=attributes)
        return ident

    def update(self, ident: int, values: dict[str, Any], source: ChangeSource = API, at: float | None = None) -> int:
        """Apply changed values; one Change Data Value activity per changed field. Returns the number changed."""
        now = self.clock.now() if at is None else at
        stored = self.persons[ident]
        changed = 0
        for name, value in values.items():
            old = stored.get(name)
            if old == value and type(old) is type(value):
                continue
            if old is not None:
                self._unindex(ident, name, old)
            if value is None:
                stored.pop(name, None)
            else:
                stored[name] = value
                self._reindex(ident, name, value)
            definition = self.schema.fields[name]
            self.log.append(
                ident,
                now,
                CHANGE_DATA_VALUE,
                primary_id=definition.id,
                primary_value=definition.display_name,
                field_id=definition.id,
                field=name,
                new_value=activity_text(value),
                old_value=activity_text(old),
                attributes=(
                    ("Reason", source.reason),
                    ("Source", source.source),
                    ("API Method Name", source.api_method),
                    ("Modifying User", source.user),
                ),
            )
            changed += 1
        if changed:
            stored["updatedAt"] = iso(now)
        return changed

    def sync(
        self,
        records: Sequence[Any],
        action: str = "createOrUpdate",
        lookup_field: str = "email",
        partition_name: str | None = None,
        source: ChangeSource = API,
        at: float | None = None,
    ) -> list[dict[str, Any]]:
        """Sync Leads: one result per input record, in input order. `at`: when it happened, if not now (a bulk
        import's row, stamped with the moment the job processed it)."""
        if action not in ACTIONS:
            raise RequestError("1003", f"Invalid action '{action}'; one of {', '.join(ACTIONS)}")
        lookup = self.schema.get(lookup_field)
        if lookup is None:
            raise RequestError("1006", f"Field '{lookup_field}' not found")
        if not lookup.searchable:
            raise RequestError("1011", f"Field '{lookup_field}' not supported")
        partition = self.partition(partition_name)
        results: list[dict[str, Any]] = []
        for record in records:
            if partition is None:
                results.append(skipped("1008", f"Access denied to partition '{partition_name}'"))
                continue
            if not isinstance(record, dict):
                results.append(skipped("1003", "Invalid data"))
                continue
            results.append(self._sync_one(record, action, lookup_field, partition, source, at))
        return results

    def _sync_one(
        self,
        record: dict[str, Any],
        action: str,
        lookup_field: str,
        partition: Partition,
        source: ChangeSource,
        at: float | None = None,
    ) -> dict[str, Any]:
        values, problem = self._validate(record, allow_id=action == "updateOnly")
        if problem is not None:
            return problem
        if action == "createDuplicate":
            return self._create_linked(values, source, partition, at)
        lookup_value = record.get(lookup_field)
        if lookup_value is None or lookup_value == "":
            if action == "updateOnly":
                return skipped("1003", f"Value for lookup field '{lookup_field}' not found")
            if action == "createOrUpdate" and lookup_field != "email":
                return skipped("1003", f"Value for lookup field '{lookup_field}' not found")  # (unverified)
            return self._create_linked(values, source, partition, at)
        matches = self.find(lookup_field, lookup_value)
        if len(matches) > 1:
            return skipped("1007", "Multiple leads match the lookup criteria")
        if matches:
            if action == "createOnly":
                return skipped("1005", "Lead already exists")
            stored = self.persons[matches[0]]
            if values.get("externalCompanyId", "") is None and self.company_of(stored.get("externalCompanyId")):
                # A person leaves a company only by joining another (Adobe, companies.md): a null link is ignored.
                del values["externalCompanyId"]
            problem = self._company_update(values, stored.get("externalCompanyId"))
            if problem is not None:
                return problem
            self.update(matches[0], values, source, at=at)
            return {"id": matches[0], "status": "updated"}
        if action == "updateOnly":
            return skipped("1004", "Lead not found")
        if lookup_field == "id":
            return skipped("1004", "Lead not found")
        return self._create_linked(values, source, partition, at)

    def _company_update(self, values: dict[str, Any], current_company: Any) -> dict[str, Any] | None:
        """1021 when the record writes company fields of a person that is, or becomes, linked to a company.

        Adobe documents 1021 "Company update not allowed" for syncLead, and that a linked person takes its company
        fields from the company; so any company field in the record is refused, even null or an equal value."""
        key = values.get("externalCompanyId", current_company)
        if key is None or self.company_of(key) is None:
            return None
        if any(name in values for name in COMPANY_FIELDS):
            return skipped("1021", "Company update not allowed")
        return None

    def _create_linked(
        self, values: dict[str, Any], source: ChangeSource, partition: Partition, at: float | None = None
    ) -> dict[str, Any]:
        problem = self._company_update(values, None)
        if problem is not None:
            return problem
        return {"id": self.create(values, source, partition, at=at), "status": "created"}

    def delete(self, ident: int, source: ChangeSource = API, at: float | None = None) -> bool:
        if ident not in self.persons:
            return False
        now = self.clock.now() if at is None else at
        name = self.display_name(ident)
        stored = self.persons.pop(ident)
        for key, value in stored.items():
            self._unindex(ident, key, value)
        self.deleted[ident] = now
        self.log.append(
            ident,
            now,
            DELETE_LEAD,
            primary_id=ident,
            primary_value=name,
            attributes=(("Source", source.source),),
        )
        return True

    def merge(self, winner: int, losers: Sequence[int], source: ChangeSource = API) -> None:
        """The winner keeps its values and takes the losers' values for its empty fields (unverified rule);
        the losers' activities move to the winner; the losers vanish without a Delete Lead activity."""
        if winner not in self.persons:
            raise RequestError("1004", f"Lead '{winner}' not found")
        for loser in losers:
            if loser not in self.persons or loser == winner:
                raise RequestError("1004", f"Lead '{loser}' not found")
        now = self.clock.now()
        fill: dict[str, Any] = {}
        for loser in losers:
            for name, value in self.persons[loser].items():
                if name in SYSTEM_FIELDS or value is None:
                    continue
                if self.persons[winner].get(name) is None and name not in fill:
                    fill[name] = value
        for loser in losers:
            stored = self.persons.pop(loser)
            for key, value in stored.items():
                self._unindex(loser, key, value)
            self.log.move_lead(loser, winner)
        merge_source = ChangeSource(source.source, "Merge leads", source.api_method, source.user)
        self.update(winner, fill, merge_source, at=now)
        self.log.append(
            winner,
            now,
            MERGE_LEADS,
            primary_id=winner,
            primary_value=self.display_name(winner),
            attributes=(
                ("Merge IDs", ",".join(str(loser) for loser in losers)),
                ("Merge Source", source.source),
                ("Merged in Sales", False),
                ("Master Updated", bool(fill)),
            ),
        )
