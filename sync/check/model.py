"""What `python -m sync check` reports (CheckResult) and the metadata it reasons over (the *Facts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from sync.connectors.dynamics.models import TableMetadata
from sync.connectors.marketo.models import LeadField, ObjectDescription

Status = Literal["ok", "missing", "fail", "info"]
CheckedSystem = Literal["dynamics", "marketo", "storage"]


class CheckResult(BaseModel):
    """One line of the report: `item` on `system` is present (ok), absent (missing) or unusable (fail)."""

    model_config = ConfigDict(frozen=True)

    system: CheckedSystem
    item: str
    status: Status
    message: str
    hint: str = ""  # how to fix it, in plain words (empty when nothing needs fixing)

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects any decorator over @property; pydantic's own form
    @property
    def ok(self) -> bool:
        return self.status in ("ok", "info")


class CheckReport(BaseModel):
    results: list[CheckResult]

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects any decorator over @property; pydantic's own form
    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def problems(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]


@dataclass(frozen=True)
class Problem:
    """A connector failure in plain words: the message starts with the setting to fix, when one is to blame."""

    message: str
    hint: str


@dataclass
class DataverseFacts:
    problem: Problem | None = None  # no token, no answer, or no right to read metadata: nothing else is known
    tables: dict[str, TableMetadata | None] = field(default_factory=dict)  # None: Dataverse has no such table
    option_sets: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)  # read apart from describe


@dataclass
class MarketoFacts:
    problem: Problem | None = None
    fields: dict[str, LeadField] = field(default_factory=dict)  # by REST API name
    searchable: list[list[str]] | None = None  # describe2's searchable field sets; None when only describe answered
    used_today: int | None = None  # calls of every API user so far in Marketo's day (stats/usage)
    objects: dict[str, ObjectDescription | None] = field(default_factory=dict)  # CRM objects; None: not there
    usage_problem: str | None = None


@dataclass
class StorageFacts:
    problem: Problem | None = None
    tables: list[str] = field(default_factory=list)
    links_checked: int = 0  # streams whose link layout was looked at
    legacy_links: list[str] = field(default_factory=list)  # streams with links still in the old layout
