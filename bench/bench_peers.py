"""Benchmark: the tools people would otherwise use ("peers") next to our connectors, each reading N records from the
emulators (fast profile) in its own process.

  Marketo Bulk Extract of persons, 12 fields:  ours (MarketoClient.export_leads), tap-marketo (singer-io),
                                               airbyte-source-marketo
  Dataverse change tracking of leads, all columns:  ours (DataverseClient.read_changes),
                                               airbyte-source-microsoft-dataverse 1.0.2

Each peer is pip-installed from PyPI into its own venv (their pins conflict) and pointed at the emulators as
/work/shared/specs/peers.md describes: tap-marketo through a one-method wrapper (Client.get_url -> the emulator's
base URL, poll_interval 1 s); airbyte-source-marketo with domain_url as it is (its export polls sleep a fixed 60 s);
the Airbyte Dataverse source through an in-process wrapper that swaps only its hard-coded token URL for the
emulator's token endpoint (its figures are labelled "token URL swapped"). The emulators' CA is appended to each
venv's certifi bundle; TLS verification stays on. A peer that cannot be installed or run is reported and skipped.

Prints wall time (discovery and read, each tool as a user would run it), the API calls the emulator logged, records
and distinct ids read, peak RSS of the process, and the ratios to ours. Asserts nothing about time; exits 1 when a
tool read a record count other than N.

    .venv/bin/python bench/bench_peers.py [--records 10000] [--venvs DIR] [--only tap-marketo,airbyte-source-marketo]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from emulators.process import RunningEmulators, start_emulators

MARKETO_FIELDS = [
    "id",
    "email",
    "firstName",
    "lastName",
    "company",
    "title",
    "phone",
    "leadSource",
    "city",
    "country",
    "createdAt",
    "updatedAt",
]
SEED_DAYS = 20  # persons created over the last 20 days: one Bulk Extract window (at most 31 days) for every tool
PAGE_SIZE = 5000
TAP_POLL_SECONDS = 1
TAP_MUNCHKIN_URL = "https://123-ABC-456.mktorest.com/rest"  # tap-marketo insists on a Munchkin id in its endpoint

TAP_MARKETO_WRAPPER = """\
import sys
from tap_marketo import client, main
base_url = sys.argv.pop(1)
client.Client.get_url = lambda self, url: base_url + "/" + url  # the only change: the emulator instead of mktorest.com
main()
"""
AIRBYTE_DATAVERSE_WRAPPER = """\
import sys
from source_microsoft_dataverse import dataverse
token_url = sys.argv.pop(1)
# The only change: the emulator's token endpoint instead of the hard-coded login.microsoftonline.com.
dataverse.MicrosoftOauth2Authenticator.get_token_refresh_endpoint = lambda self: token_url
from source_microsoft_dataverse.run import run
run()
"""


@dataclass
class Peer:
    name: str
    package: str  # pip requirement
    distribution: str  # to see whether a reused venv has it
    system: str  # "marketo" | "dataverse"
    note: str = ""


PEERS = [
    Peer("tap-marketo", "tap-marketo==2.9.4", "tap-marketo", "marketo", "get_url wrapped, poll 1 s"),
    Peer("airbyte-source-marketo", "airbyte-source-marketo", "airbyte-source-marketo", "marketo", "60 s export polls"),
    Peer(
        "airbyte-source-microsoft-dataverse",
        "airbyte-source-microsoft-dataverse==1.0.2",
        "airbyte-source-microsoft-dataverse",
        "dataverse",
        "token URL swapped",
    ),
]


@dataclass
class Run:
    tool: str
    system: str
    note: str = ""
    wall: float = 0.0
    discover: float = 0.0
    calls: int = 0
    records: int = 0
    ids: int = 0
    rss_mib: float = 0.0
    error: str = ""
    version: str = ""


@dataclass
class Child:
    returncode: int
    seconds: float
    rss_mib: float
    stdout: Path
    stderr: str


@dataclass
class Bench:
    running: RunningEmulators
    work: Path
    records: int
    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=SEED_DAYS + 1))

    @property
    def settings(self) -> dict[str, str]:
        return self.running.settings

    def calls(self, system: str) -> int:
        return int(self.running.control(system, "GET", "/requests?entries=0").json()["total"])

    def clear_log(self, system: str) -> None:
        self.running.control(system, "DELETE", "/requests")

    def write(self, name: str, value: Any) -> Path:
        path = self.work / name
        path.write_text(json.dumps(value))
        return path


def run_child(command: list[str], stdout: Path, env: dict[str, str] | None = None) -> Child:
    """Run a process to its end; its wall time and its own peak RSS (from wait4, not the whole tree's)."""
    started = time.perf_counter()
    with stdout.open("wb") as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return Child(process.returncode, seconds, usage.ru_maxrss / 1024, stdout, stderr)


def messages(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])[-600:]


# --- venvs ---------------------------------------------------------------------------------------------------------


CA_MARKER = "# sync emulators' CA, appended by bench/bench_peers.py\n"


@dataclass
class Venv:
    python: Path
    version: str
    bundle: Path  # its certifi bundle, with the emulators' CA appended

    def env(self) -> dict[str, str]:
        # requests.get honours REQUESTS_CA_BUNDLE (this machine sets it to the system bundle); Session.send does not
        # and uses certifi's. Both get the same augmented bundle.
        return {**os.environ, "REQUESTS_CA_BUNDLE": str(self.bundle)}


def prepare_venv(peer: Peer, root: Path, ca_file: Path) -> Venv | str:
    """The peer's venv under root (reused when it already has the package), or why it could not be made."""
    venv = root / peer.name
    python = venv / "bin" / "python"
    version_of = [str(python), "-c", f"import importlib.metadata as m; print(m.version('{peer.distribution}'))"]
    if not python.exists() or subprocess.run(version_of, capture_output=True, check=False).returncode != 0:
        print(f"  installing {peer.package} into {venv} ...", flush=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        made = subprocess.run([base_python, "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
        if made.returncode != 0:
            return f"venv failed: {tail(made.stderr)}"
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", peer.package]
        installed = subprocess.run(pip, capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            return f"pip install {peer.package} failed: {tail(installed.stderr)}"
    version = subprocess.run(version_of, capture_output=True, text=True, check=False).stdout.strip()
    where = [str(python), "-c", "import certifi; print(certifi.where())"]
    found = subprocess.run(where, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        return f"no certifi in the venv: {tail(found.stderr)}"
    bundle = Path(found.stdout.strip())
    mozilla = bundle.read_text().split(CA_MARKER, 1)[0]  # a reused venv: drop the CA of an earlier run
    bundle.write_text(mozilla.rstrip("\n") + "\n\n" + CA_MARKER + ca_file.read_text())
    return Venv(python, version, bundle)


# --- ours ----------------------------------------------------------------------------------------------------------


def ours_marketo(settings: dict[str, str], start: datetime) -> list[str]:
    from pydantic import SecretStr

    from sync.connectors.marketo import MarketoClient, PollPolicy

    with MarketoClient(
        settings["MARKETO_BASE_URL"],
        settings["MARKETO_CLIENT_ID"],
        SecretStr(settings["MARKETO_CLIENT_SECRET"]),
        extra_ca=Path(settings["SYNC_CA_BUNDLE"]),
        poll=PollPolicy(initial=0.2, maximum=1.0, timeout=1800),
    ) as client:
        end = datetime.now(UTC) + timedelta(minutes=1)
        return [row["id"] for row in client.export_leads(MARKETO_FIELDS, start, end, date_field="createdAt")]


def ours_dataverse(settings: dict[str, str]) -> list[str]:
    from pydantic import SecretStr

    from sync.connectors.dynamics import DataverseClient

    with DataverseClient(
        settings["DYNAMICS_URL"],
        settings["DYNAMICS_AUTHORITY"],
        settings["DYNAMICS_CLIENT_ID"],
        SecretStr(settings["DYNAMICS_CLIENT_SECRET"]),
        extra_ca=Path(settings["SYNC_CA_BUNDLE"]),
    ) as client:
        ids: list[str] = []
        for page in client.read_changes("lead", [], None, page_size=PAGE_SIZE):  # no $select: all columns
            ids.extend(record.id for record in page.records)
        return ids


def run_ours(bench: Bench, system: str) -> Run:
    result = Run("ours", system, "sync/connectors")
    bench.clear_log(system)
    settings_file = bench.write("ours-settings.json", bench.settings)
    command = [sys.executable, __file__, "--ours", system, "--settings", str(settings_file)]
    command += ["--since", bench.start.isoformat()]
    child = run_child(command, bench.work / f"ours-{system}.out")
    if child.returncode != 0:
        result.error = f"exit {child.returncode}: {tail(child.stderr)}"
        return result
    summary = json.loads(child.stdout.read_text())
    result.wall, result.rss_mib = child.seconds, child.rss_mib
    result.records, result.ids, result.calls = summary["records"], summary["ids"], bench.calls(system)
    return result


# --- peers ---------------------------------------------------------------------------------------------------------


def run_tap_marketo(bench: Bench, venv: Venv) -> Run:
    s = bench.settings
    result = Run("tap-marketo", "marketo")
    wrapper = bench.work / "tap_marketo_wrapped.py"
    wrapper.write_text(TAP_MARKETO_WRAPPER)
    config = bench.write(
        "tap-marketo-config.json",
        {
            "endpoint": TAP_MUNCHKIN_URL,
            "client_id": s["MARKETO_CLIENT_ID"],
            "client_secret": s["MARKETO_CLIENT_SECRET"],
            "start_date": bench.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "poll_interval": TAP_POLL_SECONDS,
        },
    )
    base = [str(venv.python), str(wrapper), s["MARKETO_BASE_URL"], "--config", str(config)]
    bench.clear_log("marketo")
    found = run_child([*base, "--discover"], bench.work / "tap-marketo-catalog.json", venv.env())
    if found.returncode != 0:
        result.error = f"discover exit {found.returncode}: {tail(found.stderr)}"
        return result
    catalog = json.loads(found.stdout.read_text())
    for stream in catalog["streams"]:
        chosen = stream["tap_stream_id"] == "leads"
        for entry in stream["metadata"]:
            breadcrumb = entry["breadcrumb"]
            if not breadcrumb:
                entry["metadata"]["selected"] = chosen
            elif chosen:
                entry["metadata"]["selected"] = breadcrumb[-1] in MARKETO_FIELDS
    selected = bench.write("tap-marketo-selected.json", catalog)
    read = run_child([*base, "--properties", str(selected)], bench.work / "tap-marketo-read.out", venv.env())
    if read.returncode != 0:
        result.error = f"read exit {read.returncode}: {tail(read.stderr)}"
        return result
    rows = [m["record"] for m in messages(read.stdout) if m.get("type") == "RECORD" and m.get("stream") == "leads"]
    result.discover, result.wall, result.rss_mib = found.seconds, read.seconds, max(found.rss_mib, read.rss_mib)
    result.records, result.ids, result.calls = len(rows), len({r.get("id") for r in rows}), bench.calls("marketo")
    return result


def airbyte_errors(child: Child) -> str:
    """What an Airbyte source said went wrong: its TRACE error messages (it logs to stdout), else stderr."""
    said = [
        m["trace"]["error"].get("message", "")
        for m in messages(child.stdout)
        if m.get("type") == "TRACE" and m.get("trace", {}).get("error")
    ]
    return tail("\n".join(said)) if said else tail(child.stderr)


def _airbyte_streams(path: Path) -> list[dict[str, Any]]:
    for message in messages(path):
        if message.get("type") == "CATALOG":
            return list(message["catalog"]["streams"])
    raise ValueError("no CATALOG message")


def _airbyte_records(path: Path, stream: str) -> list[dict[str, Any]]:
    return [
        m["record"]["data"]
        for m in messages(path)
        if m.get("type") == "RECORD" and m.get("record", {}).get("stream") == stream
    ]


def run_airbyte(
    bench: Bench,
    venv: Venv,
    result: Run,
    command: list[str],
    config: dict[str, Any],
    stream_name: str,
    configure: Callable[[dict[str, Any]], dict[str, Any]],
    id_field: str,
) -> Run:
    config_file = bench.write(f"{result.tool}-config.json", config)
    bench.clear_log(result.system)
    discover_command = [*command, "discover", "--config", str(config_file)]
    found = run_child(discover_command, bench.work / f"{result.tool}-discover.out", venv.env())
    try:
        streams = _airbyte_streams(found.stdout)
        stream = next(s for s in streams if s["name"] == stream_name)
    except (ValueError, StopIteration):
        result.error = f"discover exit {found.returncode}, no '{stream_name}' stream: {airbyte_errors(found)}"
        return result
    catalog = bench.write(f"{result.tool}-catalog.json", {"streams": [configure(stream)]})
    read_command = [*command, "read", "--config", str(config_file), "--catalog", str(catalog)]
    read = run_child(read_command, bench.work / f"{result.tool}-read.out", venv.env())
    rows = _airbyte_records(read.stdout, stream_name)
    if read.returncode != 0:
        result.error = f"read exit {read.returncode} after {len(rows)} records: {airbyte_errors(read)}"
        return result
    result.discover, result.wall, result.rss_mib = found.seconds, read.seconds, max(found.rss_mib, read.rss_mib)
    result.records, result.ids, result.calls = (
        len(rows),
        len({r.get(id_field) for r in rows}),
        bench.calls(result.system),
    )
    return result


def run_airbyte_marketo(bench: Bench, venv: Venv) -> Run:
    s = bench.settings
    config = {
        "domain_url": s["MARKETO_BASE_URL"],
        "client_id": s["MARKETO_CLIENT_ID"],
        "client_secret": s["MARKETO_CLIENT_SECRET"],
        "start_date": bench.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }

    def configure(stream: dict[str, Any]) -> dict[str, Any]:
        properties = stream["json_schema"].get("properties", {})
        stream["json_schema"]["properties"] = {k: v for k, v in properties.items() if k in MARKETO_FIELDS}
        return {"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}

    command = [str(venv.python.parent / "source-marketo")]
    result = Run("airbyte-source-marketo", "marketo")
    return run_airbyte(bench, venv, result, command, config, "leads", configure, "id")


def run_airbyte_dataverse(bench: Bench, venv: Venv) -> Run:
    s = bench.settings
    wrapper = bench.work / "airbyte_dataverse_wrapped.py"
    wrapper.write_text(AIRBYTE_DATAVERSE_WRAPPER)
    token_url = f"{s['DYNAMICS_AUTHORITY']}/oauth2/v2.0/token"
    config = {
        "url": s["DYNAMICS_URL"],
        "tenant_id": s["DYNAMICS_AUTHORITY"].rstrip("/").rsplit("/", 1)[-1],
        "client_id": s["DYNAMICS_CLIENT_ID"],
        "client_secret_value": s["DYNAMICS_CLIENT_SECRET"],
        "odata_maxpagesize": PAGE_SIZE,
    }

    def configure(stream: dict[str, Any]) -> dict[str, Any]:
        return {
            "stream": stream,
            "sync_mode": "incremental",  # change tracking, as the source offers it for tracked tables
            "cursor_field": ["modifiedon"],
            "destination_sync_mode": "append",
        }

    result = Run("airbyte-source-microsoft-dataverse", "dataverse")
    command = [str(venv.python), str(wrapper), token_url]
    return run_airbyte(bench, venv, result, command, config, "lead", configure, "leadid")


RUNNERS: dict[str, Callable[[Bench, Venv], Run]] = {
    "tap-marketo": run_tap_marketo,
    "airbyte-source-marketo": run_airbyte_marketo,
    "airbyte-source-microsoft-dataverse": run_airbyte_dataverse,
}


# --- report --------------------------------------------------------------------------------------------------------


def print_table(runs: list[Run], records: int) -> bool:
    """The table; True when ours ran and every tool that ran read exactly N distinct records."""
    ours = {r.system: r for r in runs if r.tool == "ours" and not r.error}
    print(
        f"\n{records:,} records per read (fast profile). wall = the read; discover = its discovery run before it."
        "\ncalls = Web API / REST calls the emulator logged for discovery and read (Marketo: identity included)."
    )
    header = (
        f"{'read':<11} {'tool':<42} {'note':<26} {'wall s':>7} {'discover s':>10} {'calls':>6} {'records':>8} "
        f"{'ids':>7} {'RSS MiB':>8} {'wall/ours':>9} {'calls/ours':>10}  count"
    )
    print(header)
    print("-" * len(header))
    all_right = True
    for run in runs:
        title = "Marketo" if run.system == "marketo" else "Dataverse"
        tool = run.tool + (f" {run.version}" if run.version else "")
        if run.error:
            print(f"{title:<11} {tool:<42} NOT RUN: {run.error}")
            all_right &= run.tool != "ours"  # a peer that cannot run here is reported; ours must run
            continue
        base = ours.get(run.system)
        wall_ratio = f"{run.wall / base.wall:.1f}x" if base and base.wall else "-"
        calls_ratio = f"{run.calls / base.calls:.1f}x" if base and base.calls else "-"
        right = run.records == records and run.ids == records
        all_right &= right
        discover = "-" if run.tool == "ours" else f"{run.discover:.1f}"
        print(
            f"{title:<11} {tool:<42} {run.note:<26} {run.wall:>7.1f} {discover:>10} {run.calls:>6} "
            f"{run.records:>8,} {run.ids:>7,} {run.rss_mib:>8.0f} {wall_ratio:>9} {calls_ratio:>10}  "
            f"{'right' if right else 'WRONG (expected ' + format(records, ',') + ')'}"
        )
    return all_right


def bench(records: int, venv_root: Path, only: set[str] | None) -> bool:
    running = start_emulators("--profile", "fast")
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-peers-") as work_dir:
            work = Path(work_dir)
            b = Bench(running, work, records)
            running.control("marketo", "POST", "/reset")
            running.control("dataverse", "POST", "/reset")
            running.control(
                "marketo",
                "POST",
                "/seed",
                json={"count": records, "fast": True, "days": SEED_DAYS, "activities": False},
            )
            running.control("dataverse", "POST", "/seed", json={"table": "lead", "count": records, "fast": True})
            print(f"seeded {records:,} Marketo persons and {records:,} Dataverse leads", flush=True)
            for system in ("marketo", "dataverse"):
                runs.append(run_ours(b, system))
                for peer in (p for p in PEERS if p.system == system):
                    if only is not None and peer.name not in only:
                        continue
                    venv = prepare_venv(peer, venv_root, Path(running.ca_file))
                    if isinstance(venv, str):
                        runs.append(Run(peer.name, system, peer.note, error=venv))
                        continue
                    print(f"  running {peer.name} {venv.version} ...", flush=True)
                    try:
                        run = RUNNERS[peer.name](b, venv)
                    except Exception as exc:  # a peer's failure is reported, the others still run
                        run = Run(peer.name, system, error=f"{type(exc).__name__}: {exc}")
                    run.note, run.version = peer.note, venv.version
                    runs.append(run)
        secrets = [v for k, v in running.settings.items() if k.endswith("_SECRET") and v]
        for run in runs:  # a tool's error text may quote a URL with the client secret in its query
            for secret in secrets:
                run.error = run.error.replace(secret, "***")
    finally:
        running.stop()
    return print_table(runs, records)


def ours_child(system: str, settings_file: Path, since: str) -> None:
    settings = json.loads(settings_file.read_text())
    if system == "marketo":
        ids = ours_marketo(settings, datetime.fromisoformat(since))
    else:
        ids = ours_dataverse(settings)
    print(json.dumps({"records": len(ids), "ids": len(set(ids))}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000, help="records per read (default 10,000)")
    parser.add_argument(
        "--venvs", type=Path, default=None, help="keep the peers' venvs here and reuse them (default: a temporary dir)"
    )
    parser.add_argument("--only", default=None, help="comma-separated peers to run (default: all); ours always runs")
    parser.add_argument("--ours", choices=["marketo", "dataverse"], help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--settings", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--since", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours:
        ours_child(args.ours, args.settings, args.since)
        return
    only = {name.strip() for name in args.only.split(",")} if args.only else None
    unknown = (only or set()) - set(RUNNERS)
    if unknown:
        parser.error(f"unknown peer(s) in --only: {', '.join(sorted(unknown))}; known: {', '.join(RUNNERS)}")
    if args.venvs is not None:
        args.venvs.mkdir(parents=True, exist_ok=True)
        right = bench(args.records, args.venvs, only)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-peers-venvs-") as venvs:
            right = bench(args.records, Path(venvs), only)
    sys.exit(0 if right else 1)


if __name__ == "__main__":
    main()
