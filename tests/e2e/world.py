"""A test's view of both systems: the sync's context, a salesperson in Dynamics, a marketer in Marketo, and
uncounted reads of what each system holds, for asserting final state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.connectors.dynamics import DataverseClient
from sync.demo import salesperson_client
from sync.engine.context import SyncContext, build_context
from sync.engine.cycle import CycleReport, run_cycle
from sync.settings import Settings, load_settings
from sync.state import StateStore
from sync.state.queue import Delivery, WorkQueue
from tests.emulated import RunningEmulators


@dataclass
class World:
    emulators: RunningEmulators
    settings: Settings
    ctx: SyncContext
    sales: DataverseClient  # a salesperson's app: changes made by someone other than the sync
    env_file: Path  # the sync's settings, for running `python -m sync` as a process

    @classmethod
    def build(cls, emulators: RunningEmulators, state: StateStore, tmp: Path, table_prefix: str, conn: str) -> World:
        for name in ("dataverse", "marketo"):
            emulators.control(name, "POST", "/reset")
        env_file = emulators.sync_env_file(tmp, conn, table_prefix)
        with env_file.open("a") as extra:  # a queue of the test's own
            extra.write(f"SYNC_FULL_SYNC_QUEUE=q{table_prefix.lower()}\n")
        settings = load_settings(env_file)
        ctx = build_context(settings, state)
        sales = salesperson_client(emulators, settings)
        return cls(emulators, settings, ctx, sales, env_file)

    # --- the sync -------------------------------------------------------------------------------------------------
    @property
    def queue(self) -> WorkQueue:
        if not hasattr(self, "_queue"):
            self._queue = WorkQueue.from_settings(self.settings)
        return self._queue

    def drain(self, on_message: Any = None) -> int:
        """Process the full sync's queue in-process, as the queue-triggered function would."""
        from sync.engine.fullsync import process_message

        def handle(delivery: Delivery) -> None:
            if on_message is not None:
                on_message(delivery)
            process_message(self.ctx, self.queue, delivery.message, delivery.dequeue_count)

        return self.queue.drain(handle, visibility_timeout=1)

    def cycle(self, entity: str, **kw: Any) -> CycleReport:
        report = run_cycle(self.ctx, entity, **kw)
        assert report.outcome != "failed", report.error
        return report

    def upstream(self, *entities: str) -> list[CycleReport]:
        """A cycle of each stream these point at (users, teams, accounts), as their timers would have run: so
        that their references find their targets, and a full sync of them needs to bring none along."""
        mapping = self.ctx.mapping
        wanted = {t for e in entities or ("lead", "contact") for t in mapping.entity(e).reference_targets()}
        return [self.cycle(s.name) for s in mapping.ordered_entities() if s.name in wanted]

    def cycles(self, *entities: str) -> list[CycleReport]:
        return [self.cycle(e) for e in entities or ("lead", "contact")]

    # --- Dynamics, as a salesperson and as the test sees it ----------------------------------------------------------
    def dv_create(self, table: str, **values: Any) -> str:
        [result] = self.sales.create_multiple(table, [values])
        assert result.error is None, result.error
        return str(result.id)

    def dv_update(self, table: str, record_id: str, **values: Any) -> None:
        [result] = self.sales.update_multiple(table, [{f"{table}id": record_id, **values}])
        assert result.error is None, result.error

    def dv_delete(self, table: str, record_id: str) -> None:
        assert self.sales.delete(table, record_id)

    def dv_get(self, table: str, record_id: str) -> dict[str, Any] | None:
        response = self.emulators.session.get(
            f"{self.emulators.base_url('dataverse')}/_emulator/records/{table}/{record_id}",
            verify=self.emulators.ca_file,
            timeout=30,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def dv_find(self, table: str, column: str, value: str) -> list[dict[str, Any]]:
        found = self.sales.find_by(table, column, [value], [column])
        return [self.dv_get(table, r.id) for r in found[value]]  # type: ignore[misc]

    def dv_count(self, table: str) -> int:
        return int(self.emulators.control("dataverse", "GET", f"/records/{table}").json()["count"])

    def dv_sync_calls(self) -> int:
        log = self.emulators.control("dataverse", "GET", "/requests", params={"client": "sync"}).json()
        return int(log["total"])

    # --- Marketo, as a marketer and as the test sees it --------------------------------------------------------------
    def mk_form_fill(self, **values: Any) -> int:
        return int(self.emulators.control("marketo", "POST", "/act/form-fill", json=values).json()["id"])

    def mk_edit(self, person_id: int | str, **values: Any) -> None:
        self.emulators.control("marketo", "POST", "/act/edit", json={"id": int(person_id), "values": values})

    def mk_delete(self, person_id: int | str) -> None:
        self.emulators.control("marketo", "POST", "/act/delete", json={"id": int(person_id)})

    def mk_get(self, person_id: int | str) -> dict[str, Any] | None:
        response = self.emulators.session.get(
            f"{self.emulators.base_url('marketo')}/_emulator/persons/{int(person_id)}",
            verify=self.emulators.ca_file,
            timeout=30,
        )
        if response.status_code in (400, 404) and "not found" in response.text:
            return None
        response.raise_for_status()
        return response.json()

    def mk_crm(self, object_name: str, key: str, values: list[str], fields: tuple[str, ...] = ()) -> dict[str, Any]:
        """Marketo CRM records by their key (through the public API), as {key value: record values}."""
        found = self.ctx.marketo.crm(object_name).query(key, values, list(dict.fromkeys([key, *fields])))
        return {str(r.values.get(key)).lower(): r.values for r in found}

    def dv_query(self, table: str, select: list[str], filter: str | None = None) -> list[dict[str, Any]]:
        return [{**r.values, "id": r.id} for r in self.sales.query(table, select, filter)]

    def mk_by_email(self, email: str) -> list[dict[str, Any]]:
        return list(self.emulators.control("marketo", "GET", "/persons", params={"email": email}).json()["persons"])

    def mk_count(self) -> int:
        return int(self.emulators.control("marketo", "GET", "/stats").json()["persons"])

    def mk_api_calls(self) -> int:
        return int(self.emulators.control("marketo", "GET", "/requests").json()["api_calls"])

    def clear_request_logs(self) -> None:
        self.emulators.control("dataverse", "DELETE", "/requests")
        self.emulators.control("marketo", "DELETE", "/requests")
