from __future__ import annotations

from sync.connectors.dynamics.metadata import describe_table, options_from_option_set, table_from_definition
from sync.connectors.dynamics.validate import column_problems, suspect_column

DEFINITION = {
    "LogicalName": "lead",
    "EntitySetName": "leads",
    "PrimaryIdAttribute": "leadid",
    "PrimaryNameAttribute": "fullname",
    "ChangeTrackingEnabled": True,
}
ATTRIBUTES = [
    {"LogicalName": "leadid", "AttributeType": "Uniqueidentifier", "RequiredLevel": {"Value": "SystemRequired"}},
    {
        "@odata.type": "#Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "LogicalName": "lastname",
        "AttributeType": "String",
        "MaxLength": 50,
        "RequiredLevel": {"Value": "SystemRequired", "CanBeChanged": False},
        "IsValidForCreate": True,
        "IsValidForUpdate": True,
    },
    {"LogicalName": "firstname", "AttributeType": "String", "MaxLength": 50, "RequiredLevel": {"Value": "None"}},
    {"LogicalName": "leadsourcecode", "AttributeType": "Picklist", "RequiredLevel": {"Value": "None"}},
    {"LogicalName": "numberofemployees", "AttributeType": "Integer", "RequiredLevel": {"Value": "None"}},
    {"LogicalName": "new_synctomkto", "AttributeType": "Boolean", "RequiredLevel": {"Value": "None"}},
    {
        "LogicalName": "parentaccountid",
        "AttributeType": "Lookup",
        "Targets": ["account"],
        "RequiredLevel": {"Value": "None"},
    },
    {
        "LogicalName": "createdon",
        "AttributeType": "DateTime",
        "RequiredLevel": {"Value": "None"},
        "IsValidForCreate": False,
        "IsValidForUpdate": {"Value": False},
    },
    {
        "LogicalName": "new_interests",
        "AttributeType": "Virtual",
        "AttributeTypeName": {"Value": "MultiSelectPicklistType"},
    },
]
KEYS = [{"LogicalName": "new_marketopersonid_key", "KeyAttributes": ["new_marketopersonid"]}]
PICKLIST = {
    "Options": [
        {"Value": 1, "Label": {"UserLocalizedLabel": {"Label": "Advertisement"}}},
        {"Value": 2, "Label": {"LocalizedLabels": [{"Label": "Employee Referral"}], "UserLocalizedLabel": None}},
    ]
}


def test_describe_table() -> None:
    table = describe_table(DEFINITION, ATTRIBUTES, KEYS, {"leadsourcecode": options_from_option_set(PICKLIST)})
    assert (table.logical_name, table.entity_set_name, table.primary_id_attribute) == ("lead", "leads", "leadid")
    assert table.change_tracking is True and table.primary_name_attribute == "fullname"
    lastname = table.columns["lastname"]
    assert (lastname.type, lastname.max_length, lastname.required) == ("String", 50, True)
    assert table.columns["firstname"].required is False
    assert table.columns["leadsourcecode"].options == {1: "Advertisement", 2: "Employee Referral"}
    assert table.columns["parentaccountid"].targets == ["account"]
    assert table.columns["createdon"].valid_for_create is False and table.columns["createdon"].valid_for_update is False
    assert table.columns["new_interests"].type == "MultiSelectPicklist"
    assert [(k.name, k.columns) for k in table.keys] == [("new_marketopersonid_key", ["new_marketopersonid"])]


def test_two_options_labels() -> None:
    option_set = {
        "TrueOption": {"Value": 1, "Label": {"UserLocalizedLabel": {"Label": "Yes"}}},
        "FalseOption": {"Value": 0, "Label": {"UserLocalizedLabel": {"Label": "No"}}},
    }
    assert options_from_option_set(option_set) == {0: "No", 1: "Yes"}


def test_definition_only() -> None:
    table = table_from_definition({**DEFINITION, "ChangeTrackingEnabled": False})
    assert table.change_tracking is False and table.columns == {}


TABLE = describe_table(DEFINITION, ATTRIBUTES, KEYS, {"leadsourcecode": {1: "Ad", 2: "Referral"}})


def test_column_problems_table() -> None:
    record = {
        "lastname": "x" * 51,
        "firstname": 7,
        "nosuch": 1,
        "leadsourcecode": 99,
        "numberofemployees": "ten",
        "new_synctomkto": "yes",
        "parentaccountid": "not-a-guid",
        "parentcontactid@odata.bind": "/contacts(1)",
        "ok@odata.bind": "/accounts(8a2f6e1c-0b5d-4a3e-9f1a-2b3c4d5e6f70)",
        "bykey@odata.bind": "/contacts(new_marketopersonid='7')",
    }
    assert column_problems(TABLE, record, creating=False) == [
        ("lastname", "longer than 50 characters"),
        ("firstname", "expects text, got int"),
        ("nosuch", "unknown column"),
        ("leadsourcecode", "99 is not one of its options"),
        ("numberofemployees", "expects a whole number, got str"),
        ("new_synctomkto", "expects true or false, got str"),
        ("parentaccountid", "not a GUID"),
        ("parentcontactid", "not a record URL like /accounts(<guid>)"),
    ]


def test_missing_required_columns_only_matter_on_create() -> None:
    assert column_problems(TABLE, {"firstname": "Ann"}, creating=True) == [("lastname", "required column missing")]
    assert column_problems(TABLE, {"firstname": "Ann"}, creating=False) == []
    assert suspect_column(TABLE, {"lastname": None}, creating=False) == "lastname"
    valid = {"lastname": "Ok", "numberofemployees": 5, "new_synctomkto": True}
    assert suspect_column(TABLE, valid, creating=True) is None


def test_text_is_measured_in_utf16_units_and_xml_invalid_characters_are_problems() -> None:
    assert column_problems(TABLE, {"lastname": "😀" * 25}, creating=False) == []  # 50 UTF-16 units: fits
    assert column_problems(TABLE, {"lastname": "😀" * 26}, creating=False) == [
        ("lastname", "longer than 50 characters")
    ]
    assert column_problems(TABLE, {"lastname": "Lee\tJr.\r\n"}, creating=False) == []
    assert column_problems(TABLE, {"lastname": "Lee\x00"}, creating=False) == [
        ("lastname", "holds the control character U+0000, which Dataverse refuses")
    ]
