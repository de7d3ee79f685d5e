"""The Dataverse emulator's table metadata as discovery tools query it: EntityMetadata's documented properties
(managed properties included), `$expand` of Attributes, Keys and relationships with nested `$select`/`$filter`, on
the EntityDefinitions collection and on one table. The queries are the ones the tools send, verbatim."""

from __future__ import annotations

import json
import re

from tests.integration.dataverse_emulator_helpers import Dataverse, dataverse_client, error_of

__all__ = ["dataverse_client"]  # the `dv` fixture

# airbyte-source-microsoft-dataverse 1.0.2, source.py discover() and streams()
AIRBYTE_DISCOVERY = (
    "EntityDefinitions"
    "?$select=LogicalName,EntitySetName,PrimaryIdAttribute,CanChangeTrackingBeEnabled,ChangeTrackingEnabled"
    "&$expand=Attributes($select=LogicalName,AttributeType)"
)
AIRBYTE_DATETIME_PART = (
    "EntityDefinitions(LogicalName='{table}')"
    "/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata"
    "?$select=LogicalName,DateTimeBehavior"
)
# CLI for Microsoft 365, `m365 pp dataverse table get`
CLI_TABLE_SELECT = (
    "MetadataId,IsCustomEntity,IsManaged,SchemaName,IconVectorName,LogicalName,EntitySetName,IsActivity,"
    "DataProviderId,IsRenameable,IsCustomizable,CanCreateForms,CanCreateViews,CanCreateCharts,CanCreateAttributes,"
    "CanChangeTrackingBeEnabled,CanModifyAdditionalSettings,CanChangeHierarchicalRelationship,"
    "CanEnableSyncToExternalSearchIndex"
)


def _airbyte_batch(dv: Dataverse, tables: list[str]) -> list[tuple[str, dict[str, object]]]:
    """The DateTimeBehavior $batch Airbyte sends after discovery; (status line, JSON body) of each part."""
    boundary = "batch_5f0c7b4e-0000-4000-8000-000000000001"
    parts = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"GET /api/data/v9.2/{AIRBYTE_DATETIME_PART.format(table=table)} HTTP/1.1\r\nAccept: application/json\r\n\r\n"
        for table in tables
    ]
    body = "".join(parts) + f"--{boundary}--\r\n"
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    response = dv.call("POST", "$batch", data=body.encode(), headers=headers)
    assert response.status_code == 200, response.text
    answer_boundary = re.search(r"boundary=([^\s;]+)", response.headers["Content-Type"]).group(1).strip('"')
    answers = []
    for part in response.text.split(f"--{answer_boundary}"):
        if not part.strip() or part.strip() == "--":
            continue
        _mime, http, payload = re.split(r"\r\n\r\n", part, maxsplit=2)
        answers.append((http.strip().splitlines()[0], json.loads(payload)))
    return answers


def test_airbyte_discovery_reads_every_table_with_its_attributes_and_change_tracking(dv: Dataverse) -> None:
    response = dv.get(AIRBYTE_DISCOVERY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == (
        f"{dv.api}$metadata#EntityDefinitions(LogicalName,EntitySetName,PrimaryIdAttribute,"
        "CanChangeTrackingBeEnabled,ChangeTrackingEnabled,Attributes(LogicalName,AttributeType))"
    )
    entities = {e["LogicalName"]: e for e in body["value"]}
    assert {"lead", "contact", "account", "opportunity", "systemuser", "new_product"} <= set(entities)

    lead = entities["lead"]
    assert set(lead) == {
        "MetadataId",
        "LogicalName",
        "EntitySetName",
        "PrimaryIdAttribute",
        "CanChangeTrackingBeEnabled",
        "ChangeTrackingEnabled",
        "Attributes",
    }
    assert (lead["EntitySetName"], lead["PrimaryIdAttribute"], lead["ChangeTrackingEnabled"]) == (
        "leads",
        "leadid",
        True,
    )
    assert lead["CanChangeTrackingBeEnabled"] == {
        "Value": True,
        "CanBeChanged": False,
        "ManagedPropertyLogicalName": "canchangetrackingbeenabled",
    }
    assert entities["new_product"]["CanChangeTrackingBeEnabled"]["CanBeChanged"] is True
    types = {a["LogicalName"]: a["AttributeType"] for a in lead["Attributes"]}
    assert types["lastname"] == "String" and types["createdon"] == "DateTime"
    assert types["parentaccountid"] == "Lookup" and types["leadsourcecode"] == "Picklist"
    assert types["ownerid"] == "Owner" and types["leadid"] == "Uniqueidentifier"
    assert all(set(a) == {"@odata.type", "MetadataId", "LogicalName", "AttributeType"} for a in lead["Attributes"])
    assert lead["Attributes"][0]["@odata.type"].startswith("#Microsoft.Dynamics.CRM.")

    with_datetime = [n for n, e in entities.items() if any(a["AttributeType"] == "DateTime" for a in e["Attributes"])]
    answers = _airbyte_batch(dv, with_datetime)
    assert len(answers) == len(with_datetime)
    for (status, part), table in zip(answers, with_datetime, strict=True):
        assert " 200 " in status, (table, status)
        behaviors = {a["LogicalName"]: a["DateTimeBehavior"]["Value"] for a in part["value"]}
        assert behaviors["createdon"] == "UserLocal" and behaviors["modifiedon"] == "UserLocal", table

    # streams(): the entity set of each configured stream
    one = dv.get("EntityDefinitions(LogicalName='lead')?$select=EntitySetName").json()
    assert one["EntitySetName"] == "leads"
    assert one["@odata.context"] == f"{dv.api}$metadata#EntityDefinitions(EntitySetName)/$entity"


def test_change_tracking_turned_off_still_can_be_enabled(dv: Dataverse) -> None:
    dv.control("PATCH", "/schema/contact", json={"change_tracking": False})
    contact = next(e for e in dv.get(AIRBYTE_DISCOVERY).json()["value"] if e["LogicalName"] == "contact")
    assert contact["ChangeTrackingEnabled"] is False and contact["CanChangeTrackingBeEnabled"]["Value"] is True


def test_issue_properties_carry_the_real_tables_values(dv: Dataverse) -> None:
    select = (
        "CanChangeTrackingBeEnabled,ChangeTrackingEnabled,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,"
        "IsCustomEntity,ObjectTypeCode,DisplayName,LogicalCollectionName,SchemaName,CollectionSchemaName,OwnershipType"
    )
    rows = dv.get(f"EntityDefinitions?$select={select}").json()["value"]
    by_set = {r["EntitySetName"]: r for r in rows}
    account, opportunity, user = by_set["accounts"], by_set["opportunities"], by_set["systemusers"]
    assert (account["ObjectTypeCode"], account["PrimaryNameAttribute"], account["LogicalCollectionName"]) == (
        1,
        "name",
        "accounts",
    )
    assert account["DisplayName"]["UserLocalizedLabel"]["Label"] == "Account"
    assert account["DisplayName"]["LocalizedLabels"][0]["LanguageCode"] == 1033
    assert account["IsCustomEntity"] is False and by_set["new_products"]["IsCustomEntity"] is True
    assert (opportunity["SchemaName"], opportunity["CollectionSchemaName"]) == ("Opportunity", "Opportunities")
    assert (user["SchemaName"], user["OwnershipType"], user["ObjectTypeCode"]) == ("SystemUser", "BusinessOwned", 8)
    assert account["OwnershipType"] == "UserOwned"


def test_cli_for_microsoft_365_table_get(dv: Dataverse) -> None:
    table = dv.get(f"EntityDefinitions(LogicalName='account')?$select={CLI_TABLE_SELECT}").json()
    assert (table["SchemaName"], table["IsManaged"], table["IsActivity"], table["DataProviderId"]) == (
        "Account",
        True,
        False,
        None,
    )
    for name in ("IsRenameable", "IsCustomizable", "CanCreateForms", "CanCreateAttributes", "CanCreateCharts"):
        assert table[name] == {"Value": True, "CanBeChanged": False, "ManagedPropertyLogicalName": name.lower()}
    assert table["CanModifyAdditionalSettings"]["CanBeChanged"] is True
    assert set(table) == {"@odata.context", *CLI_TABLE_SELECT.split(",")}


def test_a_property_the_real_service_lacks_is_refused(dv: Dataverse) -> None:
    status, code, message = error_of(dv.get("EntityDefinitions?$select=LogicalName,CanBeTracked"))
    assert (status, code) == (400, "0x80060888")
    assert message == "Could not find a property named 'CanBeTracked' on type 'Microsoft.Dynamics.CRM.EntityMetadata'."
    nested = dv.get("EntityDefinitions?$select=LogicalName&$expand=Attributes($select=LogicalName,MaxLength)")
    assert error_of(nested)[:2] == (400, "0x80060888") and "'MaxLength'" in error_of(nested)[2]
    assert "AttributeMetadata" in error_of(nested)[2]
    unknown_nav = error_of(dv.get("EntityDefinitions(LogicalName='lead')?$expand=Columns"))
    assert unknown_nav[:2] == (400, "0x80060888") and "'Columns'" in unknown_nav[2]
    bad_filter = error_of(dv.get("EntityDefinitions?$select=LogicalName&$filter=IsTracked eq true"))
    assert bad_filter[:2] == (400, "0x80060888") and "'IsTracked'" in bad_filter[2]
    top = error_of(dv.get("EntityDefinitions(LogicalName='lead')?$expand=Attributes($top=2)"))
    assert top[:2] == (400, "0x80060888") and "$top" in top[2]


def test_expand_on_one_table_with_nested_select_and_filter(dv: Dataverse) -> None:
    query = (
        "EntityDefinitions(LogicalName='lead')?$select=LogicalName"
        "&$expand=Attributes($select=LogicalName,AttributeType;"
        "$filter=AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'),Keys($select=KeyAttributes)"
    )
    lead = dv.get(query).json()
    assert lead["@odata.context"] == (
        f"{dv.api}$metadata#EntityDefinitions(LogicalName,Attributes(LogicalName,AttributeType),Keys(KeyAttributes))"
        "/$entity"
    )
    assert {a["AttributeType"] for a in lead["Attributes"]} == {"Picklist"}
    assert "leadsourcecode" in {a["LogicalName"] for a in lead["Attributes"]}
    assert all(set(a) == {"@odata.type", "MetadataId", "LogicalName", "AttributeType"} for a in lead["Attributes"])
    assert [k["KeyAttributes"] for k in lead["Keys"]] == [["new_marketopersonid"]]

    string_literal = "$filter=AttributeType eq 'DateTime' and IsValidForCreate eq false"
    dates = dv.get(f"EntityDefinitions(LogicalName='contact')?$select=LogicalName&$expand=Attributes({string_literal})")
    names = {a["LogicalName"] for a in dates.json()["Attributes"]}
    assert {"createdon", "modifiedon"} <= names and "birthdate" not in names
    # Without a nested $select an expanded attribute carries its derived type's properties too.
    full = dv.get("EntityDefinitions(LogicalName='contact')?$select=LogicalName&$expand=Attributes").json()
    lastname = next(a for a in full["Attributes"] if a["LogicalName"] == "lastname")
    assert lastname["MaxLength"] == 50 and lastname["RequiredLevel"]["Value"] == "ApplicationRequired"


def test_expand_on_the_collection_with_filters_at_both_levels(dv: Dataverse) -> None:
    query = (
        "EntityDefinitions?$select=LogicalName&$filter=IsCustomEntity eq true"
        "&$expand=Attributes($select=LogicalName;$filter=IsCustomAttribute eq true),"
        "ManyToOneRelationships($select=ReferencedEntity,ReferencingAttribute,ReferencingEntityNavigationPropertyName)"
    )
    (product,) = dv.get(query).json()["value"]
    assert product["LogicalName"] == "new_product"
    assert {a["LogicalName"] for a in product["Attributes"]} >= {"new_name", "new_sku", "new_accountid"}
    assert "createdon" not in {a["LogicalName"] for a in product["Attributes"]}
    to_account = next(r for r in product["ManyToOneRelationships"] if r["ReferencedEntity"] == "account")
    assert to_account["ReferencingAttribute"] == "new_accountid"
    assert to_account["ReferencingEntityNavigationPropertyName"] == "new_AccountId"
    user_owned = "OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'"
    owned = dv.get(f"EntityDefinitions?$select=LogicalName&$filter={user_owned}")
    assert {"lead", "contact", "account", "new_product"} <= {e["LogicalName"] for e in owned.json()["value"]}
    assert "systemuser" not in {e["LogicalName"] for e in owned.json()["value"]}
    managed = dv.get("EntityDefinitions?$select=LogicalName&$filter=IsCustomizable/Value eq false").json()["value"]
    assert [e["LogicalName"] for e in managed] == ["teammembership"]


def test_relationships_both_ways(dv: Dataverse) -> None:
    contact = dv.get(
        "EntityDefinitions(LogicalName='contact')?$select=LogicalName&$expand=ManyToOneRelationships("
        "$select=SchemaName,ReferencedEntity,ReferencedAttribute,ReferencingAttribute;"
        "$filter=ReferencedEntity eq 'account')"
    ).json()
    (customer,) = contact["ManyToOneRelationships"]
    assert customer == {
        "MetadataId": customer["MetadataId"],
        "SchemaName": "contact_customer_accounts",
        "ReferencedEntity": "account",
        "ReferencedAttribute": "accountid",
        "ReferencingAttribute": "parentcustomerid",
    }
    children = dv.get(
        "EntityDefinitions(LogicalName='account')/OneToManyRelationships"
        "?$select=SchemaName,ReferencingEntity,ReferencingAttribute&$filter=ReferencingEntity eq 'lead'"
    ).json()
    assert children["@odata.context"].endswith(
        "/OneToManyRelationships(SchemaName,ReferencingEntity,ReferencingAttribute)"
    )
    assert {(r["SchemaName"], r["ReferencingAttribute"]) for r in children["value"]} == {
        ("lead_parent_account", "parentaccountid")
    }
    by_name = dv.get(
        "EntityDefinitions(LogicalName='account')/OneToManyRelationships(SchemaName='lead_parent_account')"
    )
    assert (
        by_name.json()["ReferencingEntity"] == "lead" and by_name.json()["RelationshipType"] == "OneToManyRelationship"
    )
    assert by_name.json()["CascadeConfiguration"]["Delete"] == "RemoveLink"
    none = dv.get("EntityDefinitions(LogicalName='account')?$select=LogicalName&$expand=ManyToManyRelationships")
    assert none.json()["ManyToManyRelationships"] == []


def test_the_syncs_own_metadata_calls_still_answer(dv: Dataverse) -> None:
    select = "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled,MetadataId"
    lead = dv.get(f"EntityDefinitions(LogicalName='lead')?$select={select}").json()
    assert set(lead) == {"@odata.context", *select.split(",")}
    attributes = dv.get("EntityDefinitions(LogicalName='lead')/Attributes").json()["value"]
    assert {"lastname", "new_marketopersonid"} <= {a["LogicalName"] for a in attributes}
    strings = dv.get(
        "EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata"
        "?$select=LogicalName,MaxLength&$filter=IsCustomAttribute eq true"
    ).json()["value"]
    assert {a["LogicalName"]: a["MaxLength"] for a in strings}["new_marketopersonid"] == 100
