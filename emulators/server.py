"""Serve an ASGI app over HTTPS on loopback with uvicorn, in a background thread, on a free port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from emulators.tls import TlsFiles


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the owning process handles signals
        pass

    def capture_signals(self) -> Any:  # uvicorn >= 0.29 uses this context manager instead
        import contextlib

        return contextlib.nullcontext()


@dataclass
class HttpsServer:
    """An ASGI app listening on https://127.0.0.1:<port> until stop()."""

    app: Any
    tls: TlsFiles
    port: int = 0
    host: str = "127.0.0.1"
    date_header: bool = True  # False: the app sets Date itself (the Marketo emulator, from its movable clock)
    _server: _ThreadServer | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> HttpsServer:
        if not self.port:
            self.port = free_port()
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            ssl_certfile=str(self.tls.cert_file),
            ssl_keyfile=str(self.tls.key_file),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=512,
            timeout_graceful_shutdown=1,
            date_header=self.date_header,
        )
        server = self._server = _ThreadServer(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTPS server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
