"""The object types: the four standard CRM objects, and custom object types built from their specs.

A custom object spec: {"name": "product_c", "displayName": "Product", "pluralName": "Products", "description": "..",
"dedupeFields": ["productCode"], "fields": [{"name": "productCode", "dataType": "string", "length": 36}, ..],
"relationships": [{"field": "externalCompanyId", "type": "parent",
"relatedTo": {"name": "Company", "field": "externalCompanyId"}}], "searchableFields": [["productCode"], ..]}.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from emulators.marketo.clock import Clock, iso
from emulators.marketo.schema import FieldDef

MAX_CUSTOM_TYPES = 10
MAX_CUSTOM_FIELDS = 50
SYSTEM = frozenset({"id", "marketoGUID", "createdAt", "updatedAt", "seq"})

DEFAULT_CUSTOM_OBJECTS: list[dict[str, Any]] = [
    {
        "name": "product_c",
        "displayName": "Product",
        "pluralName": "Products",
        "description": "A product an account owns (synced from a Dynamics custom entity)",
        "dedupeFields": ["productCode"],
        "fields": [
            {"name": "productCode", "displayName": "Product Code", "dataType": "string", "length": 36},
            {"name": "externalCompanyId", "displayName": "External Company Id", "dataType": "string"},
            {"name": "productName", "displayName": "Product Name", "dataType": "string"},
            {"name": "quantity", "displayName": "Quantity", "dataType": "integer"},
            {"name": "purchaseDate", "displayName": "Purchase Date", "dataType": "date"},
            {"name": "dynamicsId", "displayName": "Dynamics Id", "dataType": "string", "length": 36},
        ],
        "relationships": [
            {
                "field": "externalCompanyId",
                "type": "parent",
                "relatedTo": {"name": "Company", "field": "externalCompanyId"},
            }
        ],
        "searchableFields": [["productCode"], ["marketoGUID"], ["externalCompanyId"], ["dynamicsId"]],
    }
]


def _fields(specs: Sequence[tuple[str, str, str] | tuple[str, str, str, dict[str, Any]]]) -> dict[str, FieldDef]:
    result = {}
    for number, spec in enumerate(specs, start=1):
        name, display, kind = spec[0], spec[1], spec[2]
        extra = spec[3] if len(spec) > 3 else {}
        length = extra.get("length", 255) if kind in ("string", "text", "email", "phone", "url") else None
        result[name] = FieldDef(number, name, display, kind, length, read_only=extra.get("read_only", False))
    return result


RO = {"read_only": True}


@dataclass
class ObjectType:
    name: str  # the path name: companies, opportunities, opportunities/roles, salespersons, or a custom apiName
    display_name: str
    id_field: str
    dedupe_fields: list[str]
    searchable: list[list[str]]
    fields: dict[str, FieldDef]
    description: str = ""
    plural_name: str | None = None
    relationships: list[dict[str, Any]] | None = None
    custom: bool = False
    created_at: float = 0.0

    @property
    def numeric_id(self) -> bool:
        return self.id_field == "id"

    def meta(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.display_name if not self.custom else self.name}
        if self.custom:
            entry["displayName"] = self.display_name
            if self.plural_name:
                entry["pluralName"] = self.plural_name
        entry["description"] = self.description
        entry["createdAt"] = iso(self.created_at)
        entry["updatedAt"] = iso(self.created_at)
        entry["idField"] = self.id_field
        entry["dedupeFields"] = list(self.dedupe_fields)
        entry["searchableFields"] = [list(item) for item in self.searchable]
        if self.relationships is not None:
            entry["relationships"] = self.relationships
        return entry

    def describe(self) -> dict[str, Any]:
        return {**self.meta(), "fields": [definition.object_field() for definition in self.fields.values()]}

    def default_fields(self) -> list[str]:
        return [
            self.id_field,
            *[name for name in self.dedupe_fields if name != self.id_field],
            "createdAt",
            "updatedAt",
        ]


def standard_types(clock: Clock) -> list[ObjectType]:
    now = clock.now()
    stamp = [("createdAt", "Created At", "datetime", RO), ("updatedAt", "Updated At", "datetime", RO)]
    companies = ObjectType(
        "companies",
        "Company",
        "id",
        ["externalCompanyId"],
        [["externalCompanyId"], ["id"], ["company"]],
        _fields(
            [
                ("id", "Id", "integer", RO),
                ("externalCompanyId", "External Company Id", "string", {"length": 100}),
                ("company", "Company Name", "string"),
                ("website", "Website", "url"),
                ("mainPhone", "Main Phone", "phone"),
                ("annualRevenue", "Annual Revenue", "currency"),
                ("numberOfEmployees", "Num Employees", "integer"),
                ("industry", "Industry", "string"),
                ("sicCode", "SIC Code", "string"),
                ("billingStreet", "Billing Address", "text", {"length": 65535}),
                ("billingCity", "Billing City", "string"),
                ("billingState", "Billing State", "string"),
                ("billingCountry", "Billing Country", "string"),
                ("billingPostalCode", "Billing Postal Code", "string"),
                ("externalSalesPersonId", "External Sales Person Id", "string"),
                *stamp,
            ]
        ),
        "Company object",
        created_at=now,
    )
    sales = ObjectType(
        "salespersons",
        "SalesPerson",
        "id",
        ["externalSalesPersonId"],
        [["externalSalesPersonId"], ["id"], ["email"]],
        _fields(
            [
                ("id", "Id", "integer", RO),
                ("externalSalesPersonId", "External Sales Person Id", "string", {"length": 255}),
                ("email", "Email", "email"),
                ("firstName", "First Name", "string"),
                ("lastName", "Last Name", "string"),
                ("phone", "Phone", "phone"),
                ("mobilePhone", "Mobile Phone", "phone"),
                ("fax", "Fax", "phone"),
                ("title", "Title", "string"),
                *stamp,
            ]
        ),
        "Sales person object",
        created_at=now,
    )
    opportunities = ObjectType(
        "opportunities",
        "Opportunity",
        "marketoGUID",
        ["externalOpportunityId"],
        [["marketoGUID"], ["externalOpportunityId"], ["externalCompanyId"], ["externalSalesPersonId"]],
        _fields(
            [
                ("marketoGUID", "Marketo GUID", "string", {"length": 36, "read_only": True}),
                ("externalOpportunityId", "External Opportunity Id", "string", {"length": 50}),
                ("name", "Name", "string"),
                ("description", "Description", "text", {"length": 65535}),
                ("type", "Type", "string"),
                ("stage", "Stage", "string"),
                ("amount", "Amount", "currency"),
                ("expectedRevenue", "Expected Revenue", "currency"),
                ("probability", "Probability", "integer"),
                ("closeDate", "Close Date", "date"),
                ("isClosed", "Is Closed", "boolean"),
                ("isWon", "Is Won", "boolean"),
                ("forecastCategoryName", "Forecast Category Name", "string"),
                ("fiscalQuarter", "Fiscal Quarter", "integer"),
                ("fiscalYear", "Fiscal Year", "integer"),
                ("leadSource", "Lead Source", "string"),
                ("nextStep", "Next Step", "string"),
                ("lastActivityDate", "Last Activity Date", "date"),
                ("externalCompanyId", "External Company Id", "string", {"length": 100}),
                ("externalSalesPersonId", "External Sales Person Id", "string"),
                ("externalCreatedDate", "External Created Date", "datetime"),
                *stamp,
            ]
        ),
        "Opportunity object",
        created_at=now,
    )
    roles = ObjectType(
        "opportunities/roles",
        "Opportunity Role",
        "marketoGUID",
        ["externalOpportunityId", "leadId", "role"],
        [["marketoGUID"], ["externalOpportunityId", "leadId", "role"], ["leadId"], ["externalOpportunityId"]],
        _fields(
            [
                ("marketoGUID", "Marketo GUID", "string", {"length": 36, "read_only": True}),
                ("externalOpportunityId", "External Opportunity Id", "string", {"length": 50}),
                ("leadId", "Lead Id", "integer"),
                ("role", "Role", "string", {"length": 50}),
                ("isPrimary", "Is Primary", "boolean"),
                ("externalCreatedDate", "External Created Date", "datetime"),
                *stamp,
            ]
        ),
        "Opportunity role object",
        created_at=now,
    )
    return [companies, sales, opportunities, roles]


def custom_type(spec: dict[str, Any], clock: Clock) -> ObjectType:
    """A custom object type from its spec (see the module docstring), validated as Marketo's limits require."""
    name = str(spec.get("name") or "")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,49}", name):
        raise ValueError(f"invalid custom object name {name!r}")
    field_specs = spec.get("fields") or []
    if len(field_specs) > MAX_CUSTOM_FIELDS:
        raise ValueError(f"{name}: at most {MAX_CUSTOM_FIELDS} fields")
    fields: dict[str, FieldDef] = {
        "marketoGUID": FieldDef(1, "marketoGUID", "Marketo GUID", "string", 36, read_only=True),
        "createdAt": FieldDef(2, "createdAt", "Created At", "datetime", read_only=True),
        "updatedAt": FieldDef(3, "updatedAt", "Updated At", "datetime", read_only=True),
    }
    for number, item in enumerate(field_specs, start=4):
        field_name = str(item["name"])
        kind = str(item.get("dataType", "string"))
        length = item.get("length", 255) if kind in ("string", "text", "email", "phone", "url") else None
        fields[field_name] = FieldDef(
            number,
            field_name,
            str(item.get("displayName") or field_name),
            kind,
            length,
            description=item.get("description"),
        )
    dedupe = [str(item) for item in spec.get("dedupeFields") or []]
    if not dedupe or any(item not in fields for item in dedupe):
        raise ValueError(f"{name}: dedupeFields must name one or more of its fields")
    relationships = spec.get("relationships") or []
    for relation in relationships:
        if relation.get("field") not in fields:
            raise ValueError(f"{name}: relationship field {relation.get('field')!r} is not one of its fields")
    searchable = spec.get("searchableFields") or [
        list(dedupe),
        ["marketoGUID"],
        *[[relation["field"]] for relation in relationships],
    ]
    return ObjectType(
        name,
        str(spec.get("displayName") or name),
        "marketoGUID",
        dedupe,
        [[str(item) for item in entry] for entry in searchable],
        fields,
        str(spec.get("description") or ""),
        spec.get("pluralName"),
        relationships,
        custom=True,
        created_at=clock.now(),
    )
