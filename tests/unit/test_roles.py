"""The pure parts of opportunity roles: which roles an opportunity wants (customer, stakeholders, reciprocal pairs)
and what to write to get there (Marketo cannot update role or leadId)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sync.engine.references import LOGICAL_NAME
from sync.engine.roles import Role, diff_roles, wanted_roles

OPP = "00000000-0000-0000-0000-0000000000aa"
ANNA = "00000000-0000-0000-0000-0000000000c1"
BEN = "00000000-0000-0000-0000-0000000000c2"
ACME = "00000000-0000-0000-0000-0000000000a1"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


def half(cid: str, related: str, one: tuple[str, str], two: tuple[str, str], role2: str | None, **kw: Any) -> Any:
    """One half of a connection: record1 -> record2, with the role of record2 (as the reciprocal has record1's)."""
    values = {
        "_relatedconnectionid_value": related,
        "_record1id_value": one[0],
        f"_record1id_value@{LOGICAL_NAME}": one[1],
        "_record2id_value": two[0],
        f"_record2id_value@{LOGICAL_NAME}": two[1],
        "statecode": 0,
        "ismaster": True,
        **kw,
    }
    if role2:
        values["_record2roleid_value"] = "role-id"
        values[f"_record2roleid_value{FORMATTED}"] = role2
    return SimpleNamespace(id=cid, values=values, annotations={})


def pair(n: int, contact: str, role: str, table: str = "contact", **kw: Any) -> list[Any]:
    a, b = f"c{n}a", f"c{n}b"
    master = half(a, b, (OPP, "opportunity"), (contact, table), role, **kw)
    reciprocal = half(b, a, (contact, table), (OPP, "opportunity"), None, ismaster=False, statecode=0)
    reciprocal.values["_record1roleid_value"] = "role-id"
    reciprocal.values[f"_record1roleid_value{FORMATTED}"] = role
    return [master, reciprocal]


def want(customer: tuple[str | None, str | None], connections: list[Any]) -> Any:
    return wanted_roles(OPP, customer, connections, "Customer", "Stakeholder")


@pytest.mark.parametrize(
    ("customer", "connections", "roles", "skipped"),
    [
        ((ACME, "account"), [], {}, 0),
        ((ANNA, "contact"), [], {ANNA: ("Customer", True)}, 0),
        ((ACME, "account"), pair(1, ANNA, "Influencer"), {ANNA: ("Influencer", False)}, 0),
        ((ACME, "account"), pair(1, ANNA, "Influencer")[1:], {ANNA: ("Influencer", False)}, 0),  # one half seen
        ((ACME, "account"), pair(1, ANNA, "Influencer", statecode=1), {}, 0),  # deactivated
        ((ANNA, "contact"), pair(1, ANNA, "Influencer"), {ANNA: ("Customer", True)}, 0),  # the customer role wins
        (
            (ACME, "account"),
            [*pair(1, ANNA, "Influencer"), *pair(2, ANNA, "Champion")],
            {ANNA: ("Champion", False)},  # two connection roles: the first by name
            0,
        ),
        ((ACME, "account"), pair(1, ACME, "Partner", table="account"), {}, 1),
        ((ACME, "account"), pair(1, BEN, ""), {BEN: ("Stakeholder", False)}, 0),  # no connection role
    ],
)
def test_an_opportunity_wants_one_role_per_contact(
    customer: tuple[str, str], connections: list[Any], roles: dict, skipped: int
) -> None:
    wanted = want(customer, connections)
    assert wanted.roles == roles
    assert len(wanted.skipped) == skipped
    assert wanted.problems == []
    assert set(wanted.connections) == {str(c.id) for c in connections}


def test_a_role_name_longer_than_50_characters_is_a_problem_naming_contact_and_role() -> None:
    name = "x" * 51
    wanted = want((ACME, "account"), [*pair(1, ANNA, name), *pair(2, BEN, "Influencer")])
    assert wanted.roles == {BEN: ("Influencer", False)}
    [problem] = wanted.problems
    assert ANNA in problem and name in problem and "at most 50" in problem


OLD = {ANNA: Role(1, "Influencer", False), BEN: Role(2, "Customer", True)}


@pytest.mark.parametrize(
    ("new", "waiting", "deletes", "writes", "updates"),
    [
        (OLD, set(), [], [], set()),
        ({ANNA: Role(1, "Decision Maker", False), BEN: OLD[BEN]}, set(), [ANNA], [ANNA], set()),  # re-role
        ({ANNA: Role(7, "Influencer", False), BEN: OLD[BEN]}, set(), [ANNA], [ANNA], set()),  # another person
        ({ANNA: Role(1, "Influencer", True), BEN: OLD[BEN]}, set(), [], [ANNA], {ANNA}),  # isPrimary only
        ({BEN: OLD[BEN]}, set(), [ANNA], [], set()),  # removed
        ({BEN: OLD[BEN]}, {ANNA}, [], [], set()),  # its person is unknown now: kept, not deleted on a guess
        ({}, set(), [ANNA, BEN], [], set()),  # a deleted opportunity
    ],
)
def test_role_changes_are_deletes_and_creates_except_is_primary(
    new: dict, waiting: set, deletes: list, writes: list, updates: set
) -> None:
    diff = diff_roles(OLD, new, waiting)
    assert [c for c, _ in diff.deletes] == deletes
    assert [c for c, _ in diff.writes] == writes
    assert diff.updates == updates
