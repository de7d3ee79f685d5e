from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum

import pytest

from sync.connectors.dynamics import InvalidRequestError, eq, in_filter, odata_identifier, odata_literal
from sync.connectors.dynamics.odata import chunks_by_length, guid, key_segment, query_string, split_annotations


class Color(Enum):
    RED = 1


GUID = uuid.UUID("8A2F6E1C-0B5D-4A3E-9F1A-2B3C4D5E6F70")


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("O'Bryan", "'O''Bryan'"),
        ("''", "''''''"),
        ("", "''"),
        ("a&b=c#d+e%f", "'a&b=c#d+e%f'"),  # URL escaping happens later, in query_string
        ("x' or 1 eq 1 or name eq '", "'x'' or 1 eq 1 or name eq '''"),
        ("8a2f6e1c-0b5d-4a3e-9f1a-2b3c4d5e6f70", "'8a2f6e1c-0b5d-4a3e-9f1a-2b3c4d5e6f70'"),  # a str stays a str
        (GUID, "8a2f6e1c-0b5d-4a3e-9f1a-2b3c4d5e6f70"),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (1.5, "1.5"),
        (float("nan"), "NaN"),
        (float("-inf"), "-INF"),
        (Decimal("12.50"), "12.50"),
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00Z"),
        (datetime(2024, 1, 1, 2, 30, tzinfo=timezone(timedelta(hours=2))), "2024-01-01T00:30:00Z"),
        (datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC), "2024-01-01T00:00:00.25Z"),
        (date(2024, 2, 29), "2024-02-29"),
        (Color.RED, "1"),
    ],
)
def test_odata_literal(value: object, literal: str) -> None:
    assert odata_literal(value) == literal


def test_odata_literal_refuses_what_it_cannot_express() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        odata_literal(datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="list"):
        odata_literal(["a"])
    with pytest.raises(ValueError, match="decimal"):
        odata_literal(Decimal("NaN"))


@pytest.mark.parametrize("name", ["emailaddress1", "_parentcustomerid_value", "new_synctomkto"])
def test_identifiers_pass(name: str) -> None:
    assert odata_identifier(name) == name


@pytest.mark.parametrize("name", ["", "first name", "name eq 'x'", "a,b", "x)", "1abc", "a/b", "a@odata.bind"])
def test_identifiers_refused_with_a_typed_error(name: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        odata_identifier(name, table="lead")
    assert info.value.table == "lead" and repr(name) in info.value.message


def test_filters_are_built_from_literals() -> None:
    assert eq("lastname", "O'Bryan") == "lastname eq 'O''Bryan'"
    assert eq("_parentcustomerid_value", GUID) == "_parentcustomerid_value eq 8a2f6e1c-0b5d-4a3e-9f1a-2b3c4d5e6f70"
    assert (
        in_filter("emailaddress1", ["a@x.com", "o'b@x.com"])
        == "Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=['a@x.com','o''b@x.com'])"
    )
    assert in_filter("leadid", [GUID, 7]) == (
        "Microsoft.Dynamics.CRM.In(PropertyName='leadid',PropertyValues=['8a2f6e1c-0b5d-4a3e-9f1a-2b3c4d5e6f70','7'])"
    )
    with pytest.raises(InvalidRequestError):
        eq("lastname) or (1 eq 1", "x")


def test_query_string_percent_encodes_data_but_keeps_odata_readable() -> None:
    qs = query_string({"$select": "fullname,emailaddress1", "$filter": eq("lastname", "a&b #1+2%"), "$top": None})
    assert qs == "$select=fullname,emailaddress1&$filter=lastname%20eq%20'a%26b%20%231%2B2%25'"


def test_key_segments() -> None:
    assert key_segment(GUID) == "(8a2f6e1c-0b5d-4a3e-9f1a-2b3c4d5e6f70)"
    assert key_segment({"new_marketopersonid": "12'3"}) == "(new_marketopersonid='12''3')"
    assert key_segment({"a": "x", "b": 2}) == "(a='x',b=2)"


@pytest.mark.parametrize("bad", ["not-a-guid", "", "8a2f6e1c-0b5d-4a3e-9f1a-2b3c4d5e6f7", 12, None])
def test_bad_guids_raise_naming_record_and_column(bad: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        guid(bad, table="lead", column="leadid")
    assert info.value.code == "InvalidGuid" and info.value.column == "leadid" and info.value.table == "lead"
    assert info.value.status is None  # found before anything was sent


def test_guid_accepts_braces_and_case() -> None:
    assert guid("{8A2F6E1C-0B5D-4A3E-9F1A-2B3C4D5E6F70}") == GUID


def test_in_chunks_respect_count_and_url_length() -> None:
    values = [f"user{n}@example.com" for n in range(250)]
    chunks = list(chunks_by_length(values, max_items=100, max_chars=10_000))
    assert [len(c) for c in chunks] == [100, 100, 50] and [v for c in chunks for v in c] == values
    long_values = ["x" * 3000, "y" * 3000, "z" * 3000, "w"]
    assert [len(c) for c in chunks_by_length(long_values, max_items=100, max_chars=7000)] == [2, 2]


def test_split_annotations() -> None:
    row = {
        "@odata.etag": 'W/"72201545"',
        "fullname": "Ann",
        "statuscode": 1,
        "statuscode@OData.Community.Display.V1.FormattedValue": "New",
        "_ownerid_value": "id1",
        "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
    }
    etag, values, annotations = split_annotations(row, keep=False)
    assert etag == 'W/"72201545"'
    assert values == {"fullname": "Ann", "statuscode": 1, "_ownerid_value": "id1"}
    assert annotations == {}
    _, _, annotations = split_annotations(row, keep=True)
    assert annotations == {
        "statuscode": {"OData.Community.Display.V1.FormattedValue": "New"},
        "_ownerid_value": {"Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser"},
    }
