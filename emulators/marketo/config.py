"""Runtime settings of the emulator (per profile, patchable through the test controls) and the --faults syntax.

Fault spec: comma-separated items `marketo:<key>=<value>` (also `marketo:<key>@<value>`); items for other
emulators are ignored, items without a prefix apply to every emulator. Keys:

- a response code with a probability per API call: `606`, `615`, `604`, `608`, `611`, `502`, `713` -> that error in the
  envelope (HTTP 200, success:false); `5xx` -> an HTTP 503 with a plain-text body, as a gateway would send;
  `drop` -> the connection is dropped before the call runs; `drop_after` -> the call runs, then the connection drops.
- `latency_ms`, `latency_per_record_ms`: added latency per call and per input/output record.
- `token_ttl`: access-token lifetime in seconds (default 3600).
- `seed`: the random seed that makes the probabilities reproducible.

Example: `--faults "marketo:606=0.05,marketo:latency_ms=20,dataverse:429@0.1"`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FAULT_CODES = ("502", "604", "606", "608", "611", "615", "713", "5xx", "drop", "drop_after")
FAULT_NUMBERS = ("latency_ms", "latency_per_record_ms", "token_ttl", "seed")


@dataclass
class Config:
    """What a profile sets. Every field can be changed at run time with PATCH /_emulator/config."""

    profile: str = "fast"
    # Limits (0 = off)
    rate_limit_calls: int = 0  # calls per rolling window -> 606
    rate_limit_window_s: float = 20.0
    max_concurrency: int = 0  # in-flight calls -> 615
    daily_quota: int = 0  # calls per day (US Central) -> 607
    max_batch: int = 300  # records per call and filterValues per call (API validation, on in every profile)
    max_filter_matches: int = 1000  # a lead filter matching more -> 1003
    max_body_bytes: int = 1024 * 1024  # -> HTTP 413
    max_bulk_body_bytes: int = 10 * 1024 * 1024  # -> HTTP 413 on bulk import
    max_uri_bytes: int = 8 * 1024  # -> HTTP 414
    latency_ms: float = 0.0
    latency_per_record_ms: float = 0.0
    timeout_scale: float = 1.0  # scales Marketo's call timeouts (30 s, 60 s, 90 s, 180 s): past one -> 604
    # Auth
    token_lifetime_s: int = 3600
    # Reads: the service may leave a null field out of a lead it returns (Adobe: a requested field that is not
    # returned is null); on by default so clients are tested against it
    omit_null_fields: bool = True
    accept_query_token: bool = False  # the deprecated ?access_token= (removal announced for 2026-08-31): a flag
    # Activities
    short_page_every: int = 10  # every n-th activity page of a sequence is short (moreResult stays true); 0 = never
    empty_page_every: int = 25  # every n-th activity page of a sequence is empty (moreResult true); 0 = never
    activity_scan_limit: int = 3000  # activities examined per call: with filters a page can be short or empty
    deleted_retention_days: float = 14.0
    # Bulk jobs progress on the clock: start-up time, then rows per second
    bulk_pickup_seconds: float = 0.05  # a job stays Queued at least this long
    bulk_min_seconds: float = 0.3
    bulk_rows_per_second: float = 200_000.0
    bulk_max_running: int = 2
    bulk_max_queued: int = 10  # including the running ones
    export_daily_quota_bytes: int = 500 * 1024 * 1024
    export_max_days: int = 31
    # Faults: code -> probability per call
    fault_rates: dict[str, float] = field(default_factory=dict)
    fault_seed: int | None = None

    @classmethod
    def for_profile(cls, profile: str) -> Config:
        if profile == "fast":
            return cls(profile="fast")
        if profile == "realistic":
            return cls(
                profile="realistic",
                rate_limit_calls=100,
                max_concurrency=10,
                daily_quota=50_000,
                latency_ms=25.0,
                latency_per_record_ms=0.05,
                bulk_pickup_seconds=2.0,
                bulk_min_seconds=3.0,
                bulk_rows_per_second=5_000.0,
            )
        raise ValueError(f"unknown profile {profile!r} (fast or realistic)")

    def patch(self, changes: dict[str, Any]) -> None:
        """Apply {"name": value}; `profile` first resets every other setting to that profile's values."""
        if "profile" in changes:
            fresh = Config.for_profile(str(changes["profile"]))
            for item in dataclasses.fields(self):
                setattr(self, item.name, getattr(fresh, item.name))
        known = {item.name: item for item in dataclasses.fields(self)}
        for name, value in changes.items():
            if name == "profile":
                continue
            if name not in known:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(known))}")
            current = getattr(self, name)
            if isinstance(current, bool):
                value = bool(value)
            elif isinstance(current, int) and not isinstance(current, bool):
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
            elif name == "fault_rates":
                value = {str(k): float(v) for k, v in dict(value).items()}
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def apply_fault_spec(self, spec: str | None) -> None:
        for key, value in parse_fault_spec(spec).items():
            if key in FAULT_CODES:
                self.fault_rates[key] = value
            elif key == "latency_ms":
                self.latency_ms = value
            elif key == "latency_per_record_ms":
                self.latency_per_record_ms = value
            elif key == "token_ttl":
                self.token_lifetime_s = int(value)
            elif key == "seed":
                self.fault_seed = int(value)


def parse_fault_spec(spec: str | None, emulator: str = "marketo") -> dict[str, float]:
    """`marketo:606=0.05,marketo:latency_ms=20` -> {"606": 0.05, "latency_ms": 20.0}; other emulators' items ignored."""
    result: dict[str, float] = {}
    for raw in (spec or "").split(","):
        item = raw.strip()
        if not item:
            continue
        target, sep, rest = item.partition(":")
        if sep:
            if target.strip().lower() != emulator:
                continue
            item = rest.strip()
        key, sep, value = item.replace("@", "=", 1).partition("=")
        key = key.strip().lower()
        if not sep or key not in FAULT_CODES + FAULT_NUMBERS:
            raise ValueError(
                f"bad fault item {raw.strip()!r}: expected marketo:<key>=<value> with key one of "
                f"{', '.join(FAULT_CODES + FAULT_NUMBERS)}"
            )
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"bad fault item {raw.strip()!r}: {value!r} is not a number") from None
        if key in FAULT_CODES and not 0.0 <= number <= 1.0:
            raise ValueError(f"bad fault item {raw.strip()!r}: a probability must be between 0 and 1")
        result[key] = number
    return result
