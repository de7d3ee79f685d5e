from __future__ import annotations

import pytest

from sync.connectors.dynamics import DataverseError
from sync.connectors.dynamics.changes import change_page, prefer, record_from_row

BASE = "https://org.example/api/data/v9.2/"
NEXT = BASE + "accounts?$select=name&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"
DELTA = BASE + "accounts?$select=name&$deltatoken=919042%2108%2f22%2f2017%2008%3a10%3a44"

FIRST_PAGE = {
    "@odata.context": BASE + "$metadata#accounts(name,accountid)",
    "value": [
        {"@odata.etag": 'W/"1"', "name": "Fourth Coffee", "accountid": "7D577253-3D3A-4C5B-9F1A-2B3C4D5E6F70"},
        {"@odata.etag": 'W/"2"', "name": "Litware", "accountid": "60c4e274-0d87-e711-80e5-00155db19e6d"},
    ],
    "@odata.nextLink": NEXT,
}
DELTA_PAGE = {
    "@odata.context": BASE + "$metadata#accounts(name,accountid)/$delta",
    "@odata.deltaLink": DELTA,
    "value": [
        {"@odata.etag": 'W/"9"', "name": "Monte Orton", "accountid": "fe0f6e7f-3f3b-4c5b-9f1a-2b3c4d5e6f70"},
        {
            "@odata.context": BASE + "$metadata#accounts/$deletedEntity",
            "id": "60C4E274-0D87-E711-80E5-00155DB19E6D",
            "reason": "deleted",
        },
    ],
}


def test_first_page_of_initial_read() -> None:
    page = change_page(FIRST_PAGE, "accountid")
    assert [r.id for r in page.records] == [
        "7d577253-3d3a-4c5b-9f1a-2b3c4d5e6f70",  # ids are lowercased
        "60c4e274-0d87-e711-80e5-00155db19e6d",
    ]
    assert page.records[0].etag == 'W/"1"' and page.records[0].values["name"] == "Fourth Coffee"
    assert page.deleted_ids == [] and page.cursor == NEXT and page.is_last is False and page.full_resync is False


def test_delta_page_with_upserts_then_deletions() -> None:
    page = change_page(DELTA_PAGE, "accountid", full_resync=True)
    assert [r.values["name"] for r in page.records] == ["Monte Orton"]
    assert page.deleted_ids == ["60c4e274-0d87-e711-80e5-00155db19e6d"]
    assert page.cursor == DELTA and page.is_last is True and page.full_resync is True


def test_empty_delta_still_gives_the_next_delta_link() -> None:
    page = change_page({"value": [], "@odata.deltaLink": DELTA}, "accountid")
    assert page.records == [] and page.deleted_ids == [] and page.cursor == DELTA and page.is_last


def test_a_page_without_any_link_is_an_error() -> None:
    with pytest.raises(DataverseError, match="neither"):
        change_page({"value": []}, "accountid")


def test_a_row_without_its_primary_key_is_an_error() -> None:
    with pytest.raises(DataverseError, match="accountid"):
        record_from_row({"name": "x"}, "accountid")


def test_prefer_header() -> None:
    assert prefer(page_size=500, track_changes=True) == "odata.track-changes,odata.maxpagesize=500"
    assert prefer(annotations=True) == 'odata.include-annotations="*"'
    assert prefer() == ""
