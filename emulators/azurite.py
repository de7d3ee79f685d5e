"""Start and stop Azurite (npm package `azurite`, pinned in package.json) on free loopback ports.

Always with `--inMemoryPersistence --disableTelemetry --skipApiVersionCheck`: nothing on disk, nothing sent out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://127\.0\.0\.1:(\d+)")


class AzuriteError(RuntimeError):
    pass


def azurite_executable() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise AzuriteError("azurite is not installed: run `npm ci` in the repository root (package.json pins it)")


@dataclass
class Azurite:
    """A running Azurite process. Use as a context manager, or call start() and stop()."""

    startup_timeout: float = 30.0
    ports: dict[str, int] = field(default_factory=dict)
    _process: subprocess.Popen[str] | None = None

    def start(self) -> Azurite:
        command = [
            azurite_executable(),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
            "--extentMemoryLimit",
            "256",
            *("--blobHost", "127.0.0.1", "--blobPort", "0"),
            *("--queueHost", "127.0.0.1", "--queuePort", "0"),
            *("--tableHost", "127.0.0.1", "--tablePort", "0"),
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, start_new_session=True
        )
        output: list[str] = []
        deadline = time.monotonic() + self.startup_timeout
        assert self._process.stdout is not None
        while len(self.ports) < 3:
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError(
                    f"Azurite did not start within {self.startup_timeout:.0f}s: {''.join(output)[-2000:]}"
                )
            line = self._process.stdout.readline()
            if not line:
                self.stop()
                raise AzuriteError(f"Azurite exited at start: {''.join(output)[-2000:]}")
            output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.ports[match.group(1).lower()] = int(match.group(2))
        # Keep draining its output so a full pipe never blocks it.
        threading.Thread(target=self._process.stdout.read, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def connection_string(self) -> str:
        if len(self.ports) < 3:
            raise AzuriteError("Azurite is not running")
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={host}:{self.ports['blob']}/{ACCOUNT};"
            f"QueueEndpoint={host}:{self.ports['queue']}/{ACCOUNT};"
            f"TableEndpoint={host}:{self.ports['table']}/{ACCOUNT};"
        )

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
