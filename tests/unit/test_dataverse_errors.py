from __future__ import annotations

import json

import pytest

from sync.connectors.dynamics import (
    AuthenticationError,
    ChangeTokenExpiredError,
    DataverseError,
    DuplicateRecordError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    ServiceProtectionError,
)
from sync.connectors.dynamics.errors import column_named_in, error_from_response


def body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


CASES = [
    # status, code, message, expected class, expected column
    (
        400,
        "0x80044331",
        "A validation error occurred.  The length of the 'firstname' attribute of the 'lead' entity exceeded the "
        "maximum allowed length of '50'.",
        InvalidRequestError,
        "firstname",
    ),
    (
        400,
        "0x80048d19",
        "Error identified in Payload provided by the user for Entity :'leads', For more information on this error "
        "please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : "
        "Microsoft.OData.ODataException: The property 'nosuchcolumn' does not exist on type "
        "'Microsoft.Dynamics.CRM.lead'. Make sure to only use property names that are defined by the type or mark "
        "the type as open type.",
        InvalidRequestError,
        "nosuchcolumn",
    ),
    (
        400,
        "0x80060888",
        "Could not find a property named 'fulname' on type 'Microsoft.Dynamics.CRM.contact'.",
        InvalidRequestError,
        "fulname",
    ),
    (400, "0x80060888", "Syntax error at position 12 in 'lastname eq'.", InvalidRequestError, None),
    (
        400,
        "0x80060888",
        "Unrecognized 'Edm.Guid' literal 'abc' at '10' in 'leadid eq abc'.",
        InvalidRequestError,
        None,
    ),
    (400, "0x80040203", "Attribute 'lastname' cannot be NULL", InvalidRequestError, "lastname"),
    (
        412,
        "0x80040237",
        "A record with matching key values already exists.",
        DuplicateRecordError,
        None,
    ),
    (
        412,
        "0x80060882",
        "The version of the existing record doesn't match the RowVersion property provided.",
        PreconditionFailedError,
        None,
    ),
    (
        404,
        "0x80040217",
        "Entity 'lead' With Id = 6b1c7e6e-0000-0000-0000-000000000001 Does Not Exist",
        NotFoundError,
        None,
    ),
    (401, "0x80072560", "The user is not a member of the organization.", AuthenticationError, None),
    (
        400,
        "0x80044352",
        "Version stamp associated with the client has expired. Please perform a full sync.",
        ChangeTokenExpiredError,
        None,
    ),
    (500, "0x80040216", "An unexpected error occurred.", DataverseError, None),
]


@pytest.mark.parametrize(("status", "code", "message", "cls", "column"), CASES)
def test_errors_are_typed_and_keep_the_service_code_and_message(
    status: int, code: str, message: str, cls: type[DataverseError], column: str | None
) -> None:
    error = error_from_response(status, {}, body(code, message), table="lead", record="r-1")
    assert type(error) is cls
    assert (error.status, error.code, error.message, error.column) == (status, code, message, column)
    assert error.table == "lead" and error.record == "r-1"
    assert code in str(error) and "record r-1" in str(error)
    if column:
        assert f"column {column}" in str(error)


def test_service_protection_carries_retry_after() -> None:
    error = error_from_response(
        429,
        {"Retry-After": "17"},
        body("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."),
    )
    assert isinstance(error, ServiceProtectionError)
    assert error.retry_after == 17.0 and error.code == "0x80072322"


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b"<html>Bad Gateway</html>", "HTTP502", "<html>Bad Gateway</html>"),
        (b"", "HTTP502", "HTTP 502 without a body"),
        (b'{"unexpected": 1}', "HTTP502", "HTTP 502"),
    ],
)
def test_non_json_error_bodies_still_make_a_readable_error(raw: bytes, code: str, message: str) -> None:
    error = error_from_response(502, {}, raw)
    assert (error.code, error.message) == (code, message)


def test_token_endpoint_errors() -> None:
    raw = json.dumps(
        {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace"}
    )
    error = error_from_response(401, {}, raw)
    assert isinstance(error, AuthenticationError)
    assert error.code == "invalid_client" and error.message == "AADSTS7000215: Invalid client secret provided."


@pytest.mark.parametrize(
    ("message", "column"),
    [
        ("The 'lastname' attribute is required", "lastname"),
        ("Required field 'subject' is missing", "subject"),
        ("A validation error occurred.  The value of 'lastname' on record of type 'contact' is required.", "lastname"),
        (
            "A validation error occurred. The value 99 of 'leadsourcecode' on record of type 'lead' is outside the "
            "valid range. Accepted Values: 1,2,3",
            "leadsourcecode",
        ),
        ("'abc' is not a valid value for 'numberofemployees'.", "numberofemployees"),
        ("Entity 'lead' With Id = 6b1c7e6e-0000-0000-0000-000000000001 Does Not Exist", None),
        ("Cannot convert a primitive value to the expected type 'Edm.Int32'.", None),
    ],
)
def test_column_named_in(message: str, column: str | None) -> None:
    assert column_named_in(message) == column


def test_write_error_projection() -> None:
    error = error_from_response(400, {}, body("0x80044331", "The length of the 'jobtitle' attribute of ..."))
    write_error = error.to_write_error()
    assert write_error.model_dump() == {
        "status": 400,
        "code": "0x80044331",
        "message": "The length of the 'jobtitle' attribute of ...",
        "column": "jobtitle",
        "record": None,
    }
    assert error.to_write_error("(leadid)").record == "(leadid)"
