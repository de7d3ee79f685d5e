from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sync.mapping import DEFAULT_MAPPING_FILE, MappingError, load_mapping, parse_mapping
from sync.mapping.model import FieldMapping
from sync.mapping.transforms import TransformError, comparable, from_dynamics, from_marketo, same, to_dynamics


def default_raw() -> dict:
    return yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())


def test_default_mapping_has_the_native_fields_and_winners() -> None:
    mapping = load_mapping()
    lead, contact = mapping.entity("lead"), mapping.entity("contact")
    assert {(f.dynamics, f.marketo) for f in lead.fields} >= {
        ("firstname", "firstName"),
        ("lastname", "lastName"),
        ("emailaddress1", "email"),
        ("companyname", "company"),
        ("jobtitle", "title"),
        ("telephone1", "phone"),
        ("leadsourcecode", "leadSource"),
    }
    assert lead.field("leadSource").transform == "choice" and lead.field("leadSource").direction == "to_marketo"
    assert contact.field("company").transform == "lookup_name" and contact.field("company").direction == "to_marketo"
    assert (lead.conflict_winner, contact.conflict_winner) == ("marketo", "dynamics")
    assert lead.required_defaults == {"lastname": "[not provided]", "companyname": "[not provided]"}
    assert [e.name for e in mapping.person_streams()] == ["lead", "contact"]
    assert [e.name for e in mapping.ordered_entities()] == [
        "systemuser",
        "team",
        "account",
        "lead",
        "contact",
        "opportunity",
        "opportunityrole",  # after the opportunities and the contacts whose persons they name
        "new_product",
    ]
    assert mapping.link_fields.dynamics_marketo_id == "new_marketopersonid"


def test_json_mapping_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(default_raw()))
    assert load_mapping(path).entity("contact").conflict_winner == "dynamics"


def _broken(mutate) -> dict:
    raw = default_raw()
    mutate(raw)
    return raw


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r["entities"]["lead"]["fields"][2].update(transform="shout"),
            "entity 'lead', field 'emailaddress1'",
        ),
        (lambda r: r["entities"]["lead"]["fields"][0].update(direction="sideways"), "entity 'lead', field 'firstname'"),
        (lambda r: r["entities"]["lead"]["fields"][1].pop("marketo"), "entity 'lead', field 'lastname'"),
        (lambda r: r["entities"]["contact"].pop("conflict_winner"), "entity 'contact'"),
        (lambda r: r["entities"]["contact"]["fields"][5].update(direction="both"), "field 'parentcustomerid'"),
        (
            lambda r: r["entities"]["lead"]["fields"].append({"dynamics": "x", "marketo": "email"}),
            "entity 'lead', field 'x': Marketo field 'email' is mapped twice",
        ),
        (
            lambda r: r["entities"]["lead"]["fields"].append({"dynamics": "new_marketopersonid", "marketo": "mid"}),
            "link column",
        ),
        (lambda r: r["entities"]["lead"]["required_defaults"].update(budget="1"), "entity 'lead', field 'budget'"),
        (lambda r: r["entities"]["lead"].update(colour="red"), "entity 'lead', colour"),
    ],
)
def test_bad_mapping_names_file_entity_and_field(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_broken(mutate)))
    with pytest.raises(MappingError) as raised:
        load_mapping(path)
    assert str(raised.value).startswith(str(path))
    assert message in str(raised.value)


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(MappingError, match="not valid JSON"):
        load_mapping(bad)
    with pytest.raises(MappingError, match="entities"):
        parse_mapping(["a list"], "inline")


def test_unknown_entity_is_named() -> None:
    with pytest.raises(MappingError, match="unknown entity 'invoice'"):
        load_mapping().entity("invoice")


TEXT = FieldMapping(dynamics="firstname", marketo="firstName")
EMAIL = FieldMapping(dynamics="emailaddress1", marketo="email", transform="email")
CHOICE = FieldMapping(dynamics="leadsourcecode", marketo="leadSource", transform="choice", direction="to_marketo")
WHEN = FieldMapping(dynamics="new_when", marketo="when", transform="datetime")
FLAG = FieldMapping(dynamics="new_flag", marketo="flag", transform="boolean")
NUM = FieldMapping(dynamics="new_n", marketo="n", transform="number")
DAY = FieldMapping(dynamics="new_day", marketo="day", transform="date")
LOOKUP = FieldMapping(dynamics="parentcustomerid", marketo="company", transform="lookup_name", direction="to_marketo")
OPTIONS = {1: "Advertisement", 8: "Web"}


@pytest.mark.parametrize(
    ("field", "raw", "canonical"),
    [
        (TEXT, "Ann", "Ann"),
        (TEXT, "", None),
        (TEXT, "   ", None),
        (EMAIL, "  Ann@X.com ", "Ann@X.com"),
        (CHOICE, 8, "Web"),
        (CHOICE, None, None),
        (WHEN, "2026-11-25T13:00:00+01:00", "2026-11-25T12:00:00Z"),
        (WHEN, "2026-11-25T12:00:00Z", "2026-11-25T12:00:00Z"),
        (FLAG, True, True),
        (NUM, 3, 3),
    ],
)
def test_from_dynamics(field, raw, canonical) -> None:
    assert from_dynamics(field, raw, options=OPTIONS) == canonical


@pytest.mark.parametrize(
    ("field", "raw", "canonical"),
    [
        (TEXT, "Ann", "Ann"),
        (EMAIL, "ann@x.com", "ann@x.com"),
        (CHOICE, "Web", "Web"),
        (WHEN, "2026-11-25T04:00:00-08:00", "2026-11-25T12:00:00Z"),
        (FLAG, "true", True),
        (FLAG, "0", False),
        (NUM, "3", 3),
        (NUM, "2.5", 2.5),
        (NUM, "", None),
        (DAY, "2024-02-29", "2024-02-29"),
        (DAY, "2026-11-25T23:30:00-08:00", "2026-11-26"),
    ],
)
def test_from_marketo(field, raw, canonical) -> None:
    assert from_marketo(field, raw) == canonical


def test_lookup_reads_the_display_name() -> None:
    assert from_dynamics(LOOKUP, "0f8fad5b-d9cb-469f-a165-70867728950e", formatted="Contoso Ltd") == "Contoso Ltd"
    assert from_dynamics(LOOKUP, None, formatted=None) is None
    with pytest.raises(TransformError, match="cannot be written"):
        to_dynamics(LOOKUP, "Contoso")


def test_choice_label_to_value_and_unknown_label() -> None:
    assert to_dynamics(CHOICE, "web", options=OPTIONS) == 8
    with pytest.raises(TransformError, match=r"leadsourcecode: unknown option label 'Billboard'"):
        to_dynamics(CHOICE, "Billboard", options=OPTIONS)
    with pytest.raises(TransformError, match="option value 99 has no label"):
        from_dynamics(CHOICE, 99, options=OPTIONS)


@pytest.mark.parametrize(
    ("field", "value"),
    [(WHEN, "yesterday"), (FLAG, "maybe"), (NUM, "three"), (DAY, "2026-02-30"), (DAY, "soon")],
)
def test_bad_values_name_the_field(field, value) -> None:
    with pytest.raises(TransformError, match=field.marketo):
        from_marketo(field, value)


def test_comparison_rules() -> None:
    assert same(EMAIL, "Ann@X.com", "ann@x.com")
    assert not same(TEXT, "Ann", "ann")
    assert same(CHOICE, "web", "Web")
    assert same(NUM, 3, 3.0)
    assert comparable(FLAG, True) is True


def test_synced_fields_are_cached_and_a_copy_with_other_fields_works_them_out_again() -> None:
    lead = load_mapping(DEFAULT_MAPPING_FILE).entity("lead")
    assert lead.synced_fields is lead.synced_fields  # asked for every record: worked out once
    assert lead.field("email").dynamics == "emailaddress1"
    with pytest.raises(KeyError):
        lead.field("noSuchField")
    renamed = [f.model_copy(update={"dynamics": "emailaddress2"}) if f.key == "email" else f for f in lead.fields]
    copied = lead.model_copy(update={"fields": renamed})
    assert copied.field("email").dynamics == "emailaddress2"
    assert [f.key for f in copied.synced_fields] == [f.key for f in lead.synced_fields]
    assert lead.field("email").dynamics == "emailaddress1"  # the original is unchanged
