"""Custom entities -> Marketo custom objects end to end (the default new_product -> product_c), and what happens when
the custom object type lacks what the mapping writes: `check` fails naming the field, and so does the stream's first
cycle. Both emulators, Azurite, the real connectors; each test asserts the final state in Marketo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from sync.engine.crm_stream import ObjectTypeMismatch, verify_object_type
from sync.engine.cycle import run_cycle
from sync.mapping.model import DEFAULT_MAPPING_FILE, parse_mapping
from tests.e2e.test_check import check, status_lines
from tests.e2e.world import World

PRODUCT_FIELDS = ("productCode", "productName", "purchaseDate", "externalCompanyId")


def products(world: World, *ids: str) -> dict[str, dict]:
    return world.mk_crm("customobjects/product_c", "productCode", list(ids), PRODUCT_FIELDS)


def for_account(account: str) -> dict[str, str]:
    return {"new_AccountId@odata.bind": f"/accounts({account})"}


def test_a_product_becomes_a_custom_object_linked_to_its_accounts_company_and_follows_a_move(world: World) -> None:
    first = world.dv_create("account", name="First Owner")
    second = world.dv_create("account", name="Second Owner")
    world.upstream("new_product")
    product = world.dv_create("new_product", new_name="Espresso machine", **for_account(first))
    report = world.cycle("new_product")
    assert report.counts.created == 1, report
    found = products(world, product)[product]
    assert (found["productName"], found["externalCompanyId"]) == ("Espresso machine", first)
    assert found["purchaseDate"] == world.dv_get("new_product", product)["createdon"][:10]

    world.dv_update("new_product", product, **for_account(second))
    report = world.cycle("new_product")
    assert report.counts.updated == 1, report
    assert products(world, product)[product]["externalCompanyId"] == second

    world.clear_request_logs()
    assert world.cycle("new_product").api_calls["marketo"] == 0  # idle


def test_a_product_whose_account_is_not_in_marketo_waits_and_follows_it(world: World) -> None:
    world.upstream("new_product")
    account = world.dv_create("account", name="Late Owner")
    product = world.dv_create("new_product", new_name="Grinder", **for_account(account))
    synced = world.dv_create("new_product", new_name="Kettle")
    report = world.cycle("new_product")
    assert (report.counts.failed, report.counts.created) == (1, 1), report
    assert set(products(world, product, synced)) == {synced}
    [error] = world.ctx.state.errors.list("new_product")
    assert error.record_id == product and error.code == "reference_waits" and account in error.message
    world.cycles("account", "new_product")
    assert products(world, product)[product]["externalCompanyId"] == account
    assert list(world.ctx.state.errors.list("new_product")) == []


def test_a_deleted_product_deletes_its_custom_object_record(world: World) -> None:
    account = world.dv_create("account", name="Owner")
    world.upstream("new_product")
    product = world.dv_create("new_product", new_name="Toaster", **for_account(account))
    world.cycle("new_product")
    assert product in products(world, product)
    world.dv_delete("new_product", product)
    report = world.cycle("new_product")
    assert report.counts.deleted == 1, report
    assert products(world, product) == {}


def _mapping_with(extra_field: dict | None = None, target: str | None = None) -> dict:
    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    stream = raw["entities"]["new_product"]
    if extra_field:
        stream["fields"].append(extra_field)
    if target:
        stream["marketo_object"] = target
    return raw


def test_a_mapped_field_the_custom_object_type_lacks_fails_the_first_cycle_naming_the_field(world: World) -> None:
    mapping = parse_mapping(_mapping_with({"dynamics": "new_sku", "marketo": "skuCode"}))
    ctx = dataclasses.replace(world.ctx, mapping=mapping, verified_objects=set())
    world.dv_create("new_product", new_name="Unsynced")
    world.clear_request_logs()
    report = run_cycle(ctx, "new_product")
    assert report.outcome == "failed"
    assert "skuCode" in (report.error or "") and "new_sku" in (report.error or "")
    by_object = world.emulators.control("marketo", "GET", "/requests").json()["by_object"]
    assert not any(k.endswith(".sync") for k in by_object), by_object  # nothing written

    missing = dataclasses.replace(
        world.ctx, mapping=parse_mapping(_mapping_with(target="customobjects/machine_c")), verified_objects=set()
    )
    with pytest.raises(ObjectTypeMismatch, match=r"no custom object type customobjects/machine_c.*Marketo admin"):
        verify_object_type(missing, missing.mapping.entity("new_product"))


def test_check_fails_naming_a_missing_field_and_says_plainly_that_a_type_is_missing(
    world: World, tmp_path: Path
) -> None:
    for name, raw in (
        ("field", _mapping_with({"dynamics": "new_sku", "marketo": "skuCode"})),
        ("type", _mapping_with(target="customobjects/machine_c")),
    ):
        mapping_file = tmp_path / f"{name}.yaml"
        mapping_file.write_text(yaml.safe_dump(raw))
        env_file = tmp_path / f"{name}.env"
        env_file.write_text(world.env_file.read_text() + f"SYNC_MAPPING_FILE={mapping_file}\n")
        result = check(env_file)
        assert result.returncode != 0, result.stdout
        bad = [line for line in status_lines(result.stdout) if line[0] in ("FAIL", "MISSING")]
        if name == "field":
            assert [line[2] for line in bad] == ["customobjects/product_c.skuCode"], bad
        else:
            [(status, _, item, message)] = bad
            assert (status, item) == ("MISSING", "object customobjects/machine_c")
            assert "custom object type machine_c" in message
            assert "Marketo admin" in result.stdout
