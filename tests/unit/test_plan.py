"""The per-pair write plan, as a table of situations."""

from __future__ import annotations

from sync.engine.plan import DynamicsSide, LinkRef, MarketoSide, PairInput, PairPlan, plan_pair
from sync.mapping import load_mapping

MAPPING = load_mapping()
LEAD = MAPPING.entity("lead")
CONTACT = MAPPING.entity("contact")
OPTIONS = {"leadsourcecode": {1: "Advertisement", 8: "Web"}}
DELETES_PROPAGATE = MAPPING.model_copy(
    update={"deletes": MAPPING.deletes.model_copy(update={"propagate_to_marketo": True, "propagate_to_dynamics": True})}
)

ANN = {"firstName": "Ann", "lastName": "Lee", "email": "ann@x.com", "company": "Acme", "title": None, "phone": None}
ANN_LEAD = {**ANN, "leadSource": None}
LINK = LinkRef(entity="lead", dynamics_id="d1", marketo_id="7")


def dyn(values=None, **kw) -> DynamicsSide:
    return DynamicsSide(id=kw.pop("id", "d1"), values=dict(ANN if values is None else values), **kw)


def mkto(values=None, **kw) -> MarketoSide:
    return MarketoSide(id=kw.pop("id", "7"), values=dict(ANN if values is None else values), **kw)


def plan(pair: PairInput, entity=LEAD, mapping=MAPPING):
    return plan_pair(pair, entity, mapping, OPTIONS)


def test_echo_of_our_own_write_plans_nothing() -> None:
    p = plan(PairInput(dynamics=dyn(ANN_LEAD), marketo=mkto(ANN_LEAD), link=LINK, snapshot=ANN_LEAD))
    assert (p.outcome, p.writes, p.save_snapshot, p.remove_links) == ("unchanged", False, None, [])


def test_dynamics_change_flows_to_marketo_only() -> None:
    p = plan(PairInput(dynamics=dyn({**ANN, "firstName": "Anne"}), marketo=mkto(), link=LINK, snapshot=ANN))
    assert p.update_marketo == {"firstName": "Anne"}
    assert p.update_dynamics is None and p.outcome == "updated"
    assert p.save_snapshot is not None and p.save_snapshot["firstName"] == "Anne"


def test_new_dynamics_record_is_created_in_marketo_with_link_fields() -> None:
    p = plan(PairInput(dynamics=dyn(created_on="2026-11-01T10:00:00Z")))
    assert p.create_marketo == {
        "firstName": "Ann",
        "lastName": "Lee",
        "email": "ann@x.com",
        "company": "Acme",
        "dynamicsType": "Lead",
        "dynamicsIsDeleted": False,
        "dynamicsLeadId": "d1",
        "dynamicsCreatedDate": "2026-11-01T10:00:00Z",
    }
    assert (
        p.needs_marketo_id
        and p.outcome == "created"
        and p.save_snapshot == {**ANN, "title": None, "phone": None, "leadSource": None}
    )


def test_marketo_person_marked_for_dynamics_becomes_a_lead_with_required_defaults() -> None:
    p = plan(PairInput(marketo=mkto({"email": "bo@x.com", "leadSource": "Web"}, sync_to_dynamics=True)))
    assert p.create_dynamics == {
        "emailaddress1": "bo@x.com",
        "lastname": "[not provided]",
        "companyname": "[not provided]",
        "new_marketopersonid": "7",
    }  # leadSource flows to Marketo only, so it is not written to Dynamics
    assert p.needs_dynamics_id and p.outcome == "created"


def test_marketo_only_person_stays_in_marketo() -> None:
    for flag in (None, False):
        p = plan(PairInput(marketo=mkto(sync_to_dynamics=flag)))
        assert (p.outcome, p.writes) == ("skipped", False)
    # contacts are never created from Marketo
    assert plan(PairInput(marketo=mkto(sync_to_dynamics=True)), CONTACT).outcome == "skipped"


def test_sync_filter_false_skips_but_null_and_true_sync() -> None:
    assert plan(PairInput(dynamics=dyn(sync_filter=False))).outcome == "skipped"
    assert plan(PairInput(dynamics=dyn(sync_filter=None))).outcome == "created"
    p = plan(
        PairInput(dynamics=dyn({**ANN, "firstName": "X"}, sync_filter=False), marketo=mkto(), link=LINK, snapshot=ANN)
    )
    assert (p.outcome, p.writes, p.remove_links) == ("skipped", False, [])  # stops updates, deletes nothing


def test_first_link_by_email_writes_link_fields_both_ways_and_fills_blanks() -> None:
    p = plan(PairInput(dynamics=dyn({**ANN, "title": "CTO", "phone": None}), marketo=mkto({**ANN, "phone": "555"})))
    assert p.update_dynamics == {"telephone1": "555", "new_marketopersonid": "7"}
    assert p.update_marketo == {
        "title": "CTO",
        "dynamicsType": "Lead",
        "dynamicsIsDeleted": False,
        "dynamicsLeadId": "d1",
    }
    assert p.save_snapshot is not None and p.save_snapshot["title"] == "CTO" and p.save_snapshot["phone"] == "555"


def test_conflicts_resolve_by_entity_winner() -> None:
    both = PairInput(
        dynamics=dyn({**ANN, "firstName": "Anne", "lastName": "Li"}),
        marketo=mkto({**ANN, "firstName": "Anna"}),
        link=LINK,
        snapshot=ANN,
    )
    lead = plan(both)
    assert lead.update_dynamics == {"firstname": "Anna"}  # Marketo wins for leads
    assert lead.update_marketo == {"lastName": "Li"}  # the non-conflicting Dynamics change survives
    assert [c.field for c in lead.conflicts] == ["firstName"]
    contact = plan(both.model_copy(update={"link": LINK.model_copy(update={"entity": "contact"})}), CONTACT)
    assert contact.update_marketo == {"firstName": "Anne", "lastName": "Li"}  # Dynamics wins for contacts
    assert contact.update_dynamics is None


def test_dynamics_delete_flags_the_person_or_deletes_it_when_configured() -> None:
    native = plan(PairInput(marketo=mkto(), link=LINK, snapshot=ANN, dynamics_deleted_id="d1"))
    assert (native.update_marketo, native.delete_marketo, native.remove_links) == (
        {"dynamicsIsDeleted": True},
        False,
        [],
    )
    propagated = plan(
        PairInput(marketo=mkto(), link=LINK, snapshot=ANN, dynamics_deleted_id="d1"), mapping=DELETES_PROPAGATE
    )
    assert propagated.delete_marketo and propagated.remove_links == [LINK]
    never_synced = plan(PairInput(dynamics_deleted_id="d9"))
    assert (never_synced.outcome, never_synced.writes) == ("skipped", False)


def test_marketo_delete_only_unlinks_unless_configured() -> None:
    native = plan(PairInput(dynamics=dyn(), link=LINK, snapshot=ANN, marketo_deleted_id="7"))
    assert (native.delete_dynamics, native.remove_links, native.outcome) == (False, [LINK], "deleted")
    propagated = plan(
        PairInput(dynamics=dyn(), link=LINK, snapshot=ANN, marketo_deleted_id="7"), mapping=DELETES_PROPAGATE
    )
    assert propagated.delete_dynamics and propagated.remove_links == [LINK]


def test_qualification_relinks_the_person_to_the_contact() -> None:
    contact = DynamicsSide(
        id="c1", values={k: v for k, v in ANN.items() if k != "company"}, created_on="2026-11-02T00:00:00Z"
    )
    p = plan(PairInput(dynamics=contact, marketo=mkto(), snapshot=ANN, relink_from=LINK), CONTACT)
    assert p.remove_links == [LINK]
    assert p.update_marketo is not None
    assert p.update_marketo["dynamicsType"] == "Contact" and p.update_marketo["dynamicsContactId"] == "c1"
    assert p.update_dynamics == {"new_marketopersonid": "7"}
    assert p.create_marketo is None and p.save_snapshot is not None


def test_unknown_option_label_fails_the_source_record_only() -> None:
    schema = MAPPING.model_copy(
        update={
            "entities": {
                **MAPPING.entities,
                "lead": LEAD.model_copy(
                    update={
                        "fields": [
                            f if f.key != "leadSource" else f.model_copy(update={"direction": "both"})
                            for f in LEAD.fields
                        ]
                    }
                ),
            }
        }
    )
    p = plan(
        PairInput(
            dynamics=dyn({**ANN, "leadSource": "Web"}),
            marketo=mkto({**ANN, "leadSource": "Billboard"}),
            link=LINK,
            snapshot={**ANN, "leadSource": "Web"},
        ),
        schema.entity("lead"),
        schema,
    )
    assert p.outcome == "failed" and not p.writes
    assert p.error is not None and (p.error.system, p.error.record_id) == ("marketo", "7")
    assert "unknown option label 'Billboard'" in p.error.message


def test_ambiguous_match_is_an_error_never_a_guess() -> None:
    p = plan(PairInput(dynamics=dyn(), match_error="2 Marketo persons have the e-mail ann@x.com: 7, 8"))
    assert p.outcome == "failed" and not p.writes
    assert p.error is not None and p.error.code == "ambiguous_match" and p.error.record_id == "d1"


def test_linked_pair_missing_a_side_never_creates_a_twin() -> None:
    p = plan(PairInput(dynamics=dyn(), link=LINK, snapshot=ANN))
    assert (p.outcome, p.writes) == ("skipped", False)


def test_a_plan_shows_only_what_differs_from_an_empty_one() -> None:
    assert PairPlan().shown() == {}
    shown = PairPlan(dynamics_id="d1", create_marketo={"email": "a@example.com"}, outcome="created").shown()
    assert shown == {"dynamics_id": "d1", "create_marketo": {"email": "a@example.com"}, "outcome": "created"}
    unlinks = PairPlan(delete_marketo=True, remove_links=[LINK])
    assert unlinks.shown() == {"delete_marketo": True, "remove_links": [LINK]}
