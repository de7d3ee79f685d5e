from __future__ import annotations

import json

import pytest

from sync.connectors.dynamics import InvalidRequestError, TableMetadata
from sync.connectors.dynamics.batch import BatchResponse
from sync.connectors.dynamics.bulk import (
    chunked,
    is_unsupported_message,
    multiple_payload,
    plan_targets,
    result_from_single,
    results_from_multiple,
    single_request,
)
from sync.connectors.dynamics.errors import DataverseError

LEAD = TableMetadata(logical_name="lead", entity_set_name="leads", primary_id_attribute="leadid")
BASE = "https://org.example/api/data/v9.2/"
ID1 = "6b1c7e6e-1111-4a3e-9f1a-2b3c4d5e6f70"
ID2 = "6b1c7e6e-2222-4a3e-9f1a-2b3c4d5e6f70"


def test_plan_rejects_what_cannot_be_sent_and_keeps_indexes() -> None:
    records = [
        {"leadid": ID1.upper(), "lastname": "A"},
        {"lastname": "no key"},
        {"leadid": "not-a-guid", "lastname": "B"},
        {"leadid": ID2, "lastname": "C"},
    ]
    targets, rejected = plan_targets("update", LEAD, records)
    assert [(t.index, t.record_id, t.address) for t in targets] == [(0, ID1, f"({ID1})"), (3, ID2, f"({ID2})")]
    assert targets[0].body["leadid"] == ID1  # normalized
    assert [(r.index, r.error.code, r.error.column, r.error.record) for r in rejected if r.error] == [
        (1, "MissingKey", "leadid", None),
        (2, "InvalidGuid", "leadid", "leadid=not-a-guid"),
    ]


def test_plan_upsert_by_alternate_key() -> None:
    records = [{"new_marketopersonid": "12'3", "lastname": "A"}, {"lastname": "no key"}]
    targets, rejected = plan_targets("upsert", LEAD, records, "new_marketopersonid")
    assert targets[0].address == "(new_marketopersonid='12''3')" and targets[0].record_id is None
    assert rejected[0].index == 1 and rejected[0].error and rejected[0].error.column == "new_marketopersonid"


def test_plan_create_needs_no_key() -> None:
    targets, rejected = plan_targets("create", LEAD, [{"lastname": "A"}, {"leadid": ID1, "lastname": "B"}])
    assert rejected == [] and [t.address for t in targets] == [None, None] and targets[1].record_id == ID1


def test_multiple_payloads() -> None:
    targets, _ = plan_targets("upsert", LEAD, [{"new_marketopersonid": "7", "lastname": "A"}], "new_marketopersonid")
    assert multiple_payload("upsert", LEAD, targets) == {
        "Targets": [
            {
                "new_marketopersonid": "7",
                "lastname": "A",
                "@odata.type": "Microsoft.Dynamics.CRM.lead",
                "@odata.id": "leads(new_marketopersonid='7')",
            }
        ]
    }
    targets, _ = plan_targets("create", LEAD, [{"lastname": "A"}])
    assert multiple_payload("create", LEAD, targets) == {
        "Targets": [{"lastname": "A", "@odata.type": "Microsoft.Dynamics.CRM.lead"}]
    }


def test_results_from_multiple() -> None:
    targets, _ = plan_targets("create", LEAD, [{"lastname": "A"}, {"lastname": "B"}])
    results = results_from_multiple("create", targets, {"Ids": [ID1.upper(), ID2]})
    assert [(r.index, r.id, r.created, r.ok) for r in results] == [(0, ID1, True, True), (1, ID2, True, True)]
    targets, _ = plan_targets("update", LEAD, [{"leadid": ID1}])
    assert [(r.id, r.created) for r in results_from_multiple("update", targets, None)] == [(ID1, False)]
    targets, _ = plan_targets(
        "upsert",
        LEAD,
        [{"new_marketopersonid": "1"}, {"new_marketopersonid": "2", "leadid": ID2}],
        "new_marketopersonid",
    )
    assert [(r.id, r.created) for r in results_from_multiple("upsert", targets, None)] == [(None, None), (ID2, None)]
    reply = {"Ids": [ID1, ID2], "Results": [{"RecordCreated": True}, {"RecordCreated": False}]}
    assert [(r.id, r.created) for r in results_from_multiple("upsert", targets, reply)] == [(ID1, True), (ID2, False)]


def test_single_requests() -> None:
    targets, _ = plan_targets("update", LEAD, [{"leadid": ID1, "lastname": "A"}])
    request = single_request("update", LEAD, targets[0], BASE)
    assert (request.method, request.url) == ("PATCH", f"{BASE}leads({ID1})?$select=leadid")
    assert request.headers["If-Match"] == "*"  # update only: a missing record is an error, not a create
    targets, _ = plan_targets("upsert", LEAD, [{"new_marketopersonid": "7"}], "new_marketopersonid")
    request = single_request("upsert", LEAD, targets[0], BASE)
    assert request.url == f"{BASE}leads(new_marketopersonid='7')?$select=leadid" and "If-Match" not in request.headers
    targets, _ = plan_targets("create", LEAD, [{"lastname": "A"}])
    request = single_request("create", LEAD, targets[0], BASE)
    assert (request.method, request.url, request.body) == ("POST", f"{BASE}leads", {"lastname": "A"})


@pytest.mark.parametrize(
    ("kind", "status", "headers", "body", "expected"),
    [
        ("create", 204, {"OData-EntityId": f"{BASE}leads({ID2})"}, b"", (ID2, True)),
        ("upsert", 201, {}, json.dumps({"leadid": ID2}).encode(), (ID2, True)),
        ("upsert", 200, {}, json.dumps({"leadid": ID2}).encode(), (ID2, False)),
        ("upsert", 204, {"OData-EntityId": f"{BASE}leads({ID2})"}, b"", (ID2, None)),
        ("update", 200, {}, json.dumps({"leadid": ID1}).encode(), (ID1, False)),
    ],
)
def test_results_from_single_answers(kind, status, headers, body, expected) -> None:
    records = [{"leadid": ID1, "new_marketopersonid": "7"}] if kind != "create" else [{"lastname": "A"}]
    targets, _ = plan_targets(kind, LEAD, records, "new_marketopersonid" if kind == "upsert" else None)
    result = result_from_single(kind, LEAD, targets[0], BatchResponse(status, headers, body))
    assert (result.id, result.created, result.error) == (*expected, None)


def test_a_failed_single_keeps_the_service_error_and_column() -> None:
    targets, _ = plan_targets("create", LEAD, [{"lastname": "A"}, {"lastname": "B"}])
    error_body = json.dumps(
        {"error": {"code": "0x80044331", "message": "The length of the 'lastname' attribute of the 'lead' ..."}}
    ).encode()
    result = result_from_single("create", LEAD, targets[1], BatchResponse(400, {}, error_body))
    assert result.index == 1 and result.id is None and result.error is not None
    assert (result.error.status, result.error.code, result.error.column) == (400, "0x80044331", "lastname")
    targets, _ = plan_targets("update", LEAD, [{"leadid": ID1, "lastname": "x"}])
    result = result_from_single("update", LEAD, targets[0], BatchResponse(400, {}, error_body))
    assert result.error is not None and result.error.record == f"({ID1})"
    missing = result_from_single("create", LEAD, targets[0], None)
    assert missing.error is not None and missing.error.code == "NotExecuted"


@pytest.mark.parametrize(
    ("status", "message", "unsupported"),
    [
        (400, "The 'CreateMultiple' method does not support entities of type 'teammembership'.", True),
        (404, "Resource not found for the segment 'Microsoft.Dynamics.CRM.CreateMultiple'.", True),
        (400, "The length of the 'lastname' attribute ...", False),
        (400, "UpsertMultiple is not supported", False),  # a different message than the one sent
        (500, "CreateMultiple is not supported", False),
    ],
)
def test_unsupported_message_detection(status: int, message: str, unsupported: bool) -> None:
    assert is_unsupported_message(DataverseError(status, "0x8004", message), "create") is unsupported


def test_chunking() -> None:
    targets, _ = plan_targets("create", LEAD, [{"lastname": str(n)} for n in range(2500)])
    assert [len(c) for c in chunked(targets, 1000)] == [1000, 1000, 500]
    with pytest.raises(ValueError, match="chunk_size"):
        chunked(targets, 0)


def test_invalid_identifier_in_key_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        plan_targets("upsert", LEAD, [{"bad key": "x"}], "bad key")
