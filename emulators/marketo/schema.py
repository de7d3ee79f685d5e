"""Field definitions (persons, CRM objects, custom objects) and how Marketo coerces input values.

Marketo field data types: string, text, email, phone, url, integer, float, currency, boolean, date, datetime,
reference. Strings are 255 characters unless said otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulators.marketo.clock import iso, parse_datetime

STRING_TYPES = frozenset({"string", "text", "email", "phone", "url", "reference"})
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


@dataclass
class FieldDef:
    id: int
    name: str  # REST API name
    display_name: str
    data_type: str
    length: int | None = None
    read_only: bool = False
    searchable: bool = False
    custom: bool = False
    soap_name: str | None = None
    description: str | None = None

    def describe(self) -> dict[str, Any]:
        """One entry of GET /rest/v1/leads/describe.json."""
        entry: dict[str, Any] = {"id": self.id, "displayName": self.display_name, "dataType": self.data_type}
        if self.length is not None:
            entry["length"] = self.length
        entry["rest"] = {"name": self.name, "readOnly": self.read_only}
        entry["soap"] = {"name": self.soap_name or self.name[:1].upper() + self.name[1:], "readOnly": self.read_only}
        return entry

    def describe2(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "displayName": self.display_name, "dataType": self.data_type}
        if self.length is not None:
            entry["length"] = self.length
        entry["updateable"] = not self.read_only
        entry["crmManaged"] = False
        return entry

    def schema_field(self) -> dict[str, Any]:
        """One entry of GET /rest/v1/leads/schema/fields.json."""
        entry: dict[str, Any] = {
            "displayName": self.display_name,
            "name": self.name,
            "description": self.description,
            "dataType": self.data_type,
        }
        if self.length is not None:
            entry["length"] = self.length
        entry.update({"isHidden": False, "isHtmlEncodingInEmail": self.data_type in STRING_TYPES})
        entry.update({"isSensitive": False, "isCustom": self.custom})
        return entry

    def object_field(self) -> dict[str, Any]:
        """One entry of `fields` in a CRM or custom object describe."""
        entry: dict[str, Any] = {"name": self.name, "displayName": self.display_name, "dataType": self.data_type}
        if self.description:
            entry["description"] = self.description
        if self.length is not None:
            entry["length"] = self.length
        entry["updateable"] = not self.read_only
        return entry


class InvalidValue(Exception):
    """A value that does not fit its field: the record is skipped with `code` and `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


TEXT_AREA_BYTES = 30_000


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def coerce(definition: FieldDef, value: Any) -> Any:
    """The value Marketo would store, or InvalidValue. None and "" clear the field."""
    kind = definition.data_type
    if type(value) is str:
        if not value:
            return None
        if kind == "string" and len(value) <= (definition.length or 255):
            return value  # the common case, fast
    elif value is None:
        return None
    if isinstance(value, list | dict):
        raise InvalidValue("1001", f"Invalid value '{value}'. Required of type '{kind}'")
    if kind in STRING_TYPES:
        text = _text(value)
        limit = definition.length or (65535 if kind == "text" else 255)
        if len(text) > limit:
            # (unverified) Marketo's exact code for an over-long value; 1003 "Invalid data" family.
            raise InvalidValue("1003", f"Value for field '{definition.name}' exceeds max length {limit}")
        if kind == "text" and len(text) > TEXT_AREA_BYTES // 4 and len(text.encode("utf-8")) > TEXT_AREA_BYTES:
            # Adobe's field types: a text area holds up to 30,000 bytes; a Unicode character takes up to 4 of them.
            raise InvalidValue(
                "1003", f"Value for field '{definition.name}' exceeds max length {TEXT_AREA_BYTES} bytes (UTF-8)"
            )
        if kind == "email" and (not text.isascii() or not _EMAIL.match(text)):
            raise InvalidValue("1003", f"Invalid email address '{text}'")  # (unverified) message
        return text
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        lowered = str(value).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise InvalidValue("1001", f"Invalid value '{value}'. Required of type 'boolean'")
    if kind == "integer":
        if isinstance(value, bool):
            raise InvalidValue("1001", f"Invalid value '{_text(value)}'. Required of type 'integer'")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidValue("1001", f"Invalid value '{value}'. Required of type 'integer'") from None
        if not number.is_integer() or abs(number) > 2**31 - 1:
            raise InvalidValue("1001", f"Invalid value '{value}'. Required of type 'integer'")
        return int(number)
    if kind in ("float", "currency"):
        if isinstance(value, bool):
            raise InvalidValue("1001", f"Invalid value '{_text(value)}'. Required of type '{kind}'")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidValue("1001", f"Invalid value '{value}'. Required of type '{kind}'") from None
    if kind == "datetime":
        try:
            return iso(parse_datetime(str(value)))
        except (TypeError, ValueError):
            raise InvalidValue("1001", f"Invalid value '{value}'. Required of type 'datetime'") from None
    if kind == "date":
        try:
            text = str(value).strip()
            day = datetime.fromtimestamp(parse_datetime(text), UTC).date() if "T" in text else None
            return (day or datetime.strptime(text[:10], "%Y-%m-%d").date()).isoformat()
        except (TypeError, ValueError):
            raise InvalidValue("1001", f"Invalid value '{value}'. Required of type 'date'") from None
    return value


def lookup_key(definition: FieldDef | None, value: Any) -> Any:
    """How a lookup or filter value is compared: strings case-insensitively (as Marketo's dedupe does)."""
    if value is None:
        return None
    if definition is not None and definition.data_type == "integer":
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None
    if definition is not None and definition.data_type == "boolean":
        return coerce(definition, value) if str(value).lower() in _TRUE | _FALSE else None
    return _text(value).strip().lower()


def _standard(
    ident: int, name: str, display: str, kind: str = "string", length: int | None = 255, **flags: Any
) -> FieldDef:
    if kind not in STRING_TYPES:
        length = None
    return FieldDef(ident, name, display, kind, length, **flags)


def default_person_fields() -> list[FieldDef]:
    """The standard person fields a Marketo instance has, plus this project's custom fields for Dynamics."""
    fields = [
        _standard(1, "id", "Id", "integer", read_only=True, searchable=True),
        _standard(2, "company", "Company Name"),
        _standard(3, "site", "Site"),
        _standard(4, "billingStreet", "Billing Address", "text", 65535),
        _standard(5, "billingCity", "Billing City"),
        _standard(6, "billingState", "Billing State"),
        _standard(7, "billingCountry", "Billing Country"),
        _standard(8, "billingPostalCode", "Billing Postal Code"),
        _standard(9, "website", "Website", "url"),
        _standard(10, "mainPhone", "Main Phone", "phone"),
        _standard(11, "annualRevenue", "Annual Revenue", "currency"),
        _standard(12, "numberOfEmployees", "Num Employees", "integer"),
        _standard(13, "industry", "Industry"),
        _standard(14, "sicCode", "SIC Code"),
        _standard(16, "salutation", "Salutation"),
        _standard(17, "firstName", "First Name"),
        _standard(18, "middleName", "Middle Name"),
        _standard(19, "lastName", "Last Name"),
        _standard(20, "email", "Email Address", "email", searchable=True),
        _standard(21, "phone", "Phone Number", "phone"),
        _standard(22, "mobilePhone", "Mobile Phone Number", "phone"),
        _standard(23, "fax", "Fax Number", "phone"),
        _standard(24, "title", "Job Title"),
        _standard(25, "contactCompany", "Contact Company", "reference", read_only=True),
        _standard(26, "dateOfBirth", "Date of Birth", "date"),
        _standard(27, "address", "Address", "text", 65535),
        _standard(28, "city", "City"),
        _standard(29, "state", "State"),
        _standard(30, "country", "Country"),
        _standard(31, "postalCode", "Postal Code"),
        _standard(32, "originalSourceType", "Original Source Type", read_only=True),
        _standard(33, "originalSourceInfo", "Original Source Info", read_only=True),
        _standard(34, "registrationSourceType", "Registration Source Type"),
        _standard(35, "registrationSourceInfo", "Registration Source Info"),
        _standard(42, "leadSource", "Person Source"),
        _standard(43, "leadStatus", "Lead Status"),
        _standard(44, "leadScore", "Lead Score", "integer"),
        _standard(45, "urgency", "Urgency", "float"),
        _standard(46, "priority", "Priority", "integer"),
        _standard(47, "relativeScore", "Relative Score", "integer"),
        _standard(48, "department", "Department"),
        _standard(49, "rating", "Lead Rating"),
        _standard(51, "unsubscribed", "Unsubscribed", "boolean"),
        _standard(52, "unsubscribedReason", "Unsubscribed Reason", "text", 65535),
        _standard(53, "doNotCall", "Do Not Call", "boolean"),
        _standard(54, "doNotCallReason", "Do Not Call Reason"),
        _standard(55, "emailInvalid", "Email Invalid", "boolean"),
        _standard(56, "emailInvalidCause", "Email Invalid Cause"),
        _standard(57, "inferredCompany", "Inferred Company", read_only=True),
        _standard(58, "inferredCountry", "Inferred Country", read_only=True),
        _standard(60, "externalCompanyId", "External Company Id", length=100, searchable=True),
        _standard(61, "externalSalesPersonId", "External Sales Person Id", searchable=True),
        _standard(62, "leadPartitionId", "Lead Partition Id", "integer", read_only=True, searchable=True),
        _standard(63, "leadRole", "Role"),
        _standard(64, "createdAt", "Created At", "datetime", read_only=True),
        _standard(65, "updatedAt", "Updated At", "datetime", read_only=True),
        _standard(66, "personType", "Person Type", read_only=True),
        _standard(67, "isAnonymous", "Anonymous", "boolean", read_only=True),
    ]
    custom = [
        _standard(1001, "dynamicsLeadId", "Dynamics Lead Id", length=36, custom=True, searchable=True),
        _standard(1002, "dynamicsContactId", "Dynamics Contact Id", length=36, custom=True, searchable=True),
        _standard(1003, "dynamicsType", "Dynamics Type", custom=True, searchable=True),
        _standard(1004, "dynamicsIsDeleted", "Dynamics Is Deleted", "boolean", custom=True),
        _standard(1005, "dynamicsCreatedDate", "Dynamics Created Date", "datetime", custom=True),
        _standard(1006, "syncToDynamics", "Sync To Dynamics", "boolean", custom=True),
    ]
    return fields + custom


@dataclass
class PersonSchema:
    """The person fields as an admin has them now; adding and removing custom fields is a test control."""

    fields: dict[str, FieldDef] = field(default_factory=dict)
    next_custom_id: int = 2000

    @classmethod
    def default(cls) -> PersonSchema:
        return cls({definition.name: definition for definition in default_person_fields()})

    def get(self, name: str) -> FieldDef | None:
        return self.fields.get(name)

    def searchable(self) -> list[str]:
        return [name for name, definition in self.fields.items() if definition.searchable]

    def add_custom(
        self,
        name: str,
        data_type: str = "string",
        display_name: str | None = None,
        length: int | None = None,
        searchable: bool | None = None,
    ) -> FieldDef:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,49}", name):
            raise ValueError(f"invalid field name {name!r}")
        if name in self.fields:
            raise ValueError(f"field {name!r} already exists")
        kinds = STRING_TYPES | {"integer", "float", "currency", "boolean", "date", "datetime"}
        if data_type not in kinds:
            raise ValueError(f"invalid dataType {data_type!r}; one of {', '.join(sorted(kinds))}")
        if data_type in STRING_TYPES and length is None:
            length = 65535 if data_type == "text" else 255
        definition = FieldDef(
            self.next_custom_id,
            name,
            display_name or name,
            data_type,
            length if data_type in STRING_TYPES else None,
            searchable=(data_type in ("string", "email") or data_type == "integer")
            if searchable is None
            else searchable,
            custom=True,
        )
        self.next_custom_id += 1
        self.fields[name] = definition
        return definition

    def remove_custom(self, name: str) -> FieldDef:
        definition = self.fields.get(name)
        if definition is None:
            raise KeyError(name)
        if not definition.custom:
            raise ValueError(f"{name!r} is a standard field; only custom fields can be removed")
        del self.fields[name]
        return definition
