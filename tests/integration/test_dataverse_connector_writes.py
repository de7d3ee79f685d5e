"""Bulk writes, isolation of bad records, bad input as typed errors, and metadata, over real HTTPS against the
Dataverse emulator. Final state is read back from the emulator's /records control."""

from __future__ import annotations

import uuid

import pytest

from sync.connectors.dynamics import DataverseClient, InvalidRequestError, bulk
from tests.integration.test_dataverse_connector import (  # the fixtures and helpers
    LEAD_COLUMNS,
    client,
    control,
    dv,
    raw_row,
    record_count,
    seed,
    server_ops,
)

__all__ = ["client", "dv"]  # pytest fixtures used by name below


def test_create_multiple_in_chunks(dv, client: DataverseClient) -> None:
    records = [{"lastname": f"L{n}", "emailaddress1": f"p{n}@example.com"} for n in range(2500)]
    results = client.create_multiple("lead", records, chunk_size=1000)
    assert [r.index for r in results] == list(range(2500)) and all(r.ok and r.created for r in results)
    assert client.calls["create_multiple"] == 3 and server_ops(dv)["CreateMultiple"] == 3
    assert record_count(dv, "lead") == 2500
    assert raw_row(dv, "lead", results[1234].id)["emailaddress1"] == "p1234@example.com"


def test_upsert_multiple_by_alternate_key_creates_then_updates(dv, client: DataverseClient) -> None:
    first = client.upsert_multiple(
        "lead", [{"new_marketopersonid": str(n), "lastname": f"L{n}"} for n in range(5)], "new_marketopersonid"
    )
    assert all(r.ok and r.id for r in first) and record_count(dv, "lead") == 5
    second = client.upsert_multiple(
        "lead", [{"new_marketopersonid": str(n), "lastname": f"M{n}"} for n in range(3, 8)], "new_marketopersonid"
    )
    assert all(r.ok for r in second) and record_count(dv, "lead") == 8
    assert second[0].id == first[3].id  # same record, addressed by its key
    assert raw_row(dv, "lead", first[3].id)["lastname"] == "M3"


def test_ids_are_read_back_when_upsert_multiple_answers_204(dv, client: DataverseClient, monkeypatch) -> None:
    # Microsoft documents UpsertMultiple as 204 without a body (the emulator sends Ids): drop them to check that path.
    real = bulk.results_from_multiple
    monkeypatch.setattr(bulk, "results_from_multiple", lambda kind, targets, reply: real(kind, targets, None))
    results = client.upsert_multiple(
        "lead", [{"new_marketopersonid": f"k{n}", "lastname": f"L{n}"} for n in range(150)], "new_marketopersonid"
    )
    assert all(r.ok and r.id for r in results) and len({r.id for r in results}) == 150
    assert client.calls["find_by"] == 2  # 100 keys per In() query
    assert raw_row(dv, "lead", results[120].id)["new_marketopersonid"] == "k120"


def test_upsert_by_primary_key(dv, client: DataverseClient) -> None:
    new_id = str(uuid.uuid4())
    [result] = client.upsert_multiple("lead", [{"leadid": new_id, "lastname": "Chosen id"}])
    assert result.ok and result.id == new_id and raw_row(dv, "lead", new_id)["lastname"] == "Chosen id"


def test_one_bad_record_does_not_sink_its_chunk(dv, client: DataverseClient) -> None:
    records = [{"new_marketopersonid": str(n), "lastname": f"L{n}"} for n in range(10)]
    records[3]["firstname"] = "x" * 51  # over-long
    records[7]["leadsourcecode"] = 999  # not an option
    results = client.upsert_multiple("lead", records, "new_marketopersonid", chunk_size=10)
    bad = {r.index: r.error for r in results if r.error}
    assert set(bad) == {3, 7}
    assert (bad[3].code, bad[3].column, bad[3].status) == ("0x80044331", "firstname", 400)
    assert bad[7].column == "leadsourcecode" and bad[7].record == "(new_marketopersonid='7')"
    assert record_count(dv, "lead") == 8  # every good record landed
    assert client.calls["upsert_multiple"] == 1 and client.calls["batch"] == 1  # isolated in one $batch
    ids = {r.index: r.id for r in results if r.ok}
    assert len(ids) == 8 and raw_row(dv, "lead", ids[9])["lastname"] == "L9"


@pytest.mark.parametrize(
    ("table", "record", "code", "column"),
    [
        ("lead", {"lastname": "A", "nosuchcolumn": 1}, "0x80048d19", "nosuchcolumn"),  # unknown column
        ("lead", {"lastname": "A", "numberofemployees": "ten"}, "0x80048d19", "numberofemployees"),  # wrong type
        ("lead", {"lastname": "A", "donotemail": "yes"}, "0x80048d19", "donotemail"),  # wrong type
        ("lead", {"lastname": "A", "jobtitle": "j" * 101}, "0x80044331", "jobtitle"),  # over-long
        ("new_product", {"new_sku": "no name"}, None, "new_name"),  # missing required column
        (
            "lead",
            {"lastname": "A", "parentaccountid@odata.bind": "/accounts(not-a-guid)"},
            None,
            "parentaccountid@odata.bind",
        ),  # bad GUID in a lookup
    ],
)
def test_bad_input_becomes_a_record_error_naming_the_column(dv, client, table, record, code, column) -> None:
    results = client.create_multiple(table, [{**record}, {**record}, good_record(table)])
    assert [r.ok for r in results] == [False, False, True]
    error = results[0].error
    assert error is not None and error.status == 400 and error.message
    if code:
        assert error.code == code
    assert error.column == column.split("@")[0] or error.column == column
    assert record_count(dv, table) == 1


def good_record(table: str) -> dict:
    return {"lastname": "Good"} if table == "lead" else {"new_name": "Good"}


def test_bad_guid_as_a_key_never_reaches_the_service(dv, client: DataverseClient) -> None:
    [bad, good] = client.update_multiple(
        "lead", [{"leadid": "nope", "lastname": "x"}, {"leadid": seed(dv, "lead", 1)[0], "lastname": "y"}]
    )
    assert bad.error is not None and (bad.error.code, bad.error.column) == ("InvalidGuid", "leadid")
    assert good.ok
    with pytest.raises(InvalidRequestError) as info:
        client.get_by_ids("lead", ["not-a-guid"], LEAD_COLUMNS)
    assert info.value.column == "leadid" and info.value.record == "not-a-guid"


def test_update_of_a_missing_record_is_isolated(dv, client: DataverseClient) -> None:
    [existing] = seed(dv, "lead", 1)
    ghost = str(uuid.uuid4())
    results = client.update_multiple(
        "lead", [{"leadid": ghost, "firstname": "G"}, {"leadid": existing, "firstname": "E"}]
    )
    assert results[0].error is not None and results[0].error.code == "0x80040217" and results[0].error.status == 404
    assert results[0].error.record == f"({ghost})"
    assert results[1].ok and raw_row(dv, "lead", existing)["firstname"] == "E"
    assert record_count(dv, "lead") == 1  # the update did not create the missing one


@pytest.mark.parametrize(
    ("kwargs", "code", "column"),
    [
        ({"filter": "lastname eq"}, "0x80060888", None),  # malformed OData
        ({"filter": "leadid eq not-a-guid"}, "0x80060888", None),  # bad GUID literal
        ({"filter": "nosuch eq 'x'"}, "0x80060888", "nosuch"),
        ({"select": ["lastname", "nosuch"]}, "0x80060888", "nosuch"),
    ],
)
def test_bad_queries_are_typed_errors(dv, client: DataverseClient, kwargs, code, column) -> None:
    select = kwargs.pop("select", LEAD_COLUMNS)
    with pytest.raises(InvalidRequestError) as info:
        list(client.query("lead", select, **kwargs))
    assert (info.value.status, info.value.code, info.value.column, info.value.table) == (400, code, column, "lead")


def test_tables_without_bulk_messages_fall_back_to_batch(dv, client: DataverseClient) -> None:
    rows = [{"name": "x"}, {"name": "y"}]
    first = client.create_multiple("teammembership", rows)
    second = client.create_multiple("teammembership", rows)
    # teammembership is read-only in Dataverse: each record gets its own error, nothing is lost silently
    assert all(r.error is not None and r.error.status == 400 for r in first + second)
    assert client.calls["create_multiple"] == 1  # learned once, then straight to $batch
    assert client.calls["batch"] == 2 and server_ops(dv)["$batch"] == 2


def test_delete(dv, client: DataverseClient) -> None:
    [record_id] = seed(dv, "lead", 1)
    assert client.delete("lead", record_id) is True
    assert client.delete("lead", record_id) is False
    assert record_count(dv, "lead") == 0
    with pytest.raises(InvalidRequestError):
        client.delete("lead", "nope")


def test_lookups_bind_on_write(dv, client: DataverseClient) -> None:
    [account] = client.create_multiple("account", [{"name": "Contoso"}])
    [contact] = client.create_multiple(
        "contact", [{"lastname": "C", "parentcustomerid_account@odata.bind": f"/accounts({account.id})"}]
    )
    read = client.get_by_ids("contact", [contact.id], ["_parentcustomerid_value"])
    assert read[contact.id].values["_parentcustomerid_value"] == account.id


# --- metadata -----------------------------------------------------------------------------------------------------


def test_describe_lead(dv, client: DataverseClient) -> None:
    lead = client.describe("lead")
    assert (lead.entity_set_name, lead.primary_id_attribute, lead.change_tracking) == ("leads", "leadid", True)
    assert lead.columns["firstname"].type == "String" and lead.columns["firstname"].max_length == 50
    assert lead.columns["lastname"].required_level == "ApplicationRequired"
    assert lead.columns["leadsourcecode"].options and lead.columns["numberofemployees"].type == "Integer"
    assert ["new_marketopersonid"] in [k.columns for k in lead.keys]
    assert client.describe("new_product").columns["new_name"].required_level == "SystemRequired"


def test_option_sets(dv, client: DataverseClient) -> None:
    sources = client.option_set("lead", "leadsourcecode")
    assert sources and all(isinstance(k, int) and v for k, v in sources.items())
    assert client.option_set("lead", "statecode") == {0: "Open", 1: "Qualified", 2: "Disqualified"}
    assert set(client.option_set("lead", "new_synctomkto")) == {0, 1}
    calls = client.calls["metadata"] + client.calls["option_set"]
    client.option_set("lead", "statecode")
    assert client.calls["metadata"] + client.calls["option_set"] == calls  # cached


def test_schema_changes_are_seen_after_refresh(dv, client: DataverseClient) -> None:
    assert "new_score" not in client.describe("lead").columns
    control(dv, "POST", "/schema/lead/columns", name="new_score", type="Integer")
    assert "new_score" in client.describe("lead", refresh=True).columns
