"""Stream declarations (order, references, filters) and the one-way write plan, as tables of cases."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from sync.engine.crm_plan import CrmInput, plan_row
from sync.engine.filters import skip_reason
from sync.engine.merge import merge_pair
from sync.engine.references import Problem, Target, target_of
from sync.mapping.model import DEFAULT_MAPPING_FILE, MappingError, load_mapping, parse_mapping

MAPPING = load_mapping()
ACCOUNT = MAPPING.entity("account")
USERS = MAPPING.entity("systemuser")
RAW = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())


def mapping_with(change: Any) -> Any:
    raw = copy.deepcopy(RAW)
    change(raw)
    return parse_mapping(raw, "custom.yaml")


# --- declarations ----------------------------------------------------------------------------------------------------
def test_streams_run_after_what_they_point_at() -> None:
    order = [s.name for s in MAPPING.ordered_entities()]
    for stream in MAPPING.ordered_entities():
        for target in stream.depends_on():
            assert order.index(target) < order.index(stream.name), (target, stream.name)
    assert order.index("lead") < order.index("contact")  # a contact may take over a qualified lead's person


def test_declaration_order_does_not_matter() -> None:
    def reverse(raw: dict) -> None:
        raw["entities"] = dict(reversed(list(raw["entities"].items())))

    assert [s.name for s in mapping_with(reverse).ordered_entities()] == [s.name for s in MAPPING.ordered_entities()]


def test_a_cycle_of_references_fails_at_start_naming_the_streams() -> None:
    def loop(raw: dict) -> None:
        raw["entities"]["systemuser"]["references"] = [
            {"column": "parentsystemuserid", "marketo": "title", "targets": ["account"]}
        ]
        raw["entities"]["systemuser"]["fields"] = [
            f for f in raw["entities"]["systemuser"]["fields"] if f["marketo"] != "title"
        ]

    with pytest.raises(
        MappingError, match=r"custom.yaml: a cycle of references between streams: .*systemuser.*account"
    ):
        mapping_with(loop)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["entities"]["account"]["references"][0].update(targets=["nobody"]), "unknown stream 'nobody'"),
        (lambda r: r["entities"]["account"].update(marketo_object="widgets"), "marketo_object 'widgets'"),
        (lambda r: r["entities"]["account"].update(direction="both"), "companies sync one way"),
        (lambda r: r["entities"]["team"]["filter"][0].pop("not_in"), "give exactly one of 'in' and 'not_in'"),
        (lambda r: r["owners"].update(teams="sales_person"), "sales_person needs sales_person"),
        (
            lambda r: r["entities"]["account"]["fields"].append({"dynamics": "accountnumber", "marketo": "company"}),
            "Marketo field 'company' is mapped twice",
        ),
        (
            lambda r: r["entities"]["account"]["fields"].append({"dynamics": "x", "marketo": "externalCompanyId"}),
            "link field the sync maintains",
        ),
        (
            lambda r: r["entities"].update(
                custom={
                    "table": "new_product",
                    "marketo_object": "customobjects/product_c",
                    "direction": "to_marketo",
                    "fields": [{"dynamics": "new_name", "marketo": "productName"}],
                }
            ),
            "give marketo_key",
        ),
    ],
)
def test_a_bad_stream_declaration_names_what_is_wrong(change: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        mapping_with(change)


def test_references_become_one_way_fields_and_a_company_link_is_never_blanked() -> None:
    contact = MAPPING.entity("contact")
    company, owner = contact.synced_fields[-2:]
    assert (company.marketo, company.dynamics_read_column, company.never_blank) == (
        "externalCompanyId",
        "_parentcustomerid_value",
        True,
    )
    assert (owner.marketo, owner.direction, owner.never_blank) == ("externalSalesPersonId", "to_marketo", False)


# --- filters ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"applicationid": None, "accessmode": 0, "isdisabled": False}, None),
        ({"applicationid": "a-1", "accessmode": 0, "isdisabled": False}, "an application user, not a person"),
        ({"applicationid": None, "accessmode": 4, "isdisabled": False}, "a non-interactive user"),
        ({"applicationid": None, "accessmode": 0, "isdisabled": True}, "disabled: its sales person is kept"),
        ({"applicationid": "", "accessmode": 1, "isdisabled": False}, None),  # blank is null
    ],
)
def test_which_users_become_sales_persons(row: dict, reason: str | None) -> None:
    found = skip_reason(USERS, MAPPING, row)
    assert (found is None) if reason is None else (found is not None and found.startswith(reason))


@pytest.mark.parametrize(("flag", "skipped"), [(None, False), (True, False), (False, True), ("", False)])
def test_only_an_explicit_no_in_new_synctomkto_skips_an_account(flag: Any, skipped: bool) -> None:
    assert (skip_reason(ACCOUNT, MAPPING, {"new_synctomkto": flag}) is not None) is skipped


# --- reference targets -----------------------------------------------------------------------------------------------
@dataclass
class Row:
    id: str
    values: dict[str, Any]
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)


LOGICAL = "Microsoft.Dynamics.CRM.lookuplogicalname"
OWNER = next(r for r in MAPPING.entity("lead").references if r.column == "ownerid")
PARENT = next(r for r in MAPPING.entity("contact").references if r.column == "parentcustomerid")


@pytest.mark.parametrize(
    ("reference", "values", "mapping", "expected"),
    [
        (OWNER, {"_ownerid_value": "U1", f"_ownerid_value@{LOGICAL}": "systemuser"}, MAPPING, ("systemuser", "u1")),
        (OWNER, {"_ownerid_value": "T1", f"_ownerid_value@{LOGICAL}": "team"}, MAPPING, ("team", "t1")),
        (OWNER, {"_ownerid_value": None}, MAPPING, (None, None)),
        (
            PARENT,
            {"_parentcustomerid_value": "C1", f"_parentcustomerid_value@{LOGICAL}": "contact"},
            MAPPING,
            (None, None),
        ),  # a contact's parent that is a contact: no company
        (PARENT, {"_parentcustomerid_value": "A1"}, MAPPING, ("account", "a1")),  # one target: no annotation needed
        (
            OWNER,
            {"_ownerid_value": "T1", f"_ownerid_value@{LOGICAL}": "team"},
            MAPPING.model_copy(
                update={"owners": MAPPING.owners.model_copy(update={"teams": "sales_person", "sales_person": "SP-9"})}
            ),
            (None, "SP-9"),
        ),
    ],
)
def test_what_a_reference_points_at(reference: Any, values: dict, mapping: Any, expected: tuple) -> None:
    found = target_of(reference, mapping, Row("r1", values))
    assert isinstance(found, Target)
    assert (found.stream.name if found.stream else None, found.row_id) == expected


def test_an_owner_without_its_table_annotation_is_a_problem_not_a_guess() -> None:
    found = target_of(OWNER, MAPPING, Row("r1", {"_ownerid_value": "X1"}))
    assert isinstance(found, Problem) and found.waits and "did not say which table" in found.text


def test_the_administrator_policy_points_a_team_owner_at_its_administrator() -> None:
    policy = MAPPING.model_copy(update={"owners": MAPPING.owners.model_copy(update={"teams": "administrator"})})
    found = target_of(OWNER, policy, Row("r1", {"_ownerid_value": "T1", f"_ownerid_value@{LOGICAL}": "team"}))
    assert isinstance(found, Target) and found.stream is not None
    assert (found.stream.name, found.via_team) == ("systemuser", "t1")


# --- the one-way plan ------------------------------------------------------------------------------------------------
SNAPSHOT = {"company": "Fabrikam", "website": "https://f.example", "externalSalesPersonId": "u1"}


@pytest.mark.parametrize(
    ("item", "outcome", "upsert"),
    [
        (CrmInput(row_id="a1", values=SNAPSHOT), "created", {"externalCompanyId": "a1", **SNAPSHOT}),
        (
            CrmInput(row_id="a1", values={**SNAPSHOT, "website": None}),
            "created",
            {"externalCompanyId": "a1", "company": "Fabrikam", "externalSalesPersonId": "u1"},
        ),  # blanks left out
        (CrmInput(row_id="a1", values=SNAPSHOT, linked="7", snapshot=SNAPSHOT), "unchanged", None),  # an echo
        (
            CrmInput(row_id="a1", values={**SNAPSHOT, "website": None}, linked="7", snapshot=SNAPSHOT),
            "updated",
            {"externalCompanyId": "a1", "website": None},
        ),  # a cleared value is written as null
        (
            CrmInput(row_id="a1", values={**SNAPSHOT, "externalSalesPersonId": "t9"}, linked="7", snapshot=SNAPSHOT),
            "updated",
            {"externalCompanyId": "a1", "externalSalesPersonId": "t9"},
        ),  # an owner change moves the link
        (
            CrmInput(row_id="a1", values=SNAPSHOT, linked="7", snapshot=SNAPSHOT, skip="new_synctomkto is No"),
            "skipped",
            None,
        ),
        (CrmInput(row_id="a1", values=SNAPSHOT, problem="waits for team t1"), "failed", None),
        (CrmInput(row_id="a1", deleted=True, linked="7"), "skipped", None),  # on_delete keep
        (CrmInput(row_id="a1", deleted=True), "unchanged", None),  # deleted before it was ever synced
    ],
)
def test_the_one_way_plan(item: CrmInput, outcome: str, upsert: dict | None) -> None:
    plan = plan_row(ACCOUNT, item)
    assert (plan.outcome, plan.upsert) == (outcome, upsert)
    if outcome == "skipped" and item.deleted:
        assert plan.unlink and not plan.delete
    if outcome == "failed":
        assert plan.error is not None and plan.error.record_id == "a1" and "waits" in plan.error.message


def test_a_stream_that_deletes_deletes_by_its_key() -> None:
    deleting = ACCOUNT.model_copy(update={"on_delete": "delete"})
    plan = plan_row(deleting, CrmInput(row_id="a1", deleted=True, linked="7"))
    assert (plan.outcome, plan.delete, plan.unlink) == ("deleted", True, True)


# --- persons and their company ---------------------------------------------------------------------------------------
LEAD = MAPPING.entity("lead")


@pytest.mark.parametrize(
    ("dynamics", "marketo", "snapshot", "to_marketo"),
    [
        # no company: the company name flows as before
        ({"company": "Acme", "externalCompanyId": None}, None, None, {"company": "Acme"}),
        # a company: the name comes from it, only the link is written
        ({"company": "Typed", "externalCompanyId": "a1"}, None, None, {"externalCompanyId": "a1"}),
        # linked in Marketo already: a Dynamics edit of the name is not sent (Marketo would answer 1021)
        (
            {"company": "Renamed", "externalCompanyId": "a1"},
            {"company": "Acme", "externalCompanyId": "a1"},
            {"company": "Acme", "externalCompanyId": "a1"},
            {},
        ),
        # the parent account removed: Marketo cannot take the person out of its company, so nothing is written
        (
            {"company": "Acme", "externalCompanyId": None},
            {"company": "Acme", "externalCompanyId": "a1"},
            {"company": "Acme", "externalCompanyId": "a1"},
            {},
        ),
        # moved to another account: the link moves
        (
            {"externalCompanyId": "a2"},
            {"externalCompanyId": "a1"},
            {"externalCompanyId": "a1"},
            {"externalCompanyId": "a2"},
        ),
    ],
)
def test_a_person_with_a_company_leaves_the_company_fields_to_it(
    dynamics: dict, marketo: dict | None, snapshot: dict | None, to_marketo: dict
) -> None:
    merged = merge_pair(LEAD, dynamics, marketo, snapshot)
    assert {k: v for k, v in merged.to_marketo.items() if k in ("company", "externalCompanyId")} == to_marketo
    assert "company" not in merged.to_dynamics
