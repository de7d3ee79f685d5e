"""The Marketo emulator over real HTTPS with raw requests: identity, envelope, persons, activities, limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.emulated import RunningEmulators
from tests.integration.marketo_helpers import Raw, error_code


@pytest.fixture
def mk(marketo_emulator: RunningEmulators) -> Iterator[Raw]:
    marketo_emulator.control("marketo", "POST", "/reset")
    raw = Raw(marketo_emulator)
    yield raw
    raw.session.close()


# ----- identity and auth


def test_token_is_reused_until_it_expires(mk: Raw) -> None:
    first = mk.get_token().json()
    second = mk.get_token().json()
    assert first["access_token"] == second["access_token"]
    assert first["token_type"] == "bearer" and first["scope"]
    assert 0 < second["expires_in"] <= first["expires_in"] <= 3600
    mk.control("POST", "/clock/advance", json={"seconds": 3601})
    third = mk.get_token().json()
    assert third["access_token"] != first["access_token"]
    assert third["expires_in"] == 3600
    # the old token is now expired: 602, HTTP 200, success false
    old = mk.call("GET", "/rest/v1/leads/describe.json", token=first["access_token"])
    assert old.status_code == 200 and error_code(old.json()) == "602"


def test_identity_accepts_post_form_and_rejects_bad_credentials(mk: Raw) -> None:
    settings = mk.emulators.settings
    form = {
        "grant_type": "client_credentials",
        "client_id": settings["MARKETO_CLIENT_ID"],
        "client_secret": settings["MARKETO_CLIENT_SECRET"],
    }
    posted = requests.post(f"{mk.base}/identity/oauth/token", data=form, verify=mk.ca, timeout=30)
    assert posted.status_code == 200 and posted.json()["access_token"]
    bad = mk.get_token(client_secret="wrong")
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}


def test_bearer_auth_601_and_602(mk: Raw) -> None:
    missing = requests.get(f"{mk.base}/rest/v1/leads/describe.json", verify=mk.ca, timeout=30)
    assert missing.status_code == 200 and error_code(missing.json()) == "601"
    invalid = mk.call("GET", "/rest/v1/leads/describe.json", token="not-a-token:lo")
    body = invalid.json()
    assert body["success"] is False and body["errors"] == [{"code": "601", "message": "Access token invalid"}]
    mk.authenticate()
    mk.control("POST", "/tokens/expire")
    expired = mk.call("GET", "/rest/v1/leads/describe.json").json()
    assert error_code(expired) == "602"
    renewed = mk.get_token().json()["access_token"]
    assert renewed != mk.token
    assert mk.call("GET", "/rest/v1/leads/describe.json", token=renewed).json()["success"] is True


def test_query_token_only_behind_a_flag(mk: Raw) -> None:
    token = mk.authenticate()
    url = f"{mk.base}/rest/v1/leads/partitions.json"
    refused = requests.get(url, params={"access_token": token}, verify=mk.ca, timeout=30).json()
    assert error_code(refused) == "601"
    mk.control("PATCH", "/config", json={"accept_query_token": True})
    accepted = requests.get(url, params={"access_token": token}, verify=mk.ca, timeout=30).json()
    assert accepted["success"] is True


def test_identity_calls_are_tagged_and_not_counted(mk: Raw) -> None:
    mk.authenticate()
    mk.get("/rest/v1/leads/describe.json")
    mk.get("/rest/v1/leads/partitions.json")
    log = mk.requests_log()
    assert log["api_calls"] == 2 and log["identity_calls"] == 1
    assert log["by_endpoint"]["GET /rest/v1/leads/describe.json"] == 1
    usage = mk.get("/rest/v1/stats/usage.json")["result"][0]
    assert usage["total"] == 3  # the two calls above plus this one; identity excluded
    mk.control("DELETE", "/requests")
    assert mk.requests_log()["total"] == 0


# ----- envelope and request parsing


def test_envelope_shape(mk: Raw) -> None:
    body = mk.get("/rest/v1/leads.json", params={"filterType": "email", "filterValues": "nobody@example.com"})
    assert set(body) >= {"requestId", "success", "errors", "warnings", "result"}
    assert body["success"] is True and body["result"] == [] and "#" in body["requestId"]
    wrong_method = mk.call("PUT", "/rest/v1/leads.json", json={}).json()
    assert error_code(wrong_method) == "605"
    unknown = mk.get("/rest/v1/nothing.json")
    assert unknown["success"] is False and unknown["errors"][0] == {
        "code": "610",
        "message": "Requested resource not found",
    }


def test_json_errors_609_and_612(mk: Raw) -> None:
    bad_json = mk.call(
        "POST", "/rest/v1/leads.json", data=b"{not json", headers={"Content-Type": "application/json"}
    ).json()
    assert error_code(bad_json) == "609"
    wrong_type = mk.call("POST", "/rest/v1/leads.json", data=b"<xml/>", headers={"Content-Type": "text/xml"}).json()
    assert error_code(wrong_type) == "612"


def test_413_and_414(mk: Raw) -> None:
    too_long = mk.call("GET", "/rest/v1/leads.json", params={"filterType": "email", "filterValues": "a" * 9000})
    assert too_long.status_code == 414
    big = [{"email": f"p{i}@example.com", "firstName": "x" * 250} for i in range(300)]
    big.append({"email": "pad@example.com", "address": "y" * 1_000_000})
    too_big = mk.call("POST", "/rest/v1/leads.json", json={"input": big})
    assert too_big.status_code == 413


def test_method_get_override_in_url_and_in_form_body(mk: Raw) -> None:
    created = mk.sync([{"email": f"m{i}@example.com"} for i in range(3)])["result"]
    ids = ",".join(str(item["id"]) for item in created)
    form = mk.post(
        "/rest/v1/leads.json",
        data={"_method": "GET", "filterType": "id", "filterValues": ids, "fields": "email"},
    )
    assert sorted(item["email"] for item in form["result"]) == ["m0@example.com", "m1@example.com", "m2@example.com"]
    in_url = mk.post("/rest/v1/leads.json?_method=GET", data={"filterType": "email", "filterValues": "m1@example.com"})
    assert [item["id"] for item in in_url["result"]] == [created[1]["id"]]


def test_array_params_comma_joined_or_repeated(mk: Raw) -> None:
    mk.sync([{"email": "r1@example.com", "firstName": "A"}, {"email": "r2@example.com", "firstName": "B"}])
    joined = mk.get(
        "/rest/v1/leads.json",
        params={"filterType": "email", "filterValues": "r1@example.com,r2@example.com", "fields": "email,firstName"},
    )
    repeated = mk.get(
        "/rest/v1/leads.json",
        params=[
            ("filterType", "email"),
            ("filterValues", "r1@example.com"),
            ("filterValues", "r2@example.com"),
            ("fields", "email"),
            ("fields", "firstName"),
        ],
    )
    assert joined["result"] == repeated["result"] and len(joined["result"]) == 2
    assert set(joined["result"][0]) == {"id", "email", "firstName"}  # Marketo sends the id unasked


# ----- persons


def test_sync_actions_and_per_record_results_in_input_order(mk: Raw) -> None:
    first = mk.sync([{"email": "Ann@Example.com", "firstName": "Ann"}, {"email": "bob@example.com"}])["result"]
    assert [item["status"] for item in first] == ["created", "created"]
    result = mk.sync(
        [
            {"email": "ann@example.com", "lastName": "Lee"},  # dedupe is case-insensitive
            {"email": "carl@example.com"},
            {"email": "dan@example.com", "favouriteColour": "blue"},
            {"email": "BOB@example.com", "title": "CTO"},
        ],
        action="createOnly",
    )["result"]
    assert result[0] == {"status": "skipped", "reasons": [{"code": "1005", "message": "Lead already exists"}]}
    assert result[1]["status"] == "created"
    assert result[2]["reasons"] == [{"code": "1006", "message": "Field 'favouriteColour' not found"}]
    assert result[3]["reasons"][0]["code"] == "1005"
    update = mk.sync(
        [{"email": "nobody@example.com"}, {"email": "ANN@example.com", "lastName": "Lee"}], action="updateOnly"
    )["result"]
    assert update[0]["reasons"] == [{"code": "1004", "message": "Lead not found"}]
    assert update[1] == {"id": first[0]["id"], "status": "updated"}
    stored = mk.control("GET", f"/persons/{first[0]['id']}")
    assert stored["lastName"] == "Lee" and stored["firstName"] == "Ann"


def test_create_duplicate_then_1007_and_update_by_id(mk: Raw) -> None:
    one = mk.sync([{"email": "dup@example.com", "firstName": "One"}])["result"][0]["id"]
    two = mk.sync([{"email": "dup@example.com", "firstName": "Two"}], action="createDuplicate")["result"][0]
    assert two["status"] == "created" and two["id"] != one
    clash = mk.sync([{"email": "dup@example.com", "title": "x"}])["result"][0]
    assert clash["reasons"][0] == {"code": "1007", "message": "Multiple leads match the lookup criteria"}
    by_id = mk.sync([{"id": one, "title": "Boss"}], action="updateOnly", lookupField="id")["result"][0]
    assert by_id == {"id": one, "status": "updated"}
    not_allowed = mk.sync([{"id": one, "title": "x"}], action="createOrUpdate")["result"][0]
    assert not_allowed["reasons"][0]["code"] == "1003"
    assert mk.control("GET", f"/persons/{one}")["title"] == "Boss"


def test_bad_values_are_skipped_with_reasons_and_the_rest_go_through(mk: Raw) -> None:
    result = mk.sync(
        [
            {"email": "not-an-email"},
            {"email": "long@example.com", "firstName": "x" * 256},
            {"email": "bool@example.com", "syncToDynamics": "maybe"},
            {"email": "ok@example.com", "syncToDynamics": "true", "dynamicsCreatedDate": "2024-03-01T10:00:00+01:00"},
            "not an object",
        ]
    )["result"]
    assert [item["status"] for item in result] == ["skipped", "skipped", "skipped", "created", "skipped"]
    assert result[2]["reasons"][0]["code"] == "1001"
    stored = mk.control("GET", f"/persons/{result[3]['id']}")
    assert stored["syncToDynamics"] is True and stored["dynamicsCreatedDate"] == "2024-03-01T09:00:00Z"


def test_more_than_300_records_is_refused(mk: Raw) -> None:
    body = mk.sync([{"email": f"x{i}@example.com"} for i in range(301)])
    assert error_code(body) == "1003"
    assert mk.control("GET", "/stats")["persons"] == 0


def test_get_by_id_default_fields_and_filter_by_custom_field(mk: Raw) -> None:
    ident = mk.sync([{"email": "c@example.com", "firstName": "C", "dynamicsLeadId": "ABC-1", "company": "Acme"}])[
        "result"
    ][0]["id"]
    one = mk.get(f"/rest/v1/lead/{ident}.json")["result"]
    assert len(one) == 1 and set(one[0]) == {"id", "email", "updatedAt", "createdAt", "firstName"}  # no null lastName
    assert one[0]["createdAt"].endswith("Z")
    by_custom = mk.get(
        "/rest/v1/leads.json", params={"filterType": "dynamicsLeadId", "filterValues": "abc-1", "fields": "company"}
    )["result"]
    assert by_custom == [{"id": ident, "company": "Acme"}]
    assert mk.get("/rest/v1/lead/999999.json")["result"] == []
    not_searchable = mk.get("/rest/v1/leads.json", params={"filterType": "firstName", "filterValues": "C"})
    assert error_code(not_searchable) == "1011"
    unknown_field = mk.get(f"/rest/v1/lead/{ident}.json", params={"fields": "email,shoeSize"})
    assert error_code(unknown_field) == "1006"


def test_a_lead_always_carries_its_id_and_its_null_fields_may_be_left_out(mk: Raw) -> None:
    ident = mk.sync([{"email": "n@example.com", "firstName": "N"}])["result"][0]["id"]
    asked = {"filterType": "email", "filterValues": "n@example.com", "fields": "firstName,title"}
    assert mk.get("/rest/v1/leads.json", params=asked)["result"] == [{"id": ident, "firstName": "N"}]
    assert mk.get(f"/rest/v1/lead/{ident}.json", params={"fields": "title"})["result"] == [{"id": ident}]
    mk.control("PATCH", "/config", json={"omit_null_fields": False})  # the other way the service may answer
    assert mk.get("/rest/v1/leads.json", params=asked)["result"] == [{"id": ident, "firstName": "N", "title": None}]


def test_filter_paging_and_too_many_matches(mk: Raw) -> None:
    mk.control("POST", "/seed", json={"count": 1100, "values": {"dynamicsType": "Lead"}})
    too_many = mk.get("/rest/v1/leads.json", params={"filterType": "dynamicsType", "filterValues": "Lead"})
    assert error_code(too_many) == "1003" and "Too many results" in too_many["errors"][0]["message"]
    ids = [str(i) for i in range(1, 251)]
    seen: list[int] = []
    token = None
    while True:
        params = {"filterType": "id", "filterValues": ",".join(ids), "batchSize": 100, "fields": "id"}
        if token:
            params["nextPageToken"] = token
        page = mk.post("/rest/v1/leads.json?_method=GET", data=params)
        seen += [item["id"] for item in page["result"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == list(range(1, 251))


def test_delete_both_forms(mk: Raw) -> None:
    ids = [item["id"] for item in mk.sync([{"email": f"d{i}@example.com"} for i in range(3)])["result"]]
    documented = mk.post("/rest/v1/leads/delete.json", json={"input": [{"id": ids[0]}, {"id": 424242}]})["result"]
    assert documented == [
        {"id": ids[0], "status": "deleted"},
        {"id": 424242, "status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]},
    ]
    http_delete = mk.call("DELETE", "/rest/v1/leads.json", json={"input": [{"id": ids[1]}]}).json()["result"]
    assert http_delete == [{"id": ids[1], "status": "deleted"}]
    assert mk.control("GET", "/stats")["persons"] == 1


def test_describe_and_describe2(mk: Raw) -> None:
    fields = mk.get("/rest/v1/leads/describe.json")["result"]
    by_name = {item["rest"]["name"]: item for item in fields}
    for name in ("email", "firstName", "lastName", "company", "title", "phone", "leadSource", "city", "country"):
        assert name in by_name
    assert by_name["dynamicsIsDeleted"]["dataType"] == "boolean"
    assert by_name["company"] == {
        "id": 2,
        "displayName": "Company Name",
        "dataType": "string",
        "length": 255,
        "rest": {"name": "company", "readOnly": False},
        "soap": {"name": "Company", "readOnly": False},
    }
    two = mk.get("/rest/v1/leads/describe2.json")["result"][0]
    searchable = {tuple(item) for item in two["searchableFields"]}
    assert {("email",), ("id",), ("dynamicsLeadId",), ("dynamicsContactId",), ("dynamicsType",)} <= searchable
    assert {"name", "displayName", "dataType", "updateable", "crmManaged"} <= set(two["fields"][0])


def test_schema_change_add_and_remove_custom_field(mk: Raw) -> None:
    mk.control("POST", "/schema/fields", json={"name": "favouriteColour", "dataType": "string"})
    ident = mk.sync([{"email": "s@example.com", "favouriteColour": "blue"}])["result"][0]["id"]
    found = mk.get("/rest/v1/leads.json", params={"filterType": "favouriteColour", "filterValues": "BLUE"})
    assert [item["id"] for item in found["result"]] == [ident]
    mk.control("DELETE", "/schema/fields/favouriteColour")
    again = mk.sync([{"email": "s@example.com", "favouriteColour": "red"}])["result"][0]
    assert again["reasons"] == [{"code": "1006", "message": "Field 'favouriteColour' not found"}]
    assert "favouriteColour" not in mk.control("GET", f"/persons/{ident}")
    names = {item["rest"]["name"] for item in mk.get("/rest/v1/leads/describe.json")["result"]}
    assert "favouriteColour" not in names


def test_merge_and_partitions(mk: Raw) -> None:
    winner, loser = (
        item["id"]
        for item in mk.sync([{"email": "w@example.com"}, {"email": "l@example.com", "title": "CFO"}])["result"]
    )
    token = mk.get("/rest/v1/activities/pagingtoken.json", params={"sinceDatetime": "2000-01-01T00:00:00Z"})
    merged = mk.post(f"/rest/v1/leads/{winner}/merge.json", params={"leadId": loser})
    assert merged["success"] is True and "result" not in merged
    stored = mk.control("GET", f"/persons/{winner}")
    assert stored["title"] == "CFO" and stored["email"] == "w@example.com"
    assert mk.control("GET", "/stats")["persons"] == 1
    items, _, _ = _drain(mk, "/rest/v1/activities.json", token["nextPageToken"], activityTypeIds="12,32,37")
    types = [(item["activityTypeId"], item["leadId"]) for item in items]
    assert (32, winner) in types and (12, winner) in types
    assert all(lead == winner for _, lead in types)  # the loser's history moved to the winner, no Delete Lead
    partitions = mk.get("/rest/v1/leads/partitions.json")["result"]
    assert partitions == [{"id": 1, "name": "Default", "description": "Initial system lead partition"}]
    wrong = mk.sync([{"email": "p@example.com"}], partitionName="Nowhere")["result"][0]
    assert wrong["reasons"][0]["code"] == "1008"


# ----- activities


def _token(mk: Raw, since: str = "2000-01-01T00:00:00Z") -> str:
    body = mk.get("/rest/v1/activities/pagingtoken.json", params={"sinceDatetime": since})
    assert body["success"] is True
    return body["nextPageToken"]


def _drain(mk: Raw, path: str, token: str, **params: str) -> tuple[list[dict], list[int], str]:
    items: list[dict] = []
    sizes: list[int] = []
    while True:
        page = mk.get(path, params={"nextPageToken": token, **params})
        assert "moreResult" in page and page["nextPageToken"]
        items += page["result"]
        sizes.append(len(page["result"]))
        token = page["nextPageToken"]
        if not page["moreResult"]:
            return items, sizes, token


def test_lead_changes_carry_old_and_new_values_and_source(mk: Raw) -> None:
    token = _token(mk)
    ident = mk.sync([{"email": "a@example.com", "firstName": "A"}])["result"][0]["id"]
    mk.sync([{"email": "a@example.com", "firstName": "B", "title": "CEO"}])
    mk.control("POST", "/act/edit", json={"id": ident, "values": {"firstName": "C"}})
    mk.control("POST", "/act/form-fill", json={"email": "a@example.com", "lastName": "Z"})
    changes, _, _ = _drain(mk, "/rest/v1/activities/leadchanges.json", token, fields="firstName,lastName")
    assert [item["activityTypeId"] for item in changes] == [12, 13, 13, 13]  # title was not asked for
    first = changes[1]
    assert first["fields"] == [{"id": 17, "name": "firstName", "newValue": "B", "oldValue": "A"}]
    sources = [next(a["value"] for a in item["attributes"] if a["name"] == "Source") for item in changes[1:]]
    assert sources == ["Web service API", "Person detail page", "Web form fill"]
    assert set(first) >= {"id", "marketoGUID", "leadId", "activityDate", "activityTypeId", "attributes"}
    no_fields = mk.get("/rest/v1/activities/leadchanges.json", params={"nextPageToken": token})
    assert error_code(no_fields) == "701"
    forms, _, _ = _drain(mk, "/rest/v1/activities.json", token, activityTypeIds="2")
    assert [item["leadId"] for item in forms] == [ident]
    attributes = {item["name"]: item["value"] for item in forms[0]["attributes"]}
    assert '"lastName":"Z"' in attributes["Form Fields"]


def test_activities_paging_survives_short_and_empty_pages(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"short_page_every": 2, "empty_page_every": 3})
    token = _token(mk)
    mk.control("POST", "/seed", json={"count": 900, "fast": True})
    items, sizes, last = _drain(mk, "/rest/v1/activities.json", token, activityTypeIds="12", batchSize="100")
    assert len(items) == 900 and len({item["id"] for item in items}) == 900
    assert 0 in sizes[:-1] and any(0 < size < 100 for size in sizes[:-1])  # quirks happened with moreResult true
    assert [item["id"] for item in items] == sorted(item["id"] for item in items)
    # the last token is the watermark: nothing new -> empty page, moreResult false
    caught_up = mk.get("/rest/v1/activities.json", params={"nextPageToken": last, "activityTypeIds": "12"})
    assert caught_up["result"] == [] and caught_up["moreResult"] is False and caught_up["nextPageToken"]


def test_lead_changes_skip_unrelated_activities(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"activity_scan_limit": 500, "short_page_every": 0, "empty_page_every": 0})
    token = _token(mk)
    ident = mk.sync([{"email": "v@example.com", "firstName": "V"}])["result"][0]["id"]
    mk.control("POST", "/act/visit", json={"id": ident, "count": 1200})
    mk.sync([{"email": "v@example.com", "firstName": "W"}])
    changes, sizes, _ = _drain(mk, "/rest/v1/activities/leadchanges.json", token, fields="firstName")
    assert [item["activityTypeId"] for item in changes] == [12, 13]
    assert 0 in sizes  # a scan window full of visits gives an empty page with moreResult true
    visits, _, _ = _drain(mk, "/rest/v1/activities.json", token, activityTypeIds="1")
    assert len(visits) == 1200 and visits[0]["primaryAttributeValue"].startswith("www.example.com/")


def test_activity_limits_and_types(mk: Raw) -> None:
    token = _token(mk)
    eleven = ",".join(str(i) for i in range(1, 12))
    assert error_code(mk.get("/rest/v1/activities.json", params={"nextPageToken": token, "activityTypeIds": eleven}))
    leads = ",".join(str(i) for i in range(1, 32))
    too_many = mk.get(
        "/rest/v1/activities.json", params={"nextPageToken": token, "activityTypeIds": "12", "leadIds": leads}
    )
    assert error_code(too_many) == "1003"
    types = {item["id"]: item["name"] for item in mk.get("/rest/v1/activities/types.json")["result"]}
    assert types[12] == "New Lead" and types[13] == "Change Data Value" and types[37] == "Delete Lead"
    assert types[32] == "Merge Leads"
    bad = mk.get("/rest/v1/activities.json", params={"nextPageToken": "!!!", "activityTypeIds": "12"})
    assert error_code(bad) == "1003"


def test_deleted_leads_and_pruning_after_14_days(mk: Raw) -> None:
    token = _token(mk)
    created = mk.sync([{"email": f"x{i}@example.com", "lastName": f"L{i}"} for i in range(2)])["result"]
    ids = [item["id"] for item in created]
    mk.post("/rest/v1/leads/delete.json", json={"input": [{"id": ids[0]}]})
    deleted, _, _ = _drain(mk, "/rest/v1/activities/deletedleads.json", token)
    assert [(item["activityTypeId"], item["leadId"], item["primaryAttributeValueId"]) for item in deleted] == [
        (37, ids[0], ids[0])
    ]
    # a deleted person's other activities are gone with it
    news, _, _ = _drain(mk, "/rest/v1/activities.json", token, activityTypeIds="12")
    assert [item["leadId"] for item in news] == [ids[1]]
    mk.control("POST", "/clock/advance", json={"days": 15})
    mk.authenticate()
    pruned, _, _ = _drain(mk, "/rest/v1/activities/deletedleads.json", token)
    assert pruned == []


def test_paging_token_from_datetime_skips_older_activities(mk: Raw) -> None:
    mk.sync([{"email": "old@example.com"}])
    mk.control("POST", "/clock/advance", json={"seconds": 120})
    mk.authenticate()
    later = mk.control("GET", "/clock")["now"] - 60  # after the first person, before the second
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(later))
    token = _token(mk, since)
    mk.sync([{"email": "new@example.com"}])
    items, _, _ = _drain(mk, "/rest/v1/activities.json", token, activityTypeIds="12")
    assert len(items) == 1


# ----- limits and faults


def test_606_storm_in_realistic_limits(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"rate_limit_calls": 5, "rate_limit_window_s": 20})
    mk.authenticate()
    codes = [error_code(mk.get("/rest/v1/leads/partitions.json")) for _ in range(8)]
    assert codes[:5] == [None] * 5 and codes[5:] == ["606"] * 3
    body = mk.get("/rest/v1/leads/partitions.json")
    assert body["errors"][0]["message"] == "Max rate limit '5' exceeded with in '20' secs"
    mk.control("POST", "/clock/advance", json={"seconds": 21})
    assert error_code(mk.get("/rest/v1/leads/partitions.json")) is None


def test_615_concurrency(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"max_concurrency": 2, "latency_ms": 300})
    mk.authenticate()
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: error_code(mk.get("/rest/v1/leads/partitions.json")), range(6)))
    assert codes.count("615") >= 2 and codes.count(None) >= 2


def test_daily_quota_607(mk: Raw) -> None:
    mk.control("PATCH", "/config", json={"daily_quota": 50_000})
    mk.authenticate()
    mk.control("POST", "/usage", json={"used": 49_999})
    assert error_code(mk.get("/rest/v1/leads/partitions.json")) is None
    assert error_code(mk.get("/rest/v1/leads/partitions.json")) == "607"
    assert error_code(mk.get("/rest/v1/stats/usage.json")) == "607"
    mk.control("POST", "/clock/advance", json={"days": 1})
    mk.authenticate()
    assert error_code(mk.get("/rest/v1/leads/partitions.json")) is None


def test_forced_faults_and_dropped_connections(mk: Raw) -> None:
    mk.authenticate()
    mk.control("POST", "/faults", json={"next": ["604", "5xx", "drop", "611"]})
    assert error_code(mk.get("/rest/v1/leads/partitions.json")) == "604"
    assert mk.call("GET", "/rest/v1/leads/partitions.json").status_code == 503
    with pytest.raises(requests.exceptions.RequestException):
        mk.call("GET", "/rest/v1/leads/partitions.json")
    assert error_code(mk.get("/rest/v1/leads/partitions.json")) == "611"
    assert error_code(mk.get("/rest/v1/leads/partitions.json")) is None
    mk.control("POST", "/faults", json={"next": ["drop_after"]})
    with pytest.raises(requests.exceptions.RequestException):
        mk.call("POST", "/rest/v1/leads.json", json={"input": [{"email": "after@example.com"}]})
    assert mk.control("GET", "/persons", params={"email": "after@example.com"})["persons"]  # it ran


def test_a_call_past_its_timeout_gets_604(mk: Raw) -> None:
    # Timeouts scaled to 1/100: Sync Leads may run 0.9 s; at 10 ms per record 300 records would take 3 s.
    mk.control("PATCH", "/config", json={"latency_per_record_ms": 10, "timeout_scale": 0.01})
    mk.authenticate()
    assert mk.sync([{"email": "t1@example.com"}])["success"] is True
    started = time.monotonic()
    timed_out = mk.sync([{"email": f"t{i}@example.com"} for i in range(2, 300)])
    assert error_code(timed_out) == "604" and 0.85 < time.monotonic() - started < 2.5


def test_fault_rates_are_reproducible(mk: Raw) -> None:
    mk.authenticate()
    runs = []
    for _ in range(2):
        mk.control("POST", "/faults", json={"clear": True, "rates": {"606": 0.5}, "seed": 3})
        runs.append([error_code(mk.get("/rest/v1/leads/partitions.json")) for _ in range(12)])
    assert runs[0] == runs[1] and "606" in runs[0] and None in runs[0]


# ----- profiles and the --faults syntax


def test_parse_fault_spec() -> None:
    from emulators.marketo.config import parse_fault_spec

    spec = "marketo:606=0.05, marketo:latency_ms@20,dataverse:429@0.1,drop=0.01"
    assert parse_fault_spec(spec) == {"606": 0.05, "latency_ms": 20.0, "drop": 0.01}
    for bad in ("marketo:606", "marketo:999=0.1", "marketo:606=2", "marketo:606=often"):
        with pytest.raises(ValueError, match="bad fault item"):
            parse_fault_spec(bad)


def test_realistic_profile_and_faults_from_the_command_line(tmp_path) -> None:
    from tests.emulated import start_emulators

    running = start_emulators(
        "--only",
        "marketo",
        "--profile",
        "realistic",
        "--faults",
        "marketo:latency_ms=1,marketo:latency_per_record_ms=0,dataverse:429@0.5",
        directory=tmp_path,
    )
    try:
        mk = Raw(running)
        config = mk.control("GET", "/config")
        assert config["profile"] == "realistic" and config["latency_ms"] == 1.0
        assert (config["rate_limit_calls"], config["max_concurrency"], config["daily_quota"]) == (100, 10, 50_000)
        mk.authenticate()
        codes = [error_code(mk.get("/rest/v1/leads/partitions.json")) for _ in range(102)]
        assert codes[:100] == [None] * 100 and codes[100:] == ["606", "606"]
        log = mk.requests_log()
        assert log["api_calls"] == 102 and log["by_code"]["606"] == 2
        usage = mk.control("GET", "/stats")["usedToday"]
        assert usage == 100  # refused calls are not counted
    finally:
        mk.session.close()  # no idle keep-alive connection left: the server then stops at once
        running.session.close()
        running.stop()
