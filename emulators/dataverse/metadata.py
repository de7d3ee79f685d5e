"""`EntityDefinitions`: tables as the metadata Web API shapes them (EntityMetadata with its managed properties),
their Attributes (typed, with OptionSets on $expand), Keys and one-to-many relationships, with `$select`, `$filter`
and `$expand` (nested `$select`/`$filter` too) on the collection and on a single table."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from odata_query import ast

from emulators.dataverse import errors
from emulators.dataverse.odata import parse_filter, parse_guid, parse_key_segment, split_top_level
from emulators.dataverse.schema import CHOICE_TYPES, NAMESPACE, TYPE_INFO, Column, Table
from emulators.dataverse.webapi import ApiRequest, ApiResponse, _split_segment

# EntityMetadata properties that are BooleanManagedProperty objects ({"Value", "CanBeChanged", ...}).
ENTITY_MANAGED_PROPERTIES = [
    "CanBeInCustomEntityAssociation",
    "CanBeInManyToMany",
    "CanBePrimaryEntityInRelationship",
    "CanBeRelatedEntityInRelationship",
    "CanChangeHierarchicalRelationship",
    "CanChangeTrackingBeEnabled",
    "CanCreateAttributes",
    "CanCreateCharts",
    "CanCreateForms",
    "CanCreateViews",
    "CanEnableSyncToExternalSearchIndex",
    "CanModifyAdditionalSettings",
    "IsAuditEnabled",
    "IsConnectionsEnabled",
    "IsCustomizable",
    "IsDuplicateDetectionEnabled",
    "IsMailMergeEnabled",
    "IsMappable",
    "IsOfflineInMobileClient",
    "IsReadOnlyInMobileClient",
    "IsRenameable",
    "IsValidForQueue",
    "IsVisibleInMobile",
    "IsVisibleInMobileClient",
]
ENTITY_PROPERTIES = [
    "MetadataId",
    "HasChanged",
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "LogicalCollectionName",
    "CollectionSchemaName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "PrimaryImageAttribute",
    "ChangeTrackingEnabled",
    "IsCustomEntity",
    "IsManaged",
    "ObjectTypeCode",
    "DisplayName",
    "DisplayCollectionName",
    "Description",
    "IsActivity",
    "IsActivityParty",
    "ActivityTypeMask",
    "OwnershipType",
    "TableType",
    "IsValidForAdvancedFind",
    "IsIntersect",
    "IsPrivate",
    "IsLogicalEntity",
    "IsChildEntity",
    "IsBPFEntity",
    "IsStateModelAware",
    "EnforceStateTransitions",
    "IsOptimisticConcurrencyEnabled",
    "IsImportable",
    "IsAvailableOffline",
    "IsQuickCreateEnabled",
    "IsReadingPaneEnabled",
    "IsBusinessProcessEnabled",
    "IsDocumentManagementEnabled",
    "IsOneNoteIntegrationEnabled",
    "IsInteractionCentricEnabled",
    "IsKnowledgeManagementEnabled",
    "IsSLAEnabled",
    "IsDocumentRecommendationsEnabled",
    "IsMSTeamsIntegrationEnabled",
    "IsEnabledForCharts",
    "IsEnabledForTrace",
    "IsEnabledForExternalChannels",
    "IsAIRUpdated",
    "HasActivities",
    "HasNotes",
    "HasFeedback",
    "HasEmailAddresses",
    "AutoCreateAccessTeams",
    "AutoRouteToOwnerQueue",
    "CanTriggerWorkflow",
    "SyncToExternalSearchIndex",
    "UsesBusinessDataLabelTable",
    "DaysSinceRecordLastModified",
    "MobileOfflineFilters",
    "EntityHelpUrl",
    "EntityHelpUrlEnabled",
    "EntityColor",
    "IconLargeName",
    "IconMediumName",
    "IconSmallName",
    "IconVectorName",
    "ExternalName",
    "ExternalCollectionName",
    "DataProviderId",
    "DataSourceId",
    "RecurrenceBaseEntityLogicalName",
    "ReportViewName",
    "IntroducedVersion",
    "Privileges",
    *ENTITY_MANAGED_PROPERTIES,
]
ATTRIBUTE_MANAGED_PROPERTIES = [
    "CanModifyAdditionalSettings",
    "IsAuditEnabled",
    "IsCustomizable",
    "IsGlobalFilterEnabled",
    "IsRenameable",
    "IsSortableEnabled",
    "IsValidForAdvancedFind",
]
ATTRIBUTE_PROPERTIES = [
    "MetadataId",
    "HasChanged",
    "LogicalName",
    "SchemaName",
    "AttributeType",
    "AttributeTypeName",
    "EntityLogicalName",
    "IsCustomAttribute",
    "IsManaged",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsValidForCreate",
    "IsValidForUpdate",
    "IsValidForRead",
    "IsValidForForm",
    "IsValidForGrid",
    "IsRequiredForForm",
    "IsValidODataAttribute",
    "IsFilterable",
    "IsSearchable",
    "IsRetrievable",
    "IsSecured",
    "IsLogical",
    "IsDataSourceSecret",
    "CanBeSecuredForCreate",
    "CanBeSecuredForRead",
    "CanBeSecuredForUpdate",
    "RequiredLevel",
    "DisplayName",
    "Description",
    "AttributeOf",
    "ColumnNumber",
    "SourceType",
    "AutoNumberFormat",
    "ExternalName",
    "InheritsFrom",
    "LinkedAttributeId",
    "IntroducedVersion",
    "DeprecatedVersion",
    *ATTRIBUTE_MANAGED_PROPERTIES,
]
DERIVED_PROPERTIES = {
    "StringAttributeMetadata": ["MaxLength", "Format", "FormatName", "DatabaseLength", "IsLocalizable"],
    "MemoAttributeMetadata": ["MaxLength", "Format", "FormatName"],
    "IntegerAttributeMetadata": ["MinValue", "MaxValue", "Format"],
    "BigIntAttributeMetadata": ["MinValue", "MaxValue"],
    "MoneyAttributeMetadata": ["MinValue", "MaxValue", "Precision", "PrecisionSource"],
    "DecimalAttributeMetadata": ["MinValue", "MaxValue", "Precision"],
    "DoubleAttributeMetadata": ["MinValue", "MaxValue", "Precision"],
    "BooleanAttributeMetadata": ["DefaultValue", "OptionSet"],
    "DateTimeAttributeMetadata": ["Format", "DateTimeBehavior", "CanChangeDateTimeBehavior"],
    "PicklistAttributeMetadata": ["DefaultFormValue", "OptionSet", "GlobalOptionSet"],
    "StateAttributeMetadata": ["DefaultFormValue", "OptionSet"],
    "StatusAttributeMetadata": ["DefaultFormValue", "OptionSet"],
    "LookupAttributeMetadata": ["Targets", "Format"],
    "UniqueIdentifierAttributeMetadata": [],
}
NAV_ONLY = {"OptionSet", "GlobalOptionSet"}
KEY_PROPERTIES = [
    "MetadataId",
    "HasChanged",
    "LogicalName",
    "SchemaName",
    "KeyAttributes",
    "EntityLogicalName",
    "EntityKeyIndexStatus",
    "DisplayName",
    "IsManaged",
    "IsCustomizable",
    "IntroducedVersion",
    "IsSecondaryKey",
    "IsExportKey",
    "IsSynchronous",
]
# What every RelationshipMetadataBase has; one-to-many and many-to-many add their own below.
_RELATIONSHIP_BASE = [
    "MetadataId",
    "HasChanged",
    "SchemaName",
    "RelationshipType",
    "IsCustomRelationship",
    "IsManaged",
    "IsCustomizable",
    "IsValidForAdvancedFind",
    "IntroducedVersion",
    "SecurityTypes",
]
RELATIONSHIP_PROPERTIES = [
    *_RELATIONSHIP_BASE,
    "ReferencedAttribute",
    "ReferencedEntity",
    "ReferencingAttribute",
    "ReferencingEntity",
    "ReferencedEntityNavigationPropertyName",
    "ReferencingEntityNavigationPropertyName",
    "IsHierarchical",
    "EntityKey",
    "RelationshipBehavior",
    "IsRelationshipAttributeDenormalized",
    "DenormalizedAttributeName",
    "RelationshipAttributes",
    "CascadeConfiguration",
    "AssociatedMenuConfiguration",
]
MANY_TO_MANY_PROPERTIES = [
    *_RELATIONSHIP_BASE,
    "Entity1LogicalName",
    "Entity2LogicalName",
    "Entity1IntersectAttribute",
    "Entity2IntersectAttribute",
    "IntersectEntityName",
    "Entity1NavigationPropertyName",
    "Entity2NavigationPropertyName",
]
# EntityMetadata navigation property -> (type of its items, their properties)
ENTITY_NAVIGATION: dict[str, tuple[str, list[str]]] = {
    "Attributes": ("AttributeMetadata", ATTRIBUTE_PROPERTIES),
    "Keys": ("EntityKeyMetadata", KEY_PROPERTIES),
    "ManyToOneRelationships": ("OneToManyRelationshipMetadata", RELATIONSHIP_PROPERTIES),
    "OneToManyRelationships": ("OneToManyRelationshipMetadata", RELATIONSHIP_PROPERTIES),
    "ManyToManyRelationships": ("ManyToManyRelationshipMetadata", MANY_TO_MANY_PROPERTIES),
}
# The four Sales tables that have activities, notes, connections and quick create out of the box.
SALES_TABLES = frozenset({"lead", "contact", "account", "opportunity"})
SCHEMA_NAMES = {"systemuser": "SystemUser", "teammembership": "TeamMembership", "connectionrole": "ConnectionRole"}
PLURALS = {"opportunity": "Opportunities", "new_product": "Products (custom)"}
# Relationship schema names of a default Sales organization, by (referencing table, lookup column).
RELATIONSHIP_NAMES = {
    ("lead", "parentaccountid"): "lead_parent_account",
    ("lead", "parentcontactid"): "lead_parent_contact",
    ("lead", "qualifyingopportunityid"): "lead_qualifying_opportunity",
    ("contact", "originatingleadid"): "contact_originating_lead",
    ("account", "parentaccountid"): "account_parent_account",
    ("account", "primarycontactid"): "account_primary_contact",
    ("account", "originatingleadid"): "account_originating_lead",
    ("opportunity", "parentaccountid"): "opportunity_parent_account",
    ("opportunity", "parentcontactid"): "opportunity_parent_contact",
    ("opportunity", "originatingleadid"): "opportunity_originating_lead",
    ("team", "administratorid"): "lk_teambase_administratorid",
    ("connection", "record1roleid"): "connection_role_connections1",
    ("connection", "record2roleid"): "connection_role_connections2",
    ("connection", "relatedconnectionid"): "connection_related_connection",
    ("new_product", "new_accountid"): "new_account_new_product",
}
PRIVILEGE_TYPES = ["Create", "Read", "Write", "Delete", "Assign", "Share", "Append", "AppendTo"]
# An OData enum literal (Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'): the parser reads only its value.
ENUM_LITERAL = re.compile(r"\bMicrosoft\.Dynamics\.CRM\.[A-Za-z]+('(?:[^']|'')*')")


def label(text: str) -> dict[str, Any]:
    if not text:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    localized = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": True,
        "MetadataId": str(uuid.uuid5(NAMESPACE, "label." + text)),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def managed(name: str, value: bool, can_be_changed: bool) -> dict[str, Any]:
    """A BooleanManagedProperty as the Web API writes it."""
    return {"Value": value, "CanBeChanged": can_be_changed, "ManagedPropertyLogicalName": name.lower()}


def _schema_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) if not name.startswith("new_") else name


def entity_schema_name(table: Table) -> str:
    if table.custom:
        return table.logical_name
    return SCHEMA_NAMES.get(table.logical_name, table.logical_name.title())


@dataclass
class ExpandOption:
    nav: str
    select: list[str] | None = None
    filter: str | None = None


class MetadataHandler:
    def __init__(self, tables: dict[str, Table]) -> None:
        self.tables = tables

    # --- shapes

    def entity(self, table: Table) -> dict[str, Any]:
        schema_name = entity_schema_name(table)
        plural = PLURALS.get(table.logical_name, table.display_name + "s")
        sales = table.logical_name in SALES_TABLES
        standard = not table.custom
        if "ownerid" in table.columns:
            ownership = "UserOwned"
        elif table.logical_name in ("systemuser", "team"):
            ownership = "BusinessOwned"
        else:
            ownership = "None" if table.read_only else "OrganizationOwned"
        # Whether an admin may change the property: custom (unmanaged) tables yes, system tables mostly not.
        settings = {
            "CanBeInCustomEntityAssociation": (not table.read_only, table.custom),
            "CanBeInManyToMany": (not table.read_only, table.custom),
            "CanBePrimaryEntityInRelationship": (not table.read_only, table.custom),
            "CanBeRelatedEntityInRelationship": (not table.read_only, table.custom),
            "CanChangeHierarchicalRelationship": (True, True),
            "CanChangeTrackingBeEnabled": (True, table.custom),
            "CanCreateAttributes": (not table.read_only, table.custom),
            "CanCreateCharts": (not table.read_only, table.custom),
            "CanCreateForms": (not table.read_only, table.custom),
            "CanCreateViews": (not table.read_only, table.custom),
            "CanEnableSyncToExternalSearchIndex": (not table.read_only, True),
            "CanModifyAdditionalSettings": (True, True),
            "IsAuditEnabled": (sales, True),
            "IsConnectionsEnabled": (sales or table.logical_name in ("systemuser", "team"), table.custom),
            "IsCustomizable": (not table.read_only, table.custom),
            "IsDuplicateDetectionEnabled": (sales, True),
            "IsMailMergeEnabled": (sales, True),
            "IsMappable": (not table.read_only, False),
            "IsOfflineInMobileClient": (sales, True),
            "IsReadOnlyInMobileClient": (False, True),
            "IsRenameable": (not table.read_only, table.custom),
            "IsValidForQueue": (False, True),
            "IsVisibleInMobile": (sales, True),
            "IsVisibleInMobileClient": (sales, True),
        }
        out: dict[str, Any] = {
            "MetadataId": table.metadata_id,
            "HasChanged": None,
            "LogicalName": table.logical_name,
            "SchemaName": schema_name,
            "EntitySetName": table.entity_set,
            "LogicalCollectionName": table.entity_set,
            "CollectionSchemaName": schema_name + "s" if table.logical_name != "opportunity" else "Opportunities",
            "PrimaryIdAttribute": table.primary_id,
            "PrimaryNameAttribute": table.primary_name,
            "PrimaryImageAttribute": None,
            "ChangeTrackingEnabled": table.change_tracking,
            "IsCustomEntity": table.custom,
            "IsManaged": standard,
            "ObjectTypeCode": table.object_type_code,
            "DisplayName": label(table.display_name),
            "DisplayCollectionName": label(plural),
            "Description": label(""),
            "IsActivity": False,
            "IsActivityParty": sales or table.logical_name == "systemuser",
            "ActivityTypeMask": 0,
            "OwnershipType": ownership,
            "TableType": "Standard",
            "IsValidForAdvancedFind": not table.read_only,
            "IsIntersect": table.read_only,
            "IsPrivate": False,
            "IsLogicalEntity": False,
            "IsChildEntity": False,
            "IsBPFEntity": False,
            "IsStateModelAware": "statecode" in table.columns,
            "EnforceStateTransitions": False,
            "IsOptimisticConcurrencyEnabled": "versionnumber" in table.columns,
            "IsImportable": not table.read_only,
            "IsAvailableOffline": not table.read_only,
            "IsQuickCreateEnabled": sales,
            "IsReadingPaneEnabled": True,
            "IsBusinessProcessEnabled": sales,
            "IsDocumentManagementEnabled": False,
            "IsOneNoteIntegrationEnabled": False,
            "IsInteractionCentricEnabled": False,
            "IsKnowledgeManagementEnabled": False,
            "IsSLAEnabled": False,
            "IsDocumentRecommendationsEnabled": False,
            "IsMSTeamsIntegrationEnabled": False,
            "IsEnabledForCharts": not table.read_only,
            "IsEnabledForTrace": False,
            "IsEnabledForExternalChannels": False,
            "IsAIRUpdated": False,
            "HasActivities": sales,
            "HasNotes": sales,
            "HasFeedback": False,
            "HasEmailAddresses": any(c.startswith("emailaddress") for c in table.columns),
            "AutoCreateAccessTeams": False,
            "AutoRouteToOwnerQueue": False,
            "CanTriggerWorkflow": not table.read_only,
            "SyncToExternalSearchIndex": sales,
            "UsesBusinessDataLabelTable": False,
            "DaysSinceRecordLastModified": 0,
            "MobileOfflineFilters": "",
            "EntityHelpUrl": None,
            "EntityHelpUrlEnabled": False,
            "EntityColor": None,
            "IconLargeName": None,
            "IconMediumName": None,
            "IconSmallName": None,
            "IconVectorName": None,
            "ExternalName": None,
            "ExternalCollectionName": None,
            "DataProviderId": None,
            "DataSourceId": None,
            "RecurrenceBaseEntityLogicalName": None,
            "ReportViewName": f"Filtered{schema_name}",
            "IntroducedVersion": "1.0" if table.custom else "5.0.0.0",
            "Privileges": [self.privilege(table, kind) for kind in PRIVILEGE_TYPES],
        }
        for name, (value, can_be_changed) in settings.items():
            out[name] = managed(name, value, can_be_changed)
        return out

    def privilege(self, table: Table, kind: str) -> dict[str, Any]:
        scoped = "ownerid" in table.columns
        return {
            "CanBeBasic": scoped,
            "CanBeDeep": scoped,
            "CanBeGlobal": True,
            "CanBeLocal": scoped,
            "CanBeEntityReference": False,
            "CanBeParentEntityReference": False,
            "CanBeRecordFilter": False,
            "Name": f"prv{kind}{entity_schema_name(table)}",
            "PrivilegeId": str(uuid.uuid5(NAMESPACE, f"privilege.{table.logical_name}.{kind}")),
            "PrivilegeType": kind,
        }

    def attribute(self, table: Table, column: Column, expand: set[str]) -> dict[str, Any]:
        type_name = TYPE_INFO[column.type][0]
        primary = column.name in (table.primary_id, table.primary_name)
        can_change = column.custom
        out: dict[str, Any] = {
            "@odata.type": f"#Microsoft.Dynamics.CRM.{type_name}",
            "MetadataId": column.metadata_id(table.logical_name),
            "HasChanged": None,
            "LogicalName": column.name,
            "SchemaName": _schema_name(column.name),
            "AttributeType": column.type,
            "AttributeTypeName": {"Value": f"{column.type}Type"},
            "EntityLogicalName": table.logical_name,
            "IsCustomAttribute": column.custom,
            "IsManaged": not column.custom,
            "IsPrimaryId": column.name == table.primary_id,
            "IsPrimaryName": column.name == table.primary_name,
            "IsValidForCreate": not column.read_only,
            "IsValidForUpdate": not column.read_only and column.name != table.primary_id,
            "IsValidForRead": True,
            "IsValidForForm": column.name != table.primary_id,
            "IsValidForGrid": True,
            "IsRequiredForForm": column.required == "SystemRequired",
            "IsValidODataAttribute": True,
            "IsFilterable": True,
            "IsSearchable": True,
            "IsRetrievable": True,
            "IsSecured": False,
            "IsLogical": False,
            "IsDataSourceSecret": False,
            "CanBeSecuredForCreate": not primary and not column.read_only,
            "CanBeSecuredForRead": not primary,
            "CanBeSecuredForUpdate": not primary and not column.read_only,
            "RequiredLevel": {
                "Value": column.required,
                "CanBeChanged": column.required != "SystemRequired",
                "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
            },
            "DisplayName": label(column.display_name or column.name),
            "Description": label(""),
            "AttributeOf": None,
            "ColumnNumber": list(table.columns).index(column.name) + 1,
            "SourceType": 0,
            "AutoNumberFormat": None,
            "ExternalName": None,
            "InheritsFrom": None,
            "LinkedAttributeId": None,
            "IntroducedVersion": "1.0" if column.custom else "5.0.0.0",
            "DeprecatedVersion": None,
            "CanModifyAdditionalSettings": managed("CanModifyAdditionalSettings", True, True),
            "IsAuditEnabled": managed("IsAuditEnabled", True, True),
            "IsCustomizable": managed("IsCustomizable", True, can_change),
            "IsGlobalFilterEnabled": managed("IsGlobalFilterEnabled", False, True),
            "IsRenameable": managed("IsRenameable", True, can_change),
            "IsSortableEnabled": managed("IsSortableEnabled", False, True),
            "IsValidForAdvancedFind": managed("IsValidForAdvancedFind", True, can_change),
        }
        if type_name in ("StringAttributeMetadata", "MemoAttributeMetadata"):
            text_format = "Email" if column.name.startswith("emailaddress") else "Text"
            out["MaxLength"] = column.max_length
            out["Format"] = text_format
            out["FormatName"] = {"Value": text_format}
            if type_name == "StringAttributeMetadata":
                out["DatabaseLength"] = (column.max_length or 0) * 2
                out["IsLocalizable"] = False
        elif column.type in ("Integer", "BigInt"):
            bits = 63 if column.type == "BigInt" else 31
            out.update(MinValue=-(2**bits), MaxValue=2**bits - 1)
            if column.type == "Integer":
                out["Format"] = "None"
        elif column.type in ("Money", "Decimal", "Double"):
            out.update(MinValue=-922337203685477.0, MaxValue=922337203685477.0, Precision=2)
            if column.type == "Money":
                out["PrecisionSource"] = 2
        elif column.type == "DateTime":
            out.update(
                Format="DateAndTime",
                DateTimeBehavior={"Value": "UserLocal"},
                CanChangeDateTimeBehavior=managed("CanChangeDateTimeBehavior", column.custom, column.custom),
            )
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
            "HasChanged": None,
            "LogicalName": name,
            "SchemaName": name,
            "KeyAttributes": list(columns),
            "EntityLogicalName": table.logical_name,
            "EntityKeyIndexStatus": "Active",
            "DisplayName": label(name),
            "IsManaged": False,
            "IsCustomizable": managed("IsCustomizable", True, True),
            "IntroducedVersion": "1.0",
            "IsSecondaryKey": False,
            "IsExportKey": False,
            "IsSynchronous": False,
        }

    def relationships(self) -> list[dict[str, Any]]:
        """Every one-to-many relationship: one per lookup column and target table (an Owner column's is `owner`)."""
        found = []
        for table in self.tables.values():
            for column in table.columns.values():
                if not column.is_lookup:
                    continue
                for target in ("owner",) if column.type == "Owner" else column.targets:
                    found.append(self.relationship(table, column, target))
        return found

    def relationship(self, table: Table, column: Column, target: str) -> dict[str, Any]:
        name = _relationship_name(table, column, target)
        referenced = self.tables.get(target)
        system = column.name in ("createdby", "modifiedby", "ownerid")
        return {
            "MetadataId": str(uuid.uuid5(NAMESPACE, f"relationship.{name}")),
            "HasChanged": None,
            "SchemaName": name,
            "RelationshipType": "OneToManyRelationship",
            "IsCustomRelationship": column.custom,
            "IsManaged": not column.custom,
            "IsCustomizable": managed("IsCustomizable", not system, column.custom),
            "IsValidForAdvancedFind": True,
            "IntroducedVersion": "1.0" if column.custom else "5.0.0.0",
            "SecurityTypes": "None",
            "ReferencedAttribute": referenced.primary_id if referenced else f"{target}id",
            "ReferencedEntity": target,
            "ReferencingAttribute": column.name,
            "ReferencingEntity": table.logical_name,
            "ReferencedEntityNavigationPropertyName": name,
            "ReferencingEntityNavigationPropertyName": next(
                (nav for nav, nav_target in column.nav.items() if nav_target == target), column.name
            ),
            "IsHierarchical": column.name == "parentaccountid" and target == table.logical_name,
            "EntityKey": None,
            "RelationshipBehavior": 0,
            "IsRelationshipAttributeDenormalized": False,
            "DenormalizedAttributeName": None,
            "RelationshipAttributes": [],
            "CascadeConfiguration": {
                "Assign": "NoCascade",
                "Delete": "NoCascade" if system else "RemoveLink",
                "Archive": "NoCascade",
                "Merge": "NoCascade",
                "Reparent": "NoCascade",
                "Share": "NoCascade",
                "Unshare": "NoCascade",
                "RollupView": "NoCascade",
            },
            "AssociatedMenuConfiguration": {
                "Behavior": "DoNotDisplay" if system else "UseCollectionName",
                "Group": "Details",
                "Label": label(""),
                "Order": None if system else 10000,
                "IsCustomizable": True,
                "Icon": None,
                "ViewId": "00000000-0000-0000-0000-000000000000",
                "AvailableOffline": True,
                "MenuId": None,
                "QueryApi": None,
            },
        }

    def navigation(self, table: Table, nav: str) -> list[dict[str, Any]]:
        """The items of one EntityMetadata navigation property, unprojected."""
        if nav == "Attributes":
            return [self.attribute(table, c, set()) for c in table.columns.values()]
        if nav == "Keys":
            return [self.key(table, n, c) for n, c in table.alternate_keys.items()]
        if nav == "ManyToOneRelationships":
            return [r for r in self.relationships() if r["ReferencingEntity"] == table.logical_name]
        if nav == "OneToManyRelationships":
            return [r for r in self.relationships() if r["ReferencedEntity"] == table.logical_name]
        return []  # no many-to-many relationships among the emulated tables

    def expanded_entity(
        self, table: Table, select: list[str] | None, expand: dict[str, ExpandOption]
    ) -> dict[str, Any]:
        out = _project(self.entity(table), select, ENTITY_PROPERTIES, "EntityMetadata")
        for nav, option in expand.items():
            type_name, allowed = ENTITY_NAVIGATION[nav]
            items = [i for i in self.navigation(table, nav) if _matches(option.filter, i, allowed, type_name)]
            out[nav] = [_project(i, option.select, allowed, type_name) for i in items]
        return out

    # --- routing

    def handle(self, request: ApiRequest, segments: list[str]) -> ApiResponse:
        if request.method != "GET":
            raise errors.method_not_allowed("Only GET is supported on metadata in this emulator.")
        name, key_text = _split_segment(segments[0])
        if name != "EntityDefinitions":
            raise errors.segment_not_found(name)
        base = f"{request.base}$metadata#EntityDefinitions"
        select = _select(request.query.get("$select"))
        if key_text is None:
            if len(segments) > 1:
                raise errors.segment_not_found(segments[1])
            expand = _entity_expand(request.query.get("$expand"))
            entity_filter = request.query.get("$filter")
            tables = [
                t
                for t in self.tables.values()
                if _matches(entity_filter, self.entity(t), ENTITY_PROPERTIES, "EntityMetadata")
            ]
            values = [self.expanded_entity(t, select, expand) for t in tables]
            return _json(_context(base, select, expand), values)
        table = self._table(key_text)
        rest = segments[1:]
        if not rest:
            expand = _entity_expand(request.query.get("$expand"))
            out = self.expanded_entity(table, select, expand)
            context = _context(base, select, expand) + "/$entity"
            body = {"@odata.context": context, **out}
            return ApiResponse.json(200, body, operation="RetrieveMetadata", table=table.logical_name)
        entity_context = f"{base}({table.metadata_id})"
        nav_name, nav_key = _split_segment(rest[0])
        if nav_name in ENTITY_NAVIGATION and nav_name != "Attributes" and len(rest) == 1:
            return self._navigation_response(request, table, nav_name, nav_key, select, entity_context)
        if nav_name != "Attributes":
            raise errors.segment_not_found(nav_name)
        return self._attributes(request, table, rest, nav_key, select, entity_context)

    def _navigation_response(
        self,
        request: ApiRequest,
        table: Table,
        nav: str,
        item_key: str | None,
        select: list[str] | None,
        entity_context: str,
    ) -> ApiResponse:
        type_name, allowed = ENTITY_NAVIGATION[nav]
        items = self.navigation(table, nav)
        if item_key is not None:
            items = [i for i in items if _key_matches(item_key, i)]
            if not items:
                raise errors.DataverseFault(404, "0x80040217", f"Could not find the {type_name}.")  # (unverified)
            return _json(f"{entity_context}/{nav}/$entity", _project(items[0], select, allowed, type_name), single=True)
        items = [i for i in items if _matches(request.query.get("$filter"), i, allowed, type_name)]
        values = [_project(i, select, allowed, type_name) for i in items]
        return _json(_context(f"{entity_context}/{nav}", select, {}), values)

    def _attributes(
        self,
        request: ApiRequest,
        table: Table,
        rest: list[str],
        attr_key: str | None,
        select: list[str] | None,
        entity_context: str,
    ) -> ApiResponse:
        expand = _attribute_expand(request)
        cast = rest[1] if len(rest) > 1 else None
        cast_type = None
        if cast is not None:
            cast_type = cast.removeprefix("Microsoft.Dynamics.CRM.")
            if cast_type not in DERIVED_PROPERTIES or len(rest) > 2:
                raise errors.segment_not_found(cast)
        type_name = cast_type or "AttributeMetadata"
        allowed = ATTRIBUTE_PROPERTIES + (DERIVED_PROPERTIES[cast_type] if cast_type else [])
        columns = list(table.columns.values())
        if cast_type:
            columns = [c for c in columns if TYPE_INFO[c.type][0] == cast_type]
        for nav in expand:
            if nav not in allowed or nav not in NAV_ONLY:
                raise errors.no_property(f"Microsoft.Dynamics.CRM.{type_name}", nav)
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
            item = _project(self.attribute(table, match[0], expand), select, allowed, type_name)
            context = f"{entity_context}/Attributes({match[0].metadata_id(table.logical_name)})"
            if cast_type:
                context += f"/Microsoft.Dynamics.CRM.{cast_type}"
            return _json(context + "/$entity", item, single=True)
        items = [self.attribute(table, c, expand) for c in columns]
        items = [i for i in items if _matches(request.query.get("$filter"), i, allowed, type_name)]
        values = [_project(i, select, allowed, type_name) for i in items]
        context = f"{entity_context}/Attributes" + (f"/Microsoft.Dynamics.CRM.{cast_type}" if cast_type else "")
        return _json(_context(context, select, {}), values)

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


def _relationship_name(table: Table, column: Column, target: str) -> str:
    known = RELATIONSHIP_NAMES.get((table.logical_name, column.name))
    if known:
        return known
    if column.name in ("createdby", "modifiedby"):
        return f"lk_{table.logical_name}{'' if table.custom else 'base'}_{column.name}"
    if column.type == "Owner":
        return f"owner_{table.entity_set}"
    if column.type == "Customer":
        return f"{table.logical_name}_customer_{target}s"
    if column.name in ("record1id", "record2id"):
        return f"{target}_connections{column.name[6]}"
    return f"{table.logical_name}_{column.name}_{target}"


def _key_matches(key_text: str, item: dict[str, Any]) -> bool:
    key = parse_key_segment(key_text)
    if isinstance(key, str):
        return item.get("MetadataId") == key
    if isinstance(key, dict) and len(key) == 1:
        (name, value), *_ = key.items()
        if name in ("LogicalName", "SchemaName"):
            return item.get(name) == value
    raise errors.invalid_key("Microsoft.Dynamics.CRM.MetadataBase")


def _select(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _attribute_expand(request: ApiRequest) -> set[str]:
    text = request.query.get("$expand", "")
    return {part.split("(")[0].strip() for part in split_top_level(text, ",") if part.strip()}


def _entity_expand(text: str | None) -> dict[str, ExpandOption]:
    """`$expand` on EntityMetadata: its navigation properties, each with the nested `$select` and `$filter`."""
    expand: dict[str, ExpandOption] = {}
    for part in split_top_level(text or "", ","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"([A-Za-z]+)\s*(?:\((.*)\))?", part, re.DOTALL)
        if not match:
            raise errors.query_error(f"Syntax error at position {len(text or '')} in '{text}'.")
        nav, options = match.group(1), match.group(2)
        if nav not in ENTITY_NAVIGATION:
            raise errors.no_property("Microsoft.Dynamics.CRM.EntityMetadata", nav)
        option = ExpandOption(nav)
        for item in split_top_level(options or "", ";"):
            name, _, value = item.partition("=")
            name = name.strip()
            if not name:
                continue
            if name == "$select":
                option.select = _select(value)
            elif name == "$filter":
                option.filter = value
            else:
                # (unverified) text: the metadata service reads only $select and $filter inside $expand
                raise errors.query_error(f"The query option '{name}' is not supported in $expand on {nav}.")
        expand[nav] = option
    return expand


def _project(item: dict[str, Any], select: list[str] | None, allowed: list[str], type_name: str) -> dict[str, Any]:
    if select is None:
        return item
    for name in select:
        if name not in allowed or name in NAV_ONLY:
            raise errors.no_property(f"Microsoft.Dynamics.CRM.{type_name}", name)
    keep = {"@odata.type", "MetadataId", *select, *NAV_ONLY}
    return {k: v for k, v in item.items() if k in keep}


def _context(base: str, select: list[str] | None, expand: dict[str, ExpandOption]) -> str:
    parts = list(select or []) + [f"{nav}({','.join(o.select or [])})" for nav, o in expand.items()]
    return base + (f"({','.join(parts)})" if parts else "")


def _json(context: str, value: Any, *, single: bool = False) -> ApiResponse:
    body = {"@odata.context": context, **value} if single else {"@odata.context": context, "value": value}
    return ApiResponse.json(200, body, operation="RetrieveMetadata")


def _matches(text: str | None, item: dict[str, Any], allowed: list[str], type_name: str) -> bool:
    if not text:
        return True
    node = parse_filter(ENUM_LITERAL.sub(r"\1", text))
    return bool(_evaluate(node, item, allowed, type_name))


def _evaluate(node: ast._Node, item: dict[str, Any], allowed: list[str], type_name: str) -> Any:
    def recurse(child: ast._Node) -> Any:
        return _evaluate(child, item, allowed, type_name)

    if isinstance(node, ast.BoolOp):
        left = recurse(node.left)
        return (left and recurse(node.right)) if isinstance(node.op, ast.And) else (left or recurse(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not recurse(node.operand)
    if isinstance(node, ast.Compare):
        left, right = recurse(node.left), recurse(node.right)
        if isinstance(node.comparator, ast.Eq):
            return left == right
        if isinstance(node.comparator, ast.NotEq):
            return left != right
        raise errors.query_error("Only eq and ne are supported in metadata queries.")
    if isinstance(node, ast.Identifier):
        if node.name not in allowed or node.name in NAV_ONLY:
            raise errors.no_property(f"Microsoft.Dynamics.CRM.{type_name}", node.name)
        return item.get(node.name)
    if isinstance(node, ast.Attribute) and isinstance(node.owner, ast.Identifier):
        owner = recurse(node.owner)
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
