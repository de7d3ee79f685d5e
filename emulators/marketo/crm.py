"""CRM objects (companies, opportunities, opportunity roles, sales persons) and custom objects, in memory.

Every object type has an idField (`id`, a number, or `marketoGUID`), dedupeFields (the natural key, possibly
compound), searchableFields and fields. Custom object types come from configuration: EmulatorOptions.extra
["marketo_custom_objects"] (a list of specs), or POST /_emulator/schema/customobjects at run time. One type ships by
default: `product_c`, a product linked to companies by externalCompanyId.
The spec of a custom object type is described in crm_types.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulators.marketo.clock import Clock, iso
from emulators.marketo.crm_types import (
    DEFAULT_CUSTOM_OBJECTS,
    MAX_CUSTOM_TYPES,
    SYSTEM,
    ObjectType,
    custom_type,
    standard_types,
)
from emulators.marketo.errors import RequestError, skipped
from emulators.marketo.schema import InvalidValue, coerce, lookup_key

if TYPE_CHECKING:
    from emulators.marketo.persons import PersonStore


@dataclass
class ObjectStore:
    kind: ObjectType
    clock: Clock
    records: dict[Any, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    indexes: dict[str, dict[Any, set[Any]]] = field(default_factory=dict)
    next_id: int = 1

    def _key(self, values: dict[str, Any]) -> tuple[Any, ...] | None:
        key = []
        for name in self.kind.dedupe_fields:
            value = values.get(name)
            if value is None or value == "":
                return None
            key.append(lookup_key(self.kind.fields[name], value))
        return tuple(key)

    def _index(self, name: str) -> dict[Any, set[Any]]:
        index = self.indexes.get(name)
        if index is None:
            definition = self.kind.fields.get(name)
            index = {}
            for ident, values in self.records.items():
                key = lookup_key(definition, values.get(name))
                if key is not None:
                    index.setdefault(key, set()).add(ident)
            self.indexes[name] = index
        return index

    def _set(self, ident: Any, name: str, old: Any, new: Any) -> None:
        index = self.indexes.get(name)
        if index is None:
            return
        definition = self.kind.fields.get(name)
        if old is not None:
            members = index.get(lookup_key(definition, old))
            if members is not None:
                members.discard(ident)
        if new is not None:
            index.setdefault(lookup_key(definition, new), set()).add(ident)

    def find(self, name: str, value: Any) -> list[Any]:
        if name == self.kind.id_field:
            key = lookup_key(self.kind.fields[name], value) if self.kind.numeric_id else str(value)
            return [key] if key in self.records else []
        key = lookup_key(self.kind.fields.get(name), value)
        return sorted(self._index(name).get(key, ()), key=str)

    def output(self, ident: Any, fields: Sequence[str], seq: int) -> dict[str, Any]:
        values = self.records[ident]
        return {"seq": seq, **{name: values.get(name) for name in fields}}

    def _validate(self, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        clean: dict[str, Any] = {}
        for name, value in record.items():
            definition = self.kind.fields.get(name)
            if definition is None:
                return {}, skipped("1006", f"Field '{name}' not found")
            if name in SYSTEM or definition.read_only:
                continue
            try:
                clean[name] = coerce(definition, value)
            except InvalidValue as problem:
                return {}, skipped(problem.code, problem.message)
        return clean, None

    def _result(self, seq: int, ident: Any, status: str) -> dict[str, Any]:
        return {"seq": seq, "status": status, self.kind.id_field: ident}

    def upsert(self, ident: Any | None, values: dict[str, Any]) -> tuple[Any, str]:
        now = iso(self.clock.now())
        if ident is None:
            if self.kind.numeric_id:
                ident = self.next_id
                self.next_id += 1
            else:
                ident = str(uuid.uuid4())
            stored = {self.kind.id_field: ident, "createdAt": now, "updatedAt": now}
            self.records[ident] = stored
            for name, value in values.items():
                if value is not None:
                    stored[name] = value
                    self._set(ident, name, None, value)
            self._set(ident, self.kind.id_field, None, ident)
            key = self._key(stored)
            if key is not None:
                self.by_key[key] = ident
            return ident, "created"
        stored = self.records[ident]
        old_key = self._key(stored)
        for name, value in values.items():
            old = stored.get(name)
            if value is None:
                stored.pop(name, None)
            else:
                stored[name] = value
            self._set(ident, name, old, value)
        stored["updatedAt"] = now
        new_key = self._key(stored)
        if old_key != new_key:
            if old_key is not None:
                self.by_key.pop(old_key, None)
            if new_key is not None:
                self.by_key[new_key] = ident
        return ident, "updated"

    def remove(self, ident: Any) -> None:
        stored = self.records.pop(ident)
        key = self._key(stored)
        if key is not None:
            self.by_key.pop(key, None)
        for name, value in stored.items():
            self._set(ident, name, value, None)


class CrmStore:
    def __init__(self, clock: Clock, custom_objects: Any = None) -> None:
        self.clock = clock
        self.types: dict[str, ObjectType] = {}
        self.stores: dict[str, ObjectStore] = {}
        for kind in standard_types(clock):
            self._add(kind)
        specs = DEFAULT_CUSTOM_OBJECTS if custom_objects is None else custom_objects
        for spec in specs:
            self.define_custom(spec)

    def _add(self, kind: ObjectType) -> None:
        self.types[kind.name] = kind
        self.stores[kind.name] = ObjectStore(kind, self.clock)

    def define_custom(self, spec: dict[str, Any]) -> ObjectType:
        kind = custom_type(spec, self.clock)
        customs = [item for item in self.types.values() if item.custom and item.name != kind.name]
        if len(customs) >= MAX_CUSTOM_TYPES:
            raise ValueError(f"at most {MAX_CUSTOM_TYPES} custom object types")
        if kind.name in self.types and not self.types[kind.name].custom:
            raise ValueError(f"{kind.name!r} is a standard object")
        self._add(kind)
        return kind

    def remove_custom(self, name: str) -> None:
        kind = self.types.get(name)
        if kind is None or not kind.custom:
            raise KeyError(f"no custom object type {name!r}")
        del self.types[name]
        del self.stores[name]

    def custom_types(self) -> list[ObjectType]:
        return [kind for kind in self.types.values() if kind.custom]

    def store(self, name: str, custom: bool = False) -> ObjectStore:
        kind = self.types.get(name)
        if kind is None or kind.custom != custom:
            raise RequestError("1003", f"Object '{name}' not found")  # (unverified) code
        return self.stores[name]

    def company(self, external_id: Any) -> dict[str, Any] | None:
        """The company whose externalCompanyId this is, or None."""
        store = self.stores["companies"]
        key = store._key({"externalCompanyId": external_id})
        ident = store.by_key.get(key) if key is not None else None
        return store.records.get(ident) if ident is not None else None

    def counts(self) -> dict[str, int]:
        return {name: len(store.records) for name, store in self.stores.items()}

    # ----- operations shared by every object type
    def sync(
        self,
        store: ObjectStore,
        records: Sequence[Any],
        action: str,
        dedupe_by: str,
        persons: dict[int, Any],
    ) -> list[dict[str, Any]]:
        if action not in ("createOrUpdate", "createOnly", "updateOnly"):
            raise RequestError("1003", f"Invalid action '{action}'")
        if dedupe_by not in ("dedupeFields", "idField"):
            raise RequestError("1003", f"Invalid dedupeBy '{dedupe_by}'")
        if dedupe_by == "idField" and action != "updateOnly":
            raise RequestError("1003", "dedupeBy 'idField' is only allowed with action 'updateOnly'")
        kind = store.kind
        seen: set[Any] = set()
        results: list[dict[str, Any]] = []
        for seq, record in enumerate(records):
            if not isinstance(record, dict):
                results.append({"seq": seq, **skipped("1003", "Invalid data")})
                continue
            values, problem = store._validate(record)
            if problem is not None:
                results.append({"seq": seq, **problem})
                continue
            if dedupe_by == "idField":
                raw = record.get(kind.id_field)
                if raw is None:
                    results.append({"seq": seq, **skipped("1003", f"Value for field '{kind.id_field}' not found")})
                    continue
                found = store.find(kind.id_field, raw)
                key: Any = ("id", found[0] if found else raw)
            else:
                merged = {**values}
                key = store._key(merged)
                if key is None:
                    missing = next(name for name in kind.dedupe_fields if merged.get(name) in (None, ""))
                    results.append({"seq": seq, **skipped("1003", f"Value for required field '{missing}' not found")})
                    continue
                existing = store.by_key.get(key)
                found = [existing] if existing is not None else []
            if key in seen:
                results.append({"seq": seq, **skipped("1036", "Duplicate object found in input")})
                continue
            seen.add(key)
            problem = self._references(kind, values, persons)
            if problem is not None:
                results.append({"seq": seq, **problem})
                continue
            if found and action == "createOnly":
                results.append({"seq": seq, **skipped("1005", f"{kind.display_name} already exists")})
                continue
            if not found and action == "updateOnly":
                results.append({"seq": seq, **skipped("1013", "Record not found")})
                continue
            ident, status = store.upsert(found[0] if found else None, values)
            results.append(store._result(seq, ident, status))
        return results

    def _references(self, kind: ObjectType, values: dict[str, Any], persons: dict[int, Any]) -> dict[str, Any] | None:
        """Links Marketo checks (unverified which): a role's person and opportunity, a sales person link."""
        if kind.name == "opportunities/roles":
            lead = values.get("leadId")
            if lead is not None and lead not in persons:
                return skipped("1004", "Lead not found")
            opportunity = values.get("externalOpportunityId")
            opportunities = self.stores["opportunities"]
            if opportunity is not None and not opportunities.find("externalOpportunityId", opportunity):
                return skipped("1013", "Opportunity not found")
        sales_person = values.get("externalSalesPersonId")
        linked = kind.name in ("opportunities", "companies") and sales_person is not None
        if linked and not self.stores["salespersons"].find("externalSalesPersonId", sales_person):
            return skipped("718", "ExternalSalesPersonID not found")
        return None

    def query(
        self,
        store: ObjectStore,
        filter_type: str,
        values: Sequence[Any],
        fields: Sequence[str] | None,
        max_batch: int,
    ) -> list[dict[str, Any]]:
        kind = store.kind
        wanted = list(fields) if fields else kind.default_fields()
        for name in wanted:
            if name not in kind.fields:
                raise RequestError("1006", f"Field '{name}' not found")
        if len(values) > max_batch:
            raise RequestError("1003", f"Too many filterValues: {len(values)}, max {max_batch}")
        result: list[dict[str, Any]] = []
        if filter_type == "dedupeFields":
            for seq, item in enumerate(values):
                if not isinstance(item, dict):
                    raise RequestError("1003", "input must hold objects with the dedupe fields")
                key = store._key({name: item.get(name) for name in kind.dedupe_fields})
                ident = store.by_key.get(key) if key is not None else None
                if ident is not None:
                    result.append(store.output(ident, wanted, seq))
            return result
        name = kind.id_field if filter_type == "idField" else filter_type
        if [name] not in kind.searchable and name != kind.id_field:
            raise RequestError("1003", f"Invalid filterType '{filter_type}'")
        for seq, value in enumerate(values):
            for ident in store.find(name, value):
                result.append(store.output(ident, wanted, seq))
        return result

    def _in_use(self, kind: ObjectType, values: dict[str, Any], persons: PersonStore) -> bool:
        """Whether other records point at this sales person or company (then Marketo refuses the delete)."""
        if kind.name == "salespersons":
            field_name = "externalSalesPersonId"
            others = ["companies", "opportunities"]
        elif kind.name == "companies":
            # (unverified) Adobe documents 1022 for objects in use; a company's persons and opportunities use it.
            field_name = "externalCompanyId"
            others = ["opportunities"]
            others += [
                other.name
                for other in self.custom_types()
                if any((r.get("relatedTo") or {}).get("name") == "Company" for r in other.relationships or ())
            ]
        else:
            return False
        key = values.get(field_name)
        if key is None:
            return False
        if persons.find(field_name, key):
            return True
        return any(self.stores[name].find(field_name, key) for name in others if field_name in self.types[name].fields)

    def delete(
        self, store: ObjectStore, records: Sequence[Any], delete_by: str, persons: PersonStore
    ) -> list[dict[str, Any]]:
        kind = store.kind
        if delete_by not in ("dedupeFields", "idField"):
            raise RequestError("1003", f"Invalid deleteBy '{delete_by}'")
        results = []
        for seq, record in enumerate(records):
            if not isinstance(record, dict):
                results.append({"seq": seq, **skipped("1003", "Invalid data")})
                continue
            if delete_by == "idField":
                found = store.find(kind.id_field, record.get(kind.id_field))
                ident = found[0] if found else None
            else:
                key = store._key({name: record.get(name) for name in kind.dedupe_fields})
                ident = store.by_key.get(key) if key is not None else None
            if ident is None:
                results.append({"seq": seq, **skipped("1013", "Object not found")})
                continue
            if self._in_use(kind, store.records[ident], persons):
                results.append({"seq": seq, **skipped("1022", "Object in use")})
                continue
            store.remove(ident)
            results.append(store._result(seq, ident, "deleted"))
        return results
