"""Dataverse's error answers: `{"error": {"code": "0x...", "message": "..."}}` with the documented codes and texts.

Codes and messages come from Microsoft's Web API documentation where it gives them; the rest are marked
(unverified) and follow the shape of the documented ones.
"""

from __future__ import annotations

from typing import Any


class DataverseFault(Exception):
    """An error answer of the Web API."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def payload_error(entity_set: str, inner: str) -> DataverseFault:
    """A malformed request body, as the OData reader reports it (0x80048d19)."""
    return DataverseFault(
        400,
        "0x80048d19",
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For more information on this "
        "error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
        f"InnerException : Microsoft.OData.ODataException: {inner}",
    )


def query_error(message: str) -> DataverseFault:
    """A malformed URL or query option (0x80060888)."""
    return DataverseFault(400, "0x80060888", message)


def no_property(table_type: str, name: str) -> DataverseFault:
    return query_error(f"Could not find a property named '{name}' on type '{table_type}'.")


def segment_not_found(segment: str) -> DataverseFault:
    return DataverseFault(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


def not_found(logical_name: str, record_id: str) -> DataverseFault:
    return DataverseFault(404, "0x80040217", f"Entity '{logical_name}' With Id = {record_id} Does Not Exist")


def not_found_by_key(logical_name: str, key_text: str) -> DataverseFault:
    # (unverified) the alternate-key form of ObjectDoesNotExist
    return DataverseFault(
        404, "0x80040217", f"A record with the specified key values does not exist in {logical_name} entity"
    )


def duplicate_key() -> DataverseFault:
    return DataverseFault(412, "0x80040237", "A record with matching key values already exists.")


def version_mismatch() -> DataverseFault:
    return DataverseFault(
        412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided."
    )


def max_length(column: str, logical_name: str, limit: int) -> DataverseFault:
    return DataverseFault(
        400,
        "0x80044331",
        f"A validation error occurred.  The length of the '{column}' attribute of the '{logical_name}' entity "
        f"exceeded the maximum allowed length of '{limit}'.",
    )


def invalid_character(char: str) -> DataverseFault:
    # (unverified) code: the text is .NET's XmlException for a character XML cannot hold, as Dynamics reports it.
    text = f"'\\u{ord(char):04x}', hexadecimal value 0x{ord(char):02X}, is an invalid character."
    return DataverseFault(400, "0x80040203", text)


def required_missing(column: str, logical_name: str) -> DataverseFault:
    # (unverified) code and text: Dataverse enforces SystemRequired columns on create with a validation error.
    return DataverseFault(
        400,
        "0x80040200",
        f"A validation error occurred.  The value of '{column}' on record of type '{logical_name}' is required.",
    )


def option_out_of_range(column: str, logical_name: str, value: Any, options: list[int]) -> DataverseFault:
    accepted = ",".join(str(v) for v in options)
    return DataverseFault(
        400,
        "0x8004431a",
        f"A validation error occurred. The value {value} of '{column}' on record of type '{logical_name}' is outside "
        f"the valid range. Accepted Values: {accepted}",
    )


def change_tracking_rejects(option: str) -> DataverseFault:
    # The text is documented; the code is (unverified).
    return query_error(f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.')


def expired_version_stamp() -> DataverseFault:
    # ExpiredVersionStamp 0x80044352, as the SDK samples document it.
    return DataverseFault(
        400, "0x80044352", "Version stamp associated with the client has expired. Please perform a full sync."
    )


def change_tracking_disabled(logical_name: str) -> DataverseFault:
    # (unverified) code and text for a delta read of a table whose change tracking was turned off.
    return DataverseFault(
        400,
        "0x80044353",
        f"Change tracking is not enabled for entity '{logical_name}'. Enable change tracking for the entity first.",
    )


def entity_reference_direct() -> DataverseFault:
    return query_error(
        "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead."
    )


def invalid_key(type_name: str) -> DataverseFault:
    return query_error(
        f"The key in the request URI is not valid for resource '{type_name}'. Ensure that the names and number of "
        "key properties match the declared or alternate key properties for the resource."
    )


def bad_request(message: str, code: str = "0x80040203") -> DataverseFault:
    """A business-rule violation (0x80040203 InvalidArgument unless another code is given)."""
    return DataverseFault(400, code, message)


def method_not_allowed(message: str) -> DataverseFault:
    return DataverseFault(405, "0x80060888", message)


def cannot_assign_to_access_team() -> DataverseFault:
    """CannotAssignToAccessTeam, from Dataverse's web service error codes."""
    return DataverseFault(
        400,
        "0x80048340",
        "You cannot assign a record to the access team. You can assign a record to the owner team.",
    )
