"""Chaos suite (issue 13): other users edit both systems while incremental runs go under injected faults, some killed
with SIGKILL part-way; at the end, faults off, runs until quiet, then counts what a trustworthy sync must keep at zero.

Each round: a salesperson edits, creates, deletes and now and then qualifies leads and contacts in Dynamics (Web API,
as another user); a marketer edits, creates (form fills), deletes and now and then merges persons in Marketo (the
emulator's UI controls). Then `python -m sync run --entity all` runs as a process with faults injected (Dataverse 429
with Retry-After, 5xx, dropped connections; Marketo 606, 615, 502, connections dropped before and after the call
runs), and some runs are killed part-way. The script tracks the last value each side wrote to every field it edited.

Counted at the end (each must be 0): duplicates (persons per e-mail, Dynamics records per person), lost edits (a
field edited on one side only that does not end with its last value on both sides), contested fields (edited on
both sides) that differ between the systems, new records that never crossed over, record errors left. A seed makes a
failing run reproducible.

    .venv/bin/python bench/chaos.py                     # 200 records a side, 20 rounds, 5% faults
    .venv/bin/python bench/chaos.py --records 30 --rounds 4 --seed 7
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.engine.cycle import run_cycle
from tests.e2e.world import World

REPO = Path(__file__).resolve().parent.parent
PERSON_STREAMS = ("lead", "contact")
# field -> (Dynamics column, Marketo field); both person streams map these both ways
FIELDS = {"firstname": "firstName", "lastname": "lastName", "jobtitle": "title", "telephone1": "phone"}
DELIBERATE_CODES = {"merged_duplicate"}  # errors the scenario makes on purpose (none unless it merges two pairs)


@dataclass
class Pair:
    stream: str
    dynamics_id: str
    marketo_id: str | None
    email: str
    # Edits not yet seen in both systems: column -> {"dynamics"|"marketo": the last value that side wrote}. A window
    # closes once both systems hold the same value; both sides in one window is a conflict for the stream's winner.
    edits: dict[str, dict[str, Any]] = field(default_factory=dict)
    settled: bool = False  # qualified or deleted: no more field checks

    @property
    def winner(self) -> str:
        return "marketo" if self.stream == "lead" else "dynamics"  # as the default mapping's conflict_winner


@dataclass
class Figures:
    rounds: int = 0
    edits: int = 0
    runs: int = 0
    kills: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    quiet_passes: int = 0
    linked_at_start: int = 0  # pairs linked once the initial population had synced


@dataclass
class Counts:
    duplicate_persons: int = 0
    duplicate_dynamics: int = 0
    lost_edits: int = 0
    contested_differ: int = 0
    wrong_winner: int = 0  # contested fields that ended with the loser's value
    never_crossed: int = 0
    orphan_links: int = 0  # links to a person that no longer exists (deleted or merged away)
    errors_left: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            self.duplicate_persons
            + self.duplicate_dynamics
            + self.lost_edits
            + self.contested_differ
            + self.wrong_winner
            + self.never_crossed
            + self.orphan_links
            + self.errors_left
        )


class Chaos:
    def __init__(
        self,
        world: World,
        records: int,
        rounds: int,
        fault_rate: float,
        kill_rate: float,
        seed: int,
        progress: Any = None,
    ) -> None:
        self.world = world
        self.progress = progress or (lambda _text: None)
        self.records, self.rounds, self.fault_rate, self.kill_rate = records, rounds, fault_rate, kill_rate
        self.rng = random.Random(seed)
        self.pairs: dict[str, Pair] = {}  # Dynamics id -> pair
        self.new_marketo: dict[str, str] = {}  # person id -> e-mail: created in Marketo, marked to sync
        self.merged_away: set[str] = set()
        self.deleted_persons: set[str] = set()
        self.figures = Figures()
        self.serial = 0
        self.timings: defaultdict[str, float] = defaultdict(float)
        self.counts = Counts()  # the field checks add to it as windows close, round by round
        self.qualified: dict[str, str] = {}  # qualified lead id -> the person its contact must take

    # --- helpers -------------------------------------------------------------------------------------------------
    def email(self, tag: str) -> str:
        self.serial += 1
        return f"{tag}{self.serial}.{self.rng.randrange(10**6)}@chaos.example.com"

    def value(self, column: str) -> str:
        self.serial += 1
        if column == "telephone1":
            return f"555-{self.serial:04d}"
        return f"{column[:4].title()}{self.serial}"

    def link_of(self, pair: Pair) -> str | None:
        link = self.world.ctx.state.links.get_by_dynamics_id(pair.stream, pair.dynamics_id)
        return link.marketo_id if link else None

    def quiet_cycles(self, passes: int = 40) -> int:
        """In-process cycles of every stream until two passes in a row write nothing (a killed run's lease is waited
        out). Returns the passes run."""
        calm = 0
        for number in range(1, passes + 1):
            busy = False
            for stream in self.world.ctx.mapping.ordered_entities():
                report = run_cycle(self.world.ctx, stream.name)
                c = report.counts
                if report.outcome == "skipped":  # a killed runner's lease: taken over within LEASE_DURATION
                    busy = True
                    time.sleep(1)
                elif report.outcome == "failed" or c.created or c.updated or c.deleted:
                    busy = True
            calm = 0 if busy else calm + 1
            if calm >= 2:
                return number
        return passes

    # --- setup ---------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        w = self.world
        w.upstream()
        w.cycles("lead", "contact")  # watermarks: from here on, everything is incremental
        half = self.records // 2
        leads = [self.new_values("lead") for _ in range(self.records - half)]
        contacts = [self.new_values("contact") for _ in range(half)]
        for table, rows in (("lead", leads), ("contact", contacts)):
            for start in range(0, len(rows), 100):
                for row, result in zip(
                    rows[start : start + 100], w.sales.create_multiple(table, rows[start : start + 100]), strict=True
                ):
                    assert result.error is None, result.error
                    self.pairs[str(result.id)] = Pair(table, str(result.id), None, row["emailaddress1"])
        for _ in range(self.records):
            email = self.email("mk")
            ident = w.mk_form_fill(email=email, firstName="Mia", lastName=f"M{self.serial}", syncToDynamics=True)
            self.new_marketo[str(ident)] = email
        self.quiet_cycles()
        self.adopt_marketo_creations()
        self.figures.linked_at_start = sum(self.world.ctx.state.links.count(s) for s in PERSON_STREAMS)
        self.new_marketo.clear()  # the initial population: crossing over is checked for creations during rounds

    def new_values(self, table: str) -> dict[str, Any]:
        return {
            "firstname": self.value("firstname"),
            "lastname": self.value("lastname"),
            "emailaddress1": self.email(table[:1]),
            "jobtitle": self.value("jobtitle"),
            "telephone1": self.value("telephone1"),
        }

    def adopt_marketo_creations(self) -> None:
        """Persons created in Marketo that became leads: tracked as pairs from now on."""
        links = {link.marketo_id: link.dynamics_id for link in self.world.ctx.state.links.list("lead")}
        for ident, email in self.new_marketo.items():
            if ident in links and links[ident] not in self.pairs:
                self.pairs[links[ident]] = Pair("lead", links[ident], ident, email)

    # --- a round -------------------------------------------------------------------------------------------------
    def live_pairs(self) -> list[Pair]:
        return [p for p in self.pairs.values() if not p.settled]

    def edit_round(self) -> None:
        w, rng = self.world, self.rng
        live = self.live_pairs()
        for pair in rng.sample(live, min(len(live), max(3, self.records // 10))):
            column = rng.choice(list(FIELDS))
            value = self.value(column)
            if rng.random() < 0.5:
                w.dv_update(pair.stream, pair.dynamics_id, **{column: value})
                pair.edits.setdefault(column, {})["dynamics"] = value
                self.figures.actions["dynamics edit"] += 1
            else:
                person = self.link_of(pair)
                if person is None:  # not linked yet (its create may be in flight): edit it in Dynamics next time
                    continue
                pair.marketo_id = person
                w.mk_edit(person, **{FIELDS[column]: value})
                pair.edits.setdefault(column, {})["marketo"] = value
                self.figures.actions["marketo edit"] += 1
            self.figures.edits += 1
        for _ in range(max(1, self.records // 50)):  # new records on both sides
            table = rng.choice(PERSON_STREAMS)
            values = self.new_values(table)
            ident = w.dv_create(table, **values)
            self.pairs[ident] = Pair(table, ident, None, values["emailaddress1"])
            email = self.email("mk")
            self.new_marketo[str(w.mk_form_fill(email=email, lastName="New", syncToDynamics=True))] = email
            self.figures.actions["creates"] += 2
        if rng.random() < 0.5:  # a delete on either side
            pair = rng.choice(self.live_pairs())
            person = self.link_of(pair)
            if rng.random() < 0.5 or person is None:
                w.dv_delete(pair.stream, pair.dynamics_id)
                self.figures.actions["dynamics delete"] += 1
            else:
                w.mk_delete(person)
                self.deleted_persons.add(person)
                self.figures.actions["marketo delete"] += 1
            pair.settled = True
        if rng.random() < 0.3:  # a qualification: the lead's person moves to the new contact
            leads = [p for p in self.live_pairs() if p.stream == "lead" and self.link_of(p)]
            if leads:
                pair = rng.choice(leads)
                self.qualified[pair.dynamics_id] = self.link_of(pair)  # type: ignore[assignment]
                w.sales.qualify_lead(pair.dynamics_id, create_account=False, create_contact=True)
                pair.settled = True
                self.figures.actions["qualification"] += 1
        if rng.random() < 0.3:  # a merge: a synced person into a Marketo-only duplicate, which takes its link
            linked = [(p, m) for p in self.live_pairs() if (m := self.link_of(p))]
            if linked:
                pair, loser = rng.choice(linked)
                email = self.email("merged")
                winner = str(w.mk_form_fill(email=email))
                w.emulators.control(
                    "marketo", "POST", "/act/merge", json={"winner": int(winner), "losers": [int(loser)]}
                )
                self.merged_away.add(loser)
                pair.marketo_id, pair.email = winner, email
                self.figures.actions["merge"] += 1

    def close_windows(self, final: bool = False) -> None:
        """Fields whose edits both systems now show alike: the value must be the one side's last, or the winner's
        when both sides wrote. At the end (`final`), a field the systems still disagree on is lost or contested."""
        counts = self.counts
        for pair in self.pairs.values():
            if pair.settled or not pair.edits:
                continue
            person_id = self.link_of(pair)
            record = self.world.dv_get(pair.stream, pair.dynamics_id)
            person = self.world.mk_get(person_id) if person_id else None
            if record is None or person is None:
                continue  # counted as never crossed over at the end
            for column, sides in list(pair.edits.items()):
                mine, theirs = record.get(column), person.get(FIELDS[column])
                where = f"{pair.stream} {pair.dynamics_id} {column}"
                if mine == theirs:
                    expected = sides[pair.winner] if len(sides) == 2 else next(iter(sides.values()))
                    if mine != expected and len(sides) == 2:
                        counts.wrong_winner += 1
                        counts.details.append(f"{where}: {mine!r}, not the {pair.winner} value {expected!r}")
                    elif mine != expected:
                        counts.lost_edits += 1
                        counts.details.append(f"{where}: wrote {expected!r}, both systems hold {mine!r}")
                    del pair.edits[column]
                elif final and len(sides) == 2:
                    counts.contested_differ += 1
                    counts.details.append(f"{where}: Dynamics {mine!r}, Marketo {theirs!r}")
                elif final:
                    counts.lost_edits += 1
                    counts.details.append(f"{where}: wrote {sides}, Dynamics {mine!r}, Marketo {theirs!r}")

    def set_faults(self, on: bool) -> None:
        w, r = self.world, self.fault_rate
        if not on:
            w.emulators.control("dataverse", "DELETE", "/faults")
            w.emulators.control("marketo", "DELETE", "/faults")
            return
        seed = self.rng.randrange(10**9)  # the emulators' fault draws follow the run's seed too
        dataverse = {"429": r, "500": r / 2, "503": r / 2, "drop": r, "retry_after": 1, "seed": seed}
        w.emulators.control("dataverse", "POST", "/faults", json=dataverse)
        rates = {"606": r, "615": r, "502": r, "drop": r / 2, "drop_after": r / 2}
        w.emulators.control("marketo", "POST", "/faults", json={"rates": rates, "seed": seed})

    def run_process(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        command = [sys.executable, "-m", "sync", "--env-file", str(self.world.env_file), "run", "--entity", "all"]
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.figures.runs += 1
        if self.rng.random() < self.kill_rate:
            # Part-way: once the run holds the lease of a stream picked at random (it is then reading or writing
            # that stream), a moment later.
            streams = [s.name for s in self.world.ctx.mapping.ordered_entities()]
            target, delay = self.rng.choice(streams), self.rng.uniform(0.0, 0.5)
            leases = self.world.ctx.state.leases
            while process.poll() is None and leases.get(target) is None:
                time.sleep(0.02)
            time.sleep(delay)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                self.figures.kills += 1
                self.figures.actions[f"killed in {target}"] += 1
            else:
                self.figures.actions["kill too late"] += 1
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def count_faults(self) -> None:
        """The faults the sync met in this round's run, from the emulators' request logs (then cleared)."""
        mk = self.world.emulators.control("marketo", "GET", "/requests", params={"limit": 50_000}).json()
        for code, count in (mk.get("by_code") or {}).items():
            if code in ("606", "615", "502", "503"):
                self.figures.faults[f"marketo {code}"] += int(count)
        self.figures.faults["marketo dropped"] += sum(1 for e in mk.get("entries") or [] if e.get("dropped"))
        dv = self.world.emulators.control("dataverse", "GET", "/requests", params={"client": "sync", "entries": 0})
        operations = dv.json().get("by_operation") or {}
        self.figures.faults["dataverse 429/5xx"] += int(operations.get("fault", 0))
        self.figures.faults["dataverse dropped"] += int(operations.get("dropped", 0))
        self.world.clear_request_logs()

    def run(self) -> Counts:
        mark = time.monotonic()

        def lap(name: str) -> None:
            nonlocal mark
            self.timings[name] += time.monotonic() - mark
            mark = time.monotonic()

        self.setup()
        self.world.clear_request_logs()
        lap("setup")
        for _ in range(self.rounds):
            self.edit_round()
            lap("edits")
            self.set_faults(True)
            self.run_process()
            self.set_faults(False)
            self.count_faults()
            self.figures.rounds += 1
            lap("runs")
            self.close_windows()
            lap("checks")
            self.progress(f"round {self.figures.rounds}: runs {self.figures.runs}, kills {self.figures.kills}")
        self.figures.quiet_passes = self.quiet_cycles()  # faults off: until quiet (a dead runner's lease expires)
        self.adopt_marketo_creations()
        lap("until quiet")
        counts = self.count()
        lap("counting")
        return counts

    # --- the counts ----------------------------------------------------------------------------------------------
    def count(self) -> Counts:
        w, counts = self.world, self.counts
        state = w.ctx.state
        links = {s: list(state.links.list(s)) for s in PERSON_STREAMS}
        per_person = Counter(link.marketo_id for s in PERSON_STREAMS for link in links[s])
        for person, number in per_person.items():
            if number > 1:
                counts.duplicate_dynamics += number - 1
                counts.details.append(f"person {person} followed by {number} Dynamics records")
        emails = {p.email for p in self.pairs.values()} | set(self.new_marketo.values())
        for email in sorted(emails):
            found = w.mk_by_email(email)
            if len(found) > 1:
                counts.duplicate_persons += len(found) - 1
                counts.details.append(f"{len(found)} persons with e-mail {email}")
        self.close_windows(final=True)
        for pair in self.pairs.values():
            if not pair.settled and (w.dv_get(pair.stream, pair.dynamics_id) is None or self.link_of(pair) is None):
                counts.never_crossed += 1
                counts.details.append(f"{pair.stream} {pair.dynamics_id} ({pair.email}) has no person")
        contact_people = {link.marketo_id for link in links["contact"]}
        for lead_id, person in self.qualified.items():
            if person not in contact_people and person not in self.deleted_persons | self.merged_away:
                counts.never_crossed += 1
                counts.details.append(f"qualified lead {lead_id}: its person {person} does not follow a contact")
        for stream in PERSON_STREAMS:
            for link in links[stream]:
                if w.mk_get(link.marketo_id) is None:
                    counts.orphan_links += 1
                    counts.details.append(f"{stream} {link.dynamics_id} links person {link.marketo_id}, who is gone")
        lead_people = {link.marketo_id for link in links["lead"]}
        for ident, email in self.new_marketo.items():
            if ident in self.deleted_persons or ident in self.merged_away or ident in lead_people:
                continue
            counts.never_crossed += 1
            counts.details.append(f"person {ident} ({email}) never reached Dynamics")
        for stream in PERSON_STREAMS:
            for error in state.errors.list(stream):
                if error.code not in DELIBERATE_CODES:
                    counts.errors_left += 1
                    counts.details.append(f"{stream} error {error.system} {error.record_id}: {error.message}")
        return counts


def report(chaos: Chaos, counts: Counts, seconds: float) -> str:
    f = chaos.figures
    faults = ", ".join(f"{k} {v}" for k, v in sorted(f.faults.items())) or "none"
    actions = ", ".join(f"{k} {v}" for k, v in sorted(f.actions.items()))
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in chaos.timings.items())
    lines = [
        f"records: {chaos.records} a side, {f.linked_at_start} pairs linked at the start",
        f"rounds {f.rounds}, edits {f.edits}, runs {f.runs}, kills {f.kills}, passes until quiet {f.quiet_passes}",
        f"time: {seconds:.0f} s ({timings})",
        f"actions: {actions}",
        f"faults seen: {faults}",
        f"duplicates: persons per e-mail {counts.duplicate_persons}, "
        f"Dynamics records per person {counts.duplicate_dynamics}",
        f"lost edits: {counts.lost_edits}",
        f"contested fields that differ: {counts.contested_differ}, won by the wrong side: {counts.wrong_winner}",
        f"new records that never crossed over: {counts.never_crossed}",
        f"orphan links: {counts.orphan_links}",
        f"record errors left: {counts.errors_left}",
        *[f"  - {d}" for d in counts.details[:30]],
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (printed, so a failing run can be repeated)"
    )
    parser.add_argument("--records", type=int, default=200, help="records a side at the start (default 200)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of edits and faulted runs (default 20)")
    parser.add_argument("--fault-rate", type=float, default=0.05, help="probability of each fault per call (0.05)")
    parser.add_argument("--kill-rate", type=float, default=0.25, help="share of runs killed part-way (0.25)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    print(f"seed {seed}", flush=True)

    from emulators.azurite import Azurite
    from sync.state import StateStore
    from sync.state.tables import service_client
    from tests.e2e.world import World
    from tests.emulated import start_emulators

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, Azurite() as azurite:
        emulators = start_emulators("--profile", "fast")
        try:
            prefix = f"chaos{seed}x{uuid.uuid4().hex[:6]}"
            state = StateStore(service_client(azurite.connection_string), prefix=prefix)
            world = World.build(emulators, state, Path(tmp), prefix, azurite.connection_string)
            chaos = Chaos(
                world, args.records, args.rounds, args.fault_rate, args.kill_rate, seed, lambda t: print(t, flush=True)
            )
            counts = chaos.run()
        finally:
            emulators.stop()
    print(report(chaos, counts, time.monotonic() - started))
    return 0 if counts.total == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
