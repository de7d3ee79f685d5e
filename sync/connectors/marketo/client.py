"""MarketoClient: the one object the engine uses to talk to Marketo (REST, bulk, CRM objects)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from pydantic import SecretStr

from sync.connectors.http import build_session
from sync.connectors.marketo.activities import ActivitiesApi, marketo_datetime
from sync.connectors.marketo.auth import RENEW_BEFORE_SECONDS, TokenProvider
from sync.connectors.marketo.budget import CallBudget, Limits, RateWindow, marketo_day, shared_limits
from sync.connectors.marketo.bulk_extract import BulkExporter
from sync.connectors.marketo.bulk_import import BulkImporter, PendingImport, PollPolicy
from sync.connectors.marketo.crm import CrmObjectClient, list_custom_objects
from sync.connectors.marketo.models import (
    ActivityPage,
    ActivityType,
    BulkImportResult,
    BulkJobStatus,
    LeadField,
    MarketoPerson,
    PersonSchema,
    RecordResult,
    UsageDay,
    UsageUser,
)
from sync.connectors.marketo.persons import PersonsApi
from sync.connectors.marketo.transport import RetryPolicy, Transport

if TYPE_CHECKING:
    from sync.settings import Settings


class MarketoClient:
    """Marketo Engage REST and bulk APIs within a daily call budget, a rate window and a concurrency cap.

    `calls` counts every HTTP call by operation; "token" counts identity calls (they do not use Marketo's quota).
    Thread-safe: threads share the token, the budget, the rate window and the concurrency slots.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: SecretStr,
        *,
        extra_ca: Path | None = None,
        daily_call_budget: int = 40_000,
        max_concurrency: int = 4,
        calls_used_today: int = 0,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        rate_limit_calls: int = 100,
        rate_limit_seconds: float = 20.0,
        token_renew_before: float = RENEW_BEFORE_SECONDS,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(client_secret, SecretStr):
            raise TypeError("client_secret must be a pydantic SecretStr")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.calls: Counter[str] = Counter()
        self.limits = limits or Limits(
            CallBudget(daily_call_budget, used=calls_used_today),
            max_concurrency=max_concurrency,
            window=RateWindow(rate_limit_calls, rate_limit_seconds),
        )
        self._session = session or build_session(extra_ca, pool_maxsize=self.limits.max_concurrency + 2)
        self._tokens = TokenProvider(
            self._session, self.base_url, client_id, client_secret, self.calls, renew_before=token_renew_before
        )
        self._transport = Transport(
            self._session, self.base_url, self._tokens, self.limits, self.calls, retry=retry, timeout=timeout
        )
        self._persons = PersonsApi(self._transport, self.limits.max_concurrency)
        self._activities = ActivitiesApi(self._transport)
        self.importer = BulkImporter(self._transport, poll)
        self.exporter = BulkExporter(self._transport, poll)
        self.exporter.runs.prior = self.importer.runs  # until an export is seen run, the imports' pace

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> MarketoClient:
        """A client for the configured instance; clients built this way in one process share one budget and cap."""
        options.setdefault(
            "limits",
            shared_limits(
                settings.marketo_base_url,
                settings.marketo_client_id,
                settings.marketo_daily_call_budget,
                settings.marketo_max_concurrency,
            ),
        )
        return cls(
            settings.marketo_base_url,
            settings.marketo_client_id,
            settings.marketo_client_secret,
            extra_ca=settings.sync_ca_bundle,
            **options,
        )

    def __repr__(self) -> str:
        return f"MarketoClient(base_url={self.base_url!r}, client_id={self.client_id!r}, budget={self.budget!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> MarketoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- budget ------------------------------------------------------------------------------------------------------

    @property
    def budget(self) -> CallBudget:
        return self.limits.budget

    @property
    def quota_calls(self) -> int:
        """Calls that count against Marketo's daily quota (all but identity)."""
        return self.calls.total() - self.calls["token"]

    # --- change detection --------------------------------------------------------------------------------------------

    def get_paging_token(self, since: datetime) -> str:
        return self._activities.paging_token(since)

    def lead_changes(self, token: str, fields: list[str], batch_size: int = 300, **kw: Any) -> Iterator[ActivityPage]:
        return self._activities.lead_changes(token, fields, batch_size, **kw)

    def deleted_leads(self, token: str, batch_size: int = 300) -> Iterator[ActivityPage]:
        return self._activities.deleted_leads(token, batch_size)

    def activities(
        self, token: str, activity_type_ids: list[int], batch_size: int = 300, **kw: Any
    ) -> Iterator[ActivityPage]:
        return self._activities.activities(token, activity_type_ids, batch_size, **kw)

    def activity_types(self) -> list[ActivityType]:
        return self._activities.types()

    # --- persons -----------------------------------------------------------------------------------------------------

    def get_lead(self, lead_id: int, fields: Sequence[str] = ()) -> MarketoPerson | None:
        return self._persons.get_lead(lead_id, fields)

    def get_leads(
        self, filter_type: str, values: Sequence[str | int], fields: list[str], batch_size: int = 300
    ) -> list[MarketoPerson]:
        return self._persons.get_leads(filter_type, values, fields, batch_size)

    def sync_leads(
        self,
        records: Sequence[dict[str, Any]],
        action: str = "createOrUpdate",
        lookup_field: str = "email",
        partition_name: str | None = None,
    ) -> list[RecordResult]:
        return self._persons.sync_leads(records, action, lookup_field, partition_name)

    def delete_leads(self, ids: Sequence[int]) -> list[RecordResult]:
        return self._persons.delete_leads(ids)

    def describe_leads(self) -> list[LeadField]:
        return self._persons.describe()

    def describe_leads2(self) -> PersonSchema:
        return self._persons.describe2()

    def merge_leads(self, winner_id: int, loser_ids: Sequence[int], merge_in_crm: bool = False) -> None:
        self._persons.merge(winner_id, loser_ids, merge_in_crm)

    def partitions(self) -> list[dict[str, Any]]:
        return self._persons.partitions()

    # --- bulk --------------------------------------------------------------------------------------------------------

    def import_leads(
        self,
        rows: Iterable[dict[str, Any]],
        fields: list[str],
        lookup_field: str = "email",
        partition_name: str | None = None,
        list_id: int | None = None,
    ) -> BulkImportResult:
        return self.importer.run(rows, fields, lookup_field, partition_name, list_id)

    def start_import_leads(
        self, rows: Iterable[dict[str, Any]], fields: list[str], lookup_field: str = "email"
    ) -> PendingImport:
        """Submit a Bulk Import without waiting (see BulkImporter.submit); end it with finish_import_leads."""
        return self.importer.submit(rows, fields, lookup_field)

    def finish_import_leads(self, pending: PendingImport) -> BulkImportResult:
        return self.importer.wait(pending)

    def server_time(self) -> datetime | None:
        """Marketo's own time as its last answer gave it (the Date header), for windows on its createdAt."""
        return self._transport.server_time

    def export_leads(
        self, fields: list[str], start: datetime, end: datetime, date_field: str = "updatedAt"
    ) -> Iterator[dict[str, str]]:
        return self.exporter.export("leads", start, end, fields=fields, date_field=date_field)

    def start_lead_export(
        self, fields: list[str], start: datetime, end: datetime, date_field: str = "createdAt"
    ) -> BulkJobStatus:
        """One export job over [start, end) (at most 31 days), run to completion. Read it with lead_export_rows."""
        return self.wait_lead_export(self.queue_lead_export(fields, start, end, date_field))

    def queue_lead_export(
        self, fields: list[str], start: datetime, end: datetime, date_field: str = "createdAt"
    ) -> str:
        """Create and enqueue an export job over [start, end) (at most 31 days) without waiting; its id."""
        window = {date_field: {"startAt": marketo_datetime(start), "endAt": marketo_datetime(end)}}
        return self.exporter.queue_job("leads", {"format": "CSV", "fields": list(fields), "filter": window})

    def imported_rows_in_window(self, start: datetime, end: datetime) -> int:
        """About how many persons of this client's Bulk Imports an export over the createdAt window [start, end]
        will hold, when it starts where the windows asked before it ended (run_times.ImportSpans.window_rows)."""
        return self.importer.spans.window_rows(start.timestamp(), end.timestamp())

    def wait_lead_export(self, export_id: str, rows: int | None = None) -> BulkJobStatus:
        """Wait for a queued lead export to complete (BulkJobFailedError if it fails); `rows`: how many it should
        hold, when the caller knows (its polls are then timed by that size)."""
        return self.exporter.wait_job("leads", export_id, rows)

    def lead_export_rows(
        self, export_id: str, start_byte: int = 0, header: Sequence[str] | None = None
    ) -> Iterator[tuple[dict[str, str], int]]:
        """Rows of a finished lead export, each with the byte offset to resume after it."""
        return self.exporter.rows_from("leads", export_id, start_byte, header)

    def export_activities(
        self, activity_type_ids: list[int], start: datetime, end: datetime, fields: Sequence[str] = ()
    ) -> Iterator[dict[str, str]]:
        return self.exporter.export(
            "activities", start, end, fields=fields, date_field="createdAt", activity_type_ids=activity_type_ids
        )

    # --- CRM objects -------------------------------------------------------------------------------------------------

    def crm(self, object_name: str) -> CrmObjectClient:
        return CrmObjectClient(self._transport, object_name)

    def custom_object_types(self, names: Sequence[str] = ()) -> list[dict[str, Any]]:
        return list_custom_objects(self._transport, names)

    # --- usage -------------------------------------------------------------------------------------------------------

    def usage(self, last_7_days: bool = False) -> list[UsageDay]:
        path = "/rest/v1/stats/usage/last7days.json" if last_7_days else "/rest/v1/stats/usage.json"
        days = []
        for item in self._transport.get("usage", path).result:
            users = [
                UsageUser(user_id=str(u.get("userId", "")), count=int(u.get("count", 0)))
                for u in item.get("users") or []
            ]
            days.append(UsageDay(date=item["date"], total=int(item.get("total", 0)), users=users))
        return days

    def refresh_budget_from_usage(self, now: datetime | None = None) -> int:
        """Raise the budget's count to today's subscription total (conservative: counts every user). Returns it."""
        today: date = marketo_day(now or datetime.now().astimezone())
        total = sum(day.total for day in self.usage() if day.date == today)
        self.budget.observe(total)
        return self.budget.used
