"""The full sync's pure parts: request parsing, phases per entity, one-way plan restriction, placeholders."""

from __future__ import annotations

import pytest

from sync.engine.fullsync import FullSyncRejected, FullSyncRequest, phases_for
from sync.engine.plan import DynamicsSide, LinkRef, MarketoSide, PairInput, plan_pair, restrict_plan
from sync.engine.records import dynamics_canonical, dynamics_raw
from sync.mapping import load_mapping

MAPPING = load_mapping()
LEAD, CONTACT = MAPPING.entity("lead"), MAPPING.entity("contact")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", FullSyncRequest()),
        (b"{}", FullSyncRequest()),
        (
            b'{"entities": ["lead"], "direction": "to_marketo", "dryRun": true}',
            FullSyncRequest(entities=["lead"], direction="to_marketo", dry_run=True),
        ),
    ],
)
def test_requests_parse(body: bytes, expected: FullSyncRequest) -> None:
    assert FullSyncRequest.parse(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"direction": "up"}', "direction"),
        (b'{"entities": "lead"}', "entities"),
        (b'{"dryrun": true}', "dryrun"),  # a misspelt option is named, not ignored
    ],
)
def test_bad_requests_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(FullSyncRejected, match=message):
        FullSyncRequest.parse(body)


@pytest.mark.parametrize(
    ("entity", "direction", "phases"),
    [
        (LEAD, "both", ["to_marketo", "to_dynamics"]),
        (LEAD, "to_marketo", ["to_marketo"]),
        (LEAD, "to_dynamics", ["to_dynamics"]),
        (CONTACT, "both", ["to_marketo"]),  # contacts are never created from Marketo
        (CONTACT, "to_dynamics", []),
    ],
)
def test_phases_per_entity(entity, direction: str, phases: list[str]) -> None:
    assert phases_for(entity, direction) == phases


ANN = {
    "firstName": "Ann",
    "lastName": "Lee",
    "email": "a@x.com",
    "company": "Acme",
    "title": None,
    "phone": None,
    "leadSource": None,
}
LINK = LinkRef(entity="lead", dynamics_id="d1", marketo_id="7")


def test_a_to_marketo_job_drops_dynamics_writes_and_forgets_their_values() -> None:
    pair = PairInput(
        dynamics=DynamicsSide(id="d1", values={**ANN, "firstName": "Anne"}),
        marketo=MarketoSide(id="7", values={**ANN, "title": "CTO"}),
        link=LINK,
        snapshot=ANN,
    )
    plan = plan_pair(pair, LEAD, MAPPING, {})
    assert plan.update_dynamics == {"jobtitle": "CTO"} and plan.update_marketo == {"firstName": "Anne"}
    one_way = restrict_plan(plan, "to_marketo", LEAD)
    assert one_way.update_dynamics is None and one_way.update_marketo == {"firstName": "Anne"}
    assert one_way.save_snapshot is not None and "title" not in one_way.save_snapshot
    assert restrict_plan(plan, "both", LEAD) == plan


def test_a_one_way_job_skips_creates_on_the_other_side() -> None:
    plan = plan_pair(PairInput(marketo=MarketoSide(id="7", values=ANN, sync_to_dynamics=True)), LEAD, MAPPING, {})
    assert plan.create_dynamics is not None
    skipped = restrict_plan(plan, "to_marketo", LEAD)
    assert (skipped.outcome, skipped.writes) == ("skipped", False)


def test_required_defaults_read_as_blank_and_blanks_write_as_them() -> None:
    values, problems = dynamics_canonical(LEAD, {"lastname": "[not provided]", "firstname": "Ann"}, {})
    assert problems == [] and values == {"lastName": None, "firstName": "Ann"}
    assert dynamics_raw(LEAD, {"lastName": None, "company": "", "firstName": None}, {}) == {
        "lastname": "[not provided]",
        "companyname": "[not provided]",
        "firstname": None,
    }
