"""`python -m emulators`: start the local Dataverse and Marketo emulators over HTTPS on free loopback ports.

Writes --env-file as a dotenv file with every setting the sync needs to reach them (DYNAMICS_*, MARKETO_*,
SYNC_CA_BUNDLE), prints one line when ready, and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from emulators.base import Emulator, EmulatorOptions
from emulators.server import HttpsServer
from emulators.tls import make_tls_files

READY_PREFIX = "emulators ready:"


EMULATOR_NAMES = ("dataverse", "marketo")


def create_emulators(options: EmulatorOptions, only: Sequence[str] = ()) -> list[Emulator]:
    """Each emulator is a package `emulators.<name>` with `create_emulator(options) -> Emulator`."""
    names = [name for name in EMULATOR_NAMES if not only or name in only]
    return [importlib.import_module(f"emulators.{name}").create_emulator(options) for name in names]


def write_env_file(path: Path, settings: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f'{name}="{value}"' for name, value in sorted(settings.items())]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__)
    parser.add_argument("--env-file", required=True, type=Path, help="where to write the settings for the sync")
    parser.add_argument("--demo-records", type=int, default=0, help="demo records per table (default 0)")
    parser.add_argument("--profile", choices=["fast", "realistic"], default="fast")
    parser.add_argument("--faults", default=None, help="fault injection spec (see README)")
    parser.add_argument("--only", action="append", choices=EMULATOR_NAMES, default=[], help="start only this one")
    parser.add_argument("--tls-dir", type=Path, default=None, help="where to write the CA and server certificate")
    args = parser.parse_args(argv)
    if args.demo_records < 0:
        parser.error("--demo-records must be 0 or more")

    tls_dir = args.tls_dir or Path(tempfile.mkdtemp(prefix="sync-emulators-tls-"))
    tls = make_tls_files(tls_dir)
    options = EmulatorOptions(profile=args.profile, demo_records=args.demo_records, faults=args.faults)
    settings: dict[str, str] = {"SYNC_CA_BUNDLE": str(tls.ca_file)}
    servers: list[HttpsServer] = []
    emulators = create_emulators(options, args.only)
    for emulator in emulators:
        server = HttpsServer(emulator.app, tls, date_header=not getattr(emulator.app, "sets_date", False)).start()
        servers.append(server)
        settings.update(emulator.settings(server.url))
    write_env_file(args.env_file, settings)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    urls = " ".join(f"{emulator.name}={server.url}" for emulator, server in zip(emulators, servers, strict=True))
    print(f"{READY_PREFIX} {urls} env-file={args.env_file}", flush=True)
    stop.wait()
    for server in servers:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
