"""Leases: at most one runner per entity at a time, with an expiry so a crashed runner cannot block it forever.

Row: PartitionKey = "lease", RowKey = the lease name (an entity). Taking a free or expired lease is an insert or an
ETag-conditional replace, so of two runners racing for it exactly one succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel

from sync.state.keys import encode_key
from sync.state.tables import row_etag

_PARTITION = "lease"


class LeaseHeld(Exception):
    def __init__(self, name: str, holder: str, expires_at: datetime) -> None:
        super().__init__(f"{name} is leased by {holder} until {expires_at.isoformat()}")
        self.name = name
        self.holder = holder
        self.expires_at = expires_at


class Lease(BaseModel):
    name: str
    holder: str
    expires_at: datetime
    etag: str


class LeaseStore:
    def __init__(self, table: TableClient, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._table = table
        self._clock = clock

    def acquire(self, name: str, holder: str, duration: timedelta, now: datetime | None = None) -> Lease:
        """Take the lease for `holder`, or raise LeaseHeld if someone else holds an unexpired one. `now`: the
        caller's clock (the engine's), else the store's."""
        now = now or self._clock()
        expires_at = now + duration
        row = {
            "PartitionKey": _PARTITION,
            "RowKey": encode_key(name),
            "Name": name,
            "Holder": holder,
            "ExpiresAt": expires_at,
        }
        try:
            current = self._table.get_entity(_PARTITION, encode_key(name))
        except ResourceNotFoundError:
            current = None
        try:
            if current is None:
                meta = self._table.create_entity(row)
            else:
                if current["Holder"] != holder and current["ExpiresAt"] > now:
                    raise LeaseHeld(name, current["Holder"], current["ExpiresAt"])
                meta = self._table.update_entity(
                    row,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceNotFoundError):
            return self._raise_held(name)
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return self._raise_held(name)
            raise
        return Lease(name=name, holder=holder, expires_at=expires_at, etag=meta["etag"])

    def renew(self, lease: Lease, duration: timedelta, now: datetime | None = None) -> Lease:
        """Extend a lease we hold; raises LeaseHeld if it was taken over meanwhile (the replace is conditional on
        the ETag we hold, so it fails once anyone else wrote the row)."""
        expires_at = (now or self._clock()) + duration
        row = {
            "PartitionKey": _PARTITION,
            "RowKey": encode_key(lease.name),
            "Name": lease.name,
            "Holder": lease.holder,
            "ExpiresAt": expires_at,
        }
        try:
            meta = self._table.update_entity(
                row, mode=UpdateMode.REPLACE, etag=lease.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceNotFoundError, HttpResponseError):
            return self._raise_held(lease.name)
        return lease.model_copy(update={"expires_at": expires_at, "etag": meta["etag"]})

    def release(self, lease: Lease) -> bool:
        """Give the lease back; False if it had already been taken over (nothing is deleted then)."""
        try:
            self._table.delete_entity(
                _PARTITION, encode_key(lease.name), etag=lease.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceNotFoundError, HttpResponseError):
            return False
        return True

    def get(self, name: str) -> Lease | None:
        try:
            row = self._table.get_entity(_PARTITION, encode_key(name))
        except ResourceNotFoundError:
            return None
        return Lease(name=row["Name"], holder=row["Holder"], expires_at=row["ExpiresAt"], etag=row_etag(row))

    def _raise_held(self, name: str) -> Lease:
        current = self.get(name)
        if current is None:
            raise LeaseHeld(name, "another runner", self._clock())
        raise LeaseHeld(name, current.holder, current.expires_at)
