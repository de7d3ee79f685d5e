"""Table metadata (EntityDefinitions) parsed into TableMetadata. Pure: JSON in, models out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sync.connectors.dynamics.models import AlternateKey, ColumnMetadata, TableMetadata
from sync.connectors.dynamics.odata import odata_identifier, odata_literal

DEFINITION_SELECT = "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled,MetadataId"
# The metadata cast that carries the option set, by AttributeType.
OPTION_SET_CASTS = {
    "Picklist": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
    "State": "Microsoft.Dynamics.CRM.StateAttributeMetadata",
    "Status": "Microsoft.Dynamics.CRM.StatusAttributeMetadata",
    "Boolean": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
    "MultiSelectPicklist": "Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata",
}


def definition_path(logical_name: str) -> str:
    return f"EntityDefinitions(LogicalName={odata_literal(odata_identifier(logical_name))})"


def table_from_definition(definition: Mapping[str, Any]) -> TableMetadata:
    return TableMetadata(
        logical_name=definition["LogicalName"],
        entity_set_name=definition["EntitySetName"],
        primary_id_attribute=definition["PrimaryIdAttribute"],
        primary_name_attribute=definition.get("PrimaryNameAttribute"),
        change_tracking=bool(definition.get("ChangeTrackingEnabled")),
    )


def _managed_bool(value: Any, default: bool = True) -> bool:
    """Metadata flags come as plain booleans or as BooleanManagedProperty {"Value": bool}."""
    if isinstance(value, Mapping):
        value = value.get("Value")
    return default if value is None else bool(value)


def column_from_attribute(attribute: Mapping[str, Any]) -> ColumnMetadata:
    required = attribute.get("RequiredLevel")
    if isinstance(required, Mapping):
        required = required.get("Value")
    attribute_type = str(attribute.get("AttributeType") or "")
    type_name = attribute.get("AttributeTypeName")
    if isinstance(type_name, Mapping) and type_name.get("Value") == "MultiSelectPicklistType":
        attribute_type = "MultiSelectPicklist"
    column = ColumnMetadata(
        name=attribute["LogicalName"],
        type=attribute_type,
        max_length=attribute.get("MaxLength"),
        required_level=str(required or "None"),
        valid_for_create=_managed_bool(attribute.get("IsValidForCreate")),
        valid_for_update=_managed_bool(attribute.get("IsValidForUpdate")),
        targets=list(attribute.get("Targets") or []),
    )
    if attribute.get("OptionSet"):
        column.options = options_from_option_set(attribute["OptionSet"])
    return column


def options_from_option_set(option_set: Mapping[str, Any]) -> dict[int, str]:
    """value -> label from an OptionSet; Two Options sets carry TrueOption/FalseOption instead of Options."""
    options: Iterable[Any] = option_set.get("Options") or [
        o for o in (option_set.get("FalseOption"), option_set.get("TrueOption")) if o
    ]
    return {int(option["Value"]): _label(option.get("Label")) for option in options}


def _label(label: Any) -> str:
    if not isinstance(label, Mapping):
        return str(label or "")
    user = label.get("UserLocalizedLabel")
    if isinstance(user, Mapping) and user.get("Label") is not None:
        return str(user["Label"])
    localized = label.get("LocalizedLabels") or []
    return str(localized[0].get("Label", "")) if localized else ""


def keys_from_json(rows: Iterable[Mapping[str, Any]]) -> list[AlternateKey]:
    return [AlternateKey(name=row["LogicalName"], columns=list(row.get("KeyAttributes") or [])) for row in rows]


def describe_table(
    definition: Mapping[str, Any],
    attributes: Iterable[Mapping[str, Any]],
    keys: Iterable[Mapping[str, Any]],
    option_sets: Mapping[str, dict[int, str]] | None = None,
) -> TableMetadata:
    table = table_from_definition(definition)
    table.columns = {c.name: c for c in map(column_from_attribute, attributes)}
    for name, options in (option_sets or {}).items():
        if name in table.columns and table.columns[name].options is None:
            table.columns[name].options = options
    table.keys = keys_from_json(keys)
    return table
