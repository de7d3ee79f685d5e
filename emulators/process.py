"""Start `python -m emulators` as a subprocess (tests, benchmarks, the demo) and talk to its test controls."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from dotenv import dotenv_values

from emulators.__main__ import READY_PREFIX
from emulators.base import CONTROL_PREFIX

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunningEmulators:
    env_file: Path
    settings: dict[str, str]
    process: subprocess.Popen[str]
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def ca_file(self) -> str:
        return self.settings["SYNC_CA_BUNDLE"]

    def base_url(self, emulator: str) -> str:
        return self.settings["DYNAMICS_URL"] if emulator == "dataverse" else self.settings["MARKETO_BASE_URL"]

    def sync_env_file(self, directory: Path, storage_connection: str, table_prefix: str) -> Path:
        """An env file for the sync: the emulators' settings plus the Azurite state store."""
        path = directory / "sync.env"
        lines = [f'{k}="{v}"' for k, v in self.settings.items()]
        lines += [f'AzureWebJobsStorage="{storage_connection}"', f"SYNC_TABLE_PREFIX={table_prefix}"]
        path.write_text("\n".join(lines) + "\n")
        return path

    def control(self, emulator: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call a test control, e.g. control("marketo", "POST", "/reset")."""
        url = f"{self.base_url(emulator)}{CONTROL_PREFIX}{path}"
        response = self.session.request(method, url, verify=self.ca_file, timeout=60, **kwargs)
        response.raise_for_status()
        return response

    def stop(self) -> None:
        self.session.close()  # an idle keep-alive connection would hold up the server's graceful shutdown
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_emulators(*extra_args: str, directory: Path | None = None, timeout: float = 60.0) -> RunningEmulators:
    directory = directory or Path(tempfile.mkdtemp(prefix="sync-emulators-"))
    env_file = directory / "emulators.env"
    command = [sys.executable, "-m", "emulators", "--env-file", str(env_file), "--tls-dir", str(directory), *extra_args]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stdout = process.stdout
    assert stdout is not None  # stdout=PIPE
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        line = stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("emulators did not start:\n" + "".join(output)[-4000:])
        output.append(line)
        if line.startswith(READY_PREFIX):
            break
    threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
    settings = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    return RunningEmulators(env_file=env_file, settings=settings, process=process)
