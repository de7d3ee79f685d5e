"""The thin shell of `python -m sync check`: read the systems' metadata (describe calls only, no data) into Facts.

Connector errors become Problems naming the setting to fix; nothing here decides what is missing (see rules.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from azure.core.exceptions import AzureError

from sync.check.explain import explain_dataverse, explain_marketo, explain_storage
from sync.check.model import CheckReport, CheckResult, DataverseFacts, MarketoFacts, StorageFacts
from sync.check.rules import evaluate
from sync.connectors.dynamics import DataverseClient, DataverseError, NotFoundError
from sync.connectors.dynamics.metadata import OPTION_SET_CASTS
from sync.connectors.marketo import MarketoClient, MarketoError
from sync.connectors.marketo.budget import marketo_day
from sync.connectors.marketo.transport import RetryPolicy
from sync.mapping.model import MappingConfig, load_mapping
from sync.settings import Settings
from sync.state import StateStore, table_names

# A check answers in seconds or says why not: few retries, short waits.
DATAVERSE_OPTIONS = {"max_retries": 2, "max_retry_after": 5.0, "timeout": (10.0, 30.0)}
MARKETO_RETRY = RetryPolicy(attempts=2, backoff_initial=0.5, backoff_max=2.0, rate_limit_wait=5.0)
STORAGE_OPTIONS = {"retry_total": 1, "connection_timeout": 10, "read_timeout": 30}


def run_check(settings: Settings, *, now: datetime | None = None) -> CheckReport:
    mapping = load_mapping(settings.sync_mapping_file)
    results = evaluate(
        mapping,
        gather_dataverse(settings, mapping),
        gather_marketo(settings, now or datetime.now(UTC), mapping),
        gather_storage(settings, mapping),
        daily_budget=settings.marketo_daily_call_budget,
    )
    return CheckReport(results=redact(results, secret_values(settings)))


def gather_dataverse(settings: Settings, mapping: MappingConfig) -> DataverseFacts:
    credential = "DYNAMICS_CLIENT_CERTIFICATE" if settings.dynamics_client_certificate else "DYNAMICS_CLIENT_SECRET"
    facts = DataverseFacts()
    try:
        with DataverseClient.from_settings(settings, **DATAVERSE_OPTIONS) as client:
            for entity in mapping.ordered_entities():
                if entity.roles is not None:  # its stakeholders' table, whose changes it reads too
                    try:
                        facts.tables[entity.roles.connection_table] = client.describe(entity.roles.connection_table)
                    except NotFoundError:
                        facts.tables[entity.roles.connection_table] = None
                try:
                    table = client.describe(entity.table)
                except NotFoundError:
                    facts.tables[entity.table] = None
                    continue
                facts.tables[entity.table] = table
                for mapped in entity.fields:
                    column = table.columns.get(mapped.dynamics)
                    unread = column is not None and column.options is None and column.type in OPTION_SET_CASTS
                    if mapped.transform == "choice" and unread:  # describe expands Picklists only
                        key = (entity.table, mapped.dynamics)
                        facts.option_sets[key] = client.option_set(entity.table, mapped.dynamics)
    except DataverseError as exc:
        return DataverseFacts(problem=explain_dataverse(exc, credential_setting=credential))
    return facts


def gather_marketo(settings: Settings, now: datetime, mapping: MappingConfig | None = None) -> MarketoFacts:
    facts = MarketoFacts()
    with MarketoClient.from_settings(settings, retry=MARKETO_RETRY, timeout=30.0) as client:
        try:
            try:
                schema = client.describe_leads2()
                fields, facts.searchable = schema.fields, schema.searchable_fields
            except MarketoError as exc:
                if exc.systemic:
                    raise
                fields = client.describe_leads()  # an instance without describe2: no searchable sets
        except MarketoError as exc:
            return MarketoFacts(problem=explain_marketo(exc))
        facts.fields = {f.name: f for f in fields}
        for stream in mapping.ordered_entities() if mapping else []:
            if not stream.is_persons and stream.marketo_object not in facts.objects:
                try:
                    facts.objects[stream.marketo_object] = client.crm(stream.marketo_object).describe()
                except MarketoError as exc:
                    if exc.systemic:
                        return MarketoFacts(problem=explain_marketo(exc))
                    facts.objects[stream.marketo_object] = None  # e.g. 1018 CRM enabled, or no such custom object
        try:
            today = marketo_day(now)
            facts.used_today = sum(day.total for day in client.usage() if day.date == today)
        except MarketoError as exc:
            facts.usage_problem = f"{exc.code}: {exc.message}"
    return facts


def gather_storage(settings: Settings, mapping: MappingConfig | None = None) -> StorageFacts:
    """The state tables (created when missing) and, per stream of the mapping, whether its links are still in the old
    table (either earlier layout: a one-row query per stream, sync/state/links.py)."""
    if settings.sync_storage_connection is not None:
        setting = "SYNC_STORAGE_CONNECTION"
    elif settings.azure_webjobs_storage is not None:
        setting = "AzureWebJobsStorage"
    else:
        setting = "AzureWebJobsStorage__accountName"
    try:
        store = StateStore.from_settings(settings, **STORAGE_OPTIONS)  # creates the tables that are not there yet
        streams = [stream.name for stream in mapping.ordered_entities()] if mapping else []
        legacy = [name for name in streams if store.links.has_legacy_rows(name)]
    except (AzureError, ValueError) as exc:  # ValueError: a malformed connection string
        return StorageFacts(problem=explain_storage(exc, setting=setting))
    tables = table_names(store.prefix)
    return StorageFacts(tables=tables, links_checked=len(streams), legacy_links=legacy)


# --- no secret in the report ---------------------------------------------------------------------------------------

_CONNECTION_SECRETS = re.compile(r"(?:AccountKey|SharedAccessSignature|SharedAccessKey)=([^;]+)", re.IGNORECASE)


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, and the key parts of connection strings, longest first."""
    found: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            raw = value.get_secret_value()
            found.add(raw)
            found.update(_CONNECTION_SECRETS.findall(raw))
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def redact(results: list[CheckResult], secrets: list[str]) -> list[CheckResult]:
    def clean(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return [r.model_copy(update={"message": clean(r.message), "hint": clean(r.hint)}) for r in results]
