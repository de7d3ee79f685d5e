"""DataverseClient pieces that need no service: link pinning, argument checks, no network on construction."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sync.connectors.dynamics import DataverseClient, DataverseError, InvalidRequestError, TableMetadata

LEAD = TableMetadata(logical_name="lead", entity_set_name="leads", primary_id_attribute="leadid")


@pytest.fixture
def client() -> DataverseClient:
    client = DataverseClient("https://org.example/", "https://login.example/t", "cid", SecretStr("secret"))
    client._definitions["lead"] = LEAD  # as if read from metadata: these tests send nothing
    return client


def test_building_a_client_makes_no_call(client: DataverseClient) -> None:
    assert client.calls.total() == 0 and client.url == "https://org.example"


def test_links_must_point_at_the_organization(client: DataverseClient) -> None:
    transport = client._transport
    assert transport.url("leads?$select=x") == "https://org.example/api/data/v9.2/leads?$select=x"
    link = "https://org.example/api/data/v9.2/leads?$skiptoken=abc"
    assert transport.url(link) == link  # followed unmodified
    for foreign in ("https://evil.example/api/data/v9.2/leads", "https://org.example.evil/api/data/v9.2/x"):
        with pytest.raises(DataverseError, match="refusing a link"):
            transport.url(foreign)


def test_a_foreign_cursor_is_refused_before_any_token_is_sent(client: DataverseClient) -> None:
    with pytest.raises(DataverseError, match="refusing a link"):
        next(client.read_changes("lead", ["lastname"], "https://evil.example/api/data/v9.2/leads?$deltatoken=1"))
    assert client.calls.total() == 0


def test_page_size_is_bounded() -> None:
    for bad in (0, 5001):
        with pytest.raises(ValueError, match="page_size"):
            DataverseClient("https://o", "https://a/t", "c", SecretStr("s"), page_size=bad)


def test_orderby_and_columns_are_checked_before_sending(client: DataverseClient) -> None:
    with pytest.raises(InvalidRequestError, match="orderby"):
        next(client.query("lead", ["lastname"], orderby="lastname; drop"))
    with pytest.raises(InvalidRequestError, match="column"):
        next(client.query("lead", ["last name"]))
    assert client.calls.total() == 0
