"""The three-way merge, as a table of cases."""

from __future__ import annotations

import pytest

from sync.engine.merge import differs_from_snapshot, merge_pair
from sync.mapping import EntityMapping, FieldMapping

M = object()  # "no snapshot value for this field"

LEAD = EntityMapping(
    name="lead",
    table="lead",
    marketo_id_field="dynamicsLeadId",
    person_type="Lead",
    conflict_winner="marketo",
    fields=[
        FieldMapping(dynamics="firstname", marketo="firstName"),
        FieldMapping(dynamics="emailaddress1", marketo="email", transform="email"),
        FieldMapping(dynamics="leadsourcecode", marketo="leadSource", transform="choice", direction="to_marketo"),
        FieldMapping(dynamics="jobtitle", marketo="title", winner="dynamics"),
        FieldMapping(dynamics="new_score", marketo="score", direction="to_dynamics", transform="number"),
    ],
)


def case(field: str, d: object, m: object, base: object) -> tuple[dict, dict, dict | None]:
    return {field: d}, {field: m}, (None if base is M else {field: base})


# (field, dynamics, marketo, snapshot, expected to_dynamics, expected to_marketo, conflict?)
CASES = [
    ("firstName", "Ann", "Ann", "Ann", {}, {}, False),  # in sync (and an echo of our own write)
    ("firstName", "Ann", "Ann", M, {}, {}, False),  # first link, already equal
    ("firstName", "Anne", "Ann", "Ann", {}, {"firstName": "Anne"}, False),  # Dynamics changed
    ("firstName", "Ann", "Anna", "Ann", {"firstName": "Anna"}, {}, False),  # Marketo changed
    ("firstName", "Anne", "Anna", "Ann", {"firstName": "Anna"}, {}, True),  # both: lead -> Marketo wins
    ("title", "CTO", "CEO", "VP", {}, {"title": "CTO"}, True),  # both: per-field override -> Dynamics wins
    ("firstName", None, "Ann", M, {"firstName": "Ann"}, {}, False),  # first link fills the blank side
    ("firstName", "Ann", None, M, {}, {"firstName": "Ann"}, False),  # ... either way, whoever the winner is
    ("firstName", "Bo", "Al", M, {"firstName": "Al"}, {}, True),  # first link, both set: winner
    ("firstName", None, "Ann", "Ann", {}, {"firstName": None}, False),  # cleared in Dynamics flows as a clear
    ("email", "Ann@X.com", "ann@x.com", "ann@x.com", {}, {}, False),  # e-mail compares case-insensitively
    ("email", "new@x.com", "ann@x.com", "ANN@x.com", {}, {"email": "new@x.com"}, False),
    ("leadSource", "Web", "Partner", "Web", {}, {}, False),  # one way: target's own edit stays
    ("leadSource", "Event", "Web", "Web", {}, {"leadSource": "Event"}, False),  # one way: source change flows
    ("leadSource", "Event", "Partner", "Web", {}, {"leadSource": "Event"}, False),  # ... and is never a conflict
    ("leadSource", None, "Partner", M, {}, {}, False),  # one way, first link: a blank source does not blank
    ("score", 5, 7, 5, {"score": 7}, {}, False),  # to_dynamics: Marketo's change flows
    ("score", 9, 7, 7, {}, {}, False),  # to_dynamics: Dynamics' own edit stays
    ("score", 7, 7.0, 5, {}, {}, False),  # numbers compare as numbers
]


@pytest.mark.parametrize(("field", "d", "m", "base", "to_dynamics", "to_marketo", "conflict"), CASES)
def test_merge_field(field, d, m, base, to_dynamics, to_marketo, conflict) -> None:
    dyn, mkto, snap = case(field, d, m, base)
    result = merge_pair(LEAD, dyn, mkto, snap)
    assert result.to_dynamics == to_dynamics
    assert result.to_marketo == to_marketo
    assert bool(result.conflicts) == conflict


def test_changes_to_different_fields_on_both_sides_both_survive() -> None:
    snapshot = {"firstName": "Ann", "title": "VP"}
    result = merge_pair(LEAD, {"firstName": "Anne", "title": "VP"}, {"firstName": "Ann", "title": "SVP"}, snapshot)
    assert result.to_marketo == {"firstName": "Anne"}
    assert result.to_dynamics == {"title": "SVP"}
    assert result.snapshot == {"firstName": "Anne", "title": "SVP", "email": None, "leadSource": None, "score": None}
    assert result.conflicts == []


def test_snapshot_is_what_both_sides_hold_after_the_writes() -> None:
    result = merge_pair(LEAD, {"firstName": "Anne", "email": "A@x.com"}, {"firstName": "Anna", "email": "a@x.com"}, {})
    expected = {"firstName": "Anna", "email": "A@x.com", "title": None, "leadSource": None, "score": None}
    assert result.snapshot == expected
    # Merging what both hold after the writes against that snapshot is a no-op: our own writes never echo.
    after = merge_pair(LEAD, result.snapshot, result.snapshot, result.snapshot)
    assert after.is_noop


def test_conflict_is_reported_with_all_three_values() -> None:
    result = merge_pair(LEAD, {"firstName": "Anne"}, {"firstName": "Anna"}, {"firstName": "Ann"})
    [conflict] = result.conflicts
    assert conflict.model_dump() == {
        "field": "firstName",
        "dynamics_value": "Anne",
        "marketo_value": "Anna",
        "base_value": "Ann",
        "winner": "marketo",
    }


def test_create_in_marketo_copies_what_may_flow_there() -> None:
    dyn = {"firstName": "Ann", "email": "a@x.com", "leadSource": "Web", "score": 3, "title": None}
    result = merge_pair(LEAD, dyn, None, None)
    assert result.to_marketo == {"firstName": "Ann", "email": "a@x.com", "leadSource": "Web"}
    assert result.to_dynamics == {}


def test_create_in_dynamics_copies_what_may_flow_there() -> None:
    mkto = {"firstName": "Ann", "email": "a@x.com", "leadSource": "Web", "score": 3}
    result = merge_pair(LEAD, None, mkto, None)
    assert result.to_dynamics == {"firstName": "Ann", "email": "a@x.com", "score": 3}


def test_one_way_entity_makes_every_field_one_way() -> None:
    one_way = LEAD.model_copy(update={"direction": "to_marketo"})
    result = merge_pair(one_way, {"firstName": "Ann"}, {"firstName": "Anna"}, {"firstName": "Ann"})
    assert result.is_noop  # Marketo's edit of a one-way field does not flow back
    result = merge_pair(one_way, {"firstName": "Bo"}, {"firstName": "Anna"}, {"firstName": "Ann"})
    assert result.to_marketo == {"firstName": "Bo"} and result.conflicts == []


@pytest.mark.parametrize(
    ("values", "snapshot", "expected"),
    [
        ({"firstName": "Ann"}, {"firstName": "Ann"}, False),
        ({"email": "A@X.COM"}, {"email": "a@x.com"}, False),
        ({"firstName": "Anne"}, {"firstName": "Ann"}, True),
        ({"firstName": "Ann"}, {}, True),
        ({"unmapped": "x"}, {}, False),
    ],
)
def test_differs_from_snapshot(values, snapshot, expected) -> None:
    assert differs_from_snapshot(LEAD, values, snapshot) is expected
