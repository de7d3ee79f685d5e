"""The pure core of `python -m sync check`: metadata in, one line per need out; connector errors in plain words."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from rich.console import Console

from sync.check import CheckReport, evaluate, print_report
from sync.check.explain import explain_dataverse, explain_marketo, explain_storage
from sync.check.gather import redact, secret_values
from sync.check.model import CheckResult, DataverseFacts, MarketoFacts, Problem, StorageFacts
from sync.connectors.dynamics import AuthenticationError, DataverseError, ServiceProtectionError, TransportError
from sync.connectors.dynamics.models import AlternateKey, ColumnMetadata, TableMetadata
from sync.connectors.marketo import (
    CallBudgetExhaustedError,
    DailyQuotaExceededError,
    MarketoAuthError,
    MarketoError,
    TransientError,
)
from sync.connectors.marketo.models import LeadField, ObjectDescription, ObjectField
from sync.mapping import load_mapping
from sync.settings import load_settings

MAPPING = load_mapping()
BUDGET = 40_000
LEAD_SOURCE = {1: "Advertisement", 8: "Web"}


def _col(name: str, type_: str = "String", **kw: object) -> ColumnMetadata:
    return ColumnMetadata(name=name, type=type_, **kw)


def healthy_dataverse() -> DataverseFacts:
    """What a correctly prepared environment describes for the default mapping."""
    common = [
        _col("firstname"),
        _col("lastname", required_level="ApplicationRequired"),
        _col("emailaddress1"),
        _col("jobtitle"),
        _col("telephone1"),
        _col("new_marketopersonid"),
        _col("new_synctomkto", "Boolean", options={0: "No", 1: "Yes"}),
    ]
    owner = _col("ownerid", "Owner", targets=["systemuser", "team"])
    lead_only = [
        _col("companyname"),
        _col("leadsourcecode", "Picklist", options=LEAD_SOURCE),
        _col("parentaccountid", "Lookup", targets=["account"]),
        owner,
    ]
    contact_only = [
        _col("parentcustomerid", "Customer", targets=["account", "contact"]),
        _col("originatingleadid", "Lookup", targets=["lead"]),
        owner,
    ]
    key = [AlternateKey(name="new_marketopersonid_key", columns=["new_marketopersonid"])]

    def table(name: str, columns: list[ColumnMetadata], shared: list[ColumnMetadata] = common) -> TableMetadata:
        return TableMetadata(
            logical_name=name,
            entity_set_name=f"{name}s",
            primary_id_attribute=f"{name}id",
            change_tracking=True,
            columns={c.name: c for c in [*shared, *columns]},
            keys=key if shared is common else [],
        )

    one_way = {}
    for stream in MAPPING.ordered_entities():
        if stream.is_persons:
            continue
        name = stream.table
        columns = [_col(f.dynamics, "Picklist" if f.transform == "choice" else "String") for f in stream.fields]
        columns += [_col(c) for f in stream.fields for c in f.extra_read_columns]
        columns += [_col(rule.column) for rule in stream.filter]
        columns += [owner] if any(r.column == "ownerid" for r in stream.references) else []
        lookups = {c.removeprefix("_").removesuffix("_value") for r in stream.references for c in r.read_columns}
        columns += [_col(c, "Lookup", targets=["account"]) for c in sorted(lookups - {"ownerid"})]
        columns += [_col("new_synctomkto", "Boolean", options={0: "No", 1: "Yes"})] if stream.sync_filter else []
        options = {c.name: c.model_copy(update={"options": {1: "Accounting"}}) for c in columns if c.type == "Picklist"}
        columns = [options.get(c.name, c) for c in columns]
        if name in one_way:  # a second stream of the table (opportunity roles)
            columns = [*one_way[name].columns.values(), *columns]
        one_way[name] = table(name, columns, shared=[])
        if stream.roles is not None:
            one_way[stream.roles.connection_table] = table(stream.roles.connection_table, [], shared=[])
    return DataverseFacts(
        tables={"lead": table("lead", lead_only), "contact": table("contact", contact_only), **one_way}
    )


def healthy_marketo() -> MarketoFacts:
    types = {
        "firstName": "string",
        "lastName": "string",
        "email": "email",
        "company": "string",
        "title": "string",
        "phone": "phone",
        "leadSource": "string",
        "dynamicsType": "string",
        "dynamicsIsDeleted": "boolean",
        "dynamicsCreatedDate": "datetime",
        "syncToDynamics": "boolean",
        "dynamicsLeadId": "string",
        "dynamicsContactId": "string",
        "id": "integer",
    }
    types |= {"externalCompanyId": "string", "externalSalesPersonId": "string"}
    fields = {name: LeadField(name=name, display_name=name, data_type=t) for name, t in types.items()}
    fields["id"] = fields["id"].model_copy(update={"updateable": False})
    searchable = [["id"], ["email"], ["dynamicsLeadId"], ["dynamicsContactId"], ["dynamicsType"]]
    objects: dict[str, ObjectDescription | None] = {}
    for stream in MAPPING.ordered_entities():
        if not stream.is_persons:
            names = [stream.key_field, *(f.marketo for f in stream.synced_fields)]
            names += ["leadId", "role", "isPrimary"] if stream.roles else []
            described = objects.get(stream.marketo_object)
            known = [f.name for f in described.fields] if described else []
            objects[stream.marketo_object] = ObjectDescription(
                name=stream.marketo_object,
                id_field="id",
                dedupe_fields=[stream.key_field],
                searchable_fields=[[stream.key_field]],
                relationships=[
                    {"field": r.marketo, "type": "parent", "relatedTo": {"name": "Company", "field": r.marketo}}
                    for r in stream.references
                    if stream.marketo_object.startswith("customobjects/")
                ],
                fields=[ObjectField(name=n, data_type="string") for n in dict.fromkeys([*known, *names])],
            )
    return MarketoFacts(fields=fields, searchable=searchable, used_today=1_234, objects=objects)


def healthy_storage() -> StorageFacts:
    return StorageFacts(tables=["syncwatermarks", "synclinks"])


def run(
    dataverse: DataverseFacts | None = None, marketo: MarketoFacts | None = None, storage: StorageFacts | None = None
) -> list[CheckResult]:
    return evaluate(
        MAPPING,
        dataverse or healthy_dataverse(),
        marketo or healthy_marketo(),
        storage or healthy_storage(),
        daily_budget=BUDGET,
    )


def not_ok(results: list[CheckResult]) -> set[tuple[str, str, str]]:
    return {(r.system, r.item, r.status) for r in results if not r.ok}


def test_a_prepared_environment_passes_every_check() -> None:
    results = run()
    assert not_ok(results) == set()
    assert CheckReport(results=results).exit_code == 0
    items = {(r.system, r.item) for r in results}
    expected_dynamics = {
        "access",
        "lead table",
        "lead change tracking",
        "lead alternate key",
        "contact alternate key",
        "contact.originatingleadid",
        *(f"lead.{f.dynamics}" for f in MAPPING.entity("lead").fields),
        *(f"contact.{f.dynamics}" for f in MAPPING.entity("contact").fields),
        *(f"{t}.{c}" for t in ("lead", "contact") for c in ("new_marketopersonid", "new_synctomkto")),
    }
    assert expected_dynamics <= {item for system, item in items if system == "dynamics"}
    expected_marketo = {"field dynamicsLeadId", "field dynamicsContactId", "field syncToDynamics", "field leadSource"}
    expected_marketo |= {"search by dynamicsLeadId", "search by dynamicsContactId", "search by email", "daily usage"}
    assert expected_marketo <= {item for system, item in items if system == "marketo"}
    assert ("storage", "state tables") in items
    # a field shared by both entities is one line naming both uses
    [first_name] = [r for r in results if r.item == "field firstName"]
    assert first_name.message == "string (lead.firstname, contact.firstname)"
    assert all(r.hint == "" for r in results)


Mutation = Callable[[DataverseFacts], None]


def _drop(table: str, column: str) -> Mutation:
    def apply(facts: DataverseFacts) -> None:
        described = facts.tables[table]
        assert described is not None
        del described.columns[column]
        described.keys = [k for k in described.keys if column not in k.columns]  # as Dataverse drops the key with it

    return apply


def _set(table: str, column: str, **values: object) -> Mutation:
    def apply(facts: DataverseFacts) -> None:
        described = facts.tables[table]
        assert described is not None
        described.columns[column] = described.columns[column].model_copy(update=values)

    return apply


def _table(table: str, **values: object) -> Mutation:
    def apply(facts: DataverseFacts) -> None:
        described = facts.tables[table]
        assert described is not None
        for name, value in values.items():
            setattr(described, name, value)

    return apply


def _absent(table: str) -> Mutation:
    def apply(facts: DataverseFacts) -> None:
        facts.tables[table] = None

    return apply


def _options(table: str, column: str, options: dict[int, str]) -> Mutation:
    def apply(facts: DataverseFacts) -> None:
        facts.option_sets[(table, column)] = options

    return apply


@pytest.mark.parametrize(
    ("mutations", "expected"),
    [
        ([_drop("lead", "jobtitle")], {"lead.jobtitle": "missing"}),
        (
            [_drop("contact", "new_marketopersonid")],
            {"contact.new_marketopersonid": "missing", "contact alternate key": "missing"},
        ),
        ([_drop("lead", "new_synctomkto")], {"lead.new_synctomkto": "missing"}),
        ([_table("contact", change_tracking=False)], {"contact change tracking": "missing"}),
        ([_table("lead", keys=[])], {"lead alternate key": "missing"}),
        (  # a key over more columns does not let the sync address a record by the person id alone
            [_table("lead", keys=[AlternateKey(name="k", columns=["new_marketopersonid", "emailaddress1"])])],
            {"lead alternate key": "missing"},
        ),
        ([_absent("lead")], {"lead table": "missing"}),  # one line, not one per column
        ([_drop("contact", "originatingleadid")], {"contact.originatingleadid": "missing"}),
        ([_set("contact", "originatingleadid", targets=["account"])], {"contact.originatingleadid": "fail"}),
        ([_set("contact", "originatingleadid", type="String")], {"contact.originatingleadid": "fail"}),
        ([_set("lead", "leadsourcecode", type="String", options=None)], {"lead.leadsourcecode": "fail"}),
        ([_set("lead", "leadsourcecode", options=None)], {"lead.leadsourcecode": "missing"}),
        ([_set("lead", "leadsourcecode", options={})], {"lead.leadsourcecode": "missing"}),
        (
            [_set("lead", "leadsourcecode", type="Status", options=None), _options("lead", "leadsourcecode", {1: "A"})],
            {},
        ),
        ([_set("contact", "parentcustomerid", type="String")], {"contact.parentcustomerid": "fail"}),
        ([_set("lead", "new_marketopersonid", type="Integer")], {"lead.new_marketopersonid": "fail"}),
        ([_set("lead", "new_synctomkto", type="String")], {"lead.new_synctomkto": "fail"}),
        ([_set("lead", "firstname", valid_for_update=False)], {"lead.firstname": "fail"}),
        # the sync creates leads, never contacts
        ([_set("lead", "lastname", valid_for_create=False)], {"lead.lastname": "fail"}),
        ([_set("contact", "lastname", valid_for_create=False)], {}),
        # written only by the sync's own direction: a lookup shown in Marketo, a choice flowing to Marketo
        ([_set("contact", "parentcustomerid", valid_for_update=False, valid_for_create=False)], {}),
        ([_set("lead", "leadsourcecode", valid_for_update=False)], {}),
        ([_set("lead", "new_marketopersonid", valid_for_update=False)], {"lead.new_marketopersonid": "fail"}),
        (
            [_drop("lead", "jobtitle"), _table("contact", change_tracking=False), _drop("contact", "new_synctomkto")],
            {"lead.jobtitle": "missing", "contact change tracking": "missing", "contact.new_synctomkto": "missing"},
        ),
    ],
)
def test_dataverse_names_exactly_what_is_missing(mutations: list[Mutation], expected: dict[str, str]) -> None:
    facts = healthy_dataverse()
    for mutate in mutations:
        mutate(facts)
    results = run(dataverse=facts)
    assert not_ok(results) == {("dynamics", item, status) for item, status in expected.items()}
    for result in results:
        assert bool(result.hint) == (not result.ok), result  # every problem says how to fix it
    assert (results[0].item, results[0].ok) == ("access", True)  # Dataverse answered: the problems are the schema


def test_a_missing_table_is_reported_without_its_columns() -> None:
    facts = healthy_dataverse()
    facts.tables["lead"] = None
    items = [r.item for r in run(dataverse=facts) if r.system == "dynamics"]
    assert "lead table" in items
    assert [i for i in items if i.startswith(("lead.", "lead "))] == ["lead table"]


def test_a_dataverse_problem_is_one_fail_line_and_nothing_else_about_dataverse() -> None:
    problem = Problem("DYNAMICS_CLIENT_SECRET: the token endpoint refused the client secret", "copy the secret")
    results = run(dataverse=DataverseFacts(problem=problem))
    dynamics = [r for r in results if r.system == "dynamics"]
    assert [(r.item, r.status, r.message, r.hint) for r in dynamics] == [
        ("access", "fail", problem.message, problem.hint)
    ]
    assert {r.system for r in results if r.ok} == {"marketo", "storage"}


MarketoMutation = Callable[[MarketoFacts], None]


def _remove_field(name: str) -> MarketoMutation:
    def apply(facts: MarketoFacts) -> None:
        del facts.fields[name]

    return apply


def _read_only(name: str) -> MarketoMutation:
    def apply(facts: MarketoFacts) -> None:
        facts.fields[name] = facts.fields[name].model_copy(update={"updateable": False})

    return apply


def _not_searchable(name: str) -> MarketoMutation:
    def apply(facts: MarketoFacts) -> None:
        assert facts.searchable is not None
        facts.searchable = [s for s in facts.searchable if s != [name]]

    return apply


@pytest.mark.parametrize(
    ("mutations", "expected"),
    [
        ([_remove_field("dynamicsContactId")], {"field dynamicsContactId": "missing"}),  # no search line for it
        ([_remove_field("title")], {"field title": "missing"}),
        ([_remove_field("syncToDynamics")], {"field syncToDynamics": "missing"}),
        ([_remove_field("email")], {"field email": "missing"}),
        ([_not_searchable("dynamicsLeadId")], {"search by dynamicsLeadId": "missing"}),
        ([_not_searchable("email")], {"search by email": "missing"}),
        ([_read_only("title")], {"field title": "fail"}),  # both ways: the sync writes it
        ([_read_only("leadSource")], {"field leadSource": "fail"}),  # flows to Marketo
        ([_read_only("dynamicsLeadId")], {"field dynamicsLeadId": "fail"}),
        ([_read_only("syncToDynamics")], {}),  # the sync only reads it
        ([_read_only("company")], {"field company": "fail"}),
        (
            [_remove_field("dynamicsContactId"), _remove_field("dynamicsType"), _not_searchable("dynamicsLeadId")],
            {
                "field dynamicsContactId": "missing",
                "field dynamicsType": "missing",
                "search by dynamicsLeadId": "missing",
            },
        ),
    ],
)
def test_marketo_names_exactly_what_is_missing(mutations: list[MarketoMutation], expected: dict[str, str]) -> None:
    facts = healthy_marketo()
    for mutate in mutations:
        mutate(facts)
    results = run(marketo=facts)
    assert not_ok(results) == {("marketo", item, status) for item, status in expected.items()}
    for result in results:
        assert bool(result.hint) == (not result.ok), result


def test_a_link_field_hint_says_how_to_create_it() -> None:
    facts = healthy_marketo()
    del facts.fields["dynamicsIsDeleted"]
    [line] = [r for r in run(marketo=facts) if not r.ok]
    assert "New Custom Field" in line.hint and "Boolean" in line.hint and "dynamicsIsDeleted" in line.hint


def test_without_describe2_searchability_is_information_not_a_failure() -> None:
    facts = healthy_marketo()
    facts.searchable = None
    results = run(marketo=facts)
    searches = [r for r in results if r.item.startswith("search by")]
    assert len(searches) == 3 and {r.status for r in searches} == {"info"}
    assert not_ok(results) == set()


@pytest.mark.parametrize(
    ("used", "problem", "expected"),
    [
        (1_234, None, "1,234 API calls so far today (all users), MARKETO_DAILY_CALL_BUDGET is 40,000"),
        (
            40_000,
            None,
            "40,000 API calls so far today (all users), MARKETO_DAILY_CALL_BUDGET is 40,000 (over the budget)",
        ),
        (None, "603: Access denied", "not available (603: Access denied)"),
    ],
)
def test_daily_usage_is_information(used: int | None, problem: str | None, expected: str) -> None:
    facts = healthy_marketo()
    facts.used_today, facts.usage_problem = used, problem
    [usage] = [r for r in run(marketo=facts) if r.item == "daily usage"]
    assert (usage.status, usage.message, usage.ok) == ("info", expected, True)


def test_links_in_the_old_layout_are_fail_lines_naming_migrate_links() -> None:
    storage = StorageFacts(tables=["synclinks"], links_checked=5, legacy_links=["lead", "contact"])
    results = run(storage=storage)
    assert not_ok(results) == {("storage", "lead links", "fail"), ("storage", "contact links", "fail")}
    lead = next(r for r in results if r.item == "lead links")
    assert lead.message.startswith("links of lead are in the old layout")
    assert lead.hint.startswith("run python -m sync migrate-links")
    migrated = run(storage=StorageFacts(tables=["synclinks"], links_checked=5))
    assert not not_ok(migrated)
    assert [r.message for r in migrated if r.item == "link layout"] == [
        "the links of 5 streams are in 8 buckets per side, a table each"
    ]


def test_marketo_and_storage_problems_are_fail_lines() -> None:
    marketo = MarketoFacts(problem=Problem("MARKETO_CLIENT_SECRET: refused", "copy it"))
    storage = StorageFacts(problem=Problem("AzureWebJobsStorage: no", "fix it"))
    results = run(marketo=marketo, storage=storage)
    assert not_ok(results) == {("marketo", "access", "fail"), ("storage", "state tables", "fail")}
    assert [r.item for r in results if r.system == "marketo"] == ["access"]
    assert CheckReport(results=results).exit_code == 1


CREDENTIAL_DESCRIPTION = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent is the value."


@pytest.mark.parametrize(
    ("exc", "credential", "starts"),
    [
        (
            AuthenticationError(401, "invalid_client", CREDENTIAL_DESCRIPTION),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_CLIENT_SECRET: the token endpoint refused the client secret (invalid_client: AADSTS7000215",
        ),
        (
            AuthenticationError(401, "invalid_client", "AADSTS7000215: Invalid client secret"),
            "DYNAMICS_CLIENT_CERTIFICATE",
            "DYNAMICS_CLIENT_CERTIFICATE:",
        ),
        (
            AuthenticationError(401, "invalid_client", "AADSTS7000222: The provided client secret keys are expired"),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_CLIENT_SECRET: the client secret has expired",
        ),
        (
            AuthenticationError(401, "invalid_client", "AADSTS700027: Client assertion failed"),
            "DYNAMICS_CLIENT_CERTIFICATE",
            "DYNAMICS_CLIENT_CERTIFICATE: the token endpoint refused the certificate",
        ),
        (
            AuthenticationError(
                400, "unauthorized_client", "AADSTS700016: Application with identifier 'x' was not found"
            ),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_CLIENT_ID: no app registration",
        ),
        (
            AuthenticationError(400, "invalid_request", "AADSTS90002: Tenant 'x' not found."),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_TENANT_ID: Entra ID knows no such tenant",
        ),
        (
            AuthenticationError(
                400, "invalid_resource", "AADSTS500011: The resource principal named https://x was not found"
            ),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_URL: Entra ID knows no Dataverse environment",
        ),
        (
            AuthenticationError(400, "invalid_client", "AADSTS7000999: something new"),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_CLIENT_SECRET: the token endpoint refused the credentials",
        ),
        (
            AuthenticationError(None, "AuthorityUnavailable", "Unable to get authority configuration"),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_TENANT_ID / DYNAMICS_AUTHORITY:",
        ),
        (
            AuthenticationError(None, "InvalidCertificate", "DYNAMICS_CLIENT_CERTIFICATE must be a PEM"),
            "DYNAMICS_CLIENT_CERTIFICATE",
            "DYNAMICS_CLIENT_CERTIFICATE: DYNAMICS_CLIENT_CERTIFICATE must be a PEM",
        ),
        (
            AuthenticationError(401, "0x80072560", "The user is not a member of the organization."),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_CLIENT_ID: Dataverse refused the app's token",
        ),
        (
            TransportError(None, "ConnectionError", "HTTPSConnectionPool(host='x'): Max retries exceeded"),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_URL: no answer from the Web API",
        ),
        (
            TransportError(None, "SSLError", "certificate verify failed"),
            "DYNAMICS_CLIENT_SECRET",
            "DYNAMICS_URL: no answer",
        ),
        (
            DataverseError(403, "0x80040220", "Principal user is missing prvReadEntity privilege"),
            "DYNAMICS_CLIENT_SECRET",
            "the application user may not read table metadata",
        ),
        (
            ServiceProtectionError(429, "0x80072322", "Number of requests exceeded", retry_after=30),
            "DYNAMICS_CLIENT_SECRET",
            "Dataverse is throttling this app",
        ),
        (
            DataverseError(500, "0x80040216", "An unexpected error occurred."),
            "DYNAMICS_CLIENT_SECRET",
            "Dataverse answered HTTP 500 0x80040216",
        ),
    ],
)
def test_dataverse_errors_name_the_setting_to_fix(exc: DataverseError, credential: str, starts: str) -> None:
    problem = explain_dataverse(exc, credential_setting=credential)
    assert problem.message.startswith(starts), problem.message
    assert problem.hint


def test_dataverse_hints_follow_the_failure() -> None:
    tls = explain_dataverse(TransportError(None, "SSLError", "certificate verify failed"))
    refused = explain_dataverse(TransportError(None, "ConnectionError", "Connection refused"))
    throttled = explain_dataverse(ServiceProtectionError(429, "0x80072322", "too many", retry_after=30))
    assert "SYNC_CA_BUNDLE" in tls.hint and "SYNC_CA_BUNDLE" not in refused.hint
    assert throttled.hint == "run the check again in 30 s"


@pytest.mark.parametrize(
    ("exc", "starts", "hint_has"),
    [
        (
            MarketoAuthError(
                "401", "identity endpoint refused the client credentials: invalid_client: Bad client credentials"
            ),
            "MARKETO_CLIENT_SECRET (or MARKETO_CLIENT_ID): identity endpoint refused",
            "LaunchPoint",
        ),
        (
            MarketoAuthError("603", "Access denied"),
            "access denied: the API-only user's role lacks a permission",
            "Read-Write Person",
        ),
        (
            TransientError("sync.connection", "identity endpoint unreachable: ConnectionError"),
            "MARKETO_BASE_URL: no usable answer",
            "Web Services",
        ),
        (
            TransientError("sync.connection", "identity endpoint unreachable: SSLError"),
            "MARKETO_BASE_URL:",
            "SYNC_CA_BUNDLE",
        ),
        (
            TransientError("404", "identity endpoint answered HTTP 404"),
            "MARKETO_BASE_URL:",
            "without the trailing /rest",
        ),
        (DailyQuotaExceededError("607", "Daily quota reached"), "Marketo's daily API quota is used up", "US Central"),
        (CallBudgetExhaustedError(40_000, 40_000), "MARKETO_DAILY_CALL_BUDGET:", "raise the budget"),
        (
            MarketoError("sync.protocol", "describe2 returned no result"),
            "Marketo answered sync.protocol",
            "Marketo's message",
        ),
    ],
)
def test_marketo_errors_name_the_setting_to_fix(exc: MarketoError, starts: str, hint_has: str) -> None:
    problem = explain_marketo(exc)
    assert problem.message.startswith(starts), problem.message
    assert hint_has in problem.hint


def _http_error(code: str) -> HttpResponseError:
    error = HttpResponseError(message=f"Operation returned an invalid status 'Forbidden'\nErrorCode:{code}")
    error.error_code = code
    return error


@pytest.mark.parametrize(
    ("exc", "setting", "starts", "hint_has"),
    [
        (
            _http_error("AuthenticationFailed"),
            "AzureWebJobsStorage",
            "AzureWebJobsStorage: the state tables cannot be created or read (AuthenticationFailed: Operation returned",
            "Access keys",
        ),
        (
            _http_error("AuthorizationPermissionMismatch"),
            "AzureWebJobsStorage__accountName",
            "AzureWebJobsStorage__accountName:",
            "Storage Table Data Contributor",
        ),
        (
            ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token"),
            "AzureWebJobsStorage__accountName",
            "AzureWebJobsStorage__accountName:",
            "managed identity",
        ),
        (
            ServiceRequestError("Failed to establish a new connection"),
            "SYNC_STORAGE_CONNECTION",
            "SYNC_STORAGE_CONNECTION:",
            "network",
        ),
        (
            ValueError("Connection string is either blank or malformed."),
            "AzureWebJobsStorage",
            "AzureWebJobsStorage: the state tables cannot be created or read (ValueError: Connection string",
            "connection string",
        ),
    ],
)
def test_storage_errors_name_the_setting_to_fix(exc: Exception, setting: str, starts: str, hint_has: str) -> None:
    problem = explain_storage(exc, setting=setting)
    assert problem.message.startswith(starts), problem.message
    assert "\n" not in problem.message
    assert hint_has in problem.hint


def test_every_secret_is_redacted_from_the_report(tmp_path: Path) -> None:
    env = tmp_path / "sync.env"
    env.write_text(
        "\n".join(
            [
                'AzureWebJobsStorage="DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5PT0=;"',
                "DYNAMICS_URL=https://contoso.crm.dynamics.com",
                "DYNAMICS_TENANT_ID=tenant",
                "DYNAMICS_CLIENT_ID=client",
                "DYNAMICS_CLIENT_SECRET=dyn-secret-value",
                "MARKETO_BASE_URL=https://123-ABC-456.mktorest.com",
                "MARKETO_CLIENT_ID=mkto-client",
                "MARKETO_CLIENT_SECRET=mkto-secret-value",
            ]
        )
    )
    secrets = secret_values(load_settings(env))
    assert {"dyn-secret-value", "mkto-secret-value", "c2VjcmV0a2V5PT0="} <= set(secrets)
    leaky = CheckResult(
        system="marketo",
        item="access",
        status="fail",
        message="refused mkto-secret-value and key c2VjcmV0a2V5PT0=",
        hint="not dyn-secret-value",
    )
    [clean] = redact([leaky], secrets)
    assert (clean.message, clean.hint) == ("refused *** and key ***", "not ***")
    assert (clean.system, clean.item, clean.status) == ("marketo", "access", "fail")


def _printed(results: list[CheckResult]) -> str:
    out = io.StringIO()
    print_report(CheckReport(results=results), Console(file=out, width=80, color_system=None))
    return out.getvalue()


def test_the_report_prints_one_line_per_check_and_a_fix_under_each_problem() -> None:
    facts = healthy_dataverse()
    _drop("lead", "jobtitle")(facts)
    results = run(dataverse=facts)
    text = _printed(results)
    lines = text.splitlines()
    assert len(lines) == len(results) + 1 + 1  # one fix line, one summary
    [missing] = [i for i, line in enumerate(lines) if line.startswith("MISSING")]
    assert lines[missing].startswith("MISSING  dynamics lead.jobtitle: no such column (mapped to Marketo title)")
    assert lines[missing + 1].strip().startswith("fix: add the column in make.powerapps.com > Tables > lead")
    assert lines[-1] == f"1 missing, 0 failed, of {len(results)} checks"
    assert _printed(run()).splitlines()[-1] == f"all {len(run())} checks passed"


def test_a_missing_crm_object_or_field_of_a_one_way_stream_is_named_with_its_fix() -> None:
    marketo = healthy_marketo()
    companies = marketo.objects["companies"]
    assert companies is not None
    marketo.objects["companies"] = companies.model_copy(
        update={"fields": [f for f in companies.fields if f.name != "sicCode"]}
    )
    marketo.objects["salespersons"] = None  # e.g. 1018: Marketo's native CRM sync is on
    results = {(r.system, r.item): r for r in run(marketo=marketo)}
    assert results[("marketo", "companies.sicCode")].status == "missing"
    assert "account.sic" in results[("marketo", "companies.sicCode")].message
    missing = results[("marketo", "object salespersons")]
    assert missing.status == "missing" and "1018" in missing.hint
    assert results[("marketo", "object companies")].status == "ok"


def test_every_synced_table_is_checked_for_change_tracking() -> None:
    dataverse = healthy_dataverse()
    team = dataverse.tables["team"]
    assert team is not None
    dataverse.tables["team"] = team.model_copy(update={"change_tracking": False})
    results = {(r.system, r.item): r.status for r in run(dataverse=dataverse)}
    assert results[("dynamics", "team change tracking")] == "missing"
    assert all(results[("dynamics", f"{t} change tracking")] == "ok" for t in ("systemuser", "account", "lead"))
