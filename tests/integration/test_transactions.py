"""Lean entity-group upserts against a real Azurite: what they write reads back exactly as the library's own
transactions write it, a failure raises the library's typed error with nothing applied, and values the lean body does
not write go through the library."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from azure.data.tables import EdmType, EntityProperty, TableClient, TableTransactionError, UpdateMode

from emulators.azurite import Azurite
from sync.state.tables import ensure_table, service_client
from sync.state.transactions import NotLean, submit_upserts, upsert_body

WHEN = datetime(2026, 11, 30, 8, 15, 30, 123456, tzinfo=UTC)


@pytest.fixture
def table(azurite: Azurite) -> TableClient:
    return ensure_table(service_client(azurite.connection_string), f"tx{uuid.uuid4().hex[:12]}")


def refuse_library_path(table: TableClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the library's submit_transaction was used")

    monkeypatch.setattr(table, "submit_transaction", refuse)


def row(partition: str, key: str, **values: Any) -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": key, **values}


VALUES: dict[str, Any] = {
    "Text": 'Zoë 中文 "quoted" \\ back\nline',
    "Empty": "",
    "Small": 7,
    "Negative": -(2**31),
    "Ratio": 0.25,
    "Flag": False,
    "When": WHEN,
    "Offset": datetime(2026, 11, 30, 10, 15, tzinfo=timezone(timedelta(hours=2))),
}


def test_lean_upserts_read_back_as_the_library_writes_them(table: TableClient, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ["plain", "with 'quotes'", "per%cent & space", "ünï"]
    table.submit_transaction([("upsert", row("lib", k, **VALUES), {"mode": UpdateMode.REPLACE}) for k in keys])
    refuse_library_path(table, monkeypatch)

    submit_upserts(table, [row("lean", k, **VALUES) for k in keys])

    for key in keys:
        lean, library = table.get_entity("lean", key), table.get_entity("lib", key)
        assert {n: (v, type(v)) for n, v in lean.items() if n != "PartitionKey"} == {
            n: (v, type(v)) for n, v in library.items() if n != "PartitionKey"
        }
        assert lean["Offset"] == datetime(2026, 11, 30, 8, 15, tzinfo=UTC)


def test_a_lean_upsert_replaces_the_whole_row(table: TableClient, monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_library_path(table, monkeypatch)
    submit_upserts(table, [row("p", "1", Old="gone", Kept="a")])
    submit_upserts(table, [row("p", "1", Kept="b")] + [row("p", str(n), Kept="n") for n in range(2, 101)])

    assert dict(table.get_entity("p", "1")) == {"PartitionKey": "p", "RowKey": "1", "Kept": "b"}
    assert len(list(table.list_entities())) == 100


def test_a_refused_transaction_raises_the_library_error_and_applies_nothing(table: TableClient) -> None:
    too_long = "x" * 40_000  # a string property holds 32K UTF-16 characters

    with pytest.raises(TableTransactionError) as raised:
        submit_upserts(table, [row("p", "fine", Text="ok"), row("p", "bad", Text=too_long)])

    assert raised.value.error_code is not None
    assert "64KB" in str(raised.value)
    assert list(table.list_entities()) == []


def test_values_the_lean_body_does_not_write_go_through_the_library(table: TableClient) -> None:
    big = EntityProperty(2**40, EdmType.INT64)
    submit_upserts(table, [row("p", "1", Big=big, Text="t")])

    stored = table.get_entity("p", "1")
    assert stored["Big"].value == 2**40
    assert stored["Text"] == "t"


@pytest.mark.parametrize(
    "value",
    [2**40, b"bytes", uuid.UUID(int=1), datetime(2026, 1, 1), None, ["a"]],
    ids=["int64", "bytes", "uuid", "naive datetime", "none", "list"],
)
def test_the_lean_body_refuses_types_it_does_not_write_as_the_library_does(value: Any) -> None:
    with pytest.raises(NotLean, match="'Value'"):
        upsert_body("http://host/account/t", [row("p", "1", Value=value)], "changeset_x")


def test_the_lean_body_is_one_put_per_entity_with_quoted_keys() -> None:
    body = upsert_body("http://host/acct/t", [row("p'1", "a b", N=1), row("p'1", "c", When=WHEN)], "changeset_x")

    text = body.decode()
    assert text.count("--changeset_x\r\n") == 2
    assert text.endswith("--changeset_x--\r\n")
    assert "PUT http://host/acct/t(PartitionKey='p%27%271',RowKey='a%20b') HTTP/1.1" in text
    assert '"When": "2026-11-30T08:15:30.123456Z", "When@odata.type": "Edm.DateTime"' in text


def test_a_lean_merge_keeps_the_properties_it_does_not_send(
    table: TableClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_library_path(table, monkeypatch)
    submit_upserts(table, [row("p", "1", Old="kept", Kept="a")], merge=True)  # insert-or-merge of a new row
    submit_upserts(
        table, [row("p", "1", Kept="b", New="n")] + [row("p", str(n), N=n) for n in range(2, 101)], merge=True
    )

    assert dict(table.get_entity("p", "1")) == {
        "PartitionKey": "p",
        "RowKey": "1",
        "Old": "kept",
        "Kept": "b",
        "New": "n",
    }
    assert len(list(table.list_entities())) == 100
    body = upsert_body("http://host/acct/t", [row("p", "1", N=1)], "changeset_x", merge=True).decode()
    assert "MERGE http://host/acct/t(PartitionKey='p',RowKey='1') HTTP/1.1" in body and "If-Match" not in body


def test_a_refused_merge_raises_the_library_error_and_applies_nothing(table: TableClient) -> None:
    submit_upserts(table, [row("p", "fine", Text="before")])
    with pytest.raises(TableTransactionError):
        submit_upserts(table, [row("p", "fine", Text="after"), row("p", "bad", Text="x" * 40_000)], merge=True)

    assert [dict(e) for e in table.list_entities()] == [{"PartitionKey": "p", "RowKey": "fine", "Text": "before"}]
