"""`EntityDefinitions`: tables, their Attributes (typed, with OptionSets on $expand), Keys, ChangeTrackingEnabled,
EntitySetName and PrimaryIdAttribute, as the metadata Web API shapes them."""

from __future__ import annotations

import uuid
from typing import Any

from odata_query import ast

from emulators.dataverse import errors
from emulators.dataverse.odata import parse_filter, parse_guid, parse_key_segment
from emulators.dataverse.schema import CHOICE_TYPES, NAMESPACE, TYPE_INFO, Column, Table
from emulators.dataverse.webapi import ApiRequest, ApiResponse, _split_segment

ENTITY_PROPERTIES = [
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "LogicalCollectionName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ChangeTrackingEnabled",
    "IsCustomEntity",
    "ObjectTypeCode",
    "DisplayName",
    "DisplayCollectionName",
    "IsActivity",
    "OwnershipType",
    "IsValidForAdvancedFind",
    "IsIntersect",
    "CollectionSchemaName",
]
ATTRIBUTE_PROPERTIES = [
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "AttributeType",
    "AttributeTypeName",
    "EntityLogicalName",
    "IsCustomAttribute",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsValidForCreate",
    "IsValidForUpdate",
    "IsValidForRead",
    "RequiredLevel",
    "DisplayName",
    "AttributeOf",
    "ColumnNumber",
]
DERIVED_PROPERTIES = {
    "StringAttributeMetadata": ["MaxLength", "Format", "DatabaseLength"],
    "MemoAttributeMetadata": ["MaxLength", "Format"],
    "IntegerAttributeMetadata": ["MinValue", "MaxValue", "Format"],
    "BigIntAttributeMetadata": ["MinValue", "MaxValue"],
    "MoneyAttributeMetadata": ["MinValue", "MaxValue", "Precision"],
    "DecimalAttributeMetadata": ["MinValue", "MaxValue", "Precision"],
    "DoubleAttributeMetadata": ["MinValue", "MaxValue", "Precision"],
    "BooleanAttributeMetadata": ["DefaultValue", "OptionSet"],
    "DateTimeAttributeMetadata": ["Format", "DateTimeBehavior"],
    "PicklistAttributeMetadata": ["DefaultFormValue", "OptionSet", "GlobalOptionSet"],
    "StateAttributeMetadata": ["DefaultFormValue", "OptionSet"],
    "StatusAttributeMetadata": ["DefaultFormValue", "OptionSet"],
    "LookupAttributeMetadata": ["Targets", "Format"],
    "UniqueIdentifierAttributeMetadata": [],
}
NAV_ONLY = {"OptionSet", "GlobalOptionSet"}


def label(text: str) -> dict[str, Any]:
    localized = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": True,
        "MetadataId": str(uuid.uuid5(NAMESPACE, "label." + text)),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def _schema_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) if not name.startswith("new_") else name


class MetadataHandler:
    def __init__(self, tables: dict[str, Table]) -> None:
        self.tables = tables

    # --- shapes

    def entity(self, table: Table) -> dict[str, Any]:
        return {
            "MetadataId": table.metadata_id,
            "LogicalName": table.logical_name,
            "SchemaName": table.logical_name if table.custom else table.logical_name.title(),
            "EntitySetName": table.entity_set,
            "LogicalCollectionName": table.entity_set,
            "CollectionSchemaName": table.entity_set.title(),
            "PrimaryIdAttribute": table.primary_id,
            "PrimaryNameAttribute": table.primary_name,
            "ChangeTrackingEnabled": table.change_tracking,
            "IsCustomEntity": table.custom,
            "ObjectTypeCode": table.object_type_code,
            "DisplayName": label(table.display_name),
            "DisplayCollectionName": label(table.display_name + "s"),
            "IsActivity": False,
            "IsIntersect": table.read_only,
            "OwnershipType": "UserOwned" if "ownerid" in table.columns else "OrganizationOwned",
            "IsValidForAdvancedFind": True,
        }

    def attribute(self, table: Table, column: Column, expand: set[str]) -> dict[str, Any]:
        type_name = TYPE_INFO[column.type][0]
        out: dict[str, Any] = {
            "@odata.type": f"#Microsoft.Dynamics.CRM.{type_name}",
            "MetadataId": column.metadata_id(table.logical_name),
            "LogicalName": column.name,
            "SchemaName": _schema_name(column.name),
            "AttributeType": column.type,
            "AttributeTypeName": {"Value": f"{column.type}Type"},
            "EntityLogicalName": table.logical_name,
            "IsCustomAttribute": column.custom,
            "IsPrimaryId": column.name == table.primary_id,
            "IsPrimaryName": column.name == table.primary_name,
            "IsValidForCreate": not column.read_only,
            "IsValidForUpdate": not column.read_only and column.name != table.primary_id,
            "IsValidForRead": True,
            "RequiredLevel": {
                "Value": column.required,
                "CanBeChanged": column.required != "SystemRequired",
                "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
            },
            "DisplayName": label(column.display_name or column.name),
            "AttributeOf": None,
            "ColumnNumber": list(table.columns).index(column.name) + 1,
        }
        if type_name in ("StringAttributeMetadata", "MemoAttributeMetadata"):
            out["MaxLength"] = column.max_length
            out["Format"] = "Email" if column.name.startswith("emailaddress") else "Text"
            if type_name == "StringAttributeMetadata":
                out["DatabaseLength"] = (column.max_length or 0) * 2
        elif column.type in ("Integer", "BigInt"):
            bits = 63 if column.type == "BigInt" else 31
            out.update(MinValue=-(2**bits), MaxValue=2**bits - 1)
            if column.type == "Integer":
                out["Format"] = "None"
        elif column.type in ("Money", "Decimal", "Double"):
            out.update(MinValue=-922337203685477.0, MaxValue=922337203685477.0, Precision=2)
        elif column.type == "DateTime":
            out.update(Format="DateAndTime", DateTimeBehavior={"Value": "UserLocal"})
        elif column.is_lookup:
            out.update(Targets=list(column.targets), Format=None)
        elif column.type == "Boolean":
            out["DefaultValue"] = bool(column.default)
            if "OptionSet" in expand:
                out["OptionSet"] = {
                    "MetadataId": str(uuid.uuid5(NAMESPACE, f"bool.{table.logical_name}.{column.name}")),
                    "Name": f"{table.logical_name}_{column.name}",
                    "OptionSetType": "Boolean",
                    "IsGlobal": False,
                    "TrueOption": {"Value": 1, "Label": label("Yes")},
                    "FalseOption": {"Value": 0, "Label": label("No")},
                }
        elif column.type in CHOICE_TYPES:
            out["DefaultFormValue"] = column.default if column.default is not None else -1
            if "OptionSet" in expand:
                out["OptionSet"] = self.option_set(table, column)
            if "GlobalOptionSet" in expand and column.type == "Picklist":
                out["GlobalOptionSet"] = None
        return out

    def option_set(self, table: Table, column: Column) -> dict[str, Any]:
        options = []
        defaults: dict[int, int] = {}
        for status, state in (table.columns.get("statuscode", column).status_state or {}).items():
            defaults.setdefault(state, status)
        for value, text in (column.options or {}).items():
            option: dict[str, Any] = {
                "Value": value,
                "Label": label(text),
                "Description": label(""),
                "Color": None,
                "IsManaged": True,
                "ExternalValue": None,
                "ParentValues": [],
                "MetadataId": None,
                "HasChanged": None,
            }
            if column.type == "State":
                option.update(DefaultStatus=defaults.get(value), InvariantName=text.replace(" ", ""))
            if column.type == "Status":
                option["State"] = (column.status_state or {}).get(value)
            options.append(option)
        return {
            "MetadataId": str(uuid.uuid5(NAMESPACE, f"optionset.{table.logical_name}.{column.name}")),
            "Name": f"{table.logical_name}_{column.name}",
            "OptionSetType": column.type,
            "IsGlobal": False,
            "IsCustomOptionSet": column.custom,
            "Options": options,
        }

    def key(self, table: Table, name: str, columns: tuple[str, ...]) -> dict[str, Any]:
        return {
            "MetadataId": str(uuid.uuid5(NAMESPACE, f"key.{table.logical_name}.{name}")),
            "LogicalName": name,
            "SchemaName": name,
            "KeyAttributes": list(columns),
            "EntityLogicalName": table.logical_name,
            "EntityKeyIndexStatus": "Active",
            "DisplayName": label(name),
        }

    # --- routing

    def handle(self, request: ApiRequest, segments: list[str]) -> ApiResponse:
        if request.method != "GET":
            raise errors.method_not_allowed("Only GET is supported on metadata in this emulator.")
        name, key_text = _split_segment(segments[0])
        if name != "EntityDefinitions":
            raise errors.segment_not_found(name)
        base = f"{request.base}$metadata#EntityDefinitions"
        select = _select(request)
        expand = _expand(request)
        if key_text is None:
            if len(segments) > 1:
                raise errors.segment_not_found(segments[1])
            items = [self.entity(t) for t in self.tables.values()]
            items = [i for i in items if _matches(request, i)]
            values = [_project(i, select, ENTITY_PROPERTIES, "EntityMetadata") for i in items]
            return _json(_context(base, select), values)
        table = self._table(key_text)
        rest = segments[1:]
        if not rest:
            out = _project(self.entity(table), select, ENTITY_PROPERTIES, "EntityMetadata")
            if "Attributes" in expand:
                out["Attributes"] = [self.attribute(table, c, set()) for c in table.columns.values()]
            if "Keys" in expand:
                out["Keys"] = [self.key(table, n, c) for n, c in table.alternate_keys.items()]
            body = {"@odata.context": _context(base, select) + "/$entity", **out}
            return ApiResponse.json(200, body, operation="RetrieveMetadata", table=table.logical_name)
        entity_context = f"{base}({table.metadata_id})"
        attr_name, attr_key = _split_segment(rest[0])
        if attr_name == "Keys" and len(rest) == 1:
            keys = [self.key(table, n, c) for n, c in table.alternate_keys.items()]
            if attr_key is not None:
                keys = [k for k in keys if _key_matches(attr_key, k)]
                if not keys:
                    raise errors.DataverseFault(404, "0x80040217", "Could not find the key.")
                return _json(f"{entity_context}/Keys/$entity", keys[0], single=True)
            return _json(f"{entity_context}/Keys", [_project(k, select, list(k), "EntityKeyMetadata") for k in keys])
        if attr_name != "Attributes":
            raise errors.segment_not_found(attr_name)
        cast = rest[1] if len(rest) > 1 else None
        cast_type = None
        if cast is not None:
            cast_type = cast.removeprefix("Microsoft.Dynamics.CRM.")
            if cast_type not in DERIVED_PROPERTIES or len(rest) > 2:
                raise errors.segment_not_found(cast)
        allowed = ATTRIBUTE_PROPERTIES + (DERIVED_PROPERTIES[cast_type] if cast_type else [])
        columns = list(table.columns.values())
        if cast_type:
            columns = [c for c in columns if TYPE_INFO[c.type][0] == cast_type]
        for nav in expand:
            if nav not in allowed or nav not in NAV_ONLY:
                raise errors.no_property(f"Microsoft.Dynamics.CRM.{cast_type or 'AttributeMetadata'}", nav)
        if attr_key is not None:
            match = [
                c
                for c in table.columns.values()
                if _key_matches(attr_key, {"LogicalName": c.name, "MetadataId": c.metadata_id(table.logical_name)})
            ]
            if not match or (cast_type and TYPE_INFO[match[0].type][0] != cast_type):
                raise errors.DataverseFault(
                    404, "0x80040217", f"Could not find attribute '{attr_key}' on entity '{table.logical_name}'."
                )  # (unverified) text
            item = _project(self.attribute(table, match[0], expand), select, allowed, cast_type or "AttributeMetadata")
            context = f"{entity_context}/Attributes({match[0].metadata_id(table.logical_name)})"
            if cast_type:
                context += f"/Microsoft.Dynamics.CRM.{cast_type}"
            return _json(context + "/$entity", item, single=True)
        items = [self.attribute(table, c, expand) for c in columns]
        items = [i for i in items if _matches(request, i)]
        values = [_project(i, select, allowed, cast_type or "AttributeMetadata") for i in items]
        context = f"{entity_context}/Attributes" + (f"/Microsoft.Dynamics.CRM.{cast_type}" if cast_type else "")
        return _json(_context(context, select), values)

    def _table(self, key_text: str) -> Table:
        key = parse_key_segment(key_text)
        if isinstance(key, str):
            found = next((t for t in self.tables.values() if t.metadata_id == key), None)
        elif isinstance(key, dict) and set(key) == {"LogicalName"}:
            found = self.tables.get(str(key["LogicalName"]))
        else:
            raise errors.invalid_key("Microsoft.Dynamics.CRM.EntityMetadata")
        if found is None:
            # (unverified) text
            raise errors.DataverseFault(404, "0x80040217", f"Could not find an entity with specified key: {key_text}")
        return found


def _key_matches(key_text: str, item: dict[str, Any]) -> bool:
    key = parse_key_segment(key_text)
    if isinstance(key, str):
        return item.get("MetadataId") == key
    if isinstance(key, dict) and set(key) == {"LogicalName"}:
        return item.get("LogicalName") == key["LogicalName"]
    raise errors.invalid_key("Microsoft.Dynamics.CRM.AttributeMetadata")


def _select(request: ApiRequest) -> list[str] | None:
    text = request.query.get("$select")
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _expand(request: ApiRequest) -> set[str]:
    text = request.query.get("$expand", "")
    return {part.split("(")[0].strip() for part in text.split(",") if part.strip()}


def _project(item: dict[str, Any], select: list[str] | None, allowed: list[str], type_name: str) -> dict[str, Any]:
    if select is None:
        return item
    for name in select:
        if name not in allowed or name in NAV_ONLY:
            raise errors.no_property(f"Microsoft.Dynamics.CRM.{type_name}", name)
    keep = {"@odata.type", "MetadataId", *select, *NAV_ONLY, "Attributes", "Keys"}
    return {k: v for k, v in item.items() if k in keep}


def _context(base: str, select: list[str] | None) -> str:
    return base + (f"({','.join(select)})" if select else "")


def _json(context: str, value: Any, *, single: bool = False) -> ApiResponse:
    body = {"@odata.context": context, **value} if single else {"@odata.context": context, "value": value}
    return ApiResponse.json(200, body, operation="RetrieveMetadata")


def _matches(request: ApiRequest, item: dict[str, Any]) -> bool:
    text = request.query.get("$filter")
    if not text:
        return True
    return bool(_evaluate(parse_filter(text), item))


def _evaluate(node: ast._Node, item: dict[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        left = _evaluate(node.left, item)
        return (
            (left and _evaluate(node.right, item))
            if isinstance(node.op, ast.And)
            else (left or _evaluate(node.right, item))
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _evaluate(node.operand, item)
    if isinstance(node, ast.Compare):
        left, right = _evaluate(node.left, item), _evaluate(node.right, item)
        if isinstance(node.comparator, ast.Eq):
            return left == right
        if isinstance(node.comparator, ast.NotEq):
            return left != right
        raise errors.query_error("Only eq and ne are supported in metadata queries.")
    if isinstance(node, ast.Identifier):
        return item.get(node.name)
    if isinstance(node, ast.Attribute) and isinstance(node.owner, ast.Identifier):
        owner = item.get(node.owner.name)
        return owner.get(node.attr) if isinstance(owner, dict) else None
    if isinstance(node, ast.GUID):
        return parse_guid(node.val)
    if isinstance(node, ast._Literal):
        return node.py_val
    raise errors.query_error("This metadata query is not supported.")


def csdl(tables: dict[str, Table]) -> bytes:
    """`$metadata`: the CSDL document of the emulated tables (entity types, keys, properties, navigation)."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
        '<EntityType Name="crmbaseentity" Abstract="true"/>',
        '<EntityType Name="principal" BaseType="mscrm.crmbaseentity" Abstract="true"/>',
    ]
    for table in tables.values():
        base = "mscrm.principal" if table.logical_name in ("systemuser", "team") else "mscrm.crmbaseentity"
        lines.append(f'<EntityType Name="{table.logical_name}" BaseType="{base}">')
        lines.append(f'<Key><PropertyRef Name="{table.primary_id}"/></Key>')
        for column in table.columns.values():
            lines.append(f'<Property Name="{column.attribute}" Type="{column.edm_type}"/>')
        for nav, (_column, target) in table.nav_props.items():
            lines.append(f'<NavigationProperty Name="{nav}" Type="mscrm.{target}"/>')
        lines.append("</EntityType>")
    for action in ("CreateMultiple", "UpdateMultiple", "UpsertMultiple"):
        lines.append(f'<Action Name="{action}" IsBound="true"><Parameter Name="entityset" '
                     'Type="Collection(mscrm.crmbaseentity)" Nullable="false"/><Parameter Name="Targets" '
                     'Type="Collection(mscrm.crmbaseentity)" Nullable="false"/></Action>')  # fmt: skip
    lines.append('<EntityContainer Name="System">')
    for table in tables.values():
        lines.append(f'<EntitySet Name="{table.entity_set}" EntityType="Microsoft.Dynamics.CRM.{table.logical_name}">')
        for nav, (_column, target) in table.nav_props.items():
            if target in tables:
                lines.append(f'<NavigationPropertyBinding Path="{nav}" Target="{tables[target].entity_set}"/>')
        lines.append("</EntitySet>")
    lines += ["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"]
    return "\n".join(lines).encode()
