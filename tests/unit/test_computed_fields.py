"""Computed fields of one-way streams: `cases` (read another column when a condition holds), `transform: map`,
`required`, and reference fallbacks in the mapping. Pure."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sync.engine.records import dynamics_canonical, dynamics_select
from sync.mapping.model import DEFAULT_MAPPING_FILE, MappingError, load_mapping, parse_mapping

MAPPING = load_mapping()
OPPORTUNITY = MAPPING.entity("opportunity")
OPEN, WON, LOST = 0, 1, 2
STAGES = {"salesstagecode": {0: "Qualify", 1: "Develop"}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"statecode": OPEN, "estimatedvalue": 100, "actualvalue": 90, "estimatedclosedate": "2027-01-02T00:00:00Z"},
            {"amount": 100, "closeDate": "2027-01-02", "isClosed": False, "isWon": False},
        ),
        (
            {"statecode": WON, "estimatedvalue": 100, "actualvalue": 90, "actualclosedate": "2027-01-05T10:00:00Z"},
            {"amount": 90, "closeDate": "2027-01-05", "isClosed": True, "isWon": True},
        ),
        (
            {"statecode": LOST, "estimatedvalue": 100, "actualvalue": None, "actualclosedate": "2027-01-06T00:00:00Z"},
            {"amount": 100, "closeDate": "2027-01-06", "isClosed": True, "isWon": False},
        ),
    ],
)
def test_amount_close_date_and_state_follow_the_opportunitys_state(raw: dict[str, Any], expected: dict) -> None:
    values, problems = dynamics_canonical(OPPORTUNITY, {"name": "Deal", **raw}, STAGES)
    assert problems == []
    assert {k: values.get(k) for k in expected} == expected


def test_a_blank_required_field_is_a_problem_naming_the_column() -> None:
    values, problems = dynamics_canonical(OPPORTUNITY, {"name": " ", "statecode": OPEN}, STAGES)
    assert "name" not in values
    assert problems == ["Dynamics name is blank: Marketo requires name"]


def test_an_unmapped_state_value_is_a_problem_naming_the_column() -> None:
    _, problems = dynamics_canonical(OPPORTUNITY, {"name": "Deal", "statecode": 7}, STAGES)
    assert problems and all("statecode" in p and "7" in p for p in problems)


def test_the_select_reads_the_cases_columns_and_the_fallback_lookups() -> None:
    columns = dynamics_select(OPPORTUNITY)
    for column in ("estimatedvalue", "actualvalue", "statecode", "actualclosedate", "_customerid_value"):
        assert column in columns
    assert len(columns) == len(set(columns))


def _mapping(field: dict[str, Any], **stream: Any) -> dict[str, Any]:
    body = {"table": "account", "marketo_object": "companies", "direction": "to_marketo", "fields": [field]}
    return {"entities": {"account": {**body, **stream}}}


@pytest.mark.parametrize(
    ("field", "stream", "message"),
    [
        ({"dynamics": "statecode", "marketo": "x", "transform": "map"}, {}, "needs values"),
        ({"dynamics": "statecode", "marketo": "x", "values": {0: 1}}, {}, "values is for transform: map"),
        (
            {
                "dynamics": "name",
                "marketo": "x",
                "transform": "choice",
                "cases": [{"when": {"column": "a", "in": [1]}, "dynamics": "b"}],
            },
            {},
            "cases cannot be combined",
        ),
        (
            {"dynamics": "name", "marketo": "x", "cases": [{"when": {"column": "a"}, "dynamics": "b"}]},
            {},
            "exactly one of 'in' and 'not_in'",
        ),
    ],
)
def test_bad_computed_fields_fail_naming_the_field(field: dict, stream: dict, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(_mapping(field, **stream))


def test_a_computed_field_on_a_two_way_stream_fails() -> None:
    raw = {
        "entities": {
            "lead": {
                "table": "lead",
                "marketo_id_field": "dynamicsLeadId",
                "person_type": "Lead",
                "conflict_winner": "marketo",
                "fields": [{"dynamics": "statecode", "marketo": "x", "transform": "map", "values": {0: True}}],
            }
        }
    }
    with pytest.raises(MappingError, match="flow to Marketo only"):
        parse_mapping(raw)


def _roles_mapping(**roles: Any) -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    raw["entities"]["opportunityrole"]["roles"] = {**raw["entities"]["opportunityrole"]["roles"], **roles}
    return raw


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({"opportunity": "account"}, "'account' is not an opportunities stream"),
        ({"persons": "account"}, "'account' is not a persons stream"),
        ({"customer_role": "x" * 51}, "customer_role"),
    ],
)
def test_a_bad_roles_block_fails_naming_it(roles: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(_roles_mapping(**roles))


def test_roles_belong_to_a_roles_stream_only() -> None:
    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    raw["entities"]["opportunity"]["roles"] = {}
    with pytest.raises(MappingError, match="opportunities/roles stream, and only it"):
        parse_mapping(raw)
