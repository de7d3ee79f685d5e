"""Benchmark (issue 14's acceptance): a full sync of the one-way entities with their persons, run in-process.

Seeds, through the emulators' controls and (connections) the Web API, before the profile is switched on:
  N accounts, 2N contacts (each pointing at an account), N opportunities (each with a contact as its customer:
  the primary role) and one stakeholder connection each to another contact (the second role; Dataverse makes its
  reciprocal), and N products (each pointing at an account); every row with new_synctomkto Yes.
Then, with the chosen profile (`realistic` by default) on both emulators, runs the full sync job of account,
contact, opportunity, opportunityrole and new_product (sales persons are brought along) to Marketo as the
queue-triggered function would (start_full_sync, then WorkQueue.drain with process_message; Azurite holds the
state tables and the queue), then one incremental cycle of every stream, which must write nothing.

Prints wall time; Marketo calls per object (from the emulator's request log, `by_object`) against ceil(N/300); the
records in Marketo per object; peak RSS of this process (VmHWM, reset before the job); the idle cycle's writes.
Asserts nothing about time. Writes only to a temporary directory.

    .venv/bin/python bench/bench_entities.py --records 1000 --profile fast     # development
    .venv/bin/python bench/bench_entities.py                                   # 10,000 (20,000 contacts), realistic
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_incremental import bench_services, reset_peak_rss, rss_kib

from sync.demo import salesperson_client
from sync.engine import fullsync
from sync.engine.context import build_context
from sync.engine.cycle import run_cycle
from sync.settings import load_settings
from sync.state import StateStore
from sync.state.queue import Delivery, WorkQueue
from sync.state.tables import service_client

STREAMS = ["account", "contact", "opportunity", "opportunityrole", "new_product"]
TERMINAL = {"succeeded", "failed", "cancelled"}
CONNECTIONS_PER_CALL = 1000
YES = {"new_synctomkto": True}


def seed(emulators: Any, sales: Any, n: int) -> dict[str, int]:
    def control(body: dict[str, Any]) -> list[str]:
        return list(emulators.control("dataverse", "POST", "/seed", json={"fast": True, **body}).json()["ids"])

    control({"table": "account", "count": n, "values": YES})
    control({"table": "contact", "count": 2 * n, "values": YES, "refs": {"parentcustomerid": "account"}})
    control({"table": "opportunity", "count": n, "values": YES, "refs": {"customerid": "contact"}})
    control({"table": "new_product", "count": n, "refs": {"new_accountid": "account"}})
    customers = {r.id: r.values["_customerid_value"] for r in sales.query("opportunity", ["_customerid_value"])}
    taken = {str(c).lower() for c in customers.values()}
    others = [r.id for r in sales.query("contact", ["contactid"]) if r.id.lower() not in taken]
    [role] = sales.query("connectionrole", ["connectionroleid"], filter="name eq 'Influencer'")
    stakeholders = [  # each opportunity: its customer contact, and a stakeholder that is another contact
        {
            "record1id_opportunity@odata.bind": f"/opportunities({opportunity})",
            "record2id_contact@odata.bind": f"/contacts({others[i]})",
            "record2roleid@odata.bind": f"/connectionroles({role.id})",
        }
        for i, opportunity in enumerate(sorted(customers))
    ]
    for start in range(0, len(stakeholders), CONNECTIONS_PER_CALL):
        results = sales.create_multiple("connection", stakeholders[start : start + CONNECTIONS_PER_CALL])
        failed = [r.error for r in results if r.error is not None]
        if failed:
            raise SystemExit(f"seeding connections failed: {failed[:3]}")
    return {"companies": n, "persons": 2 * n, "opportunities": n, "opportunities/roles": 2 * n, "product_c": n}


def run_job(ctx: Any, queue: WorkQueue) -> str:
    job = fullsync.start_full_sync(ctx, queue, fullsync.FullSyncRequest(entities=STREAMS, direction="to_marketo"))
    errors: list[str] = []

    def handle(delivery: Delivery) -> None:
        fullsync.process_message(ctx, queue, delivery.message, delivery.dequeue_count)

    def failed(delivery: Delivery, exc: Exception) -> None:
        errors.append(f"{delivery.message.entity} page {delivery.message.page}: {type(exc).__name__}: {exc}")
        print(f"  !! {errors[-1]}", flush=True)

    while True:
        handled = queue.drain(handle, visibility_timeout=600, on_error=failed)
        found = ctx.state.jobs.get(job.job_id)
        if found is not None and found[0].state in TERMINAL:
            return str(found[0].state)
        if handled == 0:
            time.sleep(0.5)


def marketo_count(ctx: Any, object_name: str, key: str, ids: list[str]) -> int:
    return len(ctx.marketo.crm(object_name).query(key, ids, [key]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000, help="accounts, opportunities, products (contacts: 2x)")
    parser.add_argument("--profile", default="realistic")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    n = args.records
    tmp = Path(tempfile.mkdtemp(prefix="bench-entities-"))
    with bench_services(tmp, args.profile, args.keep) as (azurite, emulators):
        prefix = f"be{uuid.uuid4().hex[:6]}"
        env_file = emulators.sync_env_file(tmp, azurite.connection_string, prefix)
        with env_file.open("a") as extra:
            extra.write(f"SYNC_FULL_SYNC_QUEUE=q{prefix}\n")
        settings = load_settings(env_file)
        state = StateStore(service_client(azurite.connection_string), prefix=settings.sync_table_prefix)
        sales = salesperson_client(emulators, settings)
        t0 = time.perf_counter()
        expected = seed(emulators, sales, n)
        print(f"seeded in {time.perf_counter() - t0:.1f} s: {expected}", flush=True)
        emulators.control("dataverse", "POST", "/profile", json={"profile": args.profile})
        emulators.control("marketo", "PATCH", "/config", json={"profile": args.profile})
        emulators.control("dataverse", "DELETE", "/requests")
        emulators.control("marketo", "DELETE", "/requests")

        ctx = build_context(settings, state)
        queue = WorkQueue.from_settings(settings)
        reset_peak_rss()
        rss_before, _ = rss_kib()
        started = time.perf_counter()
        outcome = run_job(ctx, queue)
        wall = time.perf_counter() - started
        _, peak = rss_kib()
        log = emulators.control("marketo", "GET", "/requests").json()
        by_object: dict[str, int] = log["by_object"]
        dv_calls = emulators.control("dataverse", "GET", "/requests", params={"client": "sync", "entries": 0}).json()

        print(
            f"\nfull sync: {outcome} in {wall:.1f} s; Marketo API calls {log['api_calls']}, Dataverse "
            f"{dv_calls.get('total')}; peak RSS {peak / 1024:.0f} MiB (before {rss_before / 1024:.0f} MiB)"
        )
        print(f"{'object':22} {'records':>8} {'write calls':>12} {'ceil(N/300)':>12}")
        for name, records in expected.items():
            op = "leads" if name == "persons" else name.replace("/", "_")
            writes = sum(v for k, v in by_object.items() if k.split(".")[0] in (op, name) and k.endswith(".sync"))
            bulk = sum(v for k, v in log["by_endpoint"].items() if "/bulk/" in k and "leads" in k)
            note = f" (Bulk Import: {bulk} calls to create, poll and read back)" if name == "persons" else ""
            print(f"{name:22} {records:>8} {writes:>12} {math.ceil(records / 300):>12}{note}")
        print(f"by object: {dict(sorted(by_object.items()))}")

        rows = {t: [r.id for r in sales.query(t, [f"{t}id"])] for t in ("account", "opportunity", "new_product")}
        print(
            "in Marketo: companies "
            f"{marketo_count(ctx, 'companies', 'externalCompanyId', rows['account'])}/{n}, opportunities "
            f"{marketo_count(ctx, 'opportunities', 'externalOpportunityId', rows['opportunity'])}/{n}, roles "
            f"{marketo_count(ctx, 'opportunities/roles', 'externalOpportunityId', rows['opportunity'])}/{2 * n}, "
            f"products {marketo_count(ctx, 'customobjects/product_c', 'productCode', rows['new_product'])}/{n}"
        )

        time.sleep(21)  # the counts above spent the client's 20 s rate window; the idle cycle starts with it empty
        emulators.control("marketo", "DELETE", "/requests")
        t1 = time.perf_counter()
        reports = [run_cycle(ctx, s.name) for s in ctx.mapping.ordered_entities()]
        idle_log = emulators.control("marketo", "GET", "/requests").json()
        idle_writes = {k: v for k, v in idle_log["by_object"].items() if k.endswith((".sync", ".delete", ".push"))}
        print(
            f"idle cycle of every stream: {time.perf_counter() - t1:.1f} s, Marketo calls {idle_log['api_calls']}, "
            f"writes {idle_writes or 0}, per stream {[(r.entity, r.api_calls.get('marketo', 0)) for r in reports]}, "
            f"outcomes {[(r.entity, r.outcome) for r in reports]}"
        )


if __name__ == "__main__":
    main()
